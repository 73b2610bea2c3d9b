//! Reading a log directory without changing it: every record in order, and every damage found,
//! for offline tools (`herald data inspect`).

use std::path::{Path, PathBuf};

use crate::error::{Corruption, Result, io};
use crate::files;
use crate::record::{self, View};

/// What a scan reports, in file order.
#[derive(Debug)]
pub enum Item<'a> {
    /// A segment file starts.
    Segment {
        /// The file.
        path: &'a Path,
        /// The sequence in its name.
        first_seq: u64,
        /// Its size in bytes.
        bytes: u64,
    },
    /// An intact record (checksum verified).
    Record(View<'a>),
    /// A bad record: the rest of its file cannot be read (recovery would cut it there).
    Damage {
        /// The file.
        path: &'a Path,
        /// Where the bad record starts.
        offset: u64,
        /// Bytes from there to the end of the file.
        remaining: u64,
        /// What is wrong.
        reason: Corruption,
    },
}

/// The first sequence a purge left in the log in `dir` (records below it are deleted even if a
/// segment still holds them), if the log was ever purged.
pub fn purge_mark(dir: &Path) -> Result<Option<u64>> {
    crate::read_purged(dir)
}

/// Calls `visit` for every segment, record and damage of the log in `dir`, without writing
/// anything. Files that are not segments are ignored.
pub fn scan(dir: &Path, max_record: usize, mut visit: impl FnMut(Item<'_>)) -> Result<()> {
    let mut segments: Vec<(u64, PathBuf)> = Vec::new();
    for item in std::fs::read_dir(dir).map_err(io(dir))? {
        let item = item.map_err(io(dir))?;
        if let Some(first) = item
            .file_name()
            .to_str()
            .and_then(files::parse_segment_name)
        {
            segments.push((first, item.path()));
        }
    }
    segments.sort();
    for (first_seq, path) in segments {
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        visit(Item::Segment {
            path: &path,
            first_seq,
            bytes: bytes.len() as u64,
        });
        let mut at = 0;
        let mut expected = first_seq;
        while at < bytes.len() {
            let damage = match record::decode(&bytes[at..], max_record) {
                Ok(Some(view)) if view.seq == expected => {
                    at += view.size;
                    expected += 1;
                    visit(Item::Record(view));
                    continue;
                }
                Ok(Some(view)) => Corruption::Sequence {
                    found: view.seq,
                    expected,
                },
                Ok(None) => break,
                Err(reason) => reason,
            };
            visit(Item::Damage {
                path: &path,
                offset: at as u64,
                remaining: (bytes.len() - at) as u64,
                reason: damage,
            });
            break;
        }
    }
    Ok(())
}
