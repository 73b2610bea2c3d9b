//! Streams: messages kept on disk, and consumers that read them with acks.
//!
//! [`Streams::open`] attaches a data directory to a [`Router`]'s scope. Each stream captures
//! the messages published on its subjects in that scope (from this node and, on a cluster,
//! from the others) into its own herald-log, and consumers hand them out again with
//! acknowledgement, redelivery and a window of unacknowledged messages.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use herald::streams::{ConsumerConfig, StreamConfig, Streams, StreamsOptions};
//! use std::time::Duration;
//! # let dir = tempfile::tempdir()?;
//! let router = herald::Router::new(100, "shop");
//! let streams = Streams::open(&router, StreamsOptions::new(dir.path())).await?;
//! streams.create(StreamConfig::new("ORDERS", ["orders.>"]))?;
//!
//! let ack = streams.publish("orders.new", "order 1").await?;
//! assert_eq!(ack.seq, 1);
//!
//! streams.create_consumer("ORDERS", ConsumerConfig::durable("billing"))?;
//! for msg in streams.fetch("ORDERS", "billing", 10, Duration::from_secs(1)).await? {
//!     assert_eq!((msg.seq(), msg.text()?), (1, "order 1"));
//!     msg.ack()?;
//! }
//! # Ok(()) }
//! ```
//!
//! NATS clients reach the same streams through the JetStream adapter (`herald::jetstream`,
//! feature `jetstream`), which the server turns on.
//!
//! | module | holds |
//! |---|---|
//! | `config` | [`StreamConfig`], [`ConsumerConfig`], their enums, defaults and rules |
//! | `error` | [`Error`] and [`ErrorKind`] |
//! | `info` | [`StreamInfo`], [`ConsumerInfo`], [`PubAck`] |
//! | `message` | [`StreamMessage`]: a fetched message and its acks |
//! | `store` | the data directory: recovery, create/update/delete, files |
//! | `stream` | a stream: capture, publish acks, de-duplication, confirm-N |
//! | `consumer` | a consumer: position, acks, redelivery, durable state |
//! | `pull` | pull requests and the sinks their messages go to |
//!
//! # In a cluster
//! A `Streams` store is this node's: a stream created through it lives here; publishes from
//! every node reach it once. The cluster's own streams (placed by its meta group, kept on
//! `replicas` nodes with a Raft group each, surviving their leader) are reached with the same
//! types through `herald::jetstream::ClusterStreams` (feature `jetstream`), from any node that
//! serves the cluster's JetStream (`herald::jetstream::serve_clustered`).

mod config;
mod consumer;
mod error;
mod files;
mod info;
pub(crate) mod message;
mod messages;
pub(crate) mod pull;
mod read_ahead;
mod republish;
mod retention;
mod saved;
mod sourcing;
pub(crate) mod store;
pub(crate) mod stream;
pub(crate) use config::valid_name;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

pub use config::{
    AckPolicy, ConsumerConfig, ConsumerLimits, DEFAULT_ACK_WAIT, DEFAULT_DUPLICATE_WINDOW,
    DEFAULT_INACTIVE_THRESHOLD, DEFAULT_MAX_ACK_PENDING, DEFAULT_MAX_WAITING, DeliverPolicy,
    Discard, Push, ReplayPolicy, Republish, Retention, Source, Storage, StreamConfig,
};
pub use error::{Error, ErrorKind, Result};
pub use herald_log::Fsync;
pub use info::{
    ConsumerInfo, Placement, Position, PubAck, ReplicaInfo, SourceInfo, StreamInfo, StreamState,
};
pub use message::StreamMessage;
pub use messages::Messages;
pub use stream::{CONFIRM_HEADER, CONFIRM_TIMEOUT_HEADER};

pub use consumer::{AckKind, AckOutcome};
pub(crate) use error::Reason;
pub(crate) use store::CreateAction;

use crate::dispatch::Reach;
use crate::message::HeaderMap;
use crate::router::Router;
use message::{Event, Fetch};
use pull::PullRequest;
use store::Store;

/// Where and how a [`Streams`] store keeps its data.
#[derive(Debug, Clone)]
pub struct StreamsOptions {
    dir: PathBuf,
    fsync: Fsync,
    segment_bytes: u64,
    raft_snapshot_entries: u64,
}

impl StreamsOptions {
    /// Data in `dir`; fsync [`Fsync::Always`] (an acknowledged publish is on disk).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StreamsOptions {
            dir: dir.into(),
            fsync: Fsync::Always,
            segment_bytes: herald_log::Config::default().segment_bytes,
            raft_snapshot_entries: DEFAULT_RAFT_SNAPSHOT_ENTRIES,
        }
    }

    /// In a cluster: entries of a replicated stream's Raft log between two snapshots
    /// ([`DEFAULT_RAFT_SNAPSHOT_ENTRIES`] by default; 0 keeps the log whole). A snapshot
    /// records where the stream stands; the log before it is dropped but for its last 1,000
    /// entries, and a replica further behind catches up from the snapshot and the others'
    /// copies.
    pub fn raft_snapshot_entries(mut self, entries: u64) -> Self {
        self.raft_snapshot_entries = entries;
        self
    }

    /// When appended messages reach the disk (streams with `memory` storage never fsync).
    pub fn fsync(mut self, fsync: Fsync) -> Self {
        self.fsync = fsync;
        self
    }

    /// The size at which a log segment rolls.
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }
}

/// Entries of a replicated stream's Raft log between two snapshots, unless
/// [`StreamsOptions::raft_snapshot_entries`] says otherwise.
pub const DEFAULT_RAFT_SNAPSHOT_ENTRIES: u64 = 20_000;

/// What [`Streams::purge`] removes: everything by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purge {
    /// Only messages on subjects this pattern matches (it must cover the stream's subjects).
    pub filter: Option<String>,
    /// Only messages below this sequence.
    pub below: Option<u64>,
    /// Keep the newest this many messages.
    pub keep: Option<u64>,
}

/// Which stored message [`Streams::get`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Get {
    /// The message with this sequence.
    Seq(u64),
    /// The last message on a subject matching this pattern.
    LastBySubject(String),
    /// The first message at or after `from` on a subject matching `subject`.
    NextBySubject {
        /// Where to start looking.
        from: u64,
        /// The pattern its subject must match.
        subject: String,
    },
}

/// A message as stored, read back by [`Streams::get`].
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// Its sequence in the stream.
    pub seq: u64,
    /// When it was stored.
    pub time: std::time::SystemTime,
    /// Subject, headers (as published) and payload.
    pub message: crate::Message,
}

/// The streams of one scope, kept in a data directory. Cheap to clone (shared).
#[derive(Clone)]
pub struct Streams {
    store: Arc<Store>,
    router: Router,
}

impl Streams {
    /// Opens (or creates) the store in `options`' directory for `router`'s scope: every
    /// stream found there is recovered (a damaged log tail is cut and logged) with its
    /// durable consumers. Needs a tokio runtime.
    pub async fn open(router: &Router, options: StreamsOptions) -> Result<Streams> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::closed("streams need a tokio runtime"))?;
        let root = options.dir.join("streams");
        std::fs::create_dir_all(&root).map_err(|e| Error::io(root.display(), e))?;
        let store = Arc::new(Store {
            dir: options.dir.clone(),
            fsync: options.fsync,
            segment_bytes: options.segment_bytes,
            raft_snapshot_entries: options.raft_snapshot_entries,
            scope: router.scope_state().clone(),
            streams: RwLock::default(),
            runtime,
            hooks: Arc::new(stream::Hooks::new()),
            creating: Mutex::new(()),
            closed: AtomicBool::new(false),
        });
        let opened = store.clone();
        tokio::task::spawn_blocking(move || opened.recover())
            .await
            .map_err(|e| Error::closed(format!("recovery stopped: {e}")))??;
        Ok(Streams {
            store,
            router: router.clone(),
        })
    }

    /// The router whose scope the streams live in.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Creates a stream, or returns the existing one if its config is the same
    /// ([`ErrorKind::AlreadyExists`] if not).
    pub fn create(&self, config: StreamConfig) -> Result<StreamInfo> {
        Ok(self.store.create(config)?.0)
    }

    /// [`create`](Streams::create), also saying whether this call made the stream.
    pub(crate) fn create_reporting(&self, config: StreamConfig) -> Result<(StreamInfo, bool)> {
        self.store.create(config)
    }

    /// This node's replica of a replicated stream, opened (created if needed) without
    /// capturing: its Raft group decides when it does.
    pub(crate) fn replica(&self, config: StreamConfig) -> Result<Arc<stream::Stream>> {
        self.store.replica(config)
    }

    /// When appended messages reach the disk, as this store was opened with.
    pub(crate) fn fsync(&self) -> Fsync {
        self.store.fsync
    }

    /// Entries of a replicated stream's Raft log between two snapshots.
    pub(crate) fn raft_snapshot_entries(&self) -> u64 {
        self.store.raft_snapshot_entries
    }

    /// This node's replica starts leading `stream`: its consumers start.
    pub(crate) fn take_over(&self, stream: &str) -> Result<()> {
        self.store.take_over(stream)
    }

    /// This node's replica stops leading `stream`: its consumers stop.
    pub(crate) fn hand_over(&self, stream: &str) -> Result<()> {
        self.store.hand_over(stream)
    }

    /// Changes a stream's subjects or limits.
    pub fn update(&self, config: StreamConfig) -> Result<StreamInfo> {
        self.store.update(config)
    }

    /// A stream's config and state.
    pub fn info(&self, name: &str) -> Result<StreamInfo> {
        let held = self.store.stream(name)?;
        Ok(store::info_of(&held))
    }

    /// Every stream's config and state, by name.
    pub fn list(&self) -> Vec<StreamInfo> {
        let streams: Vec<_> = self.store.streams.read().values().cloned().collect();
        streams.iter().map(|held| store::info_of(held)).collect()
    }

    /// The names of the streams, sorted.
    pub fn names(&self) -> Vec<String> {
        self.store.streams.read().keys().cloned().collect()
    }

    /// Deletes a stream with its messages and consumers.
    pub fn delete(&self, name: &str) -> Result<()> {
        self.store.delete(name)
    }

    /// Deletes messages of a stream (all of them with `Purge::default()`); returns how many.
    pub fn purge(&self, name: &str, purge: &Purge) -> Result<u64> {
        self.store.purge(name, purge)
    }

    /// Reads one stored message.
    pub fn get(&self, stream: &str, which: &Get) -> Result<StoredMessage> {
        let held = self.store.stream(stream)?;
        let s = &held.stream;
        let mut log = s.writer.log();
        let last = s.committed();
        let failed = |e: herald_log::Error| Error::new(Reason::StreamRead, e.to_string());
        let seq = match which {
            Get::Seq(seq) => Some(*seq),
            Get::LastBySubject(subject) => {
                by_pattern(subject, |f| log.last_seq_of(f)).map_err(failed)?
            }
            Get::NextBySubject { from, subject } => {
                by_pattern(subject, |f| log.next_seq_of(f, *from)).map_err(failed)?
            }
        };
        // Only what its publisher could have been told is stored.
        let found = match seq.filter(|&seq| seq <= last) {
            Some(seq) => log.get(seq).map_err(failed)?,
            None => None,
        };
        let m = found.ok_or_else(Error::no_message)?;
        let headers = (!m.headers.is_empty()).then(|| Bytes::from(m.headers));
        Ok(StoredMessage {
            seq: m.seq,
            time: crate::time::from_unix_nanos(m.timestamp),
            message: crate::Message::new(
                crate::Subject::from_valid(&m.subject),
                None,
                crate::message::Headers::from_block(headers),
                Bytes::from(m.payload),
                None,
            ),
        })
    }

    /// Whether a stream exists and lets clients read its messages directly.
    pub fn allows_direct(&self, stream: &str) -> bool {
        self.store
            .stream(stream)
            .is_ok_and(|held| held.stream.config.lock().allow_direct)
    }

    /// The subjects of a stream's kept messages that match `filter`, with how many each has,
    /// sorted by subject.
    pub fn subjects(&self, stream: &str, filter: &str) -> Result<Vec<(String, u64)>> {
        crate::subject::check(filter).map_err(|e| Error::bad_request(e.to_string()))?;
        let held = self.store.stream(stream)?;
        let mut log = held.stream.writer.log();
        let states = by_pattern(filter, |f| log.subjects_state(f))
            .map_err(|e| Error::new(Reason::StreamRead, e.to_string()))?;
        Ok(states
            .into_iter()
            .map(|s| (s.subject, s.messages))
            .collect())
    }

    /// How many kept messages from `from` on have subjects matching `filter`.
    pub fn count_from(&self, stream: &str, filter: &str, from: u64) -> Result<u64> {
        let held = self.store.stream(stream)?;
        let mut log = held.stream.writer.log();
        by_pattern(filter, |f| log.count_from(f, from))
            .map_err(|e| Error::new(Reason::StreamRead, e.to_string()))
    }

    /// Deletes one message of a stream; with `erase`, its content is also overwritten on
    /// disk. [`ErrorKind::NotFound`] when the stream does not hold it.
    pub fn delete_message(&self, stream: &str, seq: u64, erase: bool) -> Result<()> {
        let held = self.store.stream(stream)?;
        let s = &held.stream;
        if s.config.lock().deny_delete || s.config.lock().sealed {
            return Err(Error::new(
                Reason::MessageDeleteDenied,
                "message delete not permitted",
            ));
        }
        if seq > s.committed() {
            return Err(Error::no_message());
        }
        let mut log = s.writer.log();
        let failed = |e: herald_log::Error| Error::new(Reason::StreamRead, e.to_string());
        if !log.delete(seq, erase).map_err(failed)? {
            return Err(Error::no_message());
        }
        // A delete asked for is on disk before it is answered.
        log.sync().map_err(failed)?;
        Ok(())
    }

    /// Creates a consumer, or returns the existing one with the same config; changes what may
    /// change of an existing one in place.
    pub fn create_consumer(&self, stream: &str, config: ConsumerConfig) -> Result<ConsumerInfo> {
        self.store
            .create_consumer(stream, config, CreateAction::CreateOrUpdate)
    }

    /// [`create_consumer`](Streams::create_consumer) that only creates, or only updates.
    pub(crate) fn create_consumer_as(
        &self,
        stream: &str,
        config: ConsumerConfig,
        action: CreateAction,
    ) -> Result<ConsumerInfo> {
        self.store.create_consumer(stream, config, action)
    }

    /// A consumer's config and position.
    pub fn consumer_info(&self, stream: &str, consumer: &str) -> Result<ConsumerInfo> {
        let (s, c) = self.store.consumer(stream, consumer)?;
        Ok(c.info(&s))
    }

    /// Every consumer of a stream, by name.
    pub fn consumers(&self, stream: &str) -> Result<Vec<ConsumerInfo>> {
        let held = self.store.stream(stream)?;
        let consumers: Vec<_> = held.consumers.read().values().cloned().collect();
        Ok(consumers.iter().map(|c| c.info(&held.stream)).collect())
    }

    /// Deletes a consumer (a durable's saved state too).
    pub fn delete_consumer(&self, stream: &str, consumer: &str) -> Result<()> {
        self.store.delete_consumer(stream, consumer)
    }

    /// Publishes to a stream's subject and waits for the stream's acknowledgement. The
    /// message reaches the router's other subscribers as any publish does.
    ///
    /// Fails with [`ErrorKind::NotFound`] when no stream of this store captures `subject`.
    pub async fn publish(&self, subject: &str, payload: impl Into<Bytes>) -> Result<PubAck> {
        self.publish_with_headers(subject, HeaderMap::new(), payload)
            .await
    }

    /// Publishes with headers (for example `Nats-Msg-Id` for de-duplication, or
    /// [`CONFIRM_HEADER`]) and waits for the stream's acknowledgement.
    pub async fn publish_with_headers(
        &self,
        subject: &str,
        headers: HeaderMap,
        payload: impl Into<Bytes>,
    ) -> Result<PubAck> {
        let sent = self.send(subject, headers, payload.into())?;
        self.acknowledged(sent).await
    }

    /// Publishes `messages` (subject, headers, payload) in their order, then waits for all
    /// their acknowledgements at once, so that they share the stream's syncs (with
    /// `fsync = always`, one per group of appends rather than one per message). One result per
    /// message, in the same order.
    pub async fn publish_batch(
        &self,
        messages: impl IntoIterator<Item = (String, HeaderMap, Bytes)>,
    ) -> Vec<Result<PubAck>> {
        let sent: Vec<Result<Sent>> = messages
            .into_iter()
            .map(|(subject, headers, payload)| self.send(&subject, headers, payload))
            .collect();
        // All are in flight: waiting for them one after the other costs nothing more.
        let mut results = Vec::with_capacity(sent.len());
        for sent in sent {
            results.push(match sent {
                Ok(sent) => self.acknowledged(sent).await,
                Err(err) => Err(err),
            });
        }
        results
    }

    /// Whether a stream of this store captures literal `subject`.
    pub fn captures(&self, subject: &str) -> bool {
        self.store.streams.read().values().any(|held| {
            held.stream
                .config
                .lock()
                .subjects
                .iter()
                .any(|p| crate::subject::matches(p, subject))
        })
    }

    /// Hands a message to the streams that capture its subject (the sync half of a publish).
    fn send(&self, subject: &str, headers: HeaderMap, payload: Bytes) -> Result<Sent<'_>> {
        crate::subject::check_literal(subject)?;
        if !self.captures(subject) {
            return Err(Error::new(
                Reason::StreamNotFound,
                format!("no stream captures subject {subject}"),
            ));
        }
        let wait = Duration::from_secs(5).max(confirm_timeout(&headers) + Duration::from_secs(1));
        let (token, acked) = self.store.hooks.register();
        let sent = Sent {
            forget: Forget {
                hooks: &self.store.hooks,
                token,
            },
            acked,
            wait,
        };
        let headers = (!headers.is_empty()).then_some(headers);
        self.store.scope.send(
            subject,
            Some(&sent.forget.token),
            headers,
            payload,
            Reach::All,
        )?;
        Ok(sent)
    }

    /// Waits for the acknowledgement of a message [`send`](Streams::send) handed over.
    async fn acknowledged(&self, sent: Sent<'_>) -> Result<PubAck> {
        // However this ends (an error, a timeout, the caller dropping it), the token goes
        // with `sent`.
        let Sent {
            forget,
            acked,
            wait,
        } = sent;
        let outcome = match tokio::time::timeout(wait, acked).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(Error::closed(
                "the stream closed before storing the message",
            )),
            Err(_) => Err(Error::new(
                Reason::Timeout,
                format!("no acknowledgement within {wait:?}"),
            )),
        };
        drop(forget);
        outcome
    }

    /// Publishes and waits until `consumers` distinct consumers acknowledged the message
    /// (confirm-N), or fails after `timeout` saying how many did.
    pub async fn publish_confirmed(
        &self,
        subject: &str,
        payload: impl Into<Bytes>,
        consumers: usize,
        timeout: Duration,
    ) -> Result<PubAck> {
        let mut headers = HeaderMap::new();
        headers.insert(CONFIRM_HEADER, &consumers.to_string())?;
        headers.insert(CONFIRM_TIMEOUT_HEADER, &timeout.as_millis().to_string())?;
        self.publish_with_headers(subject, headers, payload).await
    }

    /// Takes up to `batch` messages from a consumer, waiting at most `expires` for them; fewer
    /// (or none) when the time runs out. Acknowledge each with [`StreamMessage::ack`] (or
    /// `nak`, `in_progress`, `term`).
    pub async fn fetch(
        &self,
        stream: &str,
        consumer: &str,
        batch: usize,
        expires: Duration,
    ) -> Result<Vec<StreamMessage>> {
        let (s, c) = self.store.consumer(stream, consumer)?;
        let batch = batch.max(1);
        let (sink, mut events) = Fetch::new(s.name.as_str().into(), &c);
        let request = PullRequest {
            batch,
            expires: Some(expires),
            ..PullRequest::default()
        };
        c.pull(&request, Box::new(sink));
        drop((s, c));
        let mut out = Vec::with_capacity(batch);
        // The consumer ends the request when it expires; this bound only guards against a
        // consumer that is gone without saying so.
        let expires = expires.min(Duration::from_secs(100 * 365 * 24 * 3600));
        let deadline = tokio::time::Instant::now() + expires + Duration::from_secs(1);
        while out.len() < batch {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(Event::Message(msg))) => out.push(msg),
                Ok(Some(Event::End(end))) => {
                    if out.is_empty()
                        && let Some(err) = end.error(consumer)
                    {
                        return Err(err);
                    }
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
        Ok(out)
    }

    /// A consumer's messages as they are stored, for a reader that stays: at most `batch`
    /// are buffered for it at a time (the rest wait in the stream). Acknowledge each as with
    /// [`fetch`](Streams::fetch).
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use herald::streams::{ConsumerConfig, StreamConfig, Streams, StreamsOptions};
    /// let dir = tempfile::tempdir()?;
    /// let router = herald::Router::new(64, "docs");
    /// let streams = Streams::open(&router, StreamsOptions::new(dir.path())).await?;
    /// streams.create(StreamConfig { name: "ORDERS".into(), subjects: vec!["orders.>".into()], ..Default::default() })?;
    /// let reader = streams.create_consumer("ORDERS", ConsumerConfig { name: Some("app".into()), durable: true, ..Default::default() })?;
    /// let mut messages = streams.messages("ORDERS", &reader.name, 64)?;
    /// streams.publish("orders.1", "one").await?;
    /// let msg = messages.next().await?;
    /// assert_eq!((msg.seq(), msg.text()?), (1, "one"));
    /// msg.ack()?;
    /// # Ok(()) }
    /// ```
    pub fn messages(&self, stream: &str, consumer: &str, batch: usize) -> Result<Messages> {
        let (s, c) = self.store.consumer(stream, consumer)?;
        Ok(Messages::new(s.name.as_str().into(), &c, batch))
    }

    /// Applies an acknowledgement to a message a consumer delivered: what
    /// [`StreamMessage::ack`] and its siblings do, for a caller that only kept the sequence
    /// (the HTTP API). `Ok(false)` when the consumer takes no acks.
    pub(crate) fn acknowledge(
        &self,
        stream: &str,
        consumer: &str,
        kind: AckKind,
        seq: u64,
    ) -> Result<bool> {
        let held = self.store.stream(stream)?;
        let took = held.consumer(consumer)?.ack(kind, seq)?;
        if took && matches!(kind, AckKind::Ack | AckKind::Term) {
            retention::after_ack(&held, seq);
        }
        Ok(took)
    }

    /// Acknowledges (or naks, terminates, extends) the message at stream sequence `seq` that
    /// `consumer` delivered, for a caller that kept only the sequence (a browser over HTTP):
    /// says whether it was waiting, already acknowledged, or never delivered.
    pub fn ack(&self, stream: &str, consumer: &str, kind: AckKind, seq: u64) -> Result<AckOutcome> {
        let held = self.store.stream(stream)?;
        let outcome = held.consumer(consumer)?.ack_by_seq(kind, seq)?;
        if outcome == AckOutcome::Applied && matches!(kind, AckKind::Ack | AckKind::Term) {
            retention::after_ack(&held, seq);
        }
        Ok(outcome)
    }

    /// Queues a pull request whose messages go to `sink`.
    pub(crate) fn pull(
        &self,
        stream: &str,
        consumer: &str,
        request: &PullRequest,
        sink: Box<dyn pull::Sink>,
    ) -> Result<()> {
        let (_, c) = self.store.consumer(stream, consumer)?;
        c.pull(request, sink);
        Ok(())
    }

    /// Whether an ack of `seq` by `consumer` is sampled for metrics (its `sample_frequency`,
    /// drawn at random), and then how long ago `seq` was delivered.
    pub(crate) fn ack_sample(
        &self,
        stream: &str,
        consumer: &str,
        seq: u64,
    ) -> Option<Option<std::time::Duration>> {
        let (_, c) = self.store.consumer(stream, consumer).ok()?;
        let (percent, since) = c.ack_sample(seq)?;
        (fastrand::u8(0..100) < percent).then_some(since)
    }

    /// Makes `consumer` deliver by push into `sink` from now on (replacing an earlier push
    /// sink), with a heartbeat after `heartbeat` without a delivery.
    pub(crate) fn push(
        &self,
        stream: &str,
        consumer: &str,
        sink: Box<dyn pull::Sink>,
        heartbeat: Option<std::time::Duration>,
    ) -> Result<()> {
        let (_, c) = self.store.consumer(stream, consumer)?;
        c.push(sink, heartbeat);
        Ok(())
    }

    /// Has `consumer` look again for what it can deliver (a push sink stopped blocking).
    pub(crate) fn wake(&self, stream: &str, consumer: &str) {
        if let Ok((_, c)) = self.store.consumer(stream, consumer) {
            c.wake();
        }
    }

    /// The store's hooks (for the JetStream adapter).
    pub(crate) fn hooks(&self) -> &stream::Hooks {
        &self.store.hooks
    }

    /// Saves every durable consumer's state and stops the store: its streams stop capturing
    /// and their writers sync and stop.
    pub fn close(&self) {
        self.store.close();
    }
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("dir", &self.store.dir)
            .field("streams", &self.names())
            .finish()
    }
}

/// What a fetch that got nothing reports for how its request ended: `None` when "nothing
/// came in time" is the answer.
/// Forgets a publish's reply token when the publish ends, however it ends.
/// A publish handed to the streams, waiting for its acknowledgement.
struct Sent<'a> {
    forget: Forget<'a>,
    acked: tokio::sync::oneshot::Receiver<Result<PubAck>>,
    wait: Duration,
}

/// Forgets a publish's reply token when dropped, however the publish ended.
struct Forget<'a> {
    hooks: &'a stream::Hooks,
    token: String,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.hooks.forget(&self.token);
    }
}

fn confirm_timeout(headers: &HeaderMap) -> Duration {
    headers
        .get(CONFIRM_TIMEOUT_HEADER)
        .and_then(|v| v.parse().ok())
        .map_or(Duration::ZERO, Duration::from_millis)
}

/// Runs `f` with the log's filter for `pattern`: exact for a literal subject, a match
/// otherwise.
pub(crate) fn by_pattern<R>(pattern: &str, f: impl FnOnce(herald_log::Filter<'_>) -> R) -> R {
    let matches = |s: &str| crate::subject::matches(pattern, s);
    match crate::subject::check(pattern) {
        Ok(crate::subject::Kind::Literal) => f(herald_log::Filter::Subject(pattern)),
        _ => f(herald_log::Filter::Matching(&matches)),
    }
}

/// Runs `f` with the log's filter for a consumer's filter subjects (all when none).
pub(crate) fn by_patterns<R>(
    patterns: &[String],
    f: impl FnOnce(herald_log::Filter<'_>) -> R,
) -> R {
    match patterns {
        [] => f(herald_log::Filter::All),
        [one] => by_pattern(one, f),
        many => {
            let matches = |s: &str| many.iter().any(|p| crate::subject::matches(p, s));
            f(herald_log::Filter::Matching(&matches))
        }
    }
}
