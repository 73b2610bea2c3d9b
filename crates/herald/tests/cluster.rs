//! Nodes of one process clustered over real loopback sockets (gossip on UDP, routes on TCP).
//! The multi-process tests (kill -9, `herald serve`) live in herald-cli's tests.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

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
    // b's subscription got them too, over its own route (not synchronised with c's: wait).
    let msg = tokio::time::timeout(WAIT, b1.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.text().unwrap(), "0");
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
/// Another node's interest keeps a scope here while it lasts, and no longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_held_by_other_nodes_are_forgotten_with_their_interest() {
    let nodes = cluster(2).await;
    let here = nodes[0].scopes();
    for round in 0..3 {
        let scope = format!("tenant-{round}");
        let mut sub = nodes[1].router(&scope, 10).subscribe("x").unwrap();
        nodes[1].flush().await.unwrap();
        assert!(nodes[0].scopes().contains(&scope), "{round}");
        nodes[0].router(&scope, 10).publish("x", "hi").unwrap();
        let msg = tokio::time::timeout(WAIT, sub.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(msg.text().unwrap(), "hi");
        drop(sub);
        // The route that delivered the message may hold the scope until its read is done.
        eventually("the subscriber's node forgets the scope", || {
            nodes[1].reclaim_scopes();
            !nodes[1].scopes().contains(&scope)
        })
        .await;
        // The flush's ping is answered after the peer applied the unsubscription.
        nodes[1].flush().await.unwrap();
        assert_eq!(nodes[0].scopes(), here, "{round}");
    }
}

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
    // A flush covers the routes its node has: the late node's must be up on a and b too.
    for n in &nodes {
        n.wait_for_peers(2, WAIT).await.unwrap();
        n.flush().await.unwrap();
    }
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

/// A hand-driven peer on a node's route port, for the bad-input tests.
mod raw {
    use hmac::{Hmac, Mac};
    use sha2::Sha256;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;

    use super::WAIT;

    pub fn mac(key: &[u8], parts: &[&[u8]]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub async fn connect(addr: &str) -> BufReader<TcpStream> {
        BufReader::new(TcpStream::connect(addr).await.unwrap())
    }

    pub async fn line(conn: &mut BufReader<TcpStream>) -> String {
        let mut line = String::new();
        tokio::time::timeout(WAIT, conn.read_line(&mut line))
            .await
            .expect("no line in time")
            .unwrap();
        line
    }

    /// Waits until the node closes the connection (reading and discarding what it sends).
    pub async fn closed(conn: &mut BufReader<TcpStream>) {
        let mut sink = vec![0u8; 64 * 1024];
        loop {
            match tokio::time::timeout(WAIT, conn.read(&mut sink)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(_)) => {}
                Err(_) => panic!("the node did not close the connection"),
            }
        }
    }

    /// Completes the handshake as node `name` of cluster "herald" with `secret`.
    pub async fn handshake(addr: &str, name: &str, secret: &str) -> BufReader<TcpStream> {
        let mut conn = connect(addr).await;
        let hello = format!(
            "ROUTE {{\"cluster\":\"herald\",\"name\":\"{name}\",\"generation\":1,\"route\":\"127.0.0.1:9\",\"nonce\":\"n0\"}}\r\n"
        );
        conn.write_all(hello.as_bytes()).await.unwrap();
        let answer = line(&mut conn).await;
        let json: serde_json::Value =
            serde_json::from_str(answer.trim().strip_prefix("ROUTE ").expect("ROUTE hello"))
                .unwrap();
        let theirs = json["nonce"].as_str().unwrap();
        let proof = mac(
            secret.as_bytes(),
            &[
                b"herald-route",
                b"dial",
                b"herald",
                theirs.as_bytes(),
                b"n0",
            ],
        );
        conn.write_all(format!("ROUTE {{\"proof\":\"{proof}\"}}\r\n").as_bytes())
            .await
            .unwrap();
        conn
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_port_refuses_bad_peers() {
    use tokio::io::AsyncWriteExt;
    let nodes = cluster(2).await;
    let port = addr(&nodes[0]);
    let mut sub = nodes[1].router("app", 1000).subscribe("x").unwrap();
    nodes[1].flush().await.unwrap();

    // Garbage, an endless control line, a wrong cluster, a wrong secret: each is closed.
    let mut conn = raw::connect(&port).await;
    conn.write_all(b"\x00\xffGARBAGE\r\n").await.unwrap();
    raw::closed(&mut conn).await;
    let mut conn = raw::connect(&port).await;
    conn.write_all(&vec![b'R'; 100_000]).await.unwrap();
    raw::closed(&mut conn).await;
    let mut conn = raw::connect(&port).await;
    conn.write_all(b"ROUTE {\"cluster\":\"other\",\"name\":\"x\",\"generation\":1,\"route\":\"127.0.0.1:9\",\"nonce\":\"n\"}\r\n")
        .await
        .unwrap();
    assert_eq!(
        raw::line(&mut conn).await,
        "-ERR 'cluster name mismatch'\r\n"
    );
    raw::closed(&mut conn).await;
    let mut conn = raw::handshake(&port, "intruder", "wrong-secret").await;
    // Whatever it sends after a failed proof is never applied.
    conn.write_all(b"RMSG app x 8\r\ninjected\r\n")
        .await
        .unwrap();
    let _hello_was_read = ();
    assert_eq!(
        raw::line(&mut conn).await,
        "-ERR 'authentication failed'\r\n"
    );
    raw::closed(&mut conn).await;

    // An authenticated peer that sends a frame over the size limit is cut off.
    let mut conn = raw::handshake(&port, "huge", "test-secret").await;
    conn.write_all(b"RMSG app x 999999999999\r\n")
        .await
        .unwrap();
    raw::closed(&mut conn).await;

    // The cluster is unaffected.
    nodes[0]
        .router("app", 10)
        .publish("x", "still fine")
        .unwrap();
    let msg = tokio::time::timeout(WAIT, sub.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.text().unwrap(), "still fine");
    nodes[0].flush().await.unwrap();
    assert!(sub.try_recv().is_err(), "nothing injected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_route_is_closed_and_never_slows_the_publisher() {
    let node = Node::builder()
        .name("busy")
        .cluster_secret("test-secret")
        .route_max_pending(64 * 1024)
        .start()
        .await
        .unwrap();
    // A peer that shares interest in everything, then never reads.
    let conn = raw::handshake(&addr(&node), "stalled", "test-secret").await;
    let mut conn = conn;
    tokio::io::AsyncWriteExt::write_all(&mut conn, b"RS+ app >\r\nPING\r\n")
        .await
        .unwrap();
    // Its PONG answer proves the interest was applied.
    let mut line = raw::line(&mut conn).await;
    while line.starts_with("RS+") || line.starts_with("ROUTE") {
        line = raw::line(&mut conn).await;
    }
    assert_eq!(line, "PONG\r\n");
    let router = node.router("app", 10);
    let payload = vec![b'x'; 1024];
    // Far more than the socket buffers and the route's 64 KiB limit hold.
    for _ in 0..50_000 {
        router.publish("load", payload.clone()).unwrap();
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while node
        .cluster_info()
        .unwrap()
        .members
        .iter()
        .any(|m| m.name == "stalled")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stalled route not closed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(conn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_seeds_and_twin_names_do_no_harm() {
    // A seed that answers nothing: the node starts and works alone.
    let lonely = Node::builder()
        .name("lonely")
        .seeds(["127.0.0.1:9"])
        .start()
        .await
        .unwrap();
    let mut sub = lonely.router("app", 10).subscribe("x").unwrap();
    lonely.router("app", 10).publish("x", "alone").unwrap();
    assert_eq!(sub.try_recv().unwrap().text().unwrap(), "alone");
    lonely.flush().await.unwrap();

    // Two nodes named alike (a configuration mistake, logged): both still get their messages.
    let first = node("twin", &[]).await;
    let seed = vec![addr(&first)];
    let second = node("twin", &seed).await;
    let third = node("other", &seed).await;
    for n in [&first, &second, &third] {
        if let Err(e) = n.wait_for_peers(2, WAIT).await {
            for n in [&first, &second, &third] {
                eprintln!("{:#?}", n.cluster_info());
            }
            panic!("{e}");
        }
    }
    let mut s1 = first.router("app", 10).subscribe("t").unwrap();
    let mut s2 = second.router("app", 10).subscribe("t").unwrap();
    first.flush().await.unwrap();
    second.flush().await.unwrap();
    third.router("app", 10).publish("t", "both").unwrap();
    for sub in [&mut s1, &mut s2] {
        let msg = tokio::time::timeout(WAIT, sub.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(msg.text().unwrap(), "both");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_only_subscriptions_see_only_their_node() {
    let nodes = cluster(2).await;
    let b = nodes[1].router("app", 10);
    let mut shared = b.subscribe("svc.info").unwrap();
    let mut mine = b
        .subscribe_with("svc.info", herald::SubscribeOptions::new().node_only())
        .unwrap();
    nodes[1].flush().await.unwrap();
    nodes[0]
        .router("app", 10)
        .publish("svc.info", "from a")
        .unwrap();
    let msg = tokio::time::timeout(WAIT, shared.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.text().unwrap(), "from a");
    assert!(
        mine.try_recv().is_err(),
        "a's publish reached a node-only subscription"
    );
    b.publish("svc.info", "from b").unwrap();
    assert_eq!(mine.try_recv().unwrap().text().unwrap(), "from b");
    // Only the shared one is announced.
    assert_eq!(nodes[1].cluster_info().unwrap().interest, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_shuts_down_says_goodbye() {
    // Gossip this slow would take over 15 s to notice a silent death: only the goodbye
    // on the route can make the departure show within the test's wait.
    let slow = |name: &str| {
        Node::builder()
            .name(name)
            .cluster_secret("test-secret")
            .gossip_interval(Duration::from_secs(2))
    };
    let a = slow("a").start().await.unwrap();
    let b = slow("b").seeds([addr(&a)]).start().await.unwrap();
    a.wait_for_peers(1, WAIT).await.unwrap();
    b.wait_for_peers(1, WAIT).await.unwrap();
    b.shutdown().await;
    eventually("a sees b gone", || {
        a.cluster_info()
            .unwrap()
            .members
            .iter()
            .all(|m| m.state == "dead" && m.route.is_none())
    })
    .await;
    // And a's barrier no longer waits for b.
    tokio::time::timeout(WAIT, a.flush())
        .await
        .unwrap()
        .unwrap();
}
