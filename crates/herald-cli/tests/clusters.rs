//! herald-client over three separate clusters (`herald serve` processes, once with a Debian
//! nats-server among them): each subject goes through its own cluster only and arrives once,
//! wildcard subscriptions see every cluster, a cluster that dies costs only its own subjects
//! and comes back with its subscriptions, and one that is down at start joins when it starts.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::sse::{WAIT, sync};
use common::{HeraldProcess, NatsServer};
use futures::{FutureExt, StreamExt};
use herald_client::{Client, Error};

const NAMES: [&str; 3] = ["red", "green", "blue"];

fn builder(urls: &[String]) -> herald_client::ClientBuilder {
    let mut builder = Client::builder().name("clusters-test");
    for (name, url) in NAMES.iter().zip(urls) {
        builder = builder.cluster(*name, [url]);
    }
    builder
}

/// Everything a subscription holds right now, without waiting.
fn drain(sub: &mut (impl futures::Stream<Item = async_nats::Message> + Unpin)) -> Vec<String> {
    let mut seen = Vec::new();
    while let Some(Some(msg)) = sub.next().now_or_never() {
        seen.push(msg.subject.to_string());
    }
    seen
}

/// Publishes 300 subjects through the client and checks, with a plain connection to each
/// server, that every subject went through its own cluster only, and that a wildcard
/// subscription of the client got each message once.
async fn each_subject_through_its_cluster(urls: &[String]) {
    let client = builder(urls).connect().await.unwrap();
    let mut observers = Vec::new();
    for url in urls {
        let plain = async_nats::connect(url).await.unwrap();
        let sub = plain.subscribe("s.>").await.unwrap();
        sync(&plain).await;
        observers.push((plain, sub));
    }
    let mut all = client.subscribe("s.>").await.unwrap();
    assert_eq!(all.clusters(), NAMES);
    let mut one = client.subscribe("s.7").await.unwrap();
    assert_eq!(one.clusters(), [client.cluster_of("s.7")]);
    client.flush().await.unwrap();

    let subjects: Vec<String> = (0..300).map(|i| format!("s.{i}")).collect();
    for subject in &subjects {
        client.publish(subject, subject.clone()).await.unwrap();
    }
    client.flush().await.unwrap();

    let mut got = BTreeSet::new();
    for _ in 0..subjects.len() {
        let msg = tokio::time::timeout(WAIT, all.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(msg.payload, msg.subject.as_bytes());
        assert!(got.insert(msg.subject.to_string()), "{} twice", msg.subject);
    }
    assert_eq!(drain(&mut all), Vec::<String>::new(), "more than one copy");
    assert_eq!(drain(&mut one), ["s.7"]);

    let mut expected: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for subject in &subjects {
        expected
            .entry(client.cluster_of(subject))
            .or_default()
            .insert(subject.clone());
    }
    // A request goes to its subject's cluster, where the responder is.
    let home = NAMES
        .iter()
        .position(|n| *n == client.cluster_of("svc.price"))
        .unwrap();
    let responder = &observers[home].0;
    let mut asked = responder.subscribe("svc.price").await.unwrap();
    sync(responder).await;
    let answer = tokio::spawn({
        let responder = responder.clone();
        async move {
            let msg = asked.next().await.unwrap();
            responder
                .publish(msg.reply.unwrap(), "42".into())
                .await
                .unwrap();
        }
    });
    let reply = client.request("svc.price", "?").await.unwrap();
    assert_eq!(&reply.payload[..], b"42");
    answer.await.unwrap();

    for (name, (plain, sub)) in NAMES.iter().zip(&mut observers) {
        // Each server's own subjects arrive (each within the wait), and nothing else: what
        // is still pending after a round trip of the observer's own would be another
        // cluster's subject, or a second copy.
        let mut seen = BTreeSet::new();
        for _ in 0..expected[name].len() {
            let msg = tokio::time::timeout(WAIT, sub.next())
                .await
                .unwrap()
                .unwrap();
            seen.insert(msg.subject.to_string());
        }
        sync(plain).await;
        seen.extend(drain(sub));
        assert_eq!(
            &seen, &expected[name],
            "{name} carried other clusters' subjects"
        );
        assert!(!seen.is_empty(), "{name} got no subject of 300");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subjects_go_through_their_own_cluster_once() {
    let servers: Vec<HeraldProcess> = (0..3).map(|_| HeraldProcess::start(&[])).collect();
    let urls: Vec<String> = servers.iter().map(HeraldProcess::url).collect();
    each_subject_through_its_cluster(&urls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_can_be_one_of_the_clusters() {
    let herald: Vec<HeraldProcess> = (0..2).map(|_| HeraldProcess::start(&[])).collect();
    let nats = NatsServer::start(None);
    let urls = vec![herald[0].url(), nats.url(), herald[1].url()];
    each_subject_through_its_cluster(&urls).await;
}

/// A free loopback port (bound, then let go) for a server that must come back on it.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One cluster is killed with SIGKILL in the middle of a steady publish: the other
/// clusters' subjects lose nothing, publishes to the dead one fail with an error naming it
/// after the deadline (delivered + failed = sent), and once it is back its subscriptions are
/// in place again within 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_cluster_costs_only_its_own_subjects_and_comes_back() {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let listen: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let start = |i: usize| HeraldProcess::start(&["--listen", &listen[i]]);
    let mut servers: Vec<Option<HeraldProcess>> = (0..3).map(|i| Some(start(i))).collect();
    let urls: Vec<String> = listen.iter().map(|a| format!("nats://{a}")).collect();
    let client = builder(&urls)
        .publish_timeout(Duration::from_millis(100))
        .connect()
        .await
        .unwrap();
    // One subject per cluster.
    let mut subject_of = BTreeMap::new();
    for i in 0.. {
        let subject = format!("steady.{i}");
        subject_of
            .entry(client.cluster_of(&subject).to_owned())
            .or_insert(subject);
        if subject_of.len() == 3 {
            break;
        }
    }
    client.wait_connected(WAIT).await.unwrap();
    let mut subs = BTreeMap::new();
    for (cluster, subject) in &subject_of {
        subs.insert(cluster.clone(), client.subscribe(subject).await.unwrap());
    }
    client.flush().await.unwrap();

    let victim = NAMES[1];
    let (mut sent, mut failed) = (BTreeMap::new(), BTreeMap::new());
    // A steady publish: a round every 10 ms (the dead cluster's publishes take longer, failing).
    let mut pace = tokio::time::interval(Duration::from_millis(10));
    for round in 0..60 {
        pace.tick().await;
        if round == 20 {
            // Everything published so far has arrived; then the victim dies.
            client.flush().await.unwrap();
            for (cluster, sub) in subs.iter_mut() {
                assert_eq!(count(sub, 20).await, 20, "{cluster} before the kill");
            }
            servers[1].take().unwrap().kill9();
        }
        for (cluster, subject) in &subject_of {
            *sent.entry(cluster.clone()).or_insert(0) += 1;
            match client.publish(subject, format!("{round}")).await {
                Ok(()) => {}
                Err(Error::Unavailable { cluster: c, .. }) => {
                    assert_eq!(&c, cluster);
                    *failed.entry(cluster.clone()).or_insert(0) += 1;
                }
                Err(other) => panic!("{other}"),
            }
        }
    }
    // The live clusters lost nothing and failed nothing.
    for cluster in [NAMES[0], NAMES[2]] {
        assert_eq!(failed.get(cluster), None, "{cluster}");
        assert_eq!(
            count(subs.get_mut(cluster).unwrap(), 40).await,
            40,
            "{cluster}"
        );
    }
    // The victim: a publish after the kill failed, naming it, or was handed to its connection
    // before the connection saw the kill (then it arrives after the restart, kept by
    // async-nats, unless it was written into the dead socket: core NATS is at most once).
    let victim_failed = failed.get(victim).copied().unwrap_or(0);
    let handed_over = 40 - victim_failed;

    // Back on its port: its subscription returns within 2 s, and publishes flow again.
    let restarted = Instant::now();
    servers[1] = Some(start(1));
    let subject = &subject_of[victim];
    let sub = subs.get_mut(victim).unwrap();
    let mut late = 0;
    'back: loop {
        assert!(
            restarted.elapsed() < Duration::from_millis(2500),
            "the subscription did not come back within 2 s"
        );
        if client.publish(subject, "back").await.is_err() {
            continue;
        }
        while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(100), sub.next()).await
        {
            if &msg.payload[..] == b"back" {
                break 'back;
            }
            // Handed over just as the kill happened, and kept by async-nats until it
            // reconnected.
            late += 1;
        }
    }
    eprintln!(
        "resubscribed {:?} after the restart; {victim_failed} publishes failed, {handed_over} \
         were handed over as it died and {late} of those arrived after the restart",
        restarted.elapsed()
    );
    // Only what was in flight as the server died may be missing: a few at this pace.
    let lost = handed_over - late;
    assert!(lost <= 3, "{lost} publishes lost without an error");
    drop(servers);
}

/// Messages already in `sub`, without waiting.
fn drain_count(sub: &mut herald_client::Subscription) -> usize {
    let mut n = 0;
    while let Some(Some(_)) = sub.next().now_or_never() {
        n += 1;
    }
    n
}

/// Reads `n` messages (each within the wait), then returns how many there were in all once
/// nothing more is pending.
async fn count(sub: &mut herald_client::Subscription, n: usize) -> usize {
    for i in 0..n {
        let next = tokio::time::timeout(WAIT, sub.next()).await;
        assert!(
            matches!(next, Ok(Some(_))),
            "message {i} of {n} did not arrive"
        );
    }
    n + drain_count(sub)
}

/// With one cluster down at start, `connect` returns at once, the other clusters work, and the
/// third joins when it starts (its subscription made while it was down included); the client
/// does not hammer the missing server meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_down_at_start_joins_when_it_starts() {
    let late_port = free_port();
    let late_listen = format!("127.0.0.1:{late_port}");
    let up: Vec<HeraldProcess> = (0..2).map(|_| HeraldProcess::start(&[])).collect();
    let urls = vec![up[0].url(), format!("nats://{late_listen}"), up[1].url()];
    let started = Instant::now();
    let client = builder(&urls)
        .publish_timeout(Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "connect waited for the missing cluster"
    );
    let mut events = Box::pin(client.events());
    let mut wildcard = client.subscribe("w.>").await.unwrap();
    // The live clusters work at once; the missing one's subjects fail with its name.
    let (mut live, mut dead) = (Vec::new(), None);
    for i in 0..50 {
        let subject = format!("w.{i}");
        if client.cluster_of(&subject) == NAMES[1] {
            dead.get_or_insert(subject);
        } else {
            live.push(subject);
        }
    }
    let dead = dead.unwrap();
    for subject in &live {
        client.publish(subject, "x").await.unwrap();
    }
    for _ in &live {
        tokio::time::timeout(WAIT, wildcard.next())
            .await
            .unwrap()
            .unwrap();
    }
    match client.publish(&dead, "x").await {
        Err(Error::Unavailable { cluster, .. }) => assert_eq!(cluster, NAMES[1]),
        other => panic!("{other:?}"),
    }
    // Reconnection attempts back off: over a second, a handful, not a loop.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let attempts = std::iter::from_fn(|| events.next().now_or_never().flatten()).count();
    assert!(attempts < 10, "{attempts} connection events in a second");

    let _late = HeraldProcess::start(&["--listen", &late_listen]);
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "the late cluster never joined");
        match client.publish(&dead, "late").await {
            Ok(()) => break,
            Err(Error::Unavailable { .. }) => continue,
            Err(other) => panic!("{other}"),
        }
    }
    let msg = tokio::time::timeout(WAIT, wildcard.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (msg.subject.as_str(), &msg.payload[..]),
        (dead.as_str(), &b"late"[..])
    );
}

/// Bad configurations are refused before anything is sent, naming what is wrong.
#[tokio::test]
async fn bad_configurations_are_refused_before_connecting() {
    let cases: Vec<(herald_client::ClientBuilder, &str)> = vec![
        (Client::builder(), "no cluster"),
        (
            Client::builder()
                .cluster("a", ["nats://127.0.0.1:1"])
                .cluster("a", ["nats://127.0.0.1:2"]),
            "\"a\" is listed twice",
        ),
        (
            Client::builder().cluster("", ["nats://127.0.0.1:1"]),
            "invalid cluster name",
        ),
        (
            Client::builder().cluster("a", Vec::<String>::new()),
            "\"a\" has no server URL",
        ),
        (
            Client::builder().cluster("a", ["nats://bad host:x"]),
            "bad server URL",
        ),
        (
            Client::builder()
                .cluster("a", ["nats://127.0.0.1:1"])
                .partition_tokens(0),
            "partition_tokens",
        ),
    ];
    for (builder, says) in cases {
        let err = builder.connect().await.unwrap_err().to_string();
        assert!(err.contains(says), "{says}: {err}");
    }
    let client = Client::builder()
        .cluster("a", ["nats://127.0.0.1:1"])
        .publish_timeout(Duration::from_millis(50))
        .connect()
        .await
        .unwrap();
    for (subject, says) in [
        ("a..b", "empty token"),
        ("a.*", "wildcards"),
        ("", "empty subject"),
    ] {
        let err = client.publish(subject, "x").await.unwrap_err().to_string();
        assert!(err.contains(says), "{subject}: {err}");
    }
    let err = client.subscribe("a.>.b").await.unwrap_err().to_string();
    assert!(err.contains("'>' must be the last token"), "{err}");
}

fn herald(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// `herald cluster-of` names each subject's cluster without connecting anywhere (the URLs
/// lead nowhere), agrees with the library and with every order of the clusters, reads
/// standard input, and refuses bad clusters naming what is wrong.
#[test]
fn cluster_of_prints_each_subject_s_cluster() {
    let (eu, us, ap) = (
        "eu=nats://127.0.0.1:1",
        "us=nats://127.0.0.1:2,nats://127.0.0.1:3",
        "ap=nats://127.0.0.1:4",
    );
    let lines = stdout(&herald(&[
        "cluster-of",
        "orders.42",
        "orders.43",
        "metrics.cpu.host-1",
        "orders.>",
        "--cluster",
        eu,
        "--cluster",
        us,
        "--cluster",
        ap,
    ]));
    assert_eq!(
        lines,
        "orders.42 ap\norders.43 us\nmetrics.cpu.host-1 eu\norders.> *\n"
    );
    let reordered = stdout(&herald(&[
        "cluster-of",
        "orders.42",
        "orders.43",
        "metrics.cpu.host-1",
        "orders.>",
        "--cluster",
        ap,
        "--cluster",
        eu,
        "--cluster",
        us,
    ]));
    assert_eq!(reordered, lines);
    // Partitioned by the first two tokens, a pattern past them has one cluster.
    let partitioned = stdout(&herald(&[
        "cluster-of",
        "orders.eu.>",
        "orders.eu.1",
        "--partition-tokens",
        "2",
        "--cluster",
        eu,
        "--cluster",
        us,
        "--cluster",
        ap,
    ]));
    let names: Vec<&str> = partitioned
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(names[0], names[1], "{partitioned}");
    // From standard input, and from a config file.
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("clusters.toml");
    std::fs::write(
        &conf,
        "[clusters]\neu = [\"nats://127.0.0.1:1\"]\nus = \"nats://127.0.0.1:2,nats://127.0.0.1:3\"\nap = [\"nats://127.0.0.1:4\"]\n",
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["cluster-of", "-", "--config", conf.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"orders.42\n\norders.43\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "orders.42 ap\norders.43 us\n");
    // Bad input: named, nothing printed.
    for (args, says) in [
        (
            vec!["--cluster", eu, "--cluster", "eu=nats://127.0.0.1:9"],
            "\"eu\" is listed twice",
        ),
        (vec!["--cluster", "eu"], "expected NAME=URL"),
        (vec!["--cluster", "eu="], "\"eu\" has no server URL"),
        (
            vec!["--cluster", "=nats://127.0.0.1:1"],
            "invalid cluster name",
        ),
        (vec!["--cluster", "eu=nats://bad host"], "bad server URL"),
        (vec![], "name the clusters"),
    ] {
        let mut full = vec!["cluster-of", "orders.42"];
        full.extend(args);
        let out = herald(&full);
        assert!(!out.status.success());
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{says}: {err}");
    }
    let out = herald(&["cluster-of", "orders..42", "--cluster", eu]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty token"));
}

/// `herald pub`, `sub` and `req` take the same clusters: a subscriber over all of them sees
/// what is published to each; a publish whose cluster is down fails after `--timeout`,
/// naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_spreads_over_clusters() {
    let servers: Vec<HeraldProcess> = (0..2).map(|_| HeraldProcess::start(&[])).collect();
    let down = format!("nats://127.0.0.1:{}", free_port());
    let specs = [
        format!("red={}", servers[0].url()),
        format!("green={down}"),
        format!("blue={}", servers[1].url()),
    ];
    let mut flags = Vec::new();
    for spec in &specs {
        flags.extend(["--cluster", spec.as_str()]);
    }
    let ring = Client::builder()
        .cluster("red", ["nats://x:1"])
        .cluster("green", ["nats://x:1"])
        .cluster("blue", ["nats://x:1"])
        .ring()
        .unwrap();
    let on = |name: &str| {
        (0..)
            .map(|i| format!("cli.{i}"))
            .find(|s| ring.cluster_of(s) == Some(name))
            .unwrap()
    };
    let (red, green, blue) = (on("red"), on("green"), on("blue"));

    let mut sub = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["sub", "cli.>", "--count", "2", "--connect-timeout", "1s"])
        .args(&flags)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Subscribed once it says so (on the two live clusters; the third gets it when it starts).
    let mut stderr = std::io::BufReader::new(sub.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    assert_eq!(line, "subscribed to cli.> on red, green, blue\n");

    for subject in [&red, &blue] {
        let mut args = vec!["pub", subject.as_str(), "hello", "--timeout", "2s"];
        args.extend(&flags);
        stdout(&herald(&args));
    }
    let started = Instant::now();
    let mut args = vec!["pub", green.as_str(), "hello", "--timeout", "300ms"];
    args.extend(&flags);
    let out = herald(&args);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cluster \"green\" unreachable"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A request finds the responder on its subject's cluster.
    let svc = (0..)
        .map(|i| format!("svc.{i}"))
        .find(|s| ring.cluster_of(s) == Some("blue"))
        .unwrap();
    let responder = async_nats::connect(servers[1].url()).await.unwrap();
    let mut asked = responder.subscribe(svc.clone()).await.unwrap();
    sync(&responder).await;
    let answer = tokio::spawn(async move {
        let msg = asked.next().await.unwrap();
        responder
            .publish(msg.reply.unwrap(), "pong".into())
            .await
            .unwrap();
        responder.flush().await.unwrap();
    });
    let mut args: Vec<String> = ["req", &svc, "ping", "--timeout", "5s"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    args.extend(flags.iter().map(|a| a.to_string()));
    // The responder runs on this runtime: the command is waited for off it.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(stdout(&out), "pong\n");
    answer.await.unwrap();

    let out = sub.wait_with_output().unwrap();
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains(&format!("] {red}\nhello")), "{printed}");
    assert!(printed.contains(&format!("] {blue}\nhello")), "{printed}");
}
