//! Streams: messages kept on disk, and consumers that read them with acks.
//!
//! [`Streams::open`] attaches a data directory to a [`Router`]'s scope. Each stream captures the
//! messages published on its subjects in that scope (from this node and, on a cluster, from
//! the others) into its own herald-log, and consumers read them back with acknowledgement,
//! redelivery and a window of unacknowledged messages. The same store answers the JetStream
//! API (`$JS.API.>`) in its scope, so NATS clients (async-nats, nats-py) drive it through
//! herald-server unchanged; the Rust API below is a thin layer over the same operations.
//!
//! | module | holds |
//! |---|---|
//! | `config` | JetStream's JSON: stream and consumer configs, infos, errors, defaults |
//! | `stream` | a stream: capture, publish acks, de-duplication, confirm-N |
//! | `consumer` | pull consumers: pull requests, acks, redelivery, durable state |
//! | `api` | the `$JS.API` request handlers |
//!
//! # On disk
//! `<dir>/streams/<name>/` holds a stream's log (segments, `purged`), its `stream.json`
//! (config, creation time) and `consumers/<durable>.json` (a durable consumer's state). Files
//! other than segments are written to a temporary file and renamed, so they are whole or old.
//!
//! # In a cluster
//! A stream lives on the node that created it; publishes from every node reach it once. The
//! JetStream API and pull requests are node-only: clients use the node that holds the stream.

mod api;
pub mod config;
mod consumer;
mod stream;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

pub use config::{
    AckPolicy, ApiError, ConsumerConfig, ConsumerInfo, DeliverPolicy, Discard, PubAck,
    PurgeRequest, ReplayPolicy, Retention, SequenceInfo, Storage, StreamConfig, StreamInfo,
    StreamState,
};
pub use herald_log::Fsync;
pub use stream::{CONFIRM_HEADER, CONFIRM_TIMEOUT_HEADER};

use crate::error::{Error, Result};
use crate::message::{HeaderMap, Message};
use crate::router::{Router, Scope};
use crate::subscription::{CallbackHandle, SubscribeOptions};
use consumer::{Consumer, Saved};
use stream::Stream;

/// Where and how a [`Streams`] store keeps its data.
#[derive(Debug, Clone)]
pub struct StreamsOptions {
    dir: PathBuf,
    fsync: Fsync,
    segment_bytes: u64,
}

impl StreamsOptions {
    /// Data in `dir`; fsync [`Fsync::Always`] (an acknowledged publish is on disk).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StreamsOptions {
            dir: dir.into(),
            fsync: Fsync::Always,
            segment_bytes: herald_log::Config::default().segment_bytes,
        }
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

/// The streams of one scope, kept in a data directory. Cheap to clone (shared).
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), herald::Error> {
/// use herald::streams::{ConsumerConfig, StreamConfig, Streams, StreamsOptions};
/// use std::time::Duration;
/// # let dir = std::env::temp_dir().join(format!("herald-doc-{}", std::process::id()));
/// let router = herald::Router::new(100, "shop");
/// let streams = Streams::open(&router, StreamsOptions::new(&dir)).await?;
/// streams.create(StreamConfig::new("ORDERS", ["orders.>"]))?;
///
/// let ack = streams.publish("orders.new", "order 1").await?;
/// assert_eq!(ack.seq, 1);
///
/// streams.create_consumer("ORDERS", ConsumerConfig::durable("billing"))?;
/// let batch = streams.fetch("ORDERS", "billing", 10, Duration::from_secs(1)).await?;
/// assert_eq!(batch[0].text()?, "order 1");
/// batch[0].ack()?;
/// # streams.close(); std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Streams {
    store: Arc<Store>,
}

pub(crate) struct Store {
    dir: PathBuf,
    fsync: Fsync,
    segment_bytes: u64,
    scope: Arc<Scope>,
    router: Router,
    streams: RwLock<BTreeMap<String, Arc<Stream>>>,
    runtime: tokio::runtime::Handle,
    api: Mutex<Option<CallbackHandle>>,
    /// Held while a stream is created.
    creating: Mutex<()>,
    closed: AtomicBool,
}

/// `stream.json`: what a stream needs besides its log.
#[derive(Serialize, Deserialize)]
struct StreamFile {
    config: StreamConfig,
    created: u64,
}

/// The JetStream API subjects the store answers in its scope.
pub const API_SUBJECTS: &str = "$JS.API.>";

impl Streams {
    /// Opens (or creates) the store in `options`' directory for `router`'s scope: every stream
    /// found there is recovered (a damaged log tail is cut and logged) with its durable
    /// consumers, and the JetStream API is answered in the scope. Needs a tokio runtime.
    pub async fn open(router: &Router, options: StreamsOptions) -> Result<Streams> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Closed("streams need a tokio runtime"))?;
        let root = options.dir.join("streams");
        std::fs::create_dir_all(&root).map_err(|e| storage_error(&root, e))?;
        let store = Arc::new(Store {
            dir: options.dir.clone(),
            fsync: options.fsync,
            segment_bytes: options.segment_bytes,
            scope: router.scope_state().clone(),
            router: router.clone(),
            streams: RwLock::default(),
            runtime,
            api: Mutex::new(None),
            creating: Mutex::new(()),
            closed: AtomicBool::new(false),
        });
        let opened = store.clone();
        tokio::task::spawn_blocking(move || opened.recover())
            .await
            .map_err(|e| Error::Stream(ApiError::new(500, 0, e.to_string())))??;
        let weak = Arc::downgrade(&store);
        let handle = router.on_with(
            API_SUBJECTS,
            SubscribeOptions::new().node_only().capacity(1 << 16),
            move |msg| {
                if let Some(store) = weak.upgrade() {
                    api::handle(&store, &msg);
                }
            },
        )?;
        *store.api.lock() = Some(handle);
        Ok(Streams { store })
    }

    /// Creates a stream, or returns the existing one if its config is the same.
    pub fn create(&self, config: StreamConfig) -> Result<StreamInfo> {
        Ok(self.store.create(config)?)
    }

    /// Changes a stream's subjects or limits.
    pub fn update(&self, config: StreamConfig) -> Result<StreamInfo> {
        Ok(self.store.update(config)?)
    }

    /// A stream's config and state.
    pub fn info(&self, name: &str) -> Result<StreamInfo> {
        Ok(self.store.info(name)?)
    }

    /// Deletes a stream with its messages and consumers.
    pub fn delete(&self, name: &str) -> Result<()> {
        Ok(self.store.delete(name)?)
    }

    /// Deletes messages of a stream (all of them with `PurgeRequest::default()`); returns how many.
    pub fn purge(&self, name: &str, request: PurgeRequest) -> Result<u64> {
        Ok(self.store.purge(name, &request)?)
    }

    /// The names of the streams, sorted.
    pub fn names(&self) -> Vec<String> {
        self.store.streams.read().keys().cloned().collect()
    }

    /// Creates a consumer (or returns the existing one with the same config; updates what may
    /// change in place).
    pub fn create_consumer(&self, stream: &str, config: ConsumerConfig) -> Result<ConsumerInfo> {
        Ok(self
            .store
            .create_consumer(stream, config, api::Action::CreateOrUpdate)?)
    }

    /// A consumer's config and state.
    pub fn consumer_info(&self, stream: &str, consumer: &str) -> Result<ConsumerInfo> {
        let (s, c) = self.store.consumer(stream, consumer)?;
        Ok(c.info(&s))
    }

    /// Deletes a consumer (a durable's saved state too).
    pub fn delete_consumer(&self, stream: &str, consumer: &str) -> Result<()> {
        Ok(self.store.delete_consumer(stream, consumer)?)
    }

    /// Publishes to a stream's subject and waits for the stream's acknowledgement.
    pub async fn publish(&self, subject: &str, payload: impl Into<Bytes>) -> Result<PubAck> {
        self.publish_with_headers(subject, HeaderMap::new(), payload)
            .await
    }

    /// Publishes with headers (for example `Nats-Msg-Id`, [`CONFIRM_HEADER`]) and waits for
    /// the stream's acknowledgement.
    pub async fn publish_with_headers(
        &self,
        subject: &str,
        headers: HeaderMap,
        payload: impl Into<Bytes>,
    ) -> Result<PubAck> {
        let wait = Duration::from_secs(5).max(confirm_timeout(&headers) + Duration::from_secs(1));
        let reply = self
            .store
            .router
            .request_with_headers(subject, headers, payload, wait)
            .await?;
        parse_ack(reply.payload())
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

    /// Pulls up to `batch` messages from a consumer, waiting at most `expires` for the first.
    /// Each message shows the subject it was stored with; acknowledge it with
    /// [`Message::ack`] (or `nak`, `in_progress`, `term`).
    pub async fn fetch(
        &self,
        stream: &str,
        consumer: &str,
        batch: usize,
        expires: Duration,
    ) -> Result<Vec<Message>> {
        let (s, c) = self.store.consumer(stream, consumer)?;
        let inbox = format!("_INBOX.fetch.{:016x}", fastrand::u64(..));
        let mut sub = self.store.router.subscribe_with(
            &inbox,
            SubscribeOptions::new()
                .node_only()
                .capacity(batch.max(1) + 4),
        )?;
        let request = config::PullRequest {
            batch: batch.max(1) as i64,
            expires: expires.as_nanos() as u64,
            ..Default::default()
        };
        c.pull(&s, &request, &inbox);
        drop((s, c));
        let mut out = Vec::with_capacity(batch);
        let deadline = tokio::time::Instant::now() + expires + Duration::from_secs(1);
        while out.len() < batch.max(1) {
            let msg = match tokio::time::timeout_at(deadline, sub.recv()).await {
                Ok(Some(msg)) => msg,
                Ok(None) | Err(_) => break,
            };
            match status_of(&msg) {
                None => out.push(msg),
                Some((100, _)) => {}
                Some((404 | 408, _)) => break,
                Some((code, text)) if out.is_empty() => {
                    return Err(Error::Stream(ApiError::new(code, 0, text)));
                }
                Some(_) => break,
            }
        }
        Ok(out)
    }

    /// Saves every durable consumer's state and stops the store: its streams stop capturing,
    /// their writers sync and stop, and the JetStream API goes quiet.
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

/// Acknowledging messages delivered by a stream consumer.
impl Message {
    /// Acknowledges a message from a stream consumer: it will not be delivered again.
    pub fn ack(&self) -> Result<()> {
        self.respond(Bytes::new())
    }

    /// Asks for the message again, at once or after `delay`.
    pub fn nak(&self, delay: Option<Duration>) -> Result<()> {
        match delay {
            None => self.respond("-NAK"),
            Some(d) => self.respond(format!("-NAK {{\"delay\":{}}}", d.as_nanos())),
        }
    }

    /// Says the message is still being worked on: its ack wait starts again.
    pub fn in_progress(&self) -> Result<()> {
        self.respond("+WPI")
    }

    /// Stops redelivery of the message without processing it.
    pub fn term(&self) -> Result<()> {
        self.respond("+TERM")
    }
}

fn confirm_timeout(headers: &HeaderMap) -> Duration {
    headers
        .get(CONFIRM_TIMEOUT_HEADER)
        .and_then(|v| v.parse().ok())
        .map_or(Duration::ZERO, Duration::from_millis)
}

/// Reads a publish ack (or the error in its place).
fn parse_ack(body: &[u8]) -> Result<PubAck> {
    #[derive(Deserialize)]
    struct Reply {
        error: Option<ApiError>,
        #[serde(flatten)]
        rest: serde_json::Value,
    }
    let reply: Reply = serde_json::from_slice(body)?;
    if let Some(err) = reply.error {
        return Err(Error::Stream(err));
    }
    Ok(serde_json::from_value(reply.rest)?)
}

/// The status of a status message (`NATS/1.0 404 No Messages`), if it is one.
fn status_of(msg: &Message) -> Option<(u16, String)> {
    let block = msg.header_block()?;
    let parsed = herald_proto::headers::parse(block).ok()?;
    parsed
        .status
        .map(|code| (code, parsed.description.to_owned()))
}

impl Store {
    /// Opens every stream in the data directory (on a blocking thread).
    fn recover(self: &Arc<Self>) -> Result<()> {
        let root = self.dir.join("streams");
        let entries = std::fs::read_dir(&root).map_err(|e| storage_error(&root, e))?;
        for entry in entries.flatten() {
            let dir = entry.path();
            if !dir.is_dir() {
                continue;
            }
            let file = dir.join("stream.json");
            let loaded: StreamFile = match std::fs::read(&file)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(f) => f,
                Err(err) => {
                    tracing::error!(file = %file.display(), %err, "cannot read a stream's config; stream not opened");
                    continue;
                }
            };
            let name = loaded.config.name.clone();
            match self.open_stream(loaded.config, loaded.created, false) {
                Ok(stream) => self.recover_consumers(&stream),
                Err(err) => tracing::error!(stream = %name, %err, "cannot open stream"),
            }
        }
        Ok(())
    }

    fn recover_consumers(&self, stream: &Arc<Stream>) {
        let dir = stream.dir.join("consumers");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let saved: Saved = match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(s) => s,
                Err(err) => {
                    tracing::error!(file = %path.display(), %err, "cannot read a consumer's state; consumer not opened");
                    continue;
                }
            };
            let Some(name) = saved.config.name.clone() else {
                continue;
            };
            let config = saved.config.clone();
            let created = saved.created;
            let consumer =
                Consumer::start(stream, &name, config, created, Some(saved), &self.runtime);
            stream.consumers.write().insert(name, consumer);
        }
    }

    /// Opens (or creates) a stream's log, subscribes it and starts its ticker.
    fn open_stream(
        self: &Arc<Self>,
        config: StreamConfig,
        created: u64,
        fresh: bool,
    ) -> std::result::Result<Arc<Stream>, ApiError> {
        let dir = self.dir.join("streams").join(&config.name);
        if fresh {
            std::fs::create_dir_all(dir.join("consumers"))
                .map_err(|e| ApiError::stream_create(format!("{}: {e}", dir.display())))?;
            let file = StreamFile {
                config: config.clone(),
                created,
            };
            write_json(&dir.join("stream.json"), &file, true)
                .map_err(|e| ApiError::stream_create(e.to_string()))?;
        }
        let log_config = self.log_config(&config);
        let first = config.first_seq.unwrap_or(1).max(1);
        let (log, recovery) = herald_log::Log::open_from(&dir, log_config, first)
            .map_err(|e| ApiError::stream_create(e.to_string()))?;
        for cut in &recovery.truncations {
            tracing::warn!(stream = %config.name, ?cut, "damaged log tail cut off");
        }
        let fsync = match config.storage {
            Storage::Memory => Fsync::Never,
            Storage::File => self.fsync,
        };
        let stream = Stream::new(config, created, dir, log, fsync, self.scope.clone());
        stream
            .subscribe()
            .map_err(|e| ApiError::stream_create(e.to_string()))?;
        self.streams
            .write()
            .insert(stream.name.clone(), stream.clone());
        let weak = Arc::downgrade(&stream);
        self.runtime.spawn(tick_stream(weak));
        Ok(stream)
    }

    fn log_config(&self, config: &StreamConfig) -> herald_log::Config {
        let positive = |v: i64| u64::try_from(v).unwrap_or(0);
        let defaults = herald_log::Config::default();
        herald_log::Config {
            segment_bytes: self.segment_bytes,
            max_msgs: positive(config.max_msgs),
            max_bytes: positive(config.max_bytes),
            max_age: (config.max_age > 0).then(|| Duration::from_nanos(config.max_age)),
            // Checked against the stream's own limit when captured; the log only refuses what
            // cannot be a record at all.
            max_msg_size: defaults.max_msg_size.max(
                usize::try_from(config.max_msg_size).unwrap_or(0)
                    + herald_log::record::HEADER
                    + 65_536,
            ),
            discard_new: config.discard == Discard::New,
        }
    }

    fn stream(&self, name: &str) -> std::result::Result<Arc<Stream>, ApiError> {
        self.streams
            .read()
            .get(name)
            .cloned()
            .ok_or_else(ApiError::stream_not_found)
    }

    fn consumer(
        &self,
        stream: &str,
        consumer: &str,
    ) -> std::result::Result<(Arc<Stream>, Arc<Consumer>), ApiError> {
        let s = self.stream(stream)?;
        let c = s
            .consumers
            .read()
            .get(consumer)
            .cloned()
            .ok_or_else(ApiError::consumer_not_found)?;
        Ok((s, c))
    }

    fn create(self: &Arc<Self>, config: StreamConfig) -> std::result::Result<StreamInfo, ApiError> {
        let config = config.normalize()?;
        if config.sealed {
            return Err(ApiError::invalid_stream_config(
                "stream configuration for create can not be sealed",
            ));
        }
        // One creation at a time: the overlap check and the insert stay consistent.
        let _one = self.creating.lock();
        if let Some(existing) = self.streams.read().get(&config.name) {
            let same = *existing.config.lock() == config;
            return if same {
                Ok(info_of(existing, None))
            } else {
                Err(ApiError::stream_exists())
            };
        }
        self.check_overlap(&config)?;
        let stream = self.open_stream(config, now_ns(), true)?;
        Ok(info_of(&stream, Some(true)))
    }

    fn check_overlap(&self, config: &StreamConfig) -> std::result::Result<(), ApiError> {
        for (name, other) in self.streams.read().iter() {
            if *name == config.name {
                continue;
            }
            let theirs = other.config.lock().subjects.clone();
            if config
                .subjects
                .iter()
                .any(|a| theirs.iter().any(|b| config::overlaps(a, b)))
            {
                return Err(ApiError::subjects_overlap());
            }
        }
        Ok(())
    }

    fn update(&self, config: StreamConfig) -> std::result::Result<StreamInfo, ApiError> {
        let config = config.normalize()?;
        let stream = self.stream(&config.name)?;
        let old = stream.config.lock().clone();
        if old.storage != config.storage {
            return Err(ApiError::invalid_stream_config(
                "stream configuration update can not change storage type",
            ));
        }
        if old.retention != config.retention {
            return Err(ApiError::invalid_stream_config(
                "stream configuration update can not change retention policy",
            ));
        }
        if old.first_seq != config.first_seq {
            return Err(ApiError::invalid_stream_config(
                "stream configuration update can not change first sequence",
            ));
        }
        self.check_overlap(&config)?;
        stream
            .writer
            .log()
            .set_config(self.log_config(&config))
            .map_err(|e| ApiError::stream_update(e.to_string()))?;
        let file = StreamFile {
            config: config.clone(),
            created: stream.created,
        };
        write_json(&stream.dir.join("stream.json"), &file, true)
            .map_err(|e| ApiError::stream_update(e.to_string()))?;
        let resubscribe = old.subjects != config.subjects;
        *stream.config.lock() = config;
        if resubscribe {
            stream.unsubscribe();
            stream
                .subscribe()
                .map_err(|e| ApiError::stream_update(e.to_string()))?;
        }
        Ok(info_of(&stream, None))
    }

    fn info(&self, name: &str) -> std::result::Result<StreamInfo, ApiError> {
        let stream = self.stream(name)?;
        Ok(info_of(&stream, None))
    }

    fn delete(&self, name: &str) -> std::result::Result<(), ApiError> {
        let stream = self
            .streams
            .write()
            .remove(name)
            .ok_or_else(ApiError::stream_not_found)?;
        stop_stream(&stream, true);
        let dir = stream.dir.clone();
        drop(stream);
        std::fs::remove_dir_all(&dir)
            .map_err(|e| ApiError::new(500, 10050, format!("{}: {e}", dir.display())))
    }

    fn purge(&self, name: &str, req: &PurgeRequest) -> std::result::Result<u64, ApiError> {
        let stream = self.stream(name)?;
        if let Some(filter) = &req.filter {
            let subjects = stream.config.lock().subjects.clone();
            let covers_all = subjects
                .iter()
                .all(|s| crate::subject::check(filter).is_ok() && covers(filter, s));
            if !covers_all {
                return Err(ApiError::stream_purge(
                    "purge by a subject filter narrower than the stream's subjects is not supported",
                ));
            }
        }
        if req.seq.is_some() && req.keep.is_some() {
            return Err(ApiError::bad_request("seq and keep cannot both be given"));
        }
        let mut log = stream.writer.log();
        let up_to = match (req.seq, req.keep) {
            (Some(seq), _) => Some(seq),
            (None, Some(keep)) => Some(log.next_seq().saturating_sub(keep)),
            (None, None) => None,
        };
        log.purge(up_to)
            .map_err(|e| ApiError::stream_purge(e.to_string()))
    }

    pub(crate) fn create_consumer(
        &self,
        stream_name: &str,
        config: ConsumerConfig,
        action: api::Action,
    ) -> std::result::Result<ConsumerInfo, ApiError> {
        let stream = self.stream(stream_name)?;
        let stream_config = stream.config.lock().clone();
        let mut config = config.normalize(&stream_config)?;
        let name = match &config.name {
            Some(name) => name.clone(),
            None => {
                let name = random_name();
                config.name = Some(name.clone());
                name
            }
        };
        let mut consumers = stream.consumers.write();
        if let Some(existing) = consumers.get(&name).cloned() {
            drop(consumers);
            let current = existing.config();
            if current == config {
                return Ok(existing.info(&stream));
            }
            if action == api::Action::Create {
                return Err(ApiError::consumer_exists());
            }
            current.check_update(&config)?;
            existing.update(config);
            return Ok(existing.info(&stream));
        }
        if action == api::Action::Update {
            return Err(ApiError::consumer_missing());
        }
        if stream_config.max_consumers > 0 && consumers.len() as i64 >= stream_config.max_consumers
        {
            return Err(ApiError::max_consumers());
        }
        let consumer = Consumer::start(&stream, &name, config, now_ns(), None, &self.runtime);
        consumers.insert(name, consumer.clone());
        drop(consumers);
        consumer.save(true);
        Ok(consumer.info(&stream))
    }

    fn delete_consumer(&self, stream: &str, consumer: &str) -> std::result::Result<(), ApiError> {
        let s = self.stream(stream)?;
        let c = s
            .consumers
            .write()
            .remove(consumer)
            .ok_or_else(ApiError::consumer_not_found)?;
        c.close(&s, true);
        Ok(())
    }

    fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(api) = self.api.lock().take() {
            api.cancel();
        }
        let streams: Vec<Arc<Stream>> = std::mem::take(&mut *self.streams.write())
            .into_values()
            .collect();
        for stream in &streams {
            stop_stream(stream, false);
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

/// Stops a stream's capture and consumers; `deleted` also drops durable state.
fn stop_stream(stream: &Arc<Stream>, deleted: bool) {
    stream.closed.store(true, Ordering::Release);
    stream.unsubscribe();
    let consumers: Vec<Arc<Consumer>> = std::mem::take(&mut *stream.consumers.write())
        .into_values()
        .collect();
    for c in consumers {
        c.close(stream, deleted);
    }
    if let Err(err) = stream.writer.log().sync() {
        tracing::error!(stream = %stream.name, %err, "final sync failed");
    }
}

/// Removes a consumer that deleted itself (inactive ephemeral).
pub(crate) fn remove_consumer(stream: &Arc<Stream>, name: &str) {
    let removed = stream.consumers.write().remove(name);
    if let Some(c) = removed {
        c.close(stream, true);
    }
}

/// A stream's config and state as JetStream reports them.
fn info_of(stream: &Stream, did_create: Option<bool>) -> StreamInfo {
    let config = stream.config.lock().clone();
    let state = {
        let log = stream.writer.log();
        let last = stream.committed().min(log.next_seq() - 1);
        let first = log.first_seq();
        let ts = |seq| log.timestamp(seq).unwrap_or(0);
        StreamState {
            messages: log.len(),
            bytes: log.bytes(),
            first_seq: if last == 0 { 0 } else { first },
            first_ts: config::rfc3339(ts(first)),
            last_seq: last,
            last_ts: config::rfc3339(ts(last)),
            consumer_count: stream.consumers.read().len(),
            num_deleted: 0,
        }
    };
    StreamInfo {
        config,
        created: config::rfc3339(stream.created),
        state,
        cluster: None,
        ts: config::rfc3339(now_ns()),
        did_create,
    }
}

/// Runs a stream's periodic work until it is dropped.
async fn tick_stream(stream: Weak<Stream>) {
    let mut every = tokio::time::interval(Duration::from_millis(100));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(stream) = stream.upgrade() else {
            return;
        };
        if stream.closed.load(Ordering::Acquire) {
            return;
        }
        stream.tick();
    }
}

/// Whether every subject `narrow` matches is matched by `wide`.
fn covers(wide: &str, narrow: &str) -> bool {
    let mut w = wide.split('.');
    let mut n = narrow.split('.');
    loop {
        match (w.next(), n.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(t)) if t != ">" => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

fn random_name() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// Nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Writes `value` as JSON to `path` through a temporary file and a rename; with `sync`, the
/// file and its directory are synced so the change survives a crash.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T, sync: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    if sync {
        std::fs::File::open(&tmp)?.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if sync && let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn storage_error(path: &Path, err: std::io::Error) -> Error {
    Error::Stream(ApiError::new(500, 0, format!("{}: {err}", path.display())))
}
