//! One segment file: records with consecutive sequences, starting at the sequence in its name.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Corruption, Result, io};
use crate::record::{self, View};

/// A segment's file name for its first sequence: zero-padded so names sort by sequence.
pub(crate) fn file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.log")
}

/// The first sequence a segment file name stands for, if it is one.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

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
    /// Offset and timestamp of each record: record `i` has sequence `first_seq + i`.
    pub(crate) index: Vec<(u32, u64)>,
    /// Bytes in the file (records not yet written are the log's pending buffer).
    pub(crate) written: u64,
}

impl Segment {
    pub(crate) fn create(dir: &Path, first_seq: u64) -> Result<Segment> {
        let path = dir.join(file_name(first_seq));
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
            index: Vec::new(),
            written: 0,
        })
    }

    /// Opens an existing segment and indexes its records. A bad record and everything after
    /// it are cut off (the file is truncated) and reported.
    pub(crate) fn recover(
        path: PathBuf,
        first_seq: u64,
        max_record: usize,
    ) -> Result<(Segment, Option<Truncation>)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let mut index = Vec::new();
        let mut at = 0usize;
        let mut bad = None;
        while at < bytes.len() {
            let expected = first_seq + index.len() as u64;
            match record::decode(&bytes[at..], max_record) {
                Ok(Some(View { seq, entry, size })) if seq == expected => {
                    index.push((at as u32, entry.timestamp));
                    at += size;
                }
                Ok(Some(View { seq, .. })) => {
                    bad = Some(Corruption::Sequence {
                        found: seq,
                        expected,
                    });
                    break;
                }
                Ok(None) => break,
                Err(reason) => {
                    bad = Some(reason);
                    break;
                }
            }
        }
        let truncation = match bad {
            Some(reason) => {
                file.set_len(at as u64).map_err(io(&path))?;
                file.sync_data().map_err(io(&path))?;
                Some(Truncation {
                    path: path.clone(),
                    offset: at as u64,
                    removed: (bytes.len() - at) as u64,
                    reason,
                })
            }
            None => None,
        };
        Ok((
            Segment {
                path,
                file,
                first_seq,
                index,
                written: at as u64,
            },
            truncation,
        ))
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
}
