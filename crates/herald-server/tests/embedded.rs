//! An application that embeds herald and serves NATS clients from the same node: its routers
//! and the clients of the same scope see each other's messages, requests and replies.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::time::Duration;

use futures::StreamExt;
use herald_server::{Config, Server};

const WAIT: Duration = Duration::from_secs(10);

async fn setup() -> (herald::Node, Server, async_nats::Client) {
    let node = herald::Node::local();
    let config = Config {
        listen: "127.0.0.1:0".into(),
        http: "127.0.0.1:0".into(),
        ..Config::default()
    };
    let server = Server::start(config, node.clone()).await.unwrap();
    let client = async_nats::connect(format!("nats://{}", server.nats_addr()))
        .await
        .unwrap();
    (node, server, client)
}

/// A round trip through the server: see the async-nats tests in herald-cli for why `flush`
/// is not enough.
async fn sync(client: &async_nats::Client) {
    let err = tokio::time::timeout(WAIT, client.request("_test.barrier", "".into()))
        .await
        .unwrap()
        .expect_err("nobody answers");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}

#[tokio::test]
async fn router_messages_reach_nats_clients_and_back() {
    let (node, _server, client) = setup().await;
    let router = node.router("default", 64);

    // Router → async-nats subscriber.
    let mut nats_sub = client.subscribe("app.>").await.unwrap();
    sync(&client).await;
    let mut headers = herald::HeaderMap::new();
    headers.append("Kind", "a").unwrap();
    headers.append("Kind", "b").unwrap();
    router
        .publish_with_headers("app.started", headers, "v1")
        .unwrap();
    let msg = tokio::time::timeout(WAIT, nats_sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (msg.subject.as_str(), &msg.payload[..]),
        ("app.started", &b"v1"[..])
    );
    let kinds: Vec<&str> = msg
        .headers
        .as_ref()
        .unwrap()
        .get_all("Kind")
        .map(|v| v.as_str())
        .collect();
    assert_eq!(kinds, ["a", "b"]);

    // async-nats publisher → Router subscription, headers included.
    let mut sub = router.subscribe("clients.*").unwrap();
    let mut nats_headers = async_nats::HeaderMap::new();
    nats_headers.insert("Trace", "t-9");
    client
        .publish_with_headers("clients.hello", nats_headers, "hi".into())
        .await
        .unwrap();
    let got = tokio::time::timeout(WAIT, sub.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.subject(), got.text().unwrap()),
        ("clients.hello", "hi")
    );
    assert_eq!(got.headers().unwrap().get("Trace"), Some("t-9"));

    // A different scope sees none of it.
    let other = node.router("elsewhere", 64);
    let mut isolated = other.subscribe("clients.*").unwrap();
    client.publish("clients.again", "x".into()).await.unwrap();
    tokio::time::timeout(WAIT, sub.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(isolated.try_recv().is_err());
}

#[tokio::test]
async fn requests_cross_between_router_and_nats() {
    let (node, _server, client) = setup().await;
    let router = node.router("default", 64);

    // A Router responder answers an async-nats request.
    let _responder = router
        .on("svc.upper", |msg| {
            let _ = msg.respond(msg.text().unwrap_or_default().to_uppercase());
        })
        .unwrap();
    let reply = tokio::time::timeout(WAIT, client.request("svc.upper", "shout".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&reply.payload[..], b"SHOUT");

    // An async-nats responder answers a Router request.
    let mut service = client.subscribe("svc.len").await.unwrap();
    sync(&client).await;
    let responder = client.clone();
    tokio::spawn(async move {
        while let Some(msg) = service.next().await {
            let len = msg.payload.len().to_string();
            responder
                .publish(msg.reply.unwrap(), len.into())
                .await
                .unwrap();
        }
    });
    let answer = router.request("svc.len", "four", WAIT).await.unwrap();
    assert_eq!(answer.text().unwrap(), "4");

    // Nobody listens: the router says so at once.
    let err = router.request("svc.none", "x", WAIT).await.unwrap_err();
    assert!(matches!(err, herald::Error::NoResponders(_)), "{err}");
}
