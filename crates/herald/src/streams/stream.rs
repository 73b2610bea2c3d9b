//! One stream: the capture target that feeds its log writer, publish acks, de-duplication and
//! confirm-N.
//!
//! Capture is the router's fan-out: the stream subscribes its subject patterns with a
//! [`Target`] whose `deliver` copies the message and queues it on the stream's [`Writer`]. The
//! writer's completion (on its thread, after the fsync the policy asks for) answers the
//! publisher, records the message id, and wakes the consumers. Consumers only read up to the
//! `committed` watermark, so they never see a message before its publisher could have been
//! acknowledged, and a confirm-N waiter is registered before any consumer can ack.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_log::{Entry, Fsync, Log, Writer};
use parking_lot::{Mutex, RwLock};

use super::config::{ApiError, StreamConfig};
use super::consumer::Consumer;
use super::now_ns;
use crate::router::{Reach, Scope, Sink};
use crate::target::{Delivery, Target};

/// Header asking the stream to acknowledge only once this many distinct consumers acked.
pub const CONFIRM_HEADER: &str = "Herald-Confirm";
/// Header bounding the wait for [`CONFIRM_HEADER`], in milliseconds (default 5000).
pub const CONFIRM_TIMEOUT_HEADER: &str = "Herald-Confirm-Timeout";
const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

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
    confirms: Mutex<BTreeMap<u64, Confirm>>,
    /// How many entries `confirms` has (kept under its lock): an ack skips the lock when 0.
    confirming: AtomicUsize,
    pub(crate) consumers: RwLock<BTreeMap<String, Arc<Consumer>>>,
    /// Index entries this stream holds in its scope: (pattern, id).
    subscriptions: Mutex<Vec<(Arc<str>, u64)>>,
    pub(crate) closed: AtomicBool,
    /// `{"stream":"<name>","seq":`, the start of every publish ack.
    ack_prefix: String,
}

/// A publish waiting for confirm-N.
struct Confirm {
    reply: String,
    need: usize,
    by: Vec<Arc<str>>,
    deadline: Instant,
}

/// What a capture leaves with a message for the writer's completion.
pub(crate) struct Pending {
    reply: Option<String>,
    msg_id: Option<String>,
    confirm: Option<(usize, Duration)>,
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
    InFlight(Vec<String>),
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
    ) -> Arc<Stream> {
        let last = log.next_seq() - 1;
        let ack_prefix = format!(
            "{{\"stream\":{},\"seq\":",
            serde_json::Value::from(config.name.as_str())
        );
        let stream = Arc::new_cyclic(|me: &Weak<Stream>| Stream {
            writer: Writer::spawn(log, fsync, {
                let me = me.clone();
                move |result, pending| {
                    if let Some(stream) = me.upgrade() {
                        stream.stored(result, pending);
                    }
                }
            }),
            ack_prefix,
            name: config.name.clone(),
            config: Mutex::new(config),
            created,
            dir,
            committed: AtomicU64::new(last),
            scope,
            dedup: Mutex::default(),
            confirms: Mutex::default(),
            confirming: AtomicUsize::new(0),
            consumers: RwLock::default(),
            subscriptions: Mutex::default(),
            closed: AtomicBool::new(false),
        });
        stream.recover_dedup();
        stream
    }

    /// Subscribes the stream's subjects (capture) and its ack subject in its scope.
    pub(crate) fn subscribe(self: &Arc<Self>) -> crate::Result<()> {
        let subjects = self.config.lock().subjects.clone();
        let capture: Arc<dyn Target> = Arc::new(Capture(Arc::downgrade(self)));
        let acks: Arc<dyn Target> = Arc::new(Acks(Arc::downgrade(self)));
        let mut subs = self.subscriptions.lock();
        for pattern in &subjects {
            let entry =
                self.scope
                    .add(pattern, None, 0, 0, Sink::Target(capture.clone()), false)?;
            subs.push((entry.pattern.clone(), entry.id));
        }
        let ack_pattern = format!("$JS.ACK.{}.>", self.name);
        let entry = self
            .scope
            .add(&ack_pattern, None, 0, 0, Sink::Target(acks), true)?;
        subs.push((entry.pattern.clone(), entry.id));
        Ok(())
    }

    /// Removes every subscription of the stream from its scope.
    pub(crate) fn unsubscribe(&self) {
        for (pattern, id) in self.subscriptions.lock().drain(..) {
            self.scope.remove(&pattern, id);
        }
    }

    /// The highest sequence consumers may read.
    pub(crate) fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Takes a published message: checks it, and queues it for the writer.
    fn capture(self: &Arc<Self>, msg: &Delivery<'_>) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        let reply = msg.reply();
        let mut msg_id = None;
        let mut confirm: Option<(usize, Duration)> = None;
        let (max_msg_size, no_ack, window) = {
            let c = self.config.lock();
            (c.max_msg_size, c.no_ack, c.duplicate_window)
        };
        let reject = |err: ApiError| {
            if let (Some(reply), false) = (reply, no_ack) {
                self.answer_error(reply, &err);
            }
            true
        };
        if let Some(block) = msg.header_block()
            && let Ok(headers) = herald_proto::headers::parse(block)
        {
            for &(name, value) in &headers.fields {
                match name {
                    "Nats-Msg-Id" if !value.is_empty() => msg_id = Some(value),
                    "Nats-Expected-Stream" if value != self.name => {
                        return reject(ApiError::expected_stream());
                    }
                    CONFIRM_HEADER => match value.trim().parse::<usize>() {
                        Ok(n) => {
                            let timeout = confirm.map_or(DEFAULT_CONFIRM_TIMEOUT, |c| c.1);
                            confirm = Some((n, timeout));
                        }
                        Err(_) => {
                            return reject(ApiError::bad_request(format!(
                                "{CONFIRM_HEADER} must be a number of consumers, not {value:?}"
                            )));
                        }
                    },
                    CONFIRM_TIMEOUT_HEADER => match value.trim().parse::<u64>() {
                        Ok(ms) => {
                            let timeout = Duration::from_millis(ms);
                            confirm = Some((confirm.map_or(0, |c| c.0), timeout));
                        }
                        Err(_) => {
                            return reject(ApiError::bad_request(format!(
                                "{CONFIRM_TIMEOUT_HEADER} must be milliseconds, not {value:?}"
                            )));
                        }
                    },
                    "Nats-Expected-Last-Sequence"
                    | "Nats-Expected-Last-Msg-Id"
                    | "Nats-Expected-Last-Subject-Sequence" => {
                        return reject(ApiError::bad_request(format!(
                            "{name} is not supported by herald"
                        )));
                    }
                    "Nats-TTL" => {
                        return reject(ApiError::msg_ttl_disabled());
                    }
                    _ => {}
                }
            }
        }
        let headers = msg.header_block().unwrap_or_default();
        let size = headers.len() + msg.payload().len();
        if max_msg_size >= 0 && size as u64 > max_msg_size as u64 {
            return reject(ApiError::msg_too_big());
        }
        // `discard: new` is the log's to enforce: it checks each message as it appends, so
        // a burst in flight cannot pass a check together and push stored messages out.
        let now = now_ns();
        if let Some(id) = msg_id {
            let mut dedup = self.dedup.lock();
            dedup.prune(now, window);
            match dedup.ids.get_mut(id) {
                Some(Seen::Stored(seq)) => {
                    let seq = *seq;
                    drop(dedup);
                    if let (Some(reply), false) = (reply, no_ack) {
                        self.answer_ack(reply, seq, true);
                    }
                    return true;
                }
                Some(Seen::InFlight(waiters)) => {
                    if let (Some(reply), false) = (reply, no_ack) {
                        waiters.push(reply.to_owned());
                    }
                    return true;
                }
                None => {
                    dedup.ids.insert(id.to_owned(), Seen::InFlight(Vec::new()));
                    dedup.order.push_back((now, id.to_owned()));
                }
            }
        }
        let entry = Entry {
            subject: msg.subject(),
            headers,
            payload: msg.payload(),
            timestamp: now,
        };
        let pending = Pending {
            reply: if no_ack {
                None
            } else {
                reply.map(str::to_owned)
            },
            msg_id: msg_id.map(str::to_owned),
            confirm,
        };
        if let Err(pending) = self.writer.append(&entry, pending) {
            let stopped = herald_log::Error::Io {
                path: self.dir.clone(),
                source: std::io::Error::other("the stream's log writer is not running"),
            };
            self.stored(Err(stopped), pending);
        }
        true
    }

    /// The writer's completion for one message (on the writer thread).
    fn stored(&self, result: herald_log::Result<u64>, pending: Pending) {
        let Pending {
            reply,
            msg_id,
            confirm,
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
                // A confirm-N waiter is in place before any consumer can see the message, and
                // the message is visible before its publisher hears of it.
                let ack_now = match (reply, confirm) {
                    (Some(reply), Some((need, timeout))) if need > 0 => {
                        let mut confirms = self.confirms.lock();
                        confirms.insert(
                            seq,
                            Confirm {
                                reply,
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
                    (reply, _) => reply,
                };
                self.committed.fetch_max(seq, Ordering::AcqRel);
                for waiter in &waiters {
                    self.answer_ack(waiter, seq, true);
                }
                if let Some(reply) = ack_now {
                    self.answer_ack(&reply, seq, false);
                }
                for consumer in self.consumers.read().values() {
                    consumer.wake();
                }
            }
            Err(err) => {
                if !matches!(err, herald_log::Error::Full(_)) {
                    tracing::error!(stream = %self.name, %err, "cannot store a message");
                }
                let err = ApiError::store_failed(err.to_string());
                for waiter in waiters.iter().chain(reply.as_ref()) {
                    self.answer_error(waiter, &err);
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
            self.answer_ack(&c.reply, seq, false);
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
            let err = ApiError::new(
                408,
                0,
                format!(
                    "message {seq} was confirmed by {} of {} consumers before the timeout",
                    c.by.len(),
                    c.need
                ),
            );
            self.answer_error(&c.reply, &err);
        }
        let now_ns = now_ns();
        let removed = self.writer.log().expire(now_ns);
        if let Err(err) = removed {
            tracing::error!(stream = %self.name, %err, "cannot delete expired messages");
        }
        let window = self.config.lock().duplicate_window;
        self.dedup.lock().prune(now_ns, window);
    }

    /// Rebuilds the duplicate window from the log after a restart.
    fn recover_dedup(&self) {
        let window = self.config.lock().duplicate_window;
        let now = now_ns();
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

    /// Sends the publish ack, `{"stream":..,"seq":..}` (`PubAck`'s JSON), built by hand: it
    /// is one per stored message.
    fn answer_ack(&self, reply: &str, seq: u64, duplicate: bool) {
        let mut body = smallvec::SmallVec::<[u8; 128]>::new();
        body.extend_from_slice(self.ack_prefix.as_bytes());
        body.extend_from_slice(herald_proto::encode::digits(seq, &mut [0; 20]));
        if duplicate {
            body.extend_from_slice(b",\"duplicate\":true");
        }
        body.push(b'}');
        self.scope.answer(reply, &body);
    }

    fn answer_error(&self, reply: &str, err: &ApiError) {
        let body = serde_json::json!({"error": err, "stream": self.name, "seq": 0});
        self.send(reply, body.to_string().into_bytes());
    }

    fn send(&self, reply: &str, body: Vec<u8>) {
        if let Err(err) = self
            .scope
            .send(reply, None, None, Bytes::from(body), Reach::All)
        {
            tracing::debug!(%reply, %err, "cannot answer a publish");
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

/// The stream's ack subscription, `$JS.ACK.<stream>.>`: hands each ack to its consumer.
struct Acks(Weak<Stream>);

impl Target for Acks {
    fn deliver(&self, _sid: u64, msg: &Delivery<'_>) -> bool {
        let Some(stream) = self.0.upgrade() else {
            return false;
        };
        super::consumer::on_ack(&stream, msg);
        true
    }
}
