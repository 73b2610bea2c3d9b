//! Push and ordered consumers, key-value buckets and object stores, driven by the official
//! `async-nats` client's own APIs against `herald serve`.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, Consumer, DeliverPolicy, pull, push};
use async_nats::jetstream::{self, Context, kv, object_store, stream};
use common::HeraldProcess;
use futures::StreamExt;
use tokio::io::AsyncReadExt;

/// Every wait in these tests ends within this.
const WAIT: Duration = Duration::from_secs(10);

async fn connect(server: &HeraldProcess) -> (async_nats::Client, Context) {
    let client = tokio::time::timeout(WAIT, async_nats::connect(server.url()))
        .await
        .expect("connect timed out")
        .expect("connect");
    (client.clone(), jetstream::new(client))
}

fn start() -> (HeraldProcess, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("herald-push-")
        .tempdir()
        .unwrap();
    let server = HeraldProcess::start(&["--data-dir", dir.path().to_str().unwrap()]);
    (server, dir)
}

/// Publishes `n` messages of `size` bytes on `subject`, acknowledged (256 in flight).
async fn fill(js: &Context, subject: &str, n: usize, size: usize) {
    let mut acks = Vec::new();
    for i in 0..n {
        let mut payload = format!("{i:08}").into_bytes();
        payload.resize(size.max(8), b'x');
        acks.push(
            js.publish(subject.to_owned(), payload.into())
                .await
                .unwrap(),
        );
        if acks.len() == 256 {
            for ack in acks.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in acks {
        ack.await.unwrap();
    }
}

/// The number at the start of a payload written by [`fill`].
fn number(payload: &[u8]) -> usize {
    std::str::from_utf8(&payload[..8]).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_push_consumer_with_flow_control_feeds_a_slow_reader() {
    let (server, _dir) = start();
    let (_, js) = connect(&server).await;
    let stream = js
        .create_stream(stream::Config {
            name: "EVENTS".into(),
            subjects: vec!["events.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    // 6 MiB: several flow-control windows.
    fill(&js, "events.a", 6_000, 1024).await;
    let consumer: Consumer<push::Config> = stream
        .create_consumer(push::Config {
            durable_name: Some("reader".into()),
            deliver_subject: "deliver.reader".into(),
            ack_policy: AckPolicy::Explicit,
            flow_control: true,
            idle_heartbeat: Duration::from_millis(500),
            max_ack_pending: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    for want in 0..6_000 {
        let msg = tokio::time::timeout(WAIT, messages.next())
            .await
            .expect("push delivery stalled")
            .unwrap()
            .unwrap();
        assert_eq!(number(&msg.payload), want);
        msg.ack().await.unwrap();
        if want % 1_000 == 999 {
            // A reader that falls behind now and then: flow control holds the server back.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Idle now: heartbeats only, no more messages.
    let next = tokio::time::timeout(Duration::from_millis(1500), messages.next()).await;
    assert!(next.is_err(), "nothing more was stored");
    let mut consumer = consumer;
    let info = consumer.info().await.unwrap();
    assert_eq!(
        info.config.deliver_subject.as_deref(),
        Some("deliver.reader")
    );
    assert!(info.config.flow_control);
    assert_eq!(info.delivered.stream_sequence, 6_000);
}

/// A raw connection to `server` subscribed to `subject` (its PONG read: the subscription is
/// in place), for a test to read as slowly as it likes.
async fn slow_raw_reader(server: &HeraldProcess, subject: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    socket
        .write_all(format!("CONNECT {{}}\r\nSUB {subject} 1\r\nPING\r\n").as_bytes())
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("PONG") {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, socket.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before PONG");
        seen.extend_from_slice(&buf[..n]);
    }
    socket
}

/// The numbers of the MSGs at the start of `data` (as [`fill`] wrote them), and how many
/// bytes they took.
fn msgs_in(data: &[u8]) -> (Vec<usize>, usize) {
    let (mut numbers, mut at) = (Vec::new(), 0);
    while let Some(end) = data[at..].windows(2).position(|w| w == b"\r\n") {
        let line = std::str::from_utf8(&data[at..at + end]).unwrap();
        let size: usize = match line.split(' ').next_back() {
            Some(size) if line.starts_with("MSG ") => size.parse().unwrap(),
            // INFO, PING, PONG.
            _ => {
                at += end + 2;
                continue;
            }
        };
        let payload = at + end + 2;
        if data.len() < payload + size + 2 {
            break;
        }
        numbers.push(number(&data[payload..payload + size]));
        at = payload + size + 2;
    }
    (numbers, at)
}

#[tokio::test]
async fn a_push_consumer_without_flow_control_goes_at_its_subscribers_pace() {
    // Connections may hold 2 MiB unwritten before they are slow consumers; the consumer has
    // 6 MiB to deliver at once.
    let dir = tempfile::Builder::new()
        .prefix("herald-push-")
        .tempdir()
        .unwrap();
    let server = HeraldProcess::start(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--max-pending",
        "2097152",
    ]);
    let (_, js) = connect(&server).await;
    let stream = js
        .create_stream(stream::Config {
            name: "BACKLOG".into(),
            subjects: vec!["backlog.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    fill(&js, "backlog.a", 6_000, 1024).await;
    let mut reader = slow_raw_reader(&server, "deliver.backlog").await;
    stream
        .create_consumer(push::Config {
            deliver_subject: "deliver.backlog".into(),
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let (mut data, mut got) = (Vec::new(), Vec::new());
    while got.len() < 6_000 {
        // A reader slower than the server: 64 KiB every 5 ms.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut buf = vec![0u8; 64 * 1024];
        let n = tokio::time::timeout_at(deadline, reader.read(&mut buf))
            .await
            .expect("the deliveries stopped")
            .unwrap();
        assert!(
            n > 0,
            "dropped as a slow consumer after {} messages",
            got.len()
        );
        data.extend_from_slice(&buf[..n]);
        let (numbers, used) = msgs_in(&data);
        got.extend(numbers);
        data.drain(..used);
    }
    assert_eq!(got, (0..6_000).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_deliver_group_shares_the_messages() {
    let (server, _dir) = start();
    let (client, js) = connect(&server).await;
    let stream = js
        .create_stream(stream::Config {
            name: "JOBS".into(),
            subjects: vec!["jobs.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut a = client
        .queue_subscribe("deliver.jobs", "workers".into())
        .await
        .unwrap();
    let mut b = client
        .queue_subscribe("deliver.jobs", "workers".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    stream
        .create_consumer(push::Config {
            durable_name: Some("workers".into()),
            deliver_subject: "deliver.jobs".into(),
            deliver_group: Some("workers".into()),
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    fill(&js, "jobs.x", 200, 16).await;
    let mut seen = Vec::new();
    while seen.len() < 200 {
        let msg = tokio::select! {
            Some(m) = a.next() => m,
            Some(m) = b.next() => m,
            () = tokio::time::sleep(WAIT) => panic!("only {} of 200 arrived", seen.len()),
        };
        seen.push(number(&msg.payload));
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..200).collect::<Vec<_>>(), "each message once");
}

#[tokio::test]
async fn ordered_consumers_read_the_whole_stream() {
    let (server, _dir) = start();
    let (_, js) = connect(&server).await;
    let stream = js
        .create_stream(stream::Config {
            name: "LOG".into(),
            subjects: vec!["log.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    fill(&js, "log.a", 3_000, 64).await;
    fill(&js, "log.b", 10, 64).await;

    // Push form.
    let ordered: Consumer<push::OrderedConfig> = stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: "deliver.ordered".into(),
            filter_subject: "log.a".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = ordered.messages().await.unwrap();
    for want in 0..3_000 {
        let msg = tokio::time::timeout(WAIT, messages.next())
            .await
            .expect("ordered push stalled")
            .unwrap()
            .unwrap();
        assert_eq!(number(&msg.payload), want);
    }

    // Pull form, from a sequence.
    let ordered: Consumer<pull::OrderedConfig> = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: 2_001,
            },
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = ordered.messages().await.unwrap();
    // log.a's 2,000.. 2,999 (sequences 2,001 to 3,000), then log.b's 0 .. 9.
    for want in (2_000..3_000).chain(0..10) {
        let msg = tokio::time::timeout(WAIT, messages.next())
            .await
            .expect("ordered pull stalled")
            .unwrap()
            .unwrap();
        assert_eq!(number(&msg.payload), want);
    }
}

#[tokio::test]
async fn key_value_buckets_through_the_client_api() {
    let (server, _dir) = start();
    let (_, js) = connect(&server).await;
    let kv = js
        .create_key_value(kv::Config {
            bucket: "settings".into(),
            history: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    let r1 = kv.put("colour", "red".into()).await.unwrap();
    let r2 = kv.put("colour", "green".into()).await.unwrap();
    kv.put("size", "large".into()).await.unwrap();
    assert_eq!(
        kv.get("colour").await.unwrap().as_deref(),
        Some(&b"green"[..])
    );
    assert_eq!(kv.entry("colour").await.unwrap().unwrap().revision, r2);
    // Updates need the current revision; create needs none.
    assert!(kv.update("colour", "blue".into(), r1).await.is_err());
    let r3 = kv.update("colour", "blue".into(), r2).await.unwrap();
    assert!(kv.create("size", "small".into()).await.is_err());
    kv.create("shape", "round".into()).await.unwrap();
    let history: Vec<String> = kv
        .history("colour")
        .await
        .unwrap()
        .map(|e| String::from_utf8(e.unwrap().value.to_vec()).unwrap())
        .collect()
        .await;
    assert_eq!(history, ["red", "green", "blue"]);
    let mut keys: Vec<String> = kv.keys().await.unwrap().map(|k| k.unwrap()).collect().await;
    keys.sort();
    assert_eq!(keys, ["colour", "shape", "size"]);

    // Watch sees changes as they happen.
    let mut watch = kv.watch("colour").await.unwrap();
    kv.put("colour", "black".into()).await.unwrap();
    let seen = tokio::time::timeout(WAIT, watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&seen.value[..], b"black");
    assert!(seen.revision > r3);

    // Delete leaves a marker; purge rolls the history up.
    kv.delete("size").await.unwrap();
    assert_eq!(kv.get("size").await.unwrap(), None);
    kv.purge("colour").await.unwrap();
    assert_eq!(kv.get("colour").await.unwrap(), None);
    let history = kv.history("colour").await.unwrap().count().await;
    assert_eq!(history, 1, "only the purge marker is left");

    // A key that is not a valid subject token is refused by the client, as with nats-server.
    assert!(kv.put("bad key", "x".into()).await.is_err());
}

#[tokio::test]
async fn object_stores_through_the_client_api() {
    let (server, _dir) = start();
    let (_, js) = connect(&server).await;
    let bucket = js
        .create_object_store(object_store::Config {
            bucket: "blobs".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // Several chunks (the client's are 128 KiB).
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let info = bucket.put("big.bin", &mut &data[..]).await.unwrap();
    assert_eq!(info.size, data.len());
    assert!(info.chunks > 1, "{} chunks", info.chunks);
    let mut object = bucket.get("big.bin").await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(WAIT, object.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert!(
        back == data,
        "the object read back differs (digest checked by the client)"
    );
    bucket.put("small.txt", &mut &b"hello"[..]).await.unwrap();
    let names: Vec<String> = bucket
        .list()
        .await
        .unwrap()
        .map(|o| o.unwrap().name)
        .collect()
        .await;
    assert_eq!(names.len(), 2, "{names:?}");
    bucket.delete("big.bin").await.unwrap();
    assert!(bucket.get("big.bin").await.is_err());
    assert_eq!(
        bucket.info("small.txt").await.unwrap().size,
        5,
        "the other object is untouched"
    );
}
