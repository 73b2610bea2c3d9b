//! Sequences a log passes over: a copy of another log (a mirror, a replica catching up)
//! keeps that log's sequences where it has gaps.
//!
//! On an empty log the next sequence simply moves up: the log starts anew there, remembered
//! like a purge (the mark is written before the old segments go and the new one comes, so a
//! crash in between opens at the mark or at the old end, never lower). Past kept messages,
//! each sequence passed over is an empty record deleted at once, as a message delete is.

use crate::error::Result;
use crate::record::Entry;
use crate::segment::Segment;
use crate::{Log, files, write_purged};

impl Log {
    /// Moves the next sequence up to `seq` (nothing if it is there already); the sequences
    /// passed over hold nothing. Placeholder records, when needed, get `timestamp`. Like an
    /// append, it is on disk with the next [`flush`](Log::flush), durable with the next
    /// [`sync`](Log::sync).
    pub fn skip_to(&mut self, seq: u64, timestamp: u64) -> Result<()> {
        if seq <= self.next_seq() {
            return Ok(());
        }
        if self.count > 0 {
            // Placeholders are not messages: the limits neither refuse them nor make room
            // for them (each is deleted before the next).
            let unlimited = self.config.without_limits();
            let limits = std::mem::replace(&mut self.config, unlimited);
            let filled = (|| {
                while self.next_seq() < seq {
                    let placeholder = self.append(&Entry {
                        subject: "_",
                        headers: b"",
                        payload: b"",
                        timestamp,
                    })?;
                    self.delete(placeholder, false)?;
                }
                Ok(())
            })();
            self.config = limits;
            return filled;
        }
        self.flush()?;
        write_purged(&self.dir, seq)?;
        let fresh = Segment::create(&self.dir, seq)?;
        for old in std::mem::replace(&mut self.segments, vec![fresh]) {
            old.remove()?;
        }
        files::sync_dir(&self.dir)?;
        self.first = seq;
        self.bytes = 0;
        self.deleted.forget_below(seq);
        if let Some(subjects) = &mut self.subjects {
            subjects.sweep(seq, 0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::record::Entry;
    use crate::{Config, Log};

    fn entry(payload: &[u8]) -> Entry<'_> {
        Entry {
            subject: "s",
            headers: b"",
            payload,
            timestamp: 7,
        }
    }

    #[test]
    fn an_empty_log_starts_anew_at_the_sequence_and_keeps_it_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), Config::default()).unwrap();
        log.append(&entry(b"a")).unwrap();
        log.purge(None).unwrap();
        log.skip_to(1_000, 7).unwrap();
        assert_eq!(
            (log.first_seq(), log.next_seq(), log.len()),
            (1_000, 1_000, 0)
        );
        assert_eq!(log.append(&entry(b"b")).unwrap(), 1_000);
        log.close().unwrap();
        let (log, _) = Log::open(dir.path(), Config::default()).unwrap();
        assert_eq!(
            (log.first_seq(), log.next_seq(), log.len()),
            (1_000, 1_001, 1)
        );
        assert_eq!(log.get(1_000).unwrap().unwrap().payload, b"b");
    }

    #[test]
    fn a_log_skipped_ahead_and_closed_before_any_append_reopens_there() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), Config::default()).unwrap();
        log.skip_to(50, 7).unwrap();
        log.close().unwrap();
        let (log, _) = Log::open(dir.path(), Config::default()).unwrap();
        assert_eq!((log.first_seq(), log.next_seq()), (50, 50));
    }

    #[test]
    fn placeholders_neither_push_messages_out_nor_are_refused_by_the_limits() {
        let dir = tempfile::tempdir().unwrap();
        for discard_new in [false, true] {
            let config = Config {
                max_msgs: 2,
                discard_new,
                ..Config::default()
            };
            let (mut log, _) = Log::open(dir.path().join(discard_new.to_string()), config).unwrap();
            log.append(&entry(b"a")).unwrap();
            log.append(&entry(b"b")).unwrap();
            log.skip_to(10, 7).unwrap();
            assert_eq!((log.first_seq(), log.next_seq(), log.len()), (1, 10, 2));
            assert_eq!(log.get(2).unwrap().unwrap().payload, b"b");
        }
    }

    #[test]
    fn past_kept_messages_the_sequences_are_deleted_placeholders() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), Config::default()).unwrap();
        log.append(&entry(b"a")).unwrap();
        log.skip_to(5, 7).unwrap();
        assert_eq!(log.append(&entry(b"e")).unwrap(), 5);
        assert_eq!(log.len(), 2);
        for gap in 2..5 {
            assert!(log.get(gap).unwrap().is_none(), "{gap}");
        }
        log.skip_to(3, 7).unwrap();
        assert_eq!(log.next_seq(), 6);
        log.close().unwrap();
        let (log, _) = Log::open(dir.path(), Config::default()).unwrap();
        assert_eq!((log.first_seq(), log.next_seq(), log.len()), (1, 6, 2));
    }
}
