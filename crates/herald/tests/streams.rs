//! Streams and consumers through the library API, on real files in a temporary directory.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::path::PathBuf;
use std::time::Duration;

use herald::streams::{
    AckPolicy, ConsumerConfig, DeliverPolicy, PurgeRequest, StreamConfig, Streams, StreamsOptions,
};
use herald::{Error, HeaderMap, Router};

const WAIT: Duration = Duration::from_secs(5);

/// A fresh data directory, removed when dropped.
struct DataDir(PathBuf);

impl DataDir {
    fn new(name: &str) -> DataDir {
        let dir = std::env::temp_dir().join(format!(
            "herald-streams-{name}-{}-{:x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        DataDir(dir)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn open(dir: &DataDir) -> (Router, Streams) {
    let router = Router::new(1000, "app");
    let streams = Streams::open(&router, StreamsOptions::new(&dir.0))
        .await
        .unwrap();
    (router, streams)
}

async fn publish_n(streams: &Streams, subject: &str, n: usize) {
    for i in 1..=n {
        streams.publish(subject, format!("m{i}")).await.unwrap();
    }
}

fn texts(msgs: &[herald::Message]) -> Vec<String> {
    msgs.iter().map(|m| m.text().unwrap().to_owned()).collect()
}

fn api_code(err: &Error) -> (u16, u16) {
    match err {
        Error::Stream(e) => (e.code, e.err_code),
        other => panic!("expected a stream error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_n_waits_for_distinct_consumers() {
    let dir = DataDir::new("confirm");
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
    let dir = DataDir::new("policies");
    let (_router, streams) = open(&dir).await;
    streams
        .create(StreamConfig::new("EVENTS", ["ev.*"]))
        .unwrap();
    publish_n(&streams, "ev.a", 3).await;
    let middle = herald::streams::config::rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    publish_n(&streams, "ev.b", 2).await;

    let make = |name: &str, policy: DeliverPolicy| ConsumerConfig {
        deliver_policy: policy,
        ..ConsumerConfig::durable(name)
    };
    streams
        .create_consumer("EVENTS", make("last", DeliverPolicy::Last))
        .unwrap();
    streams
        .create_consumer("EVENTS", make("new", DeliverPolicy::New))
        .unwrap();
    streams
        .create_consumer(
            "EVENTS",
            ConsumerConfig {
                opt_start_seq: Some(3),
                ..make("seq", DeliverPolicy::ByStartSequence)
            },
        )
        .unwrap();
    streams
        .create_consumer(
            "EVENTS",
            ConsumerConfig {
                opt_start_time: Some(middle),
                ..make("time", DeliverPolicy::ByStartTime)
            },
        )
        .unwrap();
    streams
        .create_consumer(
            "EVENTS",
            ConsumerConfig {
                filter_subject: Some("ev.a".into()),
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
    let dir = DataDir::new("bad");
    let (router, streams) = open(&dir).await;
    let err = streams
        .create(StreamConfig::new("BAD.NAME", ["x"]))
        .unwrap_err();
    assert_eq!(api_code(&err).1, 10052, "{err}");
    let err = streams
        .create(StreamConfig {
            max_age: 1_000_000, // 1 ms
            ..StreamConfig::new("S", ["s.>"])
        })
        .unwrap_err();
    assert_eq!(api_code(&err).1, 10052, "{err}");
    let err = streams
        .create(StreamConfig::new("S", ["bad subject"]))
        .unwrap_err();
    assert_eq!(api_code(&err).1, 10052, "{err}");
    streams.create(StreamConfig::new("S", ["s.>"])).unwrap();
    assert_eq!(api_code(&streams.info("NOPE").unwrap_err()), (404, 10059));

    // A consumer name that exists with another config.
    streams
        .create_consumer("S", ConsumerConfig::durable("c"))
        .unwrap();
    let err = streams
        .create_consumer(
            "S",
            ConsumerConfig {
                deliver_policy: DeliverPolicy::New,
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
        api_code(&streams.consumer_info("S", "nope").unwrap_err()),
        (404, 10014)
    );

    // Acks for messages never delivered, for unknown consumers and garbage: nothing changes.
    streams.publish("s.1", "one").await.unwrap();
    router
        .request("$JS.ACK.S.c.1.99.1.0.0", "", WAIT)
        .await
        .expect("an ack asking for an answer gets one");
    router.publish("$JS.ACK.S.ghost.1.1.1.0.0", "").unwrap();
    router.publish("$JS.ACK.S.c.x.y", "+ACK").unwrap();
    router.publish("$JS.ACK.S.c.1.1.1.0.0", "+WHAT").unwrap();
    let got = streams
        .fetch("S", "c", 1, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(texts(&got), ["one"]);

    // An oversized message is refused with the JetStream error, and not stored.
    streams
        .update(StreamConfig {
            max_msg_size: 8,
            ..StreamConfig::new("S", ["s.>"])
        })
        .unwrap();
    let err = streams.publish("s.big", "123456789").await.unwrap_err();
    assert_eq!(api_code(&err), (400, 10054), "{err}");
    assert_eq!(streams.info("S").unwrap().state.messages, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_are_cut_or_skipped_on_reopen() {
    let dir = DataDir::new("damage");
    {
        let (_router, streams) = open(&dir).await;
        streams.create(StreamConfig::new("A", ["a.>"])).unwrap();
        streams.create(StreamConfig::new("B", ["b.>"])).unwrap();
        publish_n(&streams, "a.x", 5).await;
        streams.close();
    }
    // A torn tail on A's segment, and B's config overwritten with garbage.
    let seg = std::fs::read_dir(dir.0.join("streams/A"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let full = bytes.len();
    bytes.truncate(full - 3);
    std::fs::write(&seg, &bytes).unwrap();
    std::fs::write(dir.0.join("streams/B/stream.json"), b"{not json").unwrap();

    let (_router, streams) = open(&dir).await;
    assert_eq!(streams.names(), ["A"], "B is skipped, not fatal");
    let info = streams.info("A").unwrap();
    assert_eq!((info.state.messages, info.state.last_seq), (4, 4));
    // Appends continue after the cut.
    assert_eq!(streams.publish("a.x", "new").await.unwrap().seq, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_discard_old_or_refuse_new() {
    let dir = DataDir::new("limits");
    let (_router, streams) = open(&dir).await;
    streams
        .create(StreamConfig {
            max_msgs: 3,
            ..StreamConfig::new("OLD", ["old"])
        })
        .unwrap();
    publish_n(&streams, "old", 5).await;
    let info = streams.info("OLD").unwrap();
    assert_eq!((info.state.messages, info.state.first_seq), (3, 3));

    streams
        .create(StreamConfig {
            max_msgs: 2,
            discard: herald::streams::Discard::New,
            ..StreamConfig::new("NEW", ["new"])
        })
        .unwrap();
    publish_n(&streams, "new", 2).await;
    let err = streams.publish("new", "x").await.unwrap_err();
    assert_eq!(api_code(&err), (503, 10077), "{err}");

    // A burst in flight at once: exactly the room left is stored, the rest refused, and
    // nothing acknowledged is pushed out.
    streams
        .create(StreamConfig {
            max_msgs: 2,
            discard: herald::streams::Discard::New,
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

    assert_eq!(streams.purge("OLD", PurgeRequest::default()).unwrap(), 3);
    assert_eq!(streams.info("OLD").unwrap().state.first_seq, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_past_a_lost_tail_does_not_skip_new_messages() {
    let dir = DataDir::new("lost-tail");
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
    let seg = dir.0.join("streams/A/00000000000000000001.log");
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

/// The status line of a pull's status message (`404 No Messages`), or `None` for a message.
fn status(msg: &herald::Message) -> Option<String> {
    let block = std::str::from_utf8(msg.header_block()?).unwrap();
    let line = block.lines().next().unwrap();
    let status = line.strip_prefix("NATS/1.0 ")?;
    Some(status.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_requests_get_jetstream_statuses() {
    let dir = DataDir::new("statuses");
    let (router, streams) = open(&dir).await;
    streams.create(StreamConfig::new("S", ["s"])).unwrap();
    streams
        .create_consumer(
            "S",
            ConsumerConfig {
                max_waiting: 1,
                ..ConsumerConfig::durable("c")
            },
        )
        .unwrap();
    let mut inbox = router.subscribe("_INBOX.test.>").unwrap();
    let next = |inbox: &mut herald::Subscription| {
        let msg = inbox.recv_timeout(WAIT).expect("an answer to the pull");
        (status(&msg), msg)
    };
    let pull = "$JS.API.CONSUMER.MSG.NEXT.S.c";

    // Nothing there and no_wait: 404 at once.
    router
        .publish_with_reply(pull, "_INBOX.test.1", r#"{"batch":1,"no_wait":true}"#)
        .unwrap();
    assert_eq!(next(&mut inbox).0.as_deref(), Some("404 No Messages"));

    // A waiting pull with a heartbeat: 100 Idle Heartbeat, then 408 at expiry.
    router
        .publish_with_reply(
            pull,
            "_INBOX.test.2",
            r#"{"batch":1,"expires":600000000,"idle_heartbeat":100000000}"#,
        )
        .unwrap();
    let (first, msg) = next(&mut inbox);
    assert_eq!(first.as_deref(), Some("100 Idle Heartbeat"));
    assert!(
        std::str::from_utf8(msg.header_block().unwrap())
            .unwrap()
            .contains("Nats-Last-Consumer: 0")
    );
    let mut last = first;
    while last.as_deref() == Some("100 Idle Heartbeat") {
        last = next(&mut inbox).0;
    }
    assert_eq!(last.as_deref(), Some("408 Request Timeout"));

    // A heartbeat that does not fit twice in the expiry is refused.
    router
        .publish_with_reply(
            pull,
            "_INBOX.test.3",
            r#"{"batch":1,"idle_heartbeat":100000000}"#,
        )
        .unwrap();
    assert_eq!(
        next(&mut inbox).0.as_deref(),
        Some("400 Bad Request - heartbeat value too large")
    );

    // A message larger than the pull's byte budget ends it.
    streams.publish("s", "0123456789".repeat(10)).await.unwrap();
    router
        .publish_with_reply(pull, "_INBOX.test.4", r#"{"batch":1,"max_bytes":50}"#)
        .unwrap();
    assert_eq!(
        next(&mut inbox).0.as_deref(),
        Some("409 Message Size Exceeds MaxBytes")
    );
    let got = streams.fetch("S", "c", 1, WAIT).await.unwrap();
    got[0].ack().unwrap();

    // max_waiting 1: a second waiting pull is refused; deleting the consumer tells the first.
    router
        .publish_with_reply(pull, "_INBOX.test.5", r#"{"batch":1,"expires":5000000000}"#)
        .unwrap();
    router
        .publish_with_reply(pull, "_INBOX.test.6", r#"{"batch":1,"expires":5000000000}"#)
        .unwrap();
    let (s, msg) = next(&mut inbox);
    assert_eq!(
        (s.as_deref(), msg.subject()),
        (Some("409 Exceeded MaxWaiting"), "_INBOX.test.6")
    );
    streams.delete_consumer("S", "c").unwrap();
    let (s, msg) = next(&mut inbox);
    assert_eq!(
        (s.as_deref(), msg.subject()),
        (Some("409 Consumer Deleted"), "_INBOX.test.5")
    );

    // A pull for a consumer that does not exist: 503, as a real server's missing subscription.
    router
        .publish_with_reply(pull, "_INBOX.test.7", "")
        .unwrap();
    assert_eq!(next(&mut inbox).0.as_deref(), Some("503"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_msg_get_update_account_info_and_inactive_ephemerals() {
    let dir = DataDir::new("api");
    let (router, streams) = open(&dir).await;
    let api = |subject: &'static str, body: &'static str| {
        let router = router.clone();
        async move {
            let reply = router.request(subject, body, WAIT).await.unwrap();
            serde_json::from_slice::<serde_json::Value>(reply.payload()).unwrap()
        }
    };
    let created = api(
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s.*"],"consumer_limits":null}"#,
    )
    .await;
    assert_eq!(
        created["type"],
        "io.nats.jetstream.api.v1.stream_create_response"
    );
    assert_eq!(created["config"]["duplicate_window"], 120_000_000_000u64);
    streams.publish("s.a", "one").await.unwrap();
    streams.publish("s.b", "two").await.unwrap();

    let got = api("$JS.API.STREAM.MSG.GET.S", r#"{"seq":2}"#).await;
    assert_eq!(
        (
            got["message"]["subject"].as_str(),
            got["message"]["data"].as_str()
        ),
        (Some("s.b"), Some("dHdv"))
    );
    let got = api("$JS.API.STREAM.MSG.GET.S", r#"{"last_by_subj":"s.a"}"#).await;
    assert_eq!(got["message"]["seq"], 1);
    let missing = api("$JS.API.STREAM.MSG.GET.S", r#"{"seq":9}"#).await;
    assert_eq!(missing["error"]["err_code"], 10037);

    let updated = api(
        "$JS.API.STREAM.UPDATE.S",
        r#"{"name":"S","subjects":["s.*","t"],"max_msgs":1}"#,
    )
    .await;
    assert_eq!(updated["state"]["messages"], 1, "{updated}");
    assert_eq!(streams.publish("t", "three").await.unwrap().seq, 3);
    let bad = api(
        "$JS.API.STREAM.UPDATE.S",
        r#"{"name":"S","storage":"memory"}"#,
    )
    .await;
    assert_eq!(bad["error"]["err_code"], 10052, "{bad}");
    let garbage = api("$JS.API.STREAM.CREATE.X", "{not json").await;
    assert_eq!(garbage["error"]["err_code"], 10025, "{garbage}");
    let unknown = api("$JS.API.NOPE", "").await;
    assert_eq!(unknown["error"]["err_code"], 10003);

    let account = api("$JS.API.INFO", "[]").await;
    assert_eq!(account["streams"], 1);

    // An ephemeral consumer with a short inactivity threshold goes away on its own.
    let eph = api(
        "$JS.API.CONSUMER.CREATE.S",
        r#"{"stream_name":"S","config":{"ack_policy":"explicit","inactive_threshold":200000000}}"#,
    )
    .await;
    let name = eph["name"].as_str().unwrap().to_owned();
    assert!(streams.consumer_info("S", &name).is_ok());
    let gone = tokio::time::timeout(WAIT, async {
        while streams.consumer_info("S", &name).is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        gone.is_ok(),
        "the inactive ephemeral consumer was not deleted"
    );
}

/// Reads a durable's saved state file: (next stream sequence, unacknowledged count).
fn saved_state(dir: &DataDir, stream: &str, consumer: &str) -> Option<(u64, usize)> {
    let path = dir
        .0
        .join(format!("streams/{stream}/consumers/{consumer}.json"));
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    Some((saved["next"].as_u64()?, saved["pending"].as_array()?.len()))
}

/// Waits (polling every 20 ms, within [`WAIT`]: the save has no event to wait on) until a
/// durable's saved state is `want`.
async fn saved_becomes(dir: &DataDir, stream: &str, consumer: &str, want: (u64, usize)) {
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
    let dir = DataDir::new("save-acks");
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
