//! Scopes cannot be used to exhaust a server's memory: clients naming thousands of scopes
//! leave nothing behind when they go, and `max_scopes` bounds how many are in use at once.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

mod common;

use std::time::Duration;

use common::HeraldProcess;
use common::sse::{WAIT, error_of, http};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A raw NATS client in its own scope that subscribed, published and read its message back.
async fn tenant(server: std::net::SocketAddr, scope: String) -> BufReader<TcpStream> {
    let mut socket = BufReader::new(TcpStream::connect(server).await.unwrap());
    let mut line = String::new();
    socket.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("INFO "), "{line}");
    let hello = format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"scope\":\"{scope}\"}}\r\n\
         SUB news 1\r\nPUB news 5\r\nhello\r\nPING\r\n"
    );
    socket.get_mut().write_all(hello.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    loop {
        line.clear();
        socket.read_line(&mut line).await.unwrap();
        match line.trim_end() {
            "PONG" => break,
            "" => panic!("{scope}: closed after {seen:?}"),
            other => seen.push(other.to_owned()),
        }
    }
    assert_eq!(seen, ["MSG news 1 5", "hello"], "{scope}");
    socket
}

async fn varz(server: &HeraldProcess) -> Value {
    let response = http()
        .get(format!("{}/varz", server.http_url()))
        .send()
        .await
        .unwrap();
    response.json().await.unwrap()
}

/// Waits until the server reports `scopes` scopes in use.
async fn scopes_become(server: &HeraldProcess, scopes: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = varz(server).await["scopes"].as_u64().unwrap();
        if now == scopes {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{now} scopes, not {scopes}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Rounds of 1,000 clients at once, each in a scope of its own: once they are gone the scopes
/// are too, and the memory they used serves the next round (without reclamation, every round
/// kept about 20 KiB per scope, never given back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churning_through_scopes_gives_the_memory_back() {
    const CLIENTS: usize = 1_000;
    let server = HeraldProcess::start(&[]);
    let idle = varz(&server).await["scopes"].as_u64().unwrap();
    let mut after_first = 0;
    for round in 0..6 {
        // In waves of 100: a thousand connects at once can overflow the listen backlog, and
        // the kernel's SYN retries then take seconds.
        let mut clients = Vec::new();
        for wave in 0..CLIENTS / 100 {
            let mut joining = tokio::task::JoinSet::new();
            for i in 0..100 {
                let scope = format!("round{round}-tenant{}", wave * 100 + i);
                joining.spawn(tenant(server.addr, scope));
            }
            let joined = tokio::time::timeout(WAIT, joining.join_all())
                .await
                .expect("100 clients connect");
            clients.extend(joined);
        }
        assert_eq!(
            varz(&server).await["scopes"].as_u64().unwrap(),
            idle + CLIENTS as u64
        );
        drop(clients);
        scopes_become(&server, idle).await;
        let rss = server.rss_kib();
        if round == 0 {
            after_first = rss;
        }
        eprintln!("round {round}: {rss} KiB resident after the clients left");
    }
    let grown = server.rss_kib().saturating_sub(after_first);
    assert!(
        grown < 8 * 1024,
        "the server grew by {grown} KiB over five rounds of {CLIENTS} scopes"
    );
}

/// Past `max_scopes`, a client naming a new scope gets `-ERR 'maximum scopes exceeded'` (and
/// an HTTP request 503); clients of scopes in use still get in, and room comes back as scopes
/// are left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_scopes_bounds_the_scopes_in_use() {
    let server = HeraldProcess::start(&["--max-scopes", "3"]);
    let varz_now = varz(&server).await;
    assert_eq!(varz_now["max_scopes"], 3);
    assert_eq!(varz_now["scopes"], 1, "the default scope");
    let a = tenant(server.addr, "a".into()).await;
    let b = tenant(server.addr, "b".into()).await;

    let mut refused = BufReader::new(TcpStream::connect(server.addr).await.unwrap());
    let mut line = String::new();
    refused.read_line(&mut line).await.unwrap();
    refused
        .get_mut()
        .write_all(b"CONNECT {\"scope\":\"c\"}\r\nPING\r\n")
        .await
        .unwrap();
    line.clear();
    refused.read_line(&mut line).await.unwrap();
    assert_eq!(line, "-ERR 'maximum scopes exceeded'\r\n");
    line.clear();
    assert_eq!(refused.read_line(&mut line).await.unwrap(), 0, "{line}");

    let publish = |scope: &str| {
        http()
            .post(format!("{}/v1/publish/news", server.http_url()))
            .header("Herald-Scope", scope)
            .body("x")
            .send()
    };
    let message = error_of(publish("c").await.unwrap(), StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(message, "maximum scopes exceeded (3)");
    assert!(publish("a").await.unwrap().status().is_success());
    let again = tenant(server.addr, "b".into()).await;

    drop((b, again));
    scopes_become(&server, 2).await;
    let c = tenant(server.addr, "c".into()).await;
    assert!(publish("a").await.unwrap().status().is_success());
    drop((a, c));
    scopes_become(&server, 1).await;
}
