//! A replicated stream's state machine: the replica's own stream. Applying a committed batch
//! has the stream admit each message as its leader captured it (same checks, same stamp, so
//! every replica stores the same messages under the same sequences); only the replica that
//! proposed the batch answers the publishers.
//!
//! A replica that restarts applies its log again from the start. Messages it stored before
//! are passed over by their stamp: the stamps rise along the log, so the newest stamp the
//! stream holds tells how far it got. `applied` records the stream's last sequence and its
//! stamp at each apply (unsynced), for when the newest messages were deleted since (a purge,
//! acks of a work queue); it is believed only while the stream still reaches that sequence.
//! A stream tail that recovery cut off (damage, or a crash before an fsync) is thus stored
//! again from the Raft log, and the replica's copy is repaired from what the group agreed.
//!
//! **Snapshots.** Every so many entries a replica records where its stream stands (the
//! applied entry, membership, first and last sequence, newest stamp, the durable consumers'
//! states) in a small snapshot file, and openraft drops the log before it. The messages are
//! not in the snapshot: they are the stream. A replica that gets a snapshot from its leader
//! (it missed entries the log no longer holds), or that restarts from its own snapshot with
//! a copy shorter than it (cut short, or rebuilt after damage), fetches the messages it lacks
//! from another member's copy and deletes what the others no longer keep (`catchup`)
//! before it applies anything after the snapshot.
//!
//! A change (a purge, a message delete) is made on every replica when its entry applies,
//! after every message admitted before it is in the log, so all replicas delete the same
//! messages. One stamped at or below the newest message a restarted replica holds was made
//! before that message was stored, so it is passed over too (its effect is in the files).

use std::fs::File;
use std::io::Cursor;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{EntryPayload, LogId, StorageError, StorageIOError, StoredMembership};

use serde::{Deserialize, Serialize};

use super::catchup;
use super::types::{Applied, Change, Item, TypeConfig};
use crate::Router;
use crate::meta::Member;
use crate::raft::log_store::replace_file;
use crate::streams::stream::{Incoming, Stream};
use crate::streams::{Purge, Streams};

type Id = u64;

const APPLIED: &str = "applied";
const SNAPSHOT: &str = "snapshot";

/// How long a replica keeps trying to fetch what a snapshot says it lacks.
const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Where the other members' copies are asked for (the group's RPCs).
pub(crate) struct Peers {
    pub(crate) router: Router,
    pub(crate) prefix: String,
}

/// What a snapshot records, as its file and the wire carry it: where the stream stood when
/// entry `last_applied` was applied.
#[derive(Serialize, Deserialize, Default, Clone)]
struct Image {
    last_applied: Option<LogId<Id>>,
    membership: StoredMembership<Id, Member>,
    snapshot_id: String,
    /// The first sequence the stream kept, and its last.
    first_seq: u64,
    last_seq: u64,
    /// The newest stamp applied.
    stamp: u64,
    /// The durable consumers' saved states, by name.
    consumers: std::collections::BTreeMap<String, String>,
}

impl Image {
    fn meta(&self) -> SnapshotMeta<Id, Member> {
        SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id: self.snapshot_id.clone(),
        }
    }
}

/// The state machine, shared by openraft and its snapshot builder.
#[derive(Clone)]
pub(crate) struct Machine {
    inner: Arc<tokio::sync::Mutex<Inner>>,
    /// The newest stamp applied (stored or refused): a new leader stamps above it.
    pub(crate) last_ts: Arc<AtomicU64>,
}

struct Inner {
    stream: Arc<Stream>,
    /// The store holding `stream`, where changes are made.
    store: Streams,
    me: Id,
    /// The last entry this member's log held when it started: entries up to it are applied
    /// again after a restart (their publishers were answered, their consumers' states
    /// superseded on the proposer only by its own files, which a rebuilt replica lacks).
    replayed_to: u64,
    applied: Option<LogId<Id>>,
    membership: StoredMembership<Id, Member>,
    /// Messages (and changes) stamped at or below this are decided already: stored (or
    /// refused, or made) before this start, or applied since.
    stored_to: u64,
    marker: File,
    /// What `marker` says: the stream's last sequence and its stamp.
    marked: (u64, u64),
    peers: Peers,
    /// The snapshot file, and the last snapshot built or installed.
    snapshot_path: std::path::PathBuf,
    snapshot: Option<(SnapshotMeta<Id, Member>, Vec<u8>)>,
    /// A snapshot this replica restarted from whose messages its copy lacks: fetched before
    /// anything after it is applied.
    behind: Option<Image>,
}

impl Machine {
    /// The state machine of `stream`'s replica (kept in `store`) on member `me`, its marker
    /// and snapshot in `dir`; its log held entries up to `replayed_to` when it started.
    pub(crate) fn open(
        stream: Arc<Stream>,
        store: Streams,
        dir: &Path,
        me: Id,
        replayed_to: u64,
        peers: Peers,
    ) -> std::io::Result<Machine> {
        std::fs::create_dir_all(dir)?;
        let marker = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(dir.join(APPLIED))?;
        let mut field = [0u8; 16];
        let marked = match marker.read_exact_at(&mut field, 0) {
            Ok(()) => {
                let (seq, ts) = field.split_at(8);
                (
                    u64::from_le_bytes(seq.try_into().unwrap_or_default()),
                    u64::from_le_bytes(ts.try_into().unwrap_or_default()),
                )
            }
            Err(_) => (0, 0),
        };
        let (last, newest) = last_of(&stream);
        let stored_to = if marked.0 <= last {
            marked.1.max(newest)
        } else {
            tracing::warn!(
                stream = %stream.name,
                held = last,
                had = marked.0,
                "the replica's stream is shorter than before: stored again from the group's log"
            );
            newest
        };
        let snapshot_path = dir.join(SNAPSHOT);
        let image = match std::fs::read(&snapshot_path) {
            Ok(bytes) => {
                let image: Image = serde_json::from_slice(&bytes)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                Some((image, bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut inner = Inner {
            stream,
            store,
            me,
            replayed_to,
            applied: None,
            membership: StoredMembership::default(),
            stored_to,
            marker,
            marked,
            peers,
            snapshot_path,
            snapshot: None,
            behind: None,
        };
        let mut newest = stored_to;
        if let Some((image, bytes)) = image {
            // The log before the snapshot may be gone: the replica starts from it.
            inner.applied = image.last_applied;
            inner.membership = image.membership.clone();
            inner.snapshot = Some((image.meta(), bytes));
            newest = newest.max(image.stamp);
            if last < image.last_seq {
                tracing::warn!(
                    stream = %inner.stream.name,
                    held = last,
                    snapshot = image.last_seq,
                    "the replica's copy is shorter than its snapshot: fetched from the others"
                );
                inner.behind = Some(image);
            }
        }
        Ok(Machine {
            inner: Arc::new(tokio::sync::Mutex::new(inner)),
            last_ts: Arc::new(AtomicU64::new(newest)),
        })
    }
}

/// The stream's last sequence and its stamp (0 when it has none, or it was deleted).
fn last_of(stream: &Stream) -> (u64, u64) {
    let log = stream.writer.log();
    let last = log.next_seq().saturating_sub(1);
    (last, log.timestamp(last).unwrap_or(0))
}

impl Inner {
    /// Brings the stream to where `image` says it stood, from the other members' copies
    /// (trying for [`CATCH_UP_WAIT`]); its consumers' states too.
    async fn catch_up(&mut self, image: &Image) -> Result<(), String> {
        // Live members first (gossip says which), and among them the one that made the
        // snapshot's last entry: it had everything then. A dead one is asked last.
        let live = self.peers.router.node().live_members();
        let made_by = image.last_applied.map(|l| l.leader_id.node_id);
        let mut peers: Vec<(bool, bool, Id)> = image
            .membership
            .membership()
            .nodes()
            .filter(|(id, _)| **id != self.me)
            .map(|(id, member)| (!live.contains(&member.name), Some(*id) != made_by, *id))
            .collect();
        peers.sort();
        let peers: Vec<Id> = peers.into_iter().map(|(_, _, id)| id).collect();
        let deadline = tokio::time::Instant::now() + CATCH_UP_WAIT;
        let (router, prefix, stream) = (&self.peers.router, &self.peers.prefix, &self.stream);
        loop {
            let held = last_of(stream).0.min(image.last_seq);
            let done = async {
                catchup::prune(router, prefix, &peers, stream, held).await?;
                catchup::fetch(router, prefix, &peers, stream, image.last_seq).await
            };
            match done.await {
                Ok(()) => break,
                Err(why) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(stream = %stream.name, why, "catching up: trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(why) => return Err(why),
            }
        }
        let first = image.first_seq.max(1);
        let purged = self.stream.writer.log().purge(Some(first));
        if let Err(err) = purged {
            return Err(format!(
                "cannot drop what the snapshot no longer keeps: {err}"
            ));
        }
        let dir = self.stream.dir.join("consumers");
        if let Ok(files) = std::fs::read_dir(&dir) {
            for file in files.flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                if let Some(name) = name.strip_suffix(".json")
                    && !image.consumers.contains_key(name)
                {
                    keep_consumer(&self.stream, name, None);
                }
            }
        }
        for (name, saved) in &image.consumers {
            keep_consumer(&self.stream, name, Some(saved.as_bytes()));
        }
        self.stored_to = self.stored_to.max(image.stamp);
        self.mark();
        tracing::info!(stream = %self.stream.name, last = image.last_seq, "caught up from a snapshot");
        Ok(())
    }

    /// Where the stream stands now, for a snapshot.
    fn image(&self, stamp: u64) -> Image {
        let (first_seq, last_seq) = {
            let log = self.stream.writer.log();
            (log.first_seq(), log.next_seq().saturating_sub(1))
        };
        let mut consumers = std::collections::BTreeMap::new();
        if let Ok(files) = std::fs::read_dir(self.stream.dir.join("consumers")) {
            for file in files.flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                if let Some(name) = name.strip_suffix(".json")
                    && let Ok(saved) = std::fs::read_to_string(file.path())
                {
                    consumers.insert(name.to_owned(), saved);
                }
            }
        }
        let applied = self.applied;
        Image {
            last_applied: applied,
            membership: self.membership.clone(),
            snapshot_id: format!(
                "{}-{}-{:08x}",
                applied.map_or(0, |l| l.leader_id.term),
                applied.map_or(0, |l| l.index),
                fastrand::u32(..)
            ),
            first_seq,
            last_seq,
            stamp,
            consumers,
        }
    }

    /// Waits (off the runtime's threads) until every message admitted so far is in the
    /// stream's log.
    async fn drained(&self) {
        let stream = self.stream.clone();
        let drained = tokio::task::spawn_blocking(move || stream.writer.drain(DRAIN_WAIT)).await;
        if !matches!(drained, Ok(true)) {
            tracing::warn!(stream = %self.stream.name, "the stream's writer did not finish in time");
        }
    }

    /// Makes a change on this replica's stream (once [`drained`](Inner::drained)).
    fn make(&self, change: &[u8]) -> crate::streams::Result<u64> {
        let change: Change = serde_json::from_slice(change).map_err(|e| {
            crate::streams::Error::bad_request(format!("an unreadable change: {e}"))
        })?;
        let name = &self.stream.name;
        match change {
            Change::Purge {
                filter,
                below,
                keep,
            } => self.store.purge(
                name,
                &Purge {
                    filter,
                    below,
                    keep,
                },
            ),
            Change::DeleteMessage { seq, erase } => {
                self.store.delete_message(name, seq, erase).map(|()| 0)
            }
        }
    }

    /// Records how far the stream got (not synced: it is checked against the stream when
    /// read back).
    fn mark(&mut self) {
        let (last, ts) = last_of(&self.stream);
        if last > self.marked.0 && ts > 0 {
            let mut field = [0u8; 16];
            field[..8].copy_from_slice(&last.to_le_bytes());
            field[8..].copy_from_slice(&ts.to_le_bytes());
            if let Err(err) = self.marker.write_all_at(&field, 0) {
                tracing::warn!(stream = %self.stream.name, %err, "cannot record applied messages");
            }
            self.marked = (last, ts);
        }
    }
}

/// Longest a change waits for the messages admitted before it to be in the log.
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Keeps a consumer's state as the leader saved it, for when this replica leads.
fn keep_consumer(stream: &Stream, name: &str, saved: Option<&[u8]>) {
    if !crate::streams::valid_name(name) {
        tracing::warn!(stream = %stream.name, name, "a consumer state with an unusable name; ignored");
        return;
    }
    let file = stream.dir.join("consumers").join(format!("{name}.json"));
    let kept = match saved {
        Some(saved) => crate::raft::log_store::replace_file(&file, saved, false),
        None => match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    };
    if let Err(err) = kept {
        tracing::warn!(stream = %stream.name, consumer = name, %err, "cannot keep a consumer's state");
    }
    stream.states_changed.store(true, Ordering::Release);
}

impl RaftSnapshotBuilder<TypeConfig> for Machine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<Id>> {
        let mut inner = self.inner.lock().await;
        tracing::debug!(stream = %inner.stream.name, applied = ?inner.applied, "building a snapshot");
        // Every message applied so far is in the stream's log before it is described.
        inner.drained().await;
        let image = inner.image(self.last_ts.load(Ordering::Acquire));
        let meta = image.meta();
        let failed = |e: String| {
            StorageIOError::write_snapshot(Some(meta.signature()), &std::io::Error::other(e))
        };
        let bytes = serde_json::to_vec(&image).map_err(|e| failed(e.to_string()))?;
        // The stream's files are synced first: the snapshot never describes messages a
        // crash could take back.
        inner
            .stream
            .writer
            .log()
            .sync()
            .map_err(|e| failed(e.to_string()))?;
        replace_file(&inner.snapshot_path, &bytes, true).map_err(|e| failed(e.to_string()))?;
        inner.snapshot = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for Machine {
    type SnapshotBuilder = Machine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<Id>>, StoredMembership<Id, Member>), StorageError<Id>> {
        let inner = self.inner.lock().await;
        Ok((inner.applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError<Id>>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.inner.lock().await;
        if let Some(image) = inner.behind.take() {
            // Restarted from a snapshot its copy falls short of: nothing after it is
            // applied before the copy has what the snapshot describes (until another member
            // can tell, this replica waits).
            while let Err(why) = inner.catch_up(&image).await {
                tracing::warn!(stream = %inner.stream.name, why, "cannot catch up yet");
            }
        }
        inner.mark();
        let mut outcomes = Vec::new();
        for entry in entries {
            inner.applied = Some(entry.log_id);
            let mut outcome = None;
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(batch) => {
                    let proposer = entry.log_id.leader_id.node_id == inner.me
                        && entry.log_id.index > inner.replayed_to;
                    for item in batch.items() {
                        match item {
                            Item::Message(msg) => {
                                self.last_ts.fetch_max(msg.ts, Ordering::AcqRel);
                                if msg.ts <= inner.stored_to {
                                    continue;
                                }
                                let incoming = Incoming {
                                    subject: msg.subject,
                                    reply: msg.reply,
                                    headers: msg.headers,
                                    payload: msg.payload,
                                };
                                inner.stream.admit(&incoming, msg.ts, proposer);
                                // Decided: applying it again (openraft may, after a
                                // snapshot older than what was applied) passes it over.
                                inner.stored_to = msg.ts;
                            }
                            // The live proposer's own file is newer than what it proposed.
                            Item::Consumer { .. } if proposer => {}
                            Item::Consumer { name, saved } => {
                                keep_consumer(&inner.stream, name, saved)
                            }
                            Item::Change { ts, change } => {
                                self.last_ts.fetch_max(ts, Ordering::AcqRel);
                                if ts <= inner.stored_to {
                                    continue;
                                }
                                inner.drained().await;
                                let made = inner.make(change);
                                if let Err(err) = &made {
                                    tracing::debug!(stream = %inner.stream.name, %err, "a change refused");
                                }
                                outcome = Some(made);
                                inner.stored_to = ts;
                            }
                        }
                    }
                }
                EntryPayload::Membership(membership) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id), membership);
                }
            }
            outcomes.push(Applied(outcome));
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<Id>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<Id, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<Id>> {
        let bytes = snapshot.into_inner();
        let failed = |e: String| {
            StorageIOError::read_snapshot(Some(meta.signature()), &std::io::Error::other(e))
        };
        let image: Image = serde_json::from_slice(&bytes).map_err(|e| failed(e.to_string()))?;
        let mut inner = self.inner.lock().await;
        tracing::debug!(stream = %inner.stream.name, snapshot = ?meta.last_log_id, last = image.last_seq, "installing a snapshot");
        inner.drained().await;
        // Until another member can tell what the snapshot describes, this replica waits.
        while let Err(why) = inner.catch_up(&image).await {
            tracing::warn!(stream = %inner.stream.name, why, "cannot install a snapshot yet");
        }
        self.last_ts.fetch_max(image.stamp, Ordering::AcqRel);
        // A snapshot this replica restarted from is superseded (its consumers' states too).
        inner.behind = None;
        inner.applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        replace_file(&inner.snapshot_path, &bytes, true)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        inner.snapshot = Some((meta.clone(), bytes));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<Id>> {
        let inner = self.inner.lock().await;
        Ok(inner.snapshot.as_ref().map(|(meta, bytes)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(bytes.clone())),
        }))
    }
}
