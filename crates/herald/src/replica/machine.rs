//! A replicated stream's state machine: the replica's own stream. Applying a committed batch
//! has the stream admit each message as its leader captured it (same checks, same stamp, so
//! every replica stores the same messages under the same sequences); only the replica that
//! proposed the batch answers the publishers.
//!
//! A replica that restarts applies its log again from the start. Messages it stored before
//! are passed over by their stamp: the stamps rise along the log, and `applied` (rewritten
//! at each apply, a lower bound of the newest stored stamp) together with the newest stamp
//! in the stream's own log tell how far the stream got. A damaged stream tail that recovery
//! cut off is thus stored again from the Raft log.

use std::fs::File;
use std::io::Cursor;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{EntryPayload, LogId, StorageError, StorageIOError, StoredMembership};

use super::types::{ConsumerState, TypeConfig};
use crate::meta::Member;
use crate::streams::stream::{Incoming, Stream};

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
    me: Id,
    applied: Option<LogId<Id>>,
    membership: StoredMembership<Id, Member>,
    /// Messages stamped at or below this are stored already.
    stored_to: u64,
    marker: File,
    marked: u64,
}

impl Machine {
    /// The state machine of `stream`'s replica on member `me`, its marker in `dir`.
    pub(crate) fn open(stream: Arc<Stream>, dir: &Path, me: Id) -> std::io::Result<Machine> {
        std::fs::create_dir_all(dir)?;
        let marker = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(dir.join(APPLIED))?;
        let mut field = [0u8; 8];
        let marked = match marker.read_exact_at(&mut field, 0) {
            Ok(()) => u64::from_le_bytes(field),
            Err(_) => 0,
        };
        let newest = {
            let log = stream.writer.log();
            log.timestamp(log.next_seq().saturating_sub(1)).unwrap_or(0)
        };
        let stored_to = marked.max(newest);
        stream.last_stored.fetch_max(stored_to, Ordering::AcqRel);
        Ok(Machine {
            inner: Arc::new(tokio::sync::Mutex::new(Inner {
                stream,
                me,
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

impl Inner {
    /// Records how far the stream's stores got (not synced: a stale value is still a lower
    /// bound).
    fn mark(&mut self) {
        let stored = self.stream.last_stored.load(Ordering::Acquire);
        if stored > self.marked {
            if let Err(err) = self.marker.write_all_at(&stored.to_le_bytes(), 0) {
                tracing::warn!(stream = %self.stream.name, %err, "cannot record applied messages");
            }
            self.marked = stored;
        }
    }
}

/// Keeps a consumer's state as the leader saved it, for when this replica leads.
fn keep_consumer(stream: &Stream, state: &ConsumerState) {
    let file = stream
        .dir
        .join("consumers")
        .join(format!("{}.json", state.name));
    let kept = match &state.saved {
        Some(saved) => serde_json::to_vec(saved)
            .map_err(std::io::Error::from)
            .and_then(|json| crate::raft::log_store::replace_file(&file, &json, false)),
        None => match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    };
    if let Err(err) = kept {
        tracing::warn!(stream = %stream.name, consumer = state.name, %err, "cannot keep a consumer's state");
    }
}

impl RaftSnapshotBuilder<TypeConfig> for Machine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<Id>> {
        // Replicated streams keep their whole Raft log (the snapshot policy is never); a
        // snapshot would have to carry the stream itself.
        let inner = self.inner.lock().await;
        let meta = SnapshotMeta {
            last_log_id: inner.applied,
            last_membership: inner.membership.clone(),
            snapshot_id: format!("{:?}", inner.applied),
        };
        Err(StorageIOError::write_snapshot(
            Some(meta.signature()),
            &std::io::Error::other("replicated streams do not snapshot"),
        )
        .into())
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

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError<Id>>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.inner.lock().await;
        inner.mark();
        let mut outcomes = Vec::new();
        for entry in entries {
            inner.applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(batch) => {
                    let proposer = entry.log_id.leader_id.node_id == inner.me;
                    for msg in &batch.msgs {
                        self.last_ts.fetch_max(msg.ts, Ordering::AcqRel);
                        if msg.ts <= inner.stored_to {
                            continue;
                        }
                        let incoming = Incoming {
                            subject: &msg.subject,
                            reply: msg.reply.as_deref(),
                            headers: (!msg.headers.is_empty()).then_some(&msg.headers[..]),
                            payload: &msg.payload,
                        };
                        inner.stream.admit(&incoming, msg.ts, proposer);
                    }
                    // The proposer's own file is newer than what it proposed.
                    if !proposer {
                        for state in &batch.consumers {
                            keep_consumer(&inner.stream, state);
                        }
                    }
                }
                EntryPayload::Membership(membership) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id), membership);
                }
            }
            outcomes.push(());
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
        Err(StorageIOError::write_snapshot(
            Some(meta.signature()),
            &std::io::Error::other("replicated streams do not snapshot"),
        )
        .into())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<Id>> {
        Ok(None)
    }
}
