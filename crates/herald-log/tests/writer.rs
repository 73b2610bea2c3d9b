//! The writer: group commit on its thread, appends in place for a caller's small batch
//! ([`Writer::kick`]), completions in append order either way, and draining.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use herald_log::{Completions, Config, Entry, Fsync, IN_PLACE_MOST, Log, Writer};

const WAIT: Duration = Duration::from_secs(10);

fn entry(payload: &[u8]) -> Entry<'_> {
    Entry {
        subject: "s",
        headers: b"",
        payload,
        timestamp: 1,
    }
}

/// A writer over a new log in `dir` whose completions report (sequence, tag, the thread that
/// ran them).
fn reporting(
    dir: &std::path::Path,
    fsync: Fsync,
) -> (Writer<u32>, mpsc::Receiver<(u64, u32, ThreadId)>) {
    let (log, _) = Log::open(dir, Config::default()).unwrap();
    let (tx, rx) = mpsc::channel();
    let writer = Writer::spawn(log, fsync, move |batch: Completions<'_, u32>| {
        for (r, tag) in batch {
            tx.send((r.unwrap(), tag, std::thread::current().id()))
                .unwrap();
        }
    });
    (writer, rx)
}

/// Waits (at most a second) until every writer thread of this process sleeps, as Linux
/// reports it.
fn writers_asleep() {
    let deadline = Instant::now() + Duration::from_secs(1);
    let running = || {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter(|task| {
                let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
                let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
                // The state follows the parenthesised name.
                let state = stat
                    .rsplit(") ")
                    .next()
                    .and_then(|rest| rest.chars().next());
                comm.trim() == "herald-log-writ" && state != Some('S')
            })
            .count()
    };
    while running() > 0 && Instant::now() < deadline {
        std::thread::yield_now();
    }
}

#[test]
fn a_small_deferred_batch_is_appended_on_the_kicking_thread() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, rx) = reporting(dir.path(), Fsync::Never);
    for round in 0..3u32 {
        for i in 0..IN_PLACE_MOST as u32 {
            let owed = writer.append_deferred(&entry(&[1]), None, i).unwrap();
            assert_eq!(owed, i == 0, "a kick is owed for the first message only");
        }
        // Nothing is stored before the kick...
        assert!(rx.try_recv().is_err());
        writer.kick();
        // ...and everything is once it returns, stored by this thread, in order.
        let done: Vec<_> = rx.try_iter().collect();
        let first = u64::from(round) * IN_PLACE_MOST as u64 + 1;
        let expected: Vec<_> = (0..IN_PLACE_MOST as u32)
            .map(|i| (first + u64::from(i), i, std::thread::current().id()))
            .collect();
        assert_eq!(done, expected);
    }
    assert_eq!(writer.syncs(), 0);
}

#[test]
fn a_burst_wakes_the_writer_thread_without_a_kick() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, rx) = reporting(dir.path(), Fsync::Never);
    let n = IN_PLACE_MOST as u32 + 1;
    for i in 0..n {
        writer.append_deferred(&entry(&[1]), None, i).unwrap();
    }
    let done: Vec<_> = rx.iter().take(n as usize).collect();
    assert_eq!(done.len(), n as usize);
    assert!(done.iter().all(|d| d.2 != std::thread::current().id()));
    // A late kick finds nothing left to do.
    writer.kick();
    assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
}

#[test]
fn plain_appends_behind_a_deferred_one_are_stored_when_it_is_kicked() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, rx) = reporting(dir.path(), Fsync::Never);
    // The thread stored one message and went back to waiting (a thread still running when
    // the messages below are queued would find them without a wake-up).
    writer.append(&entry(&[1]), 99).unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap().1, 99);
    writers_asleep();
    // A reader's deferred message first, then plain appends (a source's copies, a publish
    // outside a reader's batch) that find the queue not empty and wake nobody.
    assert!(writer.append_deferred(&entry(&[1]), None, 0).unwrap());
    for i in 1..=IN_PLACE_MOST as u32 {
        writer.append(&entry(&[1]), i).unwrap();
    }
    writer.kick();
    let done: Vec<u32> = (0..=IN_PLACE_MOST)
        .map(|_| rx.recv_timeout(WAIT).expect("a message was never stored").1)
        .collect();
    assert_eq!(done, (0..=IN_PLACE_MOST as u32).collect::<Vec<_>>());
}

#[test]
fn a_kick_never_waits_for_a_reader_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, rx) = reporting(dir.path(), Fsync::Never);
    let reading = writer.log();
    assert!(writer.append_deferred(&entry(&[1]), None, 1).unwrap());
    writer.kick();
    assert!(rx.try_recv().is_err(), "the kick waited for the log");
    drop(reading);
    let (seq, _, thread) = rx.recv_timeout(WAIT).unwrap();
    assert_eq!(seq, 1);
    assert_ne!(thread, std::thread::current().id());
}

#[test]
fn under_fsync_always_a_kick_leaves_the_batch_and_its_fsync_to_the_thread() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, rx) = reporting(dir.path(), Fsync::Always);
    assert!(writer.append_deferred(&entry(&[1]), None, 7).unwrap());
    writer.kick();
    let (seq, tag, thread) = rx.recv_timeout(WAIT).unwrap();
    assert_eq!((seq, tag), (1, 7));
    assert_ne!(thread, std::thread::current().id());
    assert_eq!(writer.syncs(), 1, "acknowledged means on disk");
}

#[test]
fn what_is_appended_in_place_is_fsynced_by_the_thread_within_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, rx) = reporting(dir.path(), Fsync::Interval(Duration::from_millis(20)));
    // Appended here; the thread, asleep with nothing owed until now, is told to fsync.
    writer.append_deferred(&entry(&[1]), None, 1).unwrap();
    writer.kick();
    assert_eq!(rx.try_recv().unwrap().0, 1);
    let deadline = Instant::now() + WAIT;
    while writer.syncs() == 0 {
        assert!(
            Instant::now() < deadline,
            "the appended message was never fsynced"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn publishers_kicking_and_bursting_at_once_lose_nothing_and_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path(), Config::default()).unwrap();
    let (tx, rx) = mpsc::channel();
    let writer = Arc::new(Writer::spawn(log, Fsync::Never, move |batch| {
        for (r, tag) in batch {
            tx.send((r.unwrap(), tag)).unwrap();
        }
    }));
    // Each publisher queues bursts of 1 to 7 messages and kicks when owed.
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let writer = writer.clone();
            std::thread::spawn(move || {
                let mut i = 0u32;
                while i < 500 {
                    let burst = 1 + (i % 7);
                    let mut owed = false;
                    for _ in 0..burst.min(500 - i) {
                        owed |= writer
                            .append_deferred(&entry(&i.to_le_bytes()), None, t << 16 | i)
                            .unwrap();
                        i += 1;
                    }
                    if owed {
                        writer.kick();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut done: Vec<(u64, u32)> = Vec::new();
    while done.len() < 2000 {
        done.push(rx.recv_timeout(WAIT).expect("a message was never stored"));
    }
    assert!(writer.drain(WAIT));
    let seqs: Vec<u64> = done.iter().map(|d| d.0).collect();
    assert_eq!(
        seqs,
        (1..=2000).collect::<Vec<_>>(),
        "completions in append order"
    );
    let mut last = [None::<u32>; 4];
    for (seq, tag) in done {
        let (t, i) = ((tag >> 16) as usize, tag & 0xffff);
        assert_eq!(
            writer.log().get(seq).unwrap().unwrap().payload,
            i.to_le_bytes()
        );
        assert!(last[t].is_none_or(|prev| prev < i));
        last[t] = Some(i);
    }
}

#[test]
fn the_writer_acknowledges_only_what_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path(), Config::default()).unwrap();
    let (tx, rx) = mpsc::channel();
    let done = move |batch: herald_log::Completions<'_, (u8, u32)>| {
        for (r, (t, i)) in batch {
            tx.send((t, i, r.unwrap())).unwrap();
        }
    };
    let writer = std::sync::Arc::new(Writer::spawn(log, Fsync::Always, done));
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let writer = writer.clone();
            std::thread::spawn(move || {
                for i in 0..250u32 {
                    let entry = Entry {
                        subject: &format!("t.{t}"),
                        headers: b"",
                        payload: &i.to_le_bytes(),
                        timestamp: 1,
                    };
                    writer.append(&entry, (t, i)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut acks: Vec<(u8, u32, u64)> = rx.iter().take(1000).collect();
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

#[test]
fn the_writer_indexes_the_log_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path(), Config::default()).unwrap();
    let (tx, rx) = mpsc::channel();
    let writer = Writer::spawn(log, Fsync::Never, move |batch| {
        for (r, ()) in batch {
            tx.send(r.unwrap()).unwrap();
        }
    });
    for i in 0..10u8 {
        writer.append(&entry(&[i]), ()).unwrap();
    }
    assert_eq!(rx.iter().take(10).last(), Some(10));
    drop(writer);
    let (_, recovery) = Log::open(dir.path(), Config::default()).unwrap();
    assert_eq!((recovery.records, recovery.indexed_segments), (10, 1));
    assert_eq!(recovery.scanned_bytes, 0);
}

#[test]
fn draining_the_writer_waits_for_every_completion_queued_before() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path(), Config::default()).unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let counted = done.clone();
    let writer = Writer::spawn(log, Fsync::Always, move |batch| {
        for (r, ()) in batch {
            counted.fetch_max(r.unwrap(), Ordering::SeqCst);
        }
    });
    assert!(writer.drain(WAIT), "nothing queued");
    for round in 1..=20u64 {
        for i in 0..50u8 {
            writer.append(&entry(&[i]), ()).unwrap();
        }
        assert!(writer.drain(WAIT));
        // Every completion ran, and the log holds every message.
        assert_eq!(done.load(Ordering::SeqCst), round * 50);
        assert_eq!(writer.log().next_seq(), round * 50 + 1);
    }
}
