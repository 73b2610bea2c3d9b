//! Publish/subscribe with async-nats on both sides, and what the tasks of a run share.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use tokio::task::JoinHandle;

use super::measure::{Flow, REPORT_EVERY, histogram, record, split, stamp};
use super::report::{Latency, Report, base, progress};
use super::warmup::{WARMUP_TIMEOUT, WarmUp};
use super::{BenchArgs, Result};
use crate::client::round_trip;

/// What the tasks of one publish/subscribe run share.
pub(super) struct Run {
    pub(super) subject: String,
    /// What publishers publish to, in turn: SUBJECT, or SUBJECT.0 .. with --subjects.
    pub(super) subjects: Vec<String>,
    /// What subscribers subscribe to: SUBJECT, or SUBJECT.> with --subjects.
    pub(super) pattern: String,
    pub(super) size: usize,
    /// Messages each subscriber expects.
    pub(super) msgs: u64,
    /// How long a reader or a paced publisher waits for progress before giving up.
    pub(super) idle: Duration,
    /// Origin of the send times stamped into payloads.
    pub(super) base_time: Instant,
    pub(super) flow: Flow,
    pub(super) warm: WarmUp,
    pub(super) bar: ProgressBar,
}

impl Run {
    pub(super) fn new(args: &BenchArgs) -> Arc<Run> {
        Arc::new(Run {
            subject: args.subject.clone(),
            subjects: match args.subjects {
                1 => vec![args.subject.clone()],
                n => (0..n).map(|i| format!("{}.{i}", args.subject)).collect(),
            },
            pattern: match args.subjects {
                1 => args.subject.clone(),
                _ => format!("{}.>", args.subject),
            },
            size: args.size,
            msgs: args.msgs,
            idle: args.idle_timeout,
            base_time: Instant::now(),
            flow: Flow::new(args.subs, args.size),
            warm: WarmUp::new(args.pubs, args.subs, args.size),
            bar: progress(args.msgs * args.subs.max(1) as u64, "messages", args.json),
        })
    }

    /// Moves the progress bar: messages received when there are subscribers, else `sent`.
    pub(super) fn show_progress(&self, sent: u64) {
        self.bar.set_position(if self.flow.subs > 0 {
            self.flow.total_received()
        } else {
            sent
        });
    }
}

/// Publish/subscribe with async-nats on both sides.
pub(super) async fn pubsub_nats(args: &BenchArgs) -> Result<Report> {
    let run = Run::new(args);
    let mut subscribers = Vec::new();
    for i in 0..args.subs {
        subscribers.push(nats_subscriber(args, i, &run).await?);
    }
    let mut clients = Vec::new();
    for _ in 0..args.pubs {
        let client = args.client.connect("herald bench pub").await;
        clients.push(client.map_err(|e| e.to_string())?);
    }
    let warm_ups = clients.iter().enumerate().map(|(i, client)| {
        let (subject, payload) = (run.subjects[0].clone(), run.warm.payload(i));
        run.warm.send_until_heard(async move || {
            client.publish(subject.clone(), payload.clone()).await?;
            Ok(client.flush().await?)
        })
    });
    futures::future::try_join_all(warm_ups).await?;
    let start = Instant::now();
    let publishers: Vec<_> = clients
        .into_iter()
        .zip(split(args.msgs, args.pubs))
        .map(|(client, count)| tokio::spawn(nats_publisher(client, count, run.clone())))
        .collect();
    for p in publishers {
        p.await??;
    }
    let published = start.elapsed();
    finish_pubsub(args, start, published, subscribers, &run.bar).await
}

/// Connects subscriber `i` with async-nats, subscribes, and spawns its reader.
pub(super) async fn nats_subscriber(
    args: &BenchArgs,
    i: usize,
    run: &Arc<Run>,
) -> Result<JoinHandle<SubResult>> {
    let client_args = args.sub_client(i);
    let options = client_args
        .options("herald bench sub")
        .subscription_capacity(1 << 20);
    let client = client_args
        .connect_with(options)
        .await
        .map_err(|e| e.to_string())?;
    let sub = client.subscribe(run.pattern.clone()).await?;
    round_trip(&client).await?;
    let run = run.clone();
    Ok(tokio::spawn(async move {
        let result = read_stamped(&run, sub, true).await;
        drop(client);
        result
    }))
}

/// Reads stamped messages until the run's count, or until the run's idle limit passes
/// without one; records their latency and reports progress. With `warm_up`, the warm-up's
/// messages are told apart and skipped (and the first may take the warm-up's longer wait).
pub(super) async fn read_stamped(
    run: &Run,
    mut sub: impl futures::Stream<Item = async_nats::Message> + Unpin,
    warm_up: bool,
) -> SubResult {
    let mut heard = warm_up.then(|| run.warm.listener());
    let mut hist = histogram();
    let mut got = 0;
    while got < run.msgs {
        let wait = match &heard {
            Some(h) if !h.is_warm() => WARMUP_TIMEOUT,
            _ => run.idle,
        };
        let Ok(Some(msg)) = tokio::time::timeout(wait, sub.next()).await else {
            break;
        };
        if let Some(h) = &mut heard
            && h.note(&run.warm, &msg.payload)
        {
            continue;
        }
        record(&mut hist, &msg.payload, run.base_time);
        got += 1;
        if got.is_multiple_of(REPORT_EVERY) {
            run.flow.received(REPORT_EVERY);
        }
    }
    run.flow.received(got % REPORT_EVERY);
    (got, hist, Instant::now())
}

/// Publishes `count` stamped messages with async-nats, paced by the run's flow, and waits
/// until the server has handled them.
pub(super) async fn nats_publisher(
    client: async_nats::Client,
    count: u64,
    run: Arc<Run>,
) -> Result {
    let mut payload = vec![0u8; run.size];
    for i in 0..count {
        if i % 256 == 0 {
            run.flow.admit(256.min(count - i), run.idle).await?;
        }
        stamp(&mut payload, run.base_time);
        let subject = &run.subjects[i as usize % run.subjects.len()];
        client
            .publish(subject.clone(), Bytes::copy_from_slice(&payload))
            .await?;
        if i % 4096 == 0 {
            run.show_progress(i);
        }
    }
    client.flush().await?;
    round_trip(&client).await?;
    Ok(())
}

pub(super) type SubResult = (u64, Histogram<u64>, Instant);

pub(super) async fn finish_pubsub(
    args: &BenchArgs,
    start: Instant,
    published: Duration,
    subscribers: Vec<JoinHandle<SubResult>>,
    bar: &ProgressBar,
) -> Result<Report> {
    let mut report = base(args, "pubsub");
    report.publish_rate = args.msgs as f64 / published.as_secs_f64();
    let mut hist = histogram();
    let mut last = start + published;
    for s in subscribers {
        let (got, h, done) = s.await?;
        report.received += got;
        let _ = hist.add(&h);
        last = last.max(done);
    }
    bar.finish_and_clear();
    report.expected = args.msgs * args.subs as u64;
    if args.subs > 0 {
        let secs = (last - start).as_secs_f64();
        report.deliver_rate = report.received as f64 / secs;
        report.deliver_mb_s = report.deliver_rate * args.size as f64 / 1e6;
        report.latency_us = Latency::from(&hist);
    }
    Ok(report)
}
