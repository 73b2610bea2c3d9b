//! Streams across a cluster of `herald serve` processes (issue 22): the meta group where the
//! cluster's definitions are agreed, formed by servers with a data directory.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::HeraldProcess;
use common::sse::{ask, cluster_flush, nats as connect};

const WAIT: Duration = Duration::from_secs(20);
const SECRET: &str = "streams-secret";

/// The barrier of a formed 3-server cluster: routes to the 2 others, a meta group of 3 (the
/// server gives up within the client's wait for an answer).
const MEMBERS_AND_META: &str = r#"{"peers":2,"meta":3,"timeout_ms":8000}"#;

fn node(data: &std::path::Path, seeds: &[&HeraldProcess]) -> HeraldProcess {
    HeraldProcess::clustered(SECRET, seeds, &["--data-dir", data.to_str().unwrap()])
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
        cluster_flush(&client, MEMBERS_AND_META).await;
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
    assert!(gone.terminate().success());
    let back = node(dirs[follower].path(), &[&servers[0]]);
    let client = connect(&back).await;
    cluster_flush(&client, MEMBERS_AND_META).await;
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

/// One JetStream across three servers: a stream created through one is listed, described,
/// published to, consumed and deleted through the others; a second create with another
/// config is refused wherever it is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_jetstream_across_three_servers() {
    use async_nats::jetstream::{self, consumer::pull, stream};
    use futures::StreamExt;

    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = node(dirs[0].path(), &[]);
    let b = node(dirs[1].path(), &[&a]);
    let c = node(dirs[2].path(), &[&a]);
    let clients = [connect(&a).await, connect(&b).await, connect(&c).await];
    for client in &clients {
        cluster_flush(client, MEMBERS_AND_META).await;
    }
    let [ja, jb, jc] = clients.clone().map(jetstream::new);
    let orders = stream::Config {
        name: "ORDERS".into(),
        subjects: vec!["orders.>".into()],
        ..Default::default()
    };
    ja.create_stream(orders.clone())
        .await
        .expect("create through a");
    // The capture is known to every server before anyone publishes.
    for client in &clients {
        cluster_flush(client, "").await;
    }
    let mut leaders = BTreeSet::new();
    for js in [&ja, &jb, &jc] {
        let names: Vec<String> = js.stream_names().map(|n| n.unwrap()).collect().await;
        assert_eq!(names, ["ORDERS"]);
        let mut stream = js.get_stream("ORDERS").await.expect("stream info anywhere");
        let info = stream.info().await.unwrap();
        assert_eq!(info.config.subjects, ["orders.>"]);
        let cluster = info.cluster.clone().expect("a cluster object");
        assert_eq!(cluster.name.as_deref(), Some("herald"));
        leaders.insert(cluster.leader.expect("its server"));
    }
    assert_eq!(leaders.len(), 1, "one server holds it: {leaders:?}");
    let shown = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["stream", "info", "ORDERS", "--server", &b.url()])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    let leader = leaders.iter().next().unwrap();
    assert!(
        shown.contains(&format!(
            "server        {leader} (cluster herald, 1 replica)"
        )),
        "{shown}"
    );
    let too_many = stream::Config {
        name: "WIDE".into(),
        subjects: vec!["wide.>".into()],
        num_replicas: 5,
        ..Default::default()
    };
    let err = jb
        .create_stream(too_many)
        .await
        .expect_err("5 replicas on 3 servers");
    assert!(err.to_string().contains("insufficient resources"), "{err}");
    for (i, js) in [&ja, &jb, &jc].into_iter().enumerate() {
        let ack = tokio::time::timeout(WAIT, async {
            js.publish(format!("orders.{i}"), format!("order {i}").into())
                .await
                .unwrap()
                .await
        })
        .await
        .unwrap()
        .expect("a publish ack through every server");
        assert_eq!(
            (ack.stream.as_str(), ack.sequence),
            ("ORDERS", i as u64 + 1)
        );
    }
    let other = stream::Config {
        max_messages: 5,
        ..orders.clone()
    };
    let err = jc.create_stream(other).await.expect_err("another config");
    assert!(err.to_string().contains("different configuration"), "{err}");

    let stream = jb.get_stream("ORDERS").await.unwrap();
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("billing".into()),
            ..Default::default()
        })
        .await
        .expect("a consumer through b");
    let mut batch = consumer
        .fetch()
        .max_messages(3)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(msg) = tokio::time::timeout(WAIT, batch.next()).await.unwrap() {
        let msg = msg.unwrap();
        got.push(String::from_utf8(msg.payload.to_vec()).unwrap());
        msg.double_ack()
            .await
            .expect("an ack through b reaches the stream's server");
    }
    assert_eq!(got, ["order 0", "order 1", "order 2"]);
    let mut seen_from_c: jetstream::consumer::PullConsumer = jc
        .get_stream("ORDERS")
        .await
        .unwrap()
        .get_consumer("billing")
        .await
        .unwrap();
    let info = seen_from_c.info().await.unwrap();
    assert_eq!(
        (info.ack_floor.stream_sequence, info.num_ack_pending),
        (3, 0)
    );

    jc.delete_stream("ORDERS").await.expect("delete through c");
    for js in [&ja, &jb, &jc] {
        let names: Vec<String> = js.stream_names().map(|n| n.unwrap()).collect().await;
        assert!(names.is_empty(), "{names:?}");
    }
}

/// nats-py sees the same: create through one server, publish through another, consume and
/// ack through the third (`tests/py/nats_py_cluster_js.py`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_uses_one_jetstream_across_three_servers() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = node(dirs[0].path(), &[]);
    let b = node(dirs[1].path(), &[&a]);
    let c = node(dirs[2].path(), &[&a]);
    for server in [&a, &b, &c] {
        cluster_flush(&connect(server).await, MEMBERS_AND_META).await;
    }
    let script = format!(
        "{}/tests/py/nats_py_cluster_js.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let urls = [a.url(), b.url(), c.url()];
    // The script bounds itself at 50 s.
    let child = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(&script)
            .args(urls)
            .output()
    });
    let output = tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .expect("the nats-py script did not finish within 60 s")
        .unwrap()
        .expect("python3 must be installed for this test (.ci/run installs it)");
    assert!(
        output.status.success(),
        "nats-py script failed; is nats-py installed?\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
