//! Publishers waiting for durable acks (fsync always), one at a time each, through one
//! writer: shows how many fsyncs group commit saves.
//!
//! ```sh
//! cargo run --release -p herald-log --example group_commit [PUBLISHERS] [MESSAGES_EACH]
//! ```

use std::sync::Arc;
use std::time::Instant;

use herald_log::{Config, Entry, Fsync, Log, Writer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let publishers: usize = args.next().map_or(Ok(16), |a| a.parse())?;
    let each: usize = args.next().map_or(Ok(500), |a| a.parse())?;
    let dir = std::env::temp_dir().join(format!("herald-gc-{}", std::process::id()));
    let (log, _) = Log::open(&dir, Config::default())?;
    // Each publish's tag is the channel its publisher waits on.
    let done = |batch: herald_log::Completions<'_, std::sync::mpsc::Sender<bool>>| {
        for (r, tx) in batch {
            let _ = tx.send(r.is_ok());
        }
    };
    let writer = Arc::new(Writer::spawn(log, Fsync::Always, done));
    let started = Instant::now();
    let threads: Vec<_> = (0..publishers)
        .map(|_| {
            let writer = writer.clone();
            std::thread::spawn(move || {
                for _ in 0..each {
                    let (tx, rx) = std::sync::mpsc::channel();
                    let entry = Entry {
                        subject: "orders",
                        headers: b"",
                        payload: &[0; 128],
                        timestamp: 0,
                    };
                    assert!(writer.append(&entry, tx).is_ok(), "the writer runs");
                    // Each publisher waits for its ack before the next publish.
                    assert_eq!(rx.recv(), Ok(true));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "publisher panicked")?;
    }
    let took = started.elapsed();
    let total = publishers * each;
    println!(
        "{total} durable publishes from {publishers} publishers in {took:?} ({:.0}/s) with {} fsyncs",
        total as f64 / took.as_secs_f64(),
        writer.syncs()
    );
    drop(writer);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
