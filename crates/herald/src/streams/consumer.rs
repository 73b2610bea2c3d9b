//! Consumers: a position in a stream, the messages handed out and not yet acked, and
//! the pull requests waiting for messages (a push consumer has one that never ends, whose
//! sink sends to its deliver subject).
//!
//! Everything a consumer does happens under its one lock, in [`Consumer::pump`]: fill the
//! waiting pull requests, redeliveries first, then new messages after the position, until the
//! window of unacknowledged messages (`max_ack_pending`) is full. A pull request, an ack and a
//! new message each pump at once; one task per consumer waits for the next deadline (an ack
//! wait running out, a request expiring, a heartbeat, a save of a durable's state) and pumps
//! then too.
//!
//! Deliveries go to the request's [`Sink`]: a channel to [`Streams::fetch`](super::Streams::fetch)
//! or, through the JetStream adapter, a NATS client's inbox.
//!
//! A durable consumer's state (position, counters, unacknowledged messages) is saved to
//! `consumers/<name>.json` at most 100 ms after it changes, and when the consumer stops. After
//! a crash, acks newer than the last save are lost and those messages are delivered again:
//! at-least-once, as in JetStream.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::config::{AckPolicy, ConsumerConfig, DeliverPolicy};
use super::error::{Error, Result};
use super::files::write_json;
use super::info::{ConsumerInfo, Position};
use super::pull::{Delivered, Place, PullEnd, PullRequest, Sink};
use super::read_ahead::{ReadAhead, Record};
use super::saved::Saved;
use super::stream::Stream;
use crate::subject;
use crate::time::{from_unix_nanos, now_nanos, unix_nanos};

/// How soon a push consumer whose subject nobody read tries again.
const PUSH_RETRY: Duration = Duration::from_millis(100);
/// How long a durable's state may stay unsaved after a change.
const SAVE_DELAY: Duration = Duration::from_millis(100);
/// The farthest a deadline is put: a longer wait (a nak's delay of a million years, a pull
/// that waits `Duration::MAX`) waits this long instead of overflowing the clock.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `wait` after `at`, at most [`FOREVER`] after it.
fn later(at: Instant, wait: Duration) -> Instant {
    at + wait.min(FOREVER)
}

/// One consumer of a stream.
pub(crate) struct Consumer {
    pub(crate) name: Arc<str>,
    stream: Weak<Stream>,
    created: u64,
    state: Mutex<State>,
    /// Wakes the timer task; the stream holds it too, to wake it when messages commit.
    notify: Arc<tokio::sync::Notify>,
    /// Where a durable's state is saved.
    file: Option<PathBuf>,
    closed: AtomicBool,
    /// Called with its name when an ephemeral consumer has been inactive too long: the store
    /// removes it.
    on_inactive: Box<dyn Fn(&str) + Send + Sync>,
}

struct State {
    config: ConsumerConfig,
    filters: Vec<String>,
    /// The next stream sequence to consider for a first delivery.
    next: u64,
    /// The last consumer sequence handed out.
    cseq: u64,
    /// The highest stream sequence delivered.
    last_sseq: u64,
    /// Delivered, not yet acknowledged, by stream sequence.
    pending: BTreeMap<u64, Pending>,
    /// Ack deadlines of `pending`: (when, stream sequence).
    deadlines: BTreeSet<(Instant, u64)>,
    /// Ready to be delivered again (ack wait ran out, or a nak).
    redeliver: BTreeSet<u64>,
    waiting: VecDeque<Pull>,
    /// Whether a pull or an ack came yet (then `active_at` is reported as `last_active`).
    touched: bool,
    /// Last pull or ack, for the inactivity threshold.
    active_at: Instant,
    dirty: bool,
    saved_at: Instant,
    /// When the timer task runs next, as its last tick decided (`None`: only when woken).
    timer_at: Option<Instant>,
    /// `last_per_subject`: the last message of each subject when the consumer was made, to
    /// deliver before the messages after `next`.
    backlog: VecDeque<u64>,
    /// Until when the push sink said it takes nothing (the last pump stopped there).
    blocked_until: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    cseq: u64,
    deliveries: u32,
    deadline: Instant,
}

/// A waiting pull request.
struct Pull {
    sink: Box<dyn Sink>,
    left: usize,
    expires: Option<Instant>,
    no_wait: bool,
    delivered: usize,
    /// Byte budget left (`None`: no budget).
    bytes_left: Option<usize>,
    heartbeat: Option<Duration>,
    last_sent: Instant,
    /// A push consumer's standing request: no batch, no expiry, not counted as waiting.
    push: bool,
}

/// What an acknowledgement asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    /// Handled: do not deliver it again.
    Ack,
    /// Deliver it again, at once or after the delay.
    Nak(Option<Duration>),
    /// Still being worked on: restart its ack wait.
    Progress,
    /// Never deliver it again, handled or not.
    Term,
}

/// What an acknowledgement by sequence ([`Streams::ack`](super::Streams::ack)) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The message was waiting for it: applied.
    Applied,
    /// Delivered and already acknowledged (or terminated): nothing to do, as JetStream treats
    /// a second ack.
    AlreadyAcked,
    /// The consumer never delivered that sequence.
    NotDelivered,
    /// The consumer takes no acknowledgements (`ack_policy: none`).
    NoAcks,
}

impl Consumer {
    /// Makes a consumer of `stream` and starts its timer task on `runtime`. `saved` is a
    /// durable's state read back after a restart.
    pub(crate) fn start(
        stream: &Arc<Stream>,
        name: &str,
        config: ConsumerConfig,
        created: u64,
        saved: Option<Saved>,
        runtime: &tokio::runtime::Handle,
        on_inactive: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Arc<Consumer> {
        let now = Instant::now();
        let filters = config.filter_subjects.clone();
        let mut state = State {
            next: 1,
            cseq: 0,
            last_sseq: 0,
            pending: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            redeliver: BTreeSet::new(),
            waiting: VecDeque::new(),
            touched: false,
            active_at: now,
            dirty: true,
            saved_at: now,
            timer_at: None,
            backlog: VecDeque::new(),
            blocked_until: None,
            filters,
            config,
        };
        match saved {
            Some(saved) => {
                // A log that lost its unsynced tail in a crash (fsync interval or never) may
                // end before the saved position: new messages reuse those sequences, and the
                // consumer must not skip them.
                let end = stream.committed() + 1;
                state.next = saved.next.min(end);
                state.cseq = saved.cseq;
                state.last_sseq = saved.last_sseq.min(end - 1);
                // Unacknowledged before the restart: delivered again as soon as asked.
                for (sseq, cseq, deliveries) in saved.pending.into_iter().filter(|p| p.0 < end) {
                    state.pending.insert(
                        sseq,
                        Pending {
                            cseq,
                            deliveries,
                            deadline: now,
                        },
                    );
                    state.redeliver.insert(sseq);
                }
                state.dirty = false;
            }
            None if state.config.deliver == DeliverPolicy::LastPerSubject => {
                // The newest of each subject now, then what comes after.
                let last = stream.committed();
                let lasts =
                    super::by_patterns(&state.filters, |f| stream.writer.log().last_of_each(f));
                match lasts {
                    Ok(lasts) => state.backlog = lasts.into_iter().filter(|&s| s <= last).collect(),
                    Err(err) => {
                        tracing::error!(stream = %stream.name, %err, "cannot read the last message of each subject")
                    }
                }
                state.next = last + 1;
            }
            None => state.next = start_seq(&state.config, &state.filters, stream),
        }
        let file = state
            .config
            .durable
            .then(|| stream.dir.join("consumers").join(format!("{name}.json")));
        let consumer = Arc::new(Consumer {
            name: name.into(),
            stream: Arc::downgrade(stream),
            created,
            state: Mutex::new(state),
            notify: Arc::new(tokio::sync::Notify::new()),
            file,
            closed: AtomicBool::new(false),
            on_inactive,
        });
        stream.follow(&consumer.notify);
        runtime.spawn(drive(consumer.clone()));
        consumer
    }

    /// Wakes the timer task (a message was stored, or a deadline moved).
    pub(crate) fn wake(&self) {
        self.notify.notify_one();
    }

    /// The consumer's config.
    pub(crate) fn config(&self) -> ConsumerConfig {
        self.state.lock().config.clone()
    }

    /// Replaces the mutable parts of the config (already checked by the caller).
    pub(crate) fn update(&self, config: ConsumerConfig) {
        let mut st = self.state.lock();
        st.filters = config.filter_subjects.clone();
        st.config = config;
        st.dirty = true;
        drop(st);
        self.wake();
    }

    /// For an ack of `seq` that metrics may sample: the consumer's `sample_frequency` in
    /// percent (`None`: not sampled) and how long ago `seq` was last delivered, if it waits
    /// for its ack.
    pub(crate) fn ack_sample(&self, seq: u64) -> Option<(u8, Option<Duration>)> {
        let st = self.state.lock();
        let percent = sample_percent(st.config.sample_frequency.as_deref()?)?;
        let since = st.pending.get(&seq).map(|p| {
            let delivered = p
                .deadline
                .checked_sub(st.ack_wait(p.deliveries))
                .unwrap_or(p.deadline);
            delivered.elapsed()
        });
        Some((percent, since))
    }

    /// Whether the consumer is done with message `seq` on `subject`: its filters do not take
    /// it, or it was delivered and acknowledged (delivered, without acks).
    pub(crate) fn done_with(&self, seq: u64, subject: &str) -> bool {
        let st = self.state.lock();
        !matches_any(&st.filters, subject)
            || (seq < st.next && !st.pending.contains_key(&seq) && !st.backlog.contains(&seq))
    }

    /// The first sequence the consumer may still need (every one below it is done with).
    pub(crate) fn needs_from(&self) -> u64 {
        let st = self.state.lock();
        let pending = st.pending.first_key_value().map(|(&seq, _)| seq);
        let backlog = st.backlog.front().copied();
        [Some(st.next), pending, backlog]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(st.next)
    }

    /// Stops the consumer: queued pull requests end with [`PullEnd::ConsumerDeleted`].
    pub(crate) fn close(&self, delete_state: bool) {
        self.closed.store(true, Ordering::Release);
        if let Some(stream) = self.stream.upgrade() {
            stream.unfollow(&self.notify);
        }
        let waiting: Vec<Pull> = self.state.lock().waiting.drain(..).collect();
        for mut pull in waiting {
            pull.sink.end(PullEnd::ConsumerDeleted);
        }
        if let Some(file) = &self.file {
            if delete_state {
                let _ = std::fs::remove_file(file);
            } else {
                self.save(true);
            }
        }
        self.wake();
    }

    /// Runs `f` while no delivery to any of the consumer's requests is under way (deliveries
    /// are made under its state lock): what a request's channel holds after `f` closed it is
    /// then all it will ever hold. `f` must not call back into the consumer.
    pub(crate) fn between_deliveries<R>(&self, f: impl FnOnce() -> R) -> R {
        let _st = self.state.lock();
        f()
    }

    /// Takes a pull request whose messages go to `sink`; a request the consumer's limits
    /// refuse, or one that asks not to wait when nothing is there, ends at once.
    pub(crate) fn pull(&self, req: &PullRequest, mut sink: Box<dyn Sink>) {
        let Some(stream) = self.stream.upgrade() else {
            return sink.end(PullEnd::ConsumerDeleted);
        };
        let mut st = self.state.lock();
        let cfg = &st.config;
        let batch = req.batch.max(1);
        if let Some(max) = cfg.max_batch
            && batch as u64 > max.get()
        {
            return sink.end(PullEnd::BatchTooLarge(max.get()));
        }
        if let (Some(max), Some(expires)) = (cfg.max_expires, req.expires)
            && expires > max
        {
            return sink.end(PullEnd::ExpiresTooLong(max));
        }
        if let (Some(max), Some(bytes)) = (cfg.max_bytes, req.max_bytes)
            && bytes as u64 > max.get()
        {
            return sink.end(PullEnd::MaxBytesTooLarge(max.get()));
        }
        if let Some(heartbeat) = req.heartbeat
            && req.expires.is_none_or(|e| heartbeat.saturating_mul(2) > e)
        {
            return sink.end(PullEnd::HeartbeatTooLong);
        }
        let now = Instant::now();
        st.touched = true;
        st.active_at = now;
        if req.no_wait && req.expires.is_none() && !self.has_messages(&st, &stream) {
            return sink.end(PullEnd::NoMessages);
        }
        if !req.no_wait && waiting_pulls(&st) as u64 >= st.config.max_waiting.max(1) {
            return sink.end(PullEnd::TooManyWaiting);
        }
        st.waiting.push_back(Pull {
            sink,
            left: batch,
            expires: req.expires.map(|e| later(now, e)),
            no_wait: req.no_wait,
            delivered: 0,
            bytes_left: req.max_bytes,
            heartbeat: req.heartbeat,
            last_sent: now,
            push: false,
        });
        self.pump(&mut st, &stream);
        drop(st);
        self.wake();
    }

    /// Delivers by push from now on: `sink` takes each message as it comes (within the ack
    /// window, while the sink is not blocked), with a heartbeat after `heartbeat` without
    /// one. Replaces the push sink given before, if any.
    pub(crate) fn push(&self, sink: Box<dyn Sink>, heartbeat: Option<Duration>) {
        let Some(stream) = self.stream.upgrade() else {
            return;
        };
        let now = Instant::now();
        let mut st = self.state.lock();
        st.waiting.retain(|p| !p.push);
        st.waiting.push_front(Pull {
            sink,
            left: usize::MAX,
            expires: None,
            no_wait: false,
            delivered: 0,
            bytes_left: None,
            heartbeat,
            last_sent: now,
            push: true,
        });
        st.active_at = now;
        self.pump(&mut st, &stream);
        drop(st);
        self.wake();
    }

    /// Whether a pull would get a message now.
    fn has_messages(&self, st: &State, stream: &Stream) -> bool {
        let window_full = st.config.ack_policy != AckPolicy::None
            && st
                .config
                .max_ack_pending
                .is_some_and(|max| st.pending.len() as u64 >= max.get());
        !window_full && (!st.redeliver.is_empty() || st.next <= stream.committed())
    }

    /// Applies an acknowledgement of stream sequence `sseq`. `Ok(false)` when the consumer
    /// takes no acks (ack policy none): nothing is applied.
    pub(crate) fn ack(&self, kind: AckKind, sseq: u64) -> Result<bool> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed(format!("consumer {} is gone", self.name)));
        }
        let stream = self
            .stream
            .upgrade()
            .ok_or_else(|| Error::closed("the stream is closed"))?;
        let mut st = self.state.lock();
        if st.config.ack_policy == AckPolicy::None {
            return Ok(false);
        }
        let now = Instant::now();
        st.touched = true;
        st.active_at = now;
        let mut acked: smallvec::SmallVec<[u64; 4]> = smallvec::SmallVec::new();
        match kind {
            AckKind::Ack => {
                if st.config.ack_policy == AckPolicy::All {
                    let upto: Vec<u64> = st.pending.range(..=sseq).map(|(s, _)| *s).collect();
                    for s in upto {
                        st.forget(s);
                        acked.push(s);
                    }
                } else if st.forget(sseq) {
                    acked.push(sseq);
                }
            }
            AckKind::Term => {
                st.forget(sseq);
            }
            AckKind::Nak(delay) => {
                if let Some(p) = st.pending.get(&sseq).copied() {
                    st.deadlines.remove(&(p.deadline, sseq));
                    match delay {
                        Some(delay) if !delay.is_zero() => {
                            let deadline = later(now, delay);
                            st.pending.insert(sseq, Pending { deadline, ..p });
                            st.deadlines.insert((deadline, sseq));
                        }
                        _ => {
                            st.redeliver.insert(sseq);
                        }
                    }
                }
            }
            AckKind::Progress => {
                if let Some(p) = st.pending.get(&sseq).copied() {
                    let deadline = later(now, st.ack_wait(p.deliveries));
                    st.deadlines.remove(&(p.deadline, sseq));
                    st.pending.insert(sseq, Pending { deadline, ..p });
                    st.deadlines.insert((deadline, sseq));
                }
            }
        }
        st.dirty = true;
        // An ack only removes deadlines: the timer task is woken only when something is now
        // due before its next run (a nak's delay, deliveries the pump makes, a first save).
        self.pump(&mut st, &stream);
        let wake = st.due_before_timer(self.file.is_some());
        drop(st);
        for seq in acked {
            stream.confirmed_by(seq, &self.name);
        }
        if wake {
            self.wake();
        }
        Ok(true)
    }

    /// [`ack`](Consumer::ack) for a caller that only has a sequence, saying what it found.
    pub(crate) fn ack_by_seq(&self, kind: AckKind, sseq: u64) -> Result<AckOutcome> {
        {
            let st = self.state.lock();
            if st.config.ack_policy == AckPolicy::None {
                return Ok(AckOutcome::NoAcks);
            }
            if sseq == 0 || sseq > st.last_sseq {
                return Ok(AckOutcome::NotDelivered);
            }
            if !st.pending.contains_key(&sseq) {
                return Ok(AckOutcome::AlreadyAcked);
            }
        }
        self.ack(kind, sseq)?;
        Ok(AckOutcome::Applied)
    }

    /// Fills waiting pull requests: redeliveries first, then new messages, within the window.
    fn pump(&self, st: &mut State, stream: &Stream) {
        if st.waiting.is_empty() {
            // Nothing to fill (the common case after an ack).
            return;
        }
        let ack_none = st.config.ack_policy == AckPolicy::None;
        let window = match st.config.max_ack_pending {
            Some(max) if !ack_none => usize::try_from(max.get()).unwrap_or(usize::MAX),
            _ => usize::MAX,
        };
        let committed = stream.committed();
        let now = Instant::now();
        let mut ahead = ReadAhead::default();
        st.blocked_until = None;
        // Under filters, what is left after the position is counted by subject once, then
        // kept as messages go (clients read "nothing left" from a delivery's metadata).
        let mut filtered_left =
            (!st.filters.is_empty()).then(|| pending_after(st, stream, committed));
        // A redelivery is of a message already counted in the window: a full window holds
        // back only first deliveries. The backlog (the last of each subject, for
        // `last_per_subject`) goes before the messages after the position.
        while let Some(front) = st.waiting.front_mut() {
            if let Some(until) = front.sink.blocked(now) {
                st.blocked_until = Some(until);
                break;
            }
            let (seq, redelivery, from_backlog) = match st.redeliver.pop_first() {
                Some(seq) => (seq, true, false),
                None if st.pending.len() >= window => break,
                None => match st.backlog.front() {
                    Some(&seq) => (seq, false, true),
                    None if st.next <= committed => (st.next, false, false),
                    None => break,
                },
            };
            let read = if redelivery || from_backlog {
                stream
                    .writer
                    .log()
                    .get(seq)
                    .map(|found| found.map(Record::from))
            } else {
                let wanted = st
                    .waiting
                    .iter()
                    .fold(0u64, |n, p| n.saturating_add(p.left as u64))
                    .min((window - st.pending.len()) as u64)
                    .min(committed + 1 - seq);
                ahead.next(stream, seq, wanted as usize)
            };
            let stored = match read {
                Ok(Some(stored)) => stored,
                gone => {
                    if let Err(err) = gone {
                        tracing::error!(stream = %stream.name, seq, %err, "cannot read a message");
                    }
                    // Deleted by a limit or a purge: skip it.
                    if redelivery {
                        st.forget(seq);
                    } else if from_backlog {
                        st.backlog.pop_front();
                    } else {
                        st.next = (seq + 1).max(stream.writer.log().first_seq());
                    }
                    continue;
                }
            };
            let subject = stored.subject();
            if !redelivery && !from_backlog && !matches_any(&st.filters, subject) {
                st.next = seq + 1;
                continue;
            }
            let deliveries = match (redelivery, st.pending.get(&seq)) {
                (true, Some(p)) => p.deliveries + 1,
                _ => 1,
            };
            let cseq = st.cseq + 1;
            let after = if redelivery || from_backlog {
                st.next - 1
            } else {
                seq
            };
            // What is left behind this one: the rest of the backlog, then the stream.
            let backlog_left = st.backlog.len().saturating_sub(usize::from(from_backlog));
            let msg = Delivered {
                subject,
                headers: &stored.headers,
                payload: &stored.payload,
                place: Place {
                    seq,
                    consumer_seq: cseq,
                    delivered: deliveries,
                    time: from_unix_nanos(stored.timestamp),
                    pending: match filtered_left {
                        Some(left) => left.saturating_sub(u64::from(!redelivery && !from_backlog)),
                        None => committed.saturating_sub(after),
                    } + backlog_left as u64,
                },
            };
            let Some(pull) = st.waiting.front_mut() else {
                break;
            };
            let size = pull.sink.cost(&msg);
            if pull.bytes_left.is_some_and(|left| size > left) {
                let mut pull = st.waiting.pop_front().expect("front exists");
                pull.sink.end(PullEnd::MessageTooLarge {
                    messages: pull.left,
                    bytes: pull.bytes_left.unwrap_or(0),
                });
                if redelivery {
                    st.redeliver.insert(seq);
                }
                continue;
            }
            if !pull.sink.deliver(&msg) {
                // Nobody takes the request's messages any more: drop it (a push consumer's
                // stays: it tries again shortly), keep the message.
                let push = pull.push;
                if redelivery {
                    st.redeliver.insert(seq);
                }
                if push {
                    st.blocked_until = Some(later(now, PUSH_RETRY));
                    break;
                }
                st.waiting.pop_front();
                continue;
            }
            pull.left -= 1;
            pull.delivered += 1;
            pull.last_sent = now;
            if let Some(left) = &mut pull.bytes_left {
                *left -= size;
            }
            let pull = st.waiting.pop_front().expect("front exists");
            if pull.left > 0 {
                // Round robin between waiting requests.
                st.waiting.push_back(pull);
            }
            st.cseq = cseq;
            st.last_sseq = st.last_sseq.max(seq);
            if from_backlog {
                st.backlog.pop_front();
            } else if !redelivery {
                st.next = seq + 1;
                if let Some(left) = &mut filtered_left {
                    *left = left.saturating_sub(1);
                }
            }
            if !ack_none {
                if let Some(old) = st.pending.get(&seq) {
                    let old = (old.deadline, seq);
                    st.deadlines.remove(&old);
                }
                let deadline = later(now, st.ack_wait(deliveries));
                st.pending.insert(
                    seq,
                    Pending {
                        cseq,
                        deliveries,
                        deadline,
                    },
                );
                st.deadlines.insert((deadline, seq));
            }
            st.dirty = true;
        }
        // The stream is drained (or the window is full): one-shot requests end.
        if st.waiting.iter().any(|p| p.no_wait) {
            let mut keep = VecDeque::with_capacity(st.waiting.len());
            for mut pull in st.waiting.drain(..) {
                if pull.no_wait && (pull.delivered > 0 || pull.expires.is_none()) {
                    pull.sink.end(PullEnd::NoMessages);
                } else {
                    keep.push_back(pull);
                }
            }
            st.waiting = keep;
        }
    }

    /// Runs what is due at `now` and returns when to run next (`None`: when woken).
    fn tick(self: &Arc<Self>, now: Instant) -> Option<Instant> {
        let stream = self.stream.upgrade()?;
        let mut st = self.state.lock();
        let max_deliver = st.config.max_deliver;
        while let Some(&(at, seq)) = st.deadlines.first() {
            if at > now {
                break;
            }
            st.deadlines.pop_first();
            let Some(p) = st.pending.get(&seq).copied() else {
                continue;
            };
            if max_deliver.is_some_and(|max| u64::from(p.deliveries) >= max.get()) {
                // Delivered as often as allowed: given up on.
                st.pending.remove(&seq);
                st.dirty = true;
            } else {
                st.redeliver.insert(seq);
            }
        }
        st.waiting.retain_mut(|pull| {
            if pull.expires.is_some_and(|at| at <= now) {
                pull.sink.end(PullEnd::Expired {
                    messages: pull.left,
                    bytes: pull.bytes_left.unwrap_or(0),
                });
                return false;
            }
            true
        });
        let (cseq, last_sseq) = (st.cseq, st.last_sseq);
        for pull in &mut st.waiting {
            if let Some(every) = pull.heartbeat
                && now.duration_since(pull.last_sent) >= every
            {
                pull.sink.heartbeat(cseq, last_sseq);
                pull.last_sent = now;
            }
        }
        self.pump(&mut st, &stream);
        // A push consumer is active while someone reads its subject.
        if st.waiting.iter().any(|p| p.push && p.sink.active()) {
            st.active_at = now;
        }
        let inactive = st.config.inactive_threshold.unwrap_or(Duration::ZERO);
        if !inactive.is_zero()
            && waiting_pulls(&st) == 0
            && now.duration_since(st.active_at) >= inactive
        {
            drop(st);
            tracing::debug!(stream = %stream.name, consumer = %self.name, "inactive consumer deleted");
            (self.on_inactive)(&self.name);
            return None;
        }
        let mut next: Option<Instant> = st.deadlines.first().map(|(at, _)| *at);
        let mut consider = |at: Instant| next = Some(next.map_or(at, |n| n.min(at)));
        for pull in &st.waiting {
            if let Some(at) = pull.expires {
                consider(at);
            }
            if let Some(every) = pull.heartbeat {
                consider(later(pull.last_sent, every));
            }
        }
        if !inactive.is_zero() && waiting_pulls(&st) == 0 {
            consider(later(st.active_at, inactive));
        }
        if let Some(at) = st.blocked_until {
            consider(at);
        }
        let save_now =
            st.dirty && self.file.is_some() && now.duration_since(st.saved_at) >= SAVE_DELAY;
        if st.dirty && self.file.is_some() && !save_now {
            consider(st.saved_at + SAVE_DELAY);
        }
        st.timer_at = next;
        if save_now {
            st.saved_at = now;
            drop(st);
            self.save(false);
        }
        next
    }

    /// Writes a durable's state (temporary file, renamed over the old one; synced if `sync`).
    pub(crate) fn save(&self, sync: bool) {
        let Some(file) = &self.file else {
            return;
        };
        let saved = {
            let mut st = self.state.lock();
            st.dirty = false;
            Saved {
                config: st.config.clone(),
                created: self.created,
                next: st.next,
                cseq: st.cseq,
                last_sseq: st.last_sseq,
                pending: st
                    .pending
                    .iter()
                    .map(|(s, p)| (*s, p.cseq, p.deliveries))
                    .collect(),
            }
        };
        if let Err(err) = write_json(file, &saved, sync) {
            tracing::error!(consumer = %self.name, %err, "cannot save the consumer's state");
        }
        // A replicated stream's other replicas keep it too, for the next leader.
        if let Some(stream) = self.stream.upgrade()
            && let Some(group) = stream.replication.get()
            && let Ok(json) = serde_json::to_vec(&saved)
        {
            group.consumer(&self.name, Some(json));
        }
    }

    /// The consumer's configuration and position.
    pub(crate) fn info(&self, stream: &Stream) -> ConsumerInfo {
        let st = self.state.lock();
        let committed = stream.committed();
        let ack_floor = match st.pending.first_key_value() {
            Some((sseq, _)) => Position {
                consumer_seq: st.pending.values().map(|p| p.cseq).min().unwrap_or(1) - 1,
                stream_seq: sseq - 1,
            },
            None => Position {
                consumer_seq: st.cseq,
                stream_seq: st.last_sseq,
            },
        };
        let ago = st.active_at.elapsed();
        ConsumerInfo {
            stream: stream.name.clone(),
            name: self.name.to_string(),
            created: from_unix_nanos(self.created),
            config: st.config.clone(),
            delivered: Position {
                consumer_seq: st.cseq,
                stream_seq: st.last_sseq,
            },
            ack_floor,
            num_ack_pending: st.pending.len(),
            num_redelivered: st.pending.values().filter(|p| p.deliveries > 1).count(),
            num_waiting: waiting_pulls(&st),
            num_pending: pending_of(&st, stream, committed),
            last_active: st
                .touched
                .then(|| from_unix_nanos(now_nanos().saturating_sub(ago.as_nanos() as u64))),
        }
    }
}

impl State {
    /// Whether something is due before the timer task's next run: an ack deadline, or the
    /// save of a durable's changed state.
    fn due_before_timer(&self, durable: bool) -> bool {
        let mut due = self.deadlines.first().map(|(at, _)| *at);
        if self.dirty && durable {
            let save = self.saved_at + SAVE_DELAY;
            due = Some(due.map_or(save, |d| d.min(save)));
        }
        match (due, self.timer_at) {
            (Some(due), Some(timer)) => due < timer,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// The ack wait for a message's `deliveries`-th delivery (the backoff list if any).
    fn ack_wait(&self, deliveries: u32) -> Duration {
        let backoff = &self.config.backoff;
        let wait = match backoff.len() {
            0 => self.config.ack_wait(),
            n => backoff[(deliveries as usize).saturating_sub(1).min(n - 1)],
        };
        wait.max(Duration::from_nanos(1))
    }

    /// Stops tracking `sseq` (acked, terminated, or gone); says whether it was pending.
    fn forget(&mut self, sseq: u64) -> bool {
        self.redeliver.remove(&sseq);
        match self.pending.remove(&sseq) {
            Some(p) => {
                self.deadlines.remove(&(p.deadline, sseq));
                true
            }
            None => false,
        }
    }
}

/// Messages the consumer has yet to deliver for the first time: up to `committed`, on the
/// subjects its filters take.
fn pending_of(st: &State, stream: &Stream, committed: u64) -> u64 {
    st.backlog.len() as u64 + pending_after(st, stream, committed)
}

/// Pull requests waiting (a push consumer's standing one is not counted).
fn waiting_pulls(st: &State) -> usize {
    st.waiting.iter().filter(|p| !p.push).count()
}

/// [`pending_of`] after the position.
fn pending_after(st: &State, stream: &Stream, committed: u64) -> u64 {
    let all = committed.saturating_sub(st.next.saturating_sub(1));
    if st.filters.is_empty() || all == 0 {
        return all;
    }
    let mut log = stream.writer.log();
    let counted = super::by_patterns(&st.filters, |f| {
        Ok::<_, herald_log::Error>(
            log.count_from(f, st.next)?
                .saturating_sub(log.count_from(f, committed + 1)?),
        )
    });
    counted.unwrap_or_else(|err| {
        tracing::warn!(stream = %stream.name, %err, "cannot count a consumer's pending messages");
        all
    })
}

/// Where a new consumer starts in `stream`.
fn start_seq(config: &ConsumerConfig, filters: &[String], stream: &Stream) -> u64 {
    let log = stream.writer.log();
    let first = log.first_seq();
    let last = stream.committed();
    match config.deliver {
        DeliverPolicy::All => first,
        DeliverPolicy::New => last + 1,
        DeliverPolicy::ByStartSequence(seq) => seq.max(first),
        DeliverPolicy::ByStartTime(at) => log.seq_for_time(unix_nanos(at)),
        DeliverPolicy::Last | DeliverPolicy::LastPerSubject => {
            // The newest message that passes the filter.
            let mut seq = last;
            while seq >= first && seq > 0 {
                match log.get(seq) {
                    Ok(Some(m)) if matches_any(filters, &m.subject) => return seq,
                    _ => seq -= 1,
                }
            }
            last + 1
        }
    }
}

fn matches_any(filters: &[String], subject: &str) -> bool {
    filters.is_empty() || filters.iter().any(|f| subject::matches(f, subject))
}

/// The timer task of one consumer: it runs when a deadline comes and when it is woken (a
/// pull, an ack, or its stream committing new messages).
async fn drive(consumer: Arc<Consumer>) {
    loop {
        let next = consumer.tick(Instant::now());
        if consumer.closed.load(Ordering::Acquire) {
            return;
        }
        let notified = consumer.notify.notified();
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at.into()) => {}
                    () = notified => {}
                }
            }
            None => notified.await,
        }
        if consumer.closed.load(Ordering::Acquire) {
            return;
        }
    }
}

/// A sample frequency (`"100%"`, `"50"`) in percent, if it is one above 0.
fn sample_percent(text: &str) -> Option<u8> {
    let n: u8 = text.trim().trim_end_matches('%').trim().parse().ok()?;
    (1..=100).contains(&n).then_some(n)
}
