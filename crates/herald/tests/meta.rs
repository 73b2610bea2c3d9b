//! The meta group (cluster-wide definitions on openraft) among nodes of one process, over
//! real loopback routes, with its Raft state in real directories.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use herald::Node;
use herald::meta::{MetaGroup, MetaOptions, Outcome};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

async fn node(name: &str, seeds: &[String]) -> Node {
    Node::builder()
        .name(name)
        .cluster_secret("meta-secret")
        .seeds(seeds.iter().cloned())
        .gossip_interval(Duration::from_millis(100))
        .start()
        .await
        .expect("node starts")
}

fn addr(node: &Node) -> String {
    node.cluster_info().expect("clustered").route_addr
}

async fn meta(node: &Node, dir: &std::path::Path) -> MetaGroup {
    MetaGroup::start(
        node,
        MetaOptions::new(dir)
            .bootstrap_expect(3)
            .heartbeat(Duration::from_millis(50)),
    )
    .await
    .expect("meta group starts")
}

/// Waits until `group` has applied `key` with `value`.
async fn sees(group: &MetaGroup, key: &str, value: &serde_json::Value) {
    let mut defs = group.definitions();
    tokio::time::timeout(WAIT, defs.wait_for(|d| d.get(key) == Some(value)))
        .await
        .expect("the definition arrived in time")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_agree_survive_their_leader_and_take_it_back() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let first = node("m0", &[]).await;
    let seed = vec![addr(&first)];
    let mut nodes = vec![first, node("m1", &seed).await, node("m2", &seed).await];
    for n in &nodes {
        n.wait_for_peers(2, WAIT).await.unwrap();
    }
    let mut groups = Vec::new();
    for (n, dir) in nodes.iter().zip(&dirs) {
        groups.push(meta(n, dir.path()).await);
    }
    let mut leaders = Vec::new();
    for g in &groups {
        leaders.push(g.wait_for_leader(None, 3, WAIT).await.unwrap());
    }
    let leader = leaders[0];
    assert!(
        leaders.iter().all(|l| *l == leader),
        "one leader: {leaders:?}"
    );

    // A write through a follower is forwarded; every member applies it.
    let follower = groups.iter().position(|g| g.id() != leader).unwrap();
    let orders = json!({"subjects": ["orders.>"], "replicas": 1});
    assert_eq!(
        groups[follower]
            .put("streams/default/ORDERS", orders.clone(), true)
            .await
            .unwrap(),
        Outcome::Done
    );
    for g in &groups {
        sees(g, "streams/default/ORDERS", &orders).await;
    }
    // Conflicting creates from two members at once: one wins, the other learns what won.
    let (a, b) = tokio::join!(
        groups[0].put("streams/default/X", json!("a"), true),
        groups[1].put("streams/default/X", json!("b"), true),
    );
    let outcomes = [a.unwrap(), b.unwrap()];
    assert_eq!(
        outcomes.iter().filter(|o| **o == Outcome::Done).count(),
        1,
        "{outcomes:?}"
    );
    assert!(outcomes.iter().any(|o| matches!(o, Outcome::Conflict(_))));
    let read = groups[follower].read().await.unwrap();
    assert!(read.contains_key("streams/default/X"));

    // The leader goes away: the other two elect another and keep writing.
    let gone = groups.iter().position(|g| g.id() == leader).unwrap();
    let old = groups.remove(gone);
    let old_node = nodes.remove(gone);
    old.shutdown().await;
    old_node.shutdown().await;
    for g in &groups {
        g.wait_for_leader(Some(leader), 3, WAIT).await.unwrap();
    }
    let after = json!({"subjects": ["after.>"]});
    groups[0]
        .put("streams/default/AFTER", after.clone(), true)
        .await
        .unwrap();

    // It comes back with its directory: it catches up on what it missed.
    let back_node = node(&format!("m{gone}"), &[addr(&nodes[0])]).await;
    back_node.wait_for_peers(2, WAIT).await.unwrap();
    let back = meta(&back_node, dirs[gone].path()).await;
    sees(&back, "streams/default/AFTER", &after).await;
    sees(&back, "streams/default/ORDERS", &orders).await;
    assert_eq!(back.members().len(), 3);
}
