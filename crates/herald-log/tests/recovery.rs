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

#[test]
fn the_writer_acknowledges_only_what_is_stored() {
    use herald_log::{Fsync, Owned, Writer};
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path(), Config::default()).unwrap();
    let writer = std::sync::Arc::new(Writer::spawn(log, Fsync::Always));
    let (tx, rx) = std::sync::mpsc::channel();
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let writer = writer.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..250u32 {
                    let tx = tx.clone();
                    let msg = Owned {
                        subject: format!("t.{t}"),
                        headers: Vec::new(),
                        payload: i.to_le_bytes().to_vec(),
                        timestamp: 1,
                    };
                    writer.append(msg, move |r| tx.send((t, i, r.unwrap())).unwrap());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop(tx);
    let mut acks: Vec<(u8, u32, u64)> = rx.iter().collect();
    assert_eq!(acks.len(), 1000);
    // Each acknowledged sequence holds what its publisher sent; every publisher's order holds.
    acks.sort_by_key(|a| a.2);
    let seqs: Vec<u64> = acks.iter().map(|a| a.2).collect();
    assert_eq!(seqs, (1..=1000).collect::<Vec<_>>());
    drop(std::sync::Arc::into_inner(writer).expect("threads done"));
    let (log, recovery) = Log::open(dir.path(), Config::default()).unwrap();
    assert_eq!(recovery.records, 1000);
    let mut last = [None::<u32>; 4];
    for (t, i, seq) in acks {
        let stored = log.get(seq).unwrap().unwrap();
        assert_eq!(stored.subject, format!("t.{t}"));
        assert_eq!(stored.payload, i.to_le_bytes());
        assert!(last[t as usize].is_none_or(|prev| prev < i));
        last[t as usize] = Some(i);
    }
}
