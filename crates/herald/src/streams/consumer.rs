//! Pull consumers: a position in a stream, the messages handed out and not yet acked, and
//! the pull requests waiting for messages.
//!
//! Everything a consumer does happens under its one lock, in [`Consumer::pump`]: fill the
//! waiting pull requests, redeliveries first, then new messages after the position, until the
//! window of unacknowledged messages (`max_ack_pending`) is full. A pull request, an ack and a
//! new message each pump at once; one task per consumer waits for the next deadline (an ack
//! wait running out, a request expiring, a heartbeat, a save of a durable's state) and pumps
//! then too.
//!
//! Deliveries go to the request's reply inbox on this node, showing the stored subject and
//! carrying the ack subject `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`
//! as their reply, as JetStream does, so NATS clients and the library read them alike.
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

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::config::{
    AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy, PullRequest, SequenceInfo,
    parse_rfc3339, rfc3339,
};
use super::now_ns;
use super::stream::Stream;
use crate::router::Scope;
use crate::subject;
use crate::target::Delivery;

/// How long a durable's state may stay unsaved after a change.
const SAVE_DELAY: Duration = Duration::from_millis(100);

/// One consumer of a stream.
pub(crate) struct Consumer {
    pub(crate) name: Arc<str>,
    stream: Weak<Stream>,
    created: u64,
    state: Mutex<State>,
    notify: tokio::sync::Notify,
    /// `$JS.ACK.<stream>.<consumer>.`
    ack_prefix: String,
    /// Where a durable's state is saved.
    file: Option<PathBuf>,
    closed: AtomicBool,
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
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    cseq: u64,
    deliveries: u32,
    deadline: Instant,
}

/// A waiting pull request.
pub(crate) struct Pull {
    reply: String,
    left: usize,
    expires: Option<Instant>,
    no_wait: bool,
    delivered: usize,
    /// Byte budget left (`None`: no budget).
    bytes_left: Option<usize>,
    heartbeat: Option<Duration>,
    last_sent: Instant,
}

/// A durable consumer's state as saved on disk.
#[derive(Serialize, Deserialize)]
pub(crate) struct Saved {
    pub(crate) config: ConsumerConfig,
    pub(crate) created: u64,
    next: u64,
    cseq: u64,
    last_sseq: u64,
    /// (stream sequence, consumer sequence, deliveries) of each unacknowledged message.
    pending: Vec<(u64, u64, u32)>,
}

/// What an ack message asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AckKind {
    Ack,
    Nak(Option<Duration>),
    Progress,
    Term,
    Next(Vec<u8>),
}

impl AckKind {
    /// Reads an ack payload (empty, `+ACK`, `-NAK [{"delay":ns}]`, `+WPI`, `+TERM [reason]`,
    /// `+NXT [request]`); `None` for anything else.
    pub(crate) fn parse(body: &[u8]) -> Option<AckKind> {
        let text = std::str::from_utf8(body).ok()?.trim();
        let (word, rest) = text.split_once(' ').unwrap_or((text, ""));
        match word {
            "" | "+ACK" | "+OK" => Some(AckKind::Ack),
            "+WPI" => Some(AckKind::Progress),
            "+TERM" => Some(AckKind::Term),
            "+NXT" => Some(AckKind::Next(rest.trim().as_bytes().to_vec())),
            "-NAK" => Some(AckKind::Nak(parse_delay(rest.trim()))),
            _ => None,
        }
    }
}

/// A nak's delay: `{"delay": ns}` or a duration such as `5s` / `250ms`.
fn parse_delay(text: &str) -> Option<Duration> {
    if text.is_empty() {
        return None;
    }
    #[derive(Deserialize)]
    struct Delay {
        delay: u64,
    }
    if let Ok(d) = serde_json::from_str::<Delay>(text) {
        return Some(Duration::from_nanos(d.delay));
    }
    let (num, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    match unit {
        "ns" => Some(Duration::from_nanos(n)),
        "us" | "µs" => Some(Duration::from_micros(n)),
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n * 60)),
        _ => None,
    }
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
    ) -> Arc<Consumer> {
        let now = Instant::now();
        let filters = config.filters();
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
            None => state.next = start_seq(&state.config, &state.filters, stream),
        }
        let file = state
            .config
            .is_durable()
            .then(|| stream.dir.join("consumers").join(format!("{name}.json")));
        let consumer = Arc::new(Consumer {
            name: name.into(),
            stream: Arc::downgrade(stream),
            created,
            state: Mutex::new(state),
            notify: tokio::sync::Notify::new(),
            ack_prefix: format!("$JS.ACK.{}.{name}.", stream.name),
            file,
            closed: AtomicBool::new(false),
        });
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
        st.filters = config.filters();
        st.config = config;
        st.dirty = true;
        drop(st);
        self.wake();
    }

    /// Stops the consumer: queued pull requests are told `409 Consumer Deleted`.
    pub(crate) fn close(&self, stream: &Stream, delete_state: bool) {
        self.closed.store(true, Ordering::Release);
        let waiting: Vec<Pull> = self.state.lock().waiting.drain(..).collect();
        for pull in waiting {
            send_status(&stream.scope, &pull.reply, "409 Consumer Deleted", None);
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

    /// Takes a pull request answered on `reply`.
    pub(crate) fn pull(&self, stream: &Stream, req: &PullRequest, reply: &str) {
        let mut st = self.state.lock();
        let cfg = &st.config;
        let batch = req.batch.max(1) as usize;
        if cfg.max_batch > 0 && batch as i64 > cfg.max_batch {
            let text = format!("409 Exceeded MaxRequestBatch of {}", cfg.max_batch);
            return send_status(&stream.scope, reply, &text, None);
        }
        if cfg.max_expires > 0 && req.expires > cfg.max_expires {
            let text = format!(
                "409 Exceeded MaxRequestExpires of {:?}",
                Duration::from_nanos(cfg.max_expires)
            );
            return send_status(&stream.scope, reply, &text, None);
        }
        if cfg.max_bytes > 0 && req.max_bytes > cfg.max_bytes {
            let text = format!("409 Exceeded MaxRequestMaxBytes of {}", cfg.max_bytes);
            return send_status(&stream.scope, reply, &text, None);
        }
        if req.idle_heartbeat > 0
            && (req.expires == 0 || req.idle_heartbeat.saturating_mul(2) > req.expires)
        {
            return send_status(
                &stream.scope,
                reply,
                "400 Bad Request - heartbeat value too large",
                None,
            );
        }
        let now = Instant::now();
        st.touched = true;
        st.active_at = now;
        if req.no_wait && req.expires == 0 && !self.has_messages(&st, stream) {
            return send_status(&stream.scope, reply, "404 No Messages", None);
        }
        if !req.no_wait && st.waiting.len() as i64 >= st.config.max_waiting.max(1) {
            return send_status(&stream.scope, reply, "409 Exceeded MaxWaiting", None);
        }
        st.waiting.push_back(Pull {
            reply: reply.to_owned(),
            left: batch,
            expires: (req.expires > 0).then(|| now + Duration::from_nanos(req.expires)),
            no_wait: req.no_wait,
            delivered: 0,
            bytes_left: (req.max_bytes > 0).then_some(req.max_bytes as usize),
            heartbeat: (req.idle_heartbeat > 0).then(|| Duration::from_nanos(req.idle_heartbeat)),
            last_sent: now,
        });
        self.pump(&mut st, stream);
        drop(st);
        self.wake();
    }

    /// Whether a pull would get a message now.
    fn has_messages(&self, st: &State, stream: &Stream) -> bool {
        let window_full = st.config.ack_policy != AckPolicy::None
            && st.config.max_ack_pending > 0
            && st.pending.len() as i64 >= st.config.max_ack_pending;
        !window_full && (!st.redeliver.is_empty() || st.next <= stream.committed())
    }

    /// Applies an ack for stream sequence `sseq`; says whether the consumer takes acks (an
    /// ack-none consumer drops them, and its acker gets no answer).
    pub(crate) fn ack(
        &self,
        stream: &Stream,
        kind: &AckKind,
        sseq: u64,
        reply: Option<&str>,
    ) -> bool {
        let mut st = self.state.lock();
        if st.config.ack_policy == AckPolicy::None {
            return false;
        }
        let now = Instant::now();
        st.touched = true;
        st.active_at = now;
        let mut acked: smallvec::SmallVec<[u64; 4]> = smallvec::SmallVec::new();
        match kind {
            AckKind::Ack | AckKind::Next(_) => {
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
                            let deadline = now + *delay;
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
                    let deadline = now + st.ack_wait(p.deliveries);
                    st.deadlines.remove(&(p.deadline, sseq));
                    st.pending.insert(sseq, Pending { deadline, ..p });
                    st.deadlines.insert((deadline, sseq));
                }
            }
        }
        st.dirty = true;
        // An ack only removes deadlines: the timer task is woken only when something is now
        // due before its next run (a nak's delay, deliveries the pump makes, a first save).
        let mut wake = true;
        if let (AckKind::Next(body), Some(reply)) = (kind, reply) {
            drop(st);
            match super::config::parse_pull(body) {
                Ok(req) => self.pull(stream, &req, reply),
                Err(err) => send_status(
                    &stream.scope,
                    reply,
                    &format!("400 Bad Request - {}", err.description),
                    None,
                ),
            }
        } else {
            self.pump(&mut st, stream);
            wake = st.due_before_timer(self.file.is_some());
            drop(st);
        }
        for seq in acked {
            stream.confirmed_by(seq, &self.name);
        }
        if wake {
            self.wake();
        }
        true
    }

    /// Fills waiting pull requests: redeliveries first, then new messages, within the window.
    fn pump(&self, st: &mut State, stream: &Stream) {
        if st.waiting.is_empty() {
            // Nothing to fill (the common case after an ack).
            return;
        }
        let ack_none = st.config.ack_policy == AckPolicy::None;
        let window = if ack_none || st.config.max_ack_pending <= 0 {
            usize::MAX
        } else {
            st.config.max_ack_pending as usize
        };
        let committed = stream.committed();
        let now = Instant::now();
        let mut ahead = ReadAhead::default();
        let mut ack = Vec::new();
        while !st.waiting.is_empty() && st.pending.len() < window {
            let (seq, redelivery) = match st.redeliver.pop_first() {
                Some(seq) => (seq, true),
                None if st.next <= committed => (st.next, false),
                None => break,
            };
            let read = if redelivery {
                stream
                    .writer
                    .log()
                    .get(seq)
                    .map(|found| found.map(Record::from))
            } else {
                let wanted = st
                    .waiting
                    .iter()
                    .map(|p| p.left as u64)
                    .sum::<u64>()
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
                    } else {
                        st.next = (seq + 1).max(stream.writer.log().first_seq());
                    }
                    continue;
                }
            };
            let subject = stored.subject();
            if !redelivery && !matches_any(&st.filters, subject) {
                st.next = seq + 1;
                continue;
            }
            let deliveries = match (redelivery, st.pending.get(&seq)) {
                (true, Some(p)) => p.deliveries + 1,
                _ => 1,
            };
            let cseq = st.cseq + 1;
            let after = if redelivery { st.next - 1 } else { seq };
            let num_pending = committed.saturating_sub(after);
            ack.clear();
            ack.extend_from_slice(self.ack_prefix.as_bytes());
            for (i, n) in [
                u64::from(deliveries),
                seq,
                cseq,
                stored.timestamp,
                num_pending,
            ]
            .into_iter()
            .enumerate()
            {
                if i > 0 {
                    ack.push(b'.');
                }
                herald_proto::encode::number(&mut ack, n);
            }
            let ack = std::str::from_utf8(&ack).unwrap_or_default();
            let size = subject.len() + ack.len() + stored.headers.len() + stored.payload.len();
            let Some(pull) = st.waiting.front_mut() else {
                break;
            };
            if pull.bytes_left.is_some_and(|left| size > left) {
                let pull = st.waiting.pop_front().expect("front exists");
                send_status(
                    &stream.scope,
                    &pull.reply,
                    "409 Message Size Exceeds MaxBytes",
                    Some(&pull),
                );
                if redelivery {
                    st.redeliver.insert(seq);
                }
                continue;
            }
            let headers = (!stored.headers.is_empty()).then_some(&stored.headers);
            let took =
                stream
                    .scope
                    .send_as(&pull.reply, subject, Some(ack), headers, &stored.payload);
            if took == 0 {
                // Nobody listens on the inbox any more: drop the request, keep the message.
                st.waiting.pop_front();
                if redelivery {
                    st.redeliver.insert(seq);
                }
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
            if !redelivery {
                st.next = seq + 1;
            }
            if !ack_none {
                if let Some(old) = st.pending.get(&seq) {
                    let old = (old.deadline, seq);
                    st.deadlines.remove(&old);
                }
                let deadline = now + st.ack_wait(deliveries);
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
            for pull in st.waiting.drain(..) {
                if pull.no_wait && (pull.delivered > 0 || pull.expires.is_none()) {
                    send_status(&stream.scope, &pull.reply, "404 No Messages", None);
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
            if max_deliver > 0 && i64::from(p.deliveries) >= max_deliver {
                // Delivered as often as allowed: given up on.
                st.pending.remove(&seq);
                st.dirty = true;
            } else {
                st.redeliver.insert(seq);
            }
        }
        let mut expired = Vec::new();
        st.waiting.retain_mut(|pull| {
            if pull.expires.is_some_and(|at| at <= now) {
                expired.push(std::mem::take(&mut pull.reply));
                return false;
            }
            true
        });
        for reply in expired {
            send_status(&stream.scope, &reply, "408 Request Timeout", None);
        }
        let (cseq, last_sseq) = (st.cseq, st.last_sseq);
        for pull in &mut st.waiting {
            if let Some(every) = pull.heartbeat
                && now.duration_since(pull.last_sent) >= every
            {
                let block = format!(
                    "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: {cseq}\r\nNats-Last-Stream: {last_sseq}\r\n\r\n"
                );
                stream.scope.send_as(
                    &pull.reply,
                    &pull.reply,
                    None,
                    Some(&Bytes::from(block)),
                    &Bytes::new(),
                );
                pull.last_sent = now;
            }
        }
        self.pump(&mut st, &stream);
        let inactive = Duration::from_nanos(st.config.inactive_threshold);
        if !inactive.is_zero()
            && st.waiting.is_empty()
            && now.duration_since(st.active_at) >= inactive
        {
            drop(st);
            tracing::debug!(stream = %stream.name, consumer = %self.name, "inactive consumer deleted");
            super::remove_consumer(&stream, &self.name);
            return None;
        }
        let mut next: Option<Instant> = st.deadlines.first().map(|(at, _)| *at);
        let mut consider = |at: Instant| next = Some(next.map_or(at, |n| n.min(at)));
        for pull in &st.waiting {
            if let Some(at) = pull.expires {
                consider(at);
            }
            if let Some(every) = pull.heartbeat {
                consider(pull.last_sent + every);
            }
        }
        if !inactive.is_zero() && st.waiting.is_empty() {
            consider(st.active_at + inactive);
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
        if let Err(err) = super::write_json(file, &saved, sync) {
            tracing::error!(consumer = %self.name, %err, "cannot save the consumer's state");
        }
    }

    /// The consumer's state as JetStream reports it.
    pub(crate) fn info(&self, stream: &Stream) -> ConsumerInfo {
        let st = self.state.lock();
        let committed = stream.committed();
        let ack_floor = match st.pending.first_key_value() {
            Some((sseq, _)) => SequenceInfo {
                consumer_seq: st.pending.values().map(|p| p.cseq).min().unwrap_or(1) - 1,
                stream_seq: sseq - 1,
                last_active: None,
            },
            None => SequenceInfo {
                consumer_seq: st.cseq,
                stream_seq: st.last_sseq,
                last_active: None,
            },
        };
        ConsumerInfo {
            stream_name: stream.name.clone(),
            name: self.name.to_string(),
            created: rfc3339(self.created),
            config: st.config.clone(),
            delivered: SequenceInfo {
                consumer_seq: st.cseq,
                stream_seq: st.last_sseq,
                last_active: st.touched.then(|| {
                    rfc3339(now_ns().saturating_sub(st.active_at.elapsed().as_nanos() as u64))
                }),
            },
            ack_floor,
            num_ack_pending: st.pending.len(),
            num_redelivered: st.pending.values().filter(|p| p.deliveries > 1).count(),
            num_waiting: st.waiting.len(),
            num_pending: committed.saturating_sub(st.next.saturating_sub(1)),
            ts: rfc3339(now_ns()),
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
        let ns = match backoff.len() {
            0 => self.config.ack_wait,
            n => backoff[(deliveries as usize).saturating_sub(1).min(n - 1)],
        };
        Duration::from_nanos(ns.max(1))
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

/// Where a new consumer starts in `stream`.
/// A message to deliver, its parts sharing one buffer.
struct Record {
    timestamp: u64,
    /// The subject's bytes, checked UTF-8 when decoded.
    subject: Bytes,
    headers: Bytes,
    payload: Bytes,
}

impl Record {
    fn subject(&self) -> &str {
        std::str::from_utf8(&self.subject).unwrap_or_default()
    }
}

impl From<herald_log::Stored> for Record {
    fn from(stored: herald_log::Stored) -> Self {
        Record {
            timestamp: stored.timestamp,
            subject: Bytes::from(stored.subject.into_bytes()),
            headers: Bytes::from(stored.headers),
            payload: Bytes::from(stored.payload),
        }
    }
}

/// Records read ahead for one pump: a run of consecutive sequences read from the log at once
/// (one lock of the log, one read), handed out without copying.
#[derive(Default)]
struct ReadAhead {
    buf: Bytes,
    /// The sequence of the record at the start of `buf`.
    seq: u64,
}

impl ReadAhead {
    /// Most bytes read at once.
    const MAX_BYTES: usize = 1 << 20;

    /// Message `seq`, reading it and up to `wanted - 1` following ones when it is not at hand.
    fn next(
        &mut self,
        stream: &Stream,
        seq: u64,
        wanted: usize,
    ) -> herald_log::Result<Option<Record>> {
        if self.buf.is_empty() || self.seq != seq {
            let mut buf = Vec::new();
            let n =
                stream
                    .writer
                    .log()
                    .read_batch(seq, wanted.max(1), Self::MAX_BYTES, &mut buf)?;
            if n == 0 {
                self.buf = Bytes::new();
                return Ok(None);
            }
            self.buf = Bytes::from(buf);
            self.seq = seq;
        }
        let view = match herald_log::record::decode(&self.buf, self.buf.len()) {
            Ok(Some(view)) if view.seq == seq => view,
            _ => {
                self.buf = Bytes::new();
                return Err(herald_log::Error::Io {
                    path: stream.writer.log().dir().to_owned(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("record {seq} changed on disk"),
                    ),
                });
            }
        };
        let record = Record {
            timestamp: view.entry.timestamp,
            subject: self.buf.slice_ref(view.entry.subject.as_bytes()),
            headers: self.buf.slice_ref(view.entry.headers),
            payload: self.buf.slice_ref(view.entry.payload),
        };
        let size = view.size;
        self.buf = self.buf.slice(size..);
        self.seq += 1;
        Ok(Some(record))
    }
}

fn start_seq(config: &ConsumerConfig, filters: &[String], stream: &Stream) -> u64 {
    let log = stream.writer.log();
    let first = log.first_seq();
    let last = stream.committed();
    match config.deliver_policy {
        DeliverPolicy::All => first,
        DeliverPolicy::New => last + 1,
        DeliverPolicy::ByStartSequence => config.opt_start_seq.unwrap_or(1).max(first),
        DeliverPolicy::ByStartTime => config
            .opt_start_time
            .as_deref()
            .and_then(parse_rfc3339)
            .map_or(first, |ts| log.seq_for_time(ts)),
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

/// Sends a `NATS/1.0 <status>` message (no payload) to a pull request's inbox; a request
/// cut short also says how much of it was left.
pub(crate) fn send_status(scope: &Scope, reply: &str, status: &str, pull: Option<&Pull>) {
    let block = match pull {
        Some(p) => format!(
            "NATS/1.0 {status}\r\nNats-Pending-Messages: {}\r\nNats-Pending-Bytes: {}\r\n\r\n",
            p.left,
            p.bytes_left.unwrap_or(0)
        ),
        None => format!("NATS/1.0 {status}\r\n\r\n"),
    };
    scope.send_as(reply, reply, None, Some(&Bytes::from(block)), &Bytes::new());
}

/// The timer task of one consumer.
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

/// An ack arrived on `$JS.ACK.<stream>.>`: applies it, and answers an ack that asks for it.
pub(crate) fn on_ack(stream: &Arc<Stream>, msg: &Delivery<'_>) {
    // By byte: this runs once per acknowledged message.
    let mut tokens = msg
        .subject()
        .as_bytes()
        .split(|&b| b == b'.')
        .map(|token| std::str::from_utf8(token).unwrap_or_default());
    let (Some(_js), Some(_ack), Some(_stream), Some(name), Some(_delivered), Some(sseq)) = (
        tokens.next(),
        tokens.next(),
        tokens.next(),
        tokens.next(),
        tokens.next(),
        tokens.next(),
    ) else {
        return;
    };
    if tokens.count() != 3 {
        return;
    }
    let Ok(sseq) = sseq.parse::<u64>() else {
        return;
    };
    let Some(consumer) = stream.consumers.read().get(name).cloned() else {
        tracing::debug!(stream = %stream.name, consumer = name, "ack for an unknown consumer");
        return;
    };
    let Some(kind) = AckKind::parse(msg.payload()) else {
        tracing::debug!(stream = %stream.name, consumer = name, "unknown ack payload; ignored");
        return;
    };
    let took = consumer.ack(stream, &kind, sseq, msg.reply());
    if let (true, Some(reply), false) = (took, msg.reply(), matches!(kind, AckKind::Next(_))) {
        let _ = stream
            .scope
            .send(reply, None, None, Bytes::new(), crate::router::Reach::All);
    }
}
