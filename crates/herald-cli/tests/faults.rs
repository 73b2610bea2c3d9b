//! The fault harness of replicated streams (issue 22), in the style of Jepsen's queue
//! workload: a publisher writes unique values to an R3 stream through a client that knows
//! every server, and records each value it tried and each acknowledgement (value, sequence);
//! a nemesis meanwhile kills the stream's leader or a follower with SIGKILL and restarts it
//! from its directory, or stops the leader with SIGSTOP past the election timeout and lets
//! it go on. Afterwards every value is read back and the checker reports
//!
//! - *lost*: acknowledged, never read;
//! - *unexpected*: read, never published;
//! - *duplicates*: read more than once (the publisher never sends a value twice, so a
//!   duplicate is a message stored twice);
//! - *conflicts*: a sequence acknowledged for one value and read with another, or two
//!   values acknowledged with one sequence.
//!
//! A second run puts each server in a network namespace of its own (`common::netns`) and
//! the nemesis cuts off the leader, then a follower, and joins it again.
//!
//! The servers snapshot their stream groups every 100 entries (`FAULT_SNAPSHOT_ENTRIES`;
//! 0 for never), so faults also meet compacted Raft logs, and nearly every replica that was
//! cut off or restarted catches up from a snapshot and the others' copies.
//!
//! It passes with no loss, nothing unexpected, nothing twice and no conflict. `FAULT_ROUNDS` and
//! `PARTITION_ROUNDS` set the number of faults (50 and 20 by default; the long runs in
//! BENCHMARKS.md used more).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use common::HeraldProcess;
use common::netns::Network;
use common::sse::{ask, cluster_flush, nats as connect};
use std::sync::Mutex;

const WAIT: Duration = Duration::from_secs(30);
const SECRET: &str = "faults-secret";
const MEMBERS_AND_META: &str = r#"{"peers":2,"meta":3,"timeout_ms":8000}"#;

/// What the publisher saw.
#[derive(Default)]
struct History {
    attempted: BTreeSet<u64>,
    /// Value → the sequence its ack gave.
    acked: BTreeMap<u64, u64>,
}

/// The three servers, by name, with their directories and addresses; a killed one is
/// `None` until it is restarted (on the same ports, as a server is in production: clients
/// learn other servers' addresses when they connect, not after).
struct Cluster {
    dirs: Vec<tempfile::TempDir>,
    servers: BTreeMap<String, (Option<HeraldProcess>, usize)>,
    /// (client, route) address of each server.
    addrs: BTreeMap<String, (String, String)>,
    /// The namespaces the servers run in, for partitions; `None` on loopback.
    network: Option<Network>,
}

impl Cluster {
    /// Three servers on loopback, or each in its own namespace of `network`.
    async fn start(network: Option<Network>) -> Cluster {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let listen = |at: usize| match &network {
            Some(network) => (
                format!("{}:4222", network.addr(at)),
                format!("{}:6222", network.addr(at)),
            ),
            None => ("127.0.0.1:0".to_owned(), "127.0.0.1:0".to_owned()),
        };
        let a = launch(network.as_ref(), 0, dirs[0].path(), &listen(0), None);
        let seed = a.cluster_addr();
        let b = launch(network.as_ref(), 1, dirs[1].path(), &listen(1), Some(&seed));
        let c = launch(network.as_ref(), 2, dirs[2].path(), &listen(2), Some(&seed));
        let mut servers = BTreeMap::new();
        let mut addrs = BTreeMap::new();
        for (at, server) in [a, b, c].into_iter().enumerate() {
            let client = connect(&server).await;
            cluster_flush(&client, MEMBERS_AND_META).await;
            let info = ask(&client, "$HERALD.API.CLUSTER.INFO", "").await;
            let name = info["name"].as_str().unwrap().to_owned();
            addrs.insert(
                name.clone(),
                (server.addr.to_string(), server.cluster_addr()),
            );
            servers.insert(name, (Some(server), at));
        }
        Cluster {
            dirs,
            servers,
            addrs,
            network,
        }
    }

    fn urls(&self) -> Vec<String> {
        self.live().map(|s| s.url()).collect()
    }

    fn live(&self) -> impl Iterator<Item = &HeraldProcess> {
        self.servers.values().filter_map(|(s, _)| s.as_ref())
    }

    fn kill(&mut self, name: &str) {
        self.servers
            .get_mut(name)
            .unwrap()
            .0
            .take()
            .unwrap()
            .kill9();
    }

    fn restart(&mut self, name: &str) {
        let seed = self.live().next().unwrap().cluster_addr();
        let at = self.servers[name].1;
        let server = launch(
            self.network.as_ref(),
            at,
            self.dirs[at].path(),
            &self.addrs[name],
            Some(&seed),
        );
        self.servers.get_mut(name).unwrap().0 = Some(server);
    }

    fn signal(&self, name: &str, signal: &str) {
        self.servers[name].0.as_ref().unwrap().signal(signal);
    }

    /// Cuts server `name` off the network (every other server and the client), or joins
    /// it again.
    fn partition(&self, name: &str, cut: bool) {
        let network = self.network.as_ref().expect("servers in namespaces");
        let at = self.servers[name].1;
        if cut {
            network.isolate(at);
        } else {
            network.heal(at);
        }
    }
}

/// Starts server `at` with its data in `data`, listening on `listen` (client, route
/// addresses), seeded with `seed`; in its namespace of `network` if there is one.
fn launch(
    network: Option<&Network>,
    at: usize,
    data: &std::path::Path,
    listen: &(String, String),
    seed: Option<&str>,
) -> HeraldProcess {
    let mut args = vec![
        "--listen",
        &listen.0,
        "--cluster-listen",
        &listen.1,
        "--cluster-secret",
        SECRET,
        "--data-dir",
        data.to_str().unwrap(),
    ];
    if let Some(seed) = seed {
        args.extend(["--seeds", seed]);
    }
    let mut command = match network {
        Some(network) => {
            let mut command = std::process::Command::new("ip");
            command.args([
                "netns",
                "exec",
                &network.namespace(at),
                env!("CARGO_BIN_EXE_herald"),
            ]);
            command
        }
        None => std::process::Command::new(env!("CARGO_BIN_EXE_herald")),
    };
    // Snapshots often (`FAULT_SNAPSHOT_ENTRIES`, 100 by default), so that faults meet
    // compacted logs and replicas catching up from a snapshot and the others' copies.
    let entries = std::env::var("FAULT_SNAPSHOT_ENTRIES").unwrap_or_else(|_| "100".into());
    command.env("HERALD_RAFT_SNAPSHOT_ENTRIES", entries);
    HeraldProcess::spawn(command, &args)
}

/// The stream's cluster object as its leader answers it, once it has a leader other than
/// `not` and every replica in `current` has caught up (fewer than 50 entries behind: the
/// publisher keeps writing).
async fn settled(
    js: &jetstream::Context,
    not: Option<&str>,
    current: &[&str],
) -> async_nats::jetstream::stream::ClusterInfo {
    let deadline = Instant::now() + WAIT;
    let mut poll = tokio::time::interval(Duration::from_millis(25));
    loop {
        let asked = tokio::time::timeout(Duration::from_secs(2), async {
            let mut stream = js.get_stream("EVENTS").await.map_err(|e| e.to_string())?;
            let info = stream.info().await.map_err(|e| e.to_string())?;
            info.cluster
                .clone()
                .ok_or_else(|| "no cluster object".to_owned())
        })
        .await
        .unwrap_or_else(|_| Err("no answer within 2 s".into()));
        if let Ok(cluster) = &asked
            && let Some(leader) = cluster.leader.as_deref()
            && Some(leader) != not
            && current.iter().all(|name| {
                *name == leader
                    || cluster
                        .replicas
                        .iter()
                        .any(|r| r.name == *name && !r.offline && r.lag.is_some_and(|l| l < 50))
            })
        {
            return cluster.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the stream did not settle (not {not:?}, current {current:?}): {asked:?}"
        );
        poll.tick().await;
    }
}

/// Publishes 0, 1, 2, .. until `stop`, each until acknowledged or given up on after a
/// timeout (then the next value is tried: an unanswered value may or may not be stored).
async fn publish(
    js: jetstream::Context,
    history: Arc<Mutex<History>>,
    stop: Arc<tokio::sync::Notify>,
) {
    let mut value = 0u64;
    let stopped = stop.notified();
    tokio::pin!(stopped);
    // After a failed publish (no server, no leader), a short pause before the next value.
    let mut backoff = tokio::time::interval(Duration::from_millis(10));
    loop {
        history.lock().unwrap().attempted.insert(value);
        let sent = async {
            js.publish(format!("events.{}", value % 5), value.to_string().into())
                .await?
                .await
        };
        tokio::select! {
            () = &mut stopped => return,
            sent = tokio::time::timeout(Duration::from_secs(1), sent) => {
                match sent {
                    Ok(Ok(ack)) => {
                        history.lock().unwrap().acked.insert(value, ack.sequence);
                    }
                    _ => {
                        backoff.tick().await;
                    }
                }
            }
        }
        value += 1;
    }
}

/// How many values are acknowledged so far.
fn acked_so_far(history: &Mutex<History>) -> usize {
    history.lock().unwrap().acked.len()
}

/// Waits until `history` has `more` acknowledgements beyond `from`.
async fn progress(history: &Mutex<History>, from: usize, more: usize) {
    let deadline = Instant::now() + WAIT;
    let mut poll = tokio::time::interval(Duration::from_millis(10));
    while acked_so_far(history) < from + more {
        assert!(Instant::now() < deadline, "no progress after a fault");
        poll.tick().await;
    }
}

/// What the nemesis does, a fault per round.
#[derive(Clone, Copy)]
enum Nemesis {
    /// kill -9 of the leader, kill -9 of a follower, SIGSTOP of the leader, in turn.
    Processes,
    /// The leader cut off the network, then a follower (a minority), in turn.
    Partitions,
}

/// The rounds `variable` asks for, else `default`.
fn rounds(variable: &str, default: usize) -> usize {
    std::env::var(variable)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_r3_stream_loses_nothing_acknowledged_through_kills_and_pauses() {
    let cluster = Cluster::start(None).await;
    workload(cluster, rounds("FAULT_ROUNDS", 50), Nemesis::Processes).await;
}

/// The servers in network namespaces of their own (as root, with iproute2): the leader, then
/// a follower, cut off and joined again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_r3_stream_loses_nothing_acknowledged_through_partitions() {
    let cluster = Cluster::start(Some(Network::new(3))).await;
    workload(cluster, rounds("PARTITION_ROUNDS", 20), Nemesis::Partitions).await;
}

/// Publishes through `rounds` faults of `nemesis`, then checks what was read against what
/// was acknowledged.
async fn workload(mut cluster: Cluster, rounds: usize, nemesis: Nemesis) {
    // A server paused with SIGSTOP (or cut off) keeps its connections open, and its kernel
    // may still accept new ones: the client finds out by the pings it stops answering, and
    // gives a server half a second to say hello before it tries the next (the defaults, a
    // minute of pings and 5 s per attempt, would measure the client, not the cluster).
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .ping_interval(Duration::from_millis(250))
        .connection_timeout(Duration::from_millis(500))
        .reconnect_delay_callback(|_| Duration::from_millis(50))
        .connect(cluster.urls())
        .await
        .unwrap();
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: "EVENTS".into(),
        subjects: vec!["events.>".into()],
        num_replicas: 3,
        ..Default::default()
    })
    .await
    .expect("an R3 create");
    let names: Vec<String> = cluster.servers.keys().cloned().collect();
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    settled(&js, None, &all).await;

    let history = Arc::new(Mutex::new(History::default()));
    let stop = Arc::new(tokio::sync::Notify::new());
    let publisher = tokio::spawn(publish(js.clone(), history.clone(), stop.clone()));
    progress(&history, 0, 20).await;

    let mut failovers = Vec::new();
    for round in 0..rounds {
        let leader = settled(&js, None, &all).await.leader.unwrap();
        let follower = names.iter().find(|n| **n != leader).unwrap().clone();
        let acked = acked_so_far(&history);
        let started = Instant::now();
        match (nemesis, round % 3) {
            // The leader dies; a new one takes over; the old one comes back as a follower.
            (Nemesis::Processes, 0) => {
                println!("round {round}: kill -9 the leader {leader}");
                cluster.kill(&leader);
                progress(&history, acked, 1).await;
                failovers.push(started.elapsed());
                cluster.restart(&leader);
            }
            // A follower dies and comes back; the leader never stops.
            (Nemesis::Processes, 1) => {
                println!("round {round}: kill -9 the follower {follower}");
                cluster.kill(&follower);
                progress(&history, acked, 1).await;
                cluster.restart(&follower);
            }
            // The leader is paused past the election timeout, then resumes as a follower.
            (Nemesis::Processes, _) => {
                println!("round {round}: SIGSTOP the leader {leader}");
                cluster.signal(&leader, "STOP");
                settled(&js, Some(&leader), &[]).await;
                let acked = acked_so_far(&history);
                progress(&history, acked, 1).await;
                failovers.push(started.elapsed());
                cluster.signal(&leader, "CONT");
            }
            // The leader is cut off: the majority elects another and goes on; the old
            // leader, joined again, follows it (what it took alone is never acknowledged).
            (Nemesis::Partitions, 0 | 2) => {
                println!("round {round}: cut off the leader {leader}");
                cluster.partition(&leader, true);
                settled(&js, Some(&leader), &[]).await;
                let acked = acked_so_far(&history);
                progress(&history, acked, 1).await;
                failovers.push(started.elapsed());
                cluster.partition(&leader, false);
            }
            // A follower is cut off (a minority): the leader goes on with the other.
            (Nemesis::Partitions, _) => {
                println!("round {round}: cut off the follower {follower}");
                cluster.partition(&follower, true);
                progress(&history, acked, 20).await;
                cluster.partition(&follower, false);
            }
        }
        // Back to three current replicas before the next fault.
        settled(&js, None, &all).await;
        let acked = acked_so_far(&history);
        progress(&history, acked, 5).await;
    }
    stop.notify_one();
    publisher.await.unwrap();

    // The checker.
    let history = std::mem::take(&mut *history.lock().unwrap());
    let newest_ack = history.acked.values().copied().max().unwrap_or(0);
    let read = common::values::read_values(&js, "EVENTS", "checker", newest_ack).await;
    let mut by_seq: BTreeMap<u64, u64> = BTreeMap::new();
    let mut conflicts = Vec::new();
    let mut times: BTreeMap<u64, usize> = BTreeMap::new();
    for &(seq, value) in &read {
        if let Some(other) = by_seq.insert(seq, value)
            && other != value
        {
            conflicts.push(format!("seq {seq} read as {other} and {value}"));
        }
        *times.entry(value).or_default() += 1;
    }
    let mut acked_by_seq: BTreeMap<u64, u64> = BTreeMap::new();
    for (&value, &seq) in &history.acked {
        if let Some(other) = acked_by_seq.insert(seq, value) {
            conflicts.push(format!("seq {seq} acknowledged for {other} and {value}"));
        }
        if let Some(&stored) = by_seq.get(&seq)
            && stored != value
        {
            conflicts.push(format!(
                "seq {seq} acknowledged for {value}, read as {stored}"
            ));
        }
    }
    let lost: Vec<u64> = history
        .acked
        .keys()
        .filter(|v| !times.contains_key(v))
        .copied()
        .collect();
    let unexpected: Vec<u64> = times
        .keys()
        .filter(|v| !history.attempted.contains(v))
        .copied()
        .collect();
    let duplicates = times.values().filter(|n| **n > 1).count();
    let twice: Vec<(u64, Vec<u64>)> = times
        .iter()
        .filter(|(_, n)| **n > 1)
        .take(5)
        .map(|(v, _)| {
            let seqs = read
                .iter()
                .filter(|(_, r)| r == v)
                .map(|(s, _)| *s)
                .collect();
            (*v, seqs)
        })
        .collect();
    if !twice.is_empty() {
        println!("read twice (value, sequences), the first few: {twice:?}");
    }
    failovers.sort();
    println!(
        "faults: {rounds} rounds; {} attempted, {} acknowledged, {} read; lost {}, unexpected \
         {}, duplicated {duplicates}, conflicts {}; failover (kill or pause of the leader to \
         the next ack) median {:?}, max {:?}",
        history.attempted.len(),
        history.acked.len(),
        read.len(),
        lost.len(),
        unexpected.len(),
        conflicts.len(),
        failovers.get(failovers.len() / 2),
        failovers.last(),
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(unexpected.is_empty(), "unexpected: {unexpected:?}");
    assert!(conflicts.is_empty(), "conflicts: {conflicts:?}");
    assert!(twice.is_empty(), "read twice: {twice:?}");
}
