//! Server-Sent Events to one HTTP client: a [`Target`] in the scope's index like any NATS
//! connection, and the response body that drains it.
//!
//! The publisher's thread encodes each matched message as an event straight into the client's
//! buffer under a short lock; appending to an empty buffer wakes the body, which hands the
//! whole buffer to hyper as one chunk. The buffer is bounded in bytes (`sse_max_pending`): a
//! client that does not read keeps hyper from taking chunks, its buffer fills, and past the
//! bound the client is dropped and counted as a slow consumer, so it never grows the server.
//! A comment every 15 s keeps idle proxies and load balancers from cutting the stream.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use herald::{Delivery, Router, Target, TargetSubscription};
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::envelope::{self, Parts};
use crate::stats::Stats;

/// How often an idle event stream gets a comment.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Why an event stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Its buffer passed `sse_max_pending`.
    SlowConsumer,
    /// Its subscription went away (the node shut down).
    Detached,
}

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    /// The last event id given (a per-connection counter).
    last_id: u64,
    end: Option<End>,
}

/// One SSE client's side of the index.
pub(crate) struct Client {
    state: Mutex<State>,
    /// Its subscription, taken out of the index by whichever comes first: the client leaving
    /// (the body dropped) or its buffer overflowing.
    subscription: Mutex<Option<(Router, TargetSubscription)>>,
    /// Where an overflow, detected on a publisher's thread, sends the unsubscription.
    runtime: tokio::runtime::Handle,
    /// Denied subjects the pattern overlaps (the user's permissions): never delivered.
    denied: Vec<String>,
    ready: Notify,
    max_pending: usize,
    stats: Arc<Stats>,
}

impl Client {
    pub(crate) fn new(max_pending: usize, stats: Arc<Stats>, denied: Vec<String>) -> Arc<Client> {
        Arc::new(Client {
            state: Mutex::new(State::default()),
            subscription: Mutex::new(None),
            runtime: tokio::runtime::Handle::current(),
            denied,
            ready: Notify::new(),
            max_pending,
            stats,
        })
    }

    /// Appends an event built by `write` (given the buffer and the event's id); drops the
    /// client when that passes the bound. False once the client has ended.
    pub(crate) fn push(&self, write: impl FnOnce(&mut Vec<u8>, u64)) -> bool {
        let mut state = self.state.lock();
        if state.end.is_some() {
            return false;
        }
        let was_empty = state.buf.is_empty();
        // Counted here, under the lock already held; added to the server's totals when the
        // client goes.
        state.last_id += 1;
        let id = state.last_id;
        write(&mut state.buf, id);
        if state.buf.len() > self.max_pending {
            state.buf = Vec::new();
            state.end = Some(End::SlowConsumer);
            drop(state);
            self.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("SSE client past sse_max_pending: dropped as a slow consumer");
            self.ready.notify_one();
            // Not from here: this runs inside the router's fan-out.
            if let Some((router, sub)) = self.subscription.lock().take() {
                self.runtime.spawn(async move {
                    router.unsubscribe_target(&sub);
                });
            }
            return true;
        }
        drop(state);
        if was_empty {
            self.ready.notify_one();
        }
        true
    }

    fn end(&self, end: End) {
        let mut state = self.state.lock();
        if state.end.is_none() {
            state.end = Some(end);
        }
        drop(state);
        self.ready.notify_one();
    }

    /// What to send next: everything buffered, or `None` once the stream is over.
    async fn next(&self) -> Option<Bytes> {
        loop {
            {
                let mut state = self.state.lock();
                if !state.buf.is_empty() {
                    let taken = std::mem::take(&mut state.buf);
                    self.stats
                        .bytes_out
                        .fetch_add(taken.len() as u64, Ordering::Relaxed);
                    return Some(Bytes::from(taken));
                }
                if state.end.is_some() {
                    return None;
                }
            }
            match tokio::time::timeout(KEEP_ALIVE, self.ready.notified()).await {
                Ok(()) => continue,
                Err(_) => return Some(Bytes::from_static(b": keep-alive\n\n")),
            }
        }
    }
}

/// An event for a published message: `event: message`, `id: <n>`, `data: <envelope>`.
fn message_event(out: &mut Vec<u8>, id: u64, envelope: &[u8]) {
    out.extend_from_slice(b"event: message\nid: ");
    envelope::number(out, id);
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(envelope);
    out.extend_from_slice(b"\n\n");
}

thread_local! {
    /// The envelope of the message this thread delivered last, with the message itself (held,
    /// so that no later message can be the same allocation): a publish that reaches a thousand
    /// event streams is encoded once, not a thousand times.
    static LAST: std::cell::RefCell<Option<(herald::Message, Vec<u8>)>> =
        const { std::cell::RefCell::new(None) };
}

/// `f` with the JSON envelope of `msg`, encoded once per published message and thread.
fn with_envelope<R>(msg: &Delivery<'_>, f: impl FnOnce(&[u8]) -> R) -> R {
    let message = msg.message();
    LAST.with_borrow_mut(|last| {
        if !matches!(last, Some((held, _)) if held.ptr_eq(&message)) {
            let mut encoded = Vec::with_capacity(64 + msg.payload().len());
            envelope::open(
                &mut encoded,
                &Parts {
                    subject: msg.subject(),
                    reply: msg.reply(),
                    headers: msg.header_block(),
                    payload: msg.payload(),
                },
            );
            envelope::close(&mut encoded);
            *last = Some((message, encoded));
        }
        let (_, encoded) = last.as_ref().expect("just filled");
        f(encoded)
    })
}

impl Drop for Client {
    fn drop(&mut self) {
        let sent = self.state.get_mut().last_id;
        self.stats.msgs_out.fetch_add(sent, Ordering::Relaxed);
    }
}

impl Target for Client {
    fn deliver(&self, _sid: u64, msg: &Delivery<'_>) -> bool {
        if self
            .denied
            .iter()
            .any(|d| herald::subject::matches(d, msg.subject()))
        {
            return true;
        }
        with_envelope(msg, |envelope| {
            self.push(|out, id| message_event(out, id, envelope))
        })
    }

    fn detach(&self, _sid: u64) {
        self.end(End::Detached);
    }
}

/// Takes the subscription out of the index when the response body goes (the client left).
struct Subscribed {
    shutdown: tokio::sync::watch::Receiver<bool>,
    client: Arc<Client>,
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        if let Some((router, sub)) = self.client.subscription.lock().take() {
            router.unsubscribe_target(&sub);
        }
        self.client.end(End::Detached);
    }
}

/// The `text/event-stream` response for `client`, subscribed through `router` as `sub`,
/// until the client leaves or `shutdown` is raised. A comment opens it, so that the client
/// sees the stream open at once.
pub(crate) fn response(
    shutdown: tokio::sync::watch::Receiver<bool>,
    router: Router,
    sub: TargetSubscription,
    client: Arc<Client>,
) -> Response {
    *client.subscription.lock() = Some((router, sub));
    let subscribed = Subscribed { shutdown, client };
    let opening =
        futures::stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b": open\n\n")) });
    let events = futures::stream::unfold(subscribed, |mut subscribed| async move {
        let chunk = tokio::select! {
            chunk = subscribed.client.next() => chunk?,
            _ = subscribed.shutdown.wait_for(|stop| *stop) => return None,
        };
        Some((Ok::<_, std::io::Error>(chunk), subscribed))
    });
    use futures::StreamExt;
    let body = Body::from_stream(opening.chain(events));
    event_stream(body)
}

/// Wraps an event-stream body with the headers browsers and proxies need.
pub(crate) fn event_stream(body: Body) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// `GET /v1/subscribe/{pattern}?queue=Q`: every message matching `pattern` in the scope, as
/// events. The subscription is in the index before the response headers leave.
pub(crate) async fn subscribe(
    axum::extract::State(app): super::AppState,
    super::ScopeRouter(router, _): super::ScopeRouter,
    perms: super::auth::Perms,
    axum::extract::Path(pattern): axum::extract::Path<String>,
    uri: axum::http::Uri,
) -> Result<Response, super::error::ApiError> {
    let queue = super::query_value(uri.query(), "queue");
    herald::subject::check(&pattern)?;
    let denied = perms.subscribe(&pattern, queue.as_deref())?;
    let client = Client::new(
        app.shared.config.sse_max_pending,
        app.shared.stats.clone(),
        denied,
    );
    let sub = router.subscribe_target(&pattern, queue.as_deref(), 0, client.clone())?;
    Ok(response(app.shared.shutdown.clone(), router, sub, client))
}
