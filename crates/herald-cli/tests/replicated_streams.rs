//! Replicated streams across a cluster of `herald serve` processes (issue 22): a stream with
//! three replicas, written through one server and read through another, that survives the
//! death of its leader with nothing acknowledged lost.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use common::HeraldProcess;
use common::sse::{ask, cluster_flush, nats as connect};
use common::values::{self, holds, jsz};

const WAIT: Duration = Duration::from_secs(20);
const SECRET: &str = "replicas-secret";
const MEMBERS_AND_META: &str = r#"{"peers":2,"meta":3,"timeout_ms":8000}"#;

fn node(data: &std::path::Path, seeds: &[&HeraldProcess]) -> HeraldProcess {
    HeraldProcess::clustered(SECRET, seeds, &["--data-dir", data.to_str().unwrap()])
}

/// Three servers in one cluster with a formed meta group, by name; the server named `n`
/// keeps its data in `dirs[servers[n].1]`.
async fn three(dirs: &[tempfile::TempDir]) -> BTreeMap<String, HeraldProcess> {
    three_in(dirs)
        .await
        .into_iter()
        .map(|(name, (server, _))| (name, server))
        .collect()
}

/// [`three`], with the index of each server's directory.
async fn three_in(dirs: &[tempfile::TempDir]) -> BTreeMap<String, (HeraldProcess, usize)> {
    let a = node(dirs[0].path(), &[]);
    let b = node(dirs[1].path(), &[&a]);
    let c = node(dirs[2].path(), &[&a]);
    let mut servers = BTreeMap::new();
    for (at, server) in [a, b, c].into_iter().enumerate() {
        let client = connect(&server).await;
        cluster_flush(&client, MEMBERS_AND_META).await;
        let info = ask(&client, "$HERALD.API.CLUSTER.INFO", "").await;
        servers.insert(info["name"].as_str().unwrap().to_owned(), (server, at));
    }
    servers
}

fn events(replicas: usize) -> stream::Config {
    stream::Config {
        name: "EVENTS".into(),
        subjects: vec!["events.>".into()],
        num_replicas: replicas,
        ..Default::default()
    }
}

/// Publishes `value` on `events.<value % 7>` until it is acknowledged.
async fn publish_until_acked(js: &jetstream::Context, value: u64, deadline: Instant) -> u64 {
    values::publish_value(js, &format!("events.{}", value % 7), value, deadline).await
}

/// Every value stored in the stream, read through `js` by a new consumer, with its sequence.
async fn read_all(js: &jetstream::Context) -> Vec<(u64, u64)> {
    static READERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let reader = READERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    values::read_values(js, "EVENTS", &format!("reader{reader}"), 0).await
}

/// Creates the stream with `replicas` through `js`; returns its first leader's name.
async fn create_events(js: &jetstream::Context, replicas: usize) -> String {
    let mut created = js.create_stream(events(replicas)).await.expect("a create");
    let info = created.info().await.unwrap();
    info.cluster.clone().unwrap().leader.unwrap()
}

/// Three servers and an R3 stream made through one of them: the other servers (kept
/// running), the stream's leader, and a client of a server that does not lead it.
async fn r3_apart_from_its_leader(
    dirs: &[tempfile::TempDir],
) -> (
    BTreeMap<String, HeraldProcess>,
    HeraldProcess,
    jetstream::Context,
) {
    let mut servers = three(dirs).await;
    let first = servers.values().next().unwrap();
    let js = jetstream::new(connect(first).await);
    let leader = create_events(&js, 3).await;
    let leader = servers.remove(&leader).unwrap();
    let survivor = servers.values().next().unwrap();
    let client = connect(survivor).await;
    cluster_flush(&client, "").await;
    (servers, leader, jetstream::new(client))
}

/// A durable pull consumer `billing` of `stream`, from its first message.
async fn billing(stream: &jetstream::stream::Stream) -> jetstream::consumer::PullConsumer {
    stream
        .create_consumer(pull::Config {
            durable_name: Some("billing".into()),
            ..Default::default()
        })
        .await
        .expect("a durable consumer")
}

/// The values of the next `n` messages `consumer` delivers, each acknowledged.
async fn next_values(consumer: &jetstream::consumer::PullConsumer, n: usize) -> Vec<u64> {
    values::fetch_values(consumer, n, Duration::from_secs(5))
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

/// The durable consumer `name` of `stream`, once a new leader serves it.
async fn after_failover(
    stream: &jetstream::stream::Stream,
    name: &str,
) -> jetstream::consumer::PullConsumer {
    let deadline = Instant::now() + WAIT;
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    loop {
        match stream.get_consumer(name).await {
            Ok(consumer) => return consumer,
            Err(err) => {
                assert!(
                    Instant::now() < deadline,
                    "no consumer after the failover: {err}"
                );
                poll.tick().await;
            }
        }
    }
}

/// A stream with three replicas created through one server, written through a second, read
/// through the third; every server holds a copy, and STREAM.INFO names the leader and the
/// two other replicas as current.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_stream_is_written_through_one_server_and_read_through_another() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let servers = three(&dirs).await;
    let procs: Vec<&HeraldProcess> = servers.values().collect();
    let clients = [
        connect(procs[0]).await,
        connect(procs[1]).await,
        connect(procs[2]).await,
    ];
    let [ja, jb, jc] = clients.clone().map(jetstream::new);
    let err = ja
        .create_stream(stream::Config {
            name: "WIDE".into(),
            subjects: vec!["wide.>".into()],
            num_replicas: 6,
            ..Default::default()
        })
        .await
        .expect_err("6 replicas");
    assert!(
        err.to_string().contains("replicas > 5 not supported"),
        "{err}"
    );
    let created = ja.create_stream(events(3)).await.expect("an R3 create");
    assert_eq!(created.cached_info().config.num_replicas, 3);
    for client in &clients {
        cluster_flush(client, "").await;
    }

    let deadline = Instant::now() + WAIT;
    let mut sequences = Vec::new();
    for value in 0..100 {
        sequences.push(publish_until_acked(&jb, value, deadline).await);
    }
    assert_eq!(sequences, (1..=100).collect::<Vec<u64>>());

    let read = read_all(&jc).await;
    let values: Vec<u64> = read.iter().map(|(_, v)| *v).collect();
    assert_eq!(values, (0..100).collect::<Vec<u64>>());

    let mut stream = jc.get_stream("EVENTS").await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.state.messages, 100);
    let cluster = info.cluster.clone().expect("a cluster object");
    let leader = cluster.leader.clone().expect("a leader");
    assert!(servers.contains_key(&leader), "{leader}");
    let others: BTreeSet<String> = cluster.replicas.iter().map(|r| r.name.clone()).collect();
    let expected: BTreeSet<String> = servers.keys().filter(|n| **n != leader).cloned().collect();
    assert_eq!(others, expected);
    // The leader heard from each replica within its last heartbeats (100 ms apart).
    for replica in &cluster.replicas {
        assert!(
            replica.active > Duration::ZERO && replica.active < Duration::from_secs(2),
            "{replica:?}"
        );
    }
    for dir in &dirs {
        assert!(
            dir.path().join("streams/EVENTS").is_dir(),
            "every server holds a replica"
        );
    }

    let shown = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["stream", "info", "EVENTS", "--server", &procs[1].url()])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains(&format!(
            "server        {leader} (cluster herald, 3 replicas)"
        )),
        "{shown}"
    );
    for other in &expected {
        assert!(
            shown.contains(&format!("replica       {other} (current, lag 0, seen ")),
            "{shown}"
        );
    }
    // The leader steps down on request; another replica leads, with every message.
    let answer = ask(&clients[0], "$JS.API.STREAM.LEADER.STEPDOWN.EVENTS", "").await;
    assert_eq!(answer["success"], true, "{answer}");
    let info = stream.info().await.unwrap();
    let moved = info.cluster.clone().unwrap().leader.unwrap();
    assert_ne!(moved, leader, "{info:?}");
    assert_eq!(info.state.messages, 100);
    assert_eq!(
        publish_until_acked(&jb, 100, Instant::now() + WAIT).await,
        101
    );

    // Each server's /jsz shows its replica with the leader, and the meta group; the new
    // leader's /metrics its replicas' lag and the leader changes it saw.
    let http = common::sse::http();
    for server in servers.values() {
        let jsz = jsz(server).await;
        let detail = &jsz["account_details"][0]["stream_detail"][0];
        assert_eq!(detail["cluster"]["leader"], moved.as_str(), "{jsz}");
        assert_eq!(
            detail["cluster"]["replicas"].as_array().unwrap().len(),
            2,
            "{jsz}"
        );
        assert!(jsz["meta_cluster"]["leader"].is_string(), "{jsz}");
        assert_eq!(jsz["meta_cluster"]["cluster_size"], 3, "{jsz}");
    }
    let metrics = http
        .get(format!("{}/metrics", servers[&moved].http_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("herald_stream_leader{stream=\"EVENTS\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "herald_stream_replica_lag{{stream=\"EVENTS\",replica=\"{leader}\"}}"
        )),
        "{metrics}"
    );
    let changes: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("herald_stream_leader_changes_total{stream=\"EVENTS\"} "))
        .expect("leader changes")
        .parse()
        .unwrap();
    assert!(changes >= 2, "{metrics}");
}

/// The leader of an R3 stream is killed (-9) while a publisher writes unique values through
/// another server: a new leader takes over without an operator, and every acknowledged
/// value is read back afterwards, once or more, with no value that was never published and
/// no two values under one sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_when_the_leader_is_killed() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (_servers, leader, js) = r3_apart_from_its_leader(&dirs).await;

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut acked = BTreeSet::new();
    let mut leader = Some(leader);
    let mut killed_at = None;
    let mut failover = None;
    for value in 0..300u64 {
        if value == 100 {
            leader.take().unwrap().kill9();
            killed_at = Some(Instant::now());
        }
        publish_until_acked(&js, value, deadline).await;
        if let (Some(at), None) = (killed_at, failover) {
            failover = Some(at.elapsed());
        }
        acked.insert(value);
    }
    println!("failover: first ack {:?} after kill -9", failover.unwrap());

    let read = read_all(&js).await;
    let mut by_seq = BTreeMap::new();
    for (seq, value) in &read {
        assert!(
            by_seq.insert(*seq, *value).is_none_or(|v| v == *value),
            "two values under sequence {seq}"
        );
    }
    let seen: BTreeSet<u64> = read.iter().map(|(_, v)| *v).collect();
    let lost: Vec<&u64> = acked.difference(&seen).collect();
    let unexpected: Vec<&u64> = seen.iter().filter(|v| **v >= 300).collect();
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(unexpected.is_empty(), "unexpected: {unexpected:?}");
}

/// A durable consumer of an R3 stream outlives the leader it was made on: the new leader
/// starts it from the state the replicas kept, so what was acknowledged is not delivered
/// again and the rest is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_consumer_and_its_acks_survive_the_leader() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (_servers, leader, js) = r3_apart_from_its_leader(&dirs).await;
    let deadline = Instant::now() + WAIT;
    for value in 0..100 {
        publish_until_acked(&js, value, deadline).await;
    }
    let stream = js.get_stream("EVENTS").await.unwrap();
    let consumer = billing(&stream).await;
    let first_half = next_values(&consumer, 50).await;
    assert_eq!(first_half, (0..50).collect::<Vec<u64>>());

    // The acks reach the other replicas (the leader saves a durable's state within 100 ms
    // of a change, through the stream's Raft group).
    let kept: Vec<std::path::PathBuf> = dirs
        .iter()
        .map(|d| d.path().join("streams/EVENTS/consumers/billing.json"))
        .collect();
    let deadline = Instant::now() + WAIT;
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    loop {
        let caught_up = kept
            .iter()
            .filter_map(|file| std::fs::read(file).ok())
            .filter_map(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .filter(|saved| saved["next"] == 51 && saved["pending"] == serde_json::json!([]))
            .count();
        if caught_up == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the consumer's state never reached every replica"
        );
        poll.tick().await;
    }

    leader.kill9();
    let mut consumer = after_failover(&stream, "billing").await;
    let info = consumer.info().await.unwrap();
    assert_eq!(
        (
            info.ack_floor.stream_sequence,
            info.num_pending,
            info.num_ack_pending
        ),
        (50, 50, 0),
        "{info:?}"
    );
    let second_half = next_values(&consumer, 50).await;
    assert_eq!(second_half, (50..100).collect::<Vec<u64>>());
}

/// An interest stream with three replicas: what its durable consumer has not acknowledged
/// survives the leader (a follower once dropped every message, as if nobody were
/// interested, since its consumers run on the leader), and what it has acknowledged leaves
/// every replica, not only the leader's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interest_stream_keeps_what_its_consumer_needs_across_the_leader() {
    kept_across_the_leader(stream::RetentionPolicy::Interest).await;
}

/// The same for a work queue, whose followers once kept every message forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_queue_keeps_what_its_consumer_needs_across_the_leader() {
    kept_across_the_leader(stream::RetentionPolicy::WorkQueue).await;
}

async fn kept_across_the_leader(retention: stream::RetentionPolicy) {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut servers = three(&dirs).await;
    let js = jetstream::new(connect(servers.values().next().unwrap()).await);
    let mut created = js
        .create_stream(stream::Config {
            retention,
            ..events(3)
        })
        .await
        .expect("a create");
    let info = created.info().await.unwrap();
    let leader = servers
        .remove(&info.cluster.clone().unwrap().leader.unwrap())
        .unwrap();
    let client = connect(servers.values().next().unwrap()).await;
    cluster_flush(&client, "").await;
    let js = jetstream::new(client);
    let stream = js.get_stream("EVENTS").await.unwrap();
    let consumer = billing(&stream).await;
    let deadline = Instant::now() + WAIT;
    for value in 0..100 {
        publish_until_acked(&js, value, deadline).await;
    }
    let first_half = next_values(&consumer, 50).await;
    assert_eq!(first_half, (0..50).collect::<Vec<u64>>());
    // Every copy drops the 50 acknowledged: the leader's as each ack comes, the others'
    // once the consumer's state reaches them.
    for server in servers.values().chain([&leader]) {
        holds(server, 50, 100).await;
    }

    leader.kill9();
    let mut consumer = after_failover(&stream, "billing").await;
    let info = consumer.info().await.unwrap();
    assert_eq!(
        (info.ack_floor.stream_sequence, info.num_pending),
        (50, 50),
        "{info:?}"
    );
    let second_half = next_values(&consumer, 50).await;
    assert_eq!(second_half, (50..100).collect::<Vec<u64>>());
    for server in servers.values() {
        holds(server, 0, 100).await;
    }
}

/// A follower's stream segment is damaged (a flipped byte in the middle of its only segment)
/// while it is down: when it comes back it finds the damage, stores again what the group
/// agreed (from its Raft log and the leader's), and its copy ends up whole, as read back from
/// its own directory afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_follower_is_repaired_from_the_group() {
    damaged_replica_is_repaired(Victim::Follower).await;
}

/// The leader is stopped, the others go on without it, and it loses the tails of both its
/// stream segment and its Raft log while down: it must not lead with what it has left (the
/// others hold more, and never vote for a shorter log), and it comes back whole from them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_lost_its_tail_comes_back_whole_from_the_others() {
    damaged_replica_is_repaired(Victim::Leader).await;
}

/// Which replica [`damaged_replica_is_repaired`] damages.
enum Victim {
    /// A follower: a byte flipped in the middle of its segment.
    Follower,
    /// The leader: its segment cut in half and the last quarter of its Raft log cut off.
    Leader,
}

async fn damaged_replica_is_repaired(victim: Victim) {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut placed = three_in(&dirs).await;
    let at: BTreeMap<String, usize> = placed.iter().map(|(n, (_, at))| (n.clone(), *at)).collect();
    let mut servers: BTreeMap<String, HeraldProcess> = std::mem::take(&mut placed)
        .into_iter()
        .map(|(n, (s, _))| (n, s))
        .collect();
    let first = servers.values().next().unwrap();
    let js = jetstream::new(connect(first).await);
    let leader = create_events(&js, 3).await;
    let damaged = match victim {
        Victim::Follower => at.keys().find(|n| **n != leader).unwrap().clone(),
        Victim::Leader => leader.clone(),
    };
    let at = at[&damaged];
    // Published through a server that stays up.
    let through = servers.keys().find(|n| **n != damaged).unwrap().clone();
    let js = jetstream::new(connect(&servers[&through]).await);
    let deadline = Instant::now() + WAIT;
    for value in 0..100 {
        publish_until_acked(&js, value, deadline).await;
    }
    assert!(servers.remove(&damaged).unwrap().terminate().success());
    for value in 100..200 {
        publish_until_acked(&js, value, deadline).await;
    }
    let segments: Vec<std::path::PathBuf> =
        std::fs::read_dir(dirs[at].path().join("streams/EVENTS"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    let mut bytes = std::fs::read(&segments[0]).unwrap();
    let middle = bytes.len() / 2;
    match victim {
        Victim::Follower => {
            bytes[middle] ^= 0x40;
            std::fs::write(&segments[0], &bytes).unwrap();
        }
        Victim::Leader => {
            std::fs::write(&segments[0], &bytes[..middle]).unwrap();
            // Whole entries gone from the end of its Raft log, as if never written.
            let groups: Vec<_> = std::fs::read_dir(dirs[at].path().join("raft"))
                .unwrap()
                .map(|e| e.unwrap().path().join("log"))
                .collect();
            assert_eq!(groups.len(), 1, "{groups:?}");
            let log = std::fs::read(&groups[0]).unwrap();
            let ends: Vec<usize> = log
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1)
                .collect();
            std::fs::write(&groups[0], &log[..ends[ends.len() * 3 / 4]]).unwrap();
        }
    }

    let live = servers.values().next().unwrap();
    let back = node(dirs[at].path(), &[live]);
    holds(&back, 200, 200).await;
    // Every acknowledged value, once, through the group.
    let expected: Vec<(u64, u64)> = (0..200).map(|v| (v + 1, v)).collect();
    assert_eq!(read_all(&js).await, expected);
    drop(servers);
    assert!(back.terminate().success());

    // Its copy, read alone.
    let alone = HeraldProcess::start(&["--data-dir", dirs[at].path().to_str().unwrap()]);
    let js = jetstream::new(connect(&alone).await);
    assert_eq!(read_all(&js).await, expected);
}

/// A server is lost for good and a new one joins while a client publishes:
/// `$JS.API.SERVER.REMOVE` takes the lost one out of the cluster's JetStream, the stream's
/// replica moves to the newcomer (which catches up from the group's log), and the stream
/// keeps three current replicas and every acknowledged message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_server_is_replaced_and_the_stream_keeps_three_replicas() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut servers = three(&dirs[..3]).await;
    let first = servers.values().next().unwrap();
    // Made with `herald stream add --replicas 3`.
    let added = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "stream",
            "add",
            "EVENTS",
            "--subjects",
            "events.>",
            "--replicas",
            "3",
        ])
        .args(["--server", &first.url()])
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");
    let js = jetstream::new(connect(first).await);
    let info = js
        .get_stream("EVENTS")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.config.num_replicas, 3);
    let leader = info.cluster.unwrap().leader.unwrap();
    let lost = servers.keys().find(|n| **n != leader).unwrap().clone();
    let client = connect(&servers[&leader]).await;
    let js = jetstream::new(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    for value in 0..50 {
        publish_until_acked(&js, value, deadline).await;
    }

    // Publishing goes on through the leader's server while the cluster changes.
    let publisher = {
        let js = js.clone();
        tokio::spawn(async move {
            for value in 50..300 {
                publish_until_acked(&js, value, deadline).await;
            }
        })
    };
    let newcomer = node(dirs[3].path(), &[&servers[&leader]]);
    let newcomer_client = connect(&newcomer).await;
    cluster_flush(
        &newcomer_client,
        r#"{"peers":3,"meta":4,"timeout_ms":8000}"#,
    )
    .await;
    let newcomer_name = ask(&newcomer_client, "$HERALD.API.CLUSTER.INFO", "").await["name"]
        .as_str()
        .unwrap()
        .to_owned();
    servers.remove(&lost).unwrap().kill9();

    // `herald cluster remove`: refused while gossip still sees the lost server (online), or
    // while the meta group elects a leader in its place (retryable), then done.
    let url = servers[&leader].url();
    let mut retry = tokio::time::interval(Duration::from_millis(100));
    loop {
        let removed = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["cluster", "remove", &lost, "--server", &url])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&removed.stderr).into_owned()
            + &String::from_utf8_lossy(&removed.stdout);
        if removed.status.success() {
            assert!(said.contains("removed"), "{said}");
            break;
        }
        assert!(Instant::now() < deadline, "never removed: {said}");
        assert!(
            said.contains("online") || said.contains("temporarily unavailable"),
            "{said}"
        );
        retry.tick().await;
    }
    let unknown = ask(&client, "$JS.API.SERVER.REMOVE", r#"{"peer":"nobody"}"#).await;
    assert_eq!(unknown["error"]["err_code"], 10044, "{unknown}");

    // Three replicas again, the newcomer current among them, the lost one gone.
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    loop {
        let mut stream = js.get_stream("EVENTS").await.unwrap();
        let info = stream.info().await.unwrap();
        let cluster = info.cluster.clone().unwrap();
        let names: BTreeSet<String> = cluster
            .replicas
            .iter()
            .map(|r| r.name.clone())
            .chain(cluster.leader.clone())
            .collect();
        let current = cluster.replicas.iter().all(|r| r.current && !r.offline);
        if names.len() == 3 && names.contains(&newcomer_name) && !names.contains(&lost) && current {
            break;
        }
        assert!(Instant::now() < deadline, "replicas: {cluster:?}");
        poll.tick().await;
    }
    publisher.await.unwrap();
    let expected: Vec<(u64, u64)> = (0..300).map(|v| (v + 1, v)).collect();
    assert_eq!(read_all(&js).await, expected);

    // The newcomer's own copy is whole.
    holds(&newcomer, 300, 300).await;
}

/// An update of an R3 stream made through one server reaches every replica: a new subject
/// and a message limit, both in force on each copy; changing the replica count or the
/// storage is refused as nats-server refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_stream_is_updated_on_every_replica() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let servers = three(&dirs).await;
    let all: Vec<&HeraldProcess> = servers.values().collect();
    let js = jetstream::new(connect(all[0]).await);
    create_events(&js, 3).await;

    let through = jetstream::new(connect(all[1]).await);
    let mut config = events(3);
    config.subjects.push("more.>".into());
    config.max_messages = 5;
    let info = through.update_stream(config.clone()).await.unwrap();
    assert_eq!(info.config.subjects, ["events.>", "more.>"]);
    assert_eq!(info.config.max_messages, 5);

    let publisher = jetstream::new(connect(all[2]).await);
    for i in 0..8 {
        let ack = publisher
            .publish("more.x", format!("m{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(ack.sequence, i + 1);
    }
    for server in &all {
        holds(server, 5, 8).await;
    }

    let mut fewer = config.clone();
    fewer.num_replicas = 1;
    let refused = through.update_stream(fewer).await.unwrap_err().to_string();
    assert!(refused.contains("replicas"), "{refused}");
    let mut memory = config;
    memory.storage = stream::StorageType::Memory;
    let refused = through.update_stream(memory).await.unwrap_err().to_string();
    assert!(refused.contains("storage"), "{refused}");
}

/// A purge and a message delete of an R3 stream, asked through servers that do not lead it,
/// are made on every replica through the stream's group: after its leader steps down the
/// purged and deleted messages stay gone, and a follower that was down while more came
/// replays the group's log to the same copy (the purge is not made again over newer
/// messages).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_and_deletes_are_made_on_every_replica() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let placed = three_in(&dirs).await;
    let at: BTreeMap<String, usize> = placed.iter().map(|(n, (_, at))| (n.clone(), *at)).collect();
    let mut servers: BTreeMap<String, HeraldProcess> =
        placed.into_iter().map(|(n, (s, _))| (n, s)).collect();
    let first = servers.values().next().unwrap();
    let leader = create_events(&jetstream::new(connect(first).await), 3).await;
    let others: Vec<String> = servers.keys().filter(|n| **n != leader).cloned().collect();
    let js = jetstream::new(connect(&servers[&others[0]]).await);
    let deadline = Instant::now() + WAIT;
    for value in 0..20 {
        publish_until_acked(&js, value, deadline).await;
    }
    for server in servers.values() {
        holds(server, 20, 20).await;
    }

    let purged = js
        .get_stream("EVENTS")
        .await
        .unwrap()
        .purge()
        .sequence(11)
        .await
        .unwrap();
    assert_eq!((purged.success, purged.purged), (true, 10));
    let other = jetstream::new(connect(&servers[&others[1]]).await);
    assert!(
        other
            .get_stream("EVENTS")
            .await
            .unwrap()
            .delete_message(15)
            .await
            .unwrap()
    );
    let missing = other
        .get_stream("EVENTS")
        .await
        .unwrap()
        .delete_message(3)
        .await
        .unwrap_err()
        .to_string();
    assert!(missing.contains("no message found"), "{missing}");
    for server in servers.values() {
        holds(server, 9, 20).await;
    }

    // Another replica leads: the purged and the deleted messages stay gone.
    let asked = ask(
        &connect(&servers[&others[0]]).await,
        "$JS.API.STREAM.LEADER.STEPDOWN.EVENTS",
        "",
    )
    .await;
    assert_eq!(asked["success"], true, "{asked}");
    let kept: Vec<(u64, u64)> = (11..=20).filter(|s| *s != 15).map(|s| (s, s - 1)).collect();
    assert_eq!(read_all(&js).await, kept);

    // A follower down while more is published replays the log to the same copy.
    let current = js
        .get_stream("EVENTS")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .cluster
        .clone()
        .unwrap()
        .leader
        .unwrap();
    let down = servers.keys().find(|n| **n != current).unwrap().clone();
    servers.remove(&down).unwrap().kill9();
    let live = servers.keys().find(|n| **n != down).unwrap().clone();
    let js = jetstream::new(connect(&servers[&live]).await);
    for value in 20..25 {
        publish_until_acked(&js, value, Instant::now() + WAIT).await;
    }
    let back = node(dirs[at[&down]].path(), &[&servers[&live]]);
    holds(&back, 14, 25).await;
    let mut all = kept;
    all.extend((21..=25).map(|s| (s, s - 1)));
    assert_eq!(read_all(&js).await, all);
}

/// `num_replicas` of a replicated stream changes with STREAM.UPDATE, as `nats stream edit
/// --replicas` does it: from 2 to 3 the third server joins the group and catches up from its
/// log; from 3 back to 2 one follower leaves and deletes its copy; more replicas than
/// servers are refused as nats-server refuses them. Nothing is lost on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replica_count_of_a_stream_changes() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let servers = three(&dirs).await;
    let all: Vec<&HeraldProcess> = servers.values().collect();
    let js = jetstream::new(connect(all[0]).await);
    create_events(&js, 2).await;
    let deadline = Instant::now() + WAIT;
    for value in 0..50 {
        publish_until_acked(&js, value, deadline).await;
    }

    let through = jetstream::new(connect(all[1]).await);
    let info = through.update_stream(events(3)).await.unwrap();
    assert_eq!(info.config.num_replicas, 3);
    for server in &all {
        holds(server, 50, 50).await;
    }
    let three_current = |info: &stream::Info| {
        let cluster = info.cluster.clone().unwrap();
        cluster.replicas.len() == 2 && cluster.replicas.iter().all(|r| r.current)
    };
    let mut stream = js.get_stream("EVENTS").await.unwrap();
    let deadline = Instant::now() + WAIT;
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    while !three_current(stream.info().await.unwrap()) {
        assert!(Instant::now() < deadline, "{:?}", stream.cached_info());
        poll.tick().await;
    }
    for value in 50..60 {
        publish_until_acked(&through, value, Instant::now() + WAIT).await;
    }

    let refused = through
        .update_stream(events(4))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("insufficient resources"), "{refused}");

    let info = through.update_stream(events(2)).await.unwrap();
    assert_eq!(info.config.num_replicas, 2);
    // Done once the leader reports one other replica and two servers hold every message
    // (a replica still applying the last publishes counts fewer for a moment: the count
    // alone is not the sign that one was dropped).
    let deadline = Instant::now() + WAIT;
    let kept = loop {
        let mut kept = Vec::new();
        for server in &all {
            let jsz = jsz(server).await;
            if jsz["account_details"][0]["stream_detail"][0]["state"]["messages"] == 60 {
                kept.push(*server);
            }
        }
        let mut stream = js.get_stream("EVENTS").await.unwrap();
        let cluster = stream.info().await.unwrap().cluster.clone().unwrap();
        if kept.len() == 2 && cluster.replicas.len() == 1 {
            break kept;
        }
        assert!(
            Instant::now() < deadline,
            "{} copies, cluster {cluster:?}",
            kept.len()
        );
        poll.tick().await;
    };
    let js = jetstream::new(connect(kept[0]).await);
    let all_values: Vec<(u64, u64)> = (0..60).map(|v| (v + 1, v)).collect();
    assert_eq!(read_all(&js).await, all_values);
}
