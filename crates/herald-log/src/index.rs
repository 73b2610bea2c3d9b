//! A segment's index: where each record starts, the timestamp of every 64th record, and
//! whether each carries headers;
//! kept in memory for every segment, and saved next to a segment so that opening the log does
//! not have to decode it.
//!
//! ```text
//! offset        size   field (little-endian)
//!  0            8      magic "HRLDIDX\0"
//!  8            4      version (2)
//! 12            4      the crc32c field of the last covered record (a spot check on open)
//! 16            8      first_seq: the sequence in the segment's name
//! 24            8      n: records covered (at least 1)
//! 32            8      covered: bytes of the segment the index describes (its first n records)
//! 40            4n     offsets, one u32 per record
//! 40+4n         8w     samples: w = ceil(n / 64) u64 words, the timestamp of records 0, 64,
//!                      128, .. (a record's own timestamp is in the record)
//! 40+4n+8w      8w     headers: bit i % 64 of word i / 64 is set when record i has a
//!                      non-empty header block; bits past n are zero
//! end-4         4      crc32c of every byte before it
//! ```
//!
//! Loading never trusts the file: its size must be the one its `n` implies, its checksum must
//! match, and its offsets must describe records the segment could hold (the first at 0, each
//! at least [`HEADER`](crate::record::HEADER) and at most `max_record` bytes long, the last
//! ending at `covered`). Anything else is [`Loaded::Rejected`] and the segment is scanned.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Result, io};
use crate::record::HEADER;

const MAGIC: &[u8; 8] = b"HRLDIDX\0";
const VERSION: u32 = 2;
/// Bytes before the offsets.
const FIXED: usize = 40;
/// Bytes encoded or hashed at a time when writing.
const CHUNK: usize = 256 * 1024;

/// Where an index is written before it is renamed into place.
fn temp_path(path: &Path) -> PathBuf {
    path.with_extension("idx.tmp")
}

/// The records of one segment, by position: record `i` has sequence `first_seq + i`.
///
/// Parallel columns instead of a vector of tuples: an offset (4 bytes) and a header bit per
/// record, and a timestamp per 64 records (about 4.1 bytes a record in all, where offset and
/// timestamp tuples took 16 with padding). The header bits let a scan for records with headers
/// skip the others without reading them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Index {
    /// Where each record starts in the segment file.
    offsets: Vec<u32>,
    /// The timestamp of every 64th record (0, 64, ..): enough to find a time's block; the
    /// records hold the exact ones. 4 bytes a message in memory instead of 12.
    samples: Vec<u64>,
    /// Bit `i` set: record `i` has a non-empty header block.
    headers: Vec<u64>,
    /// How many bits of `headers` are set.
    with_headers: usize,
}

impl Index {
    /// Records indexed.
    pub(crate) fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Whether no record is indexed.
    pub(crate) fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Adds the next record.
    pub(crate) fn push(&mut self, offset: u32, timestamp: u64, has_headers: bool) {
        let i = self.offsets.len();
        self.offsets.push(offset);
        if i.is_multiple_of(64) {
            self.samples.push(timestamp);
            self.headers.push(0);
        }
        if has_headers {
            self.headers[i / 64] |= 1 << (i % 64);
            self.with_headers += 1;
        }
    }

    /// Keeps the first `len` records.
    pub(crate) fn truncate(&mut self, len: usize) {
        if len >= self.len() {
            return;
        }
        self.offsets.truncate(len);
        self.samples.truncate(len.div_ceil(64));
        self.headers.truncate(len.div_ceil(64));
        if !len.is_multiple_of(64)
            && let Some(last) = self.headers.last_mut()
        {
            *last &= (1u64 << (len % 64)) - 1;
        }
        self.with_headers = self.headers.iter().map(|w| w.count_ones() as usize).sum();
    }

    /// Where record `i` starts.
    pub(crate) fn offset(&self, i: usize) -> Option<u64> {
        self.offsets.get(i).map(|&o| o as u64)
    }

    /// The timestamps of records 0, 64, 128, ..
    pub(crate) fn samples(&self) -> &[u64] {
        &self.samples
    }

    /// Whether record `i` has a non-empty header block.
    pub(crate) fn has_headers(&self, i: usize) -> bool {
        self.headers
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// The first record at or after `i` that has headers.
    pub(crate) fn next_with_headers(&self, i: usize) -> Option<usize> {
        if self.with_headers == 0 || i >= self.len() {
            return None;
        }
        let mut word = i / 64;
        // Ignore the bits below `i` in its word.
        let mut bits = self.headers[word] & (u64::MAX << (i % 64));
        loop {
            if bits != 0 {
                return Some(word * 64 + bits.trailing_zeros() as usize);
            }
            word += 1;
            bits = *self.headers.get(word)?;
        }
    }
}

/// An index loaded from its file.
#[derive(Debug)]
pub(crate) struct Saved {
    /// The records it covers.
    pub(crate) index: Index,
    /// Bytes of the segment it describes.
    pub(crate) covered: u64,
    /// The crc32c field of its last record.
    pub(crate) last_crc: u32,
}

/// What loading an index file found.
#[derive(Debug)]
pub(crate) enum Loaded {
    /// There is none.
    Missing,
    /// There is one, but it cannot be trusted; says why.
    Rejected(String),
    /// Checksummed and consistent with itself (the caller still checks it against the segment).
    Valid(Saved),
}

/// Writes the index of the segment starting at `first_seq` to `path`: its first
/// `index.len()` records, which end at byte `covered`, the last one with crc field
/// `last_crc`. Written to a temporary file, then renamed over `path`; the caller syncs the
/// directory when it needs the name to be durable. The file itself is not fsynced: after a
/// crash it may be empty or torn, which its checksum shows, and the segment is then scanned
/// (an index only ever saves time).
///
/// The segment's bytes up to `covered` must already be durable: an index never describes
/// bytes a crash could take back.
pub(crate) fn write(
    path: &Path,
    first_seq: u64,
    index: &Index,
    covered: u64,
    last_crc: u32,
) -> Result<()> {
    let tmp = temp_path(path);
    let written = write_file(&tmp, first_seq, index, covered, last_crc)
        .and_then(|()| std::fs::rename(&tmp, path).map_err(io(path)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn write_file(
    tmp: &Path,
    first_seq: u64,
    index: &Index,
    covered: u64,
    last_crc: u32,
) -> Result<()> {
    let mut file = File::create(tmp).map_err(io(tmp))?;
    let mut out = Vec::with_capacity(CHUNK + 16);
    let mut crc = 0u32;
    let mut emit = |out: &mut Vec<u8>, file: &mut File| -> Result<()> {
        crc = crc32c::crc32c_append(crc, out);
        file.write_all(out).map_err(io(tmp))?;
        out.clear();
        Ok(())
    };
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&last_crc.to_le_bytes());
    out.extend_from_slice(&first_seq.to_le_bytes());
    out.extend_from_slice(&(index.len() as u64).to_le_bytes());
    out.extend_from_slice(&covered.to_le_bytes());
    for &offset in &index.offsets {
        out.extend_from_slice(&offset.to_le_bytes());
        if out.len() >= CHUNK {
            emit(&mut out, &mut file)?;
        }
    }
    for &ts in &index.samples {
        out.extend_from_slice(&ts.to_le_bytes());
        if out.len() >= CHUNK {
            emit(&mut out, &mut file)?;
        }
    }
    for &word in &index.headers {
        out.extend_from_slice(&word.to_le_bytes());
        if out.len() >= CHUNK {
            emit(&mut out, &mut file)?;
        }
    }
    emit(&mut out, &mut file)?;
    file.write_all(&crc.to_le_bytes()).map_err(io(tmp))
}

/// Loads the index file at `path` for the segment starting at `first_seq`, whose records are
/// at most `max_record` bytes. `buf` is scratch space for reading. An index that cannot be read
/// or trusted is [`Loaded::Rejected`], never an error: the segment can always be scanned.
pub(crate) fn load(path: &Path, first_seq: u64, max_record: usize, buf: &mut Vec<u8>) -> Loaded {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Loaded::Missing,
        Err(e) => return Loaded::Rejected(format!("cannot open it: {e}")),
    };
    let size = match file.metadata() {
        Ok(meta) => meta.len(),
        Err(e) => return Loaded::Rejected(format!("cannot read it: {e}")),
    };
    match read_checked(&mut file, size, first_seq, max_record, buf) {
        Ok(Ok(saved)) => Loaded::Valid(saved),
        Ok(Err(why)) => Loaded::Rejected(why),
        Err(e) => Loaded::Rejected(format!("cannot read it: {e}")),
    }
}

/// Reads an index file of `size` bytes from `file`: `Err` when it cannot be read, `Ok(Err)`
/// with the reason when it cannot be trusted.
fn read_checked(
    file: &mut impl Read,
    size: u64,
    first_seq: u64,
    max_record: usize,
    buf: &mut Vec<u8>,
) -> std::io::Result<std::result::Result<Saved, String>> {
    let mut fixed = [0u8; FIXED];
    if size < (FIXED + 4) as u64 {
        return Ok(Err(format!("{size} bytes is too short")));
    }
    file.read_exact(&mut fixed)?;
    let u32_at =
        |at: usize| u32::from_le_bytes([fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3]]);
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&fixed[at..at + 8]);
        u64::from_le_bytes(b)
    };
    if &fixed[..8] != MAGIC || u32_at(8) != VERSION {
        return Ok(Err("not an index file of this version".into()));
    }
    let last_crc = u32_at(12);
    let (seq, n, covered) = (u64_at(16), u64_at(24), u64_at(32));
    if seq != first_seq {
        return Ok(Err(format!(
            "it is for the segment starting at {seq}, not {first_seq}"
        )));
    }
    let words = n.div_ceil(64);
    let expected = n
        .checked_mul(4)
        .and_then(|b| b.checked_add(words * 16))
        .and_then(|b| b.checked_add((FIXED + 4) as u64));
    if n == 0 || expected != Some(size) {
        return Ok(Err(format!(
            "{size} bytes do not hold the {n} records it claims"
        )));
    }
    // `n` is bounded by the file's size now: safe to allocate for.
    let n = n as usize;
    let mut crc = crc32c::crc32c(&fixed);
    let chunk = (CHUNK as u64).min(size) as usize;
    if buf.len() < chunk {
        *buf = vec![0; chunk];
    }
    let mut offsets = Vec::with_capacity(n);
    read_section(file, buf, n * 4, &mut crc, |chunk| {
        offsets.extend(
            chunk
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
    })?;
    let mut samples = Vec::with_capacity(words as usize);
    let mut headers = Vec::with_capacity(words as usize);
    read_section(file, buf, words as usize * 8, &mut crc, |chunk| {
        samples.extend(chunk.chunks_exact(8).map(le_u64));
    })?;
    read_section(file, buf, words as usize * 8, &mut crc, |chunk| {
        headers.extend(chunk.chunks_exact(8).map(le_u64));
    })?;
    let mut stored = [0u8; 4];
    file.read_exact(&mut stored)?;
    if u32::from_le_bytes(stored) != crc {
        return Ok(Err("checksum mismatch".into()));
    }
    if !n.is_multiple_of(64) && headers.last().is_some_and(|w| w >> (n % 64) != 0) {
        return Ok(Err("header bits set past its records".into()));
    }
    // The records must tile the covered bytes: first at 0, each a possible record size.
    if offsets[0] != 0 {
        return Ok(Err("its first record is not at offset 0".into()));
    }
    let fits = |from: u64, to: u64| to >= from + HEADER as u64 && to - from <= max_record as u64;
    let tiled = offsets.windows(2).all(|w| fits(w[0] as u64, w[1] as u64))
        && fits(offsets[n - 1] as u64, covered);
    if !tiled {
        return Ok(Err(
            "its offsets do not describe records of possible sizes".into()
        ));
    }
    let with_headers = headers.iter().map(|w| w.count_ones() as usize).sum();
    Ok(Ok(Saved {
        index: Index {
            offsets,
            samples,
            headers,
            with_headers,
        },
        covered,
        last_crc,
    }))
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Reads the next `len` bytes of `file` a chunk at a time (each a multiple of 8 bytes but the
/// last), hashing them into `crc` and handing them to `take`.
fn read_section(
    file: &mut impl Read,
    buf: &mut [u8],
    mut len: usize,
    crc: &mut u32,
    mut take: impl FnMut(&[u8]),
) -> std::io::Result<()> {
    let step = buf.len() / 8 * 8;
    while len > 0 {
        let chunk = &mut buf[..len.min(step)];
        file.read_exact(chunk)?;
        *crc = crc32c::crc32c_append(*crc, chunk);
        take(chunk);
        len -= chunk.len();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Index {
        let mut index = Index::default();
        for i in 0..n {
            index.push((i * 40) as u32, i as u64 * 3, i % 7 == 2 || i == 100);
        }
        index
    }

    #[test]
    fn header_bits_are_found_and_truncated() {
        let mut index = sample(200);
        let flagged: Vec<usize> = (0..200).filter(|&i| index.has_headers(i)).collect();
        let mut walked = Vec::new();
        let mut at = 0;
        while let Some(i) = index.next_with_headers(at) {
            walked.push(i);
            at = i + 1;
        }
        assert_eq!(walked, flagged);
        assert_eq!(index.next_with_headers(101), Some(107));
        index.truncate(101);
        assert_eq!(index.len(), 101);
        assert!(index.has_headers(100));
        index.truncate(100);
        assert!(!index.has_headers(100));
        assert_eq!(index.next_with_headers(97), None);
        assert_eq!(index, {
            let mut fresh = sample(100);
            fresh.truncate(100);
            fresh
        });
        assert_eq!(Index::default().next_with_headers(0), None);
    }

    #[test]
    fn an_index_round_trips_and_damage_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::files::index_name(5));
        let index = sample(130);
        let covered = 130 * 40;
        write(&path, 5, &index, covered, 77).unwrap();
        assert_eq!(
            crate::files::parse_index_name(&crate::files::index_name(5)),
            Some(5)
        );
        let mut buf = Vec::new();
        match load(&path, 5, 1000, &mut buf) {
            Loaded::Valid(saved) => {
                assert_eq!(saved.index, index);
                assert_eq!((saved.covered, saved.last_crc), (covered, 77));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            load(&path, 6, 1000, &mut buf),
            Loaded::Rejected(_)
        ));
        // Records of 40 bytes are over a 39-byte limit.
        assert!(matches!(load(&path, 5, 39, &mut buf), Loaded::Rejected(_)));
        let bytes = std::fs::read(&path).unwrap();
        let check = |bytes: &[u8], buf: &mut Vec<u8>| {
            let mut reader = bytes;
            read_checked(&mut reader, bytes.len() as u64, 5, 1000, buf)
        };
        assert!(matches!(check(&bytes, &mut buf), Ok(Ok(_))));
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x04;
            assert!(matches!(check(&bad, &mut buf), Ok(Err(_))), "flip at {at}");
            assert!(
                matches!(check(&bytes[..at], &mut buf), Ok(Err(_))),
                "cut at {at}"
            );
        }
        assert!(matches!(
            load(
                &dir.path().join(crate::files::index_name(9)),
                9,
                1000,
                &mut buf
            ),
            Loaded::Missing
        ));
    }
}
