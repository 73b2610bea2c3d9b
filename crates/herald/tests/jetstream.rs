//! The JetStream adapter through the router, as a NATS client's requests reach it: pull
//! request statuses, the API's JSON, acks on `$JS.ACK` subjects. (The official clients drive
//! the same adapter over the network in herald-cli's tests.)

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::time::Duration;

use herald::Router;
use herald::jetstream::JetStream;
use herald::streams::{ConsumerConfig, StreamConfig, Streams, StreamsOptions};
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(5);

async fn open(dir: &TempDir) -> (Router, Streams, JetStream) {
    let router = Router::new(1000, "app");
    let streams = Streams::open(&router, StreamsOptions::new(dir.path()))
        .await
        .unwrap();
    let jetstream = herald::jetstream::serve(&streams).unwrap();
    (router, streams, jetstream)
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
    let dir = TempDir::new().unwrap();
    let (router, streams, _js) = open(&dir).await;
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
    let dir = TempDir::new().unwrap();
    let (router, streams, _js) = open(&dir).await;
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
    assert_eq!(created["did_create"], true);
    let again = api(
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s.*"],"consumer_limits":null}"#,
    )
    .await;
    assert!(again.get("did_create").is_none(), "{again}");
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

    // One filter sent as a list comes back as a list (nats.go checks it), and as a field when
    // sent as a field.
    let listed = api(
        "$JS.API.CONSUMER.CREATE.S.listed",
        r#"{"stream_name":"S","config":{"name":"listed","filter_subjects":["s.a"]}}"#,
    )
    .await;
    assert_eq!(
        listed["config"]["filter_subjects"],
        serde_json::json!(["s.a"]),
        "{listed}"
    );
    assert!(listed["config"].get("filter_subject").is_none(), "{listed}");
    let single = api(
        "$JS.API.CONSUMER.CREATE.S.single.s.b",
        r#"{"stream_name":"S","config":{"name":"single","filter_subject":"s.b"}}"#,
    )
    .await;
    assert_eq!(single["config"]["filter_subject"], "s.b", "{single}");

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

/// Acks for messages never delivered, for unknown consumers, and garbage change nothing; an
/// ack that asks for an answer gets one; publishes with a reply get PubAck JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_on_the_wire_and_publish_acks() {
    let dir = TempDir::new().unwrap();
    let (router, streams, _js) = open(&dir).await;
    streams.create(StreamConfig::new("S", ["s.>"])).unwrap();
    streams
        .create_consumer("S", ConsumerConfig::durable("c"))
        .unwrap();
    let ack = router.request("s.1", "one", WAIT).await.unwrap();
    assert_eq!(ack.text().unwrap(), r#"{"stream":"S","seq":1}"#);
    // A name that JSON must escape still makes valid JSON.
    streams.create(StreamConfig::new("Q\"T", ["q"])).unwrap();
    let ack = router.request("q", "x", WAIT).await.unwrap();
    let ack: serde_json::Value = serde_json::from_slice(ack.payload()).unwrap();
    assert_eq!(ack["stream"], "Q\"T");
    router
        .request("$JS.ACK.S.c.1.99.1.0.0", "", WAIT)
        .await
        .expect("an ack asking for an answer gets one");
    router.publish("$JS.ACK.S.ghost.1.1.1.0.0", "").unwrap();
    router.publish("$JS.ACK.NOPE.c.1.1.1.0.0", "").unwrap();
    router.publish("$JS.ACK.S.c.x.y", "+ACK").unwrap();
    router.publish("$JS.ACK.S.c.1.1.1.0.0", "+WHAT").unwrap();
    let got = streams
        .fetch("S", "c", 1, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(got[0].text().unwrap(), "one");

    // A pull through the API: the message carries its $JS.ACK subject, and acking on it
    // acks the message.
    got[0].nak(None).unwrap();
    let mut inbox = router.subscribe("_INBOX.acks.>").unwrap();
    router
        .publish_with_reply("$JS.API.CONSUMER.MSG.NEXT.S.c", "_INBOX.acks.1", "1")
        .unwrap();
    let msg = inbox.recv_timeout(WAIT).unwrap();
    let ack_subject = msg.reply().unwrap().to_owned();
    assert!(
        ack_subject.starts_with("$JS.ACK.S.c.2.1.2."),
        "{ack_subject}"
    );
    router.request(&ack_subject, "+ACK", WAIT).await.unwrap();
    let info = streams.consumer_info("S", "c").unwrap();
    assert_eq!((info.num_ack_pending, info.ack_floor.stream_seq), (0, 1));

    // A nak whose delay no clock can hold is taken as "much later", not a panic; the
    // consumer goes on with the next message.
    router.publish("s.2", "two").unwrap();
    let mut inbox = router.subscribe("_INBOX.far.>").unwrap();
    router
        .publish_with_reply("$JS.API.CONSUMER.MSG.NEXT.S.c", "_INBOX.far.1", "1")
        .unwrap();
    let msg = inbox.recv_timeout(WAIT).unwrap();
    assert_eq!(msg.text().unwrap(), "two");
    let ack_subject = msg.reply().unwrap().to_owned();
    router
        .request(&ack_subject, "-NAK 18446744073709551615s", WAIT)
        .await
        .unwrap();
    router.publish("s.3", "three").unwrap();
    let got = streams.fetch("S", "c", 1, WAIT).await.unwrap();
    assert_eq!(got[0].text().unwrap(), "three");
    got[0].ack().unwrap();

    // Serving twice is refused (acks would be applied twice).
    assert!(herald::jetstream::serve(&streams).is_err());

    // An oversized message gets the JetStream error in its publish ack.
    streams
        .update(StreamConfig {
            max_message_size: Some(8),
            ..StreamConfig::new("S", ["s.>"])
        })
        .unwrap();
    let err = router.request("s.big", "123456789", WAIT).await.unwrap();
    let err: serde_json::Value = serde_json::from_slice(err.payload()).unwrap();
    assert_eq!(
        (&err["error"]["code"], &err["error"]["err_code"]),
        (&400.into(), &10054.into()),
        "{err}"
    );
}
