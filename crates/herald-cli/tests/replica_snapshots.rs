//! Snapshots of replicated streams (issue 22): the groups of three `herald serve` processes
//! snapshot every 20 entries (`raft_snapshot_entries`, here through its environment
//! variable) and drop their Raft logs before; a replica that was down past that catches up from a snapshot and the others'
//! copies, and a replica restarted after its log was compacted starts from its snapshot.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use common::HeraldProcess;
use common::sse::{ask, cluster_flush, nats as connect};
use common::values::{self, holds};

const WAIT: Duration = Duration::from_secs(30);
const SECRET: &str = "snapshots-secret";

/// A server of the cluster, snapshotting its stream groups every 20 entries.
fn server(data: &std::path::Path, seeds: &[&HeraldProcess]) -> HeraldProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command.env("HERALD_RAFT_SNAPSHOT_ENTRIES", "20");
    let seeds: Vec<String> = seeds.iter().map(|s| s.cluster_addr()).collect();
    let seeds = seeds.join(",");
    let mut args = vec![
        "--cluster-listen",
        "127.0.0.1:0",
        "--cluster-secret",
        SECRET,
        "--data-dir",
        data.to_str().unwrap(),
    ];
    if !seeds.is_empty() {
        args.extend(["--seeds", &seeds]);
    }
    HeraldProcess::spawn(command, &args)
}

async fn name_of(server: &HeraldProcess) -> String {
    let client = connect(server).await;
    cluster_flush(&client, r#"{"peers":2,"meta":3,"timeout_ms":8000}"#).await;
    let info = ask(&client, "$HERALD.API.CLUSTER.INFO", "").await;
    info["name"].as_str().unwrap().to_owned()
}

async fn publish(js: &jetstream::Context, value: u64) -> u64 {
    values::publish_value(js, "events.x", value, Instant::now() + WAIT).await
}

/// Lines in each stream group's Raft log under `data`.
fn raft_log_lines(data: &std::path::Path) -> usize {
    std::fs::read_dir(data.join("raft"))
        .unwrap()
        .map(|group| std::fs::read(group.unwrap().path().join("log")).unwrap_or_default())
        .map(|log| log.iter().filter(|b| **b == b'\n').count())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_the_compacted_log_catches_up_from_a_snapshot() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = server(dirs[0].path(), &[]);
    let b = server(dirs[1].path(), &[&a]);
    let c = server(dirs[2].path(), &[&a]);
    let mut servers = BTreeMap::new();
    for (at, s) in [a, b, c].into_iter().enumerate() {
        servers.insert(name_of(&s).await, (s, at));
    }
    let first = &servers.values().next().unwrap().0;
    let js = jetstream::new(connect(first).await);
    let mut created = js
        .create_stream(stream::Config {
            name: "EVENTS".into(),
            subjects: vec!["events.>".into()],
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    let leader = created
        .info()
        .await
        .unwrap()
        .cluster
        .clone()
        .unwrap()
        .leader
        .unwrap();
    let down = servers.keys().find(|n| **n != leader).unwrap().clone();
    let live = servers.keys().find(|n| **n != down).unwrap().clone();
    let js = jetstream::new(connect(&servers[&live].0).await);
    for value in 0..30 {
        assert_eq!(publish(&js, value).await, value + 1);
    }

    // One replica is down while the others go far past what their logs keep.
    let (gone, at) = servers.remove(&down).unwrap();
    gone.kill9();
    for value in 30..300 {
        publish(&js, value).await;
    }
    // A message deleted while it was down: it must go from its copy too.
    assert!(
        js.get_stream("EVENTS")
            .await
            .unwrap()
            .delete_message(5)
            .await
            .unwrap()
    );
    let lines = raft_log_lines(dirs[servers[&leader].1].path());
    assert!(
        lines < 150,
        "the leader's Raft log was not compacted: {lines} lines"
    );

    let back = server(dirs[at].path(), &[&servers[&live].0]);
    holds(&back, 299, 300).await;

    // The leader restarts from its own snapshot (its log begins after it) and goes on.
    let (old, leader_at) = servers.remove(&leader).unwrap();
    old.kill9();
    let survivor = &servers.values().next().unwrap().0;
    let js = jetstream::new(connect(survivor).await);
    for value in 300..310 {
        publish(&js, value).await;
    }
    let leader_back = server(dirs[leader_at].path(), &[survivor]);
    for copy in [&back, &leader_back, survivor] {
        holds(copy, 309, 310).await;
    }

    // The caught-up copy, read alone: every value once but the deleted one.
    drop(servers);
    assert!(leader_back.terminate().success());
    assert!(back.terminate().success());
    let alone = HeraldProcess::start(&["--data-dir", dirs[at].path().to_str().unwrap()]);
    let js = jetstream::new(connect(&alone).await);
    let read = values::read_values(&js, "EVENTS", "reader", 0).await;
    let expected: Vec<(u64, u64)> = (0..310).filter(|v| *v != 4).map(|v| (v + 1, v)).collect();
    assert_eq!(read, expected);
}
