//! The meta group's state machine: the definitions every member agrees on, kept in memory and
//! in a snapshot file (written whole, synced) so that a restarted node starts from its last
//! snapshot and re-applies the committed entries after it. Changes are published on a watch
//! channel for whoever acts on them (a node creating the streams placed on it).

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{EntryPayload, LogId, StorageError, StorageIOError, StoredMembership};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::types::{Definitions, Member, Outcome, TypeConfig, apply};
use crate::raft::log_store::replace_file;

type Id = u64;

/// The state machine, shared by openraft and its snapshot builder.
#[derive(Clone)]
pub(crate) struct Machine {
    inner: Arc<tokio::sync::Mutex<Inner>>,
    /// The definitions after every applied change.
    changes: Arc<watch::Sender<Arc<Definitions>>>,
}

/// What a snapshot holds, as its file and the wire carry it.
#[derive(Serialize, Deserialize, Default, Clone)]
struct Image {
    last_applied: Option<LogId<Id>>,
    membership: StoredMembership<Id, Member>,
    definitions: Definitions,
    snapshot_id: String,
}

struct Inner {
    path: PathBuf,
    state: Image,
    /// The last snapshot built or installed, as bytes.
    snapshot: Option<(SnapshotMeta<Id, Member>, Vec<u8>)>,
}

const SNAPSHOT: &str = "snapshot";

impl Machine {
    /// Opens the state machine of `dir`: its last snapshot, if any.
    pub(crate) fn open(dir: &Path) -> std::io::Result<Machine> {
        let path = dir.join(SNAPSHOT);
        let (state, snapshot) = match std::fs::read(&path) {
            Ok(bytes) => {
                let image: Image = serde_json::from_slice(&bytes)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                let meta = meta_of(&image);
                (image, Some((meta, bytes)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Image::default(), None),
            Err(e) => return Err(e),
        };
        let (changes, _) = watch::channel(Arc::new(state.definitions.clone()));
        Ok(Machine {
            inner: Arc::new(tokio::sync::Mutex::new(Inner {
                path,
                state,
                snapshot,
            })),
            changes: Arc::new(changes),
        })
    }

    /// The definitions now, and every change after.
    pub(crate) fn watch(&self) -> watch::Receiver<Arc<Definitions>> {
        self.changes.subscribe()
    }
}

fn meta_of(image: &Image) -> SnapshotMeta<Id, Member> {
    SnapshotMeta {
        last_log_id: image.last_applied,
        last_membership: image.membership.clone(),
        snapshot_id: image.snapshot_id.clone(),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for Machine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<Id>> {
        let mut inner = self.inner.lock().await;
        let applied = inner.state.last_applied;
        inner.state.snapshot_id = match applied {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, fastrand::u32(..)),
            None => format!("0-0-{}", fastrand::u32(..)),
        };
        let bytes = serde_json::to_vec(&inner.state)
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let meta = meta_of(&inner.state);
        replace_file(&inner.path, &bytes, true)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
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
        Ok((inner.state.last_applied, inner.state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError<Id>>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.inner.lock().await;
        let mut outcomes = Vec::new();
        let mut changed = false;
        for entry in entries {
            inner.state.last_applied = Some(entry.log_id);
            outcomes.push(match entry.payload {
                EntryPayload::Blank => Outcome::Done,
                EntryPayload::Normal(command) => {
                    changed = true;
                    apply(&mut inner.state.definitions, &command)
                }
                EntryPayload::Membership(membership) => {
                    inner.state.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Outcome::Done
                }
            });
        }
        if changed {
            self.changes
                .send_replace(Arc::new(inner.state.definitions.clone()));
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
        let image: Image = serde_json::from_slice(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let mut inner = self.inner.lock().await;
        replace_file(&inner.path, &bytes, true)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        inner.state = image;
        inner.snapshot = Some((meta.clone(), bytes));
        self.changes
            .send_replace(Arc::new(inner.state.definitions.clone()));
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
