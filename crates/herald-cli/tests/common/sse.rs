//! Helpers of the HTTP tests: a `reqwest` client, JSON error checks, and a reader of
//! Server-Sent Events.

#![allow(dead_code)]

use std::time::Duration;

use async_nats::Client;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;

use super::HeraldProcess;

/// Every wait in these tests ends within this.
pub const WAIT: Duration = Duration::from_secs(10);

pub async fn nats(server: &HeraldProcess) -> Client {
    tokio::time::timeout(WAIT, async_nats::connect(server.url()))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// The server's answer on `subject` as JSON.
pub async fn ask(client: &Client, subject: &str, body: &str) -> Value {
    let reply = tokio::time::timeout(
        WAIT,
        client.request(subject.to_owned(), body.to_owned().into()),
    )
    .await
    .expect("no answer in time")
    .expect("request");
    serde_json::from_slice(&reply.payload).expect("JSON answer")
}

/// `$HERALD.API.CLUSTER.FLUSH` with `body` (`{"peers":N,"meta":M}`, or empty) through
/// `client`'s server; panics on an error answer.
pub async fn cluster_flush(client: &Client, body: &str) {
    let flushed = ask(client, "$HERALD.API.CLUSTER.FLUSH", body).await;
    assert!(flushed.get("error").is_none(), "{flushed}");
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .expect("an HTTP client")
}

/// A `200 OK` JSON answer to a GET of `url`.
pub async fn get_json(url: String) -> Value {
    let r = http().get(url).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("a JSON body")
}

/// The Prometheus text of `server`'s `/metrics`.
pub async fn metrics(server: &HeraldProcess) -> String {
    http()
        .get(format!("{}/metrics", server.http_url()))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("a text body")
}

/// The value of the sample `name` (without labels) in Prometheus `text`.
pub fn metric_value(text: &str, name: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' '))
        })
        .unwrap_or_else(|| panic!("no {name} in {text}"));
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line:?} has no whole number"))
}

/// Waits until the server has processed everything `client` sent so far (async-nats's
/// `flush` only empties its own buffer; a request nobody answers is a real round trip).
pub async fn sync(client: &Client) {
    let answer = tokio::time::timeout(WAIT, client.request("_test.barrier", "".into()))
        .await
        .expect("barrier round trip timed out");
    assert!(answer.is_err(), "nobody answers the barrier subject");
}

pub async fn next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("no message within the timeout")
        .expect("subscription ended")
}

/// The `{"error": {"code", "message"}}` body of an error answer, checked against its status.
pub async fn error_of(response: reqwest::Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("a JSON error body");
    assert_eq!(body["error"]["code"], status.as_u16(), "{body}");
    body["error"]["message"]
        .as_str()
        .expect("a message")
        .to_owned()
}

/// One Server-Sent Event.
#[derive(Debug)]
pub struct Event {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
}

/// Reads events off a `text/event-stream` response.
pub struct Events {
    response: reqwest::Response,
    buf: String,
}

impl Events {
    /// Opens an event stream; it is live once this returns (the headers arrived).
    pub async fn open(request: reqwest::RequestBuilder) -> Events {
        let response = request
            .timeout(Duration::from_secs(3600))
            .send()
            .await
            .expect("event stream request");
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers["content-type"], "text/event-stream");
        assert_eq!(headers["x-accel-buffering"], "no");
        assert_eq!(headers["cache-control"], "no-cache");
        Events {
            response,
            buf: String::new(),
        }
    }

    pub async fn next(&mut self) -> Event {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = Event {
                    event: "message".into(),
                    id: None,
                    data: Value::Null,
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event.event = v.into();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        event.id = Some(v.into());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        event.data = serde_json::from_str(v).expect("JSON data");
                        any = true;
                    }
                }
                if any {
                    return event;
                }
                continue; // a comment
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("no event within the timeout")
                .expect("event stream read")
                .expect("event stream ended");
            self.buf
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8 events"));
        }
    }
}
