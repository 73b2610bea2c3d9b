//! Per-subject state of JetStream streams, driven by the official `async-nats` client against
//! `herald serve`: per-subject limits, message deletes (erased or not), reads by subject
//! (direct and through the API), purges by subject, subject counts, expected sequences and
//! rollups. Each also holds after a restart where it is durable state.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::stream::{self, DiscardPolicy};
use async_nats::jetstream::{self, Context};
use common::HeraldProcess;
use common::js::{data_dir, jetstream, publish, wait_messages};
use futures::StreamExt;

/// Every wait in these tests ends within this.
const WAIT: Duration = Duration::from_secs(10);

/// Publishes with headers; the ack's error text if it was refused.
async fn publish_with(
    js: &Context,
    subject: &str,
    headers: &[(&str, &str)],
    payload: &str,
) -> Result<u64, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, *value);
    }
    let ack = js
        .publish_with_headers(subject.to_owned(), map, payload.to_owned().into())
        .await
        .expect("publish");
    tokio::time::timeout(WAIT, ack)
        .await
        .expect("ack timed out")
        .map(|ack| ack.sequence)
        .map_err(|err| err.to_string())
}

#[tokio::test]
async fn per_subject_limits_deletes_and_reads_by_subject() {
    let dir = data_dir();
    let dir_arg = dir.path().to_str().unwrap();
    let server = HeraldProcess::start(&["--data-dir", dir_arg]);
    let js = jetstream(&server).await;
    let stream = js
        .create_stream(stream::Config {
            name: "SENSORS".into(),
            subjects: vec!["sensor.>".into()],
            max_messages_per_subject: 2,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 1..=3 {
        publish(&js, "sensor.a", &format!("a{i}")).await;
    }
    // A payload no other file can hold by chance (the node's name, kept in the data
    // directory, is random hex).
    publish(&js, "sensor.b", "secret-b1").await;
    let five = publish(&js, "sensor.c", "c1").await;
    assert_eq!(five, 5);

    // sensor.a keeps its newest two: a2 (2) and a3 (3).
    let info = stream.get_info().await.unwrap();
    assert_eq!(info.state.messages, 4);
    assert_eq!(info.state.first_sequence, 2);
    let last_a = stream
        .get_last_raw_message_by_subject("sensor.a")
        .await
        .unwrap();
    assert_eq!((last_a.sequence, &last_a.payload[..]), (3, &b"a3"[..]));
    let direct = stream
        .direct_get_last_for_subject("sensor.a")
        .await
        .unwrap();
    assert_eq!((direct.sequence, &direct.payload[..]), (3, &b"a3"[..]));
    assert_eq!(direct.subject.as_str(), "sensor.a");
    assert!(
        stream.direct_get(1).await.is_err(),
        "seq 1 went with the limit"
    );
    let next_a = stream
        .direct_get_next_for_subject("sensor.a", Some(3))
        .await
        .unwrap();
    assert_eq!(next_a.sequence, 3);

    // Counts per subject.
    let mut subjects = std::collections::BTreeMap::new();
    let mut pages = stream.info_with_subjects(">").await.unwrap();
    while let Some(entry) = tokio::time::timeout(WAIT, pages.next()).await.unwrap() {
        let (subject, n) = entry.unwrap();
        subjects.insert(subject, n);
    }
    assert_eq!(
        subjects.into_iter().collect::<Vec<_>>(),
        [
            ("sensor.a".to_owned(), 2),
            ("sensor.b".to_owned(), 1),
            ("sensor.c".to_owned(), 1)
        ]
    );

    // A delete (erased by default, as the client asks): never served again, not even after
    // a restart, and its bytes are gone from the disk.
    assert!(stream.delete_message(4).await.unwrap());
    assert!(stream.direct_get(4).await.is_err());
    assert!(stream.get_raw_message(4).await.is_err());
    assert!(stream.delete_message(4).await.is_err(), "deleted twice");
    let info = stream.get_info().await.unwrap();
    assert_eq!(info.state.messages, 3);
    assert_eq!(info.state.deleted_count, Some(1));

    // A filtered consumer counts only its subject.
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("only-a".into()),
            filter_subject: "sensor.a".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut consumer: jetstream::consumer::PullConsumer = consumer;
    assert_eq!(consumer.info().await.unwrap().num_pending, 2);

    // Purge one subject, keeping its newest.
    let purged = stream.purge().filter("sensor.a").keep(1).await.unwrap();
    assert_eq!(purged.purged, 1);
    assert!(stream.direct_get(2).await.is_err());
    assert_eq!(consumer.info().await.unwrap().num_pending, 1);

    assert!(server.terminate().success());
    let mut found_b1 = false;
    for entry in walk(dir.path()) {
        if std::fs::read(&entry)
            .unwrap()
            .windows(9)
            .any(|w| w == b"secret-b1")
        {
            found_b1 = true;
        }
    }
    assert!(!found_b1, "the erased message's payload is still on disk");

    let server = HeraldProcess::start(&["--data-dir", dir_arg]);
    let js = jetstream(&server).await;
    let stream = js.get_stream("SENSORS").await.unwrap();
    assert!(stream.direct_get(4).await.is_err(), "the delete survived");
    assert!(stream.direct_get(2).await.is_err(), "the purge survived");
    let info = stream.get_info().await.unwrap();
    assert_eq!(info.state.messages, 2);
    // The limit still holds after the restart.
    publish(&js, "sensor.a", "a4").await;
    publish(&js, "sensor.a", "a5").await;
    assert!(stream.direct_get(3).await.is_err());
    assert_eq!(
        &stream
            .direct_get_last_for_subject("sensor.a")
            .await
            .unwrap()
            .payload[..],
        b"a5"
    );
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn deny_delete_and_discard_new_per_subject() {
    let dir = data_dir();
    let server = HeraldProcess::start(&["--data-dir", dir.path().to_str().unwrap()]);
    let js = jetstream(&server).await;
    let stream = js
        .create_stream(stream::Config {
            name: "LOCKED".into(),
            subjects: vec!["locked.>".into()],
            max_messages_per_subject: 1,
            discard: DiscardPolicy::New,
            discard_new_per_subject: true,
            deny_delete: true,
            ..Default::default()
        })
        .await
        .unwrap();
    publish(&js, "locked.a", "1").await;
    publish(&js, "locked.b", "1").await;
    let refused = publish_with(&js, "locked.a", &[], "2").await.unwrap_err();
    assert!(
        refused.contains("maximum messages per subject exceeded"),
        "{refused}"
    );
    let err = stream.delete_message(1).await.unwrap_err().to_string();
    assert!(err.contains("message delete not permitted"), "{err}");
    assert_eq!(stream.get_info().await.unwrap().state.messages, 2);

    // Without discard new, a per-subject discard is refused as nats-server does.
    let err = js
        .create_stream(stream::Config {
            name: "BAD".into(),
            subjects: vec!["bad.>".into()],
            max_messages_per_subject: 1,
            discard_new_per_subject: true,
            ..Default::default()
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("discard new per subject"), "{err}");
}

#[tokio::test]
async fn expected_sequences_and_rollups() {
    let dir = data_dir();
    let server = HeraldProcess::start(&["--data-dir", dir.path().to_str().unwrap()]);
    let js = jetstream(&server).await;
    let stream = js
        .create_stream(stream::Config {
            name: "STATE".into(),
            subjects: vec!["state.>".into()],
            allow_rollup: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(publish(&js, "state.a", "1").await, 1);
    assert_eq!(publish(&js, "state.b", "1").await, 2);

    // The last sequence of the subject, and of the stream.
    let wrong = publish_with(
        &js,
        "state.a",
        &[("Nats-Expected-Last-Subject-Sequence", "2")],
        "x",
    )
    .await
    .unwrap_err();
    assert!(wrong.contains("wrong last sequence: 1"), "{wrong}");
    let seq = publish_with(
        &js,
        "state.a",
        &[("Nats-Expected-Last-Subject-Sequence", "1")],
        "2",
    )
    .await
    .unwrap();
    assert_eq!(seq, 3);
    let fresh = publish_with(
        &js,
        "state.new",
        &[("Nats-Expected-Last-Subject-Sequence", "0")],
        "1",
    )
    .await;
    assert_eq!(fresh, Ok(4));
    let wrong = publish_with(&js, "state.a", &[("Nats-Expected-Last-Sequence", "3")], "x")
        .await
        .unwrap_err();
    assert!(wrong.contains("wrong last sequence: 4"), "{wrong}");
    assert_eq!(
        publish_with(&js, "state.a", &[("Nats-Expected-Last-Sequence", "4")], "3").await,
        Ok(5)
    );

    // The last message's id.
    assert_eq!(
        publish_with(&js, "state.c", &[("Nats-Msg-Id", "m1")], "c").await,
        Ok(6)
    );
    assert_eq!(
        publish_with(&js, "state.c", &[("Nats-Expected-Last-Msg-Id", "m1")], "c2").await,
        Ok(7)
    );
    let wrong = publish_with(&js, "state.c", &[("Nats-Expected-Last-Msg-Id", "m1")], "x")
        .await
        .unwrap_err();
    assert!(wrong.contains("wrong last msg ID"), "{wrong}");
    js.get_stream("STATE")
        .await
        .unwrap()
        .purge()
        .filter("state.c")
        .await
        .unwrap();

    // A subject rollup leaves only the new message on its subject.
    assert_eq!(
        publish_with(&js, "state.a", &[("Nats-Rollup", "sub")], "rolled").await,
        Ok(8)
    );
    let info = stream.get_info().await.unwrap();
    assert_eq!(info.state.messages, 3, "state.b, state.new and the rollup");
    assert!(stream.get_raw_message(5).await.is_err());
    assert!(stream.get_raw_message(2).await.is_ok());
    // A stream rollup leaves only the new message.
    assert_eq!(
        publish_with(&js, "state.b", &[("Nats-Rollup", "all")], "all").await,
        Ok(9)
    );
    let info = stream.get_info().await.unwrap();
    assert_eq!((info.state.messages, info.state.first_sequence), (1, 9));

    // Not allowed, or not a rollup: refused.
    js.create_stream(stream::Config {
        name: "PLAIN".into(),
        subjects: vec!["plain.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let refused = publish_with(&js, "plain.a", &[("Nats-Rollup", "sub")], "x")
        .await
        .unwrap_err();
    assert!(refused.contains("rollup not permitted"), "{refused}");
    let refused = publish_with(&js, "state.a", &[("Nats-Rollup", "some")], "x")
        .await
        .unwrap_err();
    assert!(refused.contains("rollup value invalid"), "{refused}");
}

#[tokio::test]
async fn messages_with_their_own_ttl_expire_even_across_a_restart() {
    let dir = data_dir();
    let dir_arg = dir.path().to_str().unwrap();
    let server = HeraldProcess::start(&["--data-dir", dir_arg]);
    let js = jetstream(&server).await;
    // `allow_msg_ttl` as nats-py sends it (async-nats has it only for 2.11 servers).
    let created: serde_json::Value = js
        .request(
            "STREAM.CREATE.TTL",
            &serde_json::json!({"name": "TTL", "subjects": ["ttl.>"], "allow_msg_ttl": true}),
        )
        .await
        .unwrap();
    assert_eq!(created["config"]["allow_msg_ttl"], true, "{created}");
    let stream = js.get_stream("TTL").await.unwrap();
    assert_eq!(
        publish_with(&js, "ttl.short", &[("Nats-TTL", "1s")], "a").await,
        Ok(1)
    );
    assert_eq!(
        publish_with(&js, "ttl.long", &[("Nats-TTL", "2")], "b").await,
        Ok(2)
    );
    assert_eq!(
        publish_with(&js, "ttl.keep", &[("Nats-TTL", "never")], "c").await,
        Ok(3)
    );
    assert_eq!(publish(&js, "ttl.plain", "d").await, 4);
    let bad = publish_with(&js, "ttl.bad", &[("Nats-TTL", "soon")], "x")
        .await
        .unwrap_err();
    assert!(bad.contains("invalid per-message TTL"), "{bad}");
    let bad = publish_with(&js, "ttl.bad", &[("Nats-TTL", "10ms")], "x")
        .await
        .unwrap_err();
    assert!(bad.contains("invalid per-message TTL"), "{bad}");
    // The first goes after a second.
    let deadline = tokio::time::Instant::now() + WAIT;
    while stream.get_raw_message(1).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "seq 1 never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stream.get_raw_message(2).await.is_ok(), "seq 2 lives 2 s");
    // Across a restart, the second still expires on time.
    assert!(server.terminate().success());
    let server = HeraldProcess::start(&["--data-dir", dir_arg]);
    let js = jetstream(&server).await;
    let stream = js.get_stream("TTL").await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while stream.get_raw_message(2).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "seq 2 never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stream.get_raw_message(3).await.is_ok(), "never expires");
    assert!(stream.get_raw_message(4).await.is_ok(), "no TTL, kept");

    // A stream that does not allow them refuses them.
    js.create_stream(stream::Config {
        name: "NOTTL".into(),
        subjects: vec!["nottl.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let refused = publish_with(&js, "nottl.a", &[("Nats-TTL", "1s")], "x")
        .await
        .unwrap_err();
    assert!(refused.contains("per-message TTL is disabled"), "{refused}");
}

/// Fetches up to `n` messages of `consumer` and acks each (with a confirmed ack).
async fn take(consumer: &async_nats::jetstream::consumer::PullConsumer, n: usize) -> Vec<String> {
    let mut batch = consumer
        .fetch()
        .max_messages(n)
        .expires(Duration::from_millis(500))
        .messages()
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(msg) = tokio::time::timeout(WAIT, batch.next()).await.unwrap() {
        let msg = msg.unwrap();
        msg.double_ack().await.unwrap();
        out.push(String::from_utf8(msg.payload.to_vec()).unwrap());
    }
    out
}

fn filtered(name: &str, filter: &str) -> pull::Config {
    pull::Config {
        durable_name: Some(name.into()),
        filter_subject: filter.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_work_queue_removes_what_its_consumer_acknowledged() {
    let dir = data_dir();
    let server = HeraldProcess::start(&["--data-dir", dir.path().to_str().unwrap()]);
    let js = jetstream(&server).await;
    let stream = js
        .create_stream(stream::Config {
            name: "WQ".into(),
            subjects: vec!["wq.>".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .unwrap();
    let a = stream.create_consumer(filtered("a", "wq.a")).await.unwrap();
    let b = stream.create_consumer(filtered("b", "wq.b")).await.unwrap();
    // The rules of a work queue, with nats-server's codes.
    for (config, code) in [
        (pull::Config::default(), "10099"),
        (filtered("a2", "wq.a"), "10100"),
        (
            pull::Config {
                ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
                ..filtered("c", "wq.c")
            },
            "10098",
        ),
    ] {
        let err = stream
            .create_consumer(config)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(code), "{err}");
    }
    for i in 0..5 {
        publish(&js, "wq.a", &format!("a{i}")).await;
        publish(&js, "wq.b", &format!("b{i}")).await;
    }
    assert_eq!(take(&a, 5).await, ["a0", "a1", "a2", "a3", "a4"]);
    wait_messages(&stream, 5).await;
    assert_eq!(take(&b, 3).await, ["b0", "b1", "b2"]);
    wait_messages(&stream, 2).await;
    // What is left is what b has not done.
    assert_eq!(take(&b, 5).await, ["b3", "b4"]);
    wait_messages(&stream, 0).await;
}

#[tokio::test]
async fn interest_keeps_a_message_until_everyone_who_takes_it_acknowledged() {
    let dir = data_dir();
    let server = HeraldProcess::start(&["--data-dir", dir.path().to_str().unwrap()]);
    let js = jetstream(&server).await;
    let stream = js
        .create_stream(stream::Config {
            name: "INT".into(),
            subjects: vec!["int.>".into()],
            retention: stream::RetentionPolicy::Interest,
            ..Default::default()
        })
        .await
        .unwrap();
    // Nobody is interested yet: nothing is kept.
    for i in 0..3 {
        publish(&js, "int.x", &format!("early{i}")).await;
    }
    wait_messages(&stream, 0).await;
    let all = stream
        .create_consumer(pull::Config {
            durable_name: Some("all".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let ys = stream
        .create_consumer(filtered("ys", "int.y"))
        .await
        .unwrap();
    publish(&js, "int.x", "x1").await;
    publish(&js, "int.y", "y1").await;
    publish(&js, "int.y", "y2").await;
    assert_eq!(take(&all, 3).await, ["x1", "y1", "y2"]);
    // int.x had only "all"; the int.y messages wait for "ys".
    wait_messages(&stream, 2).await;
    assert_eq!(take(&ys, 3).await, ["y1", "y2"]);
    wait_messages(&stream, 0).await;

    // Without "all", an int.x message has no taker at all: it is never kept (not even
    // until a tick), though its publisher gets its sequence, as from nats-server.
    let mut stream = stream;
    stream.delete_consumer("all").await.unwrap();
    let unwanted = publish(&js, "int.x", "x2").await;
    let state = stream.info().await.unwrap().state.clone();
    assert_eq!(state.messages, 0, "{state:?}");
    assert_eq!(state.last_sequence, unwanted);
    let wanted = publish(&js, "int.y", "y3").await;
    assert_eq!(wanted, unwanted + 1);
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
    assert_eq!(take(&ys, 3).await, ["y3"]);
    wait_messages(&stream, 0).await;
}

/// One request on the raw client: the answer's status code (none for a plain message), its
/// description and body.
async fn ask(
    client: &async_nats::Client,
    subject: &str,
    body: &str,
) -> (Option<u16>, String, String) {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply(subject.to_owned(), inbox, body.to_owned().into())
        .await
        .unwrap();
    let msg = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("no answer")
        .unwrap();
    (
        msg.status.map(|s| s.as_u16()),
        msg.description.clone().unwrap_or_default(),
        String::from_utf8_lossy(&msg.payload).into_owned(),
    )
}

#[tokio::test]
async fn bad_requests_to_the_new_calls_get_clear_answers_and_change_nothing() {
    let dir = data_dir();
    let server = HeraldProcess::start(&["--data-dir", dir.path().to_str().unwrap()]);
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let stream = js
        .create_stream(stream::Config {
            name: "BAD".into(),
            subjects: vec!["bad.>".into()],
            allow_direct: true,
            ..Default::default()
        })
        .await
        .unwrap();
    publish(&js, "bad.a", "1").await;
    publish(&js, "bad.b", "2").await;

    // Message deletes.
    let (_, _, body) = ask(&client, "$JS.API.STREAM.MSG.DELETE.BAD", "{not json").await;
    assert!(body.contains("\"error\""), "{body}");
    let (_, _, body) = ask(&client, "$JS.API.STREAM.MSG.DELETE.BAD", r#"{"seq":99}"#).await;
    assert!(body.contains("no message found"), "{body}");
    let (_, _, body) = ask(&client, "$JS.API.STREAM.MSG.DELETE.NOPE", r#"{"seq":1}"#).await;
    assert!(body.contains("stream not found"), "{body}");

    // Direct gets answer with a status, never a header-less message.
    let cases = [
        ("$JS.API.DIRECT.GET.BAD", "{garbage", 408, "Bad Request"),
        ("$JS.API.DIRECT.GET.BAD", "", 408, "Empty Request"),
        (
            "$JS.API.DIRECT.GET.BAD",
            r#"{"seq":99}"#,
            404,
            "Message Not Found",
        ),
        ("$JS.API.DIRECT.GET.BAD.bad.a", "{}", 408, "Bad Request"),
        (
            "$JS.API.DIRECT.GET.BAD",
            r#"{"seq":1,"last_by_subj":"bad.a"}"#,
            408,
            "Bad Request",
        ),
        (
            "$JS.API.DIRECT.GET.BAD.bad.zzz",
            "",
            404,
            "Message Not Found",
        ),
    ];
    for (subject, body, code, description) in cases {
        let (status, desc, _) = ask(&client, subject, body).await;
        assert_eq!(status, Some(code), "{subject} {body}");
        assert_eq!(desc, description, "{subject} {body}");
    }
    // A good one carries the message's place in its headers.
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply("$JS.API.DIRECT.GET.BAD.bad.b", inbox, "".into())
        .await
        .unwrap();
    let msg = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    let headers = msg.headers.unwrap();
    assert_eq!(headers.get("Nats-Sequence").unwrap().as_str(), "2");
    assert_eq!(headers.get("Nats-Subject").unwrap().as_str(), "bad.b");
    assert_eq!(headers.get("Nats-Stream").unwrap().as_str(), "BAD");
    assert_eq!(&msg.payload[..], b"2");
    // A batch: each message, then the end with what is left.
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply(
            "$JS.API.DIRECT.GET.BAD",
            inbox,
            r#"{"seq":1,"batch":5}"#.into(),
        )
        .await
        .unwrap();
    let mut payloads = Vec::new();
    loop {
        let msg = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap()
            .unwrap();
        if msg.status.map(|s| s.as_u16()) == Some(204) {
            assert_eq!(msg.description.as_deref(), Some("EOB"));
            break;
        }
        payloads.push(String::from_utf8(msg.payload.to_vec()).unwrap());
    }
    assert_eq!(payloads, ["1", "2"]);

    // Bad subject filters and header values.
    let (_, _, body) = ask(
        &client,
        "$JS.API.STREAM.INFO.BAD",
        r#"{"subjects_filter":"bad..x"}"#,
    )
    .await;
    assert!(body.contains("\"error\""), "{body}");
    let refused = publish_with(
        &js,
        "bad.a",
        &[("Nats-Expected-Last-Subject-Sequence", "soon")],
        "x",
    )
    .await
    .unwrap_err();
    assert!(refused.contains("must be a sequence number"), "{refused}");

    // Nothing changed.
    let info = stream.get_info().await.unwrap();
    assert_eq!((info.state.messages, info.state.last_sequence), (2, 2));
}

#[tokio::test]
async fn stored_messages_are_republished_with_their_place() {
    let dir = data_dir();
    let server = HeraldProcess::start(&["--data-dir", dir.path().to_str().unwrap()]);
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let created: serde_json::Value = js
        .request(
            "STREAM.CREATE.REPUB",
            &serde_json::json!({"name": "REPUB", "subjects": ["orders.>"],
                "republish": {"src": "orders.*", "dest": "copies.{{wildcard(1)}}"}}),
        )
        .await
        .unwrap();
    assert_eq!(
        created["config"]["republish"]["dest"], "copies.{{wildcard(1)}}",
        "{created}"
    );
    let mut copies = client.subscribe("copies.>").await.unwrap();
    client.flush().await.unwrap();
    assert_eq!(
        publish_with(&js, "orders.eu", &[("App", "x")], "order 1").await,
        Ok(1)
    );
    // Not taken by the rule's source (two tokens after orders): stored, not republished.
    publish(&js, "orders.eu.late", "order 2").await;
    assert_eq!(publish(&js, "orders.us", "order 3").await, 3);
    for (subject, seq, payload) in [("copies.eu", "1", "order 1"), ("copies.us", "3", "order 3")] {
        let msg = tokio::time::timeout(WAIT, copies.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(msg.subject.as_str(), subject);
        assert_eq!(&msg.payload[..], payload.as_bytes());
        let headers = msg.headers.unwrap();
        assert_eq!(headers.get("Nats-Stream").unwrap().as_str(), "REPUB");
        assert_eq!(headers.get("Nats-Sequence").unwrap().as_str(), seq);
        assert!(headers.get("Nats-Time-Stamp").is_some());
        if seq == "1" {
            assert_eq!(
                headers.get("App").unwrap().as_str(),
                "x",
                "its own headers kept"
            );
            assert_eq!(headers.get("Nats-Subject").unwrap().as_str(), "orders.eu");
        }
    }

    // Headers only: the size instead of the payload.
    let slim_created: serde_json::Value = js
        .request(
            "STREAM.CREATE.SLIM",
            &serde_json::json!({"name": "SLIM", "subjects": ["slim.>"],
                "republish": {"src": "slim.>", "dest": "slim-copy.>", "headers_only": true}}),
        )
        .await
        .unwrap();
    assert!(slim_created.get("error").is_none(), "{slim_created}");
    let mut slim = client.subscribe("slim-copy.>").await.unwrap();
    client.flush().await.unwrap();
    publish(&js, "slim.a.b", "twelve bytes").await;
    let msg = tokio::time::timeout(WAIT, slim.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.subject.as_str(), "slim-copy.a.b");
    assert!(msg.payload.is_empty());
    assert_eq!(
        msg.headers.unwrap().get("Nats-Msg-Size").unwrap().as_str(),
        "12"
    );

    // A rule that would feed the stream again is refused.
    let refused: serde_json::Value = js
        .request(
            "STREAM.CREATE.LOOP",
            &serde_json::json!({"name": "LOOP", "subjects": ["loop.>"],
                "republish": {"src": "loop.*", "dest": "loop.again.*"}}),
        )
        .await
        .unwrap();
    assert_eq!(refused["error"]["err_code"], 10052, "{refused}");
}

/// The payloads a stream holds, in order (read with direct gets by sequence).
#[tokio::test]
async fn deny_purge_and_sealed_streams_refuse_changes() {
    let dir = data_dir();
    let server = HeraldProcess::start(&["--data-dir", dir.path().to_str().unwrap()]);
    let js = jetstream(&server).await;
    let config = stream::Config {
        name: "KEEP".into(),
        subjects: vec!["keep.>".into()],
        deny_purge: true,
        ..Default::default()
    };
    let stream = js.create_stream(config.clone()).await.unwrap();
    publish(&js, "keep.a", "1").await;
    let err = stream.purge().await.unwrap_err().to_string();
    assert!(err.contains("stream purge not permitted"), "{err}");

    // Sealed only by an update, and never unsealed.
    let err = js
        .create_stream(stream::Config {
            name: "SEALED".into(),
            sealed: true,
            ..Default::default()
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("can not be sealed"), "{err}");
    js.update_stream(stream::Config {
        sealed: true,
        ..config.clone()
    })
    .await
    .unwrap();
    let refused = publish_with(&js, "keep.b", &[], "2").await.unwrap_err();
    assert!(refused.contains("sealed"), "{refused}");
    let err = stream.delete_message(1).await.unwrap_err().to_string();
    assert!(err.contains("not permitted"), "{err}");
    let err = js.update_stream(config).await.unwrap_err().to_string();
    assert!(err.contains("unseal"), "{err}");
    assert_eq!(stream.get_info().await.unwrap().state.messages, 1);
}

#[tokio::test]
async fn sampled_acks_are_published_as_metrics() {
    let dir = data_dir();
    let server = HeraldProcess::start(&["--data-dir", dir.path().to_str().unwrap()]);
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let stream = js
        .create_stream(stream::Config {
            name: "SAMPLED".into(),
            subjects: vec!["sampled.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("watched".into()),
            sample_frequency: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut metrics = client
        .subscribe("$JS.EVENT.METRIC.CONSUMER.ACK.SAMPLED.watched")
        .await
        .unwrap();
    client.flush().await.unwrap();
    publish(&js, "sampled.a", "1").await;
    assert_eq!(take(&consumer, 1).await, ["1"]);
    let metric = tokio::time::timeout(WAIT, metrics.next())
        .await
        .expect("no ack metric")
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&metric.payload).unwrap();
    assert_eq!(body["type"], "io.nats.jetstream.metric.v1.consumer_ack");
    assert_eq!(body["stream"], "SAMPLED");
    assert_eq!(body["consumer"], "watched");
    assert_eq!(body["stream_seq"], 1);
    assert_eq!(body["consumer_seq"], 1);
    assert_eq!(body["deliveries"], 1);
    assert!(body["ack_time"].as_u64().unwrap() > 0, "{body}");
}
