//! The HTTP/1.1 bytes of the HTTP door as a hand-written client sees them: an event stream
//! opened on a new connection is written by herald itself (chunked, `connection: close`), a
//! client that leaves an idle stream is noticed, an event-stream route's error is a complete
//! answer, and every other first request, with the rest of its connection, is hyper's; and
//! `/metrics` counts the door's connections and open event streams, however they were opened.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

mod common;

use common::HeraldProcess;
use common::sse::{WAIT, metric_value, metrics, nats, sync};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw HTTP/1.1 connection to the server's HTTP door.
struct Raw {
    socket: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(server: &HeraldProcess) -> Raw {
        let socket = tokio::time::timeout(WAIT, TcpStream::connect(server.http.unwrap()))
            .await
            .expect("connect in time")
            .expect("connect");
        Raw {
            socket,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, request: &str) {
        self.socket.write_all(request.as_bytes()).await.unwrap();
    }

    /// Reads until `buf` holds `needle`; returns everything up to its end and keeps the rest.
    async fn until(&mut self, needle: &[u8]) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(at) = self.buf.windows(needle.len()).position(|w| w == needle) {
                let taken: Vec<u8> = self.buf.drain(..at + needle.len()).collect();
                return String::from_utf8(taken).unwrap();
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.socket.read(&mut chunk))
                .await
                .unwrap_or_else(|_| panic!("no {needle:?} in time; have {:?}", self.buf))
                .unwrap();
            assert!(n > 0, "closed before {needle:?}; have {:?}", self.buf);
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads until the server closes the connection; returns what came meanwhile.
    async fn until_closed(&mut self) -> String {
        let mut rest = std::mem::take(&mut self.buf);
        tokio::time::timeout(WAIT, self.socket.read_to_end(&mut rest))
            .await
            .expect("closed in time")
            .unwrap();
        String::from_utf8(rest).unwrap()
    }
}

/// One value of the server's `/metrics`.
async fn metric(server: &HeraldProcess, name: &str) -> u64 {
    metric_value(&metrics(server).await, name)
}

async fn wait_metric(server: &HeraldProcess, name: &str, want: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while metric(server, name).await != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never {want}"
        );
        tokio::task::yield_now().await;
    }
}

/// The head an event stream opens with, its events as chunks, and the subscription gone once
/// the client closes its socket while the stream is idle.
#[tokio::test]
async fn an_event_stream_is_chunked_and_ends_when_its_client_leaves() {
    let server = HeraldProcess::start(&[]);
    let client = nats(&server).await;
    sync(&client).await;
    let base = metric(&server, "herald_subscriptions").await;
    let mut raw = Raw::connect(&server).await;
    raw.send("GET /v1/subscribe/wire.%3E HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\n\r\n")
        .await;
    let head = raw.until(b"\r\n\r\n").await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    for field in [
        "content-type: text/event-stream\r\n",
        "cache-control: no-cache\r\n",
        "x-accel-buffering: no\r\n",
        "transfer-encoding: chunked\r\n",
        "connection: close\r\n",
        "date: ",
    ] {
        assert!(head.contains(field), "{field:?} missing from {head}");
    }
    assert!(!head.contains("content-length"), "{head}");
    assert_eq!(raw.until(b": open\n\n\r\n").await, "8\r\n: open\n\n\r\n");
    client.publish("wire.1", "one".into()).await.unwrap();
    client.flush().await.unwrap();
    let chunk = raw.until(b"\n\n\r\n").await;
    let (size, event) = chunk.split_once("\r\n").unwrap();
    assert_eq!(usize::from_str_radix(size, 16).unwrap(), event.len() - 2);
    assert_eq!(
        event,
        "event: message\nid: 1\ndata: {\"subject\":\"wire.1\",\"data\":\"one\"}\n\n\r\n"
    );
    assert_eq!(metric(&server, "herald_subscriptions").await, base + 1);
    drop(raw);
    wait_metric(&server, "herald_subscriptions", base).await;
}

/// An error on an event-stream route is a whole answer with its length, then the connection
/// closes; a request that is not an event stream keeps its connection for the next one, an
/// event stream opened later on it included.
#[tokio::test]
async fn errors_are_whole_answers_and_other_requests_keep_their_connection() {
    let server = HeraldProcess::start(&[]);
    let mut raw = Raw::connect(&server).await;
    raw.send("GET /v1/subscribe/a..b HTTP/1.1\r\nHost: h\r\n\r\n")
        .await;
    let head = raw.until(b"\r\n\r\n").await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 400 bad request\r\n"), "{head}");
    assert!(head.contains("connection: close\r\n"), "{head}");
    let length: usize = head
        .split("\r\n")
        .find_map(|line| line.strip_prefix("content-length: "))
        .expect("a content-length")
        .parse()
        .unwrap();
    let body = raw.until_closed().await;
    assert_eq!(body.len(), length);
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], 400, "{error}");
    assert!(
        error["error"]["message"].as_str().unwrap().contains("a..b"),
        "{error}"
    );

    let mut raw = Raw::connect(&server).await;
    raw.send("GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n").await;
    let head = raw.until(b"\r\n\r\n").await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    let client = nats(&server).await;
    raw.send("GET /v1/subscribe/later HTTP/1.1\r\nHost: h\r\n\r\n")
        .await;
    raw.until(b"content-type: text/event-stream").await;
    raw.until(b": open\n\n").await;
    client.publish("later", "x".into()).await.unwrap();
    client.flush().await.unwrap();
    assert!(raw.until(b"\n\n").await.contains("\"subject\":\"later\""));
}

/// A first request that arrives in pieces, slower than one read, is still one request.
#[tokio::test]
async fn a_head_sent_in_pieces_opens_the_stream() {
    let server = HeraldProcess::start(&[]);
    let mut raw = Raw::connect(&server).await;
    let request = "GET /v1/subscribe/pieces HTTP/1.1\r\nHost: h\r\nX-Pad: ".to_owned()
        + &"p".repeat(3000)
        + "\r\n\r\n";
    for piece in request.as_bytes().chunks(700) {
        raw.socket.write_all(piece).await.unwrap();
        raw.socket.flush().await.unwrap();
        tokio::task::yield_now().await;
    }
    let head = raw.until(b"\r\n\r\n").await.to_ascii_lowercase();
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
}

/// An event stream opened on a new connection (written by herald) and one opened on a
/// connection hyper already served are both counted while open, and connections too.
#[tokio::test]
async fn metrics_count_http_connections_and_open_event_streams() {
    let server = HeraldProcess::start(&[]);
    assert_eq!(metric(&server, "herald_event_streams").await, 0);
    let mut first = Raw::connect(&server).await;
    first
        .send("GET /v1/subscribe/m HTTP/1.1\r\nHost: h\r\n\r\n")
        .await;
    first.until(b": open\n\n").await;
    let mut second = Raw::connect(&server).await;
    second
        .send("GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n")
        .await;
    second.until(b"\r\n\r\n").await;
    second
        .send("GET /v1/subscribe/m HTTP/1.1\r\nHost: h\r\n\r\n")
        .await;
    second.until(b": open\n\n").await;
    assert_eq!(metric(&server, "herald_event_streams").await, 2);
    // These two, and the scraping client's.
    assert!(metric(&server, "herald_http_connections").await >= 3);
    assert!(metric(&server, "herald_http_connections_accepted_total").await >= 3);
    drop(first);
    wait_metric(&server, "herald_event_streams", 1).await;
    drop(second);
    wait_metric(&server, "herald_event_streams", 0).await;
}
