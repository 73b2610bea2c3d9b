//! Streams and consumers through the library API, on real files in a temporary directory.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::time::{Duration, SystemTime};

use herald::streams::{
    AckPolicy, ConsumerConfig, DeliverPolicy, Discard, ErrorKind, Purge, StreamConfig,
    StreamMessage, Streams, StreamsOptions,
};
use herald::{HeaderMap, Router};
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(5);

async fn open(dir: &TempDir) -> (Router, Streams) {
    let router = Router::new(1000, "app");
    let streams = Streams::open(&router, StreamsOptions::new(dir.path()))
        .await
        .unwrap();
    (router, streams)
}

async fn publish_n(streams: &Streams, subject: &str, n: usize) {
    for i in 1..=n {
        streams.publish(subject, format!("m{i}")).await.unwrap();
    }
}

fn texts(msgs: &[StreamMessage]) -> Vec<String> {
    msgs.iter().map(|m| m.text().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_n_waits_for_distinct_consumers() {
    let dir = TempDir::new().unwrap();
    let (_router, streams) = open(&dir).await;
    streams
        .create(StreamConfig::new("ORDERS", ["orders.>"]))
        .unwrap();
    streams
        .create_consumer("ORDERS", ConsumerConfig::durable("billing"))
        .unwrap();
    streams
        .create_consumer("ORDERS", ConsumerConfig::durable("shipping"))
        .unwrap();

    // Acknowledged only once both consumers acked it.
    let publish = {
        let streams = streams.clone();
        tokio::spawn(async move {
            streams
                .publish_confirmed("orders.1", "o1", 2, Duration::from_secs(5))
                .await
        })
    };
    for consumer in ["billing", "shipping"] {
        let got = streams.fetch("ORDERS", consumer, 1, WAIT).await.unwrap();
        assert_eq!(texts(&got), ["o1"]);
        assert!(
            !publish.is_finished(),
            "acknowledged before {consumer} acked"
        );
        got[0].ack().unwrap();
        // The same consumer acking twice counts once.
        got[0].ack().unwrap();
    }
    let ack = tokio::time::timeout(WAIT, publish)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ack.seq, 1);

    // Only one of two acks within the timeout: the error says how many did.
    let publish = {
        let streams = streams.clone();
        tokio::spawn(async move {
            streams
                .publish_confirmed("orders.2", "o2", 2, Duration::from_millis(500))
                .await
        })
    };
    let got = streams.fetch("ORDERS", "billing", 1, WAIT).await.unwrap();
    got[0].ack().unwrap();
    let err = tokio::time::timeout(WAIT, publish)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("confirmed by 1 of 2"), "{err}");
    // The message is stored all the same.
    assert_eq!(streams.info("ORDERS").unwrap().state.messages, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_policies_and_ack_all() {
    let dir = TempDir::new().unwrap();
    let (_router, streams) = open(&dir).await;
    streams
        .create(StreamConfig::new("EVENTS", ["ev.*"]))
        .unwrap();
    publish_n(&streams, "ev.a", 3).await;
    let middle = SystemTime::now();
    publish_n(&streams, "ev.b", 2).await;

    let make = |name: &str, deliver: DeliverPolicy| ConsumerConfig {
        deliver,
        ..ConsumerConfig::durable(name)
    };
    streams
        .create_consumer("EVENTS", make("last", DeliverPolicy::Last))
        .unwrap();
    streams
        .create_consumer("EVENTS", make("new", DeliverPolicy::New))
        .unwrap();
    streams
        .create_consumer("EVENTS", make("seq", DeliverPolicy::ByStartSequence(3)))
        .unwrap();
    streams
        .create_consumer("EVENTS", make("time", DeliverPolicy::ByStartTime(middle)))
        .unwrap();
    streams
        .create_consumer(
            "EVENTS",
            ConsumerConfig {
                filter_subjects: vec!["ev.a".into()],
                ..make("filtered", DeliverPolicy::All)
            },
        )
        .unwrap();
    let fetch = |name: &'static str| {
        let streams = streams.clone();
        async move {
            texts(
                &streams
                    .fetch("EVENTS", name, 10, Duration::from_millis(200))
                    .await
                    .unwrap(),
            )
        }
    };
    assert_eq!(fetch("last").await, ["m2"]);
    assert!(fetch("new").await.is_empty());
    assert_eq!(fetch("seq").await, ["m3", "m1", "m2"]);
    assert_eq!(fetch("time").await, ["m1", "m2"]);
    assert_eq!(fetch("filtered").await, ["m1", "m2", "m3"]);
    streams.publish("ev.c", "later").await.unwrap();
    assert_eq!(fetch("new").await, ["later"]);

    // Ack all: acking the third delivery acks the two before it.
    streams
        .create_consumer(
            "EVENTS",
            ConsumerConfig {
                ack_policy: AckPolicy::All,
                ..ConsumerConfig::durable("all")
            },
        )
        .unwrap();
    let got = streams
        .fetch("EVENTS", "all", 3, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        streams
            .consumer_info("EVENTS", "all")
            .unwrap()
            .num_ack_pending,
        3
    );
    got[2].ack().unwrap();
    let info = streams.consumer_info("EVENTS", "all").unwrap();
    assert_eq!((info.num_ack_pending, info.ack_floor.stream_seq), (0, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_and_unknown_acks_get_clear_errors() {
    let dir = TempDir::new().unwrap();
    let (_router, streams) = open(&dir).await;
    let err = streams
        .create(StreamConfig::new("BAD.NAME", ["x"]))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    let err = streams
        .create(StreamConfig {
            max_age: Some(Duration::from_millis(1)),
            ..StreamConfig::new("S", ["s.>"])
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    assert!(err.to_string().contains("at least 100ms"), "{err}");
    let err = streams
        .create(StreamConfig::new("S", ["bad subject"]))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    streams.create(StreamConfig::new("S", ["s.>"])).unwrap();
    let err = streams
        .create(StreamConfig::new("S", ["s.>", "t"]))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert_eq!(
        streams.info("NOPE").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let err = streams.publish("nobody.captures", "x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    // A consumer name that exists with another config.
    streams
        .create_consumer("S", ConsumerConfig::durable("c"))
        .unwrap();
    let err = streams
        .create_consumer(
            "S",
            ConsumerConfig {
                deliver: DeliverPolicy::New,
                ..ConsumerConfig::durable("c")
            },
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("deliver policy can not be updated"),
        "{err}"
    );
    assert_eq!(
        streams.consumer_info("S", "nope").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let err = streams
        .fetch("S", "nope", 1, Duration::from_millis(10))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    // Waits no clock can hold are taken as "much later", not a panic.
    streams.publish("s.1", "one").await.unwrap();
    streams
        .create_consumer("S", ConsumerConfig::durable("far"))
        .unwrap();
    let got = streams.fetch("S", "far", 1, Duration::MAX).await.unwrap();
    assert_eq!(texts(&got), ["one"]);
    got[0].nak(Some(Duration::MAX)).unwrap();
    streams.delete_consumer("S", "far").unwrap();

    // A delivered message acked after its consumer is gone: a clear error, not a panic.
    streams
        .create_consumer("S", ConsumerConfig::durable("short"))
        .unwrap();
    let got = streams.fetch("S", "short", 1, WAIT).await.unwrap();
    streams.delete_consumer("S", "short").unwrap();
    let err = got[0].ack().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
    let got = streams
        .fetch("S", "c", 1, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(texts(&got), ["one"]);

    // An oversized message is refused, and not stored.
    streams
        .update(StreamConfig {
            max_message_size: Some(8),
            ..StreamConfig::new("S", ["s.>"])
        })
        .unwrap();
    let err = streams.publish("s.big", "123456789").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Full, "{err}");
    assert_eq!(streams.info("S").unwrap().state.messages, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_are_cut_or_skipped_on_reopen() {
    let dir = TempDir::new().unwrap();
    {
        let (_router, streams) = open(&dir).await;
        streams.create(StreamConfig::new("A", ["a.>"])).unwrap();
        streams.create(StreamConfig::new("B", ["b.>"])).unwrap();
        publish_n(&streams, "a.x", 5).await;
        streams.close();
    }
    // A torn tail on A's segment, and B's config overwritten with garbage.
    let seg = std::fs::read_dir(dir.path().join("streams/A"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let full = bytes.len();
    bytes.truncate(full - 3);
    std::fs::write(&seg, &bytes).unwrap();
    std::fs::write(dir.path().join("streams/B/stream.json"), b"{not json").unwrap();

    let (_router, streams) = open(&dir).await;
    assert_eq!(streams.names(), ["A"], "B is skipped, not fatal");
    let info = streams.info("A").unwrap();
    assert_eq!((info.state.messages, info.state.last_seq), (4, 4));
    // Appends continue after the cut.
    assert_eq!(streams.publish("a.x", "new").await.unwrap().seq, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_discard_old_or_refuse_new() {
    let dir = TempDir::new().unwrap();
    let (_router, streams) = open(&dir).await;
    streams
        .create(StreamConfig {
            max_messages: Some(3),
            ..StreamConfig::new("OLD", ["old"])
        })
        .unwrap();
    publish_n(&streams, "old", 5).await;
    let info = streams.info("OLD").unwrap();
    assert_eq!((info.state.messages, info.state.first_seq), (3, 3));

    streams
        .create(StreamConfig {
            max_messages: Some(2),
            discard: Discard::New,
            ..StreamConfig::new("NEW", ["new"])
        })
        .unwrap();
    publish_n(&streams, "new", 2).await;
    let err = streams.publish("new", "x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Full, "{err}");

    // A burst in flight at once: exactly the room left is stored, the rest refused, and
    // nothing acknowledged is pushed out.
    streams
        .create(StreamConfig {
            max_messages: Some(2),
            discard: Discard::New,
            ..StreamConfig::new("BURST", ["burst"])
        })
        .unwrap();
    let burst: Vec<_> = (0..6)
        .map(|i| streams.publish("burst", format!("b{i}")))
        .collect();
    let results = futures::future::join_all(burst).await;
    let acked: Vec<u64> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|a| a.seq))
        .collect();
    assert_eq!(acked, [1, 2]);
    let info = streams.info("BURST").unwrap();
    assert_eq!((info.state.messages, info.state.first_seq), (2, 1));

    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", "once").unwrap();
    let a = streams
        .publish_with_headers("old", headers.clone(), "a")
        .await
        .unwrap();
    let b = streams
        .publish_with_headers("old", headers, "b")
        .await
        .unwrap();
    assert_eq!(
        (a.seq, a.duplicate, b.seq, b.duplicate),
        (6, false, 6, true)
    );

    assert_eq!(streams.purge("OLD", &Purge::default()).unwrap(), 3);
    assert_eq!(streams.info("OLD").unwrap().state.first_seq, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_past_a_lost_tail_does_not_skip_new_messages() {
    let dir = TempDir::new().unwrap();
    {
        let (_router, streams) = open(&dir).await;
        streams.create(StreamConfig::new("A", ["a"])).unwrap();
        streams
            .create_consumer("A", ConsumerConfig::durable("d"))
            .unwrap();
        publish_n(&streams, "a", 5).await;
        let got = streams.fetch("A", "d", 5, WAIT).await.unwrap();
        for m in &got {
            m.ack().unwrap();
        }
        assert_eq!(
            streams
                .consumer_info("A", "d")
                .unwrap()
                .ack_floor
                .stream_seq,
            5
        );
        streams.close();
    }
    // The last three records never reached the disk (as after a machine crash with fsync
    // interval): cut the segment inside record 3.
    let seg = dir.path().join("streams/A/00000000000000000001.log");
    let len = std::fs::metadata(&seg).unwrap().len();
    let record = len / 5;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(2 * record + record / 2)
        .unwrap();

    let (_router, streams) = open(&dir).await;
    assert_eq!(streams.info("A").unwrap().state.last_seq, 2);
    assert_eq!(streams.publish("a", "after").await.unwrap().seq, 3);
    let got = streams
        .fetch("A", "d", 5, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(texts(&got), ["after"]);
}

/// Reads a durable's saved state file: (next stream sequence, unacknowledged count).
fn saved_state(dir: &TempDir, stream: &str, consumer: &str) -> Option<(u64, usize)> {
    let path = dir
        .path()
        .join(format!("streams/{stream}/consumers/{consumer}.json"));
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    Some((saved["next"].as_u64()?, saved["pending"].as_array()?.len()))
}

/// Waits (polling every 20 ms, within [`WAIT`]: the save has no event to wait on) until a
/// durable's saved state is `want`.
async fn saved_becomes(dir: &TempDir, stream: &str, consumer: &str, want: (u64, usize)) {
    let deadline = std::time::Instant::now() + WAIT;
    while saved_state(dir, stream, consumer) != Some(want) {
        assert!(
            std::time::Instant::now() < deadline,
            "saved state is {:?}, not {want:?}",
            saved_state(dir, stream, consumer)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A durable's deliveries and then its acks reach its state file within the save delay,
/// without a shutdown and long before any ack wait runs out (an ack must wake the consumer's
/// timer for the save even though it removes deadlines only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_saves_its_acks_soon_after_them() {
    let dir = TempDir::new().unwrap();
    let (_router, streams) = open(&dir).await;
    streams.create(StreamConfig::new("S", ["s.*"])).unwrap();
    publish_n(&streams, "s.a", 3).await;
    streams
        .create_consumer("S", ConsumerConfig::durable("d"))
        .unwrap();
    let got = streams.fetch("S", "d", 3, WAIT).await.unwrap();
    assert_eq!(got.len(), 3);
    saved_becomes(&dir, "S", "d", (4, 3)).await;
    for msg in &got {
        msg.ack().unwrap();
    }
    saved_becomes(&dir, "S", "d", (4, 0)).await;
}

/// `Streams::messages`: messages as they are stored, acks by sequence with what they found,
/// and what a closed reader held going back at once, even when the consumer's window of
/// unacknowledged messages is full (a redelivery does not add to it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_stream_acks_by_sequence_and_give_back_on_close() {
    use herald::streams::{AckKind, AckOutcome};
    use std::num::NonZeroU64;
    let dir = TempDir::new().unwrap();
    let (_router, streams) = open(&dir).await;
    streams.create(StreamConfig::new("S", ["s.>"])).unwrap();
    let config = ConsumerConfig {
        max_ack_pending: NonZeroU64::new(3),
        ack_wait: Some(Duration::from_secs(3600)),
        ..ConsumerConfig::durable("c")
    };
    streams.create_consumer("S", config).unwrap();
    publish_n(&streams, "s.x", 5).await;
    let mut first = streams.messages("S", "c", 10).unwrap();
    assert_eq!(first.consumer(), "c");
    let one = tokio::time::timeout(WAIT, first.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((one.seq(), one.delivered()), (1, 1));
    assert_eq!(
        streams.ack("S", "c", AckKind::Ack, 1).unwrap(),
        AckOutcome::Applied
    );
    assert_eq!(
        streams.ack("S", "c", AckKind::Ack, 1).unwrap(),
        AckOutcome::AlreadyAcked
    );
    assert_eq!(
        streams.ack("S", "c", AckKind::Ack, 5).unwrap(),
        AckOutcome::NotDelivered
    );
    // With 1 acknowledged, 2, 3 and 4 fill the window of 3; 2 is taken, 3 and 4 sit in
    // the reader's buffer.
    let two = tokio::time::timeout(WAIT, first.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(two.seq(), 2);
    let info = streams.consumer_info("S", "c").unwrap();
    assert_eq!((info.num_ack_pending, info.delivered.stream_seq), (3, 4));
    // Closing gives back 3 and 4 (never taken); naking 2 gives it back too.
    first.close();
    assert!(first.next().await.is_err());
    two.nak(None).unwrap();
    let mut second = streams.messages("S", "c", 10).unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let m = tokio::time::timeout(WAIT, second.next())
            .await
            .unwrap()
            .unwrap();
        got.push((m.seq(), m.delivered()));
        m.ack().unwrap();
    }
    got.sort_unstable();
    assert_eq!(got, [(2, 2), (3, 2), (4, 2)]);
    let five = tokio::time::timeout(WAIT, second.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((five.seq(), five.delivered()), (5, 1));
}

/// Configs in JSON use the SPEC's names (`max_msgs`, `num_replicas`); files written before
/// (`max_messages`, `replicas`) still read; unknown fields are refused, not ignored.
#[test]
fn config_json_names_old_and_new() {
    let new: StreamConfig = serde_json::from_str(
        r#"{"name": "S", "subjects": ["s.>"], "max_msgs": 5, "max_msgs_per_subject": 2, "num_replicas": 1}"#,
    )
    .unwrap();
    let old: StreamConfig = serde_json::from_str(
        r#"{"name": "S", "subjects": ["s.>"], "max_messages": 5, "max_messages_per_subject": 2, "replicas": 1}"#,
    )
    .unwrap();
    assert_eq!(new, old);
    assert_eq!(
        (new.max_messages, new.max_messages_per_subject, new.replicas),
        (Some(5), Some(2), 1)
    );
    let written = serde_json::to_value(&new).unwrap();
    assert_eq!(
        (written["max_msgs"].clone(), written["num_replicas"].clone()),
        (5.into(), 1.into())
    );
    assert!(serde_json::from_str::<StreamConfig>(r#"{"name": "S", "max_msg": 5}"#).is_err());
    assert!(serde_json::from_str::<ConsumerConfig>(r#"{"ack_wiat": "5s"}"#).is_err());
}
