//! The official `async-nats` JetStream API against a `herald serve` process with a data
//! directory: streams, publish acks, pull consumers, acks, naks, redelivery, durability.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind, Context, stream};
use common::HeraldProcess;
use futures::StreamExt;

/// Every wait in these tests ends within this.
const WAIT: Duration = Duration::from_secs(10);

/// A fresh data directory, removed when dropped.
struct DataDir(tempfile::TempDir);

impl DataDir {
    fn new(name: &str) -> DataDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("herald-js-{name}-"))
            .tempdir()
            .unwrap();
        DataDir(dir)
    }

    fn path(&self) -> &str {
        self.0.path().to_str().unwrap()
    }
}

async fn jetstream(server: &HeraldProcess) -> Context {
    let client = tokio::time::timeout(WAIT, async_nats::connect(server.url()))
        .await
        .expect("connect timed out")
        .expect("connect");
    jetstream::new(client)
}

fn orders() -> stream::Config {
    stream::Config {
        name: "ORDERS".into(),
        subjects: vec!["orders.>".into()],
        ..Default::default()
    }
}

/// Fetches up to `n` messages, waiting at most `expires` for them.
async fn fetch(consumer: &PullConsumer, n: usize, expires: Duration) -> Vec<jetstream::Message> {
    let mut batch = consumer
        .fetch()
        .max_messages(n)
        .expires(expires)
        .messages()
        .await
        .expect("fetch");
    let mut out = Vec::new();
    while let Some(msg) = tokio::time::timeout(WAIT, batch.next())
        .await
        .expect("fetch did not end")
    {
        out.push(msg.expect("message"));
    }
    out
}

/// Publishes `order 1` .. `order n` on `orders.1` .. `orders.n`, each acknowledged.
async fn publish_orders(js: &Context, n: u64) {
    for i in 1..=n {
        js.publish(format!("orders.{i}"), format!("order {i}").into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
}

fn payloads(msgs: &[jetstream::Message]) -> Vec<String> {
    msgs.iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

#[tokio::test]
async fn streams_publish_acks_and_pull_consumers() {
    let dir = DataDir::new("basics");
    let server = HeraldProcess::start(&["--data-dir", dir.path()]);
    let js = jetstream(&server).await;

    let stream = js.create_stream(orders()).await.expect("create stream");
    assert_eq!(stream.cached_info().config.subjects, ["orders.>"]);
    // Creating it again with the same config is a no-op; another config is refused.
    js.create_stream(orders()).await.expect("idempotent create");
    let other = stream::Config {
        max_messages: 5,
        ..orders()
    };
    let err = js.create_stream(other).await.expect_err("different config");
    assert!(err.to_string().contains("different configuration"), "{err}");
    let overlapping = stream::Config {
        name: "ALL".into(),
        subjects: vec!["orders.eu.*".into()],
        ..Default::default()
    };
    let err = js.create_stream(overlapping).await.expect_err("overlap");
    assert!(err.to_string().contains("overlap"), "{err}");

    for i in 1..=10u64 {
        let ack = js
            .publish(format!("orders.{i}"), format!("order {i}").into())
            .await
            .expect("publish")
            .await
            .expect("ack");
        assert_eq!(
            (ack.stream.as_str(), ack.sequence, ack.duplicate),
            ("ORDERS", i, false)
        );
    }
    // A subject no stream captures: the client is told at once.
    let err = js
        .publish("nowhere", "x".into())
        .await
        .expect("publish")
        .await
        .expect_err("no stream");
    assert!(err.to_string().to_lowercase().contains("stream"), "{err}");

    let mut stream = js.get_stream("ORDERS").await.expect("get stream");
    let info = stream.info().await.expect("info");
    assert_eq!(
        (
            info.state.messages,
            info.state.first_sequence,
            info.state.last_sequence
        ),
        (10, 1, 10)
    );

    let consumer: PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("billing".into()),
            ..Default::default()
        })
        .await
        .expect("create consumer");
    let first = fetch(&consumer, 4, Duration::from_secs(2)).await;
    assert_eq!(
        payloads(&first),
        ["order 1", "order 2", "order 3", "order 4"]
    );
    assert_eq!(
        first[0].subject.as_str(),
        "orders.1",
        "the stored subject, not the inbox"
    );
    let meta = first[3].info().expect("ack subject metadata");
    assert_eq!(
        (
            meta.stream,
            meta.consumer,
            meta.stream_sequence,
            meta.consumer_sequence,
            meta.delivered
        ),
        ("ORDERS", "billing", 4, 4, 1)
    );
    assert_eq!(meta.pending, 6);
    for m in &first {
        m.double_ack().await.expect("ack acknowledged");
    }
    let mut consumer = consumer;
    let info = consumer.info().await.expect("consumer info");
    assert_eq!((info.num_ack_pending, info.num_pending), (0, 6));
    assert_eq!(
        (
            info.ack_floor.stream_sequence,
            info.delivered.stream_sequence
        ),
        (4, 4)
    );

    // A window of unacknowledged messages, not stop-and-wait: two fetches in a row.
    let a = fetch(&consumer, 3, Duration::from_secs(2)).await;
    let b = fetch(&consumer, 3, Duration::from_secs(2)).await;
    assert_eq!(payloads(&a), ["order 5", "order 6", "order 7"]);
    assert_eq!(payloads(&b), ["order 8", "order 9", "order 10"]);
    // Drained: a fetch with no_wait ends at once, empty.
    assert!(
        fetch(&consumer, 5, Duration::from_millis(300))
            .await
            .is_empty()
    );

    // Names and lists.
    let names: Vec<String> = js.stream_names().map(|n| n.unwrap()).collect().await;
    assert_eq!(names, ["ORDERS"]);
    let consumers: Vec<String> = stream.consumer_names().map(|n| n.unwrap()).collect().await;
    assert_eq!(consumers, ["billing"]);

    // Purge, then delete.
    let purged = stream.purge().await.expect("purge");
    assert_eq!(purged.purged, 10);
    let info = stream.info().await.expect("info after purge");
    assert_eq!((info.state.messages, info.state.first_sequence), (0, 11));
    assert!(js.delete_stream("ORDERS").await.expect("delete").success);
    let err = js.get_stream("ORDERS").await.expect_err("deleted");
    assert!(err.to_string().contains("not found"), "{err}");
}

#[tokio::test]
async fn duplicates_are_stored_once() {
    let dir = DataDir::new("dedup");
    let server = HeraldProcess::start(&["--data-dir", dir.path()]);
    let js = jetstream(&server).await;
    js.create_stream(orders()).await.expect("create stream");
    let send = |id: &'static str| {
        let js = js.clone();
        async move {
            js.send_publish(
                "orders.new",
                jetstream::message::PublishMessage::build()
                    .message_id(id)
                    .payload("x".into()),
            )
            .await
            .expect("publish")
            .await
            .expect("ack")
        }
    };
    let first = send("order-1").await;
    let again = send("order-1").await;
    let other = send("order-2").await;
    assert_eq!((first.sequence, first.duplicate), (1, false));
    assert_eq!((again.sequence, again.duplicate), (1, true));
    assert_eq!((other.sequence, other.duplicate), (2, false));
    let info = js
        .get_stream("ORDERS")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.state.messages, 2);
}

#[tokio::test]
async fn naks_redelivery_and_max_deliver() {
    let dir = DataDir::new("redelivery");
    let server = HeraldProcess::start(&["--data-dir", dir.path()]);
    let js = jetstream(&server).await;
    let stream = js.create_stream(orders()).await.expect("create stream");
    publish_orders(&js, 3).await;
    let consumer: PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("worker".into()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_millis(400),
            max_deliver: 2,
            ..Default::default()
        })
        .await
        .expect("create consumer");

    // A nak without delay: delivered again at once, before newer messages.
    let got = fetch(&consumer, 1, Duration::from_secs(2)).await;
    assert_eq!(payloads(&got), ["order 1"]);
    got[0].ack_with(AckKind::Nak(None)).await.unwrap();
    let got = fetch(&consumer, 1, Duration::from_secs(2)).await;
    assert_eq!(payloads(&got), ["order 1"]);
    assert_eq!(got[0].info().unwrap().delivered, 2);
    got[0].double_ack().await.unwrap();

    // Not acked: delivered again after the ack wait, then given up after max_deliver.
    let got = fetch(&consumer, 2, Duration::from_secs(2)).await;
    assert_eq!(payloads(&got), ["order 2", "order 3"]);
    got[1].double_ack().await.unwrap();
    let again = fetch(&consumer, 1, Duration::from_secs(3)).await;
    assert_eq!(payloads(&again), ["order 2"], "redelivered after ack wait");
    assert_eq!(again[0].info().unwrap().delivered, 2);
    // Never a third time, though it waits well past another ack wait.
    assert!(
        fetch(&consumer, 1, Duration::from_millis(1500))
            .await
            .is_empty()
    );

    // A nak with a delay comes back only after it.
    js.publish("orders.4", "order 4".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let got = fetch(&consumer, 1, Duration::from_secs(2)).await;
    assert_eq!(payloads(&got), ["order 4"]);
    let naked = std::time::Instant::now();
    got[0]
        .ack_with(AckKind::Nak(Some(Duration::from_millis(500))))
        .await
        .unwrap();
    let back = fetch(&consumer, 1, Duration::from_secs(3)).await;
    assert_eq!(payloads(&back), ["order 4"]);
    assert!(
        naked.elapsed() >= Duration::from_millis(500),
        "came back before its delay"
    );
    back[0].double_ack().await.unwrap();

    // +WPI and +TERM are taken (the double ack is answered).
    js.publish("orders.5", "order 5".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let got = fetch(&consumer, 1, Duration::from_secs(2)).await;
    got[0].double_ack_with(AckKind::Progress).await.unwrap();
    got[0].double_ack_with(AckKind::Term).await.unwrap();
    assert!(
        fetch(&consumer, 1, Duration::from_millis(800))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_durable_consumer_survives_a_restart() {
    let dir = DataDir::new("restart");
    let server = HeraldProcess::start(&["--data-dir", dir.path()]);
    let js = jetstream(&server).await;
    let stream = js.create_stream(orders()).await.expect("create stream");
    publish_orders(&js, 10).await;
    let consumer: PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("billing".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let got = fetch(&consumer, 4, Duration::from_secs(2)).await;
    for m in &got {
        m.double_ack().await.unwrap();
    }
    // Delivered but not acked before the restart: delivered again after it.
    let unacked = fetch(&consumer, 1, Duration::from_secs(2)).await;
    assert_eq!(payloads(&unacked), ["order 5"]);
    assert!(server.terminate().success());

    let server = HeraldProcess::start(&["--data-dir", dir.path()]);
    let js = jetstream(&server).await;
    let mut stream = js.get_stream("ORDERS").await.expect("stream recovered");
    assert_eq!(stream.info().await.unwrap().state.messages, 10);
    let consumer: PullConsumer = stream
        .get_consumer("billing")
        .await
        .expect("durable recovered");
    let got = fetch(&consumer, 10, Duration::from_secs(2)).await;
    assert_eq!(
        payloads(&got),
        [
            "order 5", "order 6", "order 7", "order 8", "order 9", "order 10"
        ]
    );
    assert_eq!(
        got[0].info().unwrap().delivered,
        2,
        "order 5 is a redelivery"
    );
    // Publishing continues the sequence.
    let ack = js
        .publish("orders.11", "order 11".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.sequence, 11);
}

#[tokio::test]
async fn several_clients_share_one_durable() {
    let dir = DataDir::new("workqueue");
    let server = HeraldProcess::start(&["--data-dir", dir.path()]);
    let js = jetstream(&server).await;
    let stream = js.create_stream(orders()).await.unwrap();
    for i in 0..100 {
        js.publish(format!("orders.{i}"), format!("{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    stream
        .create_consumer(pull::Config {
            durable_name: Some("pool".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut workers = Vec::new();
    for _ in 0..3 {
        let js = jetstream(&server).await;
        workers.push(tokio::spawn(async move {
            let stream = js.get_stream("ORDERS").await.unwrap();
            let consumer: PullConsumer = stream.get_consumer("pool").await.unwrap();
            let mut seen = Vec::new();
            loop {
                let got = fetch(&consumer, 7, Duration::from_millis(500)).await;
                if got.is_empty() {
                    return seen;
                }
                for m in got {
                    m.ack().await.unwrap();
                    seen.push(String::from_utf8_lossy(&m.payload).parse::<u32>().unwrap());
                }
            }
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (0..100).collect::<Vec<u32>>(),
        "each message to exactly one worker"
    );
}

/// Reads every message of a stream, in order, through an ack-none consumer.
async fn read_all(js: &Context, stream: &str) -> Vec<(u64, String)> {
    let stream = js.get_stream(stream).await.expect("stream recovered");
    let consumer: PullConsumer = stream
        .create_consumer(pull::Config {
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("reader");
    let mut out = Vec::new();
    loop {
        let got = fetch(&consumer, 1000, Duration::from_millis(300)).await;
        if got.is_empty() {
            return out;
        }
        for m in got {
            let seq = m.info().expect("metadata").stream_sequence;
            out.push((seq, String::from_utf8_lossy(&m.payload).into_owned()));
        }
    }
}

#[tokio::test]
async fn acknowledged_publishes_survive_kill_9() {
    let dir = DataDir::new("crash");
    let mut acked: Vec<String> = Vec::new();
    for round in 0..20u32 {
        let server = HeraldProcess::start(&["--data-dir", dir.path(), "--fsync", "always"]);
        let js = jetstream(&server).await;
        js.get_or_create_stream(orders()).await.expect("stream");
        // Everything acknowledged so far is there, once, in order.
        let stored = read_all(&js, "ORDERS").await;
        let seqs: Vec<u64> = stored.iter().map(|(s, _)| *s).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "round {round}: out of order"
        );
        let bodies: Vec<&str> = stored.iter().map(|(_, b)| b.as_str()).collect();
        let mut at = 0;
        for want in &acked {
            let found = bodies[at..].iter().position(|b| b == want);
            let Some(k) = found else {
                panic!("round {round}: acknowledged {want} lost or out of order");
            };
            at += k + 1;
        }
        let mut unique = bodies.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            bodies.len(),
            "round {round}: a message stored twice"
        );

        // Publish with 64 in flight; kill -9 after a random number of acks, mid-stream.
        let kill_at = acked.len() + 1 + (round as usize * 37 + 11) % 150;
        let mut inflight = std::collections::VecDeque::new();
        let mut n = 0u32;
        while acked.len() < kill_at {
            while inflight.len() < 64 {
                let body = format!("r{round:02}-{n:05}");
                n += 1;
                let ack = js
                    .publish("orders.crash", body.clone().into())
                    .await
                    .expect("publish");
                inflight.push_back((body, ack));
            }
            let (body, ack) = inflight.pop_front().unwrap();
            ack.await.expect("ack");
            acked.push(body);
        }
        server.kill9();
    }
}

#[tokio::test]
async fn a_full_disk_refuses_publishes_and_loses_nothing() {
    let dir = DataDir::new("full");
    // Files may not grow past 64 KiB: the segment fills up after about 60 messages of 1 KiB.
    let server = HeraldProcess::start_with_file_limit(&["--data-dir", dir.path()], 64);
    let js = jetstream(&server).await;
    js.create_stream(orders()).await.expect("create stream");
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..200u32 {
        let body = format!("{i:04}{}", "x".repeat(1020));
        let ack = js.publish("orders.big", body.clone().into()).await.unwrap();
        match ack.await {
            Ok(ack) => {
                assert_eq!(ack.sequence, acked.len() as u64 + 1);
                acked.push(body);
            }
            Err(err) => {
                refused = Some(err.to_string());
                break;
            }
        }
    }
    let refused = refused.expect("a publish fails once the file is full");
    assert!(
        refused.contains("too large") || refused.contains("No space"),
        "{refused}"
    );
    assert!(
        acked.len() > 10,
        "only {} stored before the disk filled",
        acked.len()
    );
    // Still answering, with what it has.
    let mut stream = js.get_stream("ORDERS").await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        acked.len() as u64
    );
    assert!(server.terminate().success());

    // Room again: everything acknowledged is there, once, in order, and appends continue.
    let server = HeraldProcess::start(&["--data-dir", dir.path()]);
    let js = jetstream(&server).await;
    let stored = read_all(&js, "ORDERS").await;
    let bodies: Vec<String> = stored.into_iter().map(|(_, b)| b).collect();
    assert_eq!(bodies, acked);
    let ack = js
        .publish("orders.next", "ok".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.sequence, acked.len() as u64 + 1);
}

#[tokio::test]
async fn dump_and_restore_move_a_stream_between_servers() {
    let from = DataDir::new("dump-from");
    let to = DataDir::new("dump-to");
    let server = HeraldProcess::start(&["--data-dir", from.path()]);
    let js = jetstream(&server).await;
    js.create_stream(orders()).await.unwrap();
    publish_orders(&js, 3).await;
    assert!(server.terminate().success());

    let herald = env!("CARGO_BIN_EXE_herald");
    let dump = std::process::Command::new(herald)
        .args(["data", "dump", from.path(), "--stream", "ORDERS"])
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let mut restore = std::process::Command::new(herald)
        .args(["data", "restore", to.path(), "--stream", "COPY"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    restore
        .stdin
        .take()
        .unwrap()
        .write_all(&dump.stdout)
        .unwrap();
    assert!(restore.wait().unwrap().success());

    let server = HeraldProcess::start(&["--data-dir", to.path()]);
    let js = jetstream(&server).await;
    let mut copy = js.get_stream("COPY").await.expect("restored stream opens");
    let info = copy.info().await.unwrap();
    assert_eq!((info.state.messages, info.state.last_sequence), (3, 3));
    assert_eq!(info.config.subjects, ["orders.>"]);
    let ack = js
        .publish("orders.4", "order 4".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!((ack.stream.as_str(), ack.sequence), ("COPY", 4));
}
