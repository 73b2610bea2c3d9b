//! The JetStream API (`$JS.API.>`): JSON requests in, JSON replies out, as the official NATS
//! clients expect them (see JETSTREAM-WIRE.md). Every call is answered, an unknown one with
//! `bad request`, so a client never waits out a timeout; a pull for a consumer that does not
//! exist gets the `503` status a real server's missing subscription would produce.

use std::sync::Arc;

use serde::Serialize;

use super::config::{ConsumerInfo, StreamConfig, StreamInfo};
use super::delivery;
use super::error::ApiError;
use super::requests::{
    self, CreateConsumerRequest, DirectGetRequest, MsgDeleteRequest, MsgGetRequest, PagingRequest,
    PurgeRequest, StreamInfoRequest, parse_pull,
};
use super::time::rfc3339;
use crate::message::Message;
use crate::scope::Scope;
use crate::streams::{CreateAction, Get, Streams};

/// What the API handler works with.
pub(crate) struct Api {
    pub(crate) streams: Streams,
    pub(crate) scope: Arc<Scope>,
    pub(crate) flows: Arc<super::push::Flows>,
    /// In a cluster: what STREAM.INFO's `cluster` object says (the cluster's name, and this
    /// server as the leader of the streams it holds).
    pub(crate) cluster: Option<serde_json::Value>,
    /// In a cluster: how this node sees its replicated streams.
    pub(crate) view: std::sync::OnceLock<Arc<dyn ClusterView>>,
}

/// How a node of a cluster sees the streams it holds a replica of.
pub(crate) trait ClusterView: Send + Sync + 'static {
    /// STREAM.INFO's `cluster` object for `stream`, if it is replicated.
    fn cluster(&self, stream: &str) -> Option<serde_json::Value>;
    /// Whether this node reports `stream` in its lists (a replica that does not lead does
    /// not: the leader does).
    fn reports(&self, stream: &str) -> bool;
}

impl Api {
    /// STREAM.INFO's `cluster` object for `stream`.
    fn cluster_of(&self, stream: &str) -> Option<serde_json::Value> {
        self.view
            .get()
            .and_then(|view| view.cluster(stream))
            .or_else(|| self.cluster.clone())
    }

    /// Whether this node reports `stream` in its lists.
    fn reports(&self, stream: &str) -> bool {
        self.view.get().is_none_or(|view| view.reports(stream))
    }
}

const NAMES_PAGE: usize = 1024;
const LIST_PAGE: usize = 256;

/// Answers one API request.
pub(crate) fn handle(api: &Api, msg: &Message) {
    if let Some(call) = msg.subject().strip_prefix("$JS.API.") {
        handle_call(api, msg, call);
    }
}

/// Answers API call `call` (the subject after `$JS.API.`), made by `msg`.
pub(crate) fn handle_call(api: &Api, msg: &Message, call: &str) {
    let store = &api.streams;
    let Some(reply) = msg.reply() else {
        return;
    };
    let body = msg.payload();
    // On the stack for every call the API has (a direct get's subject may add a few more).
    let tokens: smallvec::SmallVec<[&str; 16]> = call.split('.').collect();
    let answer = match tokens.as_slice() {
        ["INFO"] => account_info(store),
        ["STREAM", "CREATE", name] => stream_create(api, name, body),
        ["STREAM", "UPDATE", name] => stream_update(store, name, body),
        ["STREAM", "INFO", name] => stream_info(api, name, body),
        ["STREAM", "MSG", "DELETE", name] => respond(
            "stream_msg_delete",
            requests::parse_request::<MsgDeleteRequest>(body)
                .and_then(|req| Ok(store.delete_message(name, req.seq, !req.no_erase)?))
                .map(|()| Success { success: true }),
        ),
        ["DIRECT", "GET", name, subject @ ..] => {
            direct_get(api, name, subject, body, reply);
            return;
        }
        ["STREAM", "DELETE", name] => respond(
            "stream_delete",
            requests::expect_empty(body)
                .and_then(|()| Ok(store.delete(name)?))
                .map(|()| Success { success: true }),
        ),
        ["STREAM", "PURGE", name] => respond(
            "stream_purge",
            requests::parse_request::<PurgeRequest>(body)
                .and_then(|req| Ok(store.purge(name, &req.to_typed())?))
                .map(|purged| Purged {
                    success: true,
                    purged,
                }),
        ),
        ["STREAM", "NAMES"] => stream_names(store, body),
        ["STREAM", "LIST"] => stream_list(api, body),
        ["STREAM", "MSG", "GET", name] => msg_get(store, name, body),
        ["CONSUMER", "CREATE", stream] => consumer_create(api, stream, None, None, body),
        ["CONSUMER", "CREATE", stream, name] => {
            consumer_create(api, stream, Some(name), None, body)
        }
        ["CONSUMER", "CREATE", stream, name, filter @ ..] => {
            consumer_create(api, stream, Some(name), Some(filter.join(".")), body)
        }
        ["CONSUMER", "DURABLE", "CREATE", stream, name] => durable_create(api, stream, name, body),
        ["CONSUMER", "INFO", stream, name] => respond(
            "consumer_info",
            requests::expect_empty(body)
                .and_then(|()| Ok(store.consumer_info(stream, name)?))
                .map(|info| ConsumerInfo::from_typed(&info)),
        ),
        ["CONSUMER", "DELETE", stream, name] => respond(
            "consumer_delete",
            requests::expect_empty(body)
                .and_then(|()| Ok(store.delete_consumer(stream, name)?))
                .map(|()| Success { success: true }),
        ),
        ["CONSUMER", "NAMES", stream] => consumer_names(store, stream, body),
        ["CONSUMER", "LIST", stream] => consumer_list(store, stream, body),
        ["CONSUMER", "MSG", "NEXT", stream, name] => {
            match parse_pull(body) {
                Ok(req) => delivery::pull(store, &api.scope, stream, name, &req, reply),
                Err(err) => delivery::send_status(
                    &api.scope,
                    reply,
                    &format!("400 Bad Request - {}\r\n", err.description),
                ),
            }
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

/// A call that changes a stream's messages (made through its group when it is replicated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    /// STREAM.PURGE
    Purge,
    /// STREAM.MSG.DELETE
    Delete,
}

/// The reply to a change made through a replicated stream's group: as [`handle_call`]
/// answers it on one server.
pub(crate) fn change_response(kind: ChangeKind, made: Result<u64, ApiError>) -> Vec<u8> {
    match kind {
        ChangeKind::Purge => respond(
            "stream_purge",
            made.map(|purged| Purged {
                success: true,
                purged,
            }),
        ),
        ChangeKind::Delete => respond("stream_msg_delete", made.map(|_| Success { success: true })),
    }
}

fn respond<T: Serialize>(kind: &str, result: Result<T, ApiError>) -> Vec<u8> {
    match result {
        Ok(body) => requests::response(kind, &body),
        Err(err) => error(kind, &err),
    }
}

fn error(kind: &str, err: &ApiError) -> Vec<u8> {
    requests::error_response(kind, err)
}

fn account_info(store: &Streams) -> Vec<u8> {
    let streams = store.list();
    let storage: u64 = streams.iter().map(|s| s.state.bytes).sum();
    let consumers: usize = streams.iter().map(|s| s.state.consumers).sum();
    let body = serde_json::json!({
        "memory": 0, "storage": storage, "reserved_memory": 0, "reserved_storage": 0,
        "streams": streams.len(), "consumers": consumers,
        "limits": {"max_memory": -1, "max_storage": -1, "max_streams": -1, "max_consumers": -1,
                   "max_ack_pending": -1, "memory_max_stream_bytes": -1,
                   "storage_max_stream_bytes": -1, "max_bytes_required": false},
        "api": {"level": 0, "total": 0, "errors": 0},
    });
    requests::response("account_info", &body)
}

/// A request's stream config, typed; its name must be `name`.
pub(crate) fn stream_config(
    name: &str,
    body: &[u8],
) -> Result<crate::streams::StreamConfig, ApiError> {
    let config: StreamConfig = requests::decode(body)?;
    if config.name != name {
        return Err(ApiError::stream_name_mismatch());
    }
    config.to_typed()
}

fn stream_create(api: &Api, name: &str, body: &[u8]) -> Vec<u8> {
    let created = stream_config(name, body).and_then(|c| {
        if c.replicas > 1 && api.view.get().is_some() {
            // A replicated stream's leader: its replicas were made from the definition.
            let held = api.streams.info(name)?;
            let asked = c.normalize_replicated()?;
            return match held.config == asked {
                true => Ok((held, false)),
                false => Err(crate::streams::Error::stream_exists().into()),
            };
        }
        Ok(api.streams.create_reporting(c)?)
    });
    respond(
        "stream_create",
        // Left out when the stream existed already, as nats-server's `omitempty` does.
        created.map(|(info, made)| StreamInfo {
            cluster: api.cluster_of(name),
            ..StreamInfo::from_typed(&info, made.then_some(true))
        }),
    )
}

fn stream_update(store: &Streams, name: &str, body: &[u8]) -> Vec<u8> {
    let updated = stream_config(name, body).and_then(|c| Ok(store.update(c)?));
    respond(
        "stream_update",
        updated.map(|info| StreamInfo::from_typed(&info, None)),
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

fn stream_names(store: &Streams, body: &[u8]) -> Vec<u8> {
    let result = requests::parse_request::<PagingRequest>(body).map(|req| {
        let names: Vec<String> = store
            .list()
            .into_iter()
            .filter(|s| match &req.subject {
                Some(subject) if !subject.is_empty() => s
                    .config
                    .subjects
                    .iter()
                    .any(|p| crate::subject::overlaps(p, subject)),
                _ => true,
            })
            .map(|s| s.config.name)
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

fn stream_list(api: &Api, body: &[u8]) -> Vec<u8> {
    let result = requests::parse_request::<PagingRequest>(body).map(|req| {
        let mut streams = api.streams.list();
        streams.retain(|s| api.reports(&s.config.name));
        let infos: Vec<_> = streams
            .iter()
            .skip(req.offset)
            .take(LIST_PAGE)
            .map(|s| StreamInfo {
                cluster: api.cluster_of(&s.config.name),
                ..StreamInfo::from_typed(s, None)
            })
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

/// `STREAM.INFO`, with each matching subject's count when `subjects_filter` is given.
fn stream_info(api: &Api, name: &str, body: &[u8]) -> Vec<u8> {
    let store = &api.streams;
    let result = (|| {
        let req: StreamInfoRequest = requests::parse_request(body)?;
        let info = store.info(name)?;
        let info = StreamInfo {
            cluster: api.cluster_of(name),
            ..StreamInfo::from_typed(&info, None)
        };
        let mut value =
            serde_json::to_value(info).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if let Some(filter) = &req.subjects_filter {
            let counts = store.subjects(name, filter)?;
            value["state"]["num_subjects"] = counts.len().into();
            let page: serde_json::Map<String, serde_json::Value> = counts
                .into_iter()
                .skip(req.offset)
                .map(|(subject, n)| (subject, n.into()))
                .collect();
            value["state"]["subjects"] = page.into();
        }
        Ok(value)
    })();
    respond("stream_info", result)
}

/// `DIRECT.GET.<stream>[.<subject>]`: the message itself as the reply, its place in
/// `Nats-Stream`, `Nats-Subject`, `Nats-Sequence` and `Nats-Time-Stamp` headers, or a status
/// (`404 Message Not Found`, `408 Bad Request`). A stream without `allow_direct` (or none)
/// answers as nobody would: `503`.
fn direct_get(api: &Api, name: &str, subject: &[&str], body: &[u8], reply: &str) {
    let store = &api.streams;
    let status = |text: &str| delivery::send_status(&api.scope, reply, &format!("{text}\r\n"));
    if !store.allows_direct(name) {
        return status("503");
    }
    let req = if subject.is_empty() {
        if body.trim_ascii().is_empty() {
            return status("408 Empty Request");
        }
        match serde_json::from_slice::<DirectGetRequest>(body) {
            Ok(req) => req,
            Err(_) => return status("408 Bad Request"),
        }
    } else {
        if !body.trim_ascii().is_empty() {
            return status("408 Bad Request");
        }
        DirectGetRequest {
            last_by_subj: Some(subject.join(".")),
            ..DirectGetRequest::default()
        }
    };
    if let Some(batch) = req.batch {
        return direct_batch(api, name, &req, batch.max(1), reply);
    }
    let which = match (req.seq, req.last_by_subj, req.next_by_subj) {
        (Some(seq), None, None) => Get::Seq(seq),
        (None, Some(subject), None) => Get::LastBySubject(subject),
        (seq, None, Some(subject)) => Get::NextBySubject {
            from: seq.unwrap_or(0),
            subject,
        },
        _ => return status("408 Bad Request"),
    };
    match store.get(name, &which) {
        Ok(m) => send_direct(api, name, &m, reply, None),
        Err(err) if err.kind() == crate::streams::ErrorKind::NotFound => {
            status("404 Message Not Found")
        }
        Err(_) => status("408 Bad Request"),
    }
}

/// A batched direct get: up to `batch` messages from `seq` on, each with how many are left,
/// then `204 EOB`.
fn direct_batch(api: &Api, name: &str, req: &DirectGetRequest, batch: usize, reply: &str) {
    let store = &api.streams;
    let filter = req.next_by_subj.clone().unwrap_or_else(|| ">".to_owned());
    let mut from = req.seq.unwrap_or(1).max(1);
    let mut sent = 0;
    let mut last = 0;
    while sent < batch {
        let which = Get::NextBySubject {
            from,
            subject: filter.clone(),
        };
        let Ok(m) = store.get(name, &which) else {
            break;
        };
        let left = store.count_from(name, &filter, m.seq + 1).unwrap_or(0);
        send_direct(api, name, &m, reply, Some((left, last)));
        last = m.seq;
        from = m.seq + 1;
        sent += 1;
    }
    if sent == 0 {
        return delivery::send_status(&api.scope, reply, "404 Message Not Found\r\n");
    }
    let left = store.count_from(name, &filter, from).unwrap_or(0);
    delivery::send_status(
        &api.scope,
        reply,
        &format!("204 EOB\r\nNats-Num-Pending: {left}\r\nNats-Last-Sequence: {last}\r\n"),
    );
}

/// Sends one stored message as a direct get answers it.
fn send_direct(
    api: &Api,
    stream: &str,
    m: &crate::streams::StoredMessage,
    reply: &str,
    batch: Option<(u64, u64)>,
) {
    use std::fmt::Write as _;
    // Room for the fields below (their names and a timestamp take about 130 bytes).
    let own_len = m.message.header_block().map_or(0, <[u8]>::len);
    let room = 192 + own_len + stream.len() + m.message.subject().len();
    let mut block = String::with_capacity(room);
    block.push_str("NATS/1.0\r\n");
    if let Some(own) = m.message.header_block() {
        // The stored message's own fields, after its version line.
        let text = String::from_utf8_lossy(own);
        for line in text.split("\r\n").skip(1).filter(|l| !l.is_empty()) {
            block.push_str(line);
            block.push_str("\r\n");
        }
    }
    let _ = write!(
        block,
        "Nats-Stream: {stream}\r\nNats-Subject: {}\r\nNats-Sequence: {}\r\nNats-Time-Stamp: ",
        m.message.subject(),
        m.seq,
    );
    crate::time::push_rfc3339(&mut block, m.time);
    block.push_str("\r\n");
    if let Some((left, last)) = batch {
        let _ = write!(
            block,
            "Nats-Num-Pending: {left}\r\nNats-Last-Sequence: {last}\r\n"
        );
    }
    block.push_str("\r\n");
    let block = bytes::Bytes::from(block);
    api.scope.send_as(
        reply,
        reply,
        None,
        Some(&block),
        m.message.payload(),
        crate::dispatch::Reach::All,
    );
}

fn msg_get(store: &Streams, name: &str, body: &[u8]) -> Vec<u8> {
    let result = (|| {
        let req: MsgGetRequest = requests::parse_request(body)?;
        let which = match (req.seq, req.last_by_subj, req.next_by_subj) {
            (Some(seq), None, None) => Get::Seq(seq),
            (_, Some(subject), None) => Get::LastBySubject(subject),
            (seq, None, Some(subject)) => Get::NextBySubject {
                from: seq.unwrap_or(0),
                subject,
            },
            (None, None, None) => return Err(ApiError::bad_request("empty request")),
            _ => return Err(ApiError::from(crate::streams::Error::no_message())),
        };
        let m = store.get(name, &which)?;
        use base64::Engine as _;
        let b64 = &base64::engine::general_purpose::STANDARD;
        let mut message = serde_json::json!({
            "subject": m.message.subject(), "seq": m.seq, "time": rfc3339(Some(m.time)),
        });
        if let Some(headers) = m.message.header_block() {
            message["hdrs"] = b64.encode(headers).into();
        }
        if !m.message.payload().is_empty() {
            message["data"] = b64.encode(m.message.payload()).into();
        }
        Ok(serde_json::json!({ "message": message }))
    })();
    respond("stream_msg_get", result)
}

fn consumer_create(
    api: &Api,
    stream: &str,
    name: Option<&str>,
    filter: Option<String>,
    body: &[u8],
) -> Vec<u8> {
    let store = &api.streams;
    let result = (|| {
        let req: CreateConsumerRequest = requests::parse_request(body)?;
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
            "" => CreateAction::CreateOrUpdate,
            "create" => CreateAction::Create,
            "update" => CreateAction::Update,
            other => return Err(ApiError::bad_request(format!("unknown action {other:?}"))),
        };
        // One filter sent as a list comes back as a list, as nats-server echoes it (nats.go
        // takes a missing `filter_subjects` for a server without multiple filters).
        let sent_list = config.filter_subject.is_none() && config.filter_subjects.len() == 1;
        let info = store.create_consumer_as(stream, config.to_typed()?, action)?;
        // A push consumer starts delivering (or takes its new settings) now.
        api.flows
            .install(store, &api.scope, stream, &info.name, &info.config);
        let mut echo = ConsumerInfo::from_typed(&info);
        if sent_list && let Some(filter) = echo.config.filter_subject.take() {
            echo.config.filter_subjects = vec![filter];
        }
        Ok(echo)
    })();
    respond("consumer_create", result)
}

fn durable_create(api: &Api, stream: &str, name: &str, body: &[u8]) -> Vec<u8> {
    let result = (|| {
        let req: CreateConsumerRequest = requests::parse_request(body)?;
        match req.config.durable_name.as_deref() {
            None | Some("") => Err(ApiError::durable_required()),
            Some(d) if d != name => Err(ApiError::durable_name_mismatch()),
            Some(_) => Ok(()),
        }
    })();
    match result {
        Ok(()) => consumer_create(api, stream, Some(name), None, body),
        Err(err) => error("consumer_create", &err),
    }
}

fn consumer_names(store: &Streams, stream: &str, body: &[u8]) -> Vec<u8> {
    let result = requests::parse_request::<PagingRequest>(body).and_then(|req| {
        let names: Vec<String> = store
            .consumers(stream)?
            .into_iter()
            .map(|c| c.name)
            .collect();
        Ok(Page {
            total: names.len(),
            offset: req.offset,
            limit: NAMES_PAGE,
            items: serde_json::json!({ "consumers": page(&names, req.offset, NAMES_PAGE) }),
        })
    });
    respond("consumer_names", result)
}

fn consumer_list(store: &Streams, stream: &str, body: &[u8]) -> Vec<u8> {
    let result = requests::parse_request::<PagingRequest>(body).and_then(|req| {
        let consumers = store.consumers(stream)?;
        let infos: Vec<_> = consumers
            .iter()
            .skip(req.offset)
            .take(LIST_PAGE)
            .map(ConsumerInfo::from_typed)
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
