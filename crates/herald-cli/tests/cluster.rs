//! Clusters of `herald serve` processes (and an embedded node), with async-nats clients:
//! forwarding by interest, isolation, queue groups, order, kill -9 and rejoin, refused peers.

mod common;

use std::time::Duration;

use async_nats::{Client, Subscriber};
use common::HeraldProcess;
use common::sse::ask;
use futures::StreamExt;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);
const SECRET: &str = "test-secret";

fn node(name: &str, seeds: &[&HeraldProcess]) -> HeraldProcess {
    let seeds: Vec<String> = seeds.iter().map(|s| s.cluster_addr()).collect();
    let mut args = vec![
        "--name",
        name,
        "--cluster-listen",
        "127.0.0.1:0",
        "--cluster-secret",
        SECRET,
    ];
    let joined = seeds.join(",");
    if !seeds.is_empty() {
        args.extend(["--seeds", &joined]);
    }
    HeraldProcess::start(&args)
}

async fn connect(server: &HeraldProcess) -> Client {
    connect_scope(server, None).await
}

async fn connect_scope(server: &HeraldProcess, scope: Option<&str>) -> Client {
    let mut options = async_nats::ConnectOptions::new();
    if let Some(scope) = scope {
        options = options.user_and_password(scope.into(), "".into());
    }
    tokio::time::timeout(WAIT, options.connect(server.url()))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// Waits until the client's server routes to `peers` members and they all know its
/// subscriptions (the client's earlier SUBs included: they were handled before this request).
async fn cluster_flush(client: &Client, peers: usize) {
    let answer = ask(
        client,
        "$HERALD.API.CLUSTER.FLUSH",
        &format!("{{\"peers\":{peers}}}"),
    )
    .await;
    assert_eq!(answer, serde_json::json!({}), "flush failed");
}

/// The client's own round trip: every message queued for it before this has arrived.
async fn sync(client: &Client) {
    let err = tokio::time::timeout(WAIT, client.request("_test.barrier", "".into()))
        .await
        .expect("barrier timed out")
        .expect_err("nobody answers the barrier");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}

async fn next(sub: &mut Subscriber) -> async_nats::Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("no message within the timeout")
        .expect("subscription ended")
}

/// Takes what `sub` has already received (call after `sync` of its client). Unconstrained:
/// tokio's cooperative budget would otherwise report "pending" after 128 ready messages.
fn drain(sub: &mut Subscriber) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(Some(msg)) = tokio::task::unconstrained(sub.next()).now_or_never() {
        got.push(String::from_utf8_lossy(&msg.payload).into_owned());
    }
    got
}

use futures::FutureExt;

/// Messages the node received over all its routes.
async fn routed_in(client: &Client) -> u64 {
    let info = ask(client, "$HERALD.API.CLUSTER.INFO", "").await;
    info["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["route"]["msgs_in"].as_u64())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hermes_layout_each_subscriber_once() {
    let a = node("a", &[]);
    let b = node("b", &[&a]);
    let c = node("c", &[&a]);
    let (ca, cb, cc) = (connect(&a).await, connect(&b).await, connect(&c).await);
    // A: 1 on user.created, 1 on user.updated; B: 5 on user.created; C: 2 on user.updated.
    let mut a_created = ca.subscribe("user.created").await.unwrap();
    let mut a_updated = ca.subscribe("user.updated").await.unwrap();
    let mut b_created = Vec::new();
    for _ in 0..5 {
        b_created.push(cb.subscribe("user.created").await.unwrap());
    }
    let mut c_updated = Vec::new();
    for _ in 0..2 {
        c_updated.push(cc.subscribe("user.updated").await.unwrap());
    }
    for client in [&ca, &cb, &cc] {
        cluster_flush(client, 2).await;
    }
    let c_before = routed_in(&cc).await;
    for (i, publisher) in [&ca, &cb, &cc].into_iter().enumerate() {
        publisher
            .publish("user.created", format!("created-{i}").into())
            .await
            .unwrap();
        publisher
            .publish("user.updated", format!("updated-{i}").into())
            .await
            .unwrap();
        // The publisher's server has handled both and forwarded them; every route answered a
        // ping sent after them.
        sync(publisher).await;
        cluster_flush(publisher, 2).await;
    }
    for client in [&ca, &cb, &cc] {
        sync(client).await;
    }
    let all = |tag: &str| -> Vec<String> { (0..3).map(|i| format!("{tag}-{i}")).collect() };
    assert_eq!(drain(&mut a_created), all("created"));
    assert_eq!(drain(&mut a_updated), all("updated"));
    for sub in &mut b_created {
        assert_eq!(drain(sub), all("created"));
    }
    for sub in &mut c_updated {
        assert_eq!(drain(sub), all("updated"));
    }
    // C has no interest in user.created: of the four messages A and B published, only their
    // two user.updated crossed a route to C.
    assert_eq!(routed_in(&cc).await - c_before, 2);

    // A malformed barrier request gets a clear error, not a silent default.
    for body in ["not json", "{\"peer\":2}"] {
        let answer = ask(&ca, "$HERALD.API.CLUSTER.FLUSH", body).await;
        let err = answer["error"].as_str().unwrap_or_default();
        assert!(err.starts_with("bad request"), "{body}: {answer}");
    }

    // `herald cluster status` lists the other two members, live and routed.
    let out = tokio::task::spawn_blocking({
        let url = a.url();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
                .args(["cluster", "status", "--server", &url])
                .output()
                .expect("run herald cluster status")
        }
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.starts_with("cluster herald · node a at "), "{text}");
    for name in ["b", "c"] {
        let row = text
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}: {text}"));
        assert!(row.contains(" live ") && !row.contains(" none "), "{row}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_wildcards_queues_and_order_across_nodes() {
    let a = node("a", &[]);
    let b = node("b", &[&a]);
    let pa = connect_scope(&a, Some("shop")).await;
    let other = connect_scope(&b, Some("blog")).await;
    let shop_b = connect_scope(&b, Some("shop")).await;
    // The cluster API answers in the default scope.
    let (admin_a, admin_b) = (connect(&a).await, connect(&b).await);
    let mut wrong_scope = other.subscribe("orders.>").await.unwrap();
    let mut wild = shop_b.subscribe("orders.*.paid").await.unwrap();
    let mut deep = shop_b.subscribe("orders.>").await.unwrap();
    let mut q1 = shop_b
        .queue_subscribe("jobs", "workers".into())
        .await
        .unwrap();
    let mut q2 = shop_b
        .queue_subscribe("jobs", "workers".into())
        .await
        .unwrap();
    sync(&other).await;
    sync(&shop_b).await;
    cluster_flush(&admin_b, 1).await;
    for i in 0..200 {
        pa.publish("orders.7.paid", format!("{i}").into())
            .await
            .unwrap();
    }
    for i in 0..50 {
        pa.publish("jobs", format!("job-{i}").into()).await.unwrap();
    }
    sync(&pa).await;
    cluster_flush(&admin_a, 1).await;
    sync(&shop_b).await;
    sync(&other).await;
    let expected: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    assert_eq!(drain(&mut wild), expected, "in publish order, once each");
    assert_eq!(drain(&mut deep), expected);
    assert!(drain(&mut wrong_scope).is_empty(), "scopes stay apart");
    let (j1, j2) = (drain(&mut q1), drain(&mut q2));
    assert_eq!(j1.len() + j2.len(), 50, "each job to exactly one member");
    // A queue member on the publisher's node is preferred over remote ones.
    let mut local_member = pa.queue_subscribe("jobs", "workers".into()).await.unwrap();
    sync(&pa).await;
    for i in 0..10 {
        pa.publish("jobs", format!("local-{i}").into())
            .await
            .unwrap();
    }
    sync(&pa).await;
    cluster_flush(&admin_a, 1).await;
    sync(&shop_b).await;
    assert_eq!(drain(&mut local_member).len(), 10);
    assert!(drain(&mut q1).is_empty() && drain(&mut q2).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_rejoin() {
    let a = node("a", &[]);
    let b = node("b", &[&a]);
    let c = node("c", &[&a]);
    let (ca, cb) = (connect(&a).await, connect(&b).await);
    let mut on_b = cb.subscribe("ticks").await.unwrap();
    {
        let cc = connect(&c).await;
        let _on_c = cc.subscribe("ticks").await.unwrap();
        cluster_flush(&cc, 2).await;
        cluster_flush(&cb, 2).await;
    }
    let c_addr = c.cluster_addr();
    c.kill9();
    // A still delivers to B; C's interest is gone with its route, and C itself leaves A's
    // member list within the failure-detection time (the flush waits for that).
    cluster_flush(&ca, 1).await;
    ca.publish("ticks", "after-kill".into()).await.unwrap();
    assert_eq!(next(&mut on_b).await.payload, "after-kill");
    let info = ask(&ca, "$HERALD.API.CLUSTER.INFO", "").await;
    let c_rows: Vec<&Value> = info["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == "c")
        .collect();
    assert!(
        c_rows
            .iter()
            .all(|m| m["state"] == "dead" && m["route"].is_null()),
        "{info:#}"
    );
    // Restarted (same name and address, new generation), C rejoins through its seed alone.
    let c = HeraldProcess::start(&[
        "--name",
        "c",
        "--cluster-listen",
        &c_addr,
        "--cluster-secret",
        SECRET,
        "--seeds",
        &a.cluster_addr(),
    ]);
    let cc = connect(&c).await;
    let mut on_c = cc.subscribe("ticks").await.unwrap();
    cluster_flush(&cc, 2).await;
    ca.publish("ticks", "after-restart".into()).await.unwrap();
    assert_eq!(next(&mut on_c).await.payload, "after-restart");
    assert_eq!(next(&mut on_b).await.payload, "after-restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_or_cluster_cannot_join() {
    let a = node("a", &[]);
    let ca = connect(&a).await;
    let mut sub = ca.subscribe("x").await.unwrap();
    for (flag, value) in [("--cluster-secret", "wrong"), ("--cluster-name", "other")] {
        let mut args = vec![
            "--name",
            "intruder",
            "--cluster-listen",
            "127.0.0.1:0",
            "--seeds",
        ];
        let seed = a.cluster_addr();
        args.push(&seed);
        if flag == "--cluster-name" {
            args.extend(["--cluster-secret", SECRET]);
        }
        args.extend([flag, value]);
        let intruder = HeraldProcess::start(&args);
        let ci = connect(&intruder).await;
        let answer = ask(
            &ci,
            "$HERALD.API.CLUSTER.FLUSH",
            "{\"peers\":1,\"timeout_ms\":1500}",
        )
        .await;
        assert!(answer["error"].is_string(), "{answer}");
        ci.publish("x", "injected".into()).await.unwrap();
        sync(&ci).await;
    }
    sync(&ca).await;
    assert!(drain(&mut sub).is_empty());
    let info = ask(&ca, "$HERALD.API.CLUSTER.INFO", "").await;
    assert_eq!(info["members"], serde_json::json!([]), "{info:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_node_and_server_in_one_cluster() {
    let server = node("server", &[]);
    let client = connect(&server).await;
    let embedded = herald::Node::builder()
        .name("app")
        .cluster_secret(SECRET)
        .seeds([server.cluster_addr()])
        .start()
        .await
        .expect("embedded node starts");
    let router = embedded.router("default", 100);
    let mut from_client = router.subscribe("to.app").unwrap();
    let mut from_app = client.subscribe("to.client").await.unwrap();
    cluster_flush(&client, 1).await;
    embedded.wait_for_peers(1, WAIT).await.unwrap();
    embedded.flush().await.unwrap();
    router.publish("to.client", "hello client").unwrap();
    assert_eq!(next(&mut from_app).await.payload, "hello client");
    client.publish("to.app", "hello app".into()).await.unwrap();
    let msg = tokio::time::timeout(WAIT, from_client.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.text().unwrap(), "hello app");
    // Requests both ways.
    let _svc = router
        .on("app.echo", |m| {
            let _ = m.respond(m.payload().clone());
        })
        .unwrap();
    embedded.flush().await.unwrap();
    let reply = client.request("app.echo", "ping".into()).await.unwrap();
    assert_eq!(reply.payload, "ping");
    embedded.shutdown().await;
}
