//! `--ping`: the floor under every one-at-a-time row. Round trips of the cheapest exchange a
//! server answers, one at a time: with `--raw`, `PING` and its `PONG`; with async-nats, a
//! message to the client's own subscription (what a request costs a server that does nothing
//! but route it back).
//!
//! A server cannot answer a request faster than it answers this, so a 1-in-flight row's rate
//! over the other server's floor bounds the ratio any server could reach on this machine.

use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;

use super::measure::histogram;
use super::raw::RawConn;
use super::report::{Latency, Report, base, progress};
use super::{BenchArgs, Result};

/// Runs `--msgs` round trips, one at a time.
pub(super) async fn ping(args: &BenchArgs) -> Result<Report> {
    let bar = progress(args.msgs, "round trips", args.json);
    let mut hist = histogram();
    let start;
    if args.raw {
        let mut conn = RawConn::open(&args.client).await?;
        conn.round_trip(args.idle_timeout).await?;
        start = Instant::now();
        for i in 0..args.msgs {
            let sent = Instant::now();
            conn.round_trip(args.idle_timeout).await?;
            let _ = hist.record(sent.elapsed().as_micros() as u64);
            if i.is_multiple_of(4096) {
                bar.set_position(i);
            }
        }
    } else {
        let client = args.client.connect("herald bench ping").await;
        let client = client.map_err(|e| e.to_string())?;
        let inbox = client.new_inbox();
        let mut sub = client.subscribe(inbox.clone()).await?;
        let payload = Bytes::from(vec![0u8; args.size]);
        let mut next = async || -> Result {
            client.publish(inbox.clone(), payload.clone()).await?;
            match tokio::time::timeout(args.idle_timeout, sub.next()).await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err("the subscription ended".into()),
                Err(_) => Err(format!("no message back within {:?}", args.idle_timeout).into()),
            }
        };
        // The first also waits for the subscription to be in place.
        next().await?;
        start = Instant::now();
        for i in 0..args.msgs {
            let sent = Instant::now();
            next().await?;
            let _ = hist.record(sent.elapsed().as_micros() as u64);
            if i.is_multiple_of(4096) {
                bar.set_position(i);
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let mut report = base(args, "ping");
    report.subs = 0;
    report.publish_rate = args.msgs as f64 / elapsed;
    report.received = args.msgs;
    report.expected = args.msgs;
    report.latency_us = Latency::from(&hist);
    Ok(report)
}
