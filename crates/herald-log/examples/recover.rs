//! Writes N small messages (default 1,000,000 of 16 bytes) to a fresh log in a temporary
//! directory, then times reopening it, best and median of R runs (default 7) each:
//!
//! - after a clean close ([`Log::close`]): recovery trusts the segment indexes and decodes
//!   nothing;
//! - after a crash (synced, not closed; the index files removed): recovery decodes and
//!   checksums every record;
//!
//! and, on the opened log, a [`Log::scan`] of everything and a [`Log::scan_with_headers`] (no
//! message has headers, so it reads nothing).
//!
//! ```sh
//! cargo run --release -p herald-log --example recover [N] [R]
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use herald_log::{Config, Entry, Log, Recovery};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let runs: usize = args.next().map_or(Ok(7), |a| a.parse())?;
    let dir = std::env::temp_dir().join(format!("herald-recover-{}", std::process::id()));
    let payload = [7u8; 16];
    let started = Instant::now();
    {
        let (mut log, _) = Log::open(&dir, Config::default())?;
        for i in 0..n {
            log.append(&Entry {
                subject: "orders.created",
                headers: b"",
                payload: &payload,
                timestamp: i,
            })?;
            if i % 4096 == 4095 {
                log.flush()?;
            }
        }
        log.close()?;
    }
    println!("wrote {n} messages in {:?}", started.elapsed());

    let clean = time_open(&dir, runs)?;
    report("reopen after a clean close", &clean);
    let (log, _) = Log::open(&dir, Config::default())?;
    let scan = time(runs, || {
        let mut seen = 0u64;
        log.scan(0, |_| {
            seen += 1;
            true
        })
        .map(|()| assert_eq!(seen, n))
    })?;
    println!("  scan of every message: {}", summary(&scan));
    let headers = time(runs, || {
        let mut seen = 0u64;
        log.scan_with_headers(0, |_| {
            seen += 1;
            true
        })
        .map(|()| assert_eq!(seen, 0))
    })?;
    println!(
        "  scan_with_headers (none have headers): {}",
        summary(&headers)
    );
    drop(log);

    for item in std::fs::read_dir(&dir)? {
        let path = item?.path();
        if path.extension().is_some_and(|e| e == "idx") {
            std::fs::remove_file(path)?;
        }
    }
    let crashed = time_open(&dir, runs)?;
    report("reopen after a crash (no index)", &crashed);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Opens the log in `dir` `runs` times; the times and the last recovery.
fn time_open(dir: &Path, runs: usize) -> Result<(Vec<Duration>, Recovery), herald_log::Error> {
    let mut recovery = Recovery::default();
    let times = time(runs, || {
        let (log, found) = Log::open(dir, Config::default())?;
        recovery = found;
        drop(log);
        Ok(())
    })?;
    Ok((times, recovery))
}

fn time(
    runs: usize,
    mut f: impl FnMut() -> Result<(), herald_log::Error>,
) -> Result<Vec<Duration>, herald_log::Error> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        f()?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times)
}

fn summary(times: &[Duration]) -> String {
    format!("best {:?}, median {:?}", times[0], times[times.len() / 2])
}

fn report(what: &str, (times, recovery): &(Vec<Duration>, Recovery)) {
    println!(
        "{what}: {} ({} records, {} segments, {} indexed, {} bytes decoded)",
        summary(times),
        recovery.records,
        recovery.segments,
        recovery.indexed_segments,
        recovery.scanned_bytes
    );
}
