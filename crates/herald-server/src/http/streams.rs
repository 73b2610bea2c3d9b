//! Streams and consumers over HTTP: CRUD in herald's own JSON shape (SPEC 5; the typed
//! configs of the library, durations as humantime), purges, stored messages, and acks by
//! sequence.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use herald::streams::{
    AckKind, AckOutcome, ConsumerConfig, ErrorKind, Get, Purge, StreamConfig, Streams,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::envelope::{self, Parts};
use super::error::ApiError;
use super::{App, AppState, ScopeRouter, read_body};

/// Bodies of stream and consumer configurations are small; this bounds them.
const CONFIG_LIMIT: usize = 1024 * 1024;

impl App {
    /// The streams of `scope`: the server keeps them in the default scope, when it has a data
    /// directory.
    pub(crate) fn streams_in(&self, scope: &str) -> Result<&Streams, ApiError> {
        let streams = self.streams.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "streams are off: the server has no data_dir",
            )
        })?;
        if scope != "default" {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no streams in scope {scope:?}: this server keeps them in \"default\""),
            ));
        }
        Ok(streams)
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Json<Value> {
    Json(serde_json::to_value(value).unwrap_or(Value::Null))
}

/// `GET /v1/streams`.
pub(crate) async fn list(
    State(app): AppState,
    ScopeRouter(_, scope): ScopeRouter,
) -> Result<Json<Value>, ApiError> {
    let streams = app.streams_in(&scope)?;
    Ok(Json(json!({ "streams": streams.list() })))
}

/// `PUT /v1/streams/{name}`: creates the stream, or updates it when it exists. A body with
/// only `subjects` is enough; a `name` in it must be the one in the path.
pub(crate) async fn put(
    State(app): AppState,
    ScopeRouter(_, scope): ScopeRouter,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let streams = app.streams_in(&scope)?;
    let body = read_body(&headers, body, CONFIG_LIMIT).await?;
    let mut config: StreamConfig = parse(&body, "a stream configuration")?;
    if !config.name.is_empty() && config.name != name {
        return Err(ApiError::bad_request(format!(
            "the body names stream {:?}, the path {name:?}",
            config.name
        )));
    }
    config.name = name.clone();
    let info = match streams.info(&name) {
        Ok(_) => streams.update(config)?,
        Err(e) if e.kind() == ErrorKind::NotFound => streams.create(config)?,
        Err(e) => return Err(e.into()),
    };
    Ok(to_json(&info))
}

/// `GET /v1/streams/{name}`.
pub(crate) async fn get(
    State(app): AppState,
    ScopeRouter(_, scope): ScopeRouter,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(to_json(&app.streams_in(&scope)?.info(&name)?))
}

/// `DELETE /v1/streams/{name}`.
pub(crate) async fn delete(
    State(app): AppState,
    ScopeRouter(_, scope): ScopeRouter,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    app.streams_in(&scope)?.delete(&name)?;
    Ok(Json(json!({ "deleted": name })))
}

/// What a purge keeps: `{"subject"?, "seq"? (purge below it), "keep"?}`; empty purges all.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    subject: Option<String>,
    seq: Option<u64>,
    keep: Option<u64>,
}

/// `POST /v1/streams/{name}/purge`.
pub(crate) async fn purge(
    State(app): AppState,
    ScopeRouter(_, scope): ScopeRouter,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let streams = app.streams_in(&scope)?;
    let body = read_body(&headers, body, CONFIG_LIMIT).await?;
    let what: PurgeBody = if body.iter().all(u8::is_ascii_whitespace) {
        PurgeBody::default()
    } else {
        parse(&body, "a purge")?
    };
    let purged = streams.purge(
        &name,
        &Purge {
            filter: what.subject,
            below: what.seq,
            keep: what.keep,
        },
    )?;
    Ok(Json(json!({ "purged": purged })))
}

/// `GET /v1/streams/{name}/messages/{seq}`: one stored message as an envelope.
pub(crate) async fn message(
    State(app): AppState,
    ScopeRouter(_, scope): ScopeRouter,
    Path((name, seq)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let streams = app.streams_in(&scope)?;
    let seq: u64 = seq
        .parse()
        .map_err(|_| ApiError::bad_request(format!("not a sequence number: {seq:?}")))?;
    let stored = streams.get(&name, &Get::Seq(seq))?;
    let mut out = Vec::with_capacity(128 + stored.message.payload().len());
    envelope::open(
        &mut out,
        &Parts {
            subject: stored.message.subject(),
            reply: None,
            headers: stored.message.header_block(),
            payload: stored.message.payload(),
        },
    );
    envelope::field(&mut out, "stream", &name);
    envelope::field(&mut out, "seq", stored.seq);
    envelope::field(&mut out, "time", herald::time::rfc3339(stored.time));
    envelope::close(&mut out);
    Ok(Json(serde_json::from_slice(&out).unwrap_or(Value::Null)))
}

/// `GET /v1/streams/{name}/consumers`.
pub(crate) async fn consumers(
    State(app): AppState,
    ScopeRouter(_, scope): ScopeRouter,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let list = app.streams_in(&scope)?.consumers(&name)?;
    Ok(Json(json!({ "consumers": list })))
}

/// `PUT /v1/streams/{name}/consumers/{consumer}`: a durable consumer of that name.
pub(crate) async fn put_consumer(
    State(app): AppState,
    ScopeRouter(_, scope): ScopeRouter,
    Path((name, consumer)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let streams = app.streams_in(&scope)?;
    let body = read_body(&headers, body, CONFIG_LIMIT).await?;
    let mut config: ConsumerConfig = if body.iter().all(u8::is_ascii_whitespace) {
        ConsumerConfig::default()
    } else {
        parse(&body, "a consumer configuration")?
    };
    if let Some(given) = config.name.as_ref().filter(|given| **given != consumer) {
        return Err(ApiError::bad_request(format!(
            "the body names consumer {given:?}, the path {consumer:?}"
        )));
    }
    config.name = Some(consumer);
    config.durable = true;
    Ok(to_json(&streams.create_consumer(&name, config)?))
}

/// `GET /v1/streams/{name}/consumers/{consumer}`.
pub(crate) async fn get_consumer(
    State(app): AppState,
    ScopeRouter(_, scope): ScopeRouter,
    Path((name, consumer)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    Ok(to_json(
        &app.streams_in(&scope)?.consumer_info(&name, &consumer)?,
    ))
}

/// `DELETE /v1/streams/{name}/consumers/{consumer}`.
pub(crate) async fn delete_consumer(
    State(app): AppState,
    ScopeRouter(_, scope): ScopeRouter,
    Path((name, consumer)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    app.streams_in(&scope)?.delete_consumer(&name, &consumer)?;
    Ok(Json(json!({ "deleted": consumer })))
}

/// The body of an ack: `{"action": "ack"|"nak"|"term"|"progress", "delay"?: "5s"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    #[serde(default = "ack")]
    action: String,
    #[serde(default, with = "humantime_serde")]
    delay: Option<Duration>,
}

fn ack() -> String {
    "ack".into()
}

/// `POST /v1/streams/{name}/consumers/{consumer}/ack/{seq}`: 200 when applied or already
/// acknowledged, 409 for a sequence the consumer never delivered, 404 for an unknown
/// consumer.
pub(crate) async fn ack_message(
    State(app): AppState,
    ScopeRouter(_, scope): ScopeRouter,
    Path((name, consumer, seq)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let streams = app.streams_in(&scope)?;
    let seq: u64 = seq
        .parse()
        .map_err(|_| ApiError::bad_request(format!("not a sequence number: {seq:?}")))?;
    let body = read_body(&headers, body, CONFIG_LIMIT).await?;
    let what = if body.iter().all(u8::is_ascii_whitespace) {
        AckBody {
            action: ack(),
            delay: None,
        }
    } else {
        parse::<AckBody>(&body, "an ack")?
    };
    let kind = match what.action.as_str() {
        "ack" => AckKind::Ack,
        "nak" => AckKind::Nak(what.delay),
        "term" => AckKind::Term,
        "progress" => AckKind::Progress,
        other => {
            return Err(ApiError::bad_request(format!(
                "action must be ack, nak, term or progress, not {other:?}"
            )));
        }
    };
    match streams.ack(&name, &consumer, kind, seq)? {
        AckOutcome::Applied => Ok(Json(json!({ "seq": seq, "action": what.action }))),
        AckOutcome::AlreadyAcked => Ok(Json(
            json!({ "seq": seq, "action": what.action, "already": true }),
        )),
        AckOutcome::NotDelivered => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("consumer {consumer} never delivered sequence {seq}"),
        )),
        AckOutcome::NoAcks => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("consumer {consumer} takes no acks (ack_policy none)"),
        )),
    }
}

/// Parses a JSON body, naming what it should have been.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("not {what}: {e}")))
}
