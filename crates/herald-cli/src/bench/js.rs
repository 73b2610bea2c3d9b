//! The JetStream modes of `herald bench`, with async-nats's JetStream API (the same client
//! against herald and nats-server):
//!
//! - `--mode js-pub`: publishes `--msgs` messages to a fresh file-storage stream and waits for
//!   each publish ack, with at most `--inflight` publishes awaiting their ack (1: one at a
//!   time). Only acknowledged publishes count; the clock runs from the first publish to the
//!   last ack, and the stream must hold every message afterwards.
//! - `--mode js-consume`: fills a fresh stream with `--msgs` messages (windowed publishes,
//!   not timed), then a durable pull consumer fetches them in batches of `--batch` and acks
//!   each one (explicit ack, not double ack). The clock runs from the first fetch to the last
//!   ack (flushed to the server); the consumer must have no ack pending afterwards.
//!
//! - `--mode js-push`: fills a fresh stream the same way, then a push consumer (no acks; with
//!   `--flow-control`, flow control and 1 s heartbeats) delivers them to async-nats's push
//!   subscription; the clock runs from the subscription to the last message.
//!   With `--raw`, the raw client reads the deliveries (and answers flow control).
//! - `--mode js-ordered`: the same with an ordered push consumer (flow control, heartbeats,
//!   recreated by the client after a gap), as "read the whole stream" helpers use. With
//!   `--raw`, the raw client reads the deliveries of the same ordered consumer config (it
//!   answers flow control, and does not check the order: the server's side of the row).
//! - `--mode kv-put` / `--mode kv-get`: see [`super::kv`].
//!
//! With `--raw`, the timed part runs on the raw client instead (pre-encoded frames, header-only
//! parsing), so that the server rather than async-nats is the bottleneck; setup, prefill and
//! the checks afterwards stay with async-nats:
//!
//! - `js-pub --raw`: one connection subscribes `_INBOX.herald-bench.*` and keeps `--inflight`
//!   publishes, each with its own reply subject there, awaiting their ack; an ack that is not a
//!   publish ack of the bench stream fails the run.
//! - `js-consume --raw`: pull requests (`{"batch": N, "expires": ..}`) on
//!   `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`; each batch's acks (`PUB <ack subject> 0`)
//!   are written together with the next pull request.
//!
//! The stream (`--stream`, capturing the bench subject) is deleted first if it exists, and
//! after the run unless `--keep` is given.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, pull, push};
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures::StreamExt;
use hdrhistogram::Histogram;
use indicatif::ProgressBar;

use herald_proto::ServerOp;

use super::measure::{CpuMark, histogram};
use super::raw::RawConn;
use super::report::{Latency, Report, base, progress};
use super::{BenchArgs, Result};

/// What a JetStream run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JsMode {
    /// Publish with acks, `--inflight` at a time.
    JsPub,
    /// Pull-consume a prefilled stream in batches, acking each message.
    JsConsume,
    /// Push-consume a prefilled stream (no acks).
    JsPush,
    /// Read a prefilled stream with an ordered push consumer.
    JsOrdered,
    /// Key-value puts (history 1), `--inflight` awaiting their ack.
    KvPut,
    /// Key-value gets of a filled bucket, `--inflight` at once.
    KvGet,
}

/// How long a JetStream API call or a publish ack may take before the run fails.
const API_TIMEOUT: Duration = Duration::from_secs(30);

/// The durable consumer of `--mode js-consume`.
const CONSUMER: &str = "herald-bench";

/// Runs one JetStream mode.
pub(super) async fn run(args: &BenchArgs, mode: JsMode) -> Result<Report> {
    if args.pubs != 1 {
        return Err("the JetStream modes use one connection (--pubs 1)".into());
    }
    if args.batch == 0 {
        return Err("--batch must be at least 1".into());
    }
    let client = args.client.connect("herald bench js").await;
    let client = client.map_err(|e| e.to_string())?;
    let js = jetstream::ContextBuilder::new()
        .timeout(API_TIMEOUT.max(args.idle_timeout))
        .max_ack_inflight(args.inflight())
        .build(client.clone());
    if matches!(mode, JsMode::KvPut | JsMode::KvGet) {
        return super::kv::run(&js, args, mode == JsMode::KvGet).await;
    }
    let stream = fresh_stream(&js, args).await?;
    let result = match (mode, args.raw) {
        (JsMode::JsPub, false) => publish(&js, args).await,
        (JsMode::JsPub, true) => publish_raw(&js, args).await,
        (JsMode::JsConsume, raw) => consume(&client, &js, stream, args, raw).await,
        (JsMode::JsPush | JsMode::JsOrdered, false) => {
            push_consume(&client, &js, stream, args, mode == JsMode::JsOrdered).await
        }
        (JsMode::JsPush | JsMode::JsOrdered, true) => {
            push_raw(&js, stream, args, mode == JsMode::JsOrdered).await
        }
        _ => Err("--raw is for js-pub, js-consume, js-push and js-ordered".into()),
    };
    if !args.keep {
        let deleted = js.delete_stream(&args.stream).await;
        // A failed run reports its own error; a delete failure only matters after success.
        if let (Ok(_), Err(err)) = (&result, deleted) {
            return Err(format!("cannot delete stream {}: {err}", args.stream).into());
        }
    }
    result
}

/// Deletes the bench stream if it exists and creates it again: file storage, the bench
/// subject, `--replicas`, default limits.
async fn fresh_stream(js: &jetstream::Context, args: &BenchArgs) -> Result<stream::Stream> {
    if js.get_stream(&args.stream).await.is_ok() {
        js.delete_stream(&args.stream)
            .await
            .map_err(|e| format!("cannot delete the old stream {}: {e}", args.stream))?;
    }
    let config = stream::Config {
        name: args.stream.clone(),
        subjects: vec![args.subject.clone()],
        storage: stream::StorageType::File,
        num_replicas: args.replicas,
        ..Default::default()
    };
    Ok(js
        .create_stream(config)
        .await
        .map_err(|e| format!("cannot create stream {}: {e}", args.stream))?)
}

/// `--mode js-pub`: timed windowed publishes, then a check that the stream holds them all.
async fn publish(js: &jetstream::Context, args: &BenchArgs) -> Result<Report> {
    let bar = progress(args.msgs, "acked", args.json);
    let mut hist = histogram();
    let start = Instant::now();
    let acked = publish_acked(js, args, Some(&mut hist), &bar).await?;
    let elapsed = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let mut report = published(js, args, acked, elapsed).await?;
    report.latency_us = Latency::from(&hist);
    Ok(report)
}

/// The report of a js-pub run that had `acked` publishes acknowledged in `elapsed` seconds,
/// once the stream is seen to hold them all.
async fn published(
    js: &jetstream::Context,
    args: &BenchArgs,
    acked: u64,
    elapsed: f64,
) -> Result<Report> {
    let stored = js
        .get_stream(&args.stream)
        .await?
        .cached_info()
        .state
        .messages;
    if stored != acked {
        return Err(format!("{acked} publishes acked, but the stream holds {stored}").into());
    }
    let mut report = js_base(args, "js-pub");
    report.publish_rate = acked as f64 / elapsed;
    report.received = acked;
    report.expected = args.msgs;
    Ok(report)
}

/// The reply subjects of `js-pub --raw`: the prefix, then the publish's number.
const RAW_INBOX: &str = "_INBOX.herald-bench.";

/// `--mode js-pub --raw`: timed windowed publishes from the raw client, then the same check.
async fn publish_raw(js: &jetstream::Context, args: &BenchArgs) -> Result<Report> {
    let mut conn = RawConn::open(&args.client).await?;
    conn.send(format!("SUB {RAW_INBOX}* 1\r\n").as_bytes())
        .await?;
    conn.round_trip(args.idle_timeout).await?;
    let expected_ack = format!("{{\"stream\":\"{}\"", args.stream);
    let payload = vec![0u8; args.size];
    let bar = progress(args.msgs, "acked", args.json);
    let mut out = Vec::with_capacity(64 * 1024);
    let (mut sent, mut acked) = (0u64, 0u64);
    let refill = (args.inflight() as u64 / 4).max(1);
    let start = Instant::now();
    while acked < args.msgs {
        out.clear();
        while sent < args.msgs && sent - acked < args.inflight() as u64 {
            out.extend_from_slice(b"PUB ");
            out.extend_from_slice(args.subject.as_bytes());
            out.push(b' ');
            out.extend_from_slice(RAW_INBOX.as_bytes());
            herald_proto::encode::number(&mut out, sent);
            out.push(b' ');
            herald_proto::encode::number(&mut out, args.size as u64);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&payload);
            out.extend_from_slice(b"\r\n");
            sent += 1;
        }
        if !out.is_empty() {
            conn.send(&out).await?;
        }
        let before = acked;
        let mut bad = None;
        let progressed = conn
            .read_until(args.idle_timeout, |op| {
                if let ServerOp::Msg { payload, .. } = op {
                    if !payload.starts_with(expected_ack.as_bytes()) {
                        bad = Some(String::from_utf8_lossy(payload).into_owned());
                        return true;
                    }
                    acked += 1;
                }
                acked - before >= refill || acked == sent
            })
            .await?;
        if let Some(bad) = bad {
            return Err(format!("publish not acknowledged: {bad}").into());
        }
        if !progressed {
            return Err(format!("no publish ack within {:?}", args.idle_timeout).into());
        }
        bar.set_position(acked);
    }
    let elapsed = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    published(js, args, acked, elapsed).await
}

/// The timed part of `js-consume --raw`: batches pulled and acked by the raw client; returns
/// how many messages were consumed.
async fn consume_raw(args: &BenchArgs) -> Result<u64> {
    let mut conn = RawConn::open(&args.client).await?;
    let inbox = "_INBOX.herald-bench-pull";
    conn.send(format!("SUB {inbox} 1\r\n").as_bytes()).await?;
    conn.round_trip(args.idle_timeout).await?;
    let next = format!("$JS.API.CONSUMER.MSG.NEXT.{}.{CONSUMER}", args.stream);
    let bar = progress(args.msgs, "consumed", args.json);
    let mut out: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut got = 0u64;
    while got < args.msgs {
        let want = (args.msgs - got).min(args.batch as u64);
        let request = format!(
            "{{\"batch\":{want},\"expires\":{}}}",
            args.idle_timeout.as_nanos()
        );
        out.extend_from_slice(format!("PUB {next} {inbox} {}\r\n", request.len()).as_bytes());
        out.extend_from_slice(request.as_bytes());
        out.extend_from_slice(b"\r\n");
        conn.send(&out).await?;
        out.clear();
        let mut in_batch = 0u64;
        let mut problem = None;
        let done = conn
            .read_until(args.idle_timeout, |op| {
                match op {
                    ServerOp::Msg {
                        reply: Some(ack),
                        payload,
                        ..
                    } => {
                        if payload.len() != args.size {
                            problem = Some(format!("a message of {} bytes", payload.len()));
                            return true;
                        }
                        out.extend_from_slice(b"PUB ");
                        out.extend_from_slice(ack.as_bytes());
                        out.extend_from_slice(b" 0\r\n\r\n");
                        in_batch += 1;
                    }
                    ServerOp::HMsg { headers, .. } => {
                        problem = Some(String::from_utf8_lossy(headers).trim().to_owned());
                        return true;
                    }
                    _ => {}
                }
                in_batch == want
            })
            .await?;
        if let Some(problem) = problem {
            return Err(format!("fetch failed after {got} messages: {problem}").into());
        }
        if !done {
            return Err(nothing_within(args, got).into());
        }
        got += in_batch;
        bar.set_position(got);
    }
    // The last acks reach the server.
    conn.send(&out).await?;
    conn.round_trip(args.idle_timeout).await?;
    bar.finish_and_clear();
    Ok(got)
}

/// `--mode js-consume`: an untimed prefill, then timed batched fetches with an ack per
/// message (async-nats, or the raw client), then a check that the consumer has nothing left
/// to ack.
async fn consume(
    client: &async_nats::Client,
    js: &jetstream::Context,
    mut stream: stream::Stream,
    args: &BenchArgs,
    raw: bool,
) -> Result<Report> {
    let prefill_rate = prefill(js, &mut stream, args).await?;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(CONSUMER.to_owned()),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("cannot create the consumer: {e}"))?;

    let timed = CpuMark::now(args);
    let got = if raw {
        consume_raw(args).await?
    } else {
        consume_nats(client, &consumer, args).await?
    };
    let report = consumed(args, "js-consume", prefill_rate, got, &timed);
    wait_all_acked(stream, args).await?;
    Ok(report)
}

/// The report of a consuming mode: `got` messages since `timed` (its rate, and the CPU used
/// meanwhile) after a prefill at `prefill_rate`.
fn consumed(
    args: &BenchArgs,
    mode: &'static str,
    prefill_rate: f64,
    got: u64,
    timed: &CpuMark,
) -> Report {
    let elapsed = timed.elapsed();
    let mut report = js_base(args, mode);
    timed.record(args, &mut report);
    report.subs = 1;
    report.publish_rate = prefill_rate;
    report.deliver_rate = got as f64 / elapsed;
    report.deliver_mb_s = report.deliver_rate * args.size as f64 / 1e6;
    report.received = got;
    report.expected = args.msgs;
    report
}

/// Fills the bench stream (untimed) and checks it holds `--msgs`; the fill rate.
async fn prefill(
    js: &jetstream::Context,
    stream: &mut stream::Stream,
    args: &BenchArgs,
) -> Result<f64> {
    let bar = progress(args.msgs, "prefill", args.json);
    let start = Instant::now();
    let prefilled = publish_acked(js, args, None, &bar).await?;
    let rate = prefilled as f64 / start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let stored = stream.info().await?.state.messages;
    if stored != args.msgs {
        return Err(format!("the prefill left {stored} messages, not {}", args.msgs).into());
    }
    Ok(rate)
}

/// `--mode js-push` and `--mode js-ordered`: a prefill, then the whole stream read by a push
/// consumer, each message checked for its size.
async fn push_consume(
    client: &async_nats::Client,
    js: &jetstream::Context,
    mut stream: stream::Stream,
    args: &BenchArgs,
    ordered: bool,
) -> Result<Report> {
    let prefill_rate = prefill(js, &mut stream, args).await?;
    let deliver_subject = client.new_inbox();
    let timed;
    let mut messages: std::pin::Pin<Box<dyn futures::Stream<Item = Result<Bytes>> + Send>> =
        if ordered {
            let consumer: jetstream::consumer::Consumer<push::OrderedConfig> = stream
                .create_consumer(push::OrderedConfig {
                    deliver_subject,
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("cannot create the consumer: {e}"))?;
            timed = CpuMark::now(args);
            let messages = consumer.messages().await?;
            Box::pin(messages.map(|m| Ok(m.map_err(|e| e.to_string())?.payload.clone())))
        } else {
            let consumer: jetstream::consumer::Consumer<push::Config> = stream
                .create_consumer(push_config(args, deliver_subject))
                .await
                .map_err(|e| format!("cannot create the consumer: {e}"))?;
            timed = CpuMark::now(args);
            let messages = consumer.messages().await?;
            Box::pin(messages.map(|m| Ok(m.map_err(|e| e.to_string())?.payload.clone())))
        };
    let bar = progress(args.msgs, "consumed", args.json);
    let mut got = 0u64;
    while got < args.msgs {
        let next = tokio::time::timeout(args.idle_timeout, messages.next()).await;
        let Ok(Some(payload)) = next else {
            return Err(nothing_within(args, got).into());
        };
        let payload = payload?;
        if payload.len() != args.size {
            return Err(format!("a message of {} bytes", payload.len()).into());
        }
        got += 1;
        if got.is_multiple_of(4096) {
            bar.set_position(got);
        }
    }
    bar.finish_and_clear();
    Ok(consumed(
        args,
        if ordered { "js-ordered" } else { "js-push" },
        prefill_rate,
        got,
        &timed,
    ))
}

/// The push consumer of `js-push`: no acks; with `--flow-control`, flow control and 1 s
/// heartbeats.
fn push_config(args: &BenchArgs, deliver_subject: String) -> push::Config {
    push::Config {
        deliver_subject,
        ack_policy: AckPolicy::None,
        flow_control: args.flow_control,
        idle_heartbeat: if args.flow_control {
            Duration::from_secs(1)
        } else {
            Duration::ZERO
        },
        ..Default::default()
    }
}

/// The deliver subject of `js-push --raw`.
const RAW_PUSH: &str = "_INBOX.herald-bench-push";

/// `--mode js-push --raw` and `js-ordered --raw`: a prefill, then the push consumer's
/// messages read by the raw client (subscribed before the consumer is made), which answers
/// flow-control requests.
async fn push_raw(
    js: &jetstream::Context,
    mut stream: stream::Stream,
    args: &BenchArgs,
    ordered: bool,
) -> Result<Report> {
    let prefill_rate = prefill(js, &mut stream, args).await?;
    let mut conn = RawConn::open(&args.client).await?;
    conn.send(format!("SUB {RAW_PUSH} 1\r\n").as_bytes())
        .await?;
    conn.round_trip(args.idle_timeout).await?;
    let bar = progress(args.msgs, "consumed", args.json);
    let timed = CpuMark::now(args);
    let made = if ordered {
        stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: RAW_PUSH.to_owned(),
                ..Default::default()
            })
            .await
            .map(drop)
    } else {
        stream
            .create_consumer(push_config(args, RAW_PUSH.to_owned()))
            .await
            .map(drop)
    };
    made.map_err(|e| format!("cannot create the consumer: {e}"))?;
    let mut got = 0u64;
    let mut answers: Vec<u8> = Vec::new();
    let mut problem = None;
    while got < args.msgs {
        let progressed = conn
            .read_until(args.idle_timeout, |op| {
                match op {
                    ServerOp::Msg { payload, .. } => {
                        if payload.len() != args.size {
                            problem = Some(format!("a message of {} bytes", payload.len()));
                            return true;
                        }
                        got += 1;
                    }
                    // A flow-control request: answered at once, as clients do.
                    ServerOp::HMsg {
                        reply: Some(reply), ..
                    } => {
                        answers.extend_from_slice(format!("PUB {reply} 0\r\n\r\n").as_bytes());
                        return true;
                    }
                    _ => {}
                }
                got == args.msgs || got.is_multiple_of(65_536)
            })
            .await?;
        if let Some(problem) = problem {
            return Err(problem.into());
        }
        if !progressed {
            return Err(nothing_within(args, got).into());
        }
        if !answers.is_empty() {
            conn.send(&answers).await?;
            answers.clear();
        }
        bar.set_position(got);
    }
    bar.finish_and_clear();
    let mode = if ordered { "js-ordered" } else { "js-push" };
    Ok(consumed(args, mode, prefill_rate, got, &timed))
}

/// The timed part of `js-consume` with async-nats: `batch()` fetches, `ack()` per message.
async fn consume_nats(
    client: &async_nats::Client,
    consumer: &jetstream::consumer::PullConsumer,
    args: &BenchArgs,
) -> Result<u64> {
    let bar = progress(args.msgs, "consumed", args.json);
    let mut got = 0u64;
    while got < args.msgs {
        let want = (args.msgs - got).min(args.batch as u64) as usize;
        let mut batch = consumer
            .batch()
            .max_messages(want)
            .expires(args.idle_timeout)
            .messages()
            .await
            .map_err(|e| format!("fetch failed: {e}"))?;
        let mut in_batch = 0;
        while let Some(msg) = batch.next().await {
            let msg = msg.map_err(|e| format!("fetch failed: {e}"))?;
            if msg.payload.len() != args.size {
                return Err(format!(
                    "a message of {} bytes, not {}",
                    msg.payload.len(),
                    args.size
                )
                .into());
            }
            msg.ack().await?;
            in_batch += 1;
        }
        if in_batch == 0 {
            return Err(nothing_within(args, got).into());
        }
        got += in_batch;
        bar.set_position(got);
    }
    // The last acks are sent, not only queued in the client.
    client.flush().await?;
    bar.finish_and_clear();
    Ok(got)
}

/// Waits (not timed) until the server has applied every ack: nothing pending, ack floor at
/// the last message.
async fn wait_all_acked(stream: stream::Stream, args: &BenchArgs) -> Result {
    let deadline = Instant::now() + args.idle_timeout.max(Duration::from_secs(10));
    let mut consumer: jetstream::consumer::PullConsumer = stream.get_consumer(CONSUMER).await?;
    loop {
        let info = consumer.info().await?;
        if info.num_ack_pending == 0 && info.ack_floor.stream_sequence >= args.msgs {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the server still has {} acks pending (ack floor {})",
                info.num_ack_pending, info.ack_floor.stream_sequence
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Publishes `--msgs` messages of `--size` bytes with at most `--inflight` awaiting their
/// ack; returns how many were acknowledged (all, or an error). With `hist`, records each
/// publish's time from send to ack.
async fn publish_acked(
    js: &jetstream::Context,
    args: &BenchArgs,
    mut hist: Option<&mut Histogram<u64>>,
    bar: &ProgressBar,
) -> Result<u64> {
    let subject = async_nats::Subject::from(args.subject.as_str());
    let payload = Bytes::from(vec![0u8; args.size]);
    let mut window: VecDeque<(Instant, PublishAckFuture)> =
        VecDeque::with_capacity(args.inflight());
    let mut acked = 0u64;
    let mut await_oldest = async |window: &mut VecDeque<(Instant, PublishAckFuture)>| -> Result {
        let Some((sent, ack)) = window.pop_front() else {
            return Ok(());
        };
        ack.await
            .map_err(|e| format!("publish not acknowledged: {e}"))?;
        if let Some(hist) = hist.as_deref_mut() {
            let _ = hist.record(sent.elapsed().as_micros() as u64);
        }
        Ok(())
    };
    for _ in 0..args.msgs {
        if window.len() >= args.inflight() {
            await_oldest(&mut window).await?;
            acked += 1;
            if acked.is_multiple_of(1024) {
                bar.set_position(acked);
            }
        }
        let sent = Instant::now();
        let ack = js
            .publish(subject.clone(), payload.clone())
            .await
            .map_err(|e| format!("publish failed: {e}"))?;
        window.push_back((sent, ack));
    }
    while !window.is_empty() {
        await_oldest(&mut window).await?;
        acked += 1;
    }
    Ok(acked)
}

/// A consumer's error when a batch brought nothing within the idle timeout.
fn nothing_within(args: &BenchArgs, got: u64) -> String {
    format!(
        "no message within {:?} after {got} of {}",
        args.idle_timeout, args.msgs
    )
}

fn js_base(args: &BenchArgs, mode: &'static str) -> Report {
    let mut report = base(args, mode);
    report.subs = 0;
    report.inflight = Some(args.inflight());
    if mode == "js-consume" {
        report.batch = Some(args.batch);
    }
    report
}
