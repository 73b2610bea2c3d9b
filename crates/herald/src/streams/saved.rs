//! A durable consumer's state as kept on disk (`consumers/<name>.json` in its stream's
//! directory): what a restarted consumer starts from, and what a following replica's
//! retention reads to know which messages a consumer may still need.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::ConsumerConfig;

/// A durable consumer's state as saved on disk.
#[derive(Serialize, Deserialize)]
pub(crate) struct Saved {
    pub(crate) config: ConsumerConfig,
    pub(crate) created: u64,
    pub(super) next: u64,
    pub(super) cseq: u64,
    pub(super) last_sseq: u64,
    /// (stream sequence, consumer sequence, deliveries) of each unacknowledged message.
    pub(super) pending: Vec<(u64, u64, u32)>,
}

impl Saved {
    /// The states kept in a stream's `consumers` directory, each with the file it was read
    /// from, or why it could not be read (an entry of the directory that cannot be listed
    /// comes as an error under the directory's path); nothing when the directory cannot be
    /// read at all.
    pub(crate) fn read_all(
        dir: &Path,
    ) -> impl Iterator<Item = (PathBuf, std::result::Result<Saved, String>)> {
        let listed = std::fs::read_dir(dir).into_iter().flatten();
        listed.filter_map(move |entry| {
            let path = match entry {
                Ok(entry) => entry.path(),
                Err(err) => return Some((dir.to_owned(), Err(err.to_string()))),
            };
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                return None;
            }
            let saved = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()));
            Some((path, saved))
        })
    }

    /// The first message the consumer of this state may still need: its first
    /// unacknowledged delivery, or the next it delivers.
    pub(crate) fn needs_from(&self) -> u64 {
        self.pending
            .iter()
            .map(|&(seq, _, _)| seq)
            .min()
            .map_or(self.next, |first| first.min(self.next))
    }
}
