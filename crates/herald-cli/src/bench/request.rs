//! Request/reply: requesters that each wait for every reply, responders in a queue group.

use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use tokio::task::JoinHandle;

use super::measure::{histogram, split};
use super::report::{Latency, Report, base, progress};
use super::warmup::first_answer;
use super::{BenchArgs, Result};
use crate::client::round_trip;

/// Request/reply with async-nats: responders in one queue group (taking the `--sub-server`s in
/// turn), requesters one request at a time.
pub(super) async fn request(args: &BenchArgs) -> Result<Report> {
    if args.subs == 0 {
        return Err("--request needs at least one responder (--subs)".into());
    }
    let mut responders = Vec::new();
    for i in 0..args.subs {
        responders.push(responder(args, i).await?);
    }
    let mut clients = Vec::new();
    for _ in 0..args.pubs {
        let client = args.client.connect("herald bench req").await;
        let client = client.map_err(|e| e.to_string())?;
        first_answer(&client, &args.subject).await?;
        clients.push(client);
    }
    let bar = progress(args.msgs, "requests", args.json);
    let start = Instant::now();
    let mut requesters = Vec::new();
    for (client, count) in clients.into_iter().zip(split(args.msgs, args.pubs)) {
        let (subject, payload, bar) = (
            args.subject.clone(),
            Bytes::from(vec![0u8; args.size]),
            bar.clone(),
        );
        requesters.push(tokio::spawn(async move {
            let mut hist = histogram();
            for _ in 0..count {
                let sent = Instant::now();
                client.request(subject.clone(), payload.clone()).await?;
                let _ = hist.record(sent.elapsed().as_micros() as u64);
                bar.inc(1);
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(hist)
        }));
    }
    let mut hist = histogram();
    for r in requesters {
        let _ = hist.add(&r.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    for r in responders {
        r.abort();
    }
    let mut report = base(args, "request");
    report.publish_rate = args.msgs as f64 / elapsed;
    report.deliver_rate = report.publish_rate;
    report.deliver_mb_s = report.deliver_rate * args.size as f64 / 1e6;
    report.received = args.msgs;
    report.expected = args.msgs;
    report.latency_us = Latency::from(&hist);
    Ok(report)
}

/// Connects responder `i`, joins the queue group, and spawns its echo loop.
pub(super) async fn responder(args: &BenchArgs, i: usize) -> Result<JoinHandle<()>> {
    let client = args.sub_client(i).connect("herald bench reply").await;
    let client = client.map_err(|e| e.to_string())?;
    let mut sub = client
        .queue_subscribe(args.subject.clone(), "herald-bench".into())
        .await?;
    round_trip(&client).await?;
    Ok(tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Some(reply) = msg.reply {
                let _ = client.publish(reply, msg.payload).await;
            }
        }
    }))
}
