//! `herald bench`: publish/subscribe and request/reply load against any NATS-protocol server.
//!
//! Two clients: `async-nats` (what applications see) and `--raw`, which writes pre-encoded PUB
//! frames in large batches and only parses MSG headers on the subscriber side, so that the
//! server, not the client, is the bottleneck. Each payload of 8 bytes or more carries its send
//! time, so subscribers measure latency from publish to receipt (with large batches that
//! includes queueing: it is the latency under full load, not an idle round trip).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use hdrhistogram::Histogram;
use herald_proto::{Limits, Parsed, ServerOp, parse_server};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Barrier, Notify};

use crate::client::{ClientArgs, parse_duration, round_trip};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Flags of `herald bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Subject to publish on.
    #[arg(default_value = "bench")]
    subject: String,
    /// Publishing connections (requesters with --request).
    #[arg(long, default_value_t = 1)]
    pubs: usize,
    /// Subscribing connections (responders with --request).
    #[arg(long, default_value_t = 0)]
    subs: usize,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 16)]
    size: usize,
    /// Messages to publish in total (requests with --request).
    #[arg(long, default_value_t = 1_000_000)]
    msgs: u64,
    /// Request/reply instead of publish/subscribe: each requester waits for each reply.
    #[arg(long)]
    request: bool,
    /// Use the raw client (pre-encoded frames, header-only parsing) instead of async-nats.
    #[arg(long)]
    raw: bool,
    /// Open this many idle connections instead and report the server's memory per connection
    /// (needs --server-pid).
    #[arg(long, value_name = "N")]
    idle: Option<usize>,
    /// Process id of the server, to report its CPU time and resident memory.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Give up waiting for outstanding messages after this long without progress.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Print the result as one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// What one run measured.
#[derive(Debug, Default, Serialize)]
struct Report {
    mode: &'static str,
    client: &'static str,
    pubs: usize,
    subs: usize,
    size: usize,
    msgs: u64,
    /// Messages (or requests) published per second.
    publish_rate: f64,
    /// Messages received per second, over all subscribers (replies with --request).
    deliver_rate: f64,
    /// Payload megabytes per second delivered.
    deliver_mb_s: f64,
    received: u64,
    expected: u64,
    latency_us: Option<Latency>,
    /// Server CPU time over the run, in cores (1.0 = one core busy the whole time).
    server_cpu_cores: Option<f64>,
    /// Server resident memory after the run, KiB.
    server_rss_kib: Option<u64>,
    /// With --idle: server memory per idle connection, KiB.
    rss_per_idle_conn_kib: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Latency {
    p50: u64,
    p90: u64,
    p99: u64,
    max: u64,
}

impl Latency {
    fn from(h: &Histogram<u64>) -> Option<Latency> {
        (!h.is_empty()).then(|| Latency {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        })
    }
}

/// Runs the benchmark and prints its report.
pub async fn run(args: BenchArgs) -> std::result::Result<(), Box<dyn std::error::Error>> {
    if args.raw && args.request {
        return Err("--raw measures publish/subscribe; use --request without --raw".into());
    }
    if args.pubs == 0 || args.msgs == 0 {
        return Err("--pubs and --msgs must be at least 1".into());
    }
    let cpu_before = args.server_pid.and_then(cpu_ticks);
    let started = Instant::now();
    let mut report = match (args.idle, args.request, args.raw) {
        (Some(n), _, _) => idle(&args, n).await,
        (None, true, _) => request(&args).await,
        (None, false, true) => pubsub_raw(&args).await,
        (None, false, false) => pubsub_nats(&args).await,
    }
    .map_err(|e| e.to_string())?;
    let wall = started.elapsed().as_secs_f64();
    if let (Some(before), Some(after)) = (cpu_before, args.server_pid.and_then(cpu_ticks)) {
        report.server_cpu_cores = Some((after - before) as f64 / CLOCK_TICKS / wall);
    }
    if let Some(pid) = args.server_pid {
        report.server_rss_kib = rss_kib(pid);
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn base(args: &BenchArgs, mode: &'static str) -> Report {
    Report {
        mode,
        client: if args.raw { "raw" } else { "async-nats" },
        pubs: args.pubs,
        subs: args.subs,
        size: args.size,
        msgs: args.msgs,
        ..Report::default()
    }
}

fn progress(total: u64, what: &str, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {human_pos}/{human_len} {per_sec}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// Nanoseconds since `base`, written into the first 8 bytes of a payload.
fn stamp(payload: &mut [u8], base: Instant) {
    if payload.len() >= 8 {
        let now = base.elapsed().as_nanos() as u64;
        payload[..8].copy_from_slice(&now.to_le_bytes());
    }
}

/// Records the latency of a stamped payload, in microseconds.
fn record(hist: &mut Histogram<u64>, payload: &[u8], base: Instant) {
    if let Some(sent) = payload.get(..8).and_then(|b| b.try_into().ok()) {
        let sent = u64::from_le_bytes(sent);
        let now = base.elapsed().as_nanos() as u64;
        let _ = hist.record(now.saturating_sub(sent) / 1000);
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 1000 s, 3 significant digits.
    Histogram::new_with_bounds(1, 1_000_000_000, 3).expect("constant bounds are valid")
}

/// Keeps publishers at most `window` messages ahead of the average subscriber, so a run
/// measures what a server sustains, not how fast an outbound buffer fills before the server
/// cuts a reader off as a slow consumer. Subscribers report progress in steps of
/// [`REPORT_EVERY`] messages.
struct Flow {
    published: AtomicU64,
    received: AtomicU64,
    subs: u64,
    window: u64,
    progress: Notify,
}

/// How many messages a subscriber receives between two progress reports.
const REPORT_EVERY: u64 = 1024;

impl Flow {
    fn new(subs: usize, size: usize) -> Arc<Flow> {
        // About 8 MiB in flight per subscriber, and well above the reporting step.
        let window = (8 * 1024 * 1024 / (size as u64 + 32)).max(8 * REPORT_EVERY);
        Arc::new(Flow {
            published: AtomicU64::new(0),
            received: AtomicU64::new(0),
            subs: subs as u64,
            window,
            progress: Notify::new(),
        })
    }

    fn received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
        self.progress.notify_waiters();
    }

    fn total_received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits until `n` more messages may be published.
    async fn admit(&self, n: u64, idle: Duration) -> Result {
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

/// Publish/subscribe with async-nats on both sides.
async fn pubsub_nats(args: &BenchArgs) -> Result<Report> {
    let base_time = Instant::now();
    let flow = Flow::new(args.subs, args.size);
    let bar = progress(args.msgs * args.subs.max(1) as u64, "messages", args.json);
    let ready = Arc::new(Barrier::new(args.subs + 1));
    let mut subscribers = Vec::new();
    for _ in 0..args.subs {
        let options = args
            .client
            .options("herald bench sub")
            .subscription_capacity(1 << 20);
        let client = args
            .client
            .connect_with(options)
            .await
            .map_err(|e| e.to_string())?;
        let mut sub = client.subscribe(args.subject.clone()).await?;
        round_trip(&client).await?;
        let (flow, ready, want, idle) = (flow.clone(), ready.clone(), args.msgs, args.idle_timeout);
        subscribers.push(tokio::spawn(async move {
            ready.wait().await;
            let mut hist = histogram();
            let mut got = 0;
            while got < want {
                match tokio::time::timeout(idle, sub.next()).await {
                    Ok(Some(msg)) => {
                        record(&mut hist, &msg.payload, base_time);
                        got += 1;
                        if got.is_multiple_of(REPORT_EVERY) {
                            flow.received(REPORT_EVERY);
                        }
                    }
                    _ => break,
                }
            }
            flow.received(got % REPORT_EVERY);
            drop(client);
            (got, hist, Instant::now())
        }));
    }
    ready.wait().await;
    let start = Instant::now();
    let per_pub = split(args.msgs, args.pubs);
    let mut publishers = Vec::new();
    for count in per_pub {
        let client = args
            .client
            .connect("herald bench pub")
            .await
            .map_err(|e| e.to_string())?;
        let (subject, size, flow) = (args.subject.clone(), args.size, flow.clone());
        let (bar, idle) = (bar.clone(), args.idle_timeout);
        let watch_subs = args.subs > 0;
        publishers.push(tokio::spawn(async move {
            let mut payload = vec![0u8; size];
            for i in 0..count {
                if i % 256 == 0 {
                    flow.admit(256.min(count - i), idle).await?;
                }
                stamp(&mut payload, base_time);
                client
                    .publish(subject.clone(), Bytes::copy_from_slice(&payload))
                    .await?;
                if i % 4096 == 0 {
                    bar.set_position(if watch_subs { flow.total_received() } else { i });
                }
            }
            client.flush().await?;
            round_trip(&client).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }));
    }
    for p in publishers {
        p.await??;
    }
    let published = start.elapsed();
    finish_pubsub(args, "pubsub", start, published, subscribers, bar).await
}

type SubResult = (u64, Histogram<u64>, Instant);

async fn finish_pubsub(
    args: &BenchArgs,
    mode: &'static str,
    start: Instant,
    published: Duration,
    subscribers: Vec<tokio::task::JoinHandle<SubResult>>,
    bar: ProgressBar,
) -> Result<Report> {
    let mut report = base(args, mode);
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

fn split(total: u64, parts: usize) -> Vec<u64> {
    let parts = parts as u64;
    (0..parts)
        .map(|i| total / parts + u64::from(i < total % parts))
        .collect()
}

/// The raw client's connection: CONNECT sent, INFO consumed.
struct RawConn {
    socket: TcpStream,
    buf: BytesMut,
}

impl RawConn {
    async fn open(args: &BenchArgs) -> Result<RawConn> {
        let url = args
            .client
            .servers
            .first()
            .ok_or("no --server given")?
            .clone();
        let host = url
            .rsplit("://")
            .next()
            .unwrap_or(&url)
            .rsplit('@')
            .next()
            .unwrap_or(&url)
            .to_owned();
        let socket = TcpStream::connect(&host)
            .await
            .map_err(|e| format!("cannot connect to {host}: {e}"))?;
        socket.set_nodelay(true)?;
        let mut conn = RawConn {
            socket,
            buf: BytesMut::with_capacity(256 * 1024),
        };
        let connect = match &args.client.scope {
            Some(scope) => serde_json::json!({"verbose": false, "pedantic": false, "user": scope}),
            None => serde_json::json!({"verbose": false, "pedantic": false}),
        };
        conn.socket
            .write_all(format!("CONNECT {connect}\r\n").as_bytes())
            .await?;
        Ok(conn)
    }

    /// Reads until `until` says stop, calling it on each server operation.
    async fn read_until(
        &mut self,
        idle: Duration,
        mut until: impl FnMut(&ServerOp<'_>) -> bool,
    ) -> Result<bool> {
        let limits = Limits {
            max_payload: 64 * 1024 * 1024,
            ..Limits::default()
        };
        loop {
            let mut used = 0;
            while let Parsed::Op(op, n) = parse_server(&self.buf[used..], &limits)? {
                used += n;
                if let ServerOp::Err(text) = op {
                    return Err(format!("server error: -ERR '{text}'").into());
                }
                if until(&op) {
                    let _ = self.buf.split_to(used);
                    return Ok(true);
                }
            }
            let _ = self.buf.split_to(used);
            if self.buf.capacity() - self.buf.len() < 64 * 1024 {
                self.buf.reserve(256 * 1024);
            }
            match tokio::time::timeout(idle, self.socket.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) => return Err("the server closed the connection".into()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Ok(false),
            }
        }
    }

    /// PING, and wait for the PONG.
    async fn round_trip(&mut self, idle: Duration) -> Result {
        self.socket.write_all(b"PING\r\n").await?;
        if self
            .read_until(idle, |op| matches!(op, ServerOp::Pong))
            .await?
        {
            Ok(())
        } else {
            Err("no PONG from the server".into())
        }
    }
}

/// Publish/subscribe with the raw client.
async fn pubsub_raw(args: &BenchArgs) -> Result<Report> {
    let base_time = Instant::now();
    let flow = Flow::new(args.subs, args.size);
    let bar = progress(args.msgs * args.subs.max(1) as u64, "messages", args.json);
    let ready = Arc::new(Barrier::new(args.subs + 1));
    let mut subscribers = Vec::new();
    for _ in 0..args.subs {
        let mut conn = RawConn::open(args).await?;
        conn.socket
            .write_all(format!("SUB {} 1\r\n", args.subject).as_bytes())
            .await?;
        conn.round_trip(args.idle_timeout).await?;
        let (flow, ready, want, idle) = (flow.clone(), ready.clone(), args.msgs, args.idle_timeout);
        subscribers.push(tokio::spawn(async move {
            ready.wait().await;
            let mut hist = histogram();
            let mut got = 0u64;
            let mut batch = 0u64;
            let _ = conn
                .read_until(idle, |op| {
                    if let ServerOp::Msg { payload, .. } = op {
                        // Sample every 64th message: the histogram costs more than the parse.
                        if got.is_multiple_of(64) {
                            record(&mut hist, payload, base_time);
                        }
                        got += 1;
                        batch += 1;
                        if batch == REPORT_EVERY {
                            flow.received(batch);
                            batch = 0;
                        }
                    }
                    got >= want
                })
                .await;
            flow.received(batch);
            (got, hist, Instant::now())
        }));
    }
    ready.wait().await;
    let start = Instant::now();
    let mut publishers = Vec::new();
    for count in split(args.msgs, args.pubs) {
        let mut conn = RawConn::open(args).await?;
        let (subject, size, idle) = (args.subject.clone(), args.size, args.idle_timeout);
        let (bar, flow, watch_subs) = (bar.clone(), flow.clone(), args.subs > 0);
        publishers.push(tokio::spawn(async move {
            let header = format!("PUB {subject} {size}\r\n");
            let frame_len = header.len() + size + 2;
            let per_batch = (64 * 1024 / frame_len).max(1) as u64;
            let mut batch = Vec::with_capacity(frame_len * per_batch as usize);
            for _ in 0..per_batch {
                batch.extend_from_slice(header.as_bytes());
                batch.extend(std::iter::repeat_n(0u8, size));
                batch.extend_from_slice(b"\r\n");
            }
            let mut sent = 0u64;
            while sent < count {
                let n = per_batch.min(count - sent);
                flow.admit(n, idle).await?;
                let bytes = &mut batch[..frame_len * n as usize];
                for frame in bytes.chunks_mut(frame_len) {
                    stamp(&mut frame[header.len()..header.len() + size], base_time);
                }
                conn.socket.write_all(bytes).await?;
                sent += n;
                bar.set_position(if watch_subs {
                    flow.total_received()
                } else {
                    sent
                });
            }
            conn.round_trip(idle.max(Duration::from_secs(30))).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }));
    }
    for p in publishers {
        p.await??;
    }
    let published = start.elapsed();
    finish_pubsub(args, "pubsub", start, published, subscribers, bar).await
}

/// Request/reply with async-nats: responders in one queue group, requesters one at a time.
async fn request(args: &BenchArgs) -> Result<Report> {
    if args.subs == 0 {
        return Err("--request needs at least one responder (--subs)".into());
    }
    let mut responders = Vec::new();
    for _ in 0..args.subs {
        let client = args
            .client
            .connect("herald bench reply")
            .await
            .map_err(|e| e.to_string())?;
        let mut sub = client
            .queue_subscribe(args.subject.clone(), "herald-bench".into())
            .await?;
        round_trip(&client).await?;
        responders.push(tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                if let Some(reply) = msg.reply {
                    let _ = client.publish(reply, msg.payload).await;
                }
            }
        }));
    }
    let bar = progress(args.msgs, "requests", args.json);
    let start = Instant::now();
    let mut requesters = Vec::new();
    for count in split(args.msgs, args.pubs) {
        let client = args
            .client
            .connect("herald bench req")
            .await
            .map_err(|e| e.to_string())?;
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

/// Opens `n` idle raw connections and measures the server's memory growth.
async fn idle(args: &BenchArgs, n: usize) -> Result<Report> {
    let pid = args.server_pid.ok_or("--idle needs --server-pid")?;
    let before = rss_kib(pid).ok_or("cannot read the server's memory from /proc")?;
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut conn = RawConn::open(args).await?;
        conn.round_trip(args.idle_timeout).await?;
        conns.push(conn);
    }
    let after = rss_kib(pid).ok_or("cannot read the server's memory from /proc")?;
    let mut report = base(args, "idle");
    report.rss_per_idle_conn_kib = Some(after.saturating_sub(before) as f64 / n as f64);
    drop(conns);
    Ok(report)
}

/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux).
const CLOCK_TICKS: f64 = 100.0;

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory of a process, KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn print_table(r: &Report) {
    let human = |v: f64| {
        let v = v.round() as u64;
        let s = v.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    };
    if r.mode == "idle" {
        println!(
            "idle connections: {:.1} KiB of server memory each (server RSS now {} KiB)",
            r.rss_per_idle_conn_kib.unwrap_or_default(),
            r.server_rss_kib.unwrap_or_default()
        );
        return;
    }
    println!(
        "herald bench ({}, {} client): {} publisher(s), {} subscriber(s), {} B payloads, {} messages",
        r.mode,
        r.client,
        r.pubs,
        r.subs,
        r.size,
        human(r.msgs as f64)
    );
    println!("{:<12} {:>14} {:>10}", "", "msgs/s", "MB/s");
    println!(
        "{:<12} {:>14} {:>10.1}",
        if r.mode == "request" {
            "requests"
        } else {
            "publish"
        },
        human(r.publish_rate),
        r.publish_rate * r.size as f64 / 1e6
    );
    if r.subs > 0 && r.mode != "request" {
        println!(
            "{:<12} {:>14} {:>10.1}   ({} of {} received)",
            "delivered",
            human(r.deliver_rate),
            r.deliver_mb_s,
            human(r.received as f64),
            human(r.expected as f64)
        );
    }
    if let Some(l) = &r.latency_us {
        println!(
            "latency µs   p50 {}  p90 {}  p99 {}  max {}",
            l.p50, l.p90, l.p99, l.max
        );
    }
    if let Some(cpu) = r.server_cpu_cores {
        println!("server CPU   {cpu:.2} cores");
    }
}
