//! The store: a scope's streams in a data directory. It opens them (recovery), makes and
//! changes them and their consumers, and keeps their files.
//!
//! # On disk
//! `<dir>/streams/<name>/` holds a stream's log (segments, `purged`), its `stream.json`
//! (config and creation time) and `consumers/<durable>.json` (a durable consumer's state).
//! Files other than segments are written to a temporary file and renamed, so they are whole
//! or old.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use herald_log::Fsync;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::Purge;
use super::config::{ConsumerConfig, Discard, Storage, StreamConfig};
use super::consumer::Consumer;
use super::error::{Error, Reason, Result};
use super::files::write_json;
use super::info::{ConsumerInfo, StreamInfo, StreamState};
use super::saved::Saved;
use super::sourcing::{self, Copying};
use super::stream::{Hooks, Stream, Takers};
use crate::scope::Scope;
use crate::subject;
use crate::time::{from_unix_nanos, now_nanos};

/// What a consumer create may do to an existing consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CreateAction {
    /// Make it, or change the existing one where changes are allowed.
    CreateOrUpdate,
    /// Make it; an existing one with another config is an error.
    Create,
    /// Change the existing one; a missing one is an error.
    Update,
}

/// A stream of the store, and its consumers.
pub(crate) struct Held {
    pub(crate) stream: Arc<Stream>,
    pub(crate) consumers: RwLock<BTreeMap<String, Arc<Consumer>>>,
    /// The copies that run for it: its mirror, or its sources.
    pub(crate) copies: parking_lot::Mutex<Vec<Arc<Copying>>>,
    /// Held while what the consumers take is worked out and handed to the stream: one change
    /// at a time, and never under the stream's own lock on it (a consumer's state lock is
    /// taken meanwhile, and a consumer delivering under it may publish into the stream).
    takers_update: parking_lot::Mutex<()>,
    /// A following replica's retention floor, from the consumer states its group keeps
    /// (see [`retention`](super::retention)); `None`: keep everything.
    pub(crate) follower_floor: parking_lot::Mutex<Option<u64>>,
}

impl Held {
    /// The consumer `name`.
    pub(crate) fn consumer(&self, name: &str) -> Result<Arc<Consumer>> {
        self.consumers
            .read()
            .get(name)
            .cloned()
            .ok_or_else(Error::consumer_not_found)
    }

    /// Tells the stream what its consumers take now (after any change to them).
    pub(crate) fn consumers_changed(&self) {
        let _one = self.takers_update.lock();
        let consumers: Vec<_> = self.consumers.read().values().cloned().collect();
        let configs: Vec<_> = consumers.iter().map(|c| c.config()).collect();
        let takers = Takers::of(configs.iter().map(|c| c.filter_subjects.as_slice()));
        self.stream.set_takers(takers);
    }
}

/// A scope's streams in one data directory.
pub(crate) struct Store {
    pub(crate) dir: PathBuf,
    pub(crate) fsync: Fsync,
    pub(crate) segment_bytes: u64,
    /// Entries of a replicated stream's Raft log between two snapshots.
    pub(crate) raft_snapshot_entries: u64,
    pub(crate) scope: Arc<Scope>,
    pub(crate) streams: RwLock<BTreeMap<String, Arc<Held>>>,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) hooks: Arc<Hooks>,
    /// Held while a stream is created or its config changes.
    pub(crate) creating: Mutex<()>,
    pub(crate) closed: AtomicBool,
}

/// `stream.json`: what a stream needs besides its log.
#[derive(Serialize, Deserialize)]
struct StreamFile {
    config: StreamConfig,
    /// Creation time, ns since the Unix epoch.
    created: u64,
}

impl Store {
    /// Opens every stream in the data directory (on a blocking thread).
    pub(crate) fn recover(self: &Arc<Self>) -> Result<()> {
        let root = self.dir.join("streams");
        let entries = std::fs::read_dir(&root).map_err(|e| Error::io(root.display(), e))?;
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
                    tracing::error!(
                        file = %file.display(),
                        %err,
                        "cannot read a stream's config; stream not opened (written by an older \
                         herald? `herald data migrate DIR` rewrites it)"
                    );
                    continue;
                }
            };
            let name = loaded.config.name.clone();
            // A replica's consumers start when it leads (`take_over`).
            let replicated = loaded.config.replicas > 1;
            match self.open_stream(loaded.config, loaded.created, false) {
                Ok(held) if replicated => drop(held),
                Ok(held) => self.recover_consumers(&held),
                Err(err) => tracing::error!(stream = %name, %err, "cannot open stream"),
            }
        }
        Ok(())
    }

    fn recover_consumers(&self, held: &Arc<Held>) {
        for (path, saved) in Saved::read_all(&held.stream.dir.join("consumers")) {
            let saved = match saved {
                Ok(s) => s,
                Err(err) => {
                    tracing::error!(
                        file = %path.display(),
                        %err,
                        "cannot read a consumer's state; consumer not opened (written by an \
                         older herald? `herald data migrate DIR` rewrites it)"
                    );
                    continue;
                }
            };
            let Some(name) = saved.config.name.clone() else {
                continue;
            };
            let config = saved.config.clone();
            let created = saved.created;
            let consumer = Consumer::start(
                &held.stream,
                &name,
                config,
                created,
                Some(saved),
                &self.runtime,
                on_inactive(held),
            );
            held.consumers.write().insert(name, consumer);
        }
        held.consumers_changed();
    }

    /// Opens (or creates) a stream's log, subscribes it and starts its ticker.
    fn open_stream(
        self: &Arc<Self>,
        config: StreamConfig,
        created: u64,
        fresh: bool,
    ) -> Result<Arc<Held>> {
        let dir = self.dir.join("streams").join(&config.name);
        if fresh {
            std::fs::create_dir_all(dir.join("consumers")).map_err(|e| {
                Error::new(Reason::StreamCreateIo, format!("{}: {e}", dir.display()))
            })?;
            let file = StreamFile {
                config: config.clone(),
                created,
            };
            let path = dir.join("stream.json");
            write_json(&path, &file, true).map_err(|e| {
                Error::new(Reason::StreamCreateIo, format!("{}: {e}", path.display()))
            })?;
        }
        let log_config = self.log_config(&config);
        let first = config.first_seq.map_or(1, |n| n.get());
        let (log, recovery) = herald_log::Log::open_from(&dir, log_config, first)
            .map_err(|e| Error::new(Reason::StreamCreateIo, format!("{}: {e}", dir.display())))?;
        for cut in &recovery.truncations {
            tracing::warn!(stream = %config.name, ?cut, "damaged log tail cut off");
        }
        let fsync = match config.storage {
            Storage::Memory => Fsync::Never,
            // A replica's messages are in its Raft log (synced as `fsync` says) before anyone
            // is answered; its stream is rebuilt from that log when a crash leaves it short.
            Storage::File if config.replicas > 1 => Fsync::Never,
            Storage::File => self.fsync,
        };
        let stream = Stream::new(
            config,
            created,
            dir,
            log,
            fsync,
            self.scope.clone(),
            self.hooks.clone(),
        );
        // A replica of a replicated stream captures only while its Raft group says it leads.
        if stream.config.lock().replicas <= 1 {
            stream
                .subscribe()
                .map_err(|e| Error::new(Reason::StreamCreateIo, e.to_string()))?;
        }
        let held = Arc::new(Held {
            stream: stream.clone(),
            consumers: RwLock::default(),
            copies: parking_lot::Mutex::default(),
            takers_update: parking_lot::Mutex::default(),
            follower_floor: parking_lot::Mutex::default(),
        });
        self.streams
            .write()
            .insert(stream.name.clone(), held.clone());
        self.runtime.spawn(tick_stream(Arc::downgrade(&held)));
        let (mirror, sources) = {
            let config = held.stream.config.lock();
            (config.mirror.clone(), config.sources.clone())
        };
        if let Some(source) = mirror {
            sourcing::start(self, &held, source, true);
        }
        for source in sources {
            sourcing::start(self, &held, source, false);
        }
        Ok(held)
    }

    fn log_config(&self, config: &StreamConfig) -> herald_log::Config {
        let defaults = herald_log::Config::default();
        herald_log::Config {
            segment_bytes: self.segment_bytes,
            max_msgs: config.max_messages.unwrap_or(0),
            max_bytes: config.max_bytes.unwrap_or(0),
            max_age: config.max_age,
            // Checked against the stream's own limit when captured; the log only refuses what
            // cannot be a record at all.
            max_msg_size: defaults.max_msg_size.max(
                config
                    .max_message_size
                    .and_then(|n| usize::try_from(n).ok())
                    .unwrap_or(0)
                    .saturating_add(herald_log::record::HEADER + 65_536),
            ),
            discard_new: config.discard == Discard::New,
            max_msgs_per_subject: config.max_messages_per_subject.unwrap_or(0),
            discard_new_per_subject: config.discard_new_per_subject,
        }
    }

    pub(crate) fn stream(&self, name: &str) -> Result<Arc<Held>> {
        self.streams
            .read()
            .get(name)
            .cloned()
            .ok_or_else(Error::stream_not_found)
    }

    pub(crate) fn consumer(
        &self,
        stream: &str,
        consumer: &str,
    ) -> Result<(Arc<Stream>, Arc<Consumer>)> {
        let held = self.stream(stream)?;
        let c = held.consumer(consumer)?;
        Ok((held.stream.clone(), c))
    }

    /// Creates a stream, or finds the same one; says whether it made it.
    pub(crate) fn create(self: &Arc<Self>, config: StreamConfig) -> Result<(StreamInfo, bool)> {
        let config = config.normalize()?;
        if config.sealed && !self.streams.read().contains_key(&config.name) {
            return Err(Error::invalid_stream_config(
                "stream configuration for create can not be sealed",
            ));
        }
        // One creation at a time: the overlap check and the insert stay consistent.
        let _one = self.creating.lock();
        if let Some(existing) = self.streams.read().get(&config.name) {
            let same = *existing.stream.config.lock() == config;
            return if same {
                Ok((info_of(existing), false))
            } else {
                Err(Error::stream_exists())
            };
        }
        self.check_overlap(&config)?;
        let held = self.open_stream(config, now_nanos(), true)?;
        // A new stream: no consumer takes anything yet.
        held.consumers_changed();
        Ok((info_of(&held), true))
    }

    /// Opens this node's replica of a replicated stream (`replicas` > 1), creating it if
    /// needed: it captures nothing until its Raft group makes it the leader.
    pub(crate) fn replica(self: &Arc<Self>, config: StreamConfig) -> Result<Arc<Stream>> {
        let config = config.normalize_replicated()?;
        let _one = self.creating.lock();
        if let Some(existing) = self.streams.read().get(&config.name) {
            return Ok(existing.stream.clone());
        }
        self.check_overlap(&config)?;
        Ok(self.open_stream(config, now_nanos(), true)?.stream.clone())
    }

    fn check_overlap(&self, config: &StreamConfig) -> Result<()> {
        for (name, other) in self.streams.read().iter() {
            if *name == config.name {
                continue;
            }
            let theirs = other.stream.config.lock().subjects.clone();
            if config
                .subjects
                .iter()
                .any(|a| theirs.iter().any(|b| subject::overlaps(a, b)))
            {
                return Err(Error::subjects_overlap());
            }
        }
        Ok(())
    }

    pub(crate) fn update(self: &Arc<Self>, config: StreamConfig) -> Result<StreamInfo> {
        // One change at a time (a replica's update can come from its definition and from the
        // call at once): each rewrites the stream's file through the same temporary file.
        let _one = self.creating.lock();
        let held = self.stream(&config.name)?;
        let stream = &held.stream;
        let old = stream.config.lock().clone();
        let config = checked_update(&old, config)?;
        self.check_overlap(&config)?;
        let failed = |e: &dyn std::fmt::Display| {
            Error::new(super::error::Reason::StreamUpdate, e.to_string())
        };
        stream
            .writer
            .log()
            .set_config(self.log_config(&config))
            .map_err(|e| failed(&e))?;
        let file = StreamFile {
            config: config.clone(),
            created: stream.created,
        };
        write_json(&stream.dir.join("stream.json"), &file, true).map_err(|e| failed(&e))?;
        // A replica that does not lead captures nothing, before and after.
        let resubscribe = old.subjects != config.subjects && stream.capturing();
        let added: Vec<_> = config
            .sources
            .iter()
            .filter(|s| !old.sources.contains(s))
            .cloned()
            .collect();
        let sources = config.sources.clone();
        *stream.config.lock() = config;
        // A copy of a source no longer listed stops (what it copied stays).
        held.copies.lock().retain(|copy| {
            let stays = copy.is_mirror() || sources.contains(&copy.source);
            if !stays {
                copy.stop();
            }
            stays
        });
        for source in added {
            sourcing::start(self, &held, source, false);
        }
        if resubscribe {
            stream.unsubscribe();
            stream.subscribe().map_err(|e| failed(&e))?;
        }
        Ok(info_of(&held))
    }

    pub(crate) fn delete(&self, name: &str) -> Result<()> {
        let held = self
            .streams
            .write()
            .remove(name)
            .ok_or_else(Error::stream_not_found)?;
        stop_stream(&held, true);
        let dir = held.stream.dir.clone();
        drop(held);
        std::fs::remove_dir_all(&dir)
            .map_err(|e| Error::new(Reason::StreamDeleteIo, format!("{}: {e}", dir.display())))
    }

    pub(crate) fn purge(&self, name: &str, req: &Purge) -> Result<u64> {
        let held = self.stream(name)?;
        let stream = &held.stream;
        let failed = |why: String| Error::new(super::error::Reason::StreamPurge, why);
        {
            let config = stream.config.lock();
            if config.deny_purge || config.sealed {
                return Err(failed("stream purge not permitted".into()));
            }
        }
        if req.below.is_some() && req.keep.is_some() {
            return Err(Error::bad_request("seq and keep cannot both be given"));
        }
        if let Some(filter) = &req.filter {
            if subject::check(filter).is_err() {
                return Err(Error::bad_request(format!(
                    "invalid subject filter {filter}"
                )));
            }
            let subjects = stream.config.lock().subjects.clone();
            let covers_all = subjects.iter().all(|s| subject::covers(filter, s));
            if !covers_all {
                // Message by message, per subject: `keep` keeps each subject's newest.
                let mut log = stream.writer.log();
                return super::by_pattern(filter, |which| {
                    log.purge_subjects(which, req.below, req.keep)
                })
                .map_err(|e| failed(e.to_string()));
            }
        }
        let mut log = stream.writer.log();
        let up_to = match (req.below, req.keep) {
            (Some(seq), _) => Some(seq),
            (None, Some(keep)) => Some(log.next_seq().saturating_sub(keep)),
            (None, None) => None,
        };
        log.purge(up_to).map_err(|e| failed(e.to_string()))
    }

    pub(crate) fn create_consumer(
        &self,
        stream_name: &str,
        config: ConsumerConfig,
        action: CreateAction,
    ) -> Result<ConsumerInfo> {
        let held = self.stream(stream_name)?;
        let stream = &held.stream;
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
        let mut consumers = held.consumers.write();
        if let Some(existing) = consumers.get(&name).cloned() {
            drop(consumers);
            let current = existing.config();
            if current == config {
                return Ok(existing.info(stream));
            }
            if action == CreateAction::Create {
                return Err(Error::consumer_exists());
            }
            current.check_update(&config)?;
            existing.update(config);
            held.consumers_changed();
            return Ok(existing.info(stream));
        }
        if action == CreateAction::Update {
            return Err(Error::consumer_missing());
        }
        // The stream was deleted (or the store closed) after it was looked up: its consumers
        // are gone and its directory is going.
        if stream.closed.load(Ordering::Acquire) {
            return Err(Error::stream_not_found());
        }
        if stream_config
            .max_consumers
            .is_some_and(|max| consumers.len() as u64 >= max)
        {
            return Err(Error::too_many_consumers());
        }
        let others: Vec<ConsumerConfig> = consumers.values().map(|c| c.config()).collect();
        super::retention::check_consumer(stream_config.retention, &config, others.iter())?;
        let consumer = Consumer::start(
            stream,
            &name,
            config,
            now_nanos(),
            None,
            &self.runtime,
            on_inactive(&held),
        );
        consumers.insert(name, consumer.clone());
        drop(consumers);
        held.consumers_changed();
        consumer.save(true);
        Ok(consumer.info(stream))
    }

    pub(crate) fn delete_consumer(&self, stream: &str, consumer: &str) -> Result<()> {
        let held = self.stream(stream)?;
        let c = held
            .consumers
            .write()
            .remove(consumer)
            .ok_or_else(Error::consumer_not_found)?;
        held.consumers_changed();
        c.close(true);
        if let Some(group) = held.stream.replication.get() {
            group.consumer(consumer, None);
        }
        Ok(())
    }

    /// A replica starts leading its stream: its durable consumers start from the state the
    /// replicas kept.
    pub(crate) fn take_over(&self, stream: &str) -> Result<()> {
        let held = self.stream(stream)?;
        if held.consumers.read().is_empty() {
            self.recover_consumers(&held);
        }
        Ok(())
    }

    /// A replica stops leading its stream: its consumers stop (their state saved).
    pub(crate) fn hand_over(&self, stream: &str) -> Result<()> {
        let held = self.stream(stream)?;
        let consumers: Vec<Arc<Consumer>> = std::mem::take(&mut *held.consumers.write())
            .into_values()
            .collect();
        // Not leading, it decides nothing about them.
        let one = held.takers_update.lock();
        held.stream.set_takers(Takers::Unknown);
        drop(one);
        for consumer in consumers {
            consumer.close(false);
        }
        // Following, its retention goes by the states the group keeps.
        held.stream.states_changed.store(true, Ordering::Release);
        Ok(())
    }

    pub(crate) fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let streams: Vec<Arc<Held>> = std::mem::take(&mut *self.streams.write())
            .into_values()
            .collect();
        for held in &streams {
            stop_stream(held, false);
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

/// Stops a stream's capture and consumers; `deleted` also drops durable state.
fn stop_stream(held: &Held, deleted: bool) {
    let stream = &held.stream;
    stream.closed.store(true, Ordering::Release);
    stream.unsubscribe();
    let consumers: Vec<Arc<Consumer>> = std::mem::take(&mut *held.consumers.write())
        .into_values()
        .collect();
    for c in consumers {
        c.close(deleted);
    }
    if let Err(err) = stream.writer.log().sync() {
        tracing::error!(stream = %stream.name, %err, "final sync failed");
    }
}

/// What a consumer of `held` calls when it has been inactive too long (an ephemeral): it is
/// removed from its stream and closed.
fn on_inactive(held: &Arc<Held>) -> Box<dyn Fn(&str) + Send + Sync> {
    let held = Arc::downgrade(held);
    Box::new(move |name| {
        let Some(held) = held.upgrade() else {
            return;
        };
        let removed = held.consumers.write().remove(name);
        held.consumers_changed();
        if let Some(c) = removed {
            c.close(true);
        }
    })
}

/// A stream's config and state.
pub(crate) fn info_of(held: &Held) -> StreamInfo {
    let stream = &held.stream;
    let config = stream.config.lock().clone();
    let state = {
        let log = stream.writer.log();
        let last = stream.committed().min(log.next_seq() - 1);
        let first = log.first_seq();
        let time = |seq| log.timestamp(seq).map(from_unix_nanos);
        // Written but not readable yet (their write completes after the flush or fsync): not
        // counted until they are, so that the count and the last sequence agree.
        let unseen = log.next_seq() - 1 - last;
        StreamState {
            messages: log.len().saturating_sub(unseen),
            bytes: log.bytes(),
            first_seq: if last == 0 { 0 } else { first },
            first_time: if log.is_empty() { None } else { time(first) },
            last_seq: last,
            last_time: if last == 0 { None } else { time(last) },
            consumers: held.consumers.read().len(),
        }
    };
    let (mut mirror, mut sources) = (None, Vec::new());
    for copy in held.copies.lock().iter() {
        if copy.is_mirror() {
            mirror = Some(copy.info());
        } else {
            sources.push(copy.info());
        }
    }
    StreamInfo {
        config,
        created: from_unix_nanos(stream.created),
        state,
        mirror,
        sources,
    }
}

/// Runs a stream's periodic work until it is dropped.
async fn tick_stream(held: Weak<Held>) {
    let mut every = tokio::time::interval(Duration::from_millis(100));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(held) = held.upgrade() else {
            return;
        };
        if held.stream.closed.load(Ordering::Acquire) {
            return;
        }
        held.stream.tick();
        super::retention::sweep(&held);
    }
}

fn random_name() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// The config a stream with `old` takes from an update to `config` (normalized), or why it
/// cannot: storage, retention, first sequence and mirror are fixed (sources may change), and so is
/// whether it is replicated (a replicated stream may go from 2 to 5 replicas and back, not
/// to 1); a sealed stream stays as it is.
pub(crate) fn checked_update(old: &StreamConfig, config: StreamConfig) -> Result<StreamConfig> {
    let refuse = |what: &str| {
        Err(Error::invalid_stream_config(format!(
            "stream configuration update can not change {what}"
        )))
    };
    let config = if old.replicas > 1 {
        if config.replicas <= 1 {
            return refuse("its number of replicas to 1");
        }
        config.normalize_replicated()?
    } else {
        config.normalize()?
    };
    if old.storage != config.storage {
        return refuse("storage type");
    }
    if old.retention != config.retention {
        return refuse("retention policy");
    }
    if old.first_seq != config.first_seq {
        return refuse("first sequence");
    }
    if old.mirror != config.mirror {
        return Err(Error::new(
            Reason::MirrorNotUpdatable,
            "stream mirror configuration can not be updated",
        ));
    }
    if old.sealed && !config.sealed {
        return Err(Error::invalid_stream_config(
            "stream configuration update can not unseal a sealed stream",
        ));
    }
    if old.sealed && config != *old {
        return Err(Error::invalid_stream_config(
            "stream configuration update can not change a sealed stream",
        ));
    }
    Ok(config)
}
