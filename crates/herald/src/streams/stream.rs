//! One stream: the capture target that feeds its log writer, publish acks, de-duplication and
//! confirm-N.
//!
//! Capture is the router's fan-out: the stream subscribes its subject patterns with a
//! [`Target`] whose `deliver` copies the message and queues it on the stream's [`Writer`]. The
//! writer's completion (after the fsync the policy asks for; on the writer's thread, or on a
//! connection's reader that appended its small batch in place, see [`Kick`]) answers the
//! publisher, records the message id, and wakes the consumers that follow the stream. A publisher in this process
//! ([`Streams::publish`](super::Streams::publish)) is answered on a channel; one on the
//! network through the installed [`Answers`] (the JetStream adapter's PubAck), if any. Consumers only read up to the
//! `committed` watermark, so they never see a message before its publisher could have been
//! acknowledged, and a confirm-N waiter is registered before any consumer can ack.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use herald_log::{Entry, Fsync, Log, Writer};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, oneshot};

use super::config::StreamConfig;
use super::error::{Error, Reason, Result};
use super::info::PubAck;
use crate::scope::{Scope, Sink};
use crate::target::{Delivery, Target};
use crate::time::now_nanos;

/// Header asking the stream to acknowledge only once this many distinct consumers acked.
pub const CONFIRM_HEADER: &str = "Herald-Confirm";
/// Header bounding the wait for [`CONFIRM_HEADER`], in milliseconds (default 5000).
pub const CONFIRM_TIMEOUT_HEADER: &str = "Herald-Confirm-Timeout";
const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// How captured publishes from the network are answered on their reply subject. The JetStream
/// adapter installs its PubAck JSON; without it, such publishes are stored unanswered.
pub(crate) trait Answers: Send + Sync + 'static {
    /// `stream` stored the message as `seq` (or had it already, if `duplicate`).
    fn ack(&self, scope: &Scope, reply: &str, stream: &str, seq: u64, duplicate: bool);
    /// `stream` refused the message.
    fn error(&self, scope: &Scope, reply: &str, stream: &str, err: &Error);
}

/// What a store shares with its streams: the network answers, and the publishers of this
/// process waiting for their acks.
pub(crate) struct Hooks {
    pub(crate) answers: std::sync::OnceLock<Arc<dyn Answers>>,
    /// Set while the JetStream adapter serves this store.
    pub(crate) served: AtomicBool,
    /// How this store's reply tokens start: `_HERALD.PUBACK.<random>.`, so that no other
    /// store (in this process or on another node) takes one for its own.
    prefix: String,
    /// Publishes of this process, by the reply token they were published with.
    local: Mutex<HashMap<String, oneshot::Sender<Result<PubAck>>>>,
    next_token: AtomicU64,
}

impl Hooks {
    pub(crate) fn new() -> Hooks {
        Hooks {
            answers: std::sync::OnceLock::new(),
            served: AtomicBool::new(false),
            prefix: format!("_HERALD.PUBACK.{:016x}.", fastrand::u64(..)),
            local: Mutex::default(),
            next_token: AtomicU64::new(0),
        }
    }

    /// A reply token for a publish of this process, and where its ack will arrive.
    pub(crate) fn register(&self) -> (String, oneshot::Receiver<Result<PubAck>>) {
        let n = self.next_token.fetch_add(1, Ordering::Relaxed);
        let token = format!("{}{n}", self.prefix);
        let (tx, rx) = oneshot::channel();
        self.local.lock().insert(token.clone(), tx);
        (token, rx)
    }

    /// Forgets a token whose publish gave up waiting.
    pub(crate) fn forget(&self, token: &str) {
        self.local.lock().remove(token);
    }

    /// Who hears how the publish with `reply` went.
    fn done_for(&self, reply: Option<&str>, no_ack: bool) -> Done {
        match reply {
            Some(r) if r.starts_with(&self.prefix) => self
                .local
                .lock()
                .remove(r)
                .map_or(Done::Nobody, Done::Local),
            Some(r) if !no_ack => Done::Reply(r.to_owned()),
            _ => Done::Nobody,
        }
    }
}

/// Who hears how a captured publish went.
pub(crate) enum Done {
    /// Nobody: no reply subject, or the stream does not ack.
    Nobody,
    /// A network publisher, through the installed [`Answers`].
    Reply(String),
    /// A call of this process.
    Local(oneshot::Sender<Result<PubAck>>),
}

/// A published message as a stream admits it.
pub(crate) struct Incoming<'a> {
    pub(crate) subject: &'a str,
    pub(crate) reply: Option<&'a str>,
    pub(crate) headers: Option<&'a [u8]>,
    pub(crate) payload: &'a [u8],
}

/// Where a replicated stream's captured publishes go instead of straight to its writer: its
/// Raft group, which has every replica admit them ([`Stream::admit`]) once a majority holds
/// them.
pub(crate) trait Propose: Send + Sync + 'static {
    /// Takes one captured publish; false if it cannot (the stream is going away).
    fn propose(&self, msg: &Delivery<'_>) -> bool;
    /// Takes a durable consumer's saved state (JSON; `None`: the consumer is deleted), for
    /// the other replicas to keep.
    fn consumer(&self, name: &str, saved: Option<Vec<u8>>);
}

/// A stream and what runs for it.
pub(crate) struct Stream {
    pub(crate) name: String,
    pub(crate) config: Mutex<StreamConfig>,
    /// Creation time, ns since the epoch.
    pub(crate) created: u64,
    pub(crate) dir: PathBuf,
    pub(crate) writer: Writer<Pending>,
    /// The highest sequence whose append completed: what consumers may read.
    committed: AtomicU64,
    pub(crate) scope: Arc<Scope>,
    dedup: Mutex<Dedup>,
    /// Messages with a `Nats-TTL`: (when they expire, ns since the epoch; sequence).
    ttls: Mutex<std::collections::BTreeSet<(u64, u64)>>,
    confirms: Mutex<BTreeMap<u64, Confirm>>,
    /// How many entries `confirms` has (kept under its lock): an ack skips the lock when 0.
    confirming: AtomicUsize,
    /// Woken whenever `committed` rises: the timer tasks of the stream's consumers.
    followers: RwLock<Vec<Arc<Notify>>>,
    /// Index entries this stream holds in its scope: (pattern, id).
    subscriptions: Mutex<Vec<(Arc<str>, u64)>>,
    pub(crate) closed: AtomicBool,
    hooks: Arc<Hooks>,
    /// Set on a replica of a replicated stream: its Raft group.
    pub(crate) replication: std::sync::OnceLock<Arc<dyn Propose>>,
    /// What the consumers take, for interest retention: a message none of them takes is
    /// not kept (see [`Takers`]).
    takers: RwLock<Takers>,
    /// Stores what a reader's burst queued on the writer (see [`Kick`]).
    kick: Arc<Kick>,
    /// Set when the consumer states kept in the stream's directory change (a replica applies
    /// one its group replicated, or stops leading): a following replica's retention reads
    /// them again.
    pub(crate) states_changed: AtomicBool,
}

/// The subjects the consumers of a stream take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Takers {
    /// Not known (the consumers are not loaded: the stream was just opened, or a replica
    /// does not lead): everything is kept.
    Unknown,
    /// Some consumer takes every subject.
    All,
    /// Only these patterns (none: there is no consumer).
    Patterns(Vec<String>),
}

impl Takers {
    /// What consumers with these filters take (a consumer without filters takes all).
    pub(crate) fn of<'a>(filters: impl IntoIterator<Item = &'a [String]>) -> Takers {
        let mut patterns = Vec::new();
        for filter in filters {
            if filter.is_empty() {
                return Takers::All;
            }
            patterns.extend(filter.iter().cloned());
        }
        Takers::Patterns(patterns)
    }

    fn take(&self, subject: &str) -> bool {
        match self {
            Takers::Unknown | Takers::All => true,
            Takers::Patterns(patterns) => {
                patterns.iter().any(|p| crate::subject::matches(p, subject))
            }
        }
    }
}

/// What a reader's batch wakes, when it closes, for the messages it queued on a stream's
/// writer: appended there and then if the writer is idle and they are few (a lone publisher
/// waiting for its ack gets it without two thread wake-ups), by the writer thread otherwise.
struct Kick(Weak<Stream>);

impl crate::batch::Wake for Kick {
    fn wake(&self) {
        if let Some(stream) = self.0.upgrade() {
            stream.writer.kick();
        }
    }
}

/// A publish waiting for confirm-N.
struct Confirm {
    done: Done,
    need: usize,
    by: Vec<Arc<str>>,
    deadline: Instant,
}

/// What a capture leaves with a message for the writer's completion.
pub(crate) struct Pending {
    done: Done,
    msg_id: Option<String>,
    confirm: Option<(usize, Duration)>,
    /// Its own time to live (`Nats-TTL`).
    ttl: Option<Duration>,
    /// What to publish again once it is stored (a republish rule took it).
    republish: Option<Box<Republished>>,
    /// Stored only to be deleted at once: no consumer of an interest stream takes it (its
    /// publisher still gets its sequence, as from nats-server).
    unwanted: bool,
}

/// A stored message to publish again: where, and its parts.
struct Republished {
    destination: String,
    subject: String,
    headers: Option<Vec<u8>>,
    payload: bytes::Bytes,
    timestamp: u64,
    headers_only: bool,
}

/// Message ids seen within the duplicate window.
#[derive(Default)]
struct Dedup {
    ids: HashMap<String, Seen>,
    /// (timestamp ns, id) in arrival order, for pruning.
    order: VecDeque<(u64, String)>,
}

enum Seen {
    /// Being written; later publishers of the same id wait here for its sequence.
    InFlight(Vec<Done>),
    Stored(u64),
}

impl Stream {
    /// A stream over an opened writer whose last stored sequence is `last`.
    pub(crate) fn new(
        config: StreamConfig,
        created: u64,
        dir: PathBuf,
        log: Log,
        fsync: Fsync,
        scope: Arc<Scope>,
        hooks: Arc<Hooks>,
    ) -> Arc<Stream> {
        let last = log.next_seq() - 1;
        let stream = Arc::new_cyclic(|me: &Weak<Stream>| Stream {
            writer: Writer::spawn(log, fsync, {
                let me = me.clone();
                move |batch| {
                    if let Some(stream) = me.upgrade() {
                        // The acks of a batch leave together, written in place where they can.
                        let _batch = crate::batch::Batch::flushing();
                        for (result, pending) in batch {
                            stream.stored(result, pending);
                        }
                    }
                }
            }),
            hooks,
            name: config.name.clone(),
            config: Mutex::new(config),
            created,
            dir,
            committed: AtomicU64::new(last),
            scope,
            dedup: Mutex::default(),
            ttls: Mutex::default(),
            confirms: Mutex::default(),
            confirming: AtomicUsize::new(0),
            followers: RwLock::default(),
            subscriptions: Mutex::default(),
            closed: AtomicBool::new(false),
            replication: std::sync::OnceLock::new(),
            takers: RwLock::new(Takers::Unknown),
            kick: Arc::new(Kick(me.clone())),
            states_changed: AtomicBool::new(true),
        });
        stream.recover_dedup();
        stream.recover_ttls();
        stream
    }

    /// Sets what the stream's consumers take (the store calls it whenever they change, one
    /// change at a time).
    pub(crate) fn set_takers(&self, takers: Takers) {
        *self.takers.write() = takers;
    }

    /// Subscribes the stream's subjects in its scope: what is published there is captured.
    pub(crate) fn subscribe(self: &Arc<Self>) -> crate::Result<()> {
        let subjects = self.config.lock().subjects.clone();
        let capture: Arc<dyn Target> = Arc::new(Capture(Arc::downgrade(self)));
        let mut subs = self.subscriptions.lock();
        for pattern in &subjects {
            let entry =
                self.scope
                    .add(pattern, None, 0, 0, Sink::Target(capture.clone()), false)?;
            subs.push((entry.pattern.clone(), entry.id));
        }
        Ok(())
    }

    /// Removes every subscription of the stream from its scope.
    /// Whether the stream captures its subjects now.
    pub(crate) fn capturing(&self) -> bool {
        !self.subscriptions.lock().is_empty()
    }

    pub(crate) fn unsubscribe(&self) {
        for (pattern, id) in self.subscriptions.lock().drain(..) {
            self.scope.remove(&pattern, id);
        }
    }

    /// The highest sequence consumers may read.
    pub(crate) fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Messages up to `last` were stored straight into the log (a replica caught up from
    /// another copy): readable now, and their message ids in the duplicate window.
    pub(crate) fn caught_up(&self, last: u64) {
        self.recover_dedup();
        self.appended(last);
    }

    /// Messages up to `last` were written to the log directly (not through the writer's
    /// queue, as a mirror's are): they are readable now.
    pub(crate) fn appended(&self, last: u64) {
        self.committed.fetch_max(last, Ordering::AcqRel);
        for follower in self.followers.read().iter() {
            follower.notify_one();
        }
    }

    /// Wakes `notify` whenever messages become readable, until [`unfollow`](Stream::unfollow).
    pub(crate) fn follow(&self, notify: &Arc<Notify>) {
        self.followers.write().push(notify.clone());
    }

    /// Stops waking `notify`.
    pub(crate) fn unfollow(&self, notify: &Arc<Notify>) {
        self.followers.write().retain(|n| !Arc::ptr_eq(n, notify));
    }

    /// Takes a published message: hands it to the stream's Raft group when it is replicated
    /// (the group admits it on every replica once a majority has it), else admits it now.
    fn capture(self: &Arc<Self>, msg: &Delivery<'_>) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        if let Some(group) = self.replication.get() {
            return group.propose(msg);
        }
        let incoming = Incoming {
            subject: msg.subject(),
            reply: msg.reply(),
            headers: msg.header_block(),
            payload: msg.payload(),
        };
        self.admit(&incoming, now_nanos(), true)
    }

    /// Checks a published message and queues it for the writer, stamped `now` (ns since the
    /// epoch). With `answer` false (a replica applying what another proposed), nobody is
    /// answered and nothing is republished: the proposer does both. The checks depend only
    /// on `now` and on what the stream holds, so every replica decides alike.
    pub(crate) fn admit(self: &Arc<Self>, msg: &Incoming<'_>, now: u64, answer: bool) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        let mut msg_id = None;
        let mut confirm: Option<(usize, Duration)> = None;
        let mut expect = herald_log::Expect::default();
        let mut ttl = None;
        // One look at the config per message (the rule is cloned only when there is one).
        let (max_msg_size, no_ack, window, allow_rollup, allow_ttl, sealed, rule, interest) = {
            let c = self.config.lock();
            let rollup = c.allow_rollup && !c.deny_purge;
            (
                c.max_message_size,
                c.no_ack,
                c.window(),
                rollup,
                c.allow_msg_ttl,
                c.sealed,
                c.republish.clone(),
                c.retention == super::config::Retention::Interest,
            )
        };
        let done = if answer {
            self.hooks.done_for(msg.reply, no_ack)
        } else {
            Done::Nobody
        };
        if sealed {
            return self.refuse(
                done,
                Error::new(Reason::Sealed, "invalid operation on sealed stream"),
            );
        }
        if let Some(block) = msg.headers
            && let Ok(headers) = herald_proto::headers::parse(block)
        {
            for &(name, value) in &headers.fields {
                match name {
                    "Nats-Msg-Id" if !value.is_empty() => msg_id = Some(value),
                    "Nats-Expected-Stream" if value != self.name => {
                        return self.refuse(
                            done,
                            Error::new(Reason::ExpectedStream, "expected stream does not match"),
                        );
                    }
                    CONFIRM_HEADER => {
                        match value.trim().parse::<usize>() {
                            Ok(n) => {
                                let timeout = confirm.map_or(DEFAULT_CONFIRM_TIMEOUT, |c| c.1);
                                confirm = Some((n, timeout));
                            }
                            Err(_) => {
                                return self.refuse(done, Error::bad_request(format!(
                                "{CONFIRM_HEADER} must be a number of consumers, not {value:?}"
                            )));
                            }
                        }
                    }
                    CONFIRM_TIMEOUT_HEADER => {
                        match value.trim().parse::<u64>() {
                            Ok(ms) => {
                                let timeout = Duration::from_millis(ms);
                                confirm = Some((confirm.map_or(0, |c| c.0), timeout));
                            }
                            Err(_) => {
                                return self.refuse(done, Error::bad_request(format!(
                                "{CONFIRM_TIMEOUT_HEADER} must be milliseconds, not {value:?}"
                            )));
                            }
                        }
                    }
                    "Nats-Expected-Last-Sequence" | "Nats-Expected-Last-Subject-Sequence" => {
                        let Ok(seq) = value.trim().parse::<u64>() else {
                            return self.refuse(
                                done,
                                Error::bad_request(format!("{name} must be a sequence number")),
                            );
                        };
                        if name == "Nats-Expected-Last-Sequence" {
                            expect.last_seq = Some(seq);
                        } else {
                            expect.last_subject_seq = Some(seq);
                        }
                    }
                    "Nats-Rollup" => {
                        if !allow_rollup {
                            return self.refuse(
                                done,
                                Error::new(Reason::RollupDenied, "rollup not permitted"),
                            );
                        }
                        expect.rollup = match value.trim() {
                            "sub" => herald_log::Rollup::Subject,
                            "all" => herald_log::Rollup::All,
                            _ => {
                                return self.refuse(
                                    done,
                                    Error::new(Reason::RollupDenied, "rollup value invalid"),
                                );
                            }
                        };
                    }
                    "Nats-Expected-Last-Msg-Id" => {
                        expect.last_header =
                            Some(("Nats-Msg-Id".to_owned(), value.trim().to_owned()));
                    }
                    "Nats-TTL" => {
                        if !allow_ttl {
                            return self.refuse(
                                done,
                                Error::new(Reason::MessageTtl, "per-message TTL is disabled"),
                            );
                        }
                        match parse_ttl(value) {
                            Some(parsed) => ttl = parsed,
                            None => {
                                return self.refuse(
                                    done,
                                    Error::new(
                                        Reason::MessageTtlInvalid,
                                        "invalid per-message TTL",
                                    ),
                                );
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        let headers = msg.headers.unwrap_or_default();
        let size = headers.len() + msg.payload.len();
        if max_msg_size.is_some_and(|max| size as u64 > max) {
            return self.refuse(done, Error::message_too_large());
        }
        // `discard: new` is the log's to enforce: it checks each message as it appends, so
        // a burst in flight cannot pass a check together and push stored messages out.
        if let Some(id) = msg_id {
            let mut dedup = self.dedup.lock();
            dedup.prune(now, window.as_nanos() as u64);
            match dedup.ids.get_mut(id) {
                Some(Seen::Stored(seq)) => {
                    let seq = *seq;
                    drop(dedup);
                    self.answer_ack(done, seq, true);
                    return true;
                }
                Some(Seen::InFlight(waiters)) => {
                    waiters.push(done);
                    return true;
                }
                None => {
                    dedup.ids.insert(id.to_owned(), Seen::InFlight(Vec::new()));
                    dedup.order.push_back((now, id.to_owned()));
                }
            }
        }
        let entry = Entry {
            subject: msg.subject,
            headers,
            payload: msg.payload,
            timestamp: now,
        };
        let republish = rule.as_ref().filter(|_| answer).and_then(|rule| {
            let destination = super::republish::destination(rule, msg.subject)?;
            Some(Box::new(Republished {
                destination,
                subject: msg.subject.to_owned(),
                headers: msg.headers.map(<[u8]>::to_vec),
                payload: if rule.headers_only {
                    bytes::Bytes::new()
                } else {
                    bytes::Bytes::copy_from_slice(msg.payload)
                },
                timestamp: now,
                headers_only: rule.headers_only,
            }))
        });
        let size_for_republish = msg.payload.len();
        // Decided as the message is admitted, where the consumers run (the replicas of a
        // replicated stream keep the message until they lead, as they do for acknowledged
        // ones).
        let unwanted = interest && answer && !self.takers.read().take(msg.subject);
        let pending = Pending {
            done,
            msg_id: msg_id.map(str::to_owned),
            confirm,
            ttl,
            unwanted,
            republish: republish.map(|mut r| {
                if r.headers_only {
                    // The payload's size goes in a header instead.
                    r.payload = bytes::Bytes::from(size_for_republish.to_string());
                }
                r
            }),
        };
        let expect = (expect != herald_log::Expect::default()).then_some(expect);
        let queued = if crate::batch::Batch::is_open() {
            // A reader's burst: the writer is kicked once, when the burst ends.
            self.writer
                .append_deferred(&entry, expect, pending)
                .map(|owed| {
                    if owed {
                        crate::batch::Batch::wake(&self.kick);
                    }
                })
        } else {
            match expect {
                None => self.writer.append(&entry, pending),
                Some(expect) => self.writer.append_expecting(&entry, expect, pending),
            }
        };
        if let Err(pending) = queued {
            let stopped = herald_log::Error::Io {
                path: self.dir.clone(),
                source: std::io::Error::other("the stream's log writer is not running"),
            };
            self.stored(Err(stopped), pending);
        }
        true
    }

    /// The writer's completion for one message (on the writer thread, or a reader's).
    fn stored(&self, result: herald_log::Result<u64>, pending: Pending) {
        let Pending {
            done,
            msg_id,
            confirm,
            ttl,
            republish,
            unwanted,
        } = pending;
        let waiters = msg_id.and_then(|id| {
            let mut dedup = self.dedup.lock();
            match &result {
                Ok(seq) => dedup.ids.insert(id, Seen::Stored(*seq)),
                Err(_) => dedup.ids.remove(&id),
            }
        });
        let waiters = match waiters {
            Some(Seen::InFlight(waiters)) => waiters,
            _ => Vec::new(),
        };
        match result {
            Ok(seq) => {
                // Deleted before any consumer can see it.
                if unwanted && let Err(err) = self.writer.log().delete(seq, false) {
                    tracing::error!(stream = %self.name, seq, %err, "cannot remove a message no consumer takes");
                }
                if let Some(ttl) = ttl {
                    let at = now_nanos().saturating_add(ttl.as_nanos() as u64);
                    self.ttls.lock().insert((at, seq));
                }
                if let Some(republish) = republish {
                    self.republish(*republish, seq);
                }
                // A confirm-N waiter is in place before any consumer can see the message, and
                // the message is visible before its publisher hears of it.
                let ack_now = match (done, confirm) {
                    (done @ (Done::Reply(_) | Done::Local(_)), Some((need, timeout)))
                        if need > 0 =>
                    {
                        let mut confirms = self.confirms.lock();
                        confirms.insert(
                            seq,
                            Confirm {
                                done,
                                need,
                                by: Vec::new(),
                                deadline: Instant::now() + timeout,
                            },
                        );
                        // Before `committed` is raised below: a consumer that sees the
                        // message sees this count too.
                        self.confirming.store(confirms.len(), Ordering::Release);
                        None
                    }
                    (done, _) => Some(done),
                };
                self.committed.fetch_max(seq, Ordering::AcqRel);
                for waiter in waiters {
                    self.answer_ack(waiter, seq, true);
                }
                if let Some(done) = ack_now {
                    self.answer_ack(done, seq, false);
                }
                for follower in self.followers.read().iter() {
                    follower.notify_one();
                }
            }
            Err(err) => {
                if !matches!(
                    err,
                    herald_log::Error::Full(_)
                        | herald_log::Error::WrongLastSequence(_)
                        | herald_log::Error::WrongLastHeader(_)
                ) {
                    tracing::error!(stream = %self.name, %err, "cannot store a message");
                }
                let err = Error::from_append(&err);
                for waiter in waiters.into_iter().chain([done]) {
                    self.answer(waiter, Err(err.clone()));
                }
            }
        }
    }

    /// A consumer acknowledged `seq`: counts it for a confirm-N publish waiting on it.
    pub(crate) fn confirmed_by(&self, seq: u64, consumer: &Arc<str>) {
        if self.confirming.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut confirms = self.confirms.lock();
        let Some(c) = confirms.get_mut(&seq) else {
            return;
        };
        if !c.by.contains(consumer) {
            c.by.push(consumer.clone());
        }
        if c.by.len() >= c.need
            && let Some(c) = confirms.remove(&seq)
        {
            self.confirming.store(confirms.len(), Ordering::Release);
            drop(confirms);
            self.answer_ack(c.done, seq, false);
        }
    }

    /// Periodic work: confirm-N timeouts, max age, the duplicate window.
    pub(crate) fn tick(&self) {
        let now = Instant::now();
        let expired: Vec<(u64, Confirm)> = {
            let mut confirms = self.confirms.lock();
            let due: Vec<u64> = confirms
                .iter()
                .filter(|(_, c)| c.deadline <= now)
                .map(|(seq, _)| *seq)
                .collect();
            let expired = due
                .into_iter()
                .filter_map(|seq| confirms.remove(&seq).map(|c| (seq, c)))
                .collect();
            self.confirming.store(confirms.len(), Ordering::Release);
            expired
        };
        for (seq, c) in expired {
            let err = Error::new(
                Reason::ConfirmTimeout,
                format!(
                    "message {seq} was confirmed by {} of {} consumers before the timeout",
                    c.by.len(),
                    c.need
                ),
            );
            self.answer(c.done, Err(err));
        }
        let now_ns = now_nanos();
        let removed = self.writer.log().expire(now_ns);
        if let Err(err) = removed {
            tracing::error!(stream = %self.name, %err, "cannot delete expired messages");
        }
        self.expire_ttls(now_ns);
        let window = self.config.lock().window().as_nanos() as u64;
        self.dedup.lock().prune(now_ns, window);
    }

    /// Appends a message copied from another stream (a mirror's or a source's), unanswered.
    pub(crate) fn append_copy(
        &self,
        subject: &str,
        headers: &[u8],
        payload: &[u8],
        timestamp: u64,
    ) {
        if self.config.lock().sealed {
            return;
        }
        let entry = Entry {
            subject,
            headers,
            payload,
            timestamp,
        };
        let pending = Pending {
            done: Done::Nobody,
            msg_id: None,
            confirm: None,
            ttl: None,
            republish: None,
            unwanted: false,
        };
        if let Err(pending) = self.writer.append(&entry, pending) {
            let stopped = herald_log::Error::Io {
                path: self.dir.clone(),
                source: std::io::Error::other("the stream's log writer is not running"),
            };
            self.stored(Err(stopped), pending);
        }
    }

    /// Publishes stored message `seq` again as its republish rule says.
    fn republish(&self, r: Republished, seq: u64) {
        let mut headers = crate::message::HeaderMap::new();
        if let Some(block) = &r.headers
            && let Ok(parsed) = herald_proto::headers::parse(block)
        {
            for &(name, value) in &parsed.fields {
                let _ = headers.append(name, value);
            }
        }
        // As every other Nats-Time-Stamp herald writes (Go's RFC3339Nano, as nats-server).
        let stamp = crate::time::rfc3339(crate::time::from_unix_nanos(r.timestamp));
        let fields = [
            ("Nats-Stream", self.name.clone()),
            ("Nats-Subject", r.subject.clone()),
            ("Nats-Sequence", seq.to_string()),
            ("Nats-Time-Stamp", stamp),
            ("Nats-Last-Sequence", (seq - 1).to_string()),
        ];
        for (name, value) in fields {
            let _ = headers.insert(name, &value);
        }
        let payload = if r.headers_only {
            let _ = headers.insert("Nats-Msg-Size", &String::from_utf8_lossy(&r.payload));
            bytes::Bytes::new()
        } else {
            r.payload
        };
        if let Err(err) = self.scope.send(
            &r.destination,
            None,
            Some(headers),
            payload,
            crate::dispatch::Reach::All,
        ) {
            tracing::debug!(stream = %self.name, %err, "cannot republish a message");
        }
    }

    /// Deletes the messages whose own TTL ran out by `now` (ns since the epoch).
    fn expire_ttls(&self, now: u64) {
        let due: Vec<u64> = {
            let mut ttls = self.ttls.lock();
            let mut due = Vec::new();
            while let Some(&(at, seq)) = ttls.first() {
                if at > now {
                    break;
                }
                ttls.pop_first();
                due.push(seq);
            }
            due
        };
        if due.is_empty() {
            return;
        }
        let mut log = self.writer.log();
        for seq in due {
            if let Err(err) = log.delete(seq, false) {
                tracing::error!(stream = %self.name, seq, %err, "cannot delete an expired message");
            }
        }
    }

    /// Reads the TTLs of kept messages back after a restart (streams that allow them).
    fn recover_ttls(&self) {
        if !self.config.lock().allow_msg_ttl {
            return;
        }
        let log = self.writer.log();
        let mut ttls = self.ttls.lock();
        let scanned = log.scan_with_headers(0, |view| {
            if let Ok(headers) = herald_proto::headers::parse(view.entry.headers)
                && let Some((_, value)) = headers.fields.iter().find(|(n, _)| *n == "Nats-TTL")
                && let Some(Some(ttl)) = parse_ttl(value)
            {
                let at = view.entry.timestamp.saturating_add(ttl.as_nanos() as u64);
                ttls.insert((at, view.seq));
            }
            true
        });
        if let Err(err) = scanned {
            tracing::error!(stream = %self.name, %err, "cannot read message TTLs back");
        }
    }

    /// Rebuilds the duplicate window from the log after a restart.
    fn recover_dedup(&self) {
        let window = self.config.lock().window().as_nanos() as u64;
        let now = now_nanos();
        let log = self.writer.log();
        let from = log.seq_for_time(now.saturating_sub(window));
        let mut dedup = self.dedup.lock();
        let scanned = log.scan_with_headers(from, |view| {
            if let Ok(headers) = herald_proto::headers::parse(view.entry.headers)
                && let Some((_, id)) = headers.fields.iter().find(|(n, _)| *n == "Nats-Msg-Id")
            {
                dedup.ids.insert((*id).to_owned(), Seen::Stored(view.seq));
                dedup
                    .order
                    .push_back((view.entry.timestamp, (*id).to_owned()));
            }
            true
        });
        if let Err(err) = scanned {
            tracing::error!(stream = %self.name, %err, "cannot read message ids back; duplicates may be stored");
        }
    }

    /// Refuses a captured message: `done` hears why. The message was still captured (the
    /// capture target took it).
    fn refuse(&self, done: Done, err: Error) -> bool {
        self.answer(done, Err(err));
        true
    }

    /// Tells `done` that the message is stored as `seq`.
    fn answer_ack(&self, done: Done, seq: u64, duplicate: bool) {
        match done {
            Done::Nobody => {}
            Done::Reply(reply) => {
                if let Some(answers) = self.hooks.answers.get() {
                    answers.ack(&self.scope, &reply, &self.name, seq, duplicate);
                }
            }
            Done::Local(tx) => {
                let _ = tx.send(Ok(PubAck {
                    stream: self.name.clone(),
                    seq,
                    duplicate,
                }));
            }
        }
    }

    /// Tells `done` how the publish went.
    fn answer(&self, done: Done, outcome: Result<PubAck>) {
        match (done, outcome) {
            (done, Ok(ack)) => self.answer_ack(done, ack.seq, ack.duplicate),
            (Done::Nobody, Err(_)) => {}
            (Done::Reply(reply), Err(err)) => {
                if let Some(answers) = self.hooks.answers.get() {
                    answers.error(&self.scope, &reply, &self.name, &err);
                }
            }
            (Done::Local(tx), Err(err)) => {
                let _ = tx.send(Err(err));
            }
        }
    }
}

impl Dedup {
    /// Forgets stored ids older than the window.
    fn prune(&mut self, now: u64, window: u64) {
        let cutoff = now.saturating_sub(window);
        while let Some((ts, _)) = self.order.front() {
            if *ts >= cutoff {
                break;
            }
            if let Some((_, id)) = self.order.pop_front()
                && matches!(self.ids.get(&id), Some(Seen::Stored(_)))
            {
                self.ids.remove(&id);
            }
        }
    }
}

/// The stream's capture subscription: every message on its subjects goes to the writer.
struct Capture(Weak<Stream>);

impl Target for Capture {
    fn deliver(&self, _sid: u64, msg: &Delivery<'_>) -> bool {
        match self.0.upgrade() {
            Some(stream) => stream.capture(msg),
            None => false,
        }
    }
}

/// A `Nats-TTL` value: seconds, or a duration such as `1h30m` or `500ms` (at least a second);
/// `never` is kept forever (`Some(None)`). `None` when it is none of these.
fn parse_ttl(value: &str) -> Option<Option<Duration>> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("never") {
        return Some(None);
    }
    let ttl = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(value).ok()?,
    };
    (ttl >= Duration::from_secs(1)).then_some(Some(ttl))
}
