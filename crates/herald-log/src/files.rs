//! The files of a log directory: their names, and making changes to the directory durable.
//!
//! A segment and its index are named after the segment's first sequence, zero-padded to 20
//! digits so that names sort by sequence (`00000000000000000001.log`, `...01.idx`). A new or
//! removed name survives a crash only once the directory itself is synced ([`sync_dir`]).

use std::path::Path;

use crate::error::{Result, io};

/// How a segment's file name ends.
const SEGMENT: &str = ".log";
/// How an index's file name ends.
const INDEX: &str = ".idx";

/// A segment's file name for its first sequence.
pub(crate) fn segment_name(first_seq: u64) -> String {
    seq_name(first_seq, SEGMENT)
}

/// The first sequence a segment file name stands for, if it is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    parse_seq_name(name, SEGMENT)
}

/// The index file name of the segment starting at `first_seq`.
pub(crate) fn index_name(first_seq: u64) -> String {
    seq_name(first_seq, INDEX)
}

/// The first sequence an index file name stands for, if it is one.
pub(crate) fn parse_index_name(name: &str) -> Option<u64> {
    parse_seq_name(name, INDEX)
}

/// `first_seq` zero-padded to 20 digits, then `ext`.
fn seq_name(first_seq: u64, ext: &str) -> String {
    format!("{first_seq:020}{ext}")
}

/// The first sequence a name made by [`seq_name`] with `ext` stands for, if it is one.
fn parse_seq_name(name: &str, ext: &str) -> Option<u64> {
    let digits = name.strip_suffix(ext)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Syncs a directory: names created, renamed or removed in it before survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Replaces `name` in `dir` with `bytes` durably: a temporary file, synced, renamed over the
/// old one, then the directory synced. After a crash the file is whole, old or new.
pub(crate) fn replace(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_sequence_and_read_back() {
        assert_eq!(segment_name(1), "00000000000000000001.log");
        assert_eq!(index_name(u64::MAX), "18446744073709551615.idx");
        assert!(segment_name(9) < segment_name(10));
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_index_name(&index_name(42)), Some(42));
        for other in [
            "1.log",
            "00000000000000000001.idx.tmp",
            "0000000000000000000x.log",
            "purged",
        ] {
            assert_eq!(parse_segment_name(other), None, "{other}");
        }
        assert_eq!(parse_index_name(&segment_name(1)), None);
    }

    #[test]
    fn replace_leaves_only_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        replace(dir.path(), "mark", b"1").unwrap();
        replace(dir.path(), "mark", b"2").unwrap();
        assert_eq!(std::fs::read(dir.path().join("mark")).unwrap(), b"2");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
