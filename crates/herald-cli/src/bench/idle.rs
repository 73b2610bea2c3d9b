//! Idle connections: the server's memory per connection.

use super::raw::RawConn;
use super::report::{Report, base};
use super::{BenchArgs, Result};

/// Opens `n` idle raw connections and measures the server's memory growth.
pub(super) async fn idle(args: &BenchArgs, n: usize) -> Result<Report> {
    let before = args
        .server_rss()
        .ok_or("--idle needs --server-pid (its memory is read from /proc)")?;
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut conn = RawConn::open(&args.client).await?;
        conn.round_trip(args.idle_timeout).await?;
        conns.push(conn);
    }
    let after = args
        .server_rss()
        .ok_or("cannot read the server's memory from /proc")?;
    let mut report = base(args, "idle");
    report.rss_per_idle_conn_kib = Some(after.saturating_sub(before) as f64 / n as f64);
    drop(conns);
    Ok(report)
}
