//! herald's message log: one stream's messages in append-only segment files.
//!
//! # Format
//! A log is a directory of segment files named by the sequence of their first record
//! (`00000000000000000001.log`), an index file next to most of them
//! (`00000000000000000001.idx`), plus an optional `purged` file. A segment is a run of records
//! (layout in [`record`]): length, crc32c, sequence, timestamp, subject, headers, payload. An
//! index (layout in the `index` module) describes a prefix of its segment, the first `covered`
//! bytes: where each record starts, every 64th record's timestamp, whether each has headers,
//! and the checksum of the last one; the whole file is checksummed.
//!
//! # Invariants
//! - Sequences start at 1 and grow by one per append; within a segment they are consecutive
//!   from the number in its name, and segments are ordered by that number.
//! - Only the last segment is written to, and only at its end. A segment rolls when the next
//!   record would take it past `segment_bytes`; the finished segment is synced before the next
//!   one is created (and the directory synced), so at most the last segment has a torn tail.
//! - A record is served only after it has been decoded and its checksum verified (recovery, or
//!   every read: [`Log::get`] and the scans decode what they read, and the records of
//!   [`Log::read_batch`] are decoded by the caller), or because this process wrote it.
//!   Recovery cuts a segment at its first bad record (torn, bad length, bad checksum, or
//!   out-of-sequence), truncates the file there and reports it in [`Recovery`]; nothing after a
//!   bad record is trusted. Recovery does not decode what a trusted index covers, so damage
//!   there (a disk flipping bits after the fact) is found when the record is read: `get` and
//!   `scan_with_headers` return an error, `scan` skips the rest of that chunk.
//! - An index is written only for bytes already synced: for a segment as it rolls (after its
//!   sync), for the active segment by [`Log::close`] (after the final sync), and by recovery for
//!   a finished segment it had to scan. It is written to a temporary file and renamed, not
//!   fsynced: a crash may leave it empty or torn, which its checksum shows (see below).
//! - **While an index file exists, the first `covered` bytes of its segment never change.** A
//!   segment only grows at its end; recovery cuts a segment below an index's `covered` only
//!   after removing the index (and syncing the directory); a segment file is created (emptied)
//!   only after an index of its name is removed the same way; a segment's index is removed
//!   before the segment. So an index stays true when its segment grows after it was written
//!   (the active segment reopened and appended to), and it is not removed on reopen.
//! - Recovery trusts an index only if its checksum matches, it is for the segment's first
//!   sequence, its offsets tile `covered` bytes with records of possible sizes, the segment
//!   holds at least `covered` bytes, and the segment's first and last covered records decode at
//!   the offsets it gives, with the sequence and header flag (for the first, the timestamp; for
//!   the last, the checksum) it records. The bytes after `covered` are then decoded and verified as if there
//!   were no index (a torn tail is cut and reported as always). Any other index is removed and
//!   its segment scanned whole: a bad index costs time, never records.
//! - Deleting old messages (limits, [`Log::purge`]) moves the first sequence forward; a segment
//!   is removed when all of its records are deleted. A purge writes the new first sequence to
//!   `purged` (written to a temporary file, synced, renamed); limits are simply enforced again
//!   after recovery.
//! - Appends go to a buffer; [`Log::flush`] writes it with one call, [`Log::sync`] also
//!   fsyncs. Durability is the caller's policy: syncing once for a batch of appends is group
//!   commit.

mod deleted;
pub mod error;
mod files;
mod index;
pub mod inspect;
pub mod record;
mod segment;
mod skip;
mod subjects;
pub mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{Corruption, Error, Result};
pub use record::{Entry, Stored};
pub use segment::Truncation;
pub use subjects::{Filter, SubjectState};
pub use writer::{Completions, Fsync, IN_PLACE_MOST, Writer};

use deleted::Deleted;
use error::io;
use segment::Segment;
use subjects::Subjects;

/// Limits and layout of one log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// A segment rolls past this many bytes (at most 4 GiB).
    pub segment_bytes: u64,
    /// Most messages kept (0: no limit); the oldest are deleted first.
    pub max_msgs: u64,
    /// Most bytes of records kept (0: no limit).
    pub max_bytes: u64,
    /// Messages older than this are deleted by [`Log::expire`] (`None`: kept).
    pub max_age: Option<Duration>,
    /// Largest record accepted, in encoded bytes.
    pub max_msg_size: usize,
    /// At `max_msgs` or `max_bytes`, refuse the new message ([`Error::Full`]) instead of
    /// deleting the oldest. Checked as each message is appended, so a burst of publishers
    /// never pushes stored messages out.
    pub discard_new: bool,
    /// Most messages kept per subject (0: no limit); a subject's oldest are deleted first.
    pub max_msgs_per_subject: u64,
    /// At `max_msgs_per_subject`, refuse the new message instead.
    pub discard_new_per_subject: bool,
}

impl Config {
    /// This config with no limit on what the log keeps (no count, size, age or per-subject
    /// limit, nothing refused as new): for writing what is not a new message, such as a copy
    /// of another log's records or the placeholders of skipped sequences.
    pub fn without_limits(&self) -> Config {
        Config {
            max_msgs: 0,
            max_bytes: 0,
            max_age: None,
            max_msgs_per_subject: 0,
            discard_new: false,
            discard_new_per_subject: false,
            ..self.clone()
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            segment_bytes: 64 * 1024 * 1024,
            max_msgs: 0,
            max_bytes: 0,
            max_age: None,
            max_msg_size: 8 * 1024 * 1024 + 64 * 1024,
            discard_new: false,
            max_msgs_per_subject: 0,
            discard_new_per_subject: false,
        }
    }
}

/// Conditions on an append, checked against the log as the message is appended (in order
/// with every append before it), and what it deletes once appended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expect {
    /// The log's last sequence must be this (0: nothing was ever appended).
    pub last_seq: Option<u64>,
    /// The last record's header block must have a `name: value` line (its header `name` is
    /// `value`), as `(name, value)`.
    pub last_header: Option<(String, String)>,
    /// The last kept message on the entry's subject must have this sequence (0: none).
    pub last_subject_seq: Option<u64>,
    /// Once appended, delete what the message replaces.
    pub rollup: Rollup,
}

/// What an appended message replaces ([`Expect::rollup`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Rollup {
    /// Nothing.
    #[default]
    None,
    /// Every earlier message on its subject.
    Subject,
    /// Every earlier message.
    All,
}

/// What opening a log found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segment files read.
    pub segments: usize,
    /// Records found intact.
    pub records: u64,
    /// Bad tails cut off, one per damaged segment.
    pub truncations: Vec<Truncation>,
    /// Segments whose index file was trusted: their records up to the index's end were not
    /// decoded.
    pub indexed_segments: usize,
    /// Bytes decoded and checksummed record by record: whole segments without a usable index,
    /// and what follows the end of an index.
    pub scanned_bytes: u64,
}

/// One stream's log. Not shared: the caller serializes access (one writer task per stream).
pub struct Log {
    dir: PathBuf,
    config: Config,
    /// Ordered by first sequence; the last is the one appended to. Never empty.
    segments: Vec<Segment>,
    /// Encoded records of the last segment not yet written to its file.
    pending: Vec<u8>,
    /// Index entries of the last segment that are still in `pending`.
    pending_records: usize,
    /// The oldest sequence kept; everything below is deleted.
    first: u64,
    /// Live records (fewer than `next - first` after recovery cut a segment short, or
    /// when messages were deleted one by one).
    count: u64,
    /// Bytes of live records.
    bytes: u64,
    /// Messages deleted one by one, above `first`.
    deleted: Deleted,
    /// Each subject's messages, once asked for.
    subjects: Option<Subjects>,
}

const PURGED: &str = "purged";

impl Log {
    /// Opens (or creates) the log in `dir`, recovering every segment.
    pub fn open(dir: impl Into<PathBuf>, config: Config) -> Result<(Log, Recovery)> {
        Log::open_from(dir, config, 1)
    }

    /// Like [`open`](Log::open), but a log created here starts at sequence `first` (a stream
    /// restored from a dump keeps its sequences). An existing log keeps its own.
    pub fn open_from(
        dir: impl Into<PathBuf>,
        config: Config,
        first: u64,
    ) -> Result<(Log, Recovery)> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut firsts: Vec<u64> = Vec::new();
        let mut indexes: Vec<u64> = Vec::new();
        for item in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let item = item.map_err(io(&dir))?;
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(first) = files::parse_segment_name(name) {
                firsts.push(first);
            } else if let Some(first) = files::parse_index_name(name) {
                indexes.push(first);
            } else if name.ends_with(".idx.tmp") {
                // An index write cut short.
                let _ = std::fs::remove_file(item.path());
            }
        }
        firsts.sort_unstable();
        for first in indexes {
            if firsts.binary_search(&first).is_err() {
                // Its segment was removed and a crash came before the index went too.
                let path = dir.join(files::index_name(first));
                if let Err(err) = std::fs::remove_file(&path) {
                    tracing::warn!(file = %path.display(), %err, "cannot remove an orphan index");
                }
            }
        }
        let mut recovery = Recovery::default();
        let mut segments = Vec::with_capacity(firsts.len());
        let mut buf = Vec::new();
        for (k, &first) in firsts.iter().enumerate() {
            let found = Segment::recover(&dir, first, config.max_msg_size, &mut buf)?;
            let mut seg = found.segment;
            if let Some(cut) = found.truncation {
                tracing::warn!(
                    file = %cut.path.display(),
                    offset = cut.offset,
                    removed = cut.removed,
                    "cut a damaged log tail: {}",
                    cut.reason
                );
                recovery.truncations.push(cut);
            }
            if found.indexed {
                recovery.indexed_segments += 1;
            } else if k + 1 < firsts.len() {
                // A finished segment without an index (a crash as it rolled, or a bad index):
                // index it now so the next open need not scan it again.
                let written = seg.file.sync_data().map_err(io(&seg.path));
                if let Err(err) = written.and_then(|()| seg.write_index()) {
                    tracing::warn!(file = %seg.path.display(), %err, "cannot write a segment index");
                }
            }
            recovery.scanned_bytes += found.scanned;
            recovery.records += seg.index.len() as u64;
            segments.push(seg);
        }
        recovery.segments = segments.len();
        let purged = read_purged(&dir)?;
        if segments.is_empty() {
            // A log skipped ahead starts where it was skipped to (the mark comes first).
            let first = first.max(purged.unwrap_or(1)).max(1);
            segments.push(Segment::create(&dir, first)?);
            files::sync_dir(&dir)?;
        }
        let mut log = Log {
            first: segments[0].first_seq,
            dir,
            config,
            segments,
            pending: Vec::new(),
            pending_records: 0,
            count: 0,
            bytes: 0,
            deleted: Deleted::default(),
            subjects: None,
        };
        log.count = log.segments.iter().map(|s| s.index.len() as u64).sum();
        log.bytes = log.segments.iter().map(|s| s.written).sum();
        log.drop_below(purged.unwrap_or(0))?;
        log.recover_deleted()?;
        if log.config.max_msgs_per_subject > 0 {
            log.track_subjects()?;
        }
        log.enforce_limits()?;
        Ok((log, recovery))
    }

    /// The oldest sequence kept (equal to [`next_seq`](Log::next_seq) when empty).
    pub fn first_seq(&self) -> u64 {
        self.first
    }

    /// The sequence the next append gets.
    pub fn next_seq(&self) -> u64 {
        self.active().end_seq()
    }

    /// Messages kept.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether no message is kept.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the records kept.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Changes the limits (a stream's config was updated) and enforces them at once.
    pub fn set_config(&mut self, config: Config) -> Result<()> {
        self.config = config;
        if self.config.max_msgs_per_subject > 0 {
            self.track_subjects()?;
        }
        self.enforce_limits()
    }

    /// The timestamp of message `seq`, if it is kept (read from the record's header: one
    /// small read, or none for a record still in the write buffer).
    pub fn timestamp(&self, seq: u64) -> Option<u64> {
        if seq < self.first || seq >= self.next_seq() {
            return None;
        }
        let at = self.segments.partition_point(|s| s.first_seq <= seq);
        let seg = &self.segments[at.checked_sub(1)?];
        self.record_timestamp(seg, (seq - seg.first_seq) as usize)
    }

    /// The timestamp field of record `i` of `seg`: bytes 16..24 of the record.
    fn record_timestamp(&self, seg: &Segment, i: usize) -> Option<u64> {
        let at = seg.index.offset(i)? + 16;
        let mut field = [0u8; 8];
        if std::ptr::eq(seg, self.active()) && at >= seg.written {
            let from = (at - seg.written) as usize;
            field.copy_from_slice(self.pending.get(from..from + 8)?);
        } else {
            seg.read_into(at, &mut field).ok()?;
        }
        Some(u64::from_le_bytes(field))
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn active(&self) -> &Segment {
        // `segments` is never empty (open and purge keep one).
        &self.segments[self.segments.len() - 1]
    }

    /// Appends a message and returns its sequence. It is in the log (readable) at once and
    /// on disk after [`flush`](Log::flush) / [`sync`](Log::sync). Old messages past the
    /// message and byte limits are deleted.
    pub fn append(&mut self, entry: &Entry<'_>) -> Result<u64> {
        if entry.subject.len() > u16::MAX as usize || entry.headers.len() > u32::MAX as usize {
            return Err(Error::FieldTooLong);
        }
        let size = record::size(entry);
        if size > self.config.max_msg_size {
            return Err(Error::TooLarge {
                size,
                max: self.config.max_msg_size,
            });
        }
        if self.config.discard_new {
            if self.config.max_msgs > 0 && self.count >= self.config.max_msgs {
                return Err(Error::Full("maximum messages exceeded"));
            }
            if self.config.max_bytes > 0 && self.bytes + size as u64 > self.config.max_bytes {
                return Err(Error::Full("maximum bytes exceeded"));
            }
        }
        let per_subject = self.config.max_msgs_per_subject;
        if per_subject > 0
            && self.config.discard_new_per_subject
            && self
                .subjects
                .as_ref()
                .is_some_and(|s| s.count(entry.subject, self.first) >= per_subject)
        {
            return Err(Error::Full("maximum messages per subject exceeded"));
        }
        let active_len = self.active().written + self.pending.len() as u64;
        if active_len > 0
            && active_len + size as u64 > self.config.segment_bytes.min(u32::MAX as u64)
        {
            self.roll()?;
        }
        let seq = self.next_seq();
        let offset = self.active().written + self.pending.len() as u64;
        record::encode(&mut self.pending, seq, entry);
        let last = self.segments.len() - 1;
        self.segments[last]
            .index
            .push(offset as u32, entry.timestamp, !entry.headers.is_empty());
        self.pending_records += 1;
        self.count += 1;
        self.bytes += size as u64;
        if let Some(subjects) = &mut self.subjects {
            subjects.insert(entry.subject, seq);
            if per_subject > 0 {
                self.enforce_subject_limit(entry.subject)?;
            }
        }
        self.enforce_limits()?;
        Ok(seq)
    }

    /// [`append`](Log::append), if `expect`'s conditions hold; then deletes what the
    /// message rolls up. A condition that fails is [`Error::WrongLastSequence`] with the
    /// sequence found.
    pub fn append_expecting(&mut self, entry: &Entry<'_>, expect: &Expect) -> Result<u64> {
        if let Some(want) = expect.last_seq {
            let last = self.next_seq() - 1;
            if last != want {
                return Err(Error::WrongLastSequence(last));
            }
        }
        if let Some((name, value)) = &expect.last_header {
            let last = self.next_seq() - 1;
            let found = match self.get(last)? {
                Some(record) => header_value(&record.headers, name).map(str::to_owned),
                None => None,
            };
            if found.as_deref() != Some(value.as_str()) {
                return Err(Error::WrongLastHeader(found.unwrap_or_default()));
            }
        }
        if let Some(want) = expect.last_subject_seq {
            let last = self
                .last_seq_of(Filter::Subject(entry.subject))?
                .unwrap_or(0);
            if last != want {
                return Err(Error::WrongLastSequence(last));
            }
        }
        let seq = self.append(entry)?;
        match expect.rollup {
            Rollup::None => {}
            Rollup::Subject => {
                self.purge_subjects(Filter::Subject(entry.subject), Some(seq), None)?;
            }
            Rollup::All => {
                self.purge(Some(seq))?;
            }
        }
        Ok(seq)
    }

    /// Deletes `subject`'s oldest messages past `max_msgs_per_subject`.
    fn enforce_subject_limit(&mut self, subject: &str) -> Result<()> {
        let max = self.config.max_msgs_per_subject;
        let Some(subjects) = &self.subjects else {
            return Ok(());
        };
        let over = subjects.count(subject, self.first).saturating_sub(max);
        if max == 0 || over == 0 {
            return Ok(());
        }
        let oldest: Vec<u64> = subjects
            .of(subject, self.first)
            .take(over as usize)
            .collect();
        for seq in oldest {
            self.remove(seq, Some(subject), false)?;
        }
        Ok(())
    }

    /// Writes appended records to the file (one write). On failure (a full disk) the
    /// unwritten records are taken back: they were never acknowledged as stored.
    pub fn flush(&mut self) -> Result<()> {
        self.flush_records()?;
        // After the records: a delete is never on disk before what it deletes.
        self.deleted.flush(&self.dir, self.first)
    }

    fn flush_records(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let last = self.segments.len() - 1;
        let pending = std::mem::take(&mut self.pending);
        match self.segments[last].write(&pending) {
            Ok(()) => {
                self.pending_records = 0;
                let mut pending = pending;
                pending.clear();
                self.pending = pending;
                Ok(())
            }
            Err(err) => {
                let seg = &mut self.segments[last];
                let keep = seg.index.len() - self.pending_records;
                seg.index.truncate(keep);
                // Cut whatever part of the write landed.
                let _ = seg.file.set_len(seg.written);
                self.count -= self.pending_records as u64;
                self.bytes -= pending.len() as u64;
                self.pending_records = 0;
                Err(err)
            }
        }
    }

    /// Flushes and fsyncs: every record appended so far survives a crash.
    pub fn sync(&mut self) -> Result<()> {
        self.flush()?;
        let active = self.active();
        active.file.sync_data().map_err(io(&active.path))?;
        self.deleted.sync(&self.dir)
    }

    /// A handle on the active segment's file, to fsync without holding the log (what has
    /// been flushed to it so far becomes durable).
    pub fn sync_handle(&self) -> Option<(std::fs::File, PathBuf)> {
        let active = self.active();
        match active.file.try_clone() {
            Ok(file) => Some((file, active.path.clone())),
            Err(err) => {
                tracing::error!(file = %active.path.display(), %err, "cannot clone the segment handle");
                None
            }
        }
    }

    /// Flushes, fsyncs and saves the active segment's index, so that the next open need not
    /// decode any record: a clean shutdown. (Dropping a log without it loses what was not
    /// flushed, like a crash, and the next open decodes the active segment's records.)
    ///
    /// An error from the flush or sync is what it says: the last appends may not be durable.
    /// One from writing the index only makes the next open slower.
    pub fn close(mut self) -> Result<()> {
        self.close_in_place()
    }

    /// [`close`](Log::close) for a log that stays in place (the writer's, behind its lock).
    pub(crate) fn close_in_place(&mut self) -> Result<()> {
        self.sync()?;
        let last = self.segments.len() - 1;
        self.segments[last].write_index()?;
        files::sync_dir(&self.dir)
    }

    /// Starts a new segment at the next sequence; the finished one is written, synced and
    /// indexed.
    fn roll(&mut self) -> Result<()> {
        self.sync()?;
        let last = self.segments.len() - 1;
        if let Err(err) = self.segments[last].write_index() {
            // Only the next open is slower: it scans the segment and indexes it then.
            tracing::warn!(%err, "cannot write a segment index");
        }
        let seg = Segment::create(&self.dir, self.next_seq())?;
        files::sync_dir(&self.dir)?;
        self.segments.push(seg);
        Ok(())
    }

    /// Reads message `seq`, or `None` if it was deleted or never written.
    pub fn get(&self, seq: u64) -> Result<Option<Stored>> {
        if seq < self.first || seq >= self.next_seq() || self.deleted.contains(seq) {
            return Ok(None);
        }
        let at = self.segments.partition_point(|s| s.first_seq <= seq);
        let Some(seg) = at.checked_sub(1).map(|i| &self.segments[i]) else {
            return Ok(None);
        };
        let i = (seq - seg.first_seq) as usize;
        let Some(offset) = seg.index.offset(i) else {
            // A gap left by a segment that recovery cut short.
            return Ok(None);
        };
        let is_active = std::ptr::eq(seg, self.active());
        let end = self.end_of(seg, i);
        let bytes;
        let buf: &[u8] = if is_active && offset >= seg.written {
            let from = (offset - seg.written) as usize;
            &self.pending[from..(end - seg.written) as usize]
        } else {
            bytes = seg.read(offset, (end - offset) as usize)?;
            &bytes
        };
        match record::decode(buf, self.config.max_msg_size.max(buf.len())) {
            Ok(Some(view)) if view.seq == seq => Ok(Some(view.to_stored())),
            // Verified when it was recovered or written: only a file changed under us lands here.
            _ => Err(changed_on_disk(&seg.path, seq)),
        }
    }

    /// Reads the records of consecutive sequences from `from` on into `out` (replacing what it
    /// held) with one read: at most `max_records`, and no more than about `max_bytes` (one record
    /// at least). Returns how many records `out` holds, to be decoded with [`record::decode`];
    /// 0 when `from` is not kept (deleted, not yet written, or a gap recovery left). A batch
    /// ends at its segment's end.
    ///
    /// Serves a consumer's batch with one system call instead of one [`get`](Log::get) each.
    pub fn read_batch(
        &self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
        out: &mut Vec<u8>,
    ) -> Result<usize> {
        out.clear();
        if from < self.first
            || from >= self.next_seq()
            || max_records == 0
            || self.deleted.contains(from)
        {
            return Ok(0);
        }
        let at = self.segments.partition_point(|s| s.first_seq <= from);
        let Some(seg) = at.checked_sub(1).map(|i| &self.segments[i]) else {
            return Ok(0);
        };
        let i = (from - seg.first_seq) as usize;
        let Some(start) = seg.index.offset(i) else {
            return Ok(0);
        };
        // A batch also ends before a message deleted one by one.
        let mut j = i + 1;
        while j - i < max_records
            && seg
                .index
                .offset(j)
                .is_some_and(|next| next - start < max_bytes as u64)
            && !self.deleted.contains(seg.first_seq + j as u64)
        {
            j += 1;
        }
        let end = self.end_of(seg, j - 1);
        let from_file = end.min(seg.written).saturating_sub(start) as usize;
        out.resize(from_file, 0);
        if from_file > 0 {
            seg.read_into(start, out)?;
        }
        if end > seg.written {
            let lo = start.max(seg.written) - seg.written;
            out.extend_from_slice(&self.pending[lo as usize..(end - seg.written) as usize]);
        }
        Ok(j - i)
    }

    /// Visits the kept messages from sequence `from` on, in order, reading each segment in
    /// large sequential chunks (a restart's scan of recent messages, without a read per
    /// message). Stops early when `visit` returns false.
    pub fn scan(&self, from: u64, mut visit: impl FnMut(&record::View<'_>) -> bool) -> Result<()> {
        const CHUNK: u64 = 4 * 1024 * 1024;
        let from = from.max(self.first);
        let deleted = &self.deleted;
        let mut visit = |view: &record::View<'_>| deleted.contains(view.seq) || visit(view);
        for seg in &self.segments {
            if seg.end_seq() <= from {
                continue;
            }
            let is_active = std::ptr::eq(seg, self.active());
            let mut i = from.saturating_sub(seg.first_seq) as usize;
            while let Some(start) = seg.index.offset(i) {
                if start >= seg.written {
                    // Appended, not yet written: still in the buffer.
                    let mut buf = &self.pending[(start - seg.written) as usize..];
                    while let Ok(Some(view)) =
                        record::decode(buf, self.config.max_msg_size.max(buf.len()))
                    {
                        if !visit(&view) {
                            return Ok(());
                        }
                        buf = &buf[view.size..];
                    }
                    break;
                }
                // Whole records up to about CHUNK bytes, ending at a record boundary.
                let mut j = i + 1;
                while seg
                    .index
                    .offset(j)
                    .is_some_and(|next| next < seg.written && next - start < CHUNK)
                {
                    j += 1;
                }
                let end = seg.index.offset(j).unwrap_or(seg.written).min(seg.written);
                let bytes = seg.read(start, (end - start) as usize)?;
                let mut buf = &bytes[..];
                while let Ok(Some(view)) =
                    record::decode(buf, self.config.max_msg_size.max(buf.len()))
                {
                    if !visit(&view) {
                        return Ok(());
                    }
                    buf = &buf[view.size..];
                }
                i = j;
                if !is_active && end >= seg.written {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Like [`scan`](Log::scan), but visits only the kept messages from `from` on that have a
    /// non-empty header block, in order. Which ones do is known without reading (a bit per
    /// record, kept since the record was appended or recovered), so only those are read: a log
    /// where no message in range has headers is not read at all. Nearby records with headers
    /// are read together, a chunk at a time. Stops early when `visit` returns false.
    ///
    /// Rebuilds what depends only on headers (a de-duplication window of message ids) at a
    /// restart without reading every payload. A record that no longer decodes (its file changed
    /// under the log) is an error, as for [`get`](Log::get).
    pub fn scan_with_headers(
        &self,
        from: u64,
        mut visit: impl FnMut(&record::View<'_>) -> bool,
    ) -> Result<()> {
        // One read spans records with headers at most CHUNK bytes apart from the first one's
        // start, skipping over no more than GAP bytes of records without headers at a time.
        const CHUNK: u64 = 1024 * 1024;
        const GAP: u64 = 16 * 1024;
        let from = from.max(self.first);
        let deleted = &self.deleted;
        let mut visit = |view: &record::View<'_>| deleted.contains(view.seq) || visit(view);
        let mut bytes = Vec::new();
        for seg in &self.segments {
            if seg.end_seq() <= from {
                continue;
            }
            let mut next = seg
                .index
                .next_with_headers(from.saturating_sub(seg.first_seq) as usize);
            while let Some(i) = next {
                let start = seg.index.offset(i).unwrap_or(0);
                // The records with headers from i to `last` are read with one call (or taken
                // from the pending buffer).
                let (mut last, mut stop) = (i, self.end_of(seg, i));
                next = seg.index.next_with_headers(i + 1);
                let buf: &[u8] = if start >= seg.written {
                    let lo = (start - seg.written) as usize;
                    &self.pending[lo..(stop - seg.written) as usize]
                } else {
                    while let Some(j) = next {
                        let (s, e) = (seg.index.offset(j).unwrap_or(0), self.end_of(seg, j));
                        if e > seg.written || s - stop > GAP || e - start > CHUNK {
                            break;
                        }
                        (last, stop) = (j, e);
                        next = seg.index.next_with_headers(j + 1);
                    }
                    bytes.resize((stop - start) as usize, 0);
                    seg.read_into(start, &mut bytes)?;
                    &bytes
                };
                let mut k = Some(i);
                while let Some(j) = k.filter(|&j| j <= last) {
                    let at = (seg.index.offset(j).unwrap_or(0) - start) as usize;
                    let end = (self.end_of(seg, j) - start) as usize;
                    let record = &buf[at..end];
                    let seq = seg.first_seq + j as u64;
                    match record::decode(record, self.config.max_msg_size.max(record.len())) {
                        Ok(Some(view)) if view.seq == seq => {
                            if !visit(&view) {
                                return Ok(());
                            }
                        }
                        _ => return Err(changed_on_disk(&seg.path, seq)),
                    }
                    k = seg.index.next_with_headers(j + 1);
                }
            }
        }
        Ok(())
    }

    /// The first kept sequence whose timestamp is at or after `timestamp` (nanoseconds), or
    /// [`next_seq`](Log::next_seq) if none is.
    ///
    /// Timestamps are taken as non-decreasing (they are appended in order): a binary search over
    /// every 64th record's timestamp (in memory), then over the records of one block (a small
    /// read each). A record that cannot be read counts as later than `timestamp`, so expiry
    /// keeps it and a consumer starting at a time starts no later than it should.
    pub fn seq_for_time(&self, timestamp: u64) -> u64 {
        for seg in &self.segments {
            if seg.end_seq() <= self.first {
                continue;
            }
            let skip = self.first.saturating_sub(seg.first_seq) as usize;
            let n = seg.index.len();
            let earlier = |i: usize| {
                self.record_timestamp(seg, i)
                    .is_some_and(|ts| ts < timestamp)
            };
            // Blocks 0..k start before `timestamp`; the first record at or after it is in
            // block k - 1 (past its first record) or is record 64k.
            let k = seg.index.samples().partition_point(|&ts| ts < timestamp);
            let (lo, hi) = match k {
                0 => (0, 0),
                k => ((k - 1) * 64 + 1, (k * 64).min(n)),
            };
            // The first of lo..hi that is not earlier (hi if all are).
            let (mut lo, mut hi) = (lo.min(hi), hi);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if earlier(mid) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            let i = lo.max(skip);
            if i < n {
                return seg.first_seq + i as u64;
            }
        }
        self.next_seq()
    }

    /// Deletes every message below `up_to` (all of them with `None`), and remembers it.
    pub fn purge(&mut self, up_to: Option<u64>) -> Result<u64> {
        let before = self.count;
        let up_to = up_to.unwrap_or(u64::MAX).min(self.next_seq());
        self.drop_below(up_to)?;
        write_purged(&self.dir, self.first)?;
        Ok(before - self.count)
    }

    /// Deletes every message below `up_to` like [`purge`](Log::purge), without remembering
    /// it: after a crash they may be back, as with the limits (for messages the caller can
    /// tell apart again, such as those its consumers acknowledged). Returns how many.
    pub fn discard_below(&mut self, up_to: u64) -> Result<u64> {
        let before = self.count;
        self.drop_below(up_to)?;
        Ok(before - self.count)
    }

    /// Deletes messages older than `max_age` as of `now` (nanoseconds); returns how many.
    pub fn expire(&mut self, now: u64) -> Result<u64> {
        let Some(max_age) = self.config.max_age else {
            return Ok(0);
        };
        let cutoff = now.saturating_sub(max_age.as_nanos() as u64);
        let before = self.count;
        let to = self.seq_for_time(cutoff);
        self.drop_below(to)?;
        Ok(before - self.count)
    }

    fn enforce_limits(&mut self) -> Result<()> {
        let over = |log: &Log| {
            (log.config.max_msgs > 0 && log.count > log.config.max_msgs)
                || (log.config.max_bytes > 0 && log.bytes > log.config.max_bytes)
        };
        while over(self) && self.count > 0 {
            let first = self.first;
            self.drop_below(first + 1)?;
        }
        Ok(())
    }

    /// Moves the first sequence up to `seq`, deleting whole segments that fall below it.
    fn drop_below(&mut self, seq: u64) -> Result<()> {
        let next = self.next_seq();
        // Messages deleted one by one right after the new first go with it.
        let mut seq = seq.min(next).max(self.first);
        while seq < next && self.deleted.contains(seq) {
            seq += 1;
        }
        if seq <= self.first {
            return Ok(());
        }
        let (mut count, mut bytes) = (0, 0);
        for s in &self.segments {
            let from = self.first.max(s.first_seq);
            let to = seq.min(s.end_seq());
            if from < to {
                let (lo, hi) = ((from - s.first_seq) as usize, (to - s.first_seq) as usize);
                // Records are contiguous: those deleted span from the first's start to the
                // last's end; those deleted one by one were counted out already.
                bytes += self.end_of(s, hi - 1) - s.index.offset(lo).unwrap_or(0);
                count += to - from;
                for gone in self.deleted.range(from, to) {
                    let i = (gone - s.first_seq) as usize;
                    bytes -= self.end_of(s, i) - s.index.offset(i).unwrap_or(0);
                    count -= 1;
                }
            }
        }
        self.bytes -= bytes;
        self.count -= count;
        self.first = seq;
        self.deleted.forget_below(seq);
        if let Some(subjects) = &mut self.subjects {
            subjects.sweep(seq, self.count);
        }
        // Remove segments wholly below `first`, but always keep the active one.
        while self.segments.len() > 1 && self.segments[0].end_seq() <= self.first {
            self.segments.remove(0).remove()?;
        }
        if self.count == 0
            && self.active().end_seq() <= self.first
            && !self.active().index.is_empty()
        {
            // Everything is deleted: start a fresh segment so the old file can go.
            self.flush()?;
            let fresh = Segment::create(&self.dir, self.next_seq())?;
            files::sync_dir(&self.dir)?;
            std::mem::replace(&mut self.segments[0], fresh).remove()?;
        }
        Ok(())
    }

    /// Where record `i` of `seg` ends: the next record's start, or the end of what the segment
    /// holds (in its file and, for the active segment, in the pending buffer).
    fn end_of(&self, seg: &Segment, i: usize) -> u64 {
        match seg.index.offset(i + 1) {
            Some(next) => next,
            None if std::ptr::eq(seg, self.active()) => seg.written + self.pending.len() as u64,
            None => seg.written,
        }
    }
}

/// The value of header `name` in a `NATS/1.0` header block (`Name: value` lines), if any.
fn header_value<'a>(block: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(block).ok()?;
    text.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A record that no longer decodes as it did when it was written or recovered.
pub(crate) fn changed_on_disk(path: &Path, seq: u64) -> Error {
    Error::Io {
        path: path.to_owned(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("record {seq} changed on disk"),
        ),
    }
}

pub(crate) fn read_purged(dir: &Path) -> Result<Option<u64>> {
    let path = dir.join(PURGED);
    match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse() {
            Ok(seq) => Ok(Some(seq)),
            Err(_) => {
                tracing::warn!(file = %path.display(), "unreadable purge mark; ignored");
                Ok(None)
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

pub(crate) fn write_purged(dir: &Path, first: u64) -> Result<()> {
    files::replace(dir, PURGED, first.to_string().as_bytes())
}
