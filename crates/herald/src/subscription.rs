//! Buffered subscriptions: a bounded buffer per subscription, its drop policy, and the ways to
//! read it (async, blocking, with timeout, as a `Stream`, or through a callback).
//!
//! Plain drop-oldest subscriptions of one pattern made through one router with one capacity
//! read a ring they share ([`crate::fanout`]), each at its own cursor; the others (drop-newest,
//! queue group members) have a mailbox of their own ([`crate::mailbox`]). Publishers write to
//! either from any thread and never wait: when a subscription is full, drop-oldest loses its
//! oldest message, drop-newest refuses the new one; either way the drop is counted. A reader
//! that finds nothing leaves a waker: a task's, or for blocking reads one that unparks the
//! reading thread.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::error::{RecvTimeoutError, TryRecvError};
use crate::fanout::{Reader, RingKey};
pub use crate::mailbox::DropPolicy;
use crate::mailbox::Mailbox;
use crate::message::Message;

/// Settings for [`Router::subscribe_with`](crate::Router::subscribe_with).
///
/// # Examples
/// ```
/// use herald::{DropPolicy, SubscribeOptions};
/// let opts = SubscribeOptions::new().capacity(10).drop_policy(DropPolicy::DropNewest).queue("workers");
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Default)]
pub struct SubscribeOptions {
    pub(crate) capacity: Option<usize>,
    pub(crate) policy: DropPolicy,
    pub(crate) queue: Option<String>,
    pub(crate) node_only: bool,
}

impl SubscribeOptions {
    /// The router's defaults: its capacity, drop-oldest, no queue group.
    pub fn new() -> Self {
        Self::default()
    }

    /// Buffer at most `capacity` undelivered messages (instead of the router's capacity).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// What to drop when the buffer is full.
    pub fn drop_policy(mut self, policy: DropPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Join queue group `queue`: each message goes to one member of the group.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Keep the subscription to this node: other nodes of the cluster are not told of it, so
    /// only publishes made on this node reach it (a node's own services, such as a server's
    /// information subject).
    pub fn node_only(mut self) -> Self {
        self.node_only = true;
        self
    }
}

/// Polls of an empty mailbox before a blocking receive parks its thread (half spinning, half
/// yielding the CPU).
const SPIN_ROUNDS: u32 = 64;

/// Wakes a thread parked in a blocking receive.
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// How a subscription takes itself out of its scope when cancelled (the scope implements it).
pub(crate) trait Unsubscribe: Send + Sync {
    /// Removes index entry `id` of `pattern`.
    fn unsubscribe(self: Arc<Self>, pattern: &str, id: u64);
    /// A reader leaves the ring of `key`; the last one out removes the ring.
    fn leave_ring(self: Arc<Self>, key: &RingKey, reader: &Reader);
}

/// Where a subscription reads its messages.
#[derive(Clone)]
pub(crate) enum Feed {
    /// A mailbox of its own.
    Own(Arc<Mailbox>),
    /// Its cursor in the ring it shares with the subscriptions of the same `key`.
    Ring {
        reader: Arc<Reader>,
        key: Arc<RingKey>,
    },
}

impl Feed {
    #[inline]
    fn pop(&self) -> Option<Message> {
        match self {
            Feed::Own(mailbox) => mailbox.pop(),
            Feed::Ring { reader, .. } => reader.pop(),
        }
    }

    /// Takes a unit of the task's tokio budget per message, as tokio's own channels do: a task
    /// reading a subscription that is never empty yields to its worker's other tasks now and
    /// then instead of holding the thread.
    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let polled = match self {
            Feed::Own(mailbox) => mailbox.poll_recv(cx),
            Feed::Ring { reader, .. } => reader.poll_recv(cx),
        };
        if polled.is_ready() {
            coop.made_progress();
        }
        polled
    }

    fn is_closed(&self) -> bool {
        match self {
            Feed::Own(mailbox) => mailbox.is_closed(),
            Feed::Ring { reader, .. } => reader.is_closed(),
        }
    }

    fn dropped(&self) -> u64 {
        match self {
            Feed::Own(mailbox) => mailbox.dropped(),
            Feed::Ring { reader, .. } => reader.dropped(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Feed::Own(mailbox) => mailbox.len(),
            Feed::Ring { reader, .. } => reader.len(),
        }
    }

    fn capacity(&self) -> usize {
        match self {
            Feed::Own(mailbox) => mailbox.capacity(),
            Feed::Ring { reader, .. } => reader.capacity(),
        }
    }

    /// Stops it and takes it out of its scope; idempotent.
    fn cancel(&self, scope: &Weak<dyn Unsubscribe>, pattern: &str, id: u64) {
        match self {
            Feed::Own(mailbox) => {
                if mailbox.close() {
                    if let Some(scope) = scope.upgrade() {
                        scope.unsubscribe(pattern, id);
                    }
                    mailbox.clear();
                }
            }
            Feed::Ring { reader, key } => {
                if reader.cancel() {
                    match scope.upgrade() {
                        Some(scope) => scope.leave_ring(key, reader),
                        None => drop(reader.leave()),
                    }
                }
            }
        }
    }
}

/// A buffered subscription to a pattern.
///
/// Read it with [`recv`](Subscription::recv) (async), [`try_recv`](Subscription::try_recv),
/// [`recv_blocking`](Subscription::recv_blocking), [`recv_timeout`](Subscription::recv_timeout),
/// or as a [`futures_core::Stream`]. It holds at most its capacity of undelivered messages and
/// counts what its drop policy discarded ([`dropped`](Subscription::dropped)).
///
/// On a tokio runtime, `recv` and the `Stream` take a unit of the task's cooperative budget
/// per message, as tokio's own channels do: a task draining a subscription that never runs
/// empty yields to the other tasks of its thread every 128 messages or so. A task that must
/// not yield can run under [`tokio::task::coop::unconstrained`].
///
/// Dropping it cancels it. Receiving ends (`None`, or `Closed`) once it is cancelled or its node
/// has been dropped; a subscription does not keep its node alive.
pub struct Subscription {
    feed: Feed,
    id: u64,
    pattern: Arc<str>,
    queue: Option<Arc<str>>,
    scope: Weak<dyn Unsubscribe>,
}

impl Subscription {
    pub(crate) fn new(
        feed: Feed,
        id: u64,
        pattern: Arc<str>,
        queue: Option<Arc<str>>,
        scope: Weak<dyn Unsubscribe>,
    ) -> Self {
        Subscription {
            feed,
            id,
            pattern,
            queue,
            scope,
        }
    }

    /// The next message; `None` once the subscription is cancelled or its node is gone.
    pub async fn recv(&mut self) -> Option<Message> {
        poll_fn(|cx| self.feed.poll_recv(cx)).await
    }

    /// The next buffered message, without waiting.
    #[inline]
    pub fn try_recv(&mut self) -> Result<Message, TryRecvError> {
        match self.feed.pop() {
            Some(msg) => Ok(msg),
            None if self.feed.is_closed() => Err(TryRecvError::Closed),
            None => Err(TryRecvError::Empty),
        }
    }

    /// The next message, parking this thread until one comes; `None` once closed.
    /// For code outside an async runtime; do not call it on a runtime thread.
    pub fn recv_blocking(&mut self) -> Option<Message> {
        self.recv_until(None).ok()
    }

    /// The next message, parking this thread for at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message, RecvTimeoutError> {
        self.recv_until(Some(Instant::now() + timeout))
    }

    fn recv_until(&mut self, deadline: Option<Instant>) -> Result<Message, RecvTimeoutError> {
        // Spin briefly before parking: a busy publisher then finds a reader that is awake, and
        // neither side pays a futex wake-up per message.
        for round in 0..SPIN_ROUNDS {
            if let Some(msg) = self.feed.pop() {
                return Ok(msg);
            }
            if round < SPIN_ROUNDS / 2 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            match self.feed.poll_recv(&mut cx) {
                Poll::Ready(Some(msg)) => return Ok(msg),
                Poll::Ready(None) => return Err(RecvTimeoutError::Closed),
                Poll::Pending => match deadline {
                    None => std::thread::park(),
                    Some(deadline) => {
                        let now = Instant::now();
                        if now >= deadline {
                            return Err(RecvTimeoutError::Timeout);
                        }
                        std::thread::park_timeout(deadline - now);
                    }
                },
            }
        }
    }

    /// Stops the subscription: it leaves the index at once, buffered messages are discarded,
    /// and receiving returns `None`. Idempotent; dropping the subscription does the same.
    pub fn cancel(&self) {
        self.feed.cancel(&self.scope, &self.pattern, self.id);
    }

    /// True once cancelled (or closed because the node is gone).
    pub fn is_cancelled(&self) -> bool {
        self.feed.is_closed()
    }

    /// Messages discarded by the drop policy so far.
    pub fn dropped(&self) -> u64 {
        self.feed.dropped()
    }

    /// Messages buffered and not yet received.
    pub fn len(&self) -> usize {
        self.feed.len()
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.feed.len() == 0
    }

    /// The most messages this subscription buffers.
    pub fn capacity(&self) -> usize {
        self.feed.capacity()
    }

    /// The pattern subscribed to.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The queue group, if any.
    pub fn queue(&self) -> Option<&str> {
        self.queue.as_deref()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cancel();
    }
}

impl futures_core::Stream for Subscription {
    type Item = Message;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.feed.poll_recv(cx)
    }
}

impl futures_core::FusedStream for Subscription {
    fn is_terminated(&self) -> bool {
        self.feed.is_closed() && self.feed.len() == 0
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("pattern", &self.pattern)
            .field("queue", &self.queue)
            .field("buffered", &self.len())
            .field("dropped", &self.dropped())
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// The handle of a callback subscription made with [`Router::on`](crate::Router::on).
///
/// [`cancel`](CallbackHandle::cancel) stops the callback. Dropping the handle does **not**
/// cancel: a callback lives until cancelled or until its node is dropped, so
/// `router.on(..)?;` on its own is a fire-and-forget listener.
#[derive(Clone)]
pub struct CallbackHandle {
    feed: Feed,
    id: u64,
    pattern: Arc<str>,
    scope: Weak<dyn Unsubscribe>,
    panics: Arc<AtomicU64>,
}

impl CallbackHandle {
    /// Wraps `sub` and runs `callback` for each of its messages, in order, off the publisher's
    /// stack: on a task of the current tokio runtime if there is one, else on a thread of its own.
    pub(crate) fn spawn<F>(sub: Subscription, callback: F) -> Self
    where
        F: FnMut(Message) + Send + 'static,
    {
        let handle = CallbackHandle {
            feed: sub.feed.clone(),
            id: sub.id,
            pattern: sub.pattern.clone(),
            scope: sub.scope.clone(),
            panics: Arc::new(AtomicU64::new(0)),
        };
        let mut runner = Runner {
            sub,
            callback,
            panics: handle.panics.clone(),
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    while let Some(msg) = runner.sub.recv().await {
                        runner.run(msg);
                    }
                });
            }
            Err(_) => {
                let spawned = std::thread::Builder::new()
                    .name(format!("herald-on-{}", handle.pattern))
                    .spawn(move || {
                        while let Some(msg) = runner.sub.recv_blocking() {
                            runner.run(msg);
                        }
                    });
                if let Err(err) = spawned {
                    tracing::error!(pattern = %handle.pattern, %err, "cannot start a callback thread; callback cancelled");
                    handle.cancel();
                }
            }
        }
        handle
    }

    /// Stops the callback and removes its subscription. Idempotent.
    pub fn cancel(&self) {
        self.feed.cancel(&self.scope, &self.pattern, self.id);
    }

    /// True once cancelled (or closed because the node is gone).
    pub fn is_cancelled(&self) -> bool {
        self.feed.is_closed()
    }

    /// How many times the callback panicked (each panic is contained and logged).
    pub fn panics(&self) -> u64 {
        self.panics.load(Ordering::Relaxed)
    }

    /// Messages discarded because the callback fell behind by more than the capacity.
    pub fn dropped(&self) -> u64 {
        self.feed.dropped()
    }
}

impl std::fmt::Debug for CallbackHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackHandle")
            .field("pattern", &self.pattern)
            .field("cancelled", &self.is_cancelled())
            .field("panics", &self.panics())
            .finish()
    }
}

struct Runner<F> {
    sub: Subscription,
    callback: F,
    panics: Arc<AtomicU64>,
}

impl<F: FnMut(Message)> Runner<F> {
    fn run(&mut self, msg: Message) {
        let subject = msg.subject_shared().clone();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.callback)(msg)));
        if let Err(panic) = outcome {
            self.panics.fetch_add(1, Ordering::Relaxed);
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(pattern = %self.sub.pattern, %subject, panic = %what, "callback panicked; it keeps receiving");
        }
    }
}
