//! Streams over HTTP (SPEC 4.2): CRUD in herald's JSON shape, stored messages, consuming as
//! Server-Sent Events with acks over HTTP, and resuming with `Last-Event-ID`.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

mod common;

use std::collections::BTreeMap;

use common::HeraldProcess;
use common::sse::{Events, WAIT, error_of, http};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

/// A server with a data directory (streams on), and that directory.
fn server() -> (HeraldProcess, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = HeraldProcess::start(&["--data-dir", dir.path().to_str().unwrap()]);
    (server, dir)
}

async fn json_of(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn publish(url: &str, subject: &str, body: &str) -> Value {
    json_of(
        http()
            .post(format!("{url}/v1/publish/{subject}"))
            .body(body.to_owned())
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn ack(url: &str, consumer: &str, seq: u64) -> reqwest::Response {
    http()
        .post(format!("{url}/v1/streams/S/consumers/{consumer}/ack/{seq}"))
        .send()
        .await
        .unwrap()
}

async fn make_stream(url: &str, config: Value) {
    let r = http()
        .put(format!("{url}/v1/streams/S"))
        .json(&config)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn streams_and_consumers_crud_in_herald_json() {
    let (server, _dir) = server();
    let url = server.http_url();
    let c = http();
    // Only subjects: defaults fill the rest.
    let made = json_of(
        c.put(format!("{url}/v1/streams/ORDERS"))
            .json(&json!({"subjects": ["orders.>"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(made["config"]["name"], "ORDERS");
    assert_eq!(made["config"]["duplicate_window"], "2m");
    assert_eq!(made["config"]["num_replicas"], 1);
    assert_eq!(
        made["state"],
        json!({"messages": 0, "bytes": 0, "first_seq": 0, "last_seq": 0, "consumers": 0})
    );
    for i in 1..=3 {
        let ack = publish(&url, &format!("orders.{i}"), &format!("o{i}")).await;
        assert_eq!(
            ack,
            json!({"subject": format!("orders.{i}"), "stream": "ORDERS", "seq": i})
        );
    }
    // Update: limits, as humantime durations.
    let updated = json_of(
        c.put(format!("{url}/v1/streams/ORDERS"))
            .json(&json!({"subjects": ["orders.>"], "max_msgs": 100, "max_age": "7d"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (
            updated["config"]["max_msgs"].clone(),
            updated["config"]["max_age"].clone()
        ),
        (json!(100), json!("7days"))
    );
    assert_eq!(updated["state"]["last_seq"], 3);
    let list = json_of(c.get(format!("{url}/v1/streams")).send().await.unwrap()).await;
    assert_eq!(list["streams"].as_array().unwrap().len(), 1);
    let stored = json_of(
        c.get(format!("{url}/v1/streams/ORDERS/messages/2"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (
            stored["subject"].clone(),
            stored["data"].clone(),
            stored["seq"].clone(),
            stored["stream"].clone()
        ),
        (json!("orders.2"), json!("o2"), json!(2), json!("ORDERS"))
    );
    assert!(stored["time"].as_str().unwrap().ends_with('Z'));
    // Consumers.
    let consumer = json_of(
        c.put(format!("{url}/v1/streams/ORDERS/consumers/billing"))
            .json(&json!({"ack_wait": "10s", "max_deliver": 3}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (consumer["name"].clone(), consumer["stream"].clone()),
        (json!("billing"), json!("ORDERS"))
    );
    assert_eq!(consumer["config"]["ack_wait"], "10s");
    assert_eq!(consumer["num_pending"], 3);
    assert_eq!(consumer["delivered"]["stream_seq"], 0);
    assert_eq!(consumer["ack_floor"]["stream_seq"], 0);
    let one = json_of(
        c.get(format!("{url}/v1/streams/ORDERS/consumers/billing"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(one["num_ack_pending"], 0);
    let all = json_of(
        c.get(format!("{url}/v1/streams/ORDERS/consumers"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(all["consumers"][0]["name"], "billing");
    json_of(
        c.delete(format!("{url}/v1/streams/ORDERS/consumers/billing"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let gone = c
        .get(format!("{url}/v1/streams/ORDERS/consumers/billing"))
        .send()
        .await
        .unwrap();
    error_of(gone, StatusCode::NOT_FOUND).await;
    // Purge, then delete.
    let purged = json_of(
        c.post(format!("{url}/v1/streams/ORDERS/purge"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(purged, json!({"purged": 3}));
    let missing = c
        .get(format!("{url}/v1/streams/ORDERS/messages/2"))
        .send()
        .await
        .unwrap();
    error_of(missing, StatusCode::NOT_FOUND).await;
    json_of(
        c.delete(format!("{url}/v1/streams/ORDERS"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    for path in [
        "/v1/streams/ORDERS",
        "/v1/streams/ORDERS/consumers",
        "/v1/streams/ORDERS/consume",
    ] {
        let r = c.get(format!("{url}{path}")).send().await.unwrap();
        error_of(r, StatusCode::NOT_FOUND).await;
    }
}

#[tokio::test]
async fn bad_stream_requests_get_their_status() {
    let (server, _dir) = server();
    let url = server.http_url();
    let c = http();
    for (body, status) in [
        ("{", StatusCode::BAD_REQUEST),
        (
            r#"{"subjects": ["a"], "bogus": 1}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            r#"{"subjects": ["a"], "max_age": "soon"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            r#"{"name": "OTHER", "subjects": ["a"]}"#,
            StatusCode::BAD_REQUEST,
        ),
        (r#"{"subjects": ["a.>.b"]}"#, StatusCode::BAD_REQUEST),
    ] {
        let r = c
            .put(format!("{url}/v1/streams/S"))
            .body(body)
            .send()
            .await
            .unwrap();
        error_of(r, status).await;
    }
    make_stream(&url, json!({"subjects": ["s.>"]})).await;
    for (path, status) in [
        ("/v1/streams/S/messages/x", StatusCode::BAD_REQUEST),
        ("/v1/streams/S/messages/1", StatusCode::NOT_FOUND),
        ("/v1/streams/NOPE", StatusCode::NOT_FOUND),
        (
            "/v1/streams/S/consume?start=sometime",
            StatusCode::BAD_REQUEST,
        ),
        ("/v1/streams/S/consume?ack=maybe", StatusCode::BAD_REQUEST),
        (
            "/v1/streams/S/consume?last_event_id=abc",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = c.get(format!("{url}{path}")).send().await.unwrap();
        error_of(r, status).await;
    }
    let r = c
        .post(format!("{url}/v1/streams/S/consumers/nobody/ack/1"))
        .send()
        .await
        .unwrap();
    error_of(r, StatusCode::NOT_FOUND).await;
    let r = c
        .post(format!("{url}/v1/streams/S/consumers/nobody/ack/1"))
        .json(&json!({"action": "maybe"}))
        .send()
        .await
        .unwrap();
    error_of(r, StatusCode::BAD_REQUEST).await;
    // Without a data directory there are no streams.
    let plain = HeraldProcess::start(&[]);
    let r = c
        .get(format!("{}/v1/streams", plain.http_url()))
        .send()
        .await
        .unwrap();
    error_of(r, StatusCode::SERVICE_UNAVAILABLE).await;
    // Streams live in the default scope.
    let r = c
        .get(format!("{url}/v1/streams?scope=other"))
        .send()
        .await
        .unwrap();
    error_of(r, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn an_ephemeral_consumer_streams_events_and_takes_acks_over_http() {
    let (server, _dir) = server();
    let url = server.http_url();
    make_stream(&url, json!({"subjects": ["s.>"]})).await;
    publish(&url, "s.1", "one").await;
    let mut events = Events::open(http().get(format!("{url}/v1/streams/S/consume"))).await;
    let first = events.next().await;
    assert_eq!(first.event, "consumer");
    let name = first.data["consumer"].as_str().unwrap().to_owned();
    // Live messages follow the stored ones.
    publish(&url, "s.2", "two").await;
    for (seq, data) in [(1, "one"), (2, "two")] {
        let e = events.next().await;
        assert_eq!(
            (e.event.as_str(), e.id.clone()),
            ("message", Some(seq.to_string()))
        );
        assert_eq!(e.data["data"], data);
        assert_eq!(e.data["stream"], "S");
        assert_eq!(e.data["seq"], seq);
        assert_eq!(e.data["consumer"], name.as_str());
        assert_eq!(e.data["delivered"], 1);
    }
    assert_eq!(ack(&url, &name, 1).await.status(), StatusCode::OK);
    assert_eq!(
        ack(&url, &name, 1).await.status(),
        StatusCode::OK,
        "a second ack is harmless"
    );
    error_of(ack(&url, &name, 9).await, StatusCode::CONFLICT).await;
    let nak = http()
        .post(format!("{url}/v1/streams/S/consumers/{name}/ack/2"))
        .json(&json!({"action": "nak"}))
        .send()
        .await
        .unwrap();
    assert_eq!(nak.status(), StatusCode::OK);
    let again = events.next().await;
    assert_eq!(
        (again.data["seq"].clone(), again.data["delivered"].clone()),
        (json!(2), json!(2))
    );
    // The consumer goes with its connection.
    drop(events);
    let c = http();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = c
            .get(format!("{url}/v1/streams/S/consumers/{name}"))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ephemeral consumer outlived its client"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_durable_consumer_resumes_and_redelivers_what_was_not_acked() {
    let (server, _dir) = server();
    let url = server.http_url();
    make_stream(&url, json!({"subjects": ["s.>"]})).await;
    for i in 1..=6 {
        publish(&url, &format!("s.{i}"), &i.to_string()).await;
    }
    let consume = format!("{url}/v1/streams/S/consume?consumer=C&ack_wait=1h");
    let mut events = Events::open(http().get(&consume)).await;
    assert_eq!(events.next().await.data, json!({"consumer": "C"}));
    for seq in 1..=4 {
        assert_eq!(events.next().await.data["seq"], seq);
    }
    // 1 and 2 acked; 3 and 4 seen and not acked; 5 and 6 maybe sent, never seen.
    for seq in [1, 2] {
        assert_eq!(ack(&url, "C", seq).await.status(), StatusCode::OK);
    }
    drop(events);
    let mut events = Events::open(http().get(&consume).header("Last-Event-ID", "4")).await;
    assert_eq!(events.next().await.data, json!({"consumer": "C"}));
    let mut got = BTreeMap::new();
    while got.len() < 4 {
        let e = events.next().await;
        got.insert(
            e.data["seq"].as_u64().unwrap(),
            e.data["delivered"].as_u64().unwrap(),
        );
    }
    // Nothing acked comes again; everything unacked does, at once (ack_wait is an hour).
    assert_eq!(got.keys().copied().collect::<Vec<_>>(), [3, 4, 5, 6]);
    assert_eq!((got[&3], got[&4]), (2, 2));
}

#[tokio::test]
async fn an_ephemeral_resume_starts_after_the_last_id_and_a_lost_history_is_a_gap_event() {
    let (server, _dir) = server();
    let url = server.http_url();
    make_stream(&url, json!({"subjects": ["s.>"], "max_msgs": 5})).await;
    for i in 1..=10 {
        publish(&url, &format!("s.{i}"), &i.to_string()).await;
    }
    // Resume within what is kept: after the id, no gap.
    let mut events =
        Events::open(http().get(format!("{url}/v1/streams/S/consume?last_event_id=7"))).await;
    assert_eq!(events.next().await.event, "consumer");
    assert_eq!(events.next().await.data["seq"], 8);
    // Resume from before the first kept message (6): said in the stream, then from 6.
    let mut events = Events::open(
        http()
            .get(format!("{url}/v1/streams/S/consume"))
            .header("Last-Event-ID", "2"),
    )
    .await;
    assert_eq!(events.next().await.event, "consumer");
    let gap = events.next().await;
    assert_eq!(
        (gap.event.as_str(), gap.data.clone()),
        ("gap", json!({"requested": 2, "first": 6}))
    );
    assert_eq!(events.next().await.data["seq"], 6);
}

/// A consumer read over a connection that is cut 50 times during 100,000 messages ends with
/// every message acknowledged exactly once; what was delivered and not acknowledged comes
/// again. Acknowledgements are sent while reading goes on (up to 256 at once), as a page's
/// `fetch()` calls would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_under_churn_loses_nothing() {
    const MESSAGES: u64 = 100_000;
    const CUTS: u64 = 50;
    const ACKS_IN_FLIGHT: usize = 256;
    let (server, _dir) = server();
    let url = server.http_url();
    make_stream(&url, json!({"subjects": ["s.>"]})).await;
    let batch: Vec<Value> = (1..=MESSAGES)
        .map(|i| json!({"subject": "s.x", "data": i.to_string()}))
        .collect();
    for chunk in batch.chunks(5000) {
        let r = http()
            .post(format!("{url}/v1/publish"))
            .json(&chunk)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let consume = format!("{url}/v1/streams/S/consumers/C/ack");
    let consume_url = format!("{url}/v1/streams/S/consume?consumer=C&ack_wait=1h");
    let client = http();
    let mut acked = std::collections::BTreeSet::new();
    let mut acks = tokio::task::JoinSet::new();
    let mut redelivered = 0;
    let mut last_id: Option<String> = None;
    let per_connection = MESSAGES / CUTS;
    // Waits for one acknowledgement in flight and records it.
    async fn settle(
        acks: &mut tokio::task::JoinSet<(u64, Value)>,
        acked: &mut std::collections::BTreeSet<u64>,
    ) {
        let (seq, body) = acks.join_next().await.unwrap().unwrap();
        assert!(
            acked.insert(seq),
            "sequence {seq} acknowledged twice: {body}"
        );
        assert!(
            body.get("already").is_none(),
            "{seq} came after it was acked"
        );
    }
    while (acked.len() as u64) < MESSAGES {
        let mut request = client.get(&consume_url);
        if let Some(id) = &last_id {
            request = request.header("Last-Event-ID", id.as_str());
        }
        let mut events = Events::open(request).await;
        assert_eq!(events.next().await.event, "consumer");
        let mut read = 0;
        while read < per_connection && (acked.len() + acks.len()) < MESSAGES as usize {
            let Ok(e) = tokio::time::timeout(WAIT / 2, events.next()).await else {
                let info: Value = client
                    .get(format!("{url}/v1/streams/S/consumers/C"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                panic!(
                    "stalled after {} acks, {read} read here: {info}",
                    acked.len()
                );
            };
            let seq = e.data["seq"].as_u64().unwrap();
            last_id = e.id.clone();
            read += 1;
            if e.data["delivered"].as_u64().unwrap() > 1 {
                redelivered += 1;
            }
            // Every tenth message near the cut is seen and left unacknowledged.
            if read % 10 == 0 && read + 10 > per_connection {
                continue;
            }
            if acks.len() >= ACKS_IN_FLIGHT {
                settle(&mut acks, &mut acked).await;
            }
            let (client, ack) = (client.clone(), format!("{consume}/{seq}"));
            acks.spawn(async move {
                let r = client.post(ack).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                (seq, r.json::<Value>().await.unwrap())
            });
        }
        drop(events); // the cut
        while !acks.is_empty() {
            settle(&mut acks, &mut acked).await;
        }
    }
    assert_eq!(acked.len() as u64, MESSAGES);
    assert!(
        redelivered > 0,
        "the unacknowledged messages were delivered again"
    );
    let info: Value = client
        .get(format!("{url}/v1/streams/S/consumers/C"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (info["num_ack_pending"].clone(), info["num_pending"].clone()),
        (json!(0), json!(0))
    );
    assert_eq!(info["ack_floor"]["stream_seq"], MESSAGES);
}

/// A batch that a stream captures whole is stored in its order, each entry answered with its
/// sequence; a repeated `Nats-Msg-Id` within the batch is stored once and said to be a
/// duplicate.
#[tokio::test]
async fn a_stored_batch_keeps_its_order_and_dedups() {
    let (server, _dir) = server();
    let url = server.http_url();
    make_stream(&url, json!({"subjects": ["b.>"]})).await;
    let mut batch: Vec<Value> = (1..=200)
        .map(|i| json!({"subject": format!("b.{i}"), "data": i.to_string()}))
        .collect();
    batch.push(json!({"subject": "b.dup", "data": "x", "headers": {"Nats-Msg-Id": "once"}}));
    batch.push(json!({"subject": "b.dup", "data": "y", "headers": {"Nats-Msg-Id": "once"}}));
    let r = http()
        .post(format!("{url}/v1/publish"))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["published"], 202);
    let results = body["results"].as_array().unwrap();
    for (i, result) in results[..200].iter().enumerate() {
        let n = i as u64 + 1;
        assert_eq!(
            (result["subject"].clone(), result["seq"].clone()),
            (json!(format!("b.{n}")), json!(n))
        );
    }
    assert_eq!(results[200]["seq"], 201);
    assert_eq!(
        (
            results[201]["seq"].clone(),
            results[201]["duplicate"].clone()
        ),
        (json!(201), json!(true))
    );
    for seq in [1, 150, 201] {
        let stored: Value = http()
            .get(format!("{url}/v1/streams/S/messages/{seq}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let data = if seq == 201 {
            "x".to_owned()
        } else {
            seq.to_string()
        };
        assert_eq!(stored["data"], json!(data), "{stored}");
    }
}
