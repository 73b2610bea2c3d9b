//! Measuring: send times stamped into payloads and latency histograms, the flow control that
//! keeps publishers near their subscribers, and the server's CPU and memory from `/proc`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Notify;

use super::Result;

/// Nanoseconds since `base`, written into the first 8 bytes of a payload.
pub(super) fn stamp(payload: &mut [u8], base: Instant) {
    if payload.len() >= 8 {
        let now = base.elapsed().as_nanos() as u64;
        payload[..8].copy_from_slice(&now.to_le_bytes());
    }
}

/// Records the latency of a stamped payload, in microseconds.
pub(super) fn record(hist: &mut Histogram<u64>, payload: &[u8], base: Instant) {
    if let Some(sent) = payload.get(..8).and_then(|b| b.try_into().ok()) {
        let sent = u64::from_le_bytes(sent);
        let now = base.elapsed().as_nanos() as u64;
        let _ = hist.record(now.saturating_sub(sent) / 1000);
    }
}

pub(super) fn histogram() -> Histogram<u64> {
    // 1 µs .. 1000 s, 3 significant digits.
    Histogram::new_with_bounds(1, 1_000_000_000, 3).expect("constant bounds are valid")
}

/// Keeps publishers at most `window` messages ahead of the average subscriber, so a run
/// measures what a server sustains, not how fast an outbound buffer fills before the server
/// cuts a reader off as a slow consumer. Subscribers report progress in steps of
/// [`REPORT_EVERY`] messages.
pub(super) struct Flow {
    pub(super) published: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) subs: u64,
    pub(super) window: u64,
    pub(super) progress: Notify,
}

/// How many messages a subscriber receives between two progress reports.
pub(super) const REPORT_EVERY: u64 = 1024;

impl Flow {
    pub(super) fn new(subs: usize, size: usize) -> Flow {
        // About 8 MiB in flight per subscriber, and well above the reporting step.
        let window = (8 * 1024 * 1024 / (size as u64 + 32)).max(8 * REPORT_EVERY);
        Flow {
            published: AtomicU64::new(0),
            received: AtomicU64::new(0),
            subs: subs as u64,
            window,
            progress: Notify::new(),
        }
    }

    pub(super) fn received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
        self.progress.notify_waiters();
    }

    pub(super) fn total_received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits until `n` more messages may be published.
    pub(super) async fn admit(&self, n: u64, idle: Duration) -> Result {
        let published = self.published.fetch_add(n, Ordering::Relaxed) + n;
        if self.subs == 0 {
            return Ok(());
        }
        loop {
            let notified = self.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if published <= self.received.load(Ordering::Relaxed) / self.subs + self.window {
                return Ok(());
            }
            if tokio::time::timeout(idle, notified).await.is_err() {
                return Err(
                    "subscribers stopped receiving (disconnected as slow consumers?)".into(),
                );
            }
        }
    }
}

pub(super) fn split(total: u64, parts: usize) -> Vec<u64> {
    let parts = parts as u64;
    (0..parts)
        .map(|i| total / parts + u64::from(i < total % parts))
        .collect()
}

/// CPU times at the start of a measured span: the server's (all of it, and in the kernel) and
/// this process's own.
pub(super) struct CpuMark {
    at: Instant,
    server: Option<u64>,
    server_kernel: Option<u64>,
    own: Option<u64>,
}

impl CpuMark {
    pub(super) fn now(args: &super::BenchArgs) -> CpuMark {
        CpuMark {
            at: Instant::now(),
            server: args.server_cpu(),
            server_kernel: args.server_kernel(),
            own: cpu_ticks(std::process::id()),
        }
    }

    /// Seconds since the mark.
    pub(super) fn elapsed(&self) -> f64 {
        self.at.elapsed().as_secs_f64()
    }

    /// Puts the CPU used since the mark into `report`, in cores (a mode with an untimed
    /// prefill calls it at the end of its timed part, so that the prefill does not count).
    pub(super) fn record(&self, args: &super::BenchArgs, report: &mut super::report::Report) {
        let wall = self.at.elapsed().as_secs_f64();
        let cores = |before: Option<u64>, after: Option<u64>| {
            Some(after?.saturating_sub(before?) as f64 / CLOCK_TICKS / wall)
        };
        report.server_cpu_cores = cores(self.server, args.server_cpu());
        report.server_kernel_cores = cores(self.server_kernel, args.server_kernel());
        report.client_cpu_cores = cores(self.own, cpu_ticks(std::process::id()));
        report.cpu_timed = true;
    }
}

/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux).
pub(super) const CLOCK_TICKS: f64 = 100.0;

/// utime + stime of a process, in clock ticks.
pub(super) fn cpu_ticks(pid: u32) -> Option<u64> {
    let (utime, stime) = user_and_kernel_ticks(pid)?;
    Some(utime + stime)
}

/// stime of a process (its time in the kernel: system calls, and the network stack's work
/// they do), in clock ticks.
pub(super) fn kernel_ticks(pid: u32) -> Option<u64> {
    Some(user_and_kernel_ticks(pid)?.1)
}

fn user_and_kernel_ticks(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime, stime))
}

/// Resident memory of a process, KiB.
pub(super) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
