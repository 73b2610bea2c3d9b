//! Writes N small messages (default 1,000,000 of 16 bytes) to a fresh log in a temporary
//! directory, then times reopening it (recovery verifies every record's checksum).
//!
//! ```sh
//! cargo run --release -p herald-log --example recover [N]
//! ```

use std::time::Instant;

use herald_log::{Config, Entry, Log};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(Ok(1_000_000), |a| a.parse())?;
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
        log.sync()?;
    }
    let wrote = started.elapsed();
    let started = Instant::now();
    let (log, recovery) = Log::open(&dir, Config::default())?;
    let recovered = started.elapsed();
    println!(
        "wrote {n} messages in {wrote:?}; recovered {} records from {} segments ({} bytes) in {recovered:?}",
        recovery.records,
        recovery.segments,
        log.bytes()
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
