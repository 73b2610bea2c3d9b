//! `GET /v1/streams/{stream}/consume`: a stream's messages as Server-Sent Events, through a
//! durable consumer (`consumer=C`, made on first use) or an ephemeral one made for the
//! connection and named in the first event.
//!
//! Resuming: a reconnecting `EventSource` sends the last id it saw (`Last-Event-ID`, or
//! `?last_event_id=` for polyfills); ids are stream sequences. An ephemeral consumer starts
//! right after it; a durable one continues from its own acknowledged state. When a connection
//! ends, every message it was handed and that is not acknowledged by then goes back to the
//! consumer for redelivery at once (negatively acknowledged), whether or not the client saw
//! it: the next connection gets them first, not after their ack wait. Acks are by sequence
//! and outlive connections, so a message acked late is simply not redelivered. When the resume point is older than the first message the stream still
//! keeps, an `event: gap` says so in the stream itself (`{"requested", "first"}`) and the
//! stream continues from the first kept message.
//!
//! The consumer delivers into a bounded window (`Messages`, at most one batch buffered),
//! and the next events are taken only when hyper has written the last ones: a client that
//! reads slowly slows its own consumer, and one that never reads holds one batch.

use std::collections::VecDeque;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use bytes::Bytes;
use herald::streams::{
    AckKind, AckPolicy, ConsumerConfig, DeliverPolicy, ErrorKind, Messages, StreamMessage, Streams,
};

use super::envelope::{self, Parts};
use super::error::ApiError;
use super::sse::{KEEP_ALIVE, event_stream};
use super::{AppState, ScopeRouter, duration, query_value};

/// Messages one pull of an event stream asks for: the most buffered for one client.
const BATCH: usize = 256;

/// Encoded events handed to hyper at once, at most (more wait for the next poll).
const CHUNK: usize = 64 * 1024;

/// Sequences an event stream remembers handing out, to give back when it ends: the default
/// window of unacknowledged messages (`max_ack_pending`) is smaller.
const HANDED: usize = 4096;

/// `GET /v1/streams/{stream}/consume?consumer=C&start=..&ack=..&ack_wait=..&max_deliver=..&filter=..`
pub(crate) async fn consume(
    State(app): AppState,
    ScopeRouter(_, scope): ScopeRouter,
    Path(stream): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let streams = app.streams_in(&scope)?.clone();
    let query = uri.query();
    let resume = match headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query_value(query, "last_event_id"))
    {
        None => None,
        Some(id) if id.trim().is_empty() => None,
        Some(id) => Some(id.trim().parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "Last-Event-ID must be a stream sequence, not {id:?}"
            ))
        })?),
    };
    let state = streams.info(&stream)?.state;
    // A resume point before the first kept message: say so, continue from the first kept.
    let gap = resume
        .filter(|&id| state.first_seq > 0 && id.saturating_add(1) < state.first_seq)
        .map(|id| (id, state.first_seq));
    let (name, ephemeral) = match query_value(query, "consumer") {
        Some(name) => {
            match streams.consumer_info(&stream, &name) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    let mut config = options(query, resume)?;
                    config.name = Some(name.clone());
                    config.durable = true;
                    streams.create_consumer(&stream, config)?;
                }
                Err(e) => return Err(e.into()),
            }
            (name, false)
        }
        None => {
            let config = ConsumerConfig {
                durable: false,
                ..options(query, resume)?
            };
            (streams.create_consumer(&stream, config)?.name, true)
        }
    };
    let messages = streams.messages(&stream, &name, BATCH)?;
    let mut opening = b": open\n\nevent: consumer\ndata: ".to_vec();
    opening.extend_from_slice(
        serde_json::json!({ "consumer": name })
            .to_string()
            .as_bytes(),
    );
    opening.extend_from_slice(b"\n\n");
    if let Some((requested, first)) = gap {
        opening.extend_from_slice(b"event: gap\ndata: ");
        let gap = serde_json::json!({ "requested": requested, "first": first });
        opening.extend_from_slice(gap.to_string().as_bytes());
        opening.extend_from_slice(b"\n\n");
    }
    let reader = Reader {
        streams,
        stream,
        messages,
        ephemeral,
        handed: VecDeque::new(),
        shutdown: app.shared.shutdown.clone(),
        _open: super::sse::open_stream(&app.shared.stats),
    };
    let opening =
        futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(opening)) });
    let events = futures::stream::unfold(reader, |mut reader| async move {
        let chunk = reader.next_chunk().await?;
        Some((Ok::<_, std::io::Error>(chunk), reader))
    });
    use futures::StreamExt;
    Ok(event_stream(Body::from_stream(opening.chain(events))))
}

/// The consumer's settings from the query: `start`, `ack`, `ack_wait`, `max_deliver`,
/// `filter`; a resume point overrides `start`.
fn options(query: Option<&str>, resume: Option<u64>) -> Result<ConsumerConfig, ApiError> {
    let start = query_value(query, "start");
    let deliver = match (resume, start.as_deref()) {
        (Some(id), _) => DeliverPolicy::ByStartSequence(id.saturating_add(1)),
        (None, None | Some("all")) => DeliverPolicy::All,
        (None, Some("new")) => DeliverPolicy::New,
        (None, Some("last")) => DeliverPolicy::Last,
        (None, Some(other)) => match other.parse::<u64>() {
            Ok(seq) => DeliverPolicy::ByStartSequence(seq.max(1)),
            Err(_) => DeliverPolicy::ByStartTime(herald::time::parse_rfc3339(other).ok_or_else(
                || {
                    ApiError::bad_request(format!(
                        "start must be all, new, last, a sequence or an RFC 3339 time, not {other:?}"
                    ))
                },
            )?),
        },
    };
    let ack_policy = match query_value(query, "ack").as_deref() {
        None | Some("explicit") => AckPolicy::Explicit,
        Some("none") => AckPolicy::None,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "ack must be explicit or none, not {other:?}"
            )));
        }
    };
    let ack_wait = match query_value(query, "ack_wait") {
        Some(text) => Some(duration(Some(&text), "ack_wait", Duration::ZERO)?),
        None => None,
    };
    let max_deliver = match query_value(query, "max_deliver") {
        Some(n) => Some(
            n.parse::<std::num::NonZeroU64>()
                .map_err(|_| ApiError::bad_request(format!("max_deliver: not a count: {n:?}")))?,
        ),
        None => None,
    };
    let filter_subjects = query_value(query, "filter").into_iter().collect();
    Ok(ConsumerConfig {
        deliver,
        ack_policy,
        ack_wait,
        max_deliver,
        filter_subjects,
        ..ConsumerConfig::default()
    })
}

/// One client's reading of a consumer.
struct Reader {
    streams: Streams,
    stream: String,
    messages: Messages,
    ephemeral: bool,
    /// Sequences handed to this connection, newest last (at most [`HANDED`]): naked when it
    /// ends, which is a no-op for those acknowledged by then.
    handed: VecDeque<u64>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// Counted in the server's open event streams meanwhile.
    _open: crate::stats::Held,
}

impl Reader {
    /// The next events to send: what is there now (up to a chunk), else the first to come,
    /// else a keep-alive comment after a quiet while; `None` ends the stream.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        let first = tokio::select! {
            next = tokio::time::timeout(KEEP_ALIVE, self.messages.next()) => match next {
                Ok(Ok(msg)) => msg,
                Ok(Err(err)) => {
                    tracing::debug!(%err, "event stream of a consumer ends");
                    return None;
                }
                Err(_) => return Some(Bytes::from_static(b": keep-alive\n\n")),
            },
            _ = self.shutdown.wait_for(|stop| *stop) => return None,
        };
        let mut out = Vec::with_capacity(1024);
        let consumer = self.messages.consumer().to_owned();
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            event(&mut out, &self.stream, &consumer, &msg);
            if self.handed.len() == HANDED {
                self.handed.pop_front();
            }
            self.handed.push_back(msg.seq());
            if out.len() < CHUNK {
                next = self.messages.try_next();
            }
        }
        Some(Bytes::from(out))
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // Its request first, so that what is given back goes to another reader.
        self.messages.close();
        if !self.ephemeral {
            for seq in self.handed.drain(..) {
                let nak = AckKind::Nak(None);
                if let Err(err) = self
                    .streams
                    .ack(&self.stream, self.messages.consumer(), nak, seq)
                {
                    tracing::debug!(%err, "cannot give back a message of a closed event stream");
                    break;
                }
            }
        }
        if self.ephemeral
            && let Err(err) = self
                .streams
                .delete_consumer(&self.stream, self.messages.consumer())
        {
            tracing::debug!(%err, "cannot delete an event stream's ephemeral consumer");
        }
    }
}

/// `event: message`, `id: <stream seq>`, and the envelope with the stream fields.
fn event(out: &mut Vec<u8>, stream: &str, consumer: &str, msg: &StreamMessage) {
    out.extend_from_slice(b"event: message\nid: ");
    envelope::number(out, msg.seq());
    out.extend_from_slice(b"\ndata: ");
    envelope::open(
        out,
        &Parts {
            subject: msg.subject(),
            reply: None,
            headers: msg.message().header_block(),
            payload: msg.payload(),
        },
    );
    envelope::field(out, "stream", stream);
    envelope::field(out, "seq", msg.seq());
    envelope::field(out, "time", herald::time::rfc3339(msg.time()));
    envelope::field(out, "consumer", consumer);
    envelope::field(out, "delivered", msg.delivered());
    envelope::close(out);
    out.extend_from_slice(b"\n\n");
}
