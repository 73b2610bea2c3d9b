//! Routers and scopes: publish, subscribe, and the fan-out loop.
//!
//! A [`Scope`] is the shared state of one scope on a node: its subscription index, its groups
//! and its request inbox. A [`Router`] is a cheap handle on a scope with a default capacity and
//! a sender identity. Publishing looks the subject up in the index (usually a cache hit), builds
//! one shared [`Message`], and hands it to every matching target: each ring of plain
//! subscriptions, each other plain subscription, and one member of each queue group. When the
//! match is a single ring, the message is built in the ring's slot.
//!
//! The router knows delivery targets, not routes: a cluster route is one more [`Target`] in
//! the index, and the cluster learns which subscriptions come and go through [`Announce`],
//! which it implements. [`Scopes`] is a node's set of scopes, which the node owns and the
//! cluster reads.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fanout::{Fanout, Reader, RingKey};
use crate::index::{Buffer, Entry, Index, Matches};
use crate::mailbox::Mailbox;
use crate::message::{HeaderMap, Headers, Message, Responder};
use crate::request::Inbox;
use crate::subject::{self, Subject};
use crate::subscription::{
    CallbackHandle, DropPolicy, Feed, SubscribeOptions, Subscription, Unsubscribe,
};
use crate::target::{Delivery, Target};
use herald_proto::route::Queues;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

/// Which matching targets a publish reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach<'q> {
    /// Every match, local or remote.
    All,
    /// Only targets in this process.
    Local,
    /// Every match except the subscriptions made by this router (sender) id.
    Others(u64),
    /// A message another node forwarded: local plain subscriptions, and one local member of
    /// each queue group the sender named (it chose this node for them). Never forwarded on:
    /// a message crosses one route.
    Routed(Queues<'q>),
}

impl Reach<'_> {
    fn admits(self, entry: &Entry) -> bool {
        match self {
            Reach::All => true,
            Reach::Local => entry.local,
            // Node-only subscriptions see only this node's publishes.
            Reach::Routed(_) => entry.announced,
            Reach::Others(owner) => entry.owner != owner,
        }
    }

    /// Whether this publish serves queue group `queue` at all.
    fn serves(self, queue: Option<&str>) -> bool {
        match (self, queue) {
            (Reach::Routed(queues), Some(q)) => queues.contains(q),
            _ => true,
        }
    }
}

/// What the scopes of a node tell beyond it: which subscriptions come and go, and new group
/// versions. The cluster implements it; a node of no cluster has none.
pub(crate) trait Announce: Send + Sync + 'static {
    /// A local subscription appeared (`added`) or went away in `scope`.
    fn interest(&self, added: bool, scope: &Arc<str>, pattern: &Arc<str>, queue: Option<&Arc<str>>);
    /// Group `name` of `scope` has a new version.
    fn share_group(&self, scope: &str, name: &str, group: &GroupState);
    /// This node's name in its cluster.
    fn node_name(&self) -> &str;
}

/// The scopes of one node, by name, each made on first use.
pub(crate) struct Scopes {
    // Random per process: names this node's request inboxes.
    id: u64,
    map: Mutex<FxHashMap<Arc<str>, Arc<Scope>>>,
    // Set once, before the node is handed out (and before any route is up).
    announce: OnceLock<Arc<dyn Announce>>,
}

impl Scopes {
    /// The scopes of a new node with `id`.
    pub(crate) fn new(id: u64) -> Scopes {
        Scopes {
            id,
            map: Mutex::default(),
            announce: OnceLock::new(),
        }
    }

    /// Tells every scope made from now on to announce its interest to `to`.
    pub(crate) fn announce_to(&self, to: Arc<dyn Announce>) {
        let _ = self.announce.set(to);
    }

    /// The names of the scopes made so far, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.map.lock().keys().map(|k| k.to_string()).collect();
        names.sort();
        names
    }

    /// The random id of the node these scopes are on.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The state of scope `name`, made on first use.
    pub(crate) fn scope(&self, name: &str) -> Arc<Scope> {
        let mut map = self.map.lock();
        if let Some(s) = map.get(name) {
            return s.clone();
        }
        let name: Arc<str> = name.into();
        let announce = self.announce.get().cloned();
        let s = Arc::new_cyclic(|me: &Weak<Scope>| {
            Scope::new(name.clone(), self.id, me.clone(), announce)
        });
        map.insert(name, s.clone());
        s
    }
}

/// The shared state of one scope on a node.
pub(crate) struct Scope {
    pub(crate) name: Arc<str>,
    pub(crate) index: Index,
    pub(crate) groups: Mutex<BTreeMap<String, GroupState>>,
    inbox: OnceLock<Arc<Inbox>>,
    next_id: AtomicU64,
    node_id: u64,
    me: Weak<dyn Responder>,
    // Told of every local subscription that comes and goes, to share interest with other
    // nodes; `None` on a node that joins no cluster.
    announce: Option<Arc<dyn Announce>>,
    // The shared rings of plain drop-oldest subscriptions, one index entry each.
    rings: Mutex<FxHashMap<Arc<RingKey>, Ring>>,
    // Subscriptions reading a ring beyond the first of each (the index counts one per ring).
    ring_extra: AtomicU64,
}

/// A shared ring and its index entry.
struct Ring {
    entry: Arc<Entry>,
    fanout: Arc<Fanout>,
}

/// One group as a scope keeps it: its topics and the version that last changed it. A deleted
/// group stays as a tombstone, so an older copy gossiped by another node cannot bring it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GroupState {
    pub(crate) topics: BTreeSet<String>,
    pub(crate) deleted: bool,
    /// Milliseconds since the epoch of the change, made to grow on every change.
    pub(crate) stamp: u64,
    /// The node that made the change; breaks ties between equal stamps.
    pub(crate) origin: String,
}

impl GroupState {
    /// Whether this version replaces `other` (last writer wins).
    pub(crate) fn newer_than(&self, other: &GroupState) -> bool {
        (self.stamp, &self.origin) > (other.stamp, &other.origin)
    }
}

/// Cancelled subscriptions take themselves out of their scope.
impl Unsubscribe for Scope {
    fn unsubscribe(&self, pattern: &str, id: u64) {
        self.remove(pattern, id);
    }

    /// Takes a cancelled `reader` out of its ring; the last one out removes the ring from the
    /// index and lets go of its messages. (Joins and leaves are serialised by the ring map's
    /// lock, so the ring under `key` is the reader's until its last reader leaves.)
    fn leave_ring(&self, key: &RingKey, reader: &Reader) {
        let mut rings = self.rings.lock();
        if reader.leave() > 0 {
            self.ring_extra.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        if let Some(ring) = rings.remove(key) {
            self.remove(&ring.entry.pattern, ring.entry.id);
        }
        drop(rings);
        reader.fanout().retire();
    }
}

impl Scope {
    pub(crate) fn new(
        name: Arc<str>,
        node_id: u64,
        me: Weak<Scope>,
        announce: Option<Arc<dyn Announce>>,
    ) -> Scope {
        let me: Weak<dyn Responder> = me;
        Scope {
            name,
            index: Index::default(),
            groups: Mutex::default(),
            inbox: OnceLock::new(),
            next_id: AtomicU64::new(1),
            node_id,
            me,
            announce,
            rings: Mutex::default(),
            ring_extra: AtomicU64::new(0),
        }
    }

    /// A fresh id, unique within this scope (subscriptions, routers).
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a subscription of `sink` to `pattern` after validating it. A local target's
    /// interest is announced to the cluster unless `node_only`.
    pub(crate) fn add(
        &self,
        pattern: &str,
        queue: Option<&str>,
        owner: u64,
        sid: u64,
        sink: Sink,
        node_only: bool,
    ) -> Result<Arc<Entry>> {
        subject::check(pattern)?;
        let queue = match queue {
            Some(q) => Some(check_queue(q)?),
            None => None,
        };
        let (target, buffer) = match sink {
            Sink::Buffer(buffer) => (Arc::new(buffer.clone()) as Arc<dyn Target>, Some(buffer)),
            Sink::Target(target) => (target, None),
        };
        let local = target.is_local();
        let entry = Arc::new(Entry {
            id: self.next_id(),
            pattern: pattern.into(),
            queue,
            owner,
            sid,
            target,
            local,
            announced: local && !node_only && self.announce.is_some(),
            buffer,
        });
        self.index.insert(entry.clone());
        if let (true, Some(announce)) = (entry.announced, &self.announce) {
            announce.interest(true, &self.name, &entry.pattern, entry.queue.as_ref());
        }
        Ok(entry)
    }

    /// A reader of the ring of plain drop-oldest subscriptions to `pattern` made by router
    /// `owner` with `capacity`, making the ring (and its index entry, after validating the
    /// pattern) if it is the first. A ring's key holds a pattern already validated.
    fn join_ring(&self, key: RingKey) -> Result<(Arc<Entry>, Reader, Arc<RingKey>)> {
        let mut rings = self.rings.lock();
        if let Some((key, ring)) = rings.get_key_value(&key) {
            self.ring_extra.fetch_add(1, Ordering::Relaxed);
            return Ok((ring.entry.clone(), ring.fanout.join(), key.clone()));
        }
        let fanout = Arc::new(Fanout::new(key.capacity));
        let reader = fanout.join();
        let entry = self.add(
            &key.pattern,
            None,
            key.owner,
            0,
            Sink::Buffer(Buffer::Fanout(fanout.clone())),
            key.node_only,
        )?;
        let key = Arc::new(key);
        rings.insert(
            key.clone(),
            Ring {
                entry: entry.clone(),
                fanout,
            },
        );
        Ok((entry, reader, key))
    }

    /// Subscriptions in the scope on this node (a shared ring counts each of its readers).
    pub(crate) fn subscription_count(&self) -> usize {
        self.index.len() + self.ring_extra.load(Ordering::Relaxed) as usize
    }

    /// Removes subscription `id` (subscribed to `pattern`); returns it if it was there.
    pub(crate) fn remove(&self, pattern: &str, id: u64) -> Option<Arc<Entry>> {
        let entry = self.index.remove(pattern, id)?;
        if let (true, Some(announce)) = (entry.announced, &self.announce) {
            announce.interest(false, &self.name, &entry.pattern, entry.queue.as_ref());
        }
        Some(entry)
    }

    /// Publishes and returns how many targets took the message (one per queue group at most).
    pub(crate) fn send(
        &self,
        subject: &str,
        reply: Option<&str>,
        headers: Option<HeaderMap>,
        payload: Bytes,
        reach: Reach<'_>,
    ) -> Result<usize> {
        let reply = match reply {
            Some(r) => Some(Subject::new(r)?),
            None => None,
        };
        // The closure borrows the parts: moving them into it (and it through the index's
        // cache lookup) costs more than the rest of a cached publish.
        let mut parts = Some((reply, headers, payload));
        self.index.with_matches(subject, |matches| {
            let Some((reply, headers, payload)) = parts.take().filter(|_| !matches.is_empty())
            else {
                return 0;
            };
            let responder = reply.as_ref().map(|_| self.me.clone());
            let msg = Message::new(
                matches.subject.clone(),
                reply,
                Headers::from_map(headers),
                payload,
                responder,
            );
            fan_out_built(matches, msg, reach)
        })
    }

    /// [`send`](Scope::send) without reply subject or headers (most publishes): the closure
    /// run on the cached match carries only the payload.
    #[inline]
    pub(crate) fn send_payload(
        &self,
        subject: &str,
        payload: Bytes,
        reach: Reach<'_>,
    ) -> Result<usize> {
        let mut payload = Some(payload);
        self.index.with_matches(
            subject,
            #[inline(always)]
            |matches| {
                let Some(payload) = payload.take().filter(|_| !matches.is_empty()) else {
                    return 0;
                };
                // One ring of local subscriptions (the usual embedded case): the message is built
                // in its slot.
                if let (Reach::All | Reach::Local, [ring]) = (reach, &matches.rings[..]) {
                    return usize::from(ring.publish(&matches.subject, payload));
                }
                let msg = Message::new(matches.subject.clone(), None, Headers::NONE, payload, None);
                fan_out_built(matches, msg, reach)
            },
        )
    }

    /// Answers on `reply`, a reply subject this scope accepted with a publish (so it is not
    /// checked again): a JetStream publish ack. Returns how many took it.
    pub(crate) fn answer(&self, reply: &str, payload: &[u8]) -> usize {
        self.index
            .with_checked_matches(reply, |matches| {
                if matches.is_empty() {
                    return 0;
                }
                let delivery = Delivery::wire(&matches.subject, None, None, payload, &self.me);
                fan_out(matches, delivery, Reach::All)
            })
            .unwrap_or(0)
    }

    /// Publishes a message whose parts are borrowed from a network buffer; see
    /// [`Router::publish_wire`].
    pub(crate) fn send_wire(&self, msg: &WireMessage<'_>, reach: Reach<'_>) -> Result<usize> {
        if let Some(reply) = msg.reply {
            subject::check_literal(reply)?;
        }
        self.index.with_wire_matches(msg.subject, |matches| {
            if matches.is_empty() {
                return 0;
            }
            let delivery = Delivery::wire(
                &matches.subject,
                msg.reply,
                msg.headers,
                msg.payload,
                &self.me,
            );
            fan_out(matches, delivery, reach)
        })
    }

    /// Delivers a message to the subscribers of literal `to` on this node only, showing it to
    /// them as published on `shown`: JetStream hands a stored message to a pull request's inbox
    /// under the subject it was stored with. `headers` is a `NATS/1.0` block (a status line
    /// included). Returns how many took it; 0 means nobody listens on `to` any more.
    pub(crate) fn send_as(
        &self,
        to: &str,
        shown: &str,
        reply: Option<&str>,
        headers: Option<&Bytes>,
        payload: &Bytes,
    ) -> usize {
        self.index
            .with_matches(to, |matches| {
                if matches.is_empty() {
                    return 0;
                }
                let delivery = Delivery::stored(shown, reply, headers, payload, &self.me);
                fan_out(matches, delivery, Reach::Local)
            })
            .unwrap_or(0)
    }

    /// The name of the node this scope is on, as groups record it ("" on a local node).
    pub(crate) fn node_name(&self) -> String {
        self.announce
            .as_ref()
            .map_or_else(String::new, |a| a.node_name().to_owned())
    }

    /// Tells the cluster of a new version of group `name` (nothing on a local node).
    pub(crate) fn share_group(&self, name: &str, group: &GroupState) {
        if let Some(announce) = &self.announce {
            announce.share_group(&self.name, name, group);
        }
    }

    /// Takes a version of group `name` that another node shared, if it is newer than ours;
    /// says whether it was.
    pub(crate) fn merge_group(&self, name: &str, theirs: &GroupState) -> bool {
        let mut groups = self.groups.lock();
        match groups.get(name) {
            Some(ours) if !theirs.newer_than(ours) => false,
            _ => {
                groups.insert(name.to_owned(), theirs.clone());
                true
            }
        }
    }

    /// The scope's request inbox, subscribed on first use.
    pub(crate) fn inbox(&self) -> &Arc<Inbox> {
        self.inbox.get_or_init(|| {
            let inbox = Arc::new(Inbox::new(format!(
                "_INBOX.{:016x}{:x}.",
                self.node_id,
                fastrand::u32(..)
            )));
            let pattern = format!("{}*", inbox.prefix());
            if let Err(err) = self.add(&pattern, None, 0, 0, Sink::Target(inbox.clone()), false) {
                // The prefix is built from hex digits: this cannot fail, but never panic on it.
                tracing::error!(%err, "cannot subscribe the request inbox");
            }
            inbox
        })
    }
}

impl Responder for Scope {
    fn respond(&self, reply: &str, payload: Bytes) -> Result<()> {
        self.send_payload(reply, payload, Reach::All).map(drop)
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        for entry in self.index.drain() {
            entry.target.detach(entry.sid);
        }
    }
}

/// Hands `msg` to every admitted plain match and to one member of each queue group, and
/// forwards it once to each other node with matching interest.
fn fan_out(matches: &Matches, msg: Delivery<'_>, reach: Reach<'_>) -> usize {
    if !matches.remote {
        return fan_out_local(matches, msg, reach);
    }
    let msg = &msg;
    let mut delivered = 0;
    let mut forwards = Forwards::default();
    for entry in &matches.plain {
        if !reach.admits(entry) {
            continue;
        }
        if entry.local {
            delivered += usize::from(deliver(entry, msg));
        } else {
            forwards.add(&entry.target, None);
        }
    }
    for group in &matches.groups {
        match group.first() {
            Some(first) if reach.serves(first.queue.as_deref()) => {}
            _ => continue,
        }
        match deliver_to_one(group, msg, reach) {
            Picked::Local => delivered += 1,
            Picked::Remote(entry) => forwards.add(&entry.target, entry.queue.as_deref()),
            Picked::None => {}
        }
    }
    delivered + forwards.send(msg)
}

/// [`fan_out`] when every match is in this process (no node to forward to). When there is no
/// queue group, the last subscription is given the message itself rather than a shared copy.
fn fan_out_local(matches: &Matches, msg: Delivery<'_>, reach: Reach<'_>) -> usize {
    let (plain, last) = match matches.plain.split_last() {
        Some((last, rest)) if matches.groups.is_empty() => (rest, Some(last)),
        _ => (&matches.plain[..], None),
    };
    let mut delivered = 0;
    for entry in plain {
        if reach.admits(entry) && deliver(entry, &msg) {
            delivered += 1;
        }
    }
    for group in &matches.groups {
        let serves = group
            .first()
            .is_some_and(|e| reach.serves(e.queue.as_deref()));
        if serves && matches!(deliver_to_one(group, &msg, reach), Picked::Local) {
            delivered += 1;
        }
    }
    if let Some(entry) = last
        && reach.admits(entry)
        && match &entry.buffer {
            Some(buffer) => buffer.push(msg.into_message()),
            None => entry.target.deliver_owned(entry.sid, msg),
        }
    {
        delivered += 1;
    }
    delivered
}

/// [`fan_out`] of a message published through the library.
#[inline]
fn fan_out_built(matches: &Matches, msg: Message, reach: Reach<'_>) -> usize {
    match reach {
        Reach::All | Reach::Local if !matches.rings.is_empty() => to_rings(&matches.rings, msg),
        _ => fan_out(matches, Delivery::built(msg), reach),
    }
}

/// [`fan_out`] of a message published through the library when every match is a ring of
/// local subscriptions and every one is admitted (the common embedded case): no [`Delivery`],
/// no virtual call, no look at the entries, and the last ring takes the message itself.
fn to_rings(rings: &[Arc<Fanout>], msg: Message) -> usize {
    let Some((last, rest)) = rings.split_last() else {
        return 0;
    };
    let delivered = rest.iter().filter(|r| r.push(msg.clone())).count();
    delivered + usize::from(last.push(msg))
}

/// Hands `msg` to a local entry: straight into its buffer when it is local subscriptions',
/// else through its [`Target`].
#[inline]
fn deliver(entry: &Entry, msg: &Delivery<'_>) -> bool {
    match &entry.buffer {
        Some(buffer) => buffer.push(msg.message()),
        None => entry.target.deliver(entry.sid, msg),
    }
}

/// What a new subscription hands its messages to.
pub(crate) enum Sink {
    /// Local subscriptions' buffer: fan-out pushes to it without a virtual call.
    Buffer(Buffer),
    /// Any other target: a network connection, a cluster route, a stream, an inbox.
    Target(Arc<dyn Target>),
}

/// Which member of a queue group gets a message.
enum Picked<'m> {
    /// A local member took it.
    Local,
    /// A member on another node: the message is forwarded there, naming the group.
    Remote(&'m Entry),
    /// No member took it.
    None,
}

/// Delivers to one member of a queue group: a random start spreads the load; local members are
/// tried before remote ones; a closed member is skipped.
fn deliver_to_one<'m>(group: &'m [Arc<Entry>], msg: &Delivery<'_>, reach: Reach<'_>) -> Picked<'m> {
    let len = group.len();
    let start = if len == 1 { 0 } else { fastrand::usize(..len) };
    let mut remote = None;
    for k in 0..len {
        let entry = &group[(start + k) % len];
        if !reach.admits(entry) {
            continue;
        }
        if !entry.local {
            remote = remote.or(Some(&**entry));
        } else if deliver(entry, msg) {
            return Picked::Local;
        }
    }
    remote.map_or(Picked::None, Picked::Remote)
}

/// The other nodes one publish goes to: each once, with the queue groups it serves there.
/// Kept on the stack for the usual handful of nodes.
#[derive(Default)]
struct Forwards<'m> {
    list: SmallVec<[Forward<'m>; 4]>,
}

/// One remote target of a publish, and the queue groups it serves.
type Forward<'m> = (&'m Arc<dyn Target>, SmallVec<[&'m str; 2]>);

impl<'m> Forwards<'m> {
    fn add(&mut self, target: &'m Arc<dyn Target>, queue: Option<&'m str>) {
        let at = match self
            .list
            .iter()
            .position(|(t, _)| std::ptr::addr_eq(Arc::as_ptr(t), Arc::as_ptr(target)))
        {
            Some(at) => at,
            None => {
                self.list.push((target, SmallVec::new()));
                self.list.len() - 1
            }
        };
        if let Some(q) = queue {
            self.list[at].1.push(q);
        }
    }

    fn send(&self, msg: &Delivery<'_>) -> usize {
        self.list
            .iter()
            .filter(|(target, queues)| target.forward(msg, queues))
            .count()
    }
}

fn check_queue(queue: &str) -> Result<Arc<str>> {
    if queue.is_empty()
        || queue
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(Error::InvalidSubject {
            subject: queue.to_owned(),
            reason: "a queue group name must be non-empty, without whitespace or control characters",
        });
    }
    Ok(queue.into())
}

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

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("scope", &self.scope.name)
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// A message as a protocol server parsed it, for [`Router::publish_wire`].
#[derive(Debug, Clone, Copy)]
pub struct WireMessage<'a> {
    /// The literal subject published to.
    pub subject: &'a str,
    /// The reply subject, if any.
    pub reply: Option<&'a str>,
    /// The `NATS/1.0` header block, final blank line included, if any.
    pub headers: Option<&'a [u8]>,
    /// The payload.
    pub payload: &'a [u8],
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
