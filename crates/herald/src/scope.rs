//! Scopes: the shared state of one scope on a node (its subscription index, its groups, its
//! shared rings, its request inbox), how publishes enter the fan-out loop, and what scopes
//! announce beyond their node.
//!
//! A node owns its [`Scopes`]. The core knows delivery targets, not routes: a cluster route is
//! one more [`Target`] in the index, and the cluster learns which subscriptions come and go
//! through [`Announce`], which it implements.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use bytes::Bytes;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fanout::{Fanout, Reader, RingKey};
use crate::index::{Buffer, Entry, Index};
use crate::message::{HeaderMap, Headers, Message, Responder};
use crate::request::Inbox;
use crate::subject::{self, Subject};
use crate::subscription::Unsubscribe;
use crate::target::{Delivery, Target};

use crate::dispatch::{Reach, fan_out, fan_out_built};

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

/// The scopes of one node, by name, each made on first use and reclaimed once nothing uses
/// it (see [`Scope::idle`]).
pub(crate) struct Scopes {
    // Random per process: names this node's request inboxes.
    id: u64,
    map: Mutex<ScopeMap>,
    // Set once, before the node is handed out (and before any route is up).
    announce: OnceLock<Arc<dyn Announce>>,
}

#[derive(Default)]
struct ScopeMap {
    scopes: FxHashMap<Arc<str>, Arc<Scope>>,
    // How many scopes the last full sweep left: the next sweep comes when the map has doubled,
    // so scopes whose last user left unnoticed (see `Scopes::release`) cost amortised O(1).
    swept: usize,
}

/// Fewest scopes before a new one starts a sweep of idle scopes.
const SWEEP_FLOOR: usize = 64;

impl ScopeMap {
    /// Takes out the scopes that are idle and held by nothing but the map; the caller drops
    /// them once the lock is released.
    fn sweep(&mut self) -> Vec<Arc<Scope>> {
        let mut idle = Vec::new();
        self.scopes.retain(|_, scope| {
            let keep = Arc::strong_count(scope) > 1 || !scope.idle();
            if !keep {
                idle.push(scope.clone());
            }
            keep
        });
        self.swept = self.scopes.len();
        idle
    }
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

    /// The names of the scopes there are, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .map
            .lock()
            .scopes
            .keys()
            .map(|k| k.to_string())
            .collect();
        names.sort();
        names
    }

    /// How many scopes there are.
    pub(crate) fn len(&self) -> usize {
        self.map.lock().scopes.len()
    }

    /// The random id of the node these scopes are on.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The state of scope `name`, made on first use.
    pub(crate) fn scope(self: &Arc<Self>, name: &str) -> Arc<Scope> {
        self.scope_within(name, usize::MAX)
            .expect("no limit on the number of scopes")
    }

    /// The state of scope `name` if it exists (never makes it).
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Scope>> {
        self.map.lock().scopes.get(name).cloned()
    }

    /// The state of scope `name`, made on first use unless `max` scopes exist already.
    pub(crate) fn scope_within(self: &Arc<Self>, name: &str, max: usize) -> Result<Arc<Scope>> {
        let mut map = self.map.lock();
        if let Some(s) = map.scopes.get(name) {
            return Ok(s.clone());
        }
        let mut idle = Vec::new();
        if map.scopes.len() >= map.swept.max(SWEEP_FLOOR) * 2 || map.scopes.len() >= max {
            idle = map.sweep();
        }
        if map.scopes.len() >= max {
            drop(map);
            drop(idle);
            return Err(Error::TooManyScopes { max });
        }
        let name: Arc<str> = name.into();
        let announce = self.announce.get().cloned();
        let owner = Arc::downgrade(self);
        let s = Arc::new_cyclic(|me: &Weak<Scope>| {
            Scope::new(name.clone(), self.id, me.clone(), owner, announce)
        });
        map.scopes.insert(name, s.clone());
        drop(map);
        // Reclaimed scopes let go of their state (their inbox's entry) outside the lock.
        drop(idle);
        Ok(s)
    }

    /// Forgets every scope nothing uses any more; returns how many it forgot.
    pub(crate) fn sweep(&self) -> usize {
        let idle = self.map.lock().sweep();
        idle.len()
    }

    /// Forgets `scope` if it is idle and nothing holds it but the map and the `held` handles
    /// of the caller. A handle taken in between (a subscription cancelling itself holds one
    /// for a moment) makes this keep the scope; the next sweep gets it then.
    pub(crate) fn release(&self, scope: &Arc<Scope>, held: usize) {
        let mut map = self.map.lock();
        let ours = map
            .scopes
            .get(&scope.name)
            .is_some_and(|s| Arc::ptr_eq(s, scope));
        if ours && Arc::strong_count(scope) == held + 1 && scope.idle() {
            let gone = map.scopes.remove(&scope.name);
            drop(map);
            drop(gone);
        }
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
    // The map this scope is in, to leave it once idle (see `Scopes::release`).
    owner: Weak<Scopes>,
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

/// Cancelled subscriptions take themselves out of their scope, and the last one out of a
/// scope no router holds lets the node forget it.
impl Unsubscribe for Scope {
    fn unsubscribe(self: Arc<Self>, pattern: &str, id: u64) {
        self.remove(pattern, id);
        self.release(1);
    }

    /// Takes a cancelled `reader` out of its ring; the last one out removes the ring from the
    /// index and lets go of its messages. (Joins and leaves are serialised by the ring map's
    /// lock, so the ring under `key` is the reader's until its last reader leaves.)
    fn leave_ring(self: Arc<Self>, key: &RingKey, reader: &Reader) {
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
        self.release(1);
    }
}

impl Scope {
    pub(crate) fn new(
        name: Arc<str>,
        node_id: u64,
        me: Weak<Scope>,
        owner: Weak<Scopes>,
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
            owner,
            announce,
            rings: Mutex::default(),
            ring_extra: AtomicU64::new(0),
        }
    }

    /// Whether nothing in the scope needs keeping: no subscription (its own request inbox
    /// aside) and no live group. Tombstones of deleted groups go with an idle scope.
    pub(crate) fn idle(&self) -> bool {
        self.index.len() <= usize::from(self.inbox.get().is_some())
            && self.groups.lock().values().all(|g| g.deleted)
    }

    /// Leaves the node's map of scopes if idle and nothing holds this scope but the map and
    /// `held` handles of the caller.
    pub(crate) fn release(self: &Arc<Self>, held: usize) {
        if Arc::strong_count(self) == held + 1
            && let Some(owner) = self.owner.upgrade()
        {
            owner.release(self, held);
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
    pub(crate) fn join_ring(&self, key: RingKey) -> Result<(Arc<Entry>, Reader, Arc<RingKey>)> {
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

    /// Whether anything in the scope subscribes to `subject` now.
    pub(crate) fn has_interest(&self, subject: &str) -> bool {
        self.index
            .with_matches(subject, |matches| !matches.is_empty())
            .unwrap_or(false)
    }

    /// Whether a target `subject` reaches is [congested](Target::congested).
    pub(crate) fn congested(&self, subject: &str) -> bool {
        self.index
            .with_matches(subject, |matches| {
                matches
                    .plain
                    .iter()
                    .chain(matches.groups.iter().flatten())
                    .any(|entry| entry.target.congested())
            })
            .unwrap_or(false)
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

    /// Delivers a message to the subscribers of literal `to` that `reach` admits, showing it
    /// to them as published on `shown`: JetStream hands a stored message to a pull request's
    /// inbox under the subject it was stored with (through a route too: the frame names both
    /// subjects). `headers` is a `NATS/1.0` block (a status line included). Returns how many
    /// took it; 0 means nobody listens on `to` any more.
    pub(crate) fn send_as(
        &self,
        to: &str,
        shown: &str,
        reply: Option<&str>,
        headers: Option<&Bytes>,
        payload: &Bytes,
        reach: Reach<'_>,
    ) -> usize {
        self.index
            .with_matches(to, |matches| {
                if matches.is_empty() {
                    return 0;
                }
                let routed = (to != shown).then_some(to);
                let delivery = Delivery::stored(shown, routed, reply, headers, payload, &self.me);
                fan_out(matches, delivery, reach)
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
            // A reclaimed scope's inbox was announced: other nodes forget it too.
            if let (true, Some(announce)) = (entry.announced, &self.announce) {
                announce.interest(false, &self.name, &entry.pattern, entry.queue.as_ref());
            }
        }
    }
}

/// What a new subscription hands its messages to.
pub(crate) enum Sink {
    /// Local subscriptions' buffer: fan-out pushes to it without a virtual call.
    Buffer(Buffer),
    /// Any other target: a network connection, a cluster route, a stream, an inbox.
    Target(Arc<dyn Target>),
}

pub(crate) fn check_queue(queue: &str) -> Result<Arc<str>> {
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

/// A message as a protocol server parsed it, for [`Router::publish_wire`](crate::Router::publish_wire).
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
