//! One segment file: records with consecutive sequences, starting at the sequence in its name,
//! and its saved [index](crate::index) next to it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Corruption, Result, io};
use crate::files;
use crate::index::{self, Index, Loaded};
use crate::record::{self, View};

/// Bytes read at a time when a segment is scanned record by record.
const SCAN_CHUNK: usize = 1024 * 1024;

/// What recovery cut from a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// The file.
    pub path: PathBuf,
    /// Where the first bad record started (the file now ends there).
    pub offset: u64,
    /// Bytes removed.
    pub removed: u64,
    /// What was wrong.
    pub reason: Corruption,
}

pub(crate) struct Segment {
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    pub(crate) first_seq: u64,
    /// Where each record starts, its timestamp and whether it has headers: record `i` has
    /// sequence `first_seq + i`.
    pub(crate) index: Index,
    /// Bytes in the file (records not yet written are the log's pending buffer).
    pub(crate) written: u64,
    /// Bytes the index file on disk covers (0: none is known to be there).
    indexed: u64,
}

/// A segment as recovery found it.
pub(crate) struct Recovered {
    pub(crate) segment: Segment,
    /// The bad tail it cut, if any.
    pub(crate) truncation: Option<Truncation>,
    /// Whether its index file was trusted.
    pub(crate) indexed: bool,
    /// Bytes decoded record by record.
    pub(crate) scanned: u64,
}

impl Segment {
    /// Creates an empty segment file (emptying one left there). An index file of the same name
    /// is removed first, and durably: it described bytes that are gone.
    pub(crate) fn create(dir: &Path, first_seq: u64) -> Result<Segment> {
        remove_index(dir, &dir.join(files::index_name(first_seq)))?;
        let path = dir.join(files::segment_name(first_seq));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok(Segment {
            path,
            file,
            first_seq,
            index: Index::default(),
            written: 0,
            indexed: 0,
        })
    }

    /// Opens an existing segment and indexes its records: from its index file when that can be
    /// trusted, then by decoding every record after what the index covers (all of them without
    /// one). A bad record and everything after it are cut off (the file is truncated) and
    /// reported. `buf` is scratch space, kept from one segment to the next.
    pub(crate) fn recover(
        dir: &Path,
        first_seq: u64,
        max_record: usize,
        buf: &mut Vec<u8>,
    ) -> Result<Recovered> {
        let path = dir.join(files::segment_name(first_seq));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        let len = file.metadata().map_err(io(&path))?.len();
        let (mut index, from) = match usable_index(dir, &file, first_seq, len, max_record, buf)? {
            Some(saved) => (saved.index, saved.covered),
            None => (Index::default(), 0),
        };
        let (end, bad) = scan_records(
            &file, &path, from, len, first_seq, max_record, buf, &mut index,
        )?;
        let mut segment = Segment {
            path,
            file,
            first_seq,
            index,
            written: end,
            indexed: from,
        };
        let truncation = segment.cut(bad, len)?;
        Ok(Recovered {
            segment,
            truncation,
            // A trusted index covers at least one record.
            indexed: from > 0,
            scanned: len - from,
        })
    }

    /// Truncates the file at `written` when a bad record was found there.
    fn cut(&mut self, bad: Option<Corruption>, len: u64) -> Result<Option<Truncation>> {
        let Some(reason) = bad else {
            return Ok(None);
        };
        self.file.set_len(self.written).map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))?;
        Ok(Some(Truncation {
            path: self.path.clone(),
            offset: self.written,
            removed: len - self.written,
            reason,
        }))
    }

    /// The sequence after its last record.
    pub(crate) fn end_seq(&self) -> u64 {
        self.first_seq + self.index.len() as u64
    }

    /// Reads `len` bytes at `offset` from the file.
    pub(crate) fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.read_into(offset, &mut buf)?;
        Ok(buf)
    }

    /// Fills `buf` from the file at `offset`.
    pub(crate) fn read_into(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.file.read_exact_at(buf, offset).map_err(io(&self.path))
    }

    /// Writes `bytes` at the end of the file.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all_at(bytes, self.written)
            .map_err(io(&self.path))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Overwrites a record in place with one of the same length (an erase). An index file
    /// covering it names the checksum of its last record: it is saved again (after a sync)
    /// so that it stays true and the next open need not scan the segment.
    pub(crate) fn rewrite_at(&mut self, offset: u64, record: &[u8]) -> Result<()> {
        self.file
            .write_all_at(record, offset)
            .map_err(io(&self.path))?;
        if self.indexed > offset {
            self.file.sync_data().map_err(io(&self.path))?;
            self.indexed = 0;
            self.write_index()?;
        }
        Ok(())
    }

    /// Saves the index of every record in the file, unless the index file already covers
    /// them all. The caller has flushed this segment's records and synced the file, and syncs
    /// the directory when the new name must be durable.
    pub(crate) fn write_index(&mut self) -> Result<()> {
        let Some(last) = self
            .index
            .len()
            .checked_sub(1)
            .and_then(|i| self.index.offset(i))
        else {
            return Ok(());
        };
        if self.indexed == self.written || last >= self.written {
            // Already saved, or records still in the log's pending buffer.
            return Ok(());
        }
        let mut crc = [0u8; 4];
        self.read_into(last + 4, &mut crc)?;
        let path = self.path.with_extension("idx");
        index::write(
            &path,
            self.first_seq,
            &self.index,
            self.written,
            u32::from_le_bytes(crc),
        )?;
        self.indexed = self.written;
        Ok(())
    }

    /// Deletes the segment: its index first, so that no index outlives its segment.
    pub(crate) fn remove(self) -> Result<()> {
        let index_path = self.path.with_extension("idx");
        match std::fs::remove_file(&index_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&index_path)(e)),
        }
        std::fs::remove_file(&self.path).map_err(io(&self.path))
    }
}

/// Removes an index file and syncs the directory if there was one: when this returns, no
/// crash can bring it back.
pub(crate) fn remove_index(dir: &Path, path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => files::sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path)(e)),
    }
}

/// The index of the segment starting at `first_seq` (its open `file` of `len` bytes), if there
/// is one that can be trusted. One that cannot is removed, durably, before the caller scans the
/// segment and perhaps cuts it below what the index covered.
fn usable_index(
    dir: &Path,
    file: &File,
    first_seq: u64,
    len: u64,
    max_record: usize,
    buf: &mut Vec<u8>,
) -> Result<Option<index::Saved>> {
    let path = dir.join(files::index_name(first_seq));
    let why = match index::load(&path, first_seq, max_record, buf) {
        Loaded::Missing => {
            tracing::debug!(file = %path.display(), "no segment index; scanning the segment");
            return Ok(None);
        }
        Loaded::Rejected(why) => why,
        Loaded::Valid(saved) => match spot_check(file, first_seq, &saved, len, max_record) {
            Ok(()) => return Ok(Some(saved)),
            Err(why) => why,
        },
    };
    tracing::warn!(file = %path.display(), "segment index ignored, scanning the segment: {why}");
    remove_index(dir, &path)?;
    Ok(None)
}

/// Checks a loaded index against its segment: the segment holds at least the bytes it covers,
/// and its first and last records are where it says, intact, with the sequence, timestamp and
/// header flag it records (and the last with the checksum it records).
fn spot_check(
    file: &File,
    first_seq: u64,
    saved: &index::Saved,
    len: u64,
    max_record: usize,
) -> std::result::Result<(), String> {
    if len < saved.covered {
        return Err(format!(
            "the segment has {len} bytes, fewer than the {} it covers",
            saved.covered
        ));
    }
    let n = saved.index.len();
    let mut buf = Vec::new();
    for i in [0, n - 1] {
        let start = saved.index.offset(i).unwrap_or(0);
        let end = saved.index.offset(i + 1).unwrap_or(saved.covered);
        buf.resize((end - start) as usize, 0);
        file.read_exact_at(&mut buf, start)
            .map_err(|e| format!("cannot read record {i}: {e}"))?;
        let view = match record::decode(&buf, max_record) {
            Ok(Some(view)) => view,
            Ok(None) => return Err(format!("record {i} is empty")),
            Err(bad) => return Err(format!("record {i} at {start}: {bad}")),
        };
        let seq = first_seq + i as u64;
        let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
        if view.size != buf.len()
            || view.seq != seq
            || (i.is_multiple_of(64) && view.entry.timestamp != saved.index.samples()[i / 64])
            || view.entry.headers.is_empty() == saved.index.has_headers(i)
            || (i == n - 1 && crc != saved.last_crc)
        {
            return Err(format!(
                "the record at {start} is not the record {seq} it describes"
            ));
        }
    }
    Ok(())
}

/// Decodes and verifies the records of `file` from byte `from` up to `len`, appending each to
/// `index` (the first must have sequence `first_seq + index.len()`). Reads `SCAN_CHUNK` bytes
/// at a time into `buf` (more for a larger record). Returns where the intact records end and,
/// if they end before `len`, what is wrong with the bytes there.
#[allow(clippy::too_many_arguments)]
fn scan_records(
    file: &File,
    path: &Path,
    from: u64,
    len: u64,
    first_seq: u64,
    max_record: usize,
    buf: &mut Vec<u8>,
    index: &mut Index,
) -> Result<(u64, Option<Corruption>)> {
    // A chunk, or the whole range when it is smaller (a small segment, or an index's tail).
    let size = (SCAN_CHUNK as u64).min(len.saturating_sub(from)) as usize;
    if buf.len() < size.max(record::HEADER) {
        *buf = vec![0; size.max(record::HEADER)];
    }
    // `buf[at..filled]` holds the file's bytes from `base + at`, not yet decoded.
    let mut base = from;
    let mut filled = 0usize;
    let mut at = 0usize;
    loop {
        let at_end = base + filled as u64 >= len;
        loop {
            let expected = first_seq + index.len() as u64;
            let offset = base + at as u64;
            match record::decode(&buf[at..filled], max_record) {
                Ok(Some(view)) if view.seq == expected => {
                    index.push(
                        offset as u32,
                        view.entry.timestamp,
                        !view.entry.headers.is_empty(),
                    );
                    at += view.size;
                }
                Ok(Some(View { seq, .. })) => {
                    let bad = Corruption::Sequence {
                        found: seq,
                        expected,
                    };
                    return Ok((offset, Some(bad)));
                }
                Ok(None) if at_end => return Ok((offset, None)),
                Err(Corruption::Torn) if !at_end => break,
                Ok(None) => break,
                Err(bad) => return Ok((offset, Some(bad))),
            }
        }
        // Keep the partial record, and read more after it.
        buf.copy_within(at..filled, 0);
        base += at as u64;
        filled -= at;
        at = 0;
        let need = if filled >= record::HEADER {
            // Decoding checked this length against `max_record`.
            u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize + 4
        } else {
            record::HEADER
        };
        if need > buf.len() {
            buf.resize(need, 0);
        }
        let want = ((buf.len() - filled) as u64).min(len - base - filled as u64) as usize;
        file.read_exact_at(&mut buf[filled..filled + want], base + filled as u64)
            .map_err(io(path))?;
        filled += want;
    }
}
