//! The subscription index: which subscriptions match a subject.
//!
//! A trie keyed by token, with separate children for `*` and `>` so that a match visits at most
//! three children per token. In front of it sits a bounded cache from subject to match result:
//! most traffic hits few subjects, and a hit is one hash lookup under a read lock. A subject is
//! admitted to that cache on its second miss only (a doorkeeper of recent miss hashes), so the
//! one-shot subjects of request/reply and JetStream (reply inboxes, ack subjects) neither evict
//! the subjects that repeat nor cost a cache insert each.
//!
//! Invariants:
//! - every subscription is in the trie exactly once, at the node its pattern spells;
//! - nodes that hold no subscription and no child are removed, so the trie does not grow with
//!   subscribe/unsubscribe churn;
//! - a cached result is never stale: a change removes the cached subjects its pattern matches,
//!   and a result computed before a change is not cached after it (the generation check).
//!
//! Writers (subscribe, unsubscribe) take the trie's write lock; publishers take read locks only.
//! A publishing thread also keeps a small private cache of recent results
//! ([`Index::with_matches`]), checked against the index's generation, so the hot path of a
//! publisher that repeats subjects takes no lock and touches no shared counter.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use rustc_hash::FxHashMap;

use crate::error::Result;
use crate::subject::{self, Subject};
use crate::target::{Delivery, Target};

/// Default bound on cached subjects per index.
pub const DEFAULT_CACHE_CAPACITY: usize = 4096;

/// Fewest slots of an index's doorkeeper once it has any.
const DOORKEEPER_MIN: usize = 64;

/// One subscription as the index holds it.
pub struct Entry {
    /// Unique within the node; the key for removal.
    pub id: u64,
    /// The pattern subscribed to.
    pub pattern: Arc<str>,
    /// Queue group, if any: one member per group gets each message.
    pub queue: Option<Arc<str>>,
    /// The router (sender identity) that made it, for publish-except-self.
    pub owner: u64,
    /// The target's own id for this subscription, passed back on delivery.
    pub sid: u64,
    /// Where matched messages go.
    pub target: Arc<dyn Target>,
    /// `target.is_local()`, read once: fan-out tells local targets from cluster routes
    /// without a call per entry.
    pub local: bool,
    /// Whether other nodes of the cluster were told of it (a local subscription not marked
    /// node-only, on a clustered node).
    pub announced: bool,
    /// The target when it is a local subscription's buffer: fan-out then pushes to it
    /// directly instead of through the `Target` trait.
    pub(crate) buffer: Option<Buffer>,
}

/// The buffer of local subscriptions, as an entry knows it.
#[derive(Clone)]
pub(crate) enum Buffer {
    /// One subscription's own queue (drop-newest, or a queue group member).
    Mailbox(Arc<crate::mailbox::Mailbox>),
    /// The ring the plain drop-oldest subscriptions of a pattern share.
    Fanout(Arc<crate::fanout::Fanout>),
}

impl Buffer {
    /// Buffers `msg`; false when the buffer is closed.
    #[inline]
    pub(crate) fn push(&self, msg: crate::message::Message) -> bool {
        match self {
            Buffer::Mailbox(mailbox) => mailbox.push(msg),
            Buffer::Fanout(fanout) => fanout.push(msg),
        }
    }
}

/// A buffer as the target of its entry. Fan-out pushes to a buffer directly (`Entry::buffer`);
/// through this impl come only the calls of the general paths, and `detach` when the scope
/// shuts down.
impl Target for Buffer {
    fn deliver(&self, _sid: u64, msg: &Delivery<'_>) -> bool {
        self.push(msg.message())
    }

    fn deliver_owned(&self, _sid: u64, msg: Delivery<'_>) -> bool {
        self.push(msg.into_message())
    }

    fn detach(&self, _sid: u64) {
        match self {
            Buffer::Mailbox(mailbox) => drop(mailbox.close()),
            Buffer::Fanout(fanout) => fanout.close(),
        }
    }
}

impl Entry {
    /// A plain subscription of `target` to `pattern`, delivered as subscription `id`: what
    /// code driving an [`Index`] by itself (benchmarks, tools) needs.
    pub fn new(id: u64, pattern: &str, target: Arc<dyn Target>) -> Entry {
        Entry {
            id,
            pattern: pattern.into(),
            queue: None,
            owner: 0,
            sid: id,
            local: target.is_local(),
            target,
            announced: false,
            buffer: None,
        }
    }

    /// The same subscription as a member of queue group `queue`.
    pub fn in_queue(self, queue: &str) -> Entry {
        Entry {
            queue: Some(queue.into()),
            ..self
        }
    }
}

/// Whether two subjects are equal. Most subjects are 8 to 16 bytes long: those are compared as
/// two overlapping words in registers, without a call to `memcmp`.
#[inline]
fn same_subject(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    match (a.first_chunk::<8>(), b.first_chunk::<8>()) {
        (Some(a8), Some(b8)) if a.len() <= 16 => {
            a8 == b8 && a.last_chunk::<8>() == b.last_chunk::<8>()
        }
        _ => a == b,
    }
}

/// The subscriptions that match one subject.
pub struct Matches {
    /// The subject, shared: publishing a cached subject needs no allocation for it.
    pub subject: Subject,
    /// Plain subscriptions: each gets a copy.
    pub plain: Vec<Arc<Entry>>,
    /// Queue groups: each inner list is one group; one member of each gets a copy.
    pub groups: Vec<Vec<Arc<Entry>>>,
    /// Whether any entry is remote (a cluster route): fan-out takes a shorter path when not.
    pub remote: bool,
    /// When every match is a ring of plain local subscriptions, the rings (empty otherwise): a
    /// library publish writes to them without looking at the entries.
    pub(crate) rings: Vec<Arc<crate::fanout::Fanout>>,
}

impl Matches {
    /// True when nothing matches.
    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.groups.is_empty()
    }
}

/// How a looked-up subject is validated.
#[derive(Clone, Copy)]
enum Check {
    /// A literal subject (the library's publishes).
    Literal,
    /// Any valid subject, wildcard tokens included (a network client's publishes).
    Wire,
    /// Checked already: a reply subject the router accepted with its request.
    Done,
}

#[derive(Default)]
struct TrieNode {
    literal: FxHashMap<Box<str>, TrieNode>,
    star: Option<Box<TrieNode>>,
    // The `>` child: holds subscriptions only (nothing may follow `>`).
    full: Option<Box<TrieNode>>,
    subs: Vec<Arc<Entry>>,
}

impl TrieNode {
    fn is_empty(&self) -> bool {
        self.subs.is_empty()
            && self.literal.is_empty()
            && self.star.is_none()
            && self.full.is_none()
    }

    fn count_nodes(&self) -> usize {
        1 + self
            .literal
            .values()
            .map(TrieNode::count_nodes)
            .sum::<usize>()
            + self.star.as_ref().map_or(0, |n| n.count_nodes())
            + self.full.as_ref().map_or(0, |n| n.count_nodes())
    }

    fn insert<'a>(&mut self, mut tokens: impl Iterator<Item = &'a str>, entry: Arc<Entry>) {
        let mut node = self;
        for token in tokens.by_ref() {
            node = match token {
                "*" => node.star.get_or_insert_with(Box::default),
                ">" => node.full.get_or_insert_with(Box::default),
                _ => node.literal.entry(token.into()).or_default(),
            };
        }
        node.subs.push(entry);
    }

    /// Removes subscription `id` below this node along `tokens`, pruning emptied nodes.
    fn remove<'a>(
        &mut self,
        mut tokens: impl Iterator<Item = &'a str>,
        id: u64,
    ) -> Option<Arc<Entry>> {
        let Some(token) = tokens.next() else {
            let pos = self.subs.iter().position(|e| e.id == id)?;
            return Some(self.subs.swap_remove(pos));
        };
        match token {
            "*" | ">" => {
                let slot = if token == "*" {
                    &mut self.star
                } else {
                    &mut self.full
                };
                let child = slot.as_mut()?;
                let removed = child.remove(tokens, id);
                if child.is_empty() {
                    *slot = None;
                }
                removed
            }
            _ => {
                let child = self.literal.get_mut(token)?;
                let removed = child.remove(tokens, id);
                if child.is_empty() {
                    self.literal.remove(token);
                }
                removed
            }
        }
    }

    /// Collects the subscriptions matching `rest` (a non-empty remainder of a literal subject).
    fn collect(&self, rest: &str, out: &mut Vec<Arc<Entry>>) {
        // A byte search: subjects are short, and `str::find` sets up a searcher each call.
        let (token, tail) = match rest.bytes().position(|b| b == b'.') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        if let Some(full) = &self.full {
            out.extend(full.subs.iter().cloned());
        }
        if let Some(child) = self.literal.get(token) {
            child.descend(tail, out);
        }
        if let Some(star) = &self.star {
            star.descend(tail, out);
        }
    }

    fn descend(&self, tail: Option<&str>, out: &mut Vec<Arc<Entry>>) {
        match tail {
            None => out.extend(self.subs.iter().cloned()),
            Some(rest) => self.collect(rest, out),
        }
    }

    fn for_each(&self, f: &mut impl FnMut(&Arc<Entry>)) {
        self.subs.iter().for_each(&mut *f);
        for child in self.literal.values() {
            child.for_each(f);
        }
        if let Some(n) = &self.star {
            n.for_each(f);
        }
        if let Some(n) = &self.full {
            n.for_each(f);
        }
    }
}

/// Slots of the per-thread cache (direct-mapped by subject hash).
const LOCAL_SLOTS: usize = 64;
const _: () = assert!(LOCAL_SLOTS.is_power_of_two());

/// The private cache slot of `subject`. Subjects of 8 to 16 bytes (most) are hashed from
/// their first and last 8 bytes in registers; others go through FxHash. A collision only costs
/// a miss: a slot is used after comparing its whole subject.
#[inline]
fn local_slot(subject: &str) -> usize {
    let b = subject.as_bytes();
    let word = match (b.first_chunk::<8>(), b.last_chunk::<8>()) {
        (Some(first), Some(last)) if b.len() <= 16 => {
            u64::from_le_bytes(*first) ^ u64::from_le_bytes(*last).rotate_left(29) ^ b.len() as u64
        }
        _ => rustc_hash::FxBuildHasher.hash_one(subject),
    };
    // The multiply mixes every byte into the top bits, which pick the slot.
    (word.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - LOCAL_SLOTS.trailing_zeros())) as usize
}

/// Gives every index an id, so a thread's private cache can tell indexes apart.
static NEXT_INDEX_ID: AtomicU64 = AtomicU64::new(1);

struct LocalSlot {
    index: u64,
    generation: u64,
    matches: Arc<Matches>,
}

thread_local! {
    // A publishing thread's recent lookups. It may keep up to LOCAL_SLOTS results (and the
    // targets they name) alive after they went stale, until the slot is reused.
    static LOCAL: RefCell<[Option<LocalSlot>; LOCAL_SLOTS]> = const { RefCell::new([const { None }; LOCAL_SLOTS]) };
}

/// A subscription index with a match cache; shared by all publishers and subscribers of a scope.
pub struct Index {
    id: u64,
    trie: RwLock<TrieNode>,
    // Bumped (under the trie's write lock) on every change.
    generation: AtomicU64,
    cache: RwLock<FxHashMap<Subject, Arc<Matches>>>,
    cache_capacity: usize,
    // Hashes of recent cache misses, direct-mapped: a miss whose hash is already in its slot
    // is a subject's second miss, and its result is cached. It starts empty and grows with the
    // misses (twice as many slots, from 64 to the cache's capacity: 32 KiB at the default), so
    // that a scope that sees few subjects (a tenant among thousands) stays small.
    doorkeeper: RwLock<Box<[AtomicU64]>>,
    misses: AtomicU64,
    len: AtomicU64,
}

impl Default for Index {
    fn default() -> Self {
        Self::with_cache_capacity(DEFAULT_CACHE_CAPACITY)
    }
}

impl Index {
    /// An empty index whose cache holds at most `cache_capacity` subjects (0 disables it).
    pub fn with_cache_capacity(cache_capacity: usize) -> Self {
        Index {
            id: NEXT_INDEX_ID.fetch_add(1, Ordering::Relaxed),
            trie: RwLock::default(),
            generation: AtomicU64::new(0),
            cache: RwLock::default(),
            cache_capacity,
            doorkeeper: RwLock::default(),
            misses: AtomicU64::new(0),
            len: AtomicU64::new(0),
        }
    }

    /// Adds a subscription. The pattern must already be valid.
    pub fn insert(&self, entry: Arc<Entry>) {
        let pattern = entry.pattern.clone();
        {
            let mut trie = self.trie.write();
            trie.insert(pattern.split('.'), entry);
            self.generation.fetch_add(1, Ordering::Release);
        }
        self.len.fetch_add(1, Ordering::Relaxed);
        self.invalidate(&pattern);
    }

    /// Removes subscription `id` subscribed with `pattern`; returns it if it was there.
    pub fn remove(&self, pattern: &str, id: u64) -> Option<Arc<Entry>> {
        let removed = {
            let mut trie = self.trie.write();
            let removed = trie.remove(pattern.split('.'), id);
            self.generation.fetch_add(1, Ordering::Release);
            removed
        }?;
        self.len.fetch_sub(1, Ordering::Relaxed);
        self.invalidate(pattern);
        Some(removed)
    }

    /// The subscriptions matching `subject`, validating it as a literal subject on a cache miss
    /// (a cached subject is known to be valid).
    pub fn lookup(&self, subject: &str) -> Result<Arc<Matches>> {
        self.lookup_checked(subject, Check::Literal)
    }

    fn lookup_checked(&self, subject: &str, check: Check) -> Result<Arc<Matches>> {
        if let Some(hit) = self.cache.read().get(subject) {
            return Ok(hit.clone());
        }
        match check {
            Check::Literal => subject::check_literal(subject)?,
            // `*` and `>` tokens are taken as they are: only wildcard subscriptions match them.
            Check::Wire => drop(subject::check(subject)?),
            Check::Done => {}
        }
        let (matches, generation) = {
            let trie = self.trie.read();
            let generation = self.generation.load(Ordering::Acquire);
            let mut found = Vec::new();
            trie.collect(subject, &mut found);
            (group(Subject::from_valid(subject), found), generation)
        };
        let matches = Arc::new(matches);
        if self.cache_capacity > 0 && self.second_miss(subject) {
            let mut cache = self.cache.write();
            // A change after our read would have bumped the generation: do not cache a result
            // that may already be stale.
            if self.generation.load(Ordering::Acquire) == generation {
                if cache.len() >= self.cache_capacity {
                    evict(&mut cache);
                }
                cache.insert(matches.subject.clone(), matches.clone());
            }
        }
        Ok(matches)
    }

    /// Runs `f` on the subscriptions matching `subject`, like [`lookup`](Index::lookup), but
    /// first tries this thread's private cache: a hit takes no lock and no reference count.
    ///
    /// `f` runs while the private cache is borrowed; a nested call (a target that publishes
    /// from inside `deliver`) simply uses the shared path.
    #[inline]
    pub fn with_matches<R>(&self, subject: &str, f: impl FnOnce(&Matches) -> R) -> Result<R> {
        self.with_matches_checked(subject, Check::Literal, f)
    }

    /// Like [`with_matches`](Index::with_matches) for a subject a network client published,
    /// which may hold `*` or `>` tokens, as nats-server accepts from a non-pedantic client
    /// (JetStream clients publish consumer filters such as `orders.>` inside API subjects).
    pub(crate) fn with_wire_matches<R>(
        &self,
        subject: &str,
        f: impl FnOnce(&Matches) -> R,
    ) -> Result<R> {
        self.with_matches_checked(subject, Check::Wire, f)
    }

    /// Like [`with_matches`](Index::with_matches) for a subject already checked as a literal
    /// subject (the reply subject of a publish, answered later): not checked again.
    pub(crate) fn with_checked_matches<R>(
        &self,
        subject: &str,
        f: impl FnOnce(&Matches) -> R,
    ) -> Result<R> {
        self.with_matches_checked(subject, Check::Done, f)
    }

    // Inlined into each caller: the callback then stays in the caller's registers instead of
    // being copied through this frame (a store-forwarding stall on every publish).
    #[inline(always)]
    fn with_matches_checked<R>(
        &self,
        subject: &str,
        check: Check,
        f: impl FnOnce(&Matches) -> R,
    ) -> Result<R> {
        // `f` goes back to the caller's side whenever the private path is not taken.
        let mut f = Some(f);
        let private = LOCAL.try_with(|local| {
            // Borrowed already: a nested call from inside `f`.
            let mut slots = local.try_borrow_mut().ok()?;
            let generation = self.generation.load(Ordering::Acquire);
            let slot = &mut slots[local_slot(subject)];
            let matches = match slot {
                Some(s)
                    if s.index == self.id
                        && s.generation == generation
                        && same_subject(s.matches.subject.as_str(), subject) =>
                {
                    &s.matches
                }
                _ => match self.lookup_checked(subject, check) {
                    Ok(matches) => {
                        &slot
                            .insert(LocalSlot {
                                index: self.id,
                                generation,
                                matches,
                            })
                            .matches
                    }
                    Err(err) => return Some(Err(err)),
                },
            };
            f.take().map(|f| Ok(f(matches)))
        });
        match (private, f) {
            (Ok(Some(result)), _) => result,
            // Nested, or the thread's locals are being destroyed: use the shared cache.
            (_, Some(f)) => self.lookup_checked(subject, check).map(|m| f(&m)),
            // The private path returns `None` only before it takes `f`.
            (_, None) => unreachable!("with_matches consumed its callback without a result"),
        }
    }

    /// Records a miss of `subject`; true when the last miss in its doorkeeper slot was the same
    /// subject (up to a hash collision, which only admits a subject early).
    fn second_miss(&self, subject: &str) -> bool {
        let hash = rustc_hash::FxBuildHasher.hash_one(subject) | 1;
        let misses = self.misses.fetch_add(1, Ordering::Relaxed) as usize;
        let wanted = misses
            .saturating_mul(2)
            .max(DOORKEEPER_MIN)
            .next_power_of_two()
            .min(self.cache_capacity.next_power_of_two());
        let keeper = self.doorkeeper.read();
        if keeper.len() >= wanted {
            let slot = &keeper[hash as usize & (keeper.len() - 1)];
            return slot.swap(hash, Ordering::Relaxed) == hash;
        }
        drop(keeper);
        // Grown (the recent misses it held are forgotten: at worst a subject is admitted one
        // miss later).
        let mut keeper = self.doorkeeper.write();
        if keeper.len() < wanted {
            *keeper = (0..wanted).map(|_| AtomicU64::new(0)).collect();
        }
        keeper[hash as usize & (keeper.len() - 1)].store(hash, Ordering::Relaxed);
        false
    }

    /// Changes on every subscribe and unsubscribe; lets callers keep private caches of
    /// [`lookup`](Index::lookup) results and know when to drop them.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Number of subscriptions.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed) as usize
    }

    /// True when there is no subscription.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of trie nodes, the root included (for tests of pruning).
    pub fn node_count(&self) -> usize {
        self.trie.read().count_nodes()
    }

    /// Number of cached subjects.
    pub fn cached(&self) -> usize {
        self.cache.read().len()
    }

    /// Takes every subscription out of the index (a scope shutting down).
    pub fn drain(&self) -> Vec<Arc<Entry>> {
        let mut all = Vec::new();
        {
            let mut trie = self.trie.write();
            trie.for_each(&mut |e| all.push(e.clone()));
            *trie = TrieNode::default();
            self.generation.fetch_add(1, Ordering::Release);
        }
        self.len.store(0, Ordering::Relaxed);
        self.cache.write().clear();
        all
    }

    /// Drops the shared cache's results that a change of `pattern` affects, then bumps the
    /// generation again so that no thread keeps a result it took from the shared cache before
    /// this invalidation.
    fn invalidate(&self, pattern: &str) {
        {
            let mut cache = self.cache.write();
            if !cache.is_empty() {
                if matches!(subject::check(pattern), Ok(subject::Kind::Literal)) {
                    // A literal pattern matches only itself: one entry, no scan. Inboxes come
                    // and go this way (a JetStream fetch subscribes one per batch).
                    cache.remove(pattern);
                } else {
                    cache.retain(|cached, _| !subject::matches(pattern, cached));
                }
            }
        }
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// Splits matched entries into plain subscriptions and queue groups.
fn group(subject: Subject, found: Vec<Arc<Entry>>) -> Matches {
    let mut plain = Vec::with_capacity(found.len());
    let mut groups: Vec<Vec<Arc<Entry>>> = Vec::new();
    let remote = found.iter().any(|e| !e.local);
    let rings = found
        .iter()
        .map(|e| match &e.buffer {
            Some(Buffer::Fanout(ring)) if e.queue.is_none() => Some(ring.clone()),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default();
    for entry in found {
        match &entry.queue {
            None => plain.push(entry),
            Some(q) => match groups.iter_mut().find(|g| g[0].queue.as_ref() == Some(q)) {
                Some(g) => g.push(entry),
                None => groups.push(vec![entry]),
            },
        }
    }
    Matches {
        subject,
        plain,
        groups,
        remote,
        rings,
    }
}

/// Drops about a quarter of the cache, arbitrary entries (hash order is effectively random).
fn evict(cache: &mut FxHashMap<Subject, Arc<Matches>>) {
    let mut n = cache.len() / 4 + 1;
    cache.retain(|_, _| {
        if n > 0 {
            n -= 1;
            false
        } else {
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Delivery;

    struct Nop;
    impl Target for Nop {
        fn deliver(&self, _: u64, _: &Delivery<'_>) -> bool {
            true
        }
    }

    fn entry(id: u64, pattern: &str, queue: Option<&str>) -> Arc<Entry> {
        let entry = Entry::new(id, pattern, Arc::new(Nop));
        Arc::new(match queue {
            Some(q) => entry.in_queue(q),
            None => entry,
        })
    }

    fn ids(index: &Index, subject: &str) -> Vec<u64> {
        let m = index.lookup(subject).unwrap();
        let mut ids: Vec<u64> = m
            .plain
            .iter()
            .chain(m.groups.iter().flatten())
            .map(|e| e.id)
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn rings_are_listed_only_when_every_match_is_a_plain_ring() {
        use crate::fanout::Fanout;
        use crate::mailbox::DropPolicy;
        use crate::mailbox::Mailbox;
        let with_ring = |id: u64, pattern: &str| {
            let ring = Arc::new(Fanout::new(4));
            let buffer = Buffer::Fanout(ring);
            let entry = Entry::new(id, pattern, Arc::new(buffer.clone()));
            Arc::new(Entry {
                buffer: Some(buffer),
                ..entry
            })
        };
        let with_mailbox = |id: u64, pattern: &str| {
            let mailbox = Arc::new(Mailbox::new(4, DropPolicy::DropNewest));
            let buffer = Buffer::Mailbox(mailbox);
            let entry = Entry::new(id, pattern, Arc::new(buffer.clone()));
            Arc::new(Entry {
                buffer: Some(buffer),
                ..entry
            })
        };
        let index = Index::default();
        index.insert(with_ring(1, "a.b"));
        index.insert(with_ring(2, "a.*"));
        index.insert(Arc::new(
            Arc::into_inner(with_ring(3, "q.b"))
                .unwrap()
                .in_queue("workers"),
        ));
        index.insert(with_ring(4, "q.b"));
        index.insert(entry(5, "t.b", None));
        index.insert(with_ring(6, "t.b"));
        index.insert(with_mailbox(7, "m.b"));
        index.insert(with_ring(8, "m.b"));
        let listed = |s: &str| index.lookup(s).unwrap().rings.len();
        assert_eq!(listed("a.b"), 2, "two plain rings");
        assert_eq!(listed("q.b"), 0, "a queue member takes the general path");
        assert_eq!(
            listed("t.b"),
            0,
            "a target without a buffer takes the general path"
        );
        assert_eq!(
            listed("m.b"),
            0,
            "a subscription's own mailbox takes the general path"
        );
    }

    #[test]
    fn private_cache_slots_spread_subjects_that_differ_anywhere() {
        for make in [
            |i: usize| format!("o.{i}"),
            |i: usize| format!("orders.{i}"),
            |i: usize| format!("orders.{i}.created"),
            |i: usize| format!("metrics.host{i}.cpu.user.total"),
        ] {
            let slots: std::collections::HashSet<_> =
                (0..LOCAL_SLOTS).map(|i| local_slot(&make(i))).collect();
            assert!(
                slots.len() >= LOCAL_SLOTS / 2,
                "{} only {}",
                make(1),
                slots.len()
            );
        }
    }

    #[test]
    fn same_subject_sees_every_byte() {
        for len in 1..=24 {
            let a = "a".repeat(len);
            assert!(same_subject(&a, &a.clone()));
            assert!(!same_subject(&a, &"a".repeat(len + 1)));
            for at in 0..len {
                let mut b = a.clone().into_bytes();
                b[at] = b'b';
                let b = String::from_utf8(b).unwrap();
                assert!(!same_subject(&a, &b), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn wildcards_match_as_nats() {
        let index = Index::default();
        index.insert(entry(1, "a.b.c", None));
        index.insert(entry(2, "a.*.c", None));
        index.insert(entry(3, "a.>", None));
        index.insert(entry(4, ">", None));
        index.insert(entry(5, "*.*", None));
        assert_eq!(ids(&index, "a.b.c"), [1, 2, 3, 4]);
        assert_eq!(ids(&index, "a.b"), [3, 4, 5]);
        assert_eq!(ids(&index, "a"), [4]);
        assert_eq!(ids(&index, "x.y.z"), [4]);
    }

    #[test]
    fn cache_follows_changes() {
        let index = Index::default();
        assert!(index.lookup("a.b").unwrap().is_empty());
        assert_eq!(index.cached(), 0, "admitted on its second miss");
        index.insert(entry(1, "a.*", None));
        assert_eq!(ids(&index, "a.b"), [1]);
        assert_eq!(index.cached(), 1);
        index.insert(entry(2, "x.y", None)); // unrelated: cached entry survives
        assert_eq!(index.cached(), 1);
        index.remove("a.*", 1).unwrap();
        assert_eq!(index.cached(), 0);
        assert!(ids(&index, "a.b").is_empty());
    }

    #[test]
    fn thread_cache_follows_changes() {
        let index = Index::default();
        let other = Index::default();
        let count = |index: &Index, s: &str| index.with_matches(s, |m| m.plain.len()).unwrap();
        assert_eq!(count(&index, "a.b"), 0);
        index.insert(entry(1, "a.*", None));
        assert_eq!(count(&index, "a.b"), 1);
        assert_eq!(count(&other, "a.b"), 0, "slots are per index");
        index.insert(entry(2, "a.b", None));
        assert_eq!(count(&index, "a.b"), 2);
        index.remove("a.*", 1).unwrap();
        assert_eq!(count(&index, "a.b"), 1);
        assert!(index.with_matches("a.*", |_| ()).is_err());
        // A nested call from inside the callback takes the shared path.
        let nested = index.with_matches("a.b", |_| count(&index, "a.b")).unwrap();
        assert_eq!(nested, 1);
    }

    #[test]
    fn queue_members_are_grouped_by_name() {
        let index = Index::default();
        index.insert(entry(1, "jobs.>", Some("w")));
        index.insert(entry(2, "jobs.*", Some("w")));
        index.insert(entry(3, "jobs.*", Some("v")));
        index.insert(entry(4, "jobs.a", None));
        let m = index.lookup("jobs.a").unwrap();
        assert_eq!(m.plain.len(), 1);
        let mut sizes: Vec<usize> = m.groups.iter().map(Vec::len).collect();
        sizes.sort();
        assert_eq!(sizes, [1, 2]);
    }

    #[test]
    fn removal_prunes_nodes() {
        let index = Index::default();
        for round in 0..100u64 {
            index.insert(entry(round, &format!("a.{round}.*.>"), None));
            index.insert(entry(1000 + round, "a.b", None));
            index.remove(&format!("a.{round}.*.>"), round).unwrap();
            index.remove("a.b", 1000 + round).unwrap();
        }
        assert_eq!(index.node_count(), 1);
        assert!(index.is_empty());
        assert!(index.remove("a.b", 7).is_none());
    }

    #[test]
    fn cache_is_bounded() {
        let index = Index::with_cache_capacity(64);
        index.insert(entry(1, ">", None));
        for i in 0..1000 {
            assert_eq!(ids(&index, &format!("s.{i}")), [1]);
        }
        assert!(index.cached() <= 64);
    }

    #[test]
    fn one_shot_subjects_do_not_evict_repeated_ones() {
        let index = Index::with_cache_capacity(64);
        index.insert(entry(1, ">", None));
        for _ in 0..2 {
            assert_eq!(ids(&index, "hot"), [1]);
        }
        for i in 0..10_000 {
            assert_eq!(ids(&index, &format!("_INBOX.{i}")), [1]);
        }
        assert_eq!(index.cached(), 1, "only the repeated subject is cached");
        assert!(index.cache.read().contains_key("hot"));
    }

    #[test]
    fn invalid_subjects_are_refused() {
        let index = Index::default();
        assert!(index.lookup("a.*").is_err());
        assert!(index.lookup("a..b").is_err());
        assert_eq!(index.cached(), 0);
    }
}
