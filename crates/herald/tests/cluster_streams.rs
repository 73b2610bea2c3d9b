//! The typed streams API over a cluster's JetStream (`herald::jetstream::ClusterStreams`):
//! three embedded nodes of one process, over real loopback routes, with their Raft state and
//! streams in real directories. A replicated stream is created through one node, published to
//! through another and consumed through the third, and survives its leader.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use herald::jetstream::{ClusterStreams, JetStream};
use herald::meta::{MetaGroup, MetaOptions};
use herald::streams::{
    ConsumerConfig, ErrorKind, Placement, PubAck, StreamConfig, Streams, StreamsOptions,
};
use herald::{Node, Router};

const WAIT: Duration = Duration::from_secs(30);

struct Member {
    node: Node,
    meta: Arc<MetaGroup>,
    _jetstream: JetStream,
    _router: Router,
    streams: ClusterStreams,
    _dir: tempfile::TempDir,
}

async fn member(name: &str, seeds: &[String]) -> Member {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::builder()
        .name(name)
        .cluster_secret("typed-secret")
        .seeds(seeds.iter().cloned())
        .gossip_interval(Duration::from_millis(100))
        .start()
        .await
        .expect("node starts");
    node.wait_for_peers(seeds.len().min(1), WAIT).await.unwrap();
    let meta = MetaGroup::start(
        &node,
        MetaOptions::new(dir.path().join("meta"))
            .bootstrap_expect(3)
            .heartbeat(Duration::from_millis(50)),
    )
    .await
    .expect("meta group starts");
    let meta = Arc::new(meta);
    let router = node.router("default", 1024);
    let store = Streams::open(&router, StreamsOptions::new(dir.path()))
        .await
        .unwrap();
    let jetstream = herald::jetstream::serve_clustered(&store, meta.clone()).unwrap();
    let streams = ClusterStreams::new(&router).await.unwrap();
    Member {
        node,
        meta,
        _jetstream: jetstream,
        _router: router,
        streams,
        _dir: dir,
    }
}

async fn cluster() -> Vec<Member> {
    let first = member("typed-0", &[]).await;
    let seed = vec![first.node.cluster_info().unwrap().route_addr];
    let (second, third) = tokio::join!(member("typed-1", &seed), member("typed-2", &seed));
    let members = vec![first, second, third];
    for m in &members {
        m.node.wait_for_peers(2, WAIT).await.unwrap();
        m.meta.wait_for_leader(None, 3, WAIT).await.unwrap();
    }
    members
}

/// Whether `err` says to try again: an election, a leader not there yet, or a stream whose
/// replicas have not started capturing yet.
fn retryable(err: &herald::streams::Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::NotFound
    )
}

/// Polls `probe` until it gives `Some`, retrying retryable errors, for at most [`WAIT`].
async fn until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = herald::streams::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match probe().await {
            Ok(Some(value)) => return value,
            Ok(None) => {}
            Err(err) if retryable(&err) => {}
            Err(err) => panic!("{what}: {err}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: gave up");
        // A poll, not a synchronisation: the loop ends on the state it waits for.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Makes `call` until it succeeds, retrying retryable errors, for at most [`WAIT`].
async fn settled<T, F, Fut>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = herald::streams::Result<T>>,
{
    until(what, || {
        let fut = call();
        async move { fut.await.map(Some) }
    })
    .await
}

/// Waits until `streams` reports `stream` led, with every other replica current.
async fn placed(streams: &ClusterStreams, stream: &str, replicas: usize) -> Placement {
    until("placement", || async {
        let p = streams.placement(stream).await?;
        let whole = p.leader.is_some()
            && p.replicas.len() == replicas - 1
            && p.replicas.iter().all(|r| r.current);
        Ok(whole.then_some(p))
    })
    .await
}

async fn publish(streams: &ClusterStreams, subject: &str, payload: String) -> PubAck {
    settled("publish", || streams.publish(subject, payload.clone())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_stream_through_three_nodes_with_the_typed_api() {
    let members = cluster().await;
    let (a, b, c) = (
        &members[0].streams,
        &members[1].streams,
        &members[2].streams,
    );

    // Created through the first node, on all three.
    let mut config = StreamConfig::new("ORDERS", ["orders.>"]);
    config.replicas = 3;
    let info = settled("create", || a.create(config.clone())).await;
    assert_eq!(info.config.replicas, 3);
    assert_eq!(info.config.subjects, vec!["orders.>".to_owned()]);
    let placement = placed(c, "ORDERS", 3).await;
    assert!(placement.leader.as_deref().unwrap().starts_with("typed-"));
    assert_eq!(c.names().await.unwrap(), vec!["ORDERS".to_owned()]);

    // Published through the second: each acknowledged once a majority holds it.
    for i in 1..=50u64 {
        let ack = publish(b, &format!("orders.{i}"), format!("order {i}")).await;
        assert_eq!((ack.stream.as_str(), ack.seq), ("ORDERS", i));
    }
    let info = a.info("ORDERS").await.unwrap();
    assert_eq!((info.state.messages, info.state.last_seq), (50, 50));

    // Consumed through the third, with acks that reach the leader's consumer.
    let consumer = c
        .create_consumer("ORDERS", ConsumerConfig::durable("billing"))
        .await
        .unwrap();
    assert_eq!(consumer.name, "billing");
    let mut seen = Vec::new();
    while seen.len() < 50 {
        let batch = c
            .fetch("ORDERS", "billing", 20, Duration::from_secs(2))
            .await
            .unwrap();
        assert!(!batch.is_empty(), "messages stopped at {}", seen.len());
        for msg in batch {
            assert_eq!(msg.text().unwrap(), format!("order {}", msg.seq()));
            assert_eq!((msg.stream(), msg.consumer()), ("ORDERS", "billing"));
            msg.ack().unwrap();
            seen.push(msg.seq());
        }
    }
    assert_eq!(seen, (1..=50).collect::<Vec<_>>());
    let acked = until("ack floor", || async {
        let info = a.consumer_info("ORDERS", "billing").await?;
        Ok((info.ack_floor.stream_seq == 50).then_some(info))
    })
    .await;
    assert_eq!(acked.num_ack_pending, 0);

    // Typed errors, as the local store gives them.
    let err = b.info("NOPE").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = b.consumer_info("ORDERS", "nobody").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = b
        .fetch("ORDERS", "nobody", 1, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let mut other = StreamConfig::new("ORDERS", ["elsewhere.>"]);
    other.replicas = 3;
    let err = c.create(other).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    let mut too_many = StreamConfig::new("WIDE", ["wide.>"]);
    too_many.replicas = 5;
    let err = a.create(too_many).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");

    // The leader steps down; another replica takes over with every message and ack.
    let before = placed(a, "ORDERS", 3).await.leader.unwrap();
    settled("step down", || a.step_down("ORDERS")).await;
    let after = until("new leader", || async {
        let p = c.placement("ORDERS").await?;
        Ok(p.leader.filter(|leader| *leader != before))
    })
    .await;
    assert_ne!(before, after);
    let ack = publish(b, "orders.51", "order 51".into()).await;
    assert_eq!(ack.seq, 51);
    let batch = c
        .fetch("ORDERS", "billing", 10, Duration::from_secs(2))
        .await
        .unwrap();
    let seqs: Vec<u64> = batch.iter().map(|m| m.seq()).collect();
    assert_eq!(seqs, vec![51], "acked messages are not delivered again");
    batch[0].ack().unwrap();

    // The leader's node goes away: the two others elect a leader and go on.
    let gone = members
        .iter()
        .position(|m| m.node.cluster_info().unwrap().name == after)
        .unwrap();
    members[gone].node.shutdown().await;
    let left: Vec<&ClusterStreams> = (0..3)
        .filter(|&i| i != gone)
        .map(|i| &members[i].streams)
        .collect();
    let ack = publish(left[0], "orders.52", "order 52".into()).await;
    assert_eq!(ack.seq, 52);
    let batch = settled("fetch after failover", || {
        left[1].fetch("ORDERS", "billing", 10, Duration::from_secs(1))
    })
    .await;
    let seqs: Vec<u64> = batch.iter().map(|m| m.seq()).collect();
    // 1..=50 were acked long before; 51's ack may have been within the window of consumer
    // state not yet replicated when its leader went (it comes again then, never lost).
    assert!(
        seqs == [52] || seqs == [51, 52],
        "after the failover: {seqs:?}"
    );
    for msg in &batch {
        msg.ack().unwrap();
    }
    let placement = left[1].placement("ORDERS").await.unwrap();
    assert!(placement.leader.is_some_and(|l| l != after));
    assert!(
        placement
            .replicas
            .iter()
            .any(|r| r.name == after && !r.current)
    );

    // Deleted through a survivor: gone from both (the meta group keeps its quorum).
    settled("delete", || left[0].delete("ORDERS")).await;
    assert!(left[1].names().await.unwrap().is_empty());
    let err = left[1].info("ORDERS").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}
