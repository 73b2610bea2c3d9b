//! Messages deleted one by one (a stream's message delete, a per-subject limit), and the
//! `deleted` file that remembers them.
//!
//! ```text
//! entry (16 bytes)  seq u64 LE, the record's crc32c u32 LE, crc32c of those 12 bytes u32 LE
//! mark  (16 bytes)  the log's first sequence with the top bit set, 0, crc32c as above
//! ```
//!
//! Each write of entries also writes a mark of the log's first sequence then: messages the
//! limits deleted from the front before a delete do not come back at the next open because
//! the delete made room for them.
//!
//! Entries are appended as deletes happen and written with the log's next flush, after the
//! records they name. An entry is believed only if its own checksum matches and, for a record
//! of the last segment (the one a crash can tear), the record at that sequence still has the
//! checksum the entry names: a delete that outlived its record after a power loss never
//! deletes the message that took the sequence next. The file is rewritten (temporary file,
//! sync, rename) when most of its entries fall below the log's first sequence.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, io};
use crate::files;

pub(crate) const FILE: &str = "deleted";
const ENTRY: usize = 16;
const MARK: u64 = 1 << 63;

/// The deleted sequences above the log's first one, each with its record's checksum.
#[derive(Default)]
pub(crate) struct Deleted {
    seqs: BTreeMap<u64, u32>,
    /// Entries not yet written to the file.
    pending: Vec<u8>,
    /// Entries the file holds.
    in_file: usize,
    /// Whether the file was written since it was last synced.
    unsynced: bool,
    /// The first sequence the file's last mark names.
    marked: u64,
}

/// What the file holds: the entries, and the highest first-sequence mark.
pub(crate) struct Found {
    pub(crate) entries: Vec<(u64, u32)>,
    pub(crate) first: u64,
}

/// One entry's bytes.
fn entry(seq: u64, record_crc: u32) -> [u8; ENTRY] {
    let mut e = [0u8; ENTRY];
    e[..8].copy_from_slice(&seq.to_le_bytes());
    e[8..12].copy_from_slice(&record_crc.to_le_bytes());
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
                found
                    .entries
                    .push((seq, u32::from_le_bytes([e[8], e[9], e[10], e[11]])));
            }
        }
        if bad > 0 {
            tracing::warn!(file = %path.display(), bad, "skipped damaged entries of the deleted file");
        }
        Ok(found)
    }

    /// The set as recovered: `seqs` believed, `in_file` entries in the file.
    pub(crate) fn recovered(seqs: BTreeMap<u64, u32>, in_file: usize, marked: u64) -> Deleted {
        Deleted {
            seqs,
            pending: Vec::new(),
            in_file,
            unsynced: false,
            marked,
        }
    }

    pub(crate) fn contains(&self, seq: u64) -> bool {
        !self.seqs.is_empty() && self.seqs.contains_key(&seq)
    }

    /// The deleted sequences in `from..to`.
    pub(crate) fn range(&self, from: u64, to: u64) -> impl Iterator<Item = u64> + '_ {
        self.seqs.range(from..to.max(from)).map(|(&seq, _)| seq)
    }

    /// Records `seq` (whose record has checksum `record_crc`) as deleted.
    pub(crate) fn insert(&mut self, seq: u64, record_crc: u32) {
        if self.seqs.insert(seq, record_crc).is_none() {
            self.pending.extend_from_slice(&entry(seq, record_crc));
        }
    }

    /// Forgets every sequence below `first` (no longer in the log).
    pub(crate) fn forget_below(&mut self, first: u64) {
        if self.seqs.first_key_value().is_some_and(|(&s, _)| s < first) {
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
        if self.in_file + self.pending.len() / ENTRY > 2 * self.seqs.len() + 64 {
            return self.rewrite(dir, first);
        }
        if first != self.marked {
            self.pending.extend_from_slice(&entry(first | MARK, 0));
            self.marked = first;
        }
        let path = dir.join(FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
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
        match std::fs::File::open(&path) {
            Ok(file) => file.sync_data().map_err(io(&path))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
        self.unsynced = false;
        Ok(())
    }

    /// Replaces the file with the entries of the sequences still deleted and a mark.
    fn rewrite(&mut self, dir: &Path, first: u64) -> Result<()> {
        let mut bytes = Vec::with_capacity((self.seqs.len() + 1) * ENTRY);
        bytes.extend_from_slice(&entry(first | MARK, 0));
        for (&seq, &crc) in &self.seqs {
            bytes.extend_from_slice(&entry(seq, crc));
        }
        files::replace(dir, FILE, &bytes)?;
        self.marked = first;
        self.in_file = self.seqs.len() + 1;
        self.pending.clear();
        self.unsynced = false;
        Ok(())
    }
}
