//! Server-Sent Events to one HTTP client: a [`Target`] in the scope's index like any NATS
//! connection, and the response body that drains it.
//!
//! The publisher's thread encodes each matched message as an event straight into the client's
//! buffer under a short lock; appending to an empty buffer wakes the body, which hands
//! everything buffered to the connection's writer as one chunk (split off the buffer: no
//! copy, and the same allocation is reused once the chunk is written). The buffer is bounded
//! in bytes (`sse_max_pending`): a client that does not read keeps the writer from taking
//! chunks, its buffer fills, and past the bound the client is dropped and counted as a slow
//! consumer, so it never grows the server. A comment keeps a stream with nothing to say for
//! 15 s from being cut by idle proxies and load balancers. Waiting costs no registration per
//! event: the body's waker, its shutdown watch and its keep-alive timer are each set up once
//! and re-armed only when they fire.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::task::AtomicWaker;
use herald::{Delivery, Router, Target, TargetSubscription};
use parking_lot::Mutex;
use tokio::time::{Instant, Sleep};

use super::envelope::{self, Parts};
use crate::stats::{Held, Stats};

/// How often an idle event stream gets a comment.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Room an empty buffer is given at its first event: several events' worth.
const ROOM: usize = 512;

/// A chunk larger than this (a burst) lets its allocation go once written, rather than
/// leave it with a client that may go idle.
const KEEP: usize = 64 * 1024;

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
    buf: BytesMut,
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
    /// The body's, woken when its buffer stops being empty or the client ends.
    ready: AtomicWaker,
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
            ready: AtomicWaker::new(),
            max_pending,
            stats,
        })
    }

    /// Appends an event built by `write` (given the buffer and the event's id); drops the
    /// client when that passes the bound. False once the client has ended.
    pub(crate) fn push(&self, write: impl FnOnce(&mut BytesMut, u64)) -> bool {
        let mut state = self.state.lock();
        if state.end.is_some() {
            return false;
        }
        let was_empty = state.buf.is_empty();
        if state.buf.capacity() == 0 {
            state.buf.reserve(ROOM);
        }
        // Counted here, under the lock already held; added to the server's totals when the
        // client goes.
        state.last_id += 1;
        let id = state.last_id;
        write(&mut state.buf, id);
        if state.buf.len() > self.max_pending {
            state.buf = BytesMut::new();
            state.end = Some(End::SlowConsumer);
            drop(state);
            self.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("SSE client past sse_max_pending: dropped as a slow consumer");
            self.ready.wake();
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
            self.ready.wake();
        }
        true
    }

    fn end(&self, end: End) {
        let mut state = self.state.lock();
        if state.end.is_none() {
            state.end = Some(end);
        }
        drop(state);
        self.ready.wake();
    }

    /// Everything buffered, as one chunk.
    fn take(&self) -> Take {
        let mut state = self.state.lock();
        if state.buf.is_empty() {
            return match state.end {
                Some(_) => Take::Ended,
                None => Take::Empty,
            };
        }
        let chunk = state.buf.split().freeze();
        if chunk.len() > KEEP {
            state.buf = BytesMut::new();
        }
        drop(state);
        self.stats
            .bytes_out
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        Take::Chunk(chunk)
    }
}

/// What [`Client::take`] found.
enum Take {
    Chunk(Bytes),
    Empty,
    Ended,
}

/// An event for a published message: `event: message`, `id: <n>`, `data: <envelope>`.
fn message_event(out: &mut BytesMut, id: u64, envelope: &[u8]) {
    out.extend_from_slice(b"event: message\nid: ");
    let _ = std::fmt::Write::write_fmt(out, format_args!("{id}"));
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

/// The body of one client's event stream: an opening comment, then whatever its buffer
/// holds each time it is polled, until the client ends (overflow, detached), the server shuts
/// down, or the body is dropped (the client left), which takes the subscription out of the
/// index.
struct Events {
    client: Arc<Client>,
    /// Counted in the server's open event streams meanwhile.
    _open: Held,
    opened: bool,
    shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
    keep_alive: Pin<Box<Sleep>>,
    /// When the stream last said something: the keep-alive comment is due 15 s after.
    last_sent: Instant,
}

impl futures::Stream for Events {
    type Item = std::io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if !this.opened {
            this.opened = true;
            return Poll::Ready(Some(Ok(Bytes::from_static(b": open\n\n"))));
        }
        if this.shutdown.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        // Registered before looking, so that an event pushed meanwhile wakes this poll's task.
        this.client.ready.register(cx.waker());
        match this.client.take() {
            Take::Chunk(chunk) => {
                this.last_sent = Instant::now();
                return Poll::Ready(Some(Ok(chunk)));
            }
            Take::Ended => return Poll::Ready(None),
            Take::Empty => {}
        }
        // The timer is re-armed only when it fires: not once per event.
        while this.keep_alive.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            let due = this.last_sent + KEEP_ALIVE;
            if due > now {
                this.keep_alive.as_mut().reset(due);
                continue;
            }
            this.last_sent = now;
            this.keep_alive.as_mut().reset(now + KEEP_ALIVE);
            return Poll::Ready(Some(Ok(Bytes::from_static(b": keep-alive\n\n"))));
        }
        Poll::Pending
    }
}

impl Drop for Events {
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
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    router: Router,
    sub: TargetSubscription,
    client: Arc<Client>,
) -> Response {
    *client.subscription.lock() = Some((router, sub));
    let now = Instant::now();
    let events = Events {
        _open: open_stream(&client.stats),
        client,
        opened: false,
        shutdown: Box::pin(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        }),
        keep_alive: Box::pin(tokio::time::sleep_until(now + KEEP_ALIVE)),
        last_sent: now,
    };
    event_stream(Body::from_stream(events))
}

/// Counts an event stream in the server's open ones for as long as the result is held.
pub(crate) fn open_stream(stats: &Arc<Stats>) -> Held {
    Held::new(stats.clone(), |s| &s.event_streams, None)
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

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    fn events(client: &Arc<Client>) -> Events {
        let now = Instant::now();
        Events {
            _open: open_stream(&client.stats),
            client: client.clone(),
            opened: false,
            shutdown: Box::pin(std::future::pending()),
            keep_alive: Box::pin(tokio::time::sleep_until(now + KEEP_ALIVE)),
            last_sent: now,
        }
    }

    async fn next(events: &mut Events) -> String {
        let chunk = events.next().await.expect("a chunk").expect("no error");
        String::from_utf8(chunk.to_vec()).expect("text")
    }

    fn push(client: &Client, text: &str) {
        assert!(client.push(|out, id| message_event(out, id, text.as_bytes())));
    }

    /// Time is the runtime's paused clock: it moves only when every task waits.
    #[tokio::test(start_paused = true)]
    async fn a_stream_says_something_at_least_every_15_seconds() {
        let client = Client::new(1 << 20, Arc::default(), Vec::new());
        let mut events = events(&client);
        let start = Instant::now();
        assert_eq!(next(&mut events).await, ": open\n\n");
        push(&client, "1");
        push(&client, "2");
        assert_eq!(
            next(&mut events).await,
            "event: message\nid: 1\ndata: 1\n\nevent: message\nid: 2\ndata: 2\n\n"
        );
        assert_eq!(next(&mut events).await, ": keep-alive\n\n");
        assert_eq!(start.elapsed(), KEEP_ALIVE);
        // An event 10 s into the next wait puts the comment off until 15 s after it.
        let pusher = client.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            push(&pusher, "3");
        });
        assert!(next(&mut events).await.contains("data: 3"));
        assert_eq!(start.elapsed(), KEEP_ALIVE + Duration::from_secs(10));
        assert_eq!(next(&mut events).await, ": keep-alive\n\n");
        assert_eq!(start.elapsed(), KEEP_ALIVE * 2 + Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn written_chunks_give_their_room_back() {
        let client = Client::new(1 << 20, Arc::default(), Vec::new());
        let mut events = events(&client);
        assert_eq!(next(&mut events).await, ": open\n\n");
        push(&client, "first");
        let first = events.next().await.expect("a chunk").expect("no error");
        let start = first.as_ptr() as usize;
        drop(first);
        // Fifty events, each written before the next: far more than the room of one
        // allocation, and every one of them in it.
        for _ in 0..50 {
            push(&client, "again");
            let chunk = events.next().await.expect("a chunk").expect("no error");
            let at = chunk.as_ptr() as usize;
            assert!(
                at >= start && at + chunk.len() <= start + ROOM,
                "a new allocation"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_past_its_bound_ends_as_a_slow_consumer() {
        let client = Client::new(300, Arc::default(), Vec::new());
        let mut events = events(&client);
        assert_eq!(next(&mut events).await, ": open\n\n");
        // The push past the bound is taken (and ends the client); later ones are refused.
        let taken = (0..10)
            .filter(|_| {
                client.push(|out, id| message_event(out, id, b"more than 300 bytes in all"))
            })
            .count();
        assert!(taken < 10, "the bound never passed");
        assert!(events.next().await.is_none(), "ended as a slow consumer");
        assert_eq!(client.stats.slow_consumers.load(Ordering::Relaxed), 1);
        assert!(!client.push(|out, _| out.extend_from_slice(b"late")));
    }
}
