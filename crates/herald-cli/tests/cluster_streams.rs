//! Streams across a cluster of `herald serve` processes (issue 22): the meta group where the
//! cluster's definitions are agreed, formed by servers with a data directory.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::Client;
use common::HeraldProcess;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);
const SECRET: &str = "streams-secret";

fn node(data: &std::path::Path, seeds: &[&HeraldProcess]) -> HeraldProcess {
    let joined: Vec<String> = seeds.iter().map(|s| s.cluster_addr()).collect();
    let joined = joined.join(",");
    let data = data.to_str().unwrap();
    let mut args = vec![
        "--cluster-listen",
        "127.0.0.1:0",
        "--cluster-secret",
        SECRET,
        "--data-dir",
        data,
    ];
    if !seeds.is_empty() {
        args.extend(["--seeds", &joined]);
    }
    HeraldProcess::start(&args)
}

async fn connect(server: &HeraldProcess) -> Client {
    tokio::time::timeout(WAIT, async_nats::connect(server.url()))
        .await
        .unwrap()
        .unwrap()
}

async fn ask(client: &Client, subject: &str, body: &str) -> Value {
    let reply = tokio::time::timeout(
        WAIT,
        client.request(subject.to_owned(), body.to_owned().into()),
    )
    .await
    .expect("no answer in time")
    .expect("request");
    serde_json::from_slice(&reply.payload).expect("JSON answer")
}

/// The first server forms the meta group alone; servers seeded with it join, as voters; all
/// agree on the leader; after a restart with the same data directory a server keeps its name
/// and its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_with_data_form_one_meta_group() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = node(dirs[0].path(), &[]);
    let b = node(dirs[1].path(), &[&a]);
    let c = node(dirs[2].path(), &[&a]);
    let mut leaders = BTreeSet::new();
    let mut names = Vec::new();
    for server in [&a, &b, &c] {
        let client = connect(server).await;
        let flushed = ask(
            &client,
            "$HERALD.API.CLUSTER.FLUSH",
            r#"{"peers":2,"meta":3,"timeout_ms":15000}"#,
        )
        .await;
        assert!(flushed.get("error").is_none(), "{flushed}");
        let info = ask(&client, "$HERALD.API.CLUSTER.INFO", "").await;
        let members: BTreeSet<String> = info["meta"]["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(members.len(), 3, "{info}");
        assert!(members.contains(info["name"].as_str().unwrap()));
        leaders.insert(info["meta"]["leader"].as_str().unwrap().to_owned());
        names.push(info["name"].as_str().unwrap().to_owned());
    }
    assert_eq!(leaders.len(), 1, "one leader: {leaders:?}");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["cluster", "status", "--server", &c.url()])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&status.stdout);
    let leader = leaders.iter().next().unwrap();
    assert!(
        shown.contains(&format!("meta group: leader {leader} · members ")),
        "{shown}"
    );
    assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), 3);

    // A follower restarts from its directory: same name, back in the group.
    let follower = names.iter().position(|n| !leaders.contains(n)).unwrap();
    let mut servers = vec![a, b, c];
    let gone = servers.remove(follower);
    let seed = servers[0].cluster_addr();
    assert!(gone.terminate().success());
    let back = HeraldProcess::start(&[
        "--cluster-listen",
        "127.0.0.1:0",
        "--cluster-secret",
        SECRET,
        "--data-dir",
        dirs[follower].path().to_str().unwrap(),
        "--seeds",
        &seed,
    ]);
    let client = connect(&back).await;
    let flushed = ask(
        &client,
        "$HERALD.API.CLUSTER.FLUSH",
        r#"{"peers":2,"meta":3,"timeout_ms":15000}"#,
    )
    .await;
    assert!(flushed.get("error").is_none(), "{flushed}");
    let info = ask(&client, "$HERALD.API.CLUSTER.INFO", "").await;
    assert_eq!(
        info["name"].as_str().unwrap(),
        names[follower],
        "same name: {info}"
    );
    assert_eq!(
        info["meta"]["members"].as_array().unwrap().len(),
        3,
        "{info}"
    );
}
