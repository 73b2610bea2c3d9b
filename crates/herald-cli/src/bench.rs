//! `herald bench`: publish/subscribe and request/reply load against any NATS-protocol server.
//!
//! Two clients: `async-nats` (what applications see) and `--raw`, which writes pre-encoded PUB
//! frames in large batches and only parses MSG headers on the subscriber side, so that the
//! server, not the client, is the bottleneck. Each payload of 8 bytes or more carries its send
//! time, so subscribers measure latency from publish to receipt (with large batches that
//! includes queueing: it is the latency under full load, not an idle round trip).
//!
//! Against a cluster, `--sub-server` puts the subscribers on other nodes than the publishers.
//! Every run starts with a warm-up (see [`WarmUp`]) that ends once each publisher's server
//! forwards to every subscriber, so the timed part never races the spread of subscriptions.
//!
//! `--mode js-pub` and `--mode js-consume` measure JetStream streams instead (see [`js`]).

mod js;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use hdrhistogram::Histogram;
use herald_proto::{Limits, Parsed, ServerOp, parse_server};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

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
    /// Server URL for the subscribers (responders with --request), which take them in turn;
    /// repeat it or separate with commas. Publishers stay on --server. [default: --server]
    #[arg(long = "sub-server", value_name = "URL", value_delimiter = ',')]
    sub_servers: Vec<String>,
    /// Measure a JetStream stream instead: js-pub (publish with acks, --inflight at a time)
    /// or js-consume (pull-consume a prefilled stream in batches of --batch, acking each).
    /// With --raw the timed part uses the raw client (setup stays with async-nats).
    #[arg(long, value_enum)]
    mode: Option<js::JsMode>,
    /// With --mode: publishes awaiting their ack at once (1: one at a time).
    #[arg(long, default_value_t = 256, value_name = "N")]
    inflight: usize,
    /// With --mode js-consume: messages per fetch.
    #[arg(long, default_value_t = 256, value_name = "N")]
    batch: usize,
    /// With --mode: the stream to create (deleted first if it exists) on the bench subject.
    #[arg(long, default_value = "HERALD_BENCH", value_name = "NAME")]
    stream: String,
    /// With --mode: keep the stream and its messages after the run.
    #[arg(long)]
    keep: bool,
    #[command(flatten)]
    client: ClientArgs,
}

impl BenchArgs {
    /// Connection flags of subscriber (or responder) `i`: the next `--sub-server` in turn, or
    /// the publishers' servers when none is given.
    fn sub_client(&self, i: usize) -> ClientArgs {
        let mut client = self.client.clone();
        if !self.sub_servers.is_empty() {
            client.servers = vec![self.sub_servers[i % self.sub_servers.len()].clone()];
        }
        client
    }
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
    /// Messages (or requests) published per second (js-pub: acknowledged; js-consume: the
    /// untimed prefill).
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
    /// JetStream modes: publishes awaiting their ack at once.
    inflight: Option<usize>,
    /// With --mode js-consume: messages per fetch.
    batch: Option<usize>,
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
    if args.mode.is_some() && (args.request || args.idle.is_some()) {
        return Err("--mode measures JetStream; drop --request and --idle".into());
    }
    if args.raw && args.request {
        return Err("--raw measures publish/subscribe; use --request without --raw".into());
    }
    if args.pubs == 0 || args.msgs == 0 {
        return Err("--pubs and --msgs must be at least 1".into());
    }
    let cpu_before = args.server_pid.and_then(cpu_ticks);
    let started = Instant::now();
    let mut report = match (args.mode, args.idle, args.request, args.raw) {
        (Some(mode), _, _, _) => js::run(&args, mode).await,
        (None, Some(n), _, _) => idle(&args, n).await,
        (None, None, true, _) => request(&args).await,
        (None, None, false, true) => pubsub_raw(&args).await,
        (None, None, false, false) => pubsub_nats(&args).await,
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
    fn new(subs: usize, size: usize) -> Flow {
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

/// How often a publisher sends a warm-up message.
const WARMUP_EVERY: Duration = Duration::from_millis(5);

/// How long the warm-up may take before the run fails.
const WARMUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The warm-up before a timed publish/subscribe run. In a cluster a subscription made on one
/// node reaches the others in its own time; instead of sleeping, each publisher sends a
/// warm-up message on the bench subject every [`WARMUP_EVERY`] until every subscriber has
/// received one from every publisher. Then each publisher's server forwards to every
/// subscriber, on herald and nats-server alike, and the timed run starts.
///
/// A warm-up payload is told from a measured one by its length, which is never `--size`, and
/// carries its publisher's index; subscribers leave warm-up messages out of their counts and
/// latencies (some may still arrive after the timed run started).
struct WarmUp {
    size: usize,
    pubs: usize,
    /// Subscribers that have not yet received a warm-up message from every publisher.
    cold: AtomicUsize,
}

impl WarmUp {
    fn new(pubs: usize, subs: usize, size: usize) -> WarmUp {
        WarmUp {
            size,
            pubs,
            cold: AtomicUsize::new(subs),
        }
    }

    /// The warm-up payload of publisher `index`: the index in 8 bytes (little endian), and one
    /// more byte when `--size` is 8.
    fn payload(&self, index: usize) -> Bytes {
        let mut payload = (index as u64).to_le_bytes().to_vec();
        if self.size == payload.len() {
            payload.push(0);
        }
        Bytes::from(payload)
    }

    /// The publisher of a warm-up payload, or `None` for a measured message.
    fn publisher(&self, payload: &[u8]) -> Option<usize> {
        if payload.len() == self.size {
            return None;
        }
        let index = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
        Some(index as usize)
    }

    /// One subscriber's record of the warm-up.
    fn listener(&self) -> Heard {
        Heard {
            from: vec![false; self.pubs],
            missing: self.pubs,
        }
    }

    /// Whether every subscriber has heard from every publisher.
    fn is_done(&self) -> bool {
        self.cold.load(Ordering::Acquire) == 0
    }

    /// Calls `send` (which publishes one warm-up message and flushes it) every
    /// [`WARMUP_EVERY`] until the warm-up is done; fails after [`WARMUP_TIMEOUT`].
    async fn send_until_heard(&self, mut send: impl AsyncFnMut() -> Result) -> Result {
        let deadline = Instant::now() + WARMUP_TIMEOUT;
        while !self.is_done() {
            if Instant::now() > deadline {
                return Err(format!(
                    "{} subscriber(s) received no warm-up message within {WARMUP_TIMEOUT:?} \
                     (do the servers route to each other?)",
                    self.cold.load(Ordering::Acquire)
                )
                .into());
            }
            send().await?;
            tokio::time::sleep(WARMUP_EVERY).await;
        }
        Ok(())
    }
}

/// The publishers one subscriber has received a warm-up message from.
struct Heard {
    from: Vec<bool>,
    missing: usize,
}

impl Heard {
    /// Takes note of a received payload; returns whether it was a warm-up message (one to
    /// leave out of the measurement).
    fn note(&mut self, warm: &WarmUp, payload: &[u8]) -> bool {
        let Some(index) = warm.publisher(payload) else {
            return false;
        };
        if let Some(seen @ false) = self.from.get_mut(index) {
            *seen = true;
            self.missing -= 1;
            if self.missing == 0 {
                warm.cold.fetch_sub(1, Ordering::AcqRel);
            }
        }
        true
    }

    /// Whether this subscriber has heard from every publisher.
    fn is_warm(&self) -> bool {
        self.missing == 0
    }
}

/// What the tasks of one publish/subscribe run share.
struct Run {
    subject: String,
    size: usize,
    /// Messages each subscriber expects.
    msgs: u64,
    /// How long a reader or a paced publisher waits for progress before giving up.
    idle: Duration,
    /// Origin of the send times stamped into payloads.
    base_time: Instant,
    flow: Flow,
    warm: WarmUp,
    bar: ProgressBar,
}

impl Run {
    fn new(args: &BenchArgs) -> Arc<Run> {
        Arc::new(Run {
            subject: args.subject.clone(),
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
    fn show_progress(&self, sent: u64) {
        self.bar.set_position(if self.flow.subs > 0 {
            self.flow.total_received()
        } else {
            sent
        });
    }
}

/// Publish/subscribe with async-nats on both sides.
async fn pubsub_nats(args: &BenchArgs) -> Result<Report> {
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
        let (subject, payload) = (run.subject.clone(), run.warm.payload(i));
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
async fn nats_subscriber(
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
    let mut sub = client.subscribe(run.subject.clone()).await?;
    round_trip(&client).await?;
    let run = run.clone();
    Ok(tokio::spawn(async move {
        let mut heard = run.warm.listener();
        let mut hist = histogram();
        let mut got = 0;
        while got < run.msgs {
            let wait = if heard.is_warm() {
                run.idle
            } else {
                WARMUP_TIMEOUT
            };
            let Ok(Some(msg)) = tokio::time::timeout(wait, sub.next()).await else {
                break;
            };
            if heard.note(&run.warm, &msg.payload) {
                continue;
            }
            record(&mut hist, &msg.payload, run.base_time);
            got += 1;
            if got.is_multiple_of(REPORT_EVERY) {
                run.flow.received(REPORT_EVERY);
            }
        }
        run.flow.received(got % REPORT_EVERY);
        drop(client);
        (got, hist, Instant::now())
    }))
}

/// Publishes `count` stamped messages with async-nats, paced by the run's flow, and waits
/// until the server has handled them.
async fn nats_publisher(client: async_nats::Client, count: u64, run: Arc<Run>) -> Result {
    let mut payload = vec![0u8; run.size];
    for i in 0..count {
        if i % 256 == 0 {
            run.flow.admit(256.min(count - i), run.idle).await?;
        }
        stamp(&mut payload, run.base_time);
        client
            .publish(run.subject.clone(), Bytes::copy_from_slice(&payload))
            .await?;
        if i % 4096 == 0 {
            run.show_progress(i);
        }
    }
    client.flush().await?;
    round_trip(&client).await?;
    Ok(())
}

type SubResult = (u64, Histogram<u64>, Instant);

async fn finish_pubsub(
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
    /// Connects to the first of `client`'s servers, in its scope.
    async fn open(client: &ClientArgs) -> Result<RawConn> {
        let url = client.servers.first().ok_or("no --server given")?.clone();
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
        let connect = match &client.scope {
            Some(scope) => serde_json::json!({
                "verbose": false, "pedantic": false, "headers": true, "user": scope
            }),
            None => serde_json::json!({"verbose": false, "pedantic": false, "headers": true}),
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

/// One PUB frame: the command line, the payload, CRLF.
fn pub_frame(subject: &str, payload: &[u8]) -> Vec<u8> {
    let mut frame = format!("PUB {subject} {}\r\n", payload.len()).into_bytes();
    frame.extend_from_slice(payload);
    frame.extend_from_slice(b"\r\n");
    frame
}

/// Publish/subscribe with the raw client.
async fn pubsub_raw(args: &BenchArgs) -> Result<Report> {
    let run = Run::new(args);
    let mut subscribers = Vec::new();
    for i in 0..args.subs {
        subscribers.push(raw_subscriber(args, i, &run).await?);
    }
    let mut conns = Vec::new();
    for _ in 0..args.pubs {
        conns.push(RawConn::open(&args.client).await?);
    }
    let warm_ups = conns.iter_mut().enumerate().map(|(i, conn)| {
        let frame = pub_frame(&run.subject, &run.warm.payload(i));
        run.warm
            .send_until_heard(async move || Ok(conn.socket.write_all(&frame).await?))
    });
    futures::future::try_join_all(warm_ups).await?;
    let start = Instant::now();
    let publishers: Vec<_> = conns
        .into_iter()
        .zip(split(args.msgs, args.pubs))
        .map(|(conn, count)| tokio::spawn(raw_publisher(conn, count, run.clone())))
        .collect();
    for p in publishers {
        p.await??;
    }
    let published = start.elapsed();
    finish_pubsub(args, start, published, subscribers, &run.bar).await
}

/// Connects subscriber `i` with the raw client, subscribes, and spawns its reader, which
/// waits out the warm-up and then counts MSG operations.
async fn raw_subscriber(
    args: &BenchArgs,
    i: usize,
    run: &Arc<Run>,
) -> Result<JoinHandle<SubResult>> {
    let mut conn = RawConn::open(&args.sub_client(i)).await?;
    conn.socket
        .write_all(format!("SUB {} 1\r\n", run.subject).as_bytes())
        .await?;
    conn.round_trip(run.idle).await?;
    let run = run.clone();
    Ok(tokio::spawn(async move {
        let mut heard = run.warm.listener();
        let mut hist = histogram();
        let warm = conn
            .read_until(WARMUP_TIMEOUT, |op| {
                if let ServerOp::Msg { payload, .. } = op {
                    heard.note(&run.warm, payload);
                }
                heard.is_warm()
            })
            .await;
        if !matches!(warm, Ok(true)) {
            return (0, hist, Instant::now());
        }
        let mut got = 0u64;
        let mut batch = 0u64;
        let _ = conn
            .read_until(run.idle, |op| {
                if let ServerOp::Msg { payload, .. } = op
                    && !heard.note(&run.warm, payload)
                {
                    // Sample every 64th message: the histogram costs more than the parse.
                    if got.is_multiple_of(64) {
                        record(&mut hist, payload, run.base_time);
                    }
                    got += 1;
                    batch += 1;
                    if batch == REPORT_EVERY {
                        run.flow.received(batch);
                        batch = 0;
                    }
                }
                got >= run.msgs
            })
            .await;
        run.flow.received(batch);
        (got, hist, Instant::now())
    }))
}

/// Publishes `count` stamped messages as pre-encoded PUB frames written 64 KiB at a time,
/// paced by the run's flow, and waits until the server has handled them.
async fn raw_publisher(mut conn: RawConn, count: u64, run: Arc<Run>) -> Result {
    let frame = pub_frame(&run.subject, &vec![0u8; run.size]);
    let header_len = frame.len() - run.size - 2;
    let per_batch = (64 * 1024 / frame.len()).max(1) as u64;
    let mut batch = frame.repeat(per_batch as usize);
    let mut sent = 0u64;
    while sent < count {
        let n = per_batch.min(count - sent);
        run.flow.admit(n, run.idle).await?;
        let bytes = &mut batch[..frame.len() * n as usize];
        for frame in bytes.chunks_mut(frame.len()) {
            stamp(&mut frame[header_len..header_len + run.size], run.base_time);
        }
        conn.socket.write_all(bytes).await?;
        sent += n;
        run.show_progress(sent);
    }
    conn.round_trip(run.idle.max(Duration::from_secs(30)))
        .await?;
    Ok(())
}

/// Request/reply with async-nats: responders in one queue group (taking the `--sub-server`s in
/// turn), requesters one request at a time.
async fn request(args: &BenchArgs) -> Result<Report> {
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
async fn responder(args: &BenchArgs, i: usize) -> Result<JoinHandle<()>> {
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

/// The request warm-up: retries a request every [`WARMUP_EVERY`] while nobody answers, until
/// the requester's server knows a responder (one made on another node of a cluster reaches it
/// in its own time); fails after [`WARMUP_TIMEOUT`]. The queue group takes one responder per
/// request, so this does not wait for every responder to be known.
async fn first_answer(client: &async_nats::Client, subject: &str) -> Result {
    let deadline = Instant::now() + WARMUP_TIMEOUT;
    loop {
        let answer = tokio::time::timeout(
            WARMUP_TIMEOUT,
            client.request(subject.to_owned(), Bytes::new()),
        )
        .await;
        match answer {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e))
                if e.kind() == async_nats::RequestErrorKind::NoResponders
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(WARMUP_EVERY).await;
            }
            Ok(Err(e)) => return Err(format!("no responder answered the warm-up: {e}").into()),
            Err(_) => {
                return Err(format!("no responder answered within {WARMUP_TIMEOUT:?}").into());
            }
        }
    }
}

/// Opens `n` idle raw connections and measures the server's memory growth.
async fn idle(args: &BenchArgs, n: usize) -> Result<Report> {
    let pid = args.server_pid.ok_or("--idle needs --server-pid")?;
    let before = rss_kib(pid).ok_or("cannot read the server's memory from /proc")?;
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut conn = RawConn::open(&args.client).await?;
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
        match r.mode {
            "request" => "requests",
            "js-pub" => "publish+ack",
            "js-consume" => "prefill",
            _ => "publish",
        },
        human(r.publish_rate),
        r.publish_rate * r.size as f64 / 1e6
    );
    if r.subs > 0 && r.mode != "request" {
        println!(
            "{:<12} {:>14} {:>10.1}   ({} of {} received)",
            if r.mode == "js-consume" {
                "consumed"
            } else {
                "delivered"
            },
            human(r.deliver_rate),
            r.deliver_mb_s,
            human(r.received as f64),
            human(r.expected as f64)
        );
    }
    if let Some(n) = r.inflight {
        let batch = r
            .batch
            .map(|b| format!(", fetch batch {b}"))
            .unwrap_or_default();
        println!("in flight    {n} publish(es) awaiting their ack{batch}");
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
