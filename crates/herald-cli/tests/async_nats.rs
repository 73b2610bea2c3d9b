//! The `async-nats` client (nobody here wrote it) against a `herald serve` process.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use async_nats::{Client, HeaderMap, Subscriber};
use bytes::Bytes;
use common::HeraldProcess;
use futures::StreamExt;

/// Every wait in these tests ends within this.
const WAIT: Duration = Duration::from_secs(10);

async fn connect(url: &str) -> Client {
    tokio::time::timeout(WAIT, async_nats::connect(url))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// A client in `scope` (a herald server without auth takes the CONNECT user as the scope).
async fn connect_in_scope(url: &str, scope: &str) -> Client {
    let options = async_nats::ConnectOptions::new().user_and_password(scope.into(), "".into());
    tokio::time::timeout(WAIT, options.connect(url))
        .await
        .expect("connect timed out")
        .expect("connect")
}

async fn next(sub: &mut Subscriber) -> async_nats::Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("no message within the timeout")
        .expect("subscription ended")
}

/// Waits until the server has processed everything `client` sent so far.
///
/// async-nats's `flush` only empties the client's own write buffer; a request that nobody
/// answers is a real round trip (the server's "no responders" reply comes after it has handled
/// every earlier operation of the connection).
async fn sync(client: &Client) {
    let answer = tokio::time::timeout(WAIT, client.request("_test.barrier", "".into()))
        .await
        .expect("barrier round trip timed out");
    let err = answer.expect_err("nobody answers the barrier subject");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}

/// After a round trip through both connections, nothing more is waiting.
async fn assert_quiet(publisher: &Client, subscriber: &Client, sub: &mut Subscriber) {
    sync(publisher).await;
    sync(subscriber).await;
    let extra = tokio::time::timeout(Duration::from_millis(50), sub.next()).await;
    assert!(extra.is_err(), "unexpected extra message: {extra:?}");
}

#[tokio::test]
async fn publish_subscribe_and_wildcards() {
    let server = HeraldProcess::start(&[]);
    let a = connect(&server.url()).await;
    let b = connect(&server.url()).await;
    let mut exact = b.subscribe("orders.eu.created").await.unwrap();
    let mut star = b.subscribe("orders.*.created").await.unwrap();
    let mut full = b.subscribe("orders.>").await.unwrap();
    sync(&b).await;
    for payload in [&b"hello"[..], b"", b"a\r\nPUB x 1\r\n\0z"] {
        a.publish("orders.eu.created", Bytes::copy_from_slice(payload))
            .await
            .unwrap();
        for sub in [&mut exact, &mut star, &mut full] {
            let msg = next(sub).await;
            assert_eq!(msg.subject.as_str(), "orders.eu.created");
            assert_eq!(&msg.payload[..], payload);
        }
    }
    a.publish("orders.us.updated", "x".into()).await.unwrap();
    assert_eq!(&next(&mut full).await.payload[..], b"x");
    assert_quiet(&a, &b, &mut exact).await;
    assert_quiet(&a, &b, &mut star).await;
    assert_quiet(&a, &b, &mut full).await;
}

#[tokio::test]
async fn queue_groups_share_and_plain_subscribers_get_all() {
    let server = HeraldProcess::start(&[]);
    let publisher = connect(&server.url()).await;
    let members = connect(&server.url()).await;
    let mut m1 = members
        .queue_subscribe("jobs", "workers".into())
        .await
        .unwrap();
    let mut m2 = members
        .queue_subscribe("jobs", "workers".into())
        .await
        .unwrap();
    let mut plain = members.subscribe("jobs").await.unwrap();
    sync(&members).await;
    const N: usize = 200;
    for i in 0..N {
        publisher
            .publish("jobs", i.to_string().into())
            .await
            .unwrap();
    }
    sync(&publisher).await;
    for _ in 0..N {
        next(&mut plain).await;
    }
    let (mut c1, mut c2) = (0, 0);
    while c1 + c2 < N {
        tokio::select! {
            Some(_) = m1.next() => c1 += 1,
            Some(_) = m2.next() => c2 += 1,
            () = tokio::time::sleep(WAIT) => panic!("queue group got {} of {N}", c1 + c2),
        }
    }
    assert!(c1 > 0 && c2 > 0, "one member got everything: {c1} / {c2}");
    assert_quiet(&publisher, &members, &mut m1).await;
    assert_quiet(&publisher, &members, &mut m2).await;
}

#[tokio::test]
async fn request_reply_headers_and_no_responders() {
    let server = HeraldProcess::start(&[]);
    let requester = connect(&server.url()).await;
    let responder = connect(&server.url()).await;
    let mut service = responder.subscribe("svc.echo").await.unwrap();
    sync(&responder).await;
    tokio::spawn(async move {
        while let Some(msg) = service.next().await {
            let mut headers = HeaderMap::new();
            let seen = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("Trace"))
                .map(|v| v.to_string());
            headers.insert("Echoed-Trace", seen.unwrap_or_default().as_str());
            let reply = msg.reply.expect("request carries a reply subject");
            responder
                .publish_with_headers(reply, headers, msg.payload)
                .await
                .unwrap();
        }
    });
    let mut headers = HeaderMap::new();
    headers.insert("Trace", "t-1");
    headers.append("Multi", "one");
    headers.append("Multi", "two");
    let reply = tokio::time::timeout(
        WAIT,
        requester.request_with_headers("svc.echo", headers, "ping".into()),
    )
    .await
    .expect("request timed out")
    .expect("request");
    assert_eq!(&reply.payload[..], b"ping");
    let got = reply.headers.expect("reply headers");
    assert_eq!(got.get("Echoed-Trace").map(|v| v.as_str()), Some("t-1"));

    // Nobody listens: the server answers 503 at once, long before the request timeout.
    let started = std::time::Instant::now();
    let err = requester
        .request("svc.nobody", "ping".into())
        .await
        .expect_err("nobody listens");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn headers_reach_subscribers_multi_valued() {
    let server = HeraldProcess::start(&[]);
    let client = connect(&server.url()).await;
    let mut sub = client.subscribe("h").await.unwrap();
    sync(&client).await;
    let mut headers = HeaderMap::new();
    headers.append("Multi", "one");
    headers.append("Multi", "two");
    headers.insert("Other", "x y z");
    client
        .publish_with_headers("h", headers, "body".into())
        .await
        .unwrap();
    let msg = next(&mut sub).await;
    let got = msg.headers.expect("headers");
    let multi: Vec<&str> = got.get_all("Multi").map(|v| v.as_str()).collect();
    assert_eq!(multi, ["one", "two"]);
    assert_eq!(got.get("Other").map(|v| v.as_str()), Some("x y z"));
    assert_eq!(&msg.payload[..], b"body");
}

#[tokio::test]
async fn unsubscribe_after_n_flush_and_drain() {
    let server = HeraldProcess::start(&[]);
    let publisher = connect(&server.url()).await;
    let subscriber = connect(&server.url()).await;
    let mut limited = subscriber.subscribe("n").await.unwrap();
    limited.unsubscribe_after(3).await.unwrap();
    let mut drained = subscriber.subscribe("n").await.unwrap();
    sync(&subscriber).await;
    for i in 0..10 {
        publisher.publish("n", i.to_string().into()).await.unwrap();
    }
    publisher.flush().await.unwrap();
    sync(&publisher).await;
    for i in 0..3 {
        assert_eq!(next(&mut limited).await.payload, i.to_string());
    }
    let end = tokio::time::timeout(WAIT, limited.next())
        .await
        .expect("ends");
    assert!(end.is_none(), "a 4th message after UNSUB 3: {end:?}");
    // Draining delivers what is pending, then ends the subscription.
    drained.drain().await.unwrap();
    let mut got = Vec::new();
    while let Some(msg) = tokio::time::timeout(WAIT, drained.next())
        .await
        .expect("drain ends")
    {
        got.push(msg.payload);
    }
    assert_eq!(got.len(), 10);
}

#[tokio::test]
async fn scopes_isolate_and_echo_can_be_off() {
    let server = HeraldProcess::start(&[]);
    let a1 = connect_in_scope(&server.url(), "a").await;
    let a2 = connect_in_scope(&server.url(), "a").await;
    let b = connect_in_scope(&server.url(), "b").await;
    let mut in_a = a2.subscribe("news").await.unwrap();
    let mut in_b = b.subscribe("news").await.unwrap();
    sync(&a2).await;
    sync(&b).await;
    a1.publish("news", "for a".into()).await.unwrap();
    assert_eq!(&next(&mut in_a).await.payload[..], b"for a");
    assert_quiet(&a1, &b, &mut in_b).await;

    let quiet = async_nats::ConnectOptions::new()
        .no_echo()
        .connect(server.url())
        .await
        .unwrap();
    let other = connect(&server.url()).await;
    let mut own = quiet.subscribe("echo").await.unwrap();
    let mut others = other.subscribe("echo").await.unwrap();
    sync(&quiet).await;
    sync(&other).await;
    quiet.publish("echo", "hi".into()).await.unwrap();
    assert_eq!(&next(&mut others).await.payload[..], b"hi");
    assert_quiet(&quiet, &quiet, &mut own).await;
}

#[tokio::test]
async fn server_info_service_and_max_payload() {
    let server = HeraldProcess::start(&["--max-payload", "2048"]);
    let client = connect(&server.url()).await;
    assert_eq!(client.server_info().max_payload, 2048);
    assert_eq!(client.server_info().version, herald_server::NATS_VERSION);
    // The client refuses a payload over the advertised limit before sending it.
    assert!(client.publish("big", vec![0u8; 4096].into()).await.is_err());
    let reply = client
        .request(herald_server::SERVER_INFO_SUBJECT, "".into())
        .await
        .unwrap();
    let info: HashMap<String, serde_json::Value> = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(info["nats_version"], herald_server::NATS_VERSION);
    assert!(info["stats"]["connections"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn sigterm_flushes_and_exits_cleanly() {
    let server = HeraldProcess::start(&[]);
    let client = connect(&server.url()).await;
    let mut sub = client.subscribe("last").await.unwrap();
    client.publish("last", "words".into()).await.unwrap();
    sync(&client).await;
    assert_eq!(&next(&mut sub).await.payload[..], b"words");
    let status = server.terminate();
    assert!(status.success(), "herald serve exited with {status}");
}
