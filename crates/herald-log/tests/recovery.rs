//! Damaged files: a torn tail and a flipped bit are cut at the first bad record, reported, and
//! never served; everything before them is kept.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use herald_log::{Config, Corruption, Entry, Log};

fn entry(payload: &[u8]) -> Entry<'_> {
    Entry {
        subject: "orders.created",
        headers: b"",
        payload,
        timestamp: 1,
    }
}

/// A log of 10 records in one segment, synced; returns its segment file.
fn ten(dir: &std::path::Path) -> PathBuf {
    let (mut log, _) = Log::open(dir, Config::default()).unwrap();
    for i in 0..10u8 {
        log.append(&entry(&[i; 40])).unwrap();
    }
    log.sync().unwrap();
    dir.join("00000000000000000001.log")
}

#[test]
fn a_torn_tail_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = ten(dir.path());
    let len = std::fs::metadata(&file).unwrap().len();
    // Half of the last record made it to disk.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len - 20)
        .unwrap();
    let (mut log, recovery) = Log::open(dir.path(), Config::default()).unwrap();
    assert_eq!(recovery.records, 9);
    assert_eq!(recovery.truncations.len(), 1);
    assert_eq!(recovery.truncations[0].reason, Corruption::Torn);
    assert_eq!(recovery.truncations[0].removed, 84 - 20);
    assert_eq!((log.first_seq(), log.next_seq()), (1, 10));
    assert!(log.get(10).unwrap().is_none());
    assert_eq!(log.get(9).unwrap().unwrap().payload, vec![8u8; 40]);
    // The cut is on disk: the next append takes sequence 10 and reads back whole.
    assert_eq!(log.append(&entry(b"after")).unwrap(), 10);
    log.sync().unwrap();
    drop(log);
    let (log, recovery) = Log::open(dir.path(), Config::default()).unwrap();
    assert!(recovery.truncations.is_empty());
    assert_eq!(log.get(10).unwrap().unwrap().payload, b"after");
}

#[test]
fn a_flipped_bit_is_caught_by_the_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let file = ten(dir.path());
    let mut bytes = std::fs::read(&file).unwrap();
    // A bit in the payload of record 8 (each record is 30 + 14 + 40 = 84 bytes).
    bytes[7 * 84 + 60] ^= 0x10;
    std::fs::write(&file, &bytes).unwrap();
    let (log, recovery) = Log::open(dir.path(), Config::default()).unwrap();
    assert_eq!(recovery.truncations[0].reason, Corruption::Checksum);
    assert_eq!(recovery.truncations[0].offset, 7 * 84);
    assert_eq!(log.next_seq(), 8, "records 8.. are cut, never served");
    for seq in 1..8 {
        assert_eq!(
            log.get(seq).unwrap().unwrap().payload,
            vec![(seq - 1) as u8; 40]
        );
    }
}

#[test]
fn garbage_files_and_names_do_not_break_opening() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a segment").unwrap();
    std::fs::write(
        dir.path().join("00000000000000000001.log"),
        vec![0xffu8; 100],
    )
    .unwrap();
    std::fs::write(dir.path().join("purged"), "garbage").unwrap();
    let (mut log, recovery) = Log::open(dir.path(), Config::default()).unwrap();
    assert_eq!(recovery.records, 0);
    assert!(matches!(
        recovery.truncations[0].reason,
        Corruption::BadLength(_)
    ));
    assert_eq!(log.append(&entry(b"x")).unwrap(), 1);
}

#[test]
fn oversized_messages_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        max_msg_size: 100,
        ..Config::default()
    };
    let (mut log, _) = Log::open(dir.path(), config).unwrap();
    assert!(matches!(
        log.append(&entry(&[0; 200])),
        Err(herald_log::Error::TooLarge { .. })
    ));
    assert!(log.is_empty());
}

/// Everything a log serves: each kept record (through `get`), its indexed timestamp, and the
/// sequences `scan_with_headers` visits.
fn served(log: &Log) -> (Vec<(herald_log::Stored, Option<u64>)>, Vec<u64>) {
    let records = (log.first_seq()..log.next_seq())
        .map(|seq| (log.get(seq).unwrap().unwrap(), log.timestamp(seq)))
        .collect();
    let mut with_headers = Vec::new();
    log.scan_with_headers(0, |view| {
        with_headers.push(view.seq);
        true
    })
    .unwrap();
    (records, with_headers)
}

/// Small segments, so that a few dozen records make several.
fn small() -> Config {
    Config {
        segment_bytes: 1000,
        ..Config::default()
    }
}

/// 40 records over several segments, every third with headers, closed cleanly.
fn forty(dir: &std::path::Path) -> Vec<PathBuf> {
    let (mut log, _) = Log::open(dir, small()).unwrap();
    for i in 0..40u64 {
        let headers = format!("NATS/1.0\r\nNats-Msg-Id: {i}\r\n\r\n");
        log.append(&Entry {
            subject: "orders.created",
            headers: if i % 3 == 0 { headers.as_bytes() } else { b"" },
            payload: &[i as u8; 20],
            timestamp: 1000 + i,
        })
        .unwrap();
    }
    log.close().unwrap();
    files(dir, "idx")
}

/// The files of `dir` with extension `ext`, sorted.
fn files(dir: &std::path::Path, ext: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    found.sort();
    found
}

/// A copy of the log in `from`, to damage.
fn copy(from: &std::path::Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.path().join(path.file_name().unwrap())).unwrap();
    }
    to
}

#[test]
fn a_clean_close_indexes_every_segment_and_reopening_decodes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let indexes = forty(dir.path());
    let segments = files(dir.path(), "log");
    assert!(segments.len() >= 3, "{segments:?}");
    let with_ext = |paths: &[PathBuf], ext| -> Vec<PathBuf> {
        paths.iter().map(|p| p.with_extension(ext)).collect()
    };
    assert_eq!(with_ext(&indexes, "log"), segments, "one index per segment");

    let (log, recovery) = Log::open(dir.path(), small()).unwrap();
    assert_eq!(recovery.records, 40);
    assert_eq!(recovery.indexed_segments, segments.len());
    assert_eq!(recovery.scanned_bytes, 0);
    assert!(recovery.truncations.is_empty());
    let (records, with_headers) = served(&log);
    assert_eq!(with_headers, (1..=40).step_by(3).collect::<Vec<u64>>());
    for (i, (stored, ts)) in records.iter().enumerate() {
        assert_eq!(stored.seq, i as u64 + 1);
        assert_eq!(stored.payload, vec![i as u8; 20]);
        assert_eq!(*ts, Some(1000 + i as u64));
    }
    drop(log);

    // Without the indexes, a full scan finds the same (and indexes the finished segments).
    for index in &indexes {
        std::fs::remove_file(index).unwrap();
    }
    let (log, recovery) = Log::open(dir.path(), small()).unwrap();
    assert_eq!(recovery.indexed_segments, 0);
    let total: u64 = segments
        .iter()
        .map(|s| std::fs::metadata(s).unwrap().len())
        .sum();
    assert_eq!(recovery.scanned_bytes, total);
    assert_eq!(served(&log), (records, with_headers));
    assert_eq!(files(dir.path(), "idx").len(), segments.len() - 1);
}

#[test]
fn a_bad_index_is_ignored_and_the_segment_scanned_with_identical_results() {
    let dir = tempfile::tempdir().unwrap();
    let indexes = forty(dir.path());
    let (log, _) = Log::open(dir.path(), small()).unwrap();
    let want = served(&log);
    let segments = files(dir.path(), "log").len();
    drop(log);
    let (first, last) = (&indexes[0], &indexes[indexes.len() - 1]);
    let good = std::fs::read(first).unwrap();
    let name = |p: &PathBuf| p.file_name().unwrap().to_owned();
    // Rewrites the index's checksum after a deliberate change, so only the checks after the
    // checksum can catch it.
    let resum = |mut bytes: Vec<u8>| {
        let n = bytes.len() - 4;
        let crc = crc32c::crc32c(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
        bytes
    };
    let records = u64::from_le_bytes(good[24..32].try_into().unwrap()) as usize;
    let mut damages: Vec<(String, PathBuf, Option<Vec<u8>>)> = Vec::new();
    for at in (0..good.len()).step_by(7).chain([good.len() - 1]) {
        let mut bad = good.clone();
        bad[at] ^= 0x20;
        damages.push((format!("bit flip at {at}"), first.clone(), Some(bad)));
    }
    for len in [0, 3, 40, good.len() / 2, good.len() - 1] {
        let bad = good[..len].to_vec();
        damages.push((format!("cut to {len}"), first.clone(), Some(bad)));
    }
    damages.push(("deleted".into(), first.clone(), None));
    // Another segment's index: intact, but for the wrong first sequence.
    let other = std::fs::read(&indexes[1]).unwrap();
    damages.push(("wrong first_seq".into(), first.clone(), Some(other)));
    // Intact checksums over impossible or untrue contents.
    let mut bad = good.clone();
    let sixth = u32::from_le_bytes(good[64..68].try_into().unwrap());
    bad[60..64].copy_from_slice(&(sixth + 1).to_le_bytes());
    damages.push((
        "offsets out of order".into(),
        first.clone(),
        Some(resum(bad)),
    ));
    let mut bad = good.clone();
    // The first sampled timestamp: record 0's, which opening checks against the record.
    let first_ts = 40 + 4 * records;
    bad[first_ts] ^= 1;
    damages.push(("first timestamp".into(), first.clone(), Some(resum(bad))));
    let mut bad = good.clone();
    bad[12] ^= 1;
    damages.push(("last record's crc".into(), first.clone(), Some(resum(bad))));
    let mut bad = good.clone();
    let covered = u64::from_le_bytes(bad[32..40].try_into().unwrap());
    bad[32..40].copy_from_slice(&(covered + 100).to_le_bytes());
    damages.push((
        "covered past the records".into(),
        first.clone(),
        Some(resum(bad)),
    ));
    let mut bad = good.clone();
    let flags = 40 + 4 * records + 8 * records.div_ceil(64);
    bad[flags] ^= 1;
    damages.push((
        "first record's header flag".into(),
        first.clone(),
        Some(resum(bad)),
    ));
    let last_good = std::fs::read(last).unwrap();
    let mut bad = last_good.clone();
    bad[9] ^= 1;
    damages.push((
        "version of the active segment's".into(),
        last.clone(),
        Some(bad),
    ));

    for (what, victim, bytes) in damages {
        let damaged = copy(dir.path());
        let victim = damaged.path().join(name(&victim));
        match bytes {
            Some(bytes) => std::fs::write(&victim, bytes).unwrap(),
            None => std::fs::remove_file(&victim).unwrap(),
        }
        let (log, recovery) = Log::open(damaged.path(), small()).unwrap();
        assert_eq!(served(&log), want, "{what}");
        assert!(recovery.truncations.is_empty(), "{what}");
        assert_eq!(recovery.indexed_segments, segments - 1, "{what}");
        let scanned = std::fs::metadata(victim.with_extension("log"))
            .unwrap()
            .len();
        assert_eq!(recovery.scanned_bytes, scanned, "{what}");
        drop(log);
        // A finished segment is indexed again; the active one's bad index is gone.
        let (_, recovery) = Log::open(damaged.path(), small()).unwrap();
        let again = if victim == damaged.path().join(name(last)) {
            segments - 1
        } else {
            segments
        };
        assert_eq!(recovery.indexed_segments, again, "{what}");
    }
}

#[test]
fn a_segment_shorter_than_its_index_is_scanned_and_its_torn_tail_cut() {
    let dir = tempfile::tempdir().unwrap();
    forty(dir.path());
    let segments = files(dir.path(), "log");
    let last = &segments[segments.len() - 1];
    let len = std::fs::metadata(last).unwrap().len();
    let no_index = copy(dir.path());
    for index in files(no_index.path(), "idx") {
        std::fs::remove_file(index).unwrap();
    }
    for d in [dir.path(), no_index.path()] {
        let file = d.join(last.file_name().unwrap());
        let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
        f.set_len(len - 10).unwrap();
    }
    let (log, recovery) = Log::open(dir.path(), small()).unwrap();
    let (plain, plain_recovery) = Log::open(no_index.path(), small()).unwrap();
    assert_eq!(recovery.indexed_segments, segments.len() - 1);
    assert_eq!(recovery.truncations.len(), 1);
    assert_eq!(recovery.truncations[0].reason, Corruption::Torn);
    assert_eq!(recovery.records, 39);
    assert_eq!(
        recovery.truncations[0].removed,
        plain_recovery.truncations[0].removed
    );
    assert_eq!(served(&log), served(&plain));
    assert_eq!(log.next_seq(), 40);
    // The rejected index was removed: it covered bytes that are gone.
    assert!(!last.with_extension("idx").exists());
}

#[test]
fn records_appended_after_the_index_are_verified_and_a_torn_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), Config::default()).unwrap();
    for i in 0..10u8 {
        log.append(&entry(&[i; 40])).unwrap();
    }
    log.close().unwrap();
    let file = dir.path().join("00000000000000000001.log");
    let covered = std::fs::metadata(&file).unwrap().len();
    // Reopened from the index, appended to, synced, then a crash before a clean close: the
    // index covers the first 10 records only.
    let (mut log, recovery) = Log::open(dir.path(), Config::default()).unwrap();
    assert_eq!((recovery.indexed_segments, recovery.scanned_bytes), (1, 0));
    for i in 10..15u8 {
        log.append(&entry(&[i; 40])).unwrap();
    }
    log.sync().unwrap();
    drop(log);
    let len = std::fs::metadata(&file).unwrap().len();
    assert_eq!(len, covered + 5 * 84);

    // Intact: the tail is decoded and kept.
    let (log, recovery) = Log::open(dir.path(), Config::default()).unwrap();
    assert_eq!(recovery.indexed_segments, 1);
    assert_eq!(recovery.scanned_bytes, len - covered);
    assert_eq!(recovery.records, 15);
    assert!(recovery.truncations.is_empty());
    assert_eq!(log.get(15).unwrap().unwrap().payload, vec![14u8; 40]);
    drop(log);

    // Torn: half of the last record made it to disk.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len - 20)
        .unwrap();
    let (log, recovery) = Log::open(dir.path(), Config::default()).unwrap();
    assert_eq!(recovery.indexed_segments, 1);
    assert_eq!(recovery.scanned_bytes, len - 20 - covered);
    assert_eq!(recovery.records, 14);
    assert_eq!(recovery.truncations.len(), 1);
    assert_eq!(recovery.truncations[0].reason, Corruption::Torn);
    assert_eq!(recovery.truncations[0].offset, 14 * 84);
    assert_eq!(recovery.truncations[0].removed, 84 - 20);
    assert_eq!(log.next_seq(), 15);
    assert!(log.get(15).unwrap().is_none());
    assert_eq!(log.get(14).unwrap().unwrap().payload, vec![13u8; 40]);

    // A flipped bit in the tail is caught by its checksum, not hidden by the index.
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[11 * 84 + 60] ^= 0x10;
    std::fs::write(&file, &bytes).unwrap();
    drop(log);
    let (mut log, recovery) = Log::open(dir.path(), Config::default()).unwrap();
    assert_eq!(recovery.indexed_segments, 1);
    assert_eq!(recovery.truncations[0].reason, Corruption::Checksum);
    assert_eq!(recovery.truncations[0].offset, 11 * 84);
    assert_eq!(log.next_seq(), 12);
    // The log goes on from the cut, and a clean close indexes all of it again.
    assert_eq!(log.append(&entry(b"after")).unwrap(), 12);
    log.close().unwrap();
    let (log, recovery) = Log::open(dir.path(), Config::default()).unwrap();
    assert_eq!((recovery.indexed_segments, recovery.scanned_bytes), (1, 0));
    assert_eq!(log.get(12).unwrap().unwrap().payload, b"after");
}

#[test]
fn removed_segments_take_their_indexes_with_them() {
    let dir = tempfile::tempdir().unwrap();
    forty(dir.path());
    let (mut log, _) = Log::open(dir.path(), small()).unwrap();
    log.purge(Some(20)).unwrap();
    let stems = |ext| -> Vec<PathBuf> {
        files(dir.path(), ext)
            .iter()
            .map(|p| p.with_extension(""))
            .collect()
    };
    let segments = stems("log");
    let indexes = stems("idx");
    assert!(indexes.iter().all(|i| segments.contains(i)), "{indexes:?}");
    assert_eq!(indexes.len(), segments.len());
    log.purge(None).unwrap();
    log.close().unwrap();
    assert!(files(dir.path(), "idx").is_empty());
    assert_eq!(files(dir.path(), "log").len(), 1);
    // An index left behind by a crash (its segment removed first) is removed on open.
    std::fs::write(dir.path().join("00000000000000000007.idx"), b"stale").unwrap();
    std::fs::write(dir.path().join("00000000000000000007.idx.tmp"), b"half").unwrap();
    let (log, _) = Log::open(dir.path(), small()).unwrap();
    assert_eq!(log.first_seq(), 41);
    assert!(files(dir.path(), "idx").is_empty());
    assert!(files(dir.path(), "tmp").is_empty());
}

#[test]
fn scan_with_headers_visits_only_records_with_headers() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small()).unwrap();
    let headers = b"NATS/1.0\r\nNats-Msg-Id: x\r\n\r\n";
    let append = |log: &mut Log, with: bool| {
        log.append(&Entry {
            subject: "s",
            headers: if with { headers } else { b"" },
            payload: &[1; 30],
            timestamp: 5,
        })
        .unwrap()
    };
    for _ in 0..30 {
        append(&mut log, false);
    }
    log.sync().unwrap();
    let mut visited = 0;
    log.scan_with_headers(0, |_| {
        visited += 1;
        true
    })
    .unwrap();
    assert_eq!(visited, 0);
    // Nothing is read when no record has headers: garbage in the files goes unnoticed.
    for segment in files(dir.path(), "log") {
        let len = std::fs::metadata(&segment).unwrap().len() as usize;
        std::fs::write(&segment, vec![0xee; len]).unwrap();
    }
    log.scan_with_headers(0, |_| panic!("nothing to visit"))
        .unwrap();
    assert!(log.get(1).is_err(), "the records were overwritten");

    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small()).unwrap();
    let mut want = Vec::new();
    for i in 1..=60u64 {
        let with = i % 7 == 0 || (20..24).contains(&i);
        let seq = append(&mut log, with);
        if with {
            want.push(seq);
        }
        if i == 50 {
            log.flush().unwrap();
        }
    }
    // Some in finished segments, some in the active one's file, 56 still in the buffer.
    let visit = |log: &Log, from: u64, stop_after: usize| {
        let mut seen = Vec::new();
        log.scan_with_headers(from, |view| {
            assert_eq!(view.entry.headers, headers);
            seen.push(view.seq);
            seen.len() < stop_after
        })
        .unwrap();
        seen
    };
    assert_eq!(visit(&log, 0, usize::MAX), want);
    assert_eq!(visit(&log, 21, usize::MAX), want[3..]);
    assert_eq!(visit(&log, 21, 3), want[3..6]);
    assert_eq!(visit(&log, 57, usize::MAX), Vec::<u64>::new());
    log.purge(Some(22)).unwrap();
    assert_eq!(visit(&log, 0, usize::MAX), want[4..]);
    // The same after reopening from the indexes, and from a full scan.
    log.close().unwrap();
    let (log, recovery) = Log::open(dir.path(), small()).unwrap();
    assert_eq!(recovery.scanned_bytes, 0);
    assert_eq!(visit(&log, 0, usize::MAX), want[4..]);
    drop(log);
    for index in files(dir.path(), "idx") {
        std::fs::remove_file(index).unwrap();
    }
    let (log, recovery) = Log::open(dir.path(), small()).unwrap();
    assert_eq!(recovery.indexed_segments, 0);
    assert_eq!(visit(&log, 0, usize::MAX), want[4..]);
}

/// Times map to sequences exactly with only every 64th timestamp in memory: many records a
/// segment, repeated timestamps, a purge into the middle of a segment, and after a reopen that
/// trusts the index files.
#[test]
fn seq_for_time_finds_the_first_message_at_or_after_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        segment_bytes: 16 * 1024,
        ..Config::default()
    };
    let ts = |seq: u64| (seq / 3) * 10;
    let (mut log, _) = Log::open(dir.path(), config.clone()).unwrap();
    for seq in 1..=1000u64 {
        log.append(&Entry {
            subject: "t",
            headers: b"",
            payload: &[0; 20],
            timestamp: ts(seq),
        })
        .unwrap();
        if seq % 300 == 0 {
            log.flush().unwrap();
        }
    }
    log.purge(Some(150)).unwrap();
    let check = |log: &Log| {
        for t in 0..=3400 {
            let want = (150..=1000).find(|&s| ts(s) >= t).unwrap_or(1001);
            assert_eq!(log.seq_for_time(t), want, "time {t}");
        }
        for seq in 150..=1000 {
            assert_eq!(log.timestamp(seq), Some(ts(seq)));
        }
        assert_eq!(log.timestamp(149), None);
    };
    check(&log);
    log.close().unwrap();
    let (log, recovery) = Log::open(dir.path(), config).unwrap();
    assert!(recovery.indexed_segments > 1, "{recovery:?}");
    assert_eq!(recovery.scanned_bytes, 0);
    check(&log);
}

#[test]
fn a_delete_that_outlived_its_record_never_deletes_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), Config::default()).unwrap();
    for i in 0..5u8 {
        log.append(&entry(&[i; 10])).unwrap();
    }
    log.sync().unwrap();
    assert!(log.delete(5, false).unwrap());
    log.sync().unwrap();
    drop(log);
    // A power loss that kept the delete but not the last record: cut record 5 off its
    // segment (30 bytes of header, the 14-byte subject and the 10-byte payload).
    let segment = files(dir.path(), "log").remove(0);
    let len = std::fs::metadata(&segment).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.set_len(len - 54).unwrap();
    for index in files(dir.path(), "idx") {
        std::fs::remove_file(index).unwrap();
    }
    let (mut log, _) = Log::open(dir.path(), Config::default()).unwrap();
    assert_eq!(log.next_seq(), 5);
    assert_eq!(log.len(), 4);
    // Sequence 5 goes to a new message, which the old delete does not touch, now or after
    // the next open.
    assert_eq!(log.append(&entry(b"new")).unwrap(), 5);
    assert_eq!(log.get(5).unwrap().unwrap().payload, b"new");
    log.close().unwrap();
    let (log, _) = Log::open(dir.path(), Config::default()).unwrap();
    assert_eq!(log.get(5).unwrap().unwrap().payload, b"new");
    assert_eq!(log.len(), 5);
}

#[test]
fn damaged_entries_of_the_deleted_file_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), Config::default()).unwrap();
    for i in 0..6u8 {
        log.append(&entry(&[i; 10])).unwrap();
    }
    log.delete(2, false).unwrap();
    log.delete(4, true).unwrap();
    log.close().unwrap();
    let path = dir.path().join("deleted");
    let mut bytes = std::fs::read(&path).unwrap();
    // Flip a bit in the first entry (seq 2): its checksum no longer matches.
    bytes[0] ^= 1;
    // And a torn entry at the end.
    bytes.extend_from_slice(&[7; 5]);
    std::fs::write(&path, &bytes).unwrap();
    let (log, _) = Log::open(dir.path(), Config::default()).unwrap();
    // The damaged delete is lost (seq 2 is served again), never a wrong one applied.
    assert!(log.get(2).unwrap().is_some());
    assert!(log.get(4).unwrap().is_none());
    assert_eq!(log.len(), 5);
}

#[test]
fn the_deleted_file_is_compacted_and_still_true() {
    // One subject, one message kept: every append deletes the one before, so the deleted
    // file outgrows what it must hold and is rewritten along the way.
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        max_msgs_per_subject: 1,
        ..Config::default()
    };
    let (mut log, _) = Log::open(dir.path(), config.clone()).unwrap();
    for i in 0..80_000u32 {
        log.append(&entry(&i.to_le_bytes())).unwrap();
        if i % 4096 == 0 {
            log.flush().unwrap();
        }
    }
    log.close().unwrap();
    let size = std::fs::metadata(dir.path().join("deleted")).unwrap().len();
    assert!(
        size < 40_000 * 16,
        "the file was never compacted: {size} bytes"
    );
    let (log, _) = Log::open(dir.path(), config).unwrap();
    assert_eq!(log.len(), 1, "the last message only");
    assert_eq!(log.first_seq(), 80_000);
    assert_eq!(
        log.get(80_000).unwrap().unwrap().payload,
        79_999u32.to_le_bytes()
    );
    assert!(log.get(79_999).unwrap().is_none());
}
