//! The HTTP door of `herald serve` (SPEC 4.2) with a real HTTP client (`reqwest`), and across
//! doors with the `async-nats` client: what is published on one door reaches the other.

mod common;

use std::time::Duration;

use common::HeraldProcess;
use common::sse::{Events, WAIT, error_of, get_json, http, metrics, nats, next, sync};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn an_http_publish_reaches_a_nats_subscriber_with_headers_and_reply() {
    let server = HeraldProcess::start(&[]);
    let client = nats(&server).await;
    let mut sub = client.subscribe("orders.>").await.unwrap();
    sync(&client).await;
    let answer: Value = http()
        .post(format!("{}/v1/publish/orders.1", server.http_url()))
        .header("Herald-Header-Trace-Id", "t-1")
        .header("herald-header-trace-id", "t-2")
        .header("Herald-Reply", "replies.1")
        .body("first order")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer, json!({"subject": "orders.1"}));
    let msg = next(&mut sub).await;
    assert_eq!(msg.subject.as_str(), "orders.1");
    assert_eq!(&msg.payload[..], b"first order");
    assert_eq!(msg.reply.as_deref(), Some("replies.1"));
    let headers = msg.headers.expect("headers");
    let values: Vec<_> = headers
        .get_all("Trace-Id")
        .map(|v| v.as_str().to_owned())
        .collect();
    assert_eq!(values, ["t-1", "t-2"]);
}

#[tokio::test]
async fn a_nats_publish_reaches_an_sse_subscriber_as_envelopes() {
    let server = HeraldProcess::start(&[]);
    let client = nats(&server).await;
    // Percent-encoded and raw patterns both work.
    let mut encoded =
        Events::open(http().get(format!("{}/v1/subscribe/orders.%3E", server.http_url()))).await;
    let mut raw =
        Events::open(http().get(format!("{}/v1/subscribe/orders.*", server.http_url()))).await;
    let mut headers = async_nats::HeaderMap::new();
    headers.append("K", "1");
    headers.append("K", "2");
    client
        .publish_with_headers("orders.1", headers, "text".into())
        .await
        .unwrap();
    client
        .publish_with_reply("orders.2", "inbox.x", vec![0xff, 0x00].into())
        .await
        .unwrap();
    client.publish("orders.a.b", "deep".into()).await.unwrap();
    client.flush().await.unwrap();
    let first = encoded.next().await;
    assert_eq!(
        (first.event.as_str(), first.id.as_deref()),
        ("message", Some("1"))
    );
    assert_eq!(
        first.data,
        json!({"subject": "orders.1", "data": "text", "headers": {"K": ["1", "2"]}})
    );
    let second = encoded.next().await;
    assert_eq!(second.id.as_deref(), Some("2"));
    assert_eq!(
        second.data,
        json!({"subject": "orders.2", "data_base64": "/wA=", "reply": "inbox.x"})
    );
    assert_eq!(encoded.next().await.data["subject"], "orders.a.b");
    assert_eq!(raw.next().await.data["subject"], "orders.1");
    assert_eq!(raw.next().await.data["subject"], "orders.2");
}

#[tokio::test]
async fn sse_queue_groups_share_and_plain_subscribers_see_all() {
    let server = HeraldProcess::start(&[]);
    let url = server.http_url();
    let mut members = Vec::new();
    for _ in 0..2 {
        members.push(
            Events::open(http().get(format!("{url}/v1/subscribe/jobs.*?queue=workers"))).await,
        );
    }
    let mut plain = Events::open(http().get(format!("{url}/v1/subscribe/jobs.*"))).await;
    let client = http();
    for i in 0..20 {
        let status = client
            .post(format!("{url}/v1/publish/jobs.{i}"))
            .body(i.to_string())
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::OK);
    }
    for i in 0..20 {
        assert_eq!(plain.next().await.data["data"], i.to_string());
    }
    let varz: Value = client
        .get(format!("{url}/varz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(varz["in_msgs"], 20);
    // Each message went to exactly one member: read both in turn until all 20 are there.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen.len() < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {seen:?} arrived"
        );
        for member in &mut members {
            if let Ok(event) = tokio::time::timeout(Duration::from_millis(20), member.next()).await
            {
                seen.push(event.data["data"].as_str().unwrap().parse::<u32>().unwrap());
            }
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..20).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_batch_is_checked_whole_before_anything_is_published() {
    let server = HeraldProcess::start(&[]);
    let client = nats(&server).await;
    let mut sub = client.subscribe("batch.>").await.unwrap();
    sync(&client).await;
    let url = format!("{}/v1/publish", server.http_url());
    let bad = http()
        .post(&url)
        .json(&json!([
            {"subject": "batch.a", "data": "1"},
            {"subject": "batch.*", "data": "2"},
        ]))
        .send()
        .await
        .unwrap();
    let message = error_of(bad, StatusCode::BAD_REQUEST).await;
    assert!(message.starts_with("entry 1: invalid subject"), "{message}");
    for body in [
        "{",
        "[{\"subject\": 3}]",
        "[{\"subject\": \"a\", \"extra\": 1}]",
    ] {
        let bad = http().post(&url).body(body).send().await.unwrap();
        error_of(bad, StatusCode::BAD_REQUEST).await;
    }
    let bad = http()
        .post(&url)
        .json(&json!([{"subject": "batch.b", "data_base64": "not base64!"}]))
        .send()
        .await
        .unwrap();
    assert!(
        error_of(bad, StatusCode::BAD_REQUEST)
            .await
            .starts_with("entry 0: ")
    );
    let good: Value = http()
        .post(&url)
        .json(&json!([
            {"subject": "batch.c", "data": "3", "headers": {"H": "v"}},
            {"subject": "batch.d", "data_base64": "/wA=", "reply": "r.1"},
        ]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        good,
        json!({"published": 2, "results": [{"subject": "batch.c"}, {"subject": "batch.d"}]})
    );
    // Nothing of the refused batches arrived before these.
    let c = next(&mut sub).await;
    assert_eq!((c.subject.as_str(), &c.payload[..]), ("batch.c", &b"3"[..]));
    assert_eq!(c.headers.unwrap().get("H").unwrap().as_str(), "v");
    let d = next(&mut sub).await;
    assert_eq!(
        (&d.payload[..], d.reply.as_deref()),
        (&[0xff, 0][..], Some("r.1"))
    );
}

#[tokio::test]
async fn request_reply_over_http_with_no_responders_and_timeouts() {
    let server = HeraldProcess::start(&[]);
    let client = nats(&server).await;
    let mut service = client.subscribe("svc.echo").await.unwrap();
    let _silent = client.subscribe("svc.silent").await.unwrap();
    sync(&client).await;
    let responder = client.clone();
    tokio::spawn(async move {
        while let Some(msg) = service.next().await {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Answered-By", "echo");
            let payload = [&b"echo: "[..], &msg.payload[..]].concat();
            let trace = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("Trace-Id"))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            headers.insert("Trace-Id", trace.as_str());
            let _ = responder
                .publish_with_headers(msg.reply.unwrap(), headers, payload.into())
                .await;
        }
    });
    let url = server.http_url();
    let answer = http()
        .post(format!("{url}/v1/request/svc.echo?timeout=5s"))
        .header("Herald-Header-Trace-Id", "abc")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()["herald-header-answered-by"], "echo");
    assert_eq!(answer.headers()["herald-header-trace-id"], "abc");
    assert_eq!(answer.text().await.unwrap(), "echo: hi");
    let none = http()
        .post(format!("{url}/v1/request/svc.nobody"))
        .send()
        .await
        .unwrap();
    error_of(none, StatusCode::SERVICE_UNAVAILABLE).await;
    let slow = http()
        .post(format!("{url}/v1/request/svc.silent?timeout=200ms"))
        .send()
        .await
        .unwrap();
    error_of(slow, StatusCode::GATEWAY_TIMEOUT).await;
    let bad = http()
        .post(format!("{url}/v1/request/svc.echo?timeout=soon"))
        .send()
        .await
        .unwrap();
    error_of(bad, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn bad_requests_get_their_status_and_a_json_error() {
    let server = HeraldProcess::start(&["--max-payload", "1024", "--sse-max-pending", "4096"]);
    let url = server.http_url();
    // A request answered before its body was read closes its connection: no pooling, so
    // that no request goes out on a connection the server is closing.
    let client = reqwest::Client::builder()
        .timeout(WAIT)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let big = client
        .post(format!("{url}/v1/publish/a"))
        .body(vec![b'x'; 1025])
        .send()
        .await
        .unwrap();
    assert!(
        error_of(big, StatusCode::PAYLOAD_TOO_LARGE)
            .await
            .contains("1024")
    );
    // A body without a length, too long, is cut at the limit.
    let chunks = futures::stream::iter(
        (0..4).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 512]))),
    );
    let streamed = client
        .post(format!("{url}/v1/publish/a"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    error_of(streamed, StatusCode::PAYLOAD_TOO_LARGE).await;
    let batch = client
        .post(format!("{url}/v1/publish"))
        .json(&json!([{"subject": "a", "data": "x".repeat(1025)}]))
        .send()
        .await
        .unwrap();
    assert!(
        error_of(batch, StatusCode::PAYLOAD_TOO_LARGE)
            .await
            .starts_with("entry 0")
    );
    for (path, status) in [
        ("/v1/publish/a..b", StatusCode::BAD_REQUEST),
        ("/v1/publish/a%20b", StatusCode::BAD_REQUEST),
        ("/v1/nothing", StatusCode::NOT_FOUND),
    ] {
        let r = client.post(format!("{url}{path}")).send().await.unwrap();
        error_of(r, status).await;
    }
    let bad_pattern = client
        .get(format!("{url}/v1/subscribe/a.%3E.b"))
        .send()
        .await
        .unwrap();
    error_of(bad_pattern, StatusCode::BAD_REQUEST).await;
    let bad_scope = client
        .post(format!("{url}/v1/publish/a"))
        .header("Herald-Scope", "")
        .send()
        .await
        .unwrap();
    error_of(bad_scope, StatusCode::BAD_REQUEST).await;
    let health: Value = client
        .get(format!("{url}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health, json!({"status": "ok"}));
}

#[tokio::test]
async fn scopes_keep_http_and_nats_apart() {
    let server = HeraldProcess::start(&[]);
    let url = server.http_url();
    let mut in_a = Events::open(http().get(format!("{url}/v1/subscribe/news?scope=a"))).await;
    let mut in_default = Events::open(http().get(format!("{url}/v1/subscribe/news"))).await;
    let client = http();
    for (scope, body) in [("b", "for b"), ("a", "for a")] {
        let r = client
            .post(format!("{url}/v1/publish/news"))
            .header("Herald-Scope", scope)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = client
        .post(format!("{url}/v1/publish/news"))
        .body("for default")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(in_a.next().await.data["data"], "for a");
    assert_eq!(in_default.next().await.data["data"], "for default");
}

#[tokio::test]
async fn a_publish_a_stream_captures_answers_with_its_sequence_and_dedups() {
    let dir = tempfile::tempdir().unwrap();
    let server = HeraldProcess::start(&["--data-dir", dir.path().to_str().unwrap()]);
    let js = async_nats::jetstream::new(nats(&server).await);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "ORDERS".into(),
        subjects: vec!["orders.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let url = server.http_url();
    let client = http();
    let publish = |id: &'static str| {
        client
            .post(format!("{url}/v1/publish/orders.1"))
            .header("Nats-Msg-Id", id)
            .body("o")
            .send()
    };
    let first: Value = publish("m-1").await.unwrap().json().await.unwrap();
    assert_eq!(
        first,
        json!({"subject": "orders.1", "stream": "ORDERS", "seq": 1})
    );
    let again: Value = publish("m-1").await.unwrap().json().await.unwrap();
    assert_eq!(
        again,
        json!({"subject": "orders.1", "stream": "ORDERS", "seq": 1, "duplicate": true})
    );
    let second: Value = publish("m-2").await.unwrap().json().await.unwrap();
    assert_eq!(second["seq"], 2);
    // confirm=N without enough consumers acking: 504 after the timeout; on a subject no
    // stream captures: 404.
    let unconfirmed = client
        .post(format!("{url}/v1/publish/orders.2?confirm=1&timeout=200ms"))
        .body("c")
        .send()
        .await
        .unwrap();
    error_of(unconfirmed, StatusCode::GATEWAY_TIMEOUT).await;
    let nowhere = client
        .post(format!("{url}/v1/publish/other?confirm=1"))
        .send()
        .await
        .unwrap();
    error_of(nowhere, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn an_sse_client_that_never_reads_is_dropped_as_a_slow_consumer() {
    use tokio::io::AsyncWriteExt;
    let server = HeraldProcess::start(&["--max-payload", "1024", "--sse-max-pending", "4096"]);
    let url = server.http_url();
    let client = http();
    let varz = || async {
        let varz: Value = client
            .get(format!("{url}/varz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        varz
    };
    let count = |v: &Value, field: &str| v[field].as_u64().expect("a counter");
    // The server's own services subscribe too, and so does the NATS client's request inbox.
    let nats = nats(&server).await;
    sync(&nats).await;
    let base = count(&varz().await, "subscriptions");
    // A client that asks for events and never reads a byte of them.
    let mut socket = tokio::net::TcpStream::connect(server.http.unwrap())
        .await
        .unwrap();
    socket
        .write_all(b"GET /v1/subscribe/flood HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while count(&varz().await, "subscriptions") != base + 1 {
        assert!(tokio::time::Instant::now() < deadline, "never subscribed");
        tokio::task::yield_now().await;
    }
    let payload = bytes::Bytes::from(vec![b'x'; 1000]);
    // Far more than the socket buffers and the 4 KiB bound hold, in rounds until the server
    // has dropped the client and taken its subscription out of the index.
    let mut published = 0;
    loop {
        for _ in 0..1000 {
            nats.publish("flood", payload.clone()).await.unwrap();
        }
        sync(&nats).await;
        published += 1000;
        let now = varz().await;
        if count(&now, "slow_consumers") == 1 && count(&now, "subscriptions") == base {
            break;
        }
        assert!(published < 100_000, "never dropped: {now}");
    }
    drop(socket);
}

#[tokio::test]
async fn groups_over_http_are_the_groups_nats_clients_see() {
    let server = HeraldProcess::start(&[]);
    let url = server.http_url();
    let c = http();
    let made: Value = c
        .put(format!("{url}/v1/groups/alerts"))
        .json(&json!({"topics": ["alerts.eu", "alerts.us"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        made,
        json!({"name": "alerts", "topics": ["alerts.eu", "alerts.us"]})
    );
    let again = c
        .put(format!("{url}/v1/groups/alerts"))
        .send()
        .await
        .unwrap();
    error_of(again, StatusCode::CONFLICT).await;
    let bad = c
        .put(format!("{url}/v1/groups/other"))
        .json(&json!({"topics": ["a.*"]}))
        .send()
        .await
        .unwrap();
    error_of(bad, StatusCode::BAD_REQUEST).await;
    let missing = c
        .get(format!("{url}/v1/groups/other"))
        .send()
        .await
        .unwrap();
    error_of(missing, StatusCode::NOT_FOUND).await;
    let added: Value = c
        .put(format!("{url}/v1/groups/alerts/topics/alerts.asia"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(added["added"], true);
    let removed = c
        .delete(format!("{url}/v1/groups/alerts/topics/alerts.us"))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::OK);
    let not_there = c
        .delete(format!("{url}/v1/groups/alerts/topics/alerts.us"))
        .send()
        .await
        .unwrap();
    error_of(not_there, StatusCode::NOT_FOUND).await;
    // The NATS door sees the same group, and gets the broadcast.
    let client = nats(&server).await;
    let info = client
        .request("$HERALD.API.GROUPS.INFO", r#"{"name": "alerts"}"#.into())
        .await
        .unwrap();
    let info: Value = serde_json::from_slice(&info.payload).unwrap();
    assert_eq!(
        info,
        json!({"name": "alerts", "topics": ["alerts.asia", "alerts.eu"]})
    );
    let unknown = client
        .request("$HERALD.API.GROUPS.EXPLODE", "".into())
        .await
        .unwrap();
    let unknown: Value = serde_json::from_slice(&unknown.payload).unwrap();
    assert_eq!(unknown["error"]["code"], 400);
    let mut sub = client.subscribe("alerts.>").await.unwrap();
    sync(&client).await;
    let sent: Value = c
        .post(format!("{url}/v1/groups/alerts/broadcast"))
        .body("fire")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        sent,
        json!({"group": "alerts", "topics": 2, "delivered": 2})
    );
    let mut subjects = vec![
        next(&mut sub).await.subject.to_string(),
        next(&mut sub).await.subject.to_string(),
    ];
    subjects.sort();
    assert_eq!(subjects, ["alerts.asia", "alerts.eu"]);
    let list: Value = c
        .get(format!("{url}/v1/groups"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["groups"][0]["name"], "alerts");
    assert_eq!(
        c.delete(format!("{url}/v1/groups/alerts"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let list: Value = c
        .get(format!("{url}/v1/groups"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list, json!({"groups": []}));
}

/// Two servers in one cluster: `a`, and `b` seeded with it.
fn two_nodes() -> (HeraldProcess, HeraldProcess) {
    let node = |name: &str, seeds: &[&str]| {
        let mut args = vec![
            "--name",
            name,
            "--cluster-listen",
            "127.0.0.1:0",
            "--cluster-secret",
            "s",
        ];
        args.extend_from_slice(seeds);
        HeraldProcess::start(&args)
    };
    let a = node("a", &[]);
    let seed = a.cluster_addr();
    let b = node("b", &["--seeds", &seed]);
    (a, b)
}

#[tokio::test]
async fn monitoring_endpoints_and_metrics_count_both_doors() {
    let dir = tempfile::tempdir().unwrap();
    let server = HeraldProcess::start(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--name",
        "mon-1",
    ]);
    let url = server.http_url();
    let options = async_nats::ConnectOptions::new().name("monitored");
    let client = options.connect(server.url()).await.unwrap();
    let _sub = client.subscribe("m.>").await.unwrap();
    for _ in 0..3 {
        client.publish("m.x", "12345".into()).await.unwrap();
    }
    sync(&client).await;
    let js = async_nats::jetstream::new(client.clone());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "MON".into(),
        subjects: vec!["mon.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let r = http()
        .post(format!("{url}/v1/publish/mon.1"))
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let varz = get_json(format!("{url}/varz")).await;
    assert_eq!(varz["server_name"], "mon-1");
    assert_eq!(varz["port"], server.addr.port());
    assert_eq!(varz["http_port"], server.http.unwrap().port());
    assert_eq!(varz["connections"], 1);
    assert!(varz["in_msgs"].as_u64().unwrap() >= 4, "{varz}");

    let connz = get_json(format!("{url}/connz")).await;
    assert_eq!(connz["num_connections"], 1);
    let conn = &connz["connections"][0];
    assert_eq!(conn["name"], "monitored");
    assert_eq!(conn["lang"], "rust");
    assert!(conn["in_msgs"].as_u64().unwrap() >= 3, "{conn}");
    assert!(conn["out_msgs"].as_u64().unwrap() >= 3, "{conn}");
    assert!(conn["subscriptions"].as_u64().unwrap() >= 1, "{conn}");
    let paged = get_json(format!("{url}/connz?offset=1")).await;
    assert_eq!(
        (paged["num_connections"].clone(), paged["total"].clone()),
        (json!(0), json!(1))
    );

    let subsz = get_json(format!("{url}/subsz")).await;
    assert!(subsz["num_subscriptions"].as_u64().unwrap() >= 1);
    let jsz = get_json(format!("{url}/jsz?streams=true")).await;
    assert_eq!(
        (jsz["streams"].clone(), jsz["messages"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(jsz["account_details"][0]["stream_detail"][0]["name"], "MON");
    let routez = get_json(format!("{url}/routez")).await;
    assert_eq!(routez["num_routes"], 0);

    let metrics = http().get(format!("{url}/metrics")).send().await.unwrap();
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text().await.unwrap();
    let value = |line: &str| -> u64 {
        let found = text
            .lines()
            .find(|l| l.starts_with(line))
            .unwrap_or_else(|| panic!("no {line} in {text}"));
        found.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(value("herald_messages_in_total ") >= 4);
    assert_eq!(value("herald_connections "), 1);
    assert_eq!(value("herald_stream_messages{stream=\"MON\"} "), 1);
    assert!(
        text.contains("# TYPE herald_consumer_ack_pending gauge"),
        "{text}"
    );
}

#[tokio::test]
async fn routez_lists_the_routes_of_a_cluster() {
    let (_a, b) = two_nodes();
    // The barrier service answers once the route to one peer is up.
    let client = nats(&b).await;
    let done = client
        .request("$HERALD.API.CLUSTER.FLUSH", r#"{"peers": 1}"#.into())
        .await
        .unwrap();
    assert_eq!(&done.payload[..], b"{}");
    let routez = get_json(format!("{}/routez", b.http_url())).await;
    assert_eq!(routez["num_routes"], 1, "{routez}");
    assert_eq!(routez["routes"][0]["remote_name"], "a");
    let metrics = metrics(&b).await;
    assert!(metrics.contains("herald_cluster_peers 1"), "{metrics}");
    assert!(
        metrics.contains("herald_route_bytes_out_total{peer=\"a\"}"),
        "{metrics}"
    );
}

/// The OpenAPI document lists every route, and each route it lists answers (not with "no
/// such route" or "method not allowed").
#[tokio::test]
async fn the_openapi_document_lists_routes_that_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = HeraldProcess::start(&["--data-dir", dir.path().to_str().unwrap()]);
    let url = server.http_url();
    let doc = get_json(format!("{url}/v1/openapi.json")).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for spec_route in [
        "/v1/publish/{subject}",
        "/v1/subscribe/{pattern}",
        "/v1/streams/{name}/consume",
        "/v1/streams/{name}/consumers/{consumer}/ack/{seq}",
        "/v1/groups/{name}/broadcast",
        "/metrics",
        "/jsz",
    ] {
        assert!(paths.contains_key(spec_route), "{spec_route} missing");
    }
    // Something for the routes to find.
    let c = http();
    let r = c
        .put(format!("{url}/v1/streams/s1"))
        .json(&json!({"subjects": ["s1.>"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut calls = 0;
    for (path, item) in paths {
        let concrete = path
            .replace("{subject}", "s1.a")
            .replace("{pattern}", "s1.>")
            .replace("{name}", "s1")
            .replace("{consumer}", "c1")
            .replace("{seq}", "1")
            .replace("{topic}", "t.1");
        for method in item.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut request = c.request(method.clone(), format!("{url}{concrete}"));
            if path == "/v1/publish" {
                request = request.json(&json!([]));
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            if response.headers()["content-type"] == "text/event-stream" {
                assert_eq!(status, StatusCode::OK, "{method} {path}");
            } else if status.is_client_error() {
                let body: Value = response.json().await.unwrap();
                assert_ne!(body["error"]["message"], "no such route", "{method} {path}");
            }
            calls += 1;
        }
    }
    assert!(calls >= 30, "only {calls} operations listed");
}

/// A message published over HTTP on one node reaches an event stream and a NATS subscriber on
/// another node of the cluster, and the other way round.
#[tokio::test]
async fn http_and_nats_doors_span_a_cluster() {
    let (a, b) = two_nodes();
    let mut events =
        Events::open(http().get(format!("{}/v1/subscribe/span.>", b.http_url()))).await;
    let on_b = nats(&b).await;
    let mut sub = on_b.subscribe("span.>").await.unwrap();
    // Both of b's subscriptions are known on a once b's barrier returns.
    let done = on_b
        .request("$HERALD.API.CLUSTER.FLUSH", r#"{"peers": 1}"#.into())
        .await
        .unwrap();
    assert_eq!(&done.payload[..], b"{}");
    let r = http()
        .post(format!("{}/v1/publish/span.1", a.http_url()))
        .body("over http on a")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(events.next().await.data["data"], "over http on a");
    assert_eq!(&next(&mut sub).await.payload[..], b"over http on a");
    let on_a = nats(&a).await;
    on_a.publish("span.2", "over nats on a".into())
        .await
        .unwrap();
    assert_eq!(events.next().await.data["data"], "over nats on a");
}

#[tokio::test]
async fn cors_preflights_allow_the_api_for_configured_origins_only() {
    let server = HeraldProcess::start(&["--http-cors", "https://app.example"]);
    let url = server.http_url();
    let preflight = |origin: &'static str| {
        http()
            .request(reqwest::Method::OPTIONS, format!("{url}/v1/publish/a"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "content-type,herald-header-trace-id,nats-msg-id,last-event-id",
            )
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    let headers = allowed.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example"
    );
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    for m in ["GET", "POST", "PUT", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    let allow_headers = headers["access-control-allow-headers"].to_str().unwrap();
    assert!(
        allow_headers.contains("herald-header-trace-id"),
        "{allow_headers}"
    );
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    // Without http_cors, no CORS headers at all.
    let plain = HeraldProcess::start(&[]);
    let r = http()
        .post(format!("{}/v1/publish/a", plain.http_url()))
        .header("Origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}
