//! The log against an in-memory model: random appends (some with headers), flushes, purges,
//! deletes of single messages (some erased), purges by subject, per-subject limits, clean
//! reopens (which leave every segment indexed), crashes (reopen without flushing, which
//! leaves the active segment's index stale or absent) and damaged index files, with segments
//! small enough to roll often and limits small enough to delete often.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use herald_log::{Config, Entry, Filter, Log};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append {
        subject: u8,
        len: usize,
        headers: bool,
    },
    Flush,
    Purge(u64),
    PurgeAll,
    /// Delete the `pick`-th kept message.
    Delete {
        pick: usize,
        erase: bool,
    },
    /// Purge one subject, keeping its newest `keep` if given.
    PurgeSubject {
        subject: u8,
        keep: Option<u64>,
    },
    Reopen,
    Crash,
    /// Close cleanly, damage one index file (`how`: delete, flip a bit, cut short, replace it
    /// with another segment's), reopen: what the log serves must not change.
    DamageIndex {
        how: u8,
        pick: usize,
        at: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..4, 0usize..120, prop::bool::weighted(0.3))
            .prop_map(|(subject, len, headers)| Op::Append { subject, len, headers }),
        2 => Just(Op::Flush),
        1 => (0u64..6).prop_map(Op::Purge),
        1 => Just(Op::PurgeAll),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, erase)| Op::Delete { pick, erase }),
        1 => (0u8..4, prop::option::of(0u64..3))
            .prop_map(|(subject, keep)| Op::PurgeSubject { subject, keep }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
        1 => (0u8..4, any::<usize>(), any::<usize>())
            .prop_map(|(how, pick, at)| Op::DamageIndex { how, pick, at }),
    ]
}

/// What the log should hold: every record ever appended by sequence (1-based), and the range
/// still kept.
struct Model {
    /// Subject, headers, payload.
    records: Vec<(String, Vec<u8>, Vec<u8>)>,
    first: u64,
    flushed: u64,
    /// The first sequence as the last purge left it: durable, unlike deletes by limits.
    purged: u64,
    /// Deleted one by one, at or above `first`.
    deleted: BTreeSet<u64>,
    /// Of those, the ones on disk (deleted before the last flush).
    deleted_flushed: BTreeSet<u64>,
    /// Every sequence ever deleted one by one (a crash may bring back any that was not
    /// flushed, even below `first`).
    ever_deleted: BTreeSet<u64>,
    config: Config,
}

impl Model {
    fn next(&self) -> u64 {
        self.records.len() as u64 + 1
    }

    fn size(&self, seq: u64) -> u64 {
        let (s, h, p) = &self.records[(seq - 1) as usize];
        (30 + s.len() + h.len() + p.len()) as u64
    }

    fn kept(&self) -> impl Iterator<Item = u64> + '_ {
        (self.first..self.next()).filter(|s| !self.deleted.contains(s))
    }

    fn count(&self) -> u64 {
        self.kept().count() as u64
    }

    fn bytes(&self) -> u64 {
        self.kept().map(|s| self.size(s)).sum()
    }

    fn subject(&self, seq: u64) -> &str {
        &self.records[(seq - 1) as usize].0
    }

    fn of_subject(&self, subject: &str) -> Vec<u64> {
        self.kept()
            .filter(|&s| self.subject(s) == subject)
            .collect()
    }

    fn delete(&mut self, seq: u64) {
        self.deleted.insert(seq);
        self.ever_deleted.insert(seq);
        self.skip_deleted();
    }

    /// The first moves past deleted messages; deletes below it are forgotten.
    fn skip_deleted(&mut self) {
        while self.first < self.next() && self.deleted.contains(&self.first) {
            self.first += 1;
        }
        let first = self.first;
        self.deleted.retain(|&s| s >= first);
        self.deleted_flushed.retain(|&s| s >= first);
    }

    fn enforce_subject(&mut self, subject: &str) {
        let max = self.config.max_msgs_per_subject;
        if max == 0 {
            return;
        }
        let seqs = self.of_subject(subject);
        let over = seqs.len().saturating_sub(max as usize);
        for &seq in &seqs[..over] {
            self.delete(seq);
        }
    }

    fn enforce(&mut self) {
        loop {
            let count = self.count();
            let bytes = self.bytes();
            let over = (self.config.max_msgs > 0 && count > self.config.max_msgs)
                || (self.config.max_bytes > 0 && bytes > self.config.max_bytes);
            if !over || count == 0 {
                return;
            }
            self.first += 1;
            self.skip_deleted();
        }
    }
}

fn check(log: &Log, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        log.first_seq(),
        model.first,
        "deleted {:?}, kept {:?}",
        model.deleted,
        model.kept().collect::<Vec<_>>()
    );
    prop_assert_eq!(log.next_seq(), model.next());
    prop_assert_eq!(log.len(), model.count());
    prop_assert_eq!(log.bytes(), model.bytes());
    let kept = |seq: u64| seq >= model.first && seq < model.next() && !model.deleted.contains(&seq);
    for seq in model.first.saturating_sub(1)..=model.next() {
        let got = log.get(seq).unwrap();
        if kept(seq) {
            let got = got.expect("kept record readable");
            let (subject, headers, payload) = &model.records[(seq - 1) as usize];
            prop_assert_eq!(got.seq, seq);
            prop_assert_eq!(&got.subject, subject);
            prop_assert_eq!(&got.headers, headers);
            prop_assert_eq!(&got.payload, payload);
            prop_assert_eq!(got.timestamp, seq * 1000);
            prop_assert_eq!(log.timestamp(seq), Some(seq * 1000));
        } else {
            prop_assert!(got.is_none(), "seq {} should be gone", seq);
            if !model.deleted.contains(&seq) {
                prop_assert_eq!(log.timestamp(seq), None);
            }
        }
    }
    // The first kept message at or after a time.
    for t in (0..=model.next() * 1000 + 1).step_by(500) {
        let want = (model.first..model.next())
            .find(|s| s * 1000 >= t)
            .unwrap_or(model.next());
        prop_assert_eq!(log.seq_for_time(t), want, "time {}", t);
    }
    // Visiting only the records with headers sees exactly those, in order, from any point.
    for from in [
        0,
        model.first,
        (model.first + model.next()) / 2,
        model.next(),
    ] {
        let mut seen = Vec::new();
        log.scan_with_headers(from, |view| {
            seen.push((
                view.seq,
                view.entry.headers.to_vec(),
                view.entry.payload.to_vec(),
            ));
            true
        })
        .unwrap();
        let want: Vec<(u64, Vec<u8>, Vec<u8>)> = (from.max(model.first)..model.next())
            .filter(|&s| kept(s))
            .map(|s| (s, &model.records[(s - 1) as usize]))
            .filter(|(_, (_, h, _))| !h.is_empty())
            .map(|(s, (_, h, p))| (s, h.clone(), p.clone()))
            .collect();
        prop_assert_eq!(&seen, &want);
        // And stops when told to.
        let mut first = Vec::new();
        log.scan_with_headers(from, |view| {
            first.push(view.seq);
            false
        })
        .unwrap();
        prop_assert_eq!(
            first,
            want.first().map(|w| w.0).into_iter().collect::<Vec<_>>()
        );
    }
    // A sequential scan from any point sees the same records, in order.
    for from in [0, model.first, (model.first + model.next()) / 2] {
        let mut seen = Vec::new();
        log.scan(from, |view| {
            seen.push((view.seq, view.entry.payload.to_vec()));
            true
        })
        .unwrap();
        let want: Vec<(u64, Vec<u8>)> = (from.max(model.first)..model.next())
            .filter(|&s| kept(s))
            .map(|s| (s, model.records[(s - 1) as usize].2.clone()))
            .collect();
        prop_assert_eq!(seen, want);
    }
    // Batches read the same records: consecutive, within their bounds, never empty while
    // something is kept from there on.
    let mut buf = Vec::new();
    for (max_records, max_bytes) in [(1, 1), (3, 10_000), (1000, 100), (1000, 1 << 20)] {
        let mut seq = model.first.saturating_sub(1);
        while seq <= model.next() {
            let n = log
                .read_batch(seq, max_records, max_bytes, &mut buf)
                .unwrap();
            if !kept(seq) {
                prop_assert_eq!(n, 0, "batch at {} should be empty", seq);
                seq += 1;
                continue;
            }
            prop_assert!(n >= 1 && n <= max_records, "batch of {} at {}", n, seq);
            let mut rest = &buf[..];
            for k in 0..n as u64 {
                let view = herald_log::record::decode(rest, 1 << 20).unwrap().unwrap();
                prop_assert_eq!(view.seq, seq + k);
                prop_assert_eq!(
                    view.entry.payload,
                    &model.records[(seq + k - 1) as usize].2[..]
                );
                rest = &rest[view.size..];
            }
            prop_assert!(
                rest.is_empty(),
                "{} bytes past the batch's records",
                rest.len()
            );
            seq += n as u64;
        }
    }
    Ok(())
}

/// The per-subject queries against the model (they build the subject index if needed).
fn check_subjects(log: &mut Log, model: &Model) -> Result<(), TestCaseError> {
    for k in 0..4u8 {
        let subject = format!("s.{k}");
        let seqs = model.of_subject(&subject);
        prop_assert_eq!(
            log.last_seq_of(Filter::Subject(&subject)).unwrap(),
            seqs.last().copied()
        );
        let mid = (model.first + model.next()) / 2;
        prop_assert_eq!(
            log.next_seq_of(Filter::Subject(&subject), mid).unwrap(),
            seqs.iter().copied().find(|&q| q >= mid)
        );
        prop_assert_eq!(
            log.count_from(Filter::Subject(&subject), mid).unwrap(),
            seqs.iter().filter(|&&q| q >= mid).count() as u64
        );
    }
    let odd = |s: &str| s.ends_with('1') || s.ends_with('3');
    prop_assert_eq!(
        log.count_from(Filter::Matching(&odd), 0).unwrap(),
        model.kept().filter(|&q| odd(model.subject(q))).count() as u64
    );
    let states = log.subjects_state(Filter::All).unwrap();
    let total: u64 = states.iter().map(|s| s.messages).sum();
    prop_assert_eq!(total, model.count());
    let mut lasts: Vec<u64> = states.iter().map(|s| s.last).collect();
    lasts.sort_unstable();
    prop_assert_eq!(log.last_of_each(Filter::All).unwrap(), lasts);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn log_matches_model(
        ops in prop::collection::vec(op(), 1..80),
        max_msgs in prop_oneof![Just(0u64), 3u64..12],
        max_bytes in prop_oneof![Just(0u64), 400u64..1500],
        discard_new in any::<bool>(),
        max_msgs_per_subject in prop_oneof![2 => Just(0u64), 1 => 1u64..4],
        discard_new_per_subject in prop::bool::weighted(0.3),
        index_subjects in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            segment_bytes: 300,
            max_msgs,
            max_bytes,
            max_age: None,
            max_msg_size: 1024,
            discard_new,
            max_msgs_per_subject,
            discard_new_per_subject,
        };
        let (mut log, _) = Log::open(dir.path(), config.clone()).unwrap();
        if index_subjects {
            log.track_subjects().unwrap();
        }
        let mut model = Model {
            records: Vec::new(),
            first: 1,
            flushed: 1,
            purged: 1,
            deleted: BTreeSet::new(),
            deleted_flushed: BTreeSet::new(),
            ever_deleted: BTreeSet::new(),
            config: config.clone(),
        };
        for op in ops {
            match op {
                Op::Append { subject, len, headers } => {
                    let subject = format!("s.{subject}");
                    let payload: Vec<u8> = (0..len).map(|i| (i * 7 + model.records.len()) as u8).collect();
                    let seq = model.next();
                    let headers = if headers {
                        format!("NATS/1.0\r\nNats-Msg-Id: {seq}\r\n\r\n").into_bytes()
                    } else {
                        Vec::new()
                    };
                    let got = log.append(&Entry {
                        subject: &subject,
                        headers: &headers,
                        payload: &payload,
                        timestamp: seq * 1000,
                    });
                    if discard_new {
                        // Full: refused, and nothing old is deleted to make room.
                        let count = model.count();
                        let bytes = model.bytes();
                        let size = (30 + subject.len() + headers.len() + payload.len()) as u64;
                        let full = (max_msgs > 0 && count >= max_msgs)
                            || (max_bytes > 0 && bytes + size > max_bytes);
                        if full {
                            prop_assert!(matches!(got, Err(herald_log::Error::Full(_))), "{:?}", got);
                            continue;
                        }
                    }
                    if max_msgs_per_subject > 0
                        && discard_new_per_subject
                        && model.of_subject(&subject).len() as u64 >= max_msgs_per_subject
                    {
                        prop_assert!(matches!(got, Err(herald_log::Error::Full(_))), "{:?}", got);
                        continue;
                    }
                    prop_assert_eq!(got.unwrap(), seq);
                    model.records.push((subject.clone(), headers, payload));
                    model.enforce_subject(&subject);
                    model.enforce();
                }
                Op::Flush => {
                    log.flush().unwrap();
                    model.flushed = model.next();
                    model.deleted_flushed = model.deleted.clone();
                }
                Op::Delete { pick, erase } => {
                    let kept: Vec<u64> = model.kept().collect();
                    let Some(&seq) = kept.get(pick % kept.len().max(1)) else {
                        prop_assert!(!log.delete(model.first, erase).unwrap());
                        continue;
                    };
                    prop_assert!(log.delete(seq, erase).unwrap(), "{} deleted", seq);
                    prop_assert!(!log.delete(seq, erase).unwrap(), "{} deleted twice", seq);
                    model.delete(seq);
                }
                Op::PurgeSubject { subject, keep } => {
                    let subject = format!("s.{subject}");
                    let seqs = model.of_subject(&subject);
                    let cut = keep.map_or(seqs.len(), |k| seqs.len().saturating_sub(k as usize));
                    let n = log.purge_subjects(Filter::Subject(&subject), None, keep).unwrap();
                    prop_assert_eq!(n, cut as u64);
                    for &seq in &seqs[..cut] {
                        model.delete(seq);
                    }
                }
                Op::Purge(k) => {
                    let up_to = model.first + k;
                    log.purge(Some(up_to)).unwrap();
                    model.first = model.first.max(up_to.min(model.next()));
                    model.skip_deleted();
                    model.purged = model.first;
                    log.sync().unwrap();
                    model.flushed = model.next();
                    model.deleted_flushed = model.deleted.clone();
                }
                Op::PurgeAll => {
                    log.purge(None).unwrap();
                    model.first = model.next();
                    model.skip_deleted();
                    model.purged = model.first;
                    log.sync().unwrap();
                    model.flushed = model.next();
                    model.deleted_flushed = model.deleted.clone();
                }
                Op::Reopen => {
                    log.close().unwrap();
                    model.deleted_flushed = model.deleted.clone();
                    let (reopened, recovery) = Log::open(dir.path(), config.clone()).unwrap();
                    log = reopened;
                    // Every segment was indexed: nothing is decoded to open.
                    prop_assert!(recovery.truncations.is_empty(), "{:?}", recovery);
                    prop_assert_eq!(recovery.scanned_bytes, 0, "{:?}", recovery);
                    model.flushed = model.next();
                }
                Op::DamageIndex { how, pick, at } => {
                    log.close().unwrap();
                    model.deleted_flushed = model.deleted.clone();
                    let mut indexes: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path())
                        .unwrap()
                        .map(|e| e.unwrap().path())
                        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
                        .collect();
                    indexes.sort();
                    if !indexes.is_empty() {
                        let victim = &indexes[pick % indexes.len()];
                        let mut bytes = std::fs::read(victim).unwrap();
                        let other = indexes.iter().find(|p| *p != victim);
                        let len = bytes.len();
                        match (how, other) {
                            (0, _) => bytes.clear(),
                            (2, _) => bytes.truncate(at % len),
                            (3, Some(other)) => bytes = std::fs::read(other).unwrap(),
                            _ => bytes[at % len] ^= 1 << (at % 8),
                        }
                        if bytes.is_empty() {
                            std::fs::remove_file(victim).unwrap();
                        } else {
                            std::fs::write(victim, &bytes).unwrap();
                        }
                    }
                    let (reopened, recovery) = Log::open(dir.path(), config.clone()).unwrap();
                    log = reopened;
                    prop_assert!(recovery.truncations.is_empty(), "{:?}", recovery);
                    // The damaged index was not used: its segment was scanned.
                    prop_assert_eq!(recovery.scanned_bytes > 0, !indexes.is_empty(), "{:?}", recovery);
                    model.flushed = model.next();
                }
                Op::Crash => {
                    // Appends not flushed may be lost (a finished segment was flushed when it
                    // rolled); what survives is a prefix, at least up to the last flush.
                    drop(log);
                    let (reopened, recovery) = Log::open(dir.path(), config.clone()).unwrap();
                    log = reopened;
                    prop_assert!(recovery.truncations.is_empty(), "{:?}", recovery);
                    let next = log.next_seq();
                    prop_assert!(next >= model.flushed && next <= model.next(),
                        "after a crash next is {}, flushed {}, appended up to {}", next, model.flushed, model.next());
                    model.records.truncate((next - 1) as usize);
                    // Deletes by limits are not durable until their segment is removed: the
                    // log may keep more old records than before, never fewer, and never any
                    // below the last purge; it still honours the limits.
                    let first = log.first_seq();
                    prop_assert!(first >= model.purged.min(next),
                        "first {} below the purge at {}", first, model.purged);
                    // Single deletes written before the crash hold; later ones may be lost,
                    // and messages never deleted are all there.
                    let mut deleted = BTreeSet::new();
                    for seq in first..next {
                        let there = log.get(seq).unwrap().is_some();
                        if model.deleted_flushed.contains(&seq) {
                            prop_assert!(!there, "{} was deleted before the crash", seq);
                        }
                        if !there {
                            prop_assert!(model.ever_deleted.contains(&seq), "{} lost in the crash", seq);
                            deleted.insert(seq);
                        }
                    }
                    model.first = first;
                    model.deleted = deleted;
                    model.skip_deleted();
                    let before = (model.first, model.deleted.clone());
                    model.enforce();
                    prop_assert_eq!((model.first, model.deleted.clone()), before, "the limits hold after recovery");
                    model.flushed = next;
                    model.deleted_flushed = model.deleted.clone();
                }
            }
            check(&log, &model)?;
            if index_subjects {
                check_subjects(&mut log, &model)?;
            }
            if max_msgs_per_subject > 0 {
                for k in 0..4u8 {
                    let n = model.of_subject(&format!("s.{}", k)).len() as u64;
                    prop_assert!(n <= max_msgs_per_subject, "subject {} holds {}", k, n);
                }
            }
        }
        check_subjects(&mut log, &model)?;
    }
}
