//! [`Router`]: a cheap handle on a scope of a node, with a default capacity and a sender
//! identity. Publishing looks the subject up in the scope's index (usually a cache hit), builds
//! one shared [`Message`], and hands it to every matching target (the `dispatch` loop); when the
//! match is a single ring of subscriptions, the message is built in the ring's slot.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::fanout::RingKey;
use crate::index::{Buffer, Index};
use crate::mailbox::Mailbox;
use crate::message::{HeaderMap, Message};
use crate::subscription::{
    CallbackHandle, DropPolicy, Feed, SubscribeOptions, Subscription, Unsubscribe,
};
use crate::target::Target;

use crate::dispatch::Reach;
use crate::scope::{Scope, Sink, WireMessage};

/// A handle for publishing and subscribing in one scope of a node.
///
/// Cheap to clone; clones share the scope, the default capacity and the sender identity (used
/// by [`publish_others`](Router::publish_others)). All calls except `request` are synchronous
/// and never block on the network.
///
/// # Examples
/// ```
/// # fn main() -> Result<(), herald::Error> {
/// let router = herald::Router::new(100, "my_app");
/// let mut sub = router.subscribe("events.*")?;
/// router.publish("events.login", "alice")?;
/// let msg = sub.try_recv().expect("delivered synchronously");
/// assert_eq!((msg.subject(), msg.text()?), ("events.login", "alice"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Router {
    // The node this router was made from, kept alive with it (the node module names its type:
    // see `Router::new` and `Router::node` there).
    pub(crate) owner: Arc<dyn std::any::Any + Send + Sync>,
    scope: Arc<Scope>,
    capacity: usize,
    id: u64,
}

impl Router {
    /// A router on `scope`, kept alive with `owner` (its node).
    pub(crate) fn from_parts(
        owner: Arc<dyn std::any::Any + Send + Sync>,
        scope: Arc<Scope>,
        capacity: usize,
    ) -> Router {
        let id = scope.next_id();
        Router {
            owner,
            scope,
            capacity,
            id,
        }
    }

    /// The scope this router publishes and subscribes in.
    pub fn scope(&self) -> &str {
        &self.scope.name
    }

    /// The default capacity of this router's subscriptions.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Subscribes to `pattern` (wildcards allowed) with the router's capacity and drop-oldest.
    pub fn subscribe(&self, pattern: &str) -> Result<Subscription> {
        self.subscribe_with(pattern, SubscribeOptions::new())
    }

    /// Subscribes to `pattern` as a member of queue group `queue`: each message goes to one
    /// member of the group (preferring members on this node), besides all plain subscribers.
    pub fn subscribe_queue(&self, pattern: &str, queue: &str) -> Result<Subscription> {
        self.subscribe_with(pattern, SubscribeOptions::new().queue(queue))
    }

    /// Subscribes with explicit options (capacity, drop policy, queue group).
    pub fn subscribe_with(&self, pattern: &str, options: SubscribeOptions) -> Result<Subscription> {
        let capacity = options.capacity.unwrap_or(self.capacity);
        if capacity == 0 {
            return Err(Error::InvalidCapacity);
        }
        let (entry, feed) = if options.queue.is_none() && options.policy == DropPolicy::DropOldest {
            let (entry, reader, key) = self.scope.join_ring(RingKey {
                pattern: pattern.into(),
                owner: self.id,
                capacity,
                node_only: options.node_only,
            })?;
            let reader = Arc::new(reader);
            (entry, Feed::Ring { reader, key })
        } else {
            let mailbox = Arc::new(Mailbox::new(capacity, options.policy));
            let entry = self.scope.add(
                pattern,
                options.queue.as_deref(),
                self.id,
                0,
                Sink::Buffer(Buffer::Mailbox(mailbox.clone())),
                options.node_only,
            )?;
            (entry, Feed::Own(mailbox))
        };
        Ok(Subscription::new(
            feed,
            entry.id,
            entry.pattern.clone(),
            entry.queue.clone(),
            Arc::downgrade(&self.scope) as Weak<dyn Unsubscribe>,
        ))
    }

    /// Runs `callback` for each message on `pattern`, in order, off the publisher's stack (on a
    /// task of the current tokio runtime, or on a thread of its own outside one). A panic in
    /// the callback is caught, logged and counted; later messages still reach it.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), herald::Error> {
    /// let router = herald::Router::new(100, "my_app");
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let cancel = router.on("notifications", move |msg| tx.send(msg.text().unwrap().to_owned()).unwrap())?;
    /// router.publish("notifications", "ding")?;
    /// assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap(), "ding");
    /// cancel.cancel();
    /// # Ok(()) }
    /// ```
    pub fn on<F>(&self, pattern: &str, callback: F) -> Result<CallbackHandle>
    where
        F: FnMut(Message) + Send + 'static,
    {
        Ok(CallbackHandle::spawn(self.subscribe(pattern)?, callback))
    }

    /// Like [`on`](Router::on), with explicit options (capacity, drop policy, queue group,
    /// node-only).
    pub fn on_with<F>(
        &self,
        pattern: &str,
        options: SubscribeOptions,
        callback: F,
    ) -> Result<CallbackHandle>
    where
        F: FnMut(Message) + Send + 'static,
    {
        Ok(CallbackHandle::spawn(
            self.subscribe_with(pattern, options)?,
            callback,
        ))
    }

    /// Like [`on`](Router::on), as a member of queue group `queue`.
    pub fn on_queue<F>(&self, pattern: &str, queue: &str, callback: F) -> Result<CallbackHandle>
    where
        F: FnMut(Message) + Send + 'static,
    {
        Ok(CallbackHandle::spawn(
            self.subscribe_queue(pattern, queue)?,
            callback,
        ))
    }

    /// Publishes `payload` on the literal `subject` to every matching subscription, on this
    /// node and (when clustered) on others.
    pub fn publish(&self, subject: &str, payload: impl Into<Bytes>) -> Result<()> {
        self.scope
            .send_payload(subject, payload.into(), Reach::All)
            .map(drop)
    }

    /// Publishes a message parsed off the wire by a protocol server, its parts borrowed from
    /// the server's read buffer: targets that forward it (network connections, routes) copy the
    /// bytes straight out, and a shared [`Message`] is built only if a local subscription keeps
    /// it. With `echo` false, the subscriptions made through this router are skipped (NATS's
    /// `echo: false`). The subject may hold `*` and `>` tokens, as nats-server accepts from
    /// a non-pedantic client; only wildcard subscriptions match them. Returns how many targets took it (one per queue group at most), so a
    /// server can answer "no responders" to a request nobody received.
    pub fn publish_wire(&self, msg: &WireMessage<'_>, echo: bool) -> Result<usize> {
        let reach = if echo {
            Reach::All
        } else {
            Reach::Others(self.id)
        };
        self.scope.send_wire(msg, reach)
    }

    /// Publishes with headers.
    pub fn publish_with_headers(
        &self,
        subject: &str,
        headers: HeaderMap,
        payload: impl Into<Bytes>,
    ) -> Result<()> {
        self.scope
            .send(subject, None, Some(headers), payload.into(), Reach::All)
            .map(drop)
    }

    /// Publishes with a reply subject, for responders to answer on.
    pub fn publish_with_reply(
        &self,
        subject: &str,
        reply: &str,
        payload: impl Into<Bytes>,
    ) -> Result<()> {
        self.scope
            .send(subject, Some(reply), None, payload.into(), Reach::All)
            .map(drop)
    }

    /// Publishes `value` encoded as JSON.
    pub fn publish_json<T: Serialize + ?Sized>(&self, subject: &str, value: &T) -> Result<()> {
        self.publish(subject, serde_json::to_vec(value)?)
    }

    /// Publishes to subscriptions on this node only, never to other nodes of the cluster.
    pub fn publish_local(&self, subject: &str, payload: impl Into<Bytes>) -> Result<()> {
        self.scope
            .send_payload(subject, payload.into(), Reach::Local)
            .map(drop)
    }

    /// Publishes to every matching subscription except those made through this router (and its
    /// clones), like Phoenix.PubSub's `broadcast_from`.
    pub fn publish_others(&self, subject: &str, payload: impl Into<Bytes>) -> Result<()> {
        self.scope
            .send_payload(subject, payload.into(), Reach::Others(self.id))
            .map(drop)
    }

    /// Publishes a request and waits for the first reply.
    ///
    /// Fails at once with [`Error::NoResponders`] when nobody subscribes to `subject`, and with
    /// [`Error::Timeout`] when no reply comes within `timeout`. Needs a tokio runtime with time.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), herald::Error> {
    /// use std::time::Duration;
    /// let router = herald::Router::new(100, "my_app");
    /// let _echo = router.on("svc.echo", |msg| { let _ = msg.respond(msg.payload().clone()); })?;
    /// let reply = router.request("svc.echo", "ping", Duration::from_secs(5)).await?;
    /// assert_eq!(reply.text()?, "ping");
    /// # Ok(()) }
    /// ```
    pub async fn request(
        &self,
        subject: &str,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Message> {
        self.request_inner(subject, None, payload.into(), timeout)
            .await
    }

    /// Like [`request`](Router::request), with headers.
    pub async fn request_with_headers(
        &self,
        subject: &str,
        headers: HeaderMap,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Message> {
        self.request_inner(subject, Some(headers), payload.into(), timeout)
            .await
    }

    async fn request_inner(
        &self,
        subject: &str,
        headers: Option<HeaderMap>,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Message> {
        let mut pending = self.scope.inbox().register();
        let delivered =
            self.scope
                .send(subject, Some(pending.reply()), headers, payload, Reach::All)?;
        if delivered == 0 {
            return Err(Error::NoResponders(subject.to_owned()));
        }
        pending.wait(timeout).await
    }

    pub(crate) fn scope_state(&self) -> &Arc<Scope> {
        &self.scope
    }

    /// Number of subscriptions in this router's scope on this node (all routers of the scope).
    pub fn subscription_count(&self) -> usize {
        self.scope.subscription_count()
    }

    /// The scope's subscription index, for diagnostics (sizes, cache, trie nodes).
    pub fn index(&self) -> &Index {
        &self.scope.index
    }

    /// Subscribes a custom delivery [`Target`] (a network connection, a route) to `pattern`.
    /// Matching messages are handed to `target.deliver(sid, ..)`. Remove it with
    /// [`unsubscribe_target`](Router::unsubscribe_target).
    pub fn subscribe_target(
        &self,
        pattern: &str,
        queue: Option<&str>,
        sid: u64,
        target: Arc<dyn Target>,
    ) -> Result<TargetSubscription> {
        let entry = self
            .scope
            .add(pattern, queue, self.id, sid, Sink::Target(target), false)?;
        Ok(TargetSubscription {
            id: entry.id,
            pattern: entry.pattern.clone(),
        })
    }

    /// Removes a subscription made with [`subscribe_target`](Router::subscribe_target); false
    /// when it was already gone.
    pub fn unsubscribe_target(&self, sub: &TargetSubscription) -> bool {
        self.scope.remove(&sub.pattern, sub.id).is_some()
    }
}

/// The last router of an idle scope lets the node forget the scope.
impl Drop for Router {
    fn drop(&mut self) {
        self.scope.release(1);
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("scope", &self.scope.name)
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// A subscription of a custom [`Target`], as returned by [`Router::subscribe_target`].
#[derive(Debug, Clone)]
pub struct TargetSubscription {
    id: u64,
    pattern: Arc<str>,
}

impl TargetSubscription {
    /// The pattern subscribed to.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }
}
