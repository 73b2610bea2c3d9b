//! Messages deleted one by one (a stream's message delete, a per-subject limit), and the
//! `deleted` file that remembers them.
//!
//! ```text
//! entry (16 bytes)  seq u64 LE, 0 u32 (reserved), crc32c of those 12 bytes u32 LE
//! mark  (16 bytes)  the log's first sequence with the top bit set, 0, crc32c as above
//! ```
//!
//! Each write of entries also writes a mark of the log's first sequence then: messages the
//! limits deleted from the front before a delete do not come back at the next open because
//! the delete made room for them.
//!
//! Entries are appended as deletes happen and written with the log's next flush, after the
//! records they name. An entry is believed only if its checksum matches and it names a record
//! the log still has. A power loss can keep a delete whose record was lost from the log's
//! tail; recovery then rewrites the file without it before anything is appended, so that it
//! never deletes the message that takes that sequence next. The file is also rewritten
//! (temporary file, sync, rename) when it holds a MiB of entries beyond twice those still
//! needed.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::changed_on_disk;
use crate::error::{Result, io};
use crate::files;
use crate::record::{self, Entry};

pub(crate) const FILE: &str = "deleted";
const ENTRY: usize = 16;
const MARK: u64 = 1 << 63;
/// Entries the file may hold beyond twice those still needed before it is rewritten.
const COMPACT_SLACK: usize = 65_536;

/// The deleted sequences above the log's first one.
#[derive(Default)]
pub(crate) struct Deleted {
    seqs: BTreeSet<u64>,
    /// Entries not yet written to the file.
    pending: Vec<u8>,
    /// Entries the file holds.
    in_file: usize,
    /// Whether the file was written since it was last synced.
    unsynced: bool,
    /// The first sequence the file's last mark names.
    marked: u64,
    /// The file, open for appending once written to.
    file: Option<std::fs::File>,
}

/// What the file holds: the entries, and the highest first-sequence mark.
pub(crate) struct Found {
    pub(crate) entries: Vec<u64>,
    pub(crate) first: u64,
}

/// One entry's bytes.
fn entry(seq: u64) -> [u8; ENTRY] {
    let mut e = [0u8; ENTRY];
    e[..8].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&e[..12]);
    e[12..].copy_from_slice(&crc.to_le_bytes());
    e
}

impl Deleted {
    /// Reads the file in `dir`: every intact entry, as (sequence, record checksum). A torn
    /// last entry or one whose checksum fails is skipped (and logged).
    pub(crate) fn read(dir: &Path) -> Result<Found> {
        let path = dir.join(FILE);
        let mut found = Found {
            entries: Vec::new(),
            first: 0,
        };
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
            Err(e) => return Err(io(&path)(e)),
        };
        found.entries.reserve(bytes.len() / ENTRY);
        let mut bad = 0;
        for e in bytes.chunks(ENTRY) {
            if e.len() < ENTRY {
                bad += 1;
                continue;
            }
            let crc = u32::from_le_bytes([e[12], e[13], e[14], e[15]]);
            if crc32c::crc32c(&e[..12]) != crc {
                bad += 1;
                continue;
            }
            let mut seq = [0u8; 8];
            seq.copy_from_slice(&e[..8]);
            let seq = u64::from_le_bytes(seq);
            if seq & MARK != 0 {
                found.first = found.first.max(seq & !MARK);
            } else {
                found.entries.push(seq);
            }
        }
        if bad > 0 {
            tracing::warn!(file = %path.display(), bad, "skipped damaged entries of the deleted file");
        }
        Ok(found)
    }

    /// The set as recovered: `seqs` believed, `in_file` entries in the file.
    pub(crate) fn recovered(seqs: BTreeSet<u64>, in_file: usize, marked: u64) -> Deleted {
        Deleted {
            seqs,
            pending: Vec::new(),
            in_file,
            unsynced: false,
            marked,
            file: None,
        }
    }

    pub(crate) fn contains(&self, seq: u64) -> bool {
        !self.seqs.is_empty() && self.seqs.contains(&seq)
    }

    /// The deleted sequences in `from..to`.
    pub(crate) fn range(&self, from: u64, to: u64) -> impl Iterator<Item = u64> + '_ {
        self.seqs.range(from..to.max(from)).copied()
    }

    /// Records `seq` as deleted.
    pub(crate) fn insert(&mut self, seq: u64) {
        if self.seqs.insert(seq) {
            self.pending.extend_from_slice(&entry(seq));
        }
    }

    /// Forgets every sequence below `first` (no longer in the log).
    pub(crate) fn forget_below(&mut self, first: u64) {
        if self.seqs.first().is_some_and(|&s| s < first) {
            self.seqs = self.seqs.split_off(&first);
        }
    }

    /// Writes the pending entries (after the log's own records are written) and a mark of
    /// the log's `first` sequence; rewrites the file instead when it holds mostly entries
    /// that are gone.
    pub(crate) fn flush(&mut self, dir: &Path, first: u64) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        // A rewrite syncs a new file: done once the file holds a MiB of entries more than
        // twice the ones still needed (a bucket whose every put deletes the value before
        // would otherwise rewrite it every few hundred puts).
        if self.in_file + self.pending.len() / ENTRY > 2 * self.seqs.len() + COMPACT_SLACK {
            return self.rewrite(dir, first);
        }
        if first != self.marked {
            self.pending.extend_from_slice(&entry(first | MARK));
            self.marked = first;
        }
        let path = dir.join(FILE);
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(io(&path))?,
            ),
        };
        file.write_all(&self.pending).map_err(io(&path))?;
        self.in_file += self.pending.len() / ENTRY;
        self.pending.clear();
        self.unsynced = true;
        Ok(())
    }

    /// Fsyncs the file if it was written since the last sync.
    pub(crate) fn sync(&mut self, dir: &Path) -> Result<()> {
        if !self.unsynced {
            return Ok(());
        }
        let path: PathBuf = dir.join(FILE);
        if let Some(file) = &self.file {
            file.sync_data().map_err(io(&path))?;
        }
        self.unsynced = false;
        Ok(())
    }

    /// Replaces the file with the entries of the sequences still deleted and a mark.
    pub(crate) fn rewrite(&mut self, dir: &Path, first: u64) -> Result<()> {
        let mut bytes = Vec::with_capacity((self.seqs.len() + 1) * ENTRY);
        bytes.extend_from_slice(&entry(first | MARK));
        for &seq in &self.seqs {
            bytes.extend_from_slice(&entry(seq));
        }
        // The old file goes with the rename; the next append opens the new one.
        self.file = None;
        files::replace(dir, FILE, &bytes)?;
        self.marked = first;
        self.in_file = self.seqs.len() + 1;
        self.pending.clear();
        self.unsynced = false;
        Ok(())
    }
}

/// Deleting messages one by one, and reading the deletes back at open.
impl crate::Log {
    /// Deletes message `seq`; with `erase`, its headers and payload are also overwritten with
    /// zeros on disk. Returns whether it was kept. The delete is on disk with the next
    /// [`flush`](crate::Log::flush), durable with the next [`sync`](crate::Log::sync).
    pub fn delete(&mut self, seq: u64, erase: bool) -> Result<bool> {
        self.remove(seq, None, erase)
    }

    /// Where record `seq` is: its segment's position and its index there, if it is kept.
    fn locate(&self, seq: u64) -> Option<(usize, usize)> {
        if seq < self.first || seq >= self.next_seq() || self.deleted.contains(seq) {
            return None;
        }
        let at = self
            .segments
            .partition_point(|s| s.first_seq <= seq)
            .checked_sub(1)?;
        let i = (seq - self.segments[at].first_seq) as usize;
        self.segments[at].index.offset(i).map(|_| (at, i))
    }

    /// The bytes of record `i` of segment `at`.
    fn record_bytes(&self, at: usize, i: usize) -> Result<Vec<u8>> {
        let seg = &self.segments[at];
        let offset = seg.index.offset(i).unwrap_or(0);
        let end = self.end_of(seg, i);
        if at == self.segments.len() - 1 && offset >= seg.written {
            let from = (offset - seg.written) as usize;
            return Ok(self.pending[from..(end - seg.written) as usize].to_vec());
        }
        seg.read(offset, (end - offset) as usize)
    }

    /// Deletes kept message `seq` (`subject`, when the caller knows it, saves a read).
    pub(crate) fn remove(&mut self, seq: u64, subject: Option<&str>, erase: bool) -> Result<bool> {
        let Some((at, i)) = self.locate(seq) else {
            return Ok(false);
        };
        if self.subjects.is_some() {
            let subject = match subject {
                Some(subject) => subject.to_owned(),
                None => {
                    let bytes = self.record_bytes(at, i)?;
                    match record::decode(&bytes, bytes.len()) {
                        Ok(Some(view)) if view.seq == seq => view.entry.subject.to_owned(),
                        _ => return Err(changed_on_disk(&self.segments[at].path, seq)),
                    }
                }
            };
            if let Some(subjects) = &mut self.subjects {
                subjects.remove(&subject, seq);
            }
        }
        let seg = &self.segments[at];
        let size = self.end_of(seg, i) - seg.index.offset(i).unwrap_or(0);
        if erase {
            self.erase(at, i, seq)?;
        } else {
            self.deleted.insert(seq);
        }
        self.count -= 1;
        self.bytes -= size;
        if seq == self.first {
            self.drop_below(seq)?;
        }
        Ok(true)
    }

    /// Deletes record `i` of segment `at` and overwrites its headers and payload with zeros,
    /// in place (same length, sequence, timestamp and subject; a checksum that matches
    /// again). A record on disk is overwritten only once its delete is durable: a crash
    /// between the two never leaves an erased message that is not deleted.
    fn erase(&mut self, at: usize, i: usize, seq: u64) -> Result<()> {
        let bytes = self.record_bytes(at, i)?;
        let path = self.segments[at].path.clone();
        let erased = match record::decode(&bytes, bytes.len()) {
            Ok(Some(view)) if view.seq == seq => {
                let headers = vec![0u8; view.entry.headers.len()];
                let payload = vec![0u8; view.entry.payload.len()];
                let mut out = Vec::with_capacity(bytes.len());
                let entry = Entry {
                    headers: &headers,
                    payload: &payload,
                    ..view.entry
                };
                record::encode(&mut out, seq, &entry);
                out
            }
            _ => return Err(changed_on_disk(&path, seq)),
        };
        self.deleted.insert(seq);
        let seg = &self.segments[at];
        let offset = seg.index.offset(i).unwrap_or(0);
        if at == self.segments.len() - 1 && offset >= seg.written {
            // Not written yet: the record goes to disk before its delete, erased already.
            let from = (offset - seg.written) as usize;
            self.pending[from..from + erased.len()].copy_from_slice(&erased);
            return Ok(());
        }
        self.flush()?;
        self.deleted.sync(&self.dir)?;
        self.segments[at].rewrite_at(offset, &erased)
    }

    /// Reads the `deleted` file at open: the entries for kept records. Entries past the end
    /// of the log (their records lost with a torn tail) are dropped from the file at once.
    pub(crate) fn recover_deleted(&mut self) -> Result<()> {
        let found = Deleted::read(&self.dir)?;
        if found.entries.is_empty() && found.first == 0 {
            return Ok(());
        }
        // Nothing below the first sequence as of the last delete comes back.
        self.drop_below(found.first)?;
        let entries = found.entries;
        let in_file = entries.len();
        let next = self.next_seq();
        let past_end = entries.iter().filter(|&&seq| seq >= next).count();
        let mut kept = std::collections::BTreeSet::new();
        for seq in entries {
            let Some((at, i)) = self.locate(seq) else {
                continue;
            };
            if kept.insert(seq) {
                let seg = &self.segments[at];
                self.bytes -= self.end_of(seg, i) - seg.index.offset(i).unwrap_or(0);
                self.count -= 1;
            }
        }
        self.deleted = Deleted::recovered(kept, in_file, found.first);
        let first = self.first;
        self.drop_below(first)?;
        if past_end > 0 {
            tracing::warn!(
                past_end,
                "deletes of records lost from the log's tail; forgotten"
            );
            let first = self.first;
            self.deleted.rewrite(&self.dir, first)?;
        }
        Ok(())
    }
}
