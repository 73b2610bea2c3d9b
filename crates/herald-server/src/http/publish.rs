//! Publishing over HTTP: one message from a raw body, a batch of envelopes, and
//! request/reply.
//!
//! A publish to a subject a stream captures (in the scope the streams live in) is stored and
//! answered with the stream's acknowledgement (`stream`, `seq`, `duplicate`); any other goes
//! through the scope's router to every subscriber of any door and node.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use herald::streams::{CONFIRM_HEADER, CONFIRM_TIMEOUT_HEADER, ErrorKind};
use herald::{HeaderMap as MessageHeaders, Subject, WireMessage};
use serde_json::{Value, json};

use super::auth::Perms;
use super::envelope::Incoming;
use super::error::ApiError;
use super::{App, AppState, ScopeRouter, duration, query_value, read_body};

/// Request headers that become message headers: `Herald-Header-<Name>`.
const HEADER_PREFIX: &str = "herald-header-";

/// One message to publish, checked.
struct Outgoing {
    subject: String,
    reply: Option<String>,
    headers: MessageHeaders,
    payload: Bytes,
}

/// `POST /v1/publish/{subject}`: the body is the payload.
pub(crate) async fn single(
    State(app): AppState,
    ScopeRouter(router, scope): ScopeRouter,
    perms: Perms,
    Path(subject): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let limit = app.shared.config.max_payload;
    let payload = read_body(&headers, body, limit).await?;
    let mut message = Outgoing {
        subject,
        reply: text_header(&headers, "herald-reply")?,
        headers: message_headers(&headers)?,
        payload,
    };
    check(&message, limit)?;
    perms.publish(&message.subject)?;
    let confirm = match query_value(uri.query(), "confirm") {
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            ApiError::bad_request(format!("confirm: not a number of consumers: {n:?}"))
        })?),
        None => None,
    };
    if let Some(n) = confirm {
        let timeout = duration(
            query_value(uri.query(), "timeout").as_deref(),
            "timeout",
            Duration::from_secs(5),
        )?;
        message.headers.insert(CONFIRM_HEADER, &n.to_string())?;
        message
            .headers
            .insert(CONFIRM_TIMEOUT_HEADER, &timeout.as_millis().to_string())?;
    }
    let answer = send(&app, &router, &scope, message, confirm.is_some()).await?;
    Ok(Json(answer))
}

/// `POST /v1/publish`: a JSON array of envelopes, all checked before any is published.
pub(crate) async fn batch(
    State(app): AppState,
    ScopeRouter(router, scope): ScopeRouter,
    perms: Perms,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let limit = app.shared.config.max_payload;
    let body = read_body(&headers, body, app.shared.config.max_pending).await?;
    let entries: Vec<Incoming> = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("body is not a JSON array of messages: {e}")))?;
    let mut messages = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let at = |e: ApiError| ApiError::new(e.status, format!("entry {i}: {}", e.message));
        let payload = entry.payload().map_err(|e| at(ApiError::bad_request(e)))?;
        let mut headers = MessageHeaders::new();
        for (name, values) in &entry.headers {
            for value in values.values() {
                headers.append(name, value).map_err(|e| at(e.into()))?;
            }
        }
        let message = Outgoing {
            subject: entry.subject,
            reply: entry.reply,
            headers,
            payload,
        };
        check(&message, limit).map_err(at)?;
        perms.publish(&message.subject).map_err(at)?;
        messages.push(message);
    }
    // A batch that streams capture whole is stored in order and acknowledged together (its
    // messages share the stream's syncs); any other goes one message at a time.
    if let Some(streams) = app.streams.as_ref().filter(|_| scope == "default")
        && messages
            .iter()
            .all(|m| m.reply.is_none() && streams.captures(&m.subject))
    {
        return stored_batch(&app, streams, messages).await;
    }
    let mut results = Vec::with_capacity(messages.len());
    for message in messages {
        results.push(send(&app, &router, &scope, message, false).await?);
    }
    Ok(Json(
        json!({ "published": results.len(), "results": results }),
    ))
}

/// Publishes a batch whose every message a stream captures, and answers as [`batch`] does.
async fn stored_batch(
    app: &App,
    streams: &herald::streams::Streams,
    messages: Vec<Outgoing>,
) -> Result<Json<Value>, ApiError> {
    for message in &messages {
        count_in(app, message);
    }
    let subjects: Vec<String> = messages.iter().map(|m| m.subject.clone()).collect();
    let acks = streams
        .publish_batch(
            messages
                .into_iter()
                .map(|m| (m.subject, m.headers, m.payload)),
        )
        .await;
    let mut results = Vec::with_capacity(acks.len());
    for (subject, ack) in subjects.into_iter().zip(acks) {
        let ack = ack?;
        let mut answer = json!({ "subject": subject, "stream": ack.stream, "seq": ack.seq });
        if ack.duplicate {
            answer["duplicate"] = Value::Bool(true);
        }
        results.push(answer);
    }
    Ok(Json(
        json!({ "published": results.len(), "results": results }),
    ))
}

/// `POST /v1/request/{subject}?timeout=2s`: the reply's payload is the answer's body, its
/// headers come back as `Herald-Header-*`.
pub(crate) async fn request(
    State(app): AppState,
    ScopeRouter(router, _): ScopeRouter,
    perms: Perms,
    Path(subject): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = app.shared.config.max_payload;
    let payload = read_body(&headers, body, limit).await?;
    let timeout = duration(
        query_value(uri.query(), "timeout").as_deref(),
        "timeout",
        Duration::from_secs(5),
    )?;
    let message = Outgoing {
        subject,
        reply: None,
        headers: message_headers(&headers)?,
        payload,
    };
    check(&message, limit)?;
    perms.publish(&message.subject)?;
    count_in(&app, &message);
    let reply = router
        .request_with_headers(&message.subject, message.headers, message.payload, timeout)
        .await?;
    let mut response = reply.payload().clone().into_response();
    if let Some(reply_headers) = reply.headers() {
        let out = response.headers_mut();
        for (name, value) in reply_headers.iter() {
            let name = HeaderName::from_bytes(format!("{HEADER_PREFIX}{name}").as_bytes());
            if let (Ok(name), Ok(value)) = (name, HeaderValue::from_str(value)) {
                out.append(name, value);
            }
        }
    }
    Ok(response)
}

/// Validates a message before anything is published.
fn check(message: &Outgoing, limit: usize) -> Result<(), ApiError> {
    Subject::new(&message.subject)?;
    if let Some(reply) = &message.reply {
        Subject::new(reply)?;
    }
    if message.payload.len() > limit {
        return Err(ApiError::too_large(limit));
    }
    Ok(())
}

/// Publishes one checked message; the answer names the stream that stored it, if any.
async fn send(
    app: &App,
    router: &herald::Router,
    scope: &str,
    message: Outgoing,
    must_store: bool,
) -> Result<Value, ApiError> {
    count_in(app, &message);
    if let Some(streams) = app.streams.as_ref().filter(|_| scope == "default")
        && message.reply.is_none()
    {
        match streams
            .publish_with_headers(
                &message.subject,
                message.headers.clone(),
                message.payload.clone(),
            )
            .await
        {
            Ok(ack) => {
                let mut answer = json!({
                    "subject": message.subject, "stream": ack.stream, "seq": ack.seq,
                });
                if ack.duplicate {
                    answer["duplicate"] = Value::Bool(true);
                }
                return Ok(answer);
            }
            Err(err) if err.kind() == ErrorKind::NotFound && !must_store => {}
            Err(err) => return Err(err.into()),
        }
    } else if must_store {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            format!("confirm needs a stream: none captures {}", message.subject),
        ));
    }
    let block = (!message.headers.is_empty()).then(|| {
        let mut out = Vec::with_capacity(64);
        herald_proto::headers::encode(&mut out, None, message.headers.iter());
        out
    });
    router.publish_wire(
        &WireMessage {
            subject: &message.subject,
            reply: message.reply.as_deref(),
            headers: block.as_deref(),
            payload: &message.payload,
        },
        true,
    )?;
    Ok(json!({ "subject": message.subject }))
}

fn count_in(app: &App, message: &Outgoing) {
    let stats = &app.shared.stats;
    stats.msgs_in.fetch_add(1, Ordering::Relaxed);
    stats
        .bytes_in
        .fetch_add(message.payload.len() as u64, Ordering::Relaxed);
}

/// `Herald-Header-<Name>` request headers (and `Nats-Msg-Id`) as message headers. HTTP
/// lowercases names, so each is given back in the canonical form (`Trace-Id`), as Go's
/// `textproto` and the NATS clients write theirs.
fn message_headers(headers: &HeaderMap) -> Result<MessageHeaders, ApiError> {
    let mut out = MessageHeaders::new();
    for (name, value) in headers {
        let name = name.as_str();
        let message_name = if let Some(rest) = name.strip_prefix(HEADER_PREFIX) {
            canonical(rest)
        } else if name == "nats-msg-id" {
            "Nats-Msg-Id".to_owned()
        } else {
            continue;
        };
        let value = value
            .to_str()
            .map_err(|_| ApiError::bad_request(format!("header {name} is not text")))?;
        out.append(&message_name, value)?;
    }
    Ok(out)
}

/// `trace-id` → `Trace-Id`.
fn canonical(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper { c.to_ascii_uppercase() } else { c });
        upper = c == '-';
    }
    out
}

fn text_header(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.to_owned()))
            .map_err(|_| ApiError::bad_request(format!("header {name} is not text"))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_names_come_back_canonical() {
        assert_eq!(super::canonical("trace-id"), "Trace-Id");
        assert_eq!(super::canonical("x"), "X");
    }
}
