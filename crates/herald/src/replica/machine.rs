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

use super::types::{Applied, Change, Item, TypeConfig};
use crate::meta::Member;
use crate::streams::stream::{Incoming, Stream};
use crate::streams::{Purge, Streams};

type Id = u64;

const APPLIED: &str = "applied";

/// The state machine, shared by openraft and its (unused) snapshot builder.
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
    /// Messages stamped at or below this are stored already.
    stored_to: u64,
    marker: File,
    /// What `marker` says: the stream's last sequence and its stamp.
    marked: (u64, u64),
}

impl Machine {
    /// The state machine of `stream`'s replica (kept in `store`) on member `me`, its marker
    /// in `dir`; its log held entries up to `replayed_to` when it started.
    pub(crate) fn open(
        stream: Arc<Stream>,
        store: Streams,
        dir: &Path,
        me: Id,
        replayed_to: u64,
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
        Ok(Machine {
            inner: Arc::new(tokio::sync::Mutex::new(Inner {
                stream,
                store,
                me,
                replayed_to,
                applied: None,
                membership: StoredMembership::default(),
                stored_to,
                marker,
                marked,
            })),
            last_ts: Arc::new(AtomicU64::new(stored_to)),
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
    /// Makes a change on this replica's stream, once what was admitted before is stored.
    fn make(&self, change: &[u8]) -> crate::streams::Result<u64> {
        let change: Change = serde_json::from_slice(change).map_err(|e| {
            crate::streams::Error::bad_request(format!("an unreadable change: {e}"))
        })?;
        if !self.stream.writer.drain(DRAIN_WAIT) {
            tracing::warn!(stream = %self.stream.name, "a change applied before earlier messages were stored");
        }
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
}

impl RaftSnapshotBuilder<TypeConfig> for Machine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<Id>> {
        // Replicated streams keep their whole Raft log (the snapshot policy is never); a
        // snapshot would have to carry the stream itself.
        Err(StorageIOError::write_snapshot(None, &no_snapshots()).into())
    }
}

fn no_snapshots() -> std::io::Error {
    std::io::Error::other("replicated streams do not snapshot")
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
                                let made = inner.make(change);
                                if let Err(err) = &made {
                                    tracing::debug!(stream = %inner.stream.name, %err, "a change refused");
                                }
                                outcome = Some(made);
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
        _snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<Id>> {
        Err(StorageIOError::write_snapshot(Some(meta.signature()), &no_snapshots()).into())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<Id>> {
        Ok(None)
    }
}
