//! Nodes of one process clustered over real loopback sockets (gossip on UDP, routes on TCP).
//! The multi-process tests (kill -9, `herald serve`) live in herald-cli's tests.

use std::time::Duration;

use herald::{Error, Node};

const WAIT: Duration = Duration::from_secs(10);

async fn node(name: &str, seeds: &[String]) -> Node {
    Node::builder()
        .name(name)
        .cluster_secret("test-secret")
        .seeds(seeds.iter().cloned())
        .start()
        .await
        .expect("node starts")
}

fn addr(node: &Node) -> String {
    node.cluster_info().expect("clustered").route_addr
}

/// Starts `n` nodes seeded from the first and waits until each routes to all others.
async fn cluster(n: usize) -> Vec<Node> {
    let first = node("n0", &[]).await;
    let seed = vec![addr(&first)];
    let mut nodes = vec![first];
    for i in 1..n {
        nodes.push(node(&format!("n{i}"), &seed).await);
    }
    for node in &nodes {
        node.wait_for_peers(n - 1, WAIT).await.expect("routes up");
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reaches_other_nodes_once() {
    let nodes = cluster(3).await;
    let (a, b, c) = (
        nodes[0].router("app", 100),
        nodes[1].router("app", 100),
        nodes[2].router("app", 100),
    );
    // Overlapping patterns on one node: still one copy per subscription, one frame per node.
    let mut b1 = b.subscribe("user.*").unwrap();
    let mut b2 = b.subscribe("user.>").unwrap();
    let mut c1 = c.subscribe("user.created").unwrap();
    nodes[1].flush().await.unwrap();
    nodes[2].flush().await.unwrap();
    a.publish("user.created", "hello").unwrap();
    for sub in [&mut b1, &mut b2, &mut c1] {
        let msg = tokio::time::timeout(WAIT, sub.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (msg.subject(), msg.text().unwrap()),
            ("user.created", "hello")
        );
    }
    let info = nodes[0].cluster_info().unwrap();
    let out: u64 = info
        .members
        .iter()
        .filter_map(|m| m.route.as_ref())
        .map(|r| r.msgs_out)
        .sum();
    assert_eq!(out, 2, "one frame per node with interest: {info:#?}");
    // Order per publisher across the route.
    for i in 0..100 {
        a.publish("user.created", i.to_string()).unwrap();
    }
    for i in 0..100 {
        let msg = tokio::time::timeout(WAIT, c1.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(msg.text().unwrap(), i.to_string());
    }
    assert!(b1.try_recv().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_queue_groups_across_nodes() {
    let nodes = cluster(2).await;
    let (a, b) = (nodes[0].router("app", 100), nodes[1].router("app", 100));
    let _echo = b
        .on("svc.echo", |msg| {
            let _ = msg.respond(msg.payload().clone());
        })
        .unwrap();
    nodes[1].flush().await.unwrap();
    let reply = a.request("svc.echo", "ping", WAIT).await.unwrap();
    assert_eq!(reply.text().unwrap(), "ping");
    assert!(matches!(
        a.request("svc.nobody", "x", WAIT).await,
        Err(Error::NoResponders(_))
    ));

    // A queue group with members on both nodes: each message to exactly one member, and a
    // publisher's local member is preferred.
    let mut qa = a.subscribe_queue("jobs", "workers").unwrap();
    let mut qb = b.subscribe_queue("jobs", "workers").unwrap();
    nodes[0].flush().await.unwrap();
    nodes[1].flush().await.unwrap();
    for i in 0..20 {
        b.publish("jobs", i.to_string()).unwrap();
    }
    for i in 0..20 {
        let msg = tokio::time::timeout(WAIT, qb.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(msg.text().unwrap(), i.to_string());
    }
    // With no local member on b, b's messages go to a's member, once each.
    drop(qb);
    nodes[1].flush().await.unwrap();
    b.publish("jobs", "remote").unwrap();
    let msg = tokio::time::timeout(WAIT, qa.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.text().unwrap(), "remote");
    nodes[0].flush().await.unwrap();
    assert!(qa.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_stay_apart_across_nodes() {
    let nodes = cluster(2).await;
    let mut other = nodes[1].router("other", 10).subscribe("x").unwrap();
    let mut same = nodes[1].router("app", 10).subscribe("x").unwrap();
    nodes[1].flush().await.unwrap();
    nodes[0].router("app", 10).publish("x", "for app").unwrap();
    let msg = tokio::time::timeout(WAIT, same.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.text().unwrap(), "for app");
    nodes[0].flush().await.unwrap();
    assert!(other.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_cannot_join() {
    let good = node("good", &[]).await;
    let bad = Node::builder()
        .name("bad")
        .cluster_secret("wrong")
        .seeds([addr(&good)])
        .start()
        .await
        .unwrap();
    let mut sub = good.router("app", 10).subscribe("x").unwrap();
    assert!(bad.wait_for_peers(1, Duration::from_secs(2)).await.is_err());
    assert!(good.cluster_info().unwrap().members.is_empty());
    bad.router("app", 10).publish("x", "injected").unwrap();
    assert!(sub.try_recv().is_err());
}

/// Polls `condition` until it holds; gossip has no barrier to wait on. Fails after `WAIT`.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_cluster_wide() {
    let nodes = cluster(2).await;
    let (a, b) = (nodes[0].router("app", 10), nodes[1].router("app", 10));
    a.groups().create("rooms").unwrap();
    a.groups().add("rooms", "room.lobby").unwrap();
    a.groups().add("rooms", "room.help").unwrap();
    let want: std::collections::BTreeSet<String> =
        ["room.help".to_owned(), "room.lobby".to_owned()].into();
    eventually("b sees the group", || {
        b.groups().topics("rooms").ok().as_ref() == Some(&want)
    })
    .await;
    assert!(matches!(
        b.groups().create("rooms"),
        Err(Error::AlreadyExists(_))
    ));

    // A node that joins later learns it too, even with its creator gone from the seed list.
    let late = node("late", &[addr(&nodes[1])]).await;
    late.wait_for_peers(2, WAIT).await.unwrap();
    let c = late.router("app", 10);
    eventually("the late node sees the group", || {
        c.groups().topics("rooms").ok().as_ref() == Some(&want)
    })
    .await;

    // Broadcast from any node reaches subscribers on every node.
    let mut on_a = a.subscribe("room.lobby").unwrap();
    let mut on_b = b.subscribe("room.help").unwrap();
    nodes[0].flush().await.unwrap();
    nodes[1].flush().await.unwrap();
    c.groups().broadcast("rooms", "hello").unwrap();
    for sub in [&mut on_a, &mut on_b] {
        let msg = tokio::time::timeout(WAIT, sub.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(msg.text().unwrap(), "hello");
    }

    // A delete anywhere is seen everywhere, and a later re-create wins over it.
    b.groups().delete("rooms").unwrap();
    eventually("a sees the delete", || a.groups().list().is_empty()).await;
    eventually("c sees the delete", || c.groups().list().is_empty()).await;
    c.groups().create("rooms").unwrap();
    eventually("a sees the re-created group", || {
        a.groups().topics("rooms").is_ok_and(|t| t.is_empty())
    })
    .await;
}
