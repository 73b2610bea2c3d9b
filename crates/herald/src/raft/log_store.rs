//! A Raft log and vote on disk, for any of herald's Raft groups (the meta group, each
//! replicated stream's group).
//!
//! `log` holds one entry per line, `<crc32c as 8 hex digits> <entry as JSON>`, appended and,
//! with `fsync = always`, synced before openraft is told the entries are durable (otherwise
//! synced in the background, as a stream's own files are). Where each line starts is kept in
//! memory with the newest entries themselves (openraft reads them back at once to replicate
//! and apply them); older entries are read back from the file.
//! `vote` and `purged` are small JSON files replaced whole (written aside, synced, renamed).
//! At open, a last line cut short by a crash (no line end) is dropped: it was never
//! acknowledged, as the sync comes before the acknowledgement. A whole line that fails its
//! checksum, anywhere, is an error, never skipped: this node then stays out of the group
//! until an operator clears the directory (it then catches up from the others as a new
//! member would), so a damaged log never votes. A truncation (after an election) cuts the
//! file; a purge (after a snapshot) rewrites it.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::ops::RangeBounds;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use herald_log::Fsync;
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, RaftTypeConfig, StorageError, StorageIOError, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;

type Id = u64;

/// What the log store needs of a Raft configuration: numeric ids, openraft's own entries,
/// which serde can write and which can be kept in memory.
pub(crate) trait Config:
    RaftTypeConfig<NodeId = Id, Entry = Entry<Self>, D: Clone> + Sized
where
    Entry<Self>: Serialize + DeserializeOwned,
{
}

impl<C> Config for C
where
    C: RaftTypeConfig<NodeId = Id, Entry = Entry<C>, D: Clone>,
    Entry<C>: Serialize + DeserializeOwned,
{
}

/// The log and vote of one node in one group, shared by openraft's writer and its readers.
pub(crate) struct LogStore<C: Config>
where
    Entry<C>: Serialize + DeserializeOwned,
{
    inner: Arc<tokio::sync::Mutex<Inner<C>>>,
}

impl<C: Config> Clone for LogStore<C>
where
    Entry<C>: Serialize + DeserializeOwned,
{
    fn clone(&self) -> Self {
        LogStore {
            inner: self.inner.clone(),
        }
    }
}

/// Where one entry's line is in the file.
#[derive(Debug, Clone, Copy)]
struct Line {
    log_id: LogId<Id>,
    at: u64,
    len: u64,
}

struct Inner<C: Config>
where
    Entry<C>: Serialize + DeserializeOwned,
{
    dir: PathBuf,
    log: File,
    /// When appends reach the disk: before openraft is told (`Always`), or in the
    /// background (`Interval`, `Never`).
    fsync: Fsync,
    /// Whether appends wait for the background sync.
    unsynced: bool,
    /// Whether the background sync runs.
    flusher: bool,
    /// The newest entries, as appended (openraft reads them back at once, to replicate and
    /// to apply them): up to `CACHED_BYTES` of their lines, `CACHED` entries.
    recent: VecDeque<(Entry<C>, u64)>,
    /// The lengths of their lines, summed.
    recent_bytes: u64,
    /// Where the file ends (the next line's offset).
    end: u64,
    lines: BTreeMap<u64, Line>,
    vote: Option<Vote<Id>>,
    purged: Option<LogId<Id>>,
    committed: Option<LogId<Id>>,
    /// Where `committed` is written in place (a checked line, then spaces).
    committed_file: File,
}

/// Most entries kept in memory after their append.
const CACHED: usize = 4096;
/// Most bytes of log lines kept in memory after their append.
const CACHED_BYTES: u64 = 8 << 20;
/// The committed file's width: its line, padded with spaces (so a write in place covers the
/// one before).
const COMMITTED_WIDTH: usize = 128;

const LOG: &str = "log";
const VOTE: &str = "vote";
const PURGED: &str = "purged";
const COMMITTED: &str = "committed";

impl<C: Config> LogStore<C>
where
    Entry<C>: Serialize + DeserializeOwned,
{
    /// Opens (or creates) the log in `dir`, syncing appends as `fsync` says (the vote is
    /// always synced before it counts).
    pub(crate) fn open(dir: &Path, fsync: Fsync) -> std::io::Result<LogStore<C>> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(LOG);
        let (lines, end) = read_log::<C>(&path)?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)?;
        let committed_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(dir.join(COMMITTED))?;
        let purged: Option<LogId<Id>> = read_json(&dir.join(PURGED))?;
        let last = lines.values().next_back().map(|l| l.log_id).or(purged);
        let mut committed = read_committed(&committed_file);
        if committed.is_some_and(|c| last.is_none_or(|last| last.index < c.index)) {
            // Entries it knew committed are gone from the file (cut off on disk): only what
            // it still holds counts as applied; the rest comes from the leader again.
            tracing::warn!(
                dir = %dir.display(),
                ?committed,
                ?last,
                "raft log: shorter than what this node knew committed; catching up from the group"
            );
            committed = last;
        }
        let inner = Inner {
            dir: dir.to_owned(),
            log,
            fsync,
            unsynced: false,
            flusher: false,
            recent: VecDeque::new(),
            recent_bytes: 0,
            end,
            lines,
            vote: read_json(&dir.join(VOTE))?,
            purged,
            committed,
            committed_file,
        };
        Ok(LogStore {
            inner: Arc::new(tokio::sync::Mutex::new(inner)),
        })
    }
}

/// Finds every entry of the log at `path` (checking each); a torn last line is cut off the
/// file. Returns the lines and where the file ends.
fn read_log<C: Config>(path: &Path) -> std::io::Result<(BTreeMap<u64, Line>, u64)>
where
    Entry<C>: Serialize + DeserializeOwned,
{
    let mut lines = BTreeMap::new();
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((lines, 0)),
        Err(e) => return Err(e),
    };
    let length = file.metadata()?.len();
    let mut reader = BufReader::new(file);
    let (mut good, mut line) = (0u64, Vec::new());
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        if read == 0 {
            break;
        }
        let whole = line.last() == Some(&b'\n');
        match decode_line::<Entry<C>>(&line).filter(|_| whole) {
            Some(entry) => {
                let log_id = entry.log_id;
                let len = read as u64;
                lines.insert(
                    log_id.index,
                    Line {
                        log_id,
                        at: good,
                        len,
                    },
                );
                good += len;
            }
            // Only a last line without its end is torn (the write of an entry not yet
            // acknowledged); a whole line that fails its checksum is damage, even the last.
            None if !whole && good + read as u64 == length => {
                tracing::warn!(file = %path.display(), "raft log: dropping a torn last entry");
                OpenOptions::new().write(true).open(path)?.set_len(good)?;
                break;
            }
            None => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "raft log {} is damaged at byte {good}: this node stays out of its \
                         group until the directory is cleared (it then catches up from the \
                         others)",
                        path.display()
                    ),
                ));
            }
        }
    }
    Ok((lines, good))
}

fn decode_line<T: DeserializeOwned>(line: &[u8]) -> Option<T> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let (sum, json) = (line.get(..8)?, line.get(9..)?);
    let sum = u32::from_str_radix(std::str::from_utf8(sum).ok()?, 16).ok()?;
    (crc32c::crc32c(json) == sum).then_some(())?;
    serde_json::from_slice(json).ok()
}

fn encode_line<T: Serialize>(out: &mut Vec<u8>, entry: &T) -> std::io::Result<()> {
    let json = serde_json::to_vec(entry)?;
    write!(out, "{:08x} ", crc32c::crc32c(&json))?;
    out.extend_from_slice(&json);
    out.push(b'\n');
    Ok(())
}

/// Syncs the appends of the log in `inner` every `every`, while it is open.
async fn flush_every<C: Config>(
    inner: std::sync::Weak<tokio::sync::Mutex<Inner<C>>>,
    every: Duration,
) where
    Entry<C>: Serialize + DeserializeOwned,
{
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let file = {
            let mut inner = inner.lock().await;
            if !std::mem::take(&mut inner.unsynced) {
                continue;
            }
            inner.log.try_clone()
        };
        drop(inner);
        let synced = match file {
            Ok(file) => tokio::task::spawn_blocking(move || file.sync_data())
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string()))),
            Err(e) => Err(e),
        };
        if let Err(err) = synced {
            tracing::warn!(%err, "raft log: background sync failed");
        }
    }
}

/// The committed log id last written, if it can be read (it is only a hint: losing it delays
/// applying entries until the leader is heard).
fn read_committed(file: &File) -> Option<LogId<Id>> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut &*file, &mut bytes).ok()?;
    if bytes.is_empty() {
        return None;
    }
    let line = bytes.split(|b| *b == b'\n').next()?;
    let committed = decode_line::<Option<LogId<Id>>>(line);
    if committed.is_none() {
        tracing::warn!("raft log: the committed mark cannot be read; entries wait for the leader");
    }
    committed.flatten()
}

fn read_json<T: DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces the file at `path` whole: written aside, synced, renamed, directory synced.
pub(crate) fn replace_file(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    let aside = path.with_extension("new");
    let mut file = File::create(&aside)?;
    file.write_all(bytes)?;
    if sync {
        file.sync_all()?;
    }
    std::fs::rename(&aside, path)?;
    if sync && let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn write_json<T: Serialize>(path: &Path, value: &T, sync: bool) -> std::io::Result<()> {
    replace_file(path, &serde_json::to_vec(value)?, sync)
}

impl<C: Config> Inner<C>
where
    Entry<C>: Serialize + DeserializeOwned,
{
    /// The entry at `line`, from memory or the file (checked again).
    fn read(&self, line: &Line) -> std::io::Result<Entry<C>> {
        if let Some((first, _)) = self.recent.front()
            && let Some((entry, _)) = line
                .log_id
                .index
                .checked_sub(first.log_id.index)
                .and_then(|at| self.recent.get(at as usize))
            && entry.log_id == line.log_id
        {
            return Ok(entry.clone());
        }
        let mut bytes = vec![0; line.len as usize];
        self.log.read_exact_at(&mut bytes, line.at)?;
        decode_line::<Entry<C>>(&bytes).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("raft log entry {} is damaged on disk", line.log_id.index),
            )
        })
    }

    /// Keeps a newly appended entry in memory, forgetting the oldest beyond the bounds.
    fn remember(&mut self, entry: Entry<C>, len: u64) {
        if self
            .recent
            .back()
            .is_some_and(|(last, _)| last.log_id.index + 1 != entry.log_id.index)
        {
            self.forget_from(0);
        }
        self.recent.push_back((entry, len));
        self.recent_bytes += len;
        while self.recent.len() > CACHED || self.recent_bytes > CACHED_BYTES {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((_, len)) = self.recent.pop_front() {
            self.recent_bytes -= len;
        }
    }

    /// Forgets the entries from `index` on (cut from the log).
    fn forget_from(&mut self, index: u64) {
        while self
            .recent
            .back()
            .is_some_and(|(last, _)| last.log_id.index >= index)
        {
            if let Some((_, len)) = self.recent.pop_back() {
                self.recent_bytes -= len;
            }
        }
    }

    /// Forgets the entries up to `index` (purged from the log).
    fn forget_through(&mut self, index: u64) {
        while self
            .recent
            .front()
            .is_some_and(|(first, _)| first.log_id.index <= index)
        {
            self.forget_oldest();
        }
    }

    /// Writes the log file again with the entries it keeps (after a purge).
    fn rewrite(&mut self) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        let mut lines = BTreeMap::new();
        for line in self.lines.values() {
            let at = bytes.len() as u64;
            let len = bytes.len();
            let entry = self.read(line)?;
            encode_line(&mut bytes, &entry)?;
            let len = (bytes.len() - len) as u64;
            lines.insert(
                line.log_id.index,
                Line {
                    log_id: line.log_id,
                    at,
                    len,
                },
            );
        }
        let path = self.dir.join(LOG);
        replace_file(&path, &bytes, true)?;
        self.log = OpenOptions::new().append(true).read(true).open(&path)?;
        self.end = bytes.len() as u64;
        self.lines = lines;
        Ok(())
    }
}

impl<C: Config> RaftLogReader<C> for LogStore<C>
where
    Entry<C>: Serialize + DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<C>>, StorageError<Id>> {
        let inner = self.inner.lock().await;
        let mut entries = Vec::new();
        for line in inner.lines.range(range).map(|(_, line)| line) {
            match inner.read(line) {
                Ok(entry) => entries.push(entry),
                Err(e) => return Err(StorageIOError::read_log_entry(line.log_id, &e).into()),
            }
        }
        Ok(entries)
    }
}

impl<C: Config> RaftLogStorage<C> for LogStore<C>
where
    Entry<C>: Serialize + DeserializeOwned,
{
    type LogReader = LogStore<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<Id>> {
        let inner = self.inner.lock().await;
        let last = inner.lines.values().next_back().map(|l| l.log_id);
        Ok(LogState {
            last_purged_log_id: inner.purged,
            last_log_id: last.or(inner.purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<Id>) -> Result<(), StorageError<Id>> {
        let mut inner = self.inner.lock().await;
        write_json(&inner.dir.join(VOTE), vote, true)
            .map_err(|e| StorageIOError::write_vote(&e))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<Id>>, StorageError<Id>> {
        Ok(self.inner.lock().await.vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<Id>>,
    ) -> Result<(), StorageError<Id>> {
        let mut inner = self.inner.lock().await;
        // Written in place, not synced: losing it only delays re-applying entries until the
        // leader is heard, and a torn write fails its checksum.
        let mut line = Vec::with_capacity(COMMITTED_WIDTH);
        encode_line(&mut line, &committed).map_err(|e| StorageIOError::write(&e))?;
        if line.len() < COMMITTED_WIDTH {
            line.resize(COMMITTED_WIDTH, b' ');
        }
        inner
            .committed_file
            .write_all_at(&line, 0)
            .map_err(|e| StorageIOError::write(&e))?;
        inner.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<Id>>, StorageError<Id>> {
        Ok(self.inner.lock().await.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<Id>>
    where
        I: IntoIterator<Item = Entry<C>> + Send,
        I::IntoIter: Send,
    {
        // Encoded before the lock; written under it; synced after it, so that readers (the
        // leader's replication to the followers) need not wait for the sync.
        let mut bytes = Vec::new();
        let mut added = Vec::new();
        for entry in entries {
            let at = bytes.len() as u64;
            encode_line(&mut bytes, &entry).map_err(|e| StorageIOError::write_logs(&e))?;
            added.push((entry, at, bytes.len() as u64 - at));
        }
        let written = {
            let mut inner = self.inner.lock().await;
            let written = inner.log.write_all(&bytes);
            let written = match (written, inner.fsync) {
                (Ok(()), Fsync::Always) => inner.log.try_clone().map(Some),
                (Ok(()), Fsync::Interval(every)) => {
                    inner.unsynced = true;
                    if !inner.flusher {
                        inner.flusher = true;
                        tokio::spawn(flush_every(Arc::downgrade(&self.inner), every));
                    }
                    Ok(None)
                }
                (Ok(()), Fsync::Never) => Ok(None),
                (Err(e), _) => Err(e),
            };
            if written.is_ok() {
                let base = inner.end;
                for (entry, at, len) in added {
                    let line = Line {
                        log_id: entry.log_id,
                        at: base + at,
                        len,
                    };
                    inner.lines.insert(entry.log_id.index, line);
                    inner.remember(entry, len);
                }
                inner.end += bytes.len() as u64;
            }
            written
        };
        // With `fsync = always`, only a synced entry is acknowledged (and counts toward a
        // commit).
        let synced = written.and_then(|file| file.map_or(Ok(()), |f| f.sync_data()));
        if let Err(e) = synced {
            callback.log_io_completed(Err(std::io::Error::new(e.kind(), e.to_string())));
            return Err(StorageIOError::write_logs(&e).into());
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<Id>) -> Result<(), StorageError<Id>> {
        let mut inner = self.inner.lock().await;
        let cut = inner.lines.split_off(&log_id.index);
        if let Some(first) = cut.values().next() {
            let at = first.at;
            let done = inner.log.set_len(at).and_then(|()| inner.log.sync_data());
            done.map_err(|e| StorageIOError::write_logs(&e))?;
            inner.end = at;
        }
        inner.forget_from(log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<Id>) -> Result<(), StorageError<Id>> {
        let mut inner = self.inner.lock().await;
        write_json(&inner.dir.join(PURGED), &log_id, true)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        inner.purged = Some(log_id);
        let kept = inner.lines.split_off(&(log_id.index + 1));
        inner.lines = kept;
        inner.forget_through(log_id.index);
        inner
            .rewrite()
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    use crate::meta::types::{Command, TypeConfig};

    fn entry(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command::Delete {
                key: format!("k{index}"),
            }),
        }
    }

    fn write_entries(dir: &Path, n: u64) -> Vec<u8> {
        let mut bytes = Vec::new();
        for i in 1..=n {
            encode_line(&mut bytes, &entry(i)).unwrap();
        }
        std::fs::write(dir.join(LOG), &bytes).unwrap();
        bytes
    }

    #[test]
    fn a_torn_last_entry_is_cut_off_and_a_damaged_one_refuses_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = write_entries(dir.path(), 3);
        // A crash in the middle of the third entry's write.
        std::fs::write(dir.path().join(LOG), &bytes[..bytes.len() - 5]).unwrap();
        let (read, _) = read_log::<TypeConfig>(&dir.path().join(LOG)).unwrap();
        assert_eq!(read.keys().copied().collect::<Vec<_>>(), [1, 2]);
        let kept = std::fs::read(dir.path().join(LOG)).unwrap();
        assert_eq!(
            read_log::<TypeConfig>(&dir.path().join(LOG))
                .unwrap()
                .0
                .len(),
            2
        );
        assert!(
            kept.ends_with(b"\n"),
            "the file ends after the last whole entry"
        );

        // A flipped byte inside a whole entry, the last one included: never trusted, never
        // skipped.
        for flip in [20, 3] {
            let mut bytes = write_entries(dir.path(), 3);
            let at = if flip == 20 {
                bytes.iter().position(|&b| b == b'\n').unwrap() + flip
            } else {
                bytes.len() - flip
            };
            bytes[at] ^= 0x01;
            std::fs::write(dir.path().join(LOG), &bytes).unwrap();
            let err = read_log::<TypeConfig>(&dir.path().join(LOG)).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
            assert!(err.to_string().contains("damaged"), "{err}");
        }
    }

    #[tokio::test]
    async fn the_newest_entries_are_served_from_memory_only_when_they_are_the_logged_ones() {
        let dir = tempfile::tempdir().unwrap();
        write_entries(dir.path(), 5);
        let store = LogStore::<TypeConfig>::open(dir.path(), Fsync::Always).unwrap();
        let mut inner = store.inner.lock().await;
        let len = |inner: &Inner<TypeConfig>, i: u64| inner.lines[&i].len;
        for i in 3..=5 {
            let l = len(&inner, i);
            inner.remember(entry(i), l);
        }
        let all = len(&inner, 3) + len(&inner, 4) + len(&inner, 5);
        assert_eq!(inner.recent_bytes, all);
        // A truncation and a purge keep the count of bytes held exact.
        inner.forget_from(5);
        assert_eq!(inner.recent_bytes, all - len(&inner, 5));
        inner.forget_through(3);
        assert_eq!(inner.recent_bytes, len(&inner, 4));
        inner.forget_through(4);
        assert_eq!((inner.recent.len(), inner.recent_bytes), (0, 0));

        // An entry in memory under another term than the log's line is not served.
        let mut other = entry(2);
        other.log_id = LogId::new(CommittedLeaderId::new(9, 1), 2);
        inner.remember(other, 1);
        let line = inner.lines[&2];
        assert_eq!(inner.read(&line).unwrap().log_id, entry(2).log_id);
    }

    #[tokio::test]
    async fn a_log_cut_short_on_disk_is_not_believed_committed_beyond_its_end() {
        let dir = tempfile::tempdir().unwrap();
        write_entries(dir.path(), 5);
        let mut store = LogStore::<TypeConfig>::open(dir.path(), Fsync::Always).unwrap();
        store.save_committed(Some(entry(5).log_id)).await.unwrap();
        drop(store);
        write_entries(dir.path(), 3);
        let mut store = LogStore::<TypeConfig>::open(dir.path(), Fsync::Always).unwrap();
        assert_eq!(store.read_committed().await.unwrap(), Some(entry(3).log_id));
    }

    #[tokio::test]
    async fn the_vote_and_entries_survive_a_reopen_and_truncate_and_purge_persist() {
        let dir = tempfile::tempdir().unwrap();
        write_entries(dir.path(), 5);
        let mut store = LogStore::<TypeConfig>::open(dir.path(), Fsync::Always).unwrap();
        let vote = Vote::new(3, 7);
        store.save_vote(&vote).await.unwrap();
        store.save_committed(Some(entry(5).log_id)).await.unwrap();
        store.save_committed(Some(entry(3).log_id)).await.unwrap();
        store.truncate(entry(4).log_id).await.unwrap();
        store.purge(entry(1).log_id).await.unwrap();
        drop(store);
        let mut store = LogStore::<TypeConfig>::open(dir.path(), Fsync::Always).unwrap();
        assert_eq!(store.read_vote().await.unwrap(), Some(vote));
        // Written in place over a longer mark: the shorter one reads back.
        assert_eq!(store.read_committed().await.unwrap(), Some(entry(3).log_id));
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(1));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(3));
        let entries = store.try_get_log_entries(0..10).await.unwrap();
        assert_eq!(
            entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
            [2, 3]
        );

        // A damaged committed mark is only a lost hint, never a wrong one.
        drop(store);
        let path = dir.path().join(COMMITTED);
        let mut bytes = std::fs::read(&path).unwrap();
        let digit = bytes.iter().rposition(u8::is_ascii_digit).unwrap();
        bytes[digit] = if bytes[digit] == b'9' { b'8' } else { b'9' };
        std::fs::write(&path, &bytes).unwrap();
        let mut store = LogStore::<TypeConfig>::open(dir.path(), Fsync::Always).unwrap();
        assert_eq!(store.read_committed().await.unwrap(), None);
    }
}
