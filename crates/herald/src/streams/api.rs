//! The JetStream API (`$JS.API.>`): JSON requests in, JSON replies out, as the official NATS
//! clients expect them (see JETSTREAM-WIRE.md). Every call is answered, an unknown one with
//! `bad request`, so a client never waits out a timeout; a pull for a consumer that does not
//! exist gets the `503` status a real server's missing subscription would produce.

use std::sync::Arc;

use serde::Serialize;

use super::Store;
use super::config::{
    self, ApiError, CreateConsumerRequest, MsgGetRequest, PagingRequest, PurgeRequest, StreamConfig,
};
use crate::message::Message;

/// What a consumer create may do to an existing consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    CreateOrUpdate,
    Create,
    Update,
}

const NAMES_PAGE: usize = 1024;
const LIST_PAGE: usize = 256;

/// Answers one API request.
pub(crate) fn handle(store: &Arc<Store>, msg: &Message) {
    let Some(reply) = msg.reply() else {
        return;
    };
    let Some(call) = msg.subject().strip_prefix("$JS.API.") else {
        return;
    };
    let body = msg.payload();
    let tokens: Vec<&str> = call.split('.').collect();
    let answer = match tokens.as_slice() {
        ["INFO"] => account_info(store),
        ["STREAM", "CREATE", name] => stream_create(store, name, body),
        ["STREAM", "UPDATE", name] => stream_update(store, name, body),
        ["STREAM", "INFO", name] => respond("stream_info", store.info(name)),
        ["STREAM", "DELETE", name] => respond(
            "stream_delete",
            config::expect_empty(body)
                .and_then(|()| store.delete(name))
                .map(|()| Success { success: true }),
        ),
        ["STREAM", "PURGE", name] => respond(
            "stream_purge",
            config::parse_request::<PurgeRequest>(body)
                .and_then(|req| store.purge(name, &req))
                .map(|purged| Purged {
                    success: true,
                    purged,
                }),
        ),
        ["STREAM", "NAMES"] => stream_names(store, body),
        ["STREAM", "LIST"] => stream_list(store, body),
        ["STREAM", "MSG", "GET", name] => msg_get(store, name, body),
        ["CONSUMER", "CREATE", stream] => consumer_create(store, stream, None, None, body),
        ["CONSUMER", "CREATE", stream, name] => {
            consumer_create(store, stream, Some(name), None, body)
        }
        ["CONSUMER", "CREATE", stream, name, filter @ ..] => {
            consumer_create(store, stream, Some(name), Some(filter.join(".")), body)
        }
        ["CONSUMER", "DURABLE", "CREATE", stream, name] => {
            durable_create(store, stream, name, body)
        }
        ["CONSUMER", "INFO", stream, name] => respond(
            "consumer_info",
            config::expect_empty(body)
                .and_then(|()| store.consumer(stream, name))
                .map(|(s, c)| c.info(&s)),
        ),
        ["CONSUMER", "DELETE", stream, name] => respond(
            "consumer_delete",
            config::expect_empty(body)
                .and_then(|()| store.delete_consumer(stream, name))
                .map(|()| Success { success: true }),
        ),
        ["CONSUMER", "NAMES", stream] => consumer_names(store, stream, body),
        ["CONSUMER", "LIST", stream] => consumer_list(store, stream, body),
        ["CONSUMER", "MSG", "NEXT", stream, name] => {
            pull(store, stream, name, body, reply);
            return;
        }
        _ => error("api", &ApiError::bad_request("bad request")),
    };
    if let Err(err) = msg.respond(answer) {
        tracing::debug!(%err, "cannot answer a JetStream API request");
    }
}

#[derive(Serialize)]
struct Success {
    success: bool,
}

#[derive(Serialize)]
struct Purged {
    success: bool,
    purged: u64,
}

fn respond<T: Serialize>(kind: &str, result: Result<T, ApiError>) -> Vec<u8> {
    match result {
        Ok(body) => config::response(kind, &body),
        Err(err) => error(kind, &err),
    }
}

fn error(kind: &str, err: &ApiError) -> Vec<u8> {
    config::error_response(kind, err)
}

fn account_info(store: &Store) -> Vec<u8> {
    let streams = store.streams.read();
    let (mut storage, mut consumers) = (0u64, 0usize);
    for s in streams.values() {
        storage += s.writer.log().bytes();
        consumers += s.consumers.read().len();
    }
    let body = serde_json::json!({
        "memory": 0, "storage": storage, "reserved_memory": 0, "reserved_storage": 0,
        "streams": streams.len(), "consumers": consumers,
        "limits": {"max_memory": -1, "max_storage": -1, "max_streams": -1, "max_consumers": -1,
                   "max_ack_pending": -1, "memory_max_stream_bytes": -1,
                   "storage_max_stream_bytes": -1, "max_bytes_required": false},
        "api": {"level": 0, "total": 0, "errors": 0},
    });
    config::response("account_info", &body)
}

fn stream_config(name: &str, body: &[u8]) -> Result<StreamConfig, ApiError> {
    let config: StreamConfig = serde_json::from_slice(body).map_err(ApiError::invalid_json)?;
    if config.name != name {
        return Err(ApiError::stream_name_mismatch());
    }
    Ok(config)
}

fn stream_create(store: &Arc<Store>, name: &str, body: &[u8]) -> Vec<u8> {
    respond(
        "stream_create",
        stream_config(name, body).and_then(|c| store.create(c)),
    )
}

fn stream_update(store: &Store, name: &str, body: &[u8]) -> Vec<u8> {
    respond(
        "stream_update",
        stream_config(name, body).and_then(|c| store.update(c)),
    )
}

#[derive(Serialize)]
struct Page<T> {
    total: usize,
    offset: usize,
    limit: usize,
    #[serde(flatten)]
    items: T,
}

fn page<T: Clone>(all: &[T], offset: usize, limit: usize) -> Vec<T> {
    all.iter().skip(offset).take(limit).cloned().collect()
}

fn stream_names(store: &Store, body: &[u8]) -> Vec<u8> {
    let result = config::parse_request::<PagingRequest>(body).map(|req| {
        let names: Vec<String> = store
            .streams
            .read()
            .iter()
            .filter(|(_, s)| match &req.subject {
                Some(subject) if !subject.is_empty() => s
                    .config
                    .lock()
                    .subjects
                    .iter()
                    .any(|p| config::overlaps(p, subject)),
                _ => true,
            })
            .map(|(n, _)| n.clone())
            .collect();
        Page {
            total: names.len(),
            offset: req.offset,
            limit: NAMES_PAGE,
            items: serde_json::json!({ "streams": page(&names, req.offset, NAMES_PAGE) }),
        }
    });
    respond("stream_names", result)
}

fn stream_list(store: &Store, body: &[u8]) -> Vec<u8> {
    let result = config::parse_request::<PagingRequest>(body).map(|req| {
        let streams: Vec<_> = store.streams.read().values().cloned().collect();
        let infos: Vec<_> = streams
            .iter()
            .skip(req.offset)
            .take(LIST_PAGE)
            .map(|s| super::info_of(s, None))
            .collect();
        Page {
            total: streams.len(),
            offset: req.offset,
            limit: LIST_PAGE,
            items: serde_json::json!({ "streams": infos }),
        }
    });
    respond("stream_list", result)
}

fn msg_get(store: &Store, name: &str, body: &[u8]) -> Vec<u8> {
    let result = (|| {
        let req: MsgGetRequest = config::parse_request(body)?;
        let stream = store.stream(name)?;
        let log = stream.writer.log();
        let last = stream.committed();
        let found = match (&req.seq, &req.last_by_subj, &req.next_by_subj) {
            (Some(seq), None, None) if *seq <= last => log.get(*seq).ok().flatten(),
            (_, Some(subject), None) => (log.first_seq()..=last)
                .rev()
                .filter_map(|seq| log.get(seq).ok().flatten())
                .find(|m| crate::subject::matches(subject, &m.subject)),
            (seq, None, Some(subject)) => (seq.unwrap_or(0).max(log.first_seq())..=last)
                .filter_map(|seq| log.get(seq).ok().flatten())
                .find(|m| crate::subject::matches(subject, &m.subject)),
            (None, None, None) => return Err(ApiError::bad_request("empty request")),
            _ => None,
        };
        let m = found.ok_or_else(ApiError::no_message)?;
        use base64::Engine as _;
        let b64 = &base64::engine::general_purpose::STANDARD;
        let mut message = serde_json::json!({
            "subject": m.subject, "seq": m.seq, "time": config::rfc3339(m.timestamp),
        });
        if !m.headers.is_empty() {
            message["hdrs"] = b64.encode(&m.headers).into();
        }
        if !m.payload.is_empty() {
            message["data"] = b64.encode(&m.payload).into();
        }
        Ok(serde_json::json!({ "message": message }))
    })();
    respond("stream_msg_get", result)
}

fn consumer_create(
    store: &Store,
    stream: &str,
    name: Option<&str>,
    filter: Option<String>,
    body: &[u8],
) -> Vec<u8> {
    let result = (|| {
        let req: CreateConsumerRequest = config::parse_request(body)?;
        if !req.stream_name.is_empty() && req.stream_name != stream {
            return Err(ApiError::stream_name_mismatch());
        }
        let mut config = req.config;
        match name {
            Some(name) => {
                if config.durable_name.as_deref().is_some_and(|d| d != name) {
                    return Err(ApiError::durable_name_mismatch());
                }
                if config.name.as_deref().is_some_and(|n| n != name) {
                    return Err(ApiError::name_durable_mismatch());
                }
                config.name = Some(name.to_owned());
            }
            None if config.durable_name.is_some() => {
                return Err(ApiError::ephemeral_with_durable());
            }
            None => {}
        }
        if let Some(filter) = filter {
            if !config.filter_subjects.is_empty() {
                return Err(ApiError::multiple_filters());
            }
            if config.filter_subject.as_deref() != Some(filter.as_str()) {
                return Err(ApiError::filter_mismatch());
            }
        }
        let action = match req.action.as_str() {
            "" => Action::CreateOrUpdate,
            "create" => Action::Create,
            "update" => Action::Update,
            other => return Err(ApiError::bad_request(format!("unknown action {other:?}"))),
        };
        store.create_consumer(stream, config, action)
    })();
    respond("consumer_create", result)
}

fn durable_create(store: &Store, stream: &str, name: &str, body: &[u8]) -> Vec<u8> {
    let result = (|| {
        let req: CreateConsumerRequest = config::parse_request(body)?;
        match req.config.durable_name.as_deref() {
            None | Some("") => Err(ApiError::durable_required()),
            Some(d) if d != name => Err(ApiError::durable_name_mismatch()),
            Some(_) => Ok(()),
        }
    })();
    match result {
        Ok(()) => consumer_create(store, stream, Some(name), None, body),
        Err(err) => error("consumer_create", &err),
    }
}

fn consumer_names(store: &Store, stream: &str, body: &[u8]) -> Vec<u8> {
    let result = config::parse_request::<PagingRequest>(body).and_then(|req| {
        let s = store.stream(stream)?;
        let names: Vec<String> = s.consumers.read().keys().cloned().collect();
        Ok(Page {
            total: names.len(),
            offset: req.offset,
            limit: NAMES_PAGE,
            items: serde_json::json!({ "consumers": page(&names, req.offset, NAMES_PAGE) }),
        })
    });
    respond("consumer_names", result)
}

fn consumer_list(store: &Store, stream: &str, body: &[u8]) -> Vec<u8> {
    let result = config::parse_request::<PagingRequest>(body).and_then(|req| {
        let s = store.stream(stream)?;
        let consumers: Vec<_> = s.consumers.read().values().cloned().collect();
        let infos: Vec<_> = consumers
            .iter()
            .skip(req.offset)
            .take(LIST_PAGE)
            .map(|c| c.info(&s))
            .collect();
        Ok(Page {
            total: consumers.len(),
            offset: req.offset,
            limit: LIST_PAGE,
            items: serde_json::json!({ "consumers": infos }),
        })
    });
    respond("consumer_list", result)
}

/// A pull request: queued on the consumer, or answered with a status.
fn pull(store: &Store, stream: &str, name: &str, body: &[u8], reply: &str) {
    let Ok((s, c)) = store.consumer(stream, name) else {
        // What a client sees from a real server when nothing serves the consumer.
        return super::consumer::send_status(&store.scope, reply, "503", None);
    };
    match config::parse_pull(body) {
        Ok(req) => c.pull(&s, &req, reply),
        Err(err) => super::consumer::send_status(
            &store.scope,
            reply,
            &format!("400 Bad Request - {}", err.description),
            None,
        ),
    }
}
