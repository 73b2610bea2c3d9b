//! `herald bench`: publish/subscribe and request/reply load against any NATS-protocol server.
//!
//! Two clients: `async-nats` (what applications see) and `--raw`, which writes pre-encoded PUB
//! frames in large batches and only parses MSG headers on the subscriber side, so that the
//! server, not the client, is the bottleneck. Each payload of 8 bytes or more carries its send
//! time, so subscribers measure latency from publish to receipt (with large batches that
//! includes queueing: it is the latency under full load, not an idle round trip).
//!
//! Against a cluster, `--sub-server` puts the subscribers on other nodes than the publishers.
//! Every run starts with a warm-up (see `warmup`) that ends once each publisher's server
//! forwards to every subscriber, so the timed part never races the spread of subscriptions.
//!
//! `--mode js-pub` and `--mode js-consume` measure JetStream streams instead (see [`js`]).

//!
//! | module | holds |
//! |---|---|
//! | `pubsub` | publish/subscribe with async-nats, and what a run's tasks share |
//! | `raw` | the raw client: pre-encoded frames, header-only parsing |
//! | `request` | request/reply |
//! | `ping` | the round-trip floor: the cheapest exchange, one at a time |
//! | `idle` | idle connections and the server's memory per connection |
//! | `js` | JetStream publish and consume |
//! | `http` | HTTP publish, Server-Sent Events fan-out and idle event streams |
//! | `spread` | publish/subscribe over several clusters through herald-client (`--cluster`) |
//! | `warmup` | the warm-ups before a timed run |
//! | `measure` | latency stamps and histograms, flow control, `/proc` readings |
//! | `report` | what a run measured, as a table or JSON |

mod http;
mod idle;
mod js;
mod kv;
mod measure;
mod ping;
mod pubsub;
mod raw;
mod report;
mod request;
mod spread;
mod warmup;

use std::time::Duration;

use crate::client::{ClientArgs, parse_duration};
use measure::{CpuMark, cpu_ticks, kernel_ticks, rss_kib};
use report::print_table;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Flags of `herald bench`. (HTTP: `--http-pub URL` alone measures publishing over HTTP;
/// with `--sse URL` and `--subs`, fan-out to event streams; `--sse URL --idle N`, the memory
/// of idle event streams.)
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
    /// Publish to SUBJECT.0 .. SUBJECT.(N-1) in turn (subscribers take SUBJECT.>) instead of
    /// SUBJECT alone (async-nats and --cluster runs).
    #[arg(long, default_value_t = 1, value_name = "N")]
    subjects: usize,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 16)]
    size: usize,
    /// Messages to publish in total (requests with --request).
    #[arg(long, default_value_t = 1_000_000)]
    msgs: u64,
    /// Request/reply instead of publish/subscribe: each requester keeps --inflight requests
    /// waiting for their replies (async-nats: one at a time unless --inflight is given).
    #[arg(long)]
    request: bool,
    /// Use the raw client (pre-encoded frames, header-only parsing) instead of async-nats.
    #[arg(long)]
    raw: bool,
    /// Measure the floor under one-at-a-time rows instead: --msgs round trips, one at a time,
    /// of the cheapest exchange the server answers (--raw: PING/PONG; async-nats: a message
    /// to its own subscription).
    #[arg(long, conflicts_with_all = ["request", "idle", "mode", "http_pub", "sse"])]
    ping: bool,
    /// Open this many idle connections instead and report the server's memory per connection
    /// (needs --server-pid).
    #[arg(long, value_name = "N")]
    idle: Option<usize>,
    /// Process id of the server, to report its CPU time and resident memory (several,
    /// comma-separated, are summed: a server of several processes, such as nginx).
    #[arg(long, value_name = "PID", value_delimiter = ',')]
    server_pid: Vec<u32>,
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
    /// With --mode: publishes awaiting their ack at once (1: one at a time); with --request:
    /// requests awaiting their reply, per requester. [default: 256; 1 for --request without
    /// --raw]
    #[arg(long = "inflight", value_name = "N")]
    inflight_given: Option<usize>,
    /// With --mode js-push: flow control (and 1 s heartbeats) on the push consumer.
    #[arg(long)]
    flow_control: bool,
    /// With --mode kv-put / kv-get: keys of the bucket, used in turn.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    keys: usize,
    /// With --mode js-consume: messages per fetch.
    #[arg(long, default_value_t = 256, value_name = "N")]
    batch: usize,
    /// With --mode: the stream to create (deleted first if it exists) on the bench subject.
    #[arg(long, default_value = "HERALD_BENCH", value_name = "NAME")]
    stream: String,
    /// With --mode: the stream's replicas (in a cluster: 3 for a replicated stream).
    #[arg(long, default_value_t = 1, value_name = "N")]
    replicas: usize,
    /// With --mode: keep the stream and its messages after the run.
    #[arg(long)]
    keep: bool,
    /// Publish over HTTP instead: POST each message to this URL (herald:
    /// http://HOST:8222/v1/publish/SUBJECT) from --pubs keep-alive connections.
    #[arg(long, value_name = "URL")]
    http_pub: Option<String>,
    /// With --http-pub: publish with a minimal hand-written HTTP/1.1 client (one request at a
    /// time per connection, as with the default reqwest client, at a fraction of its CPU), to
    /// find a server's own ceiling when the client shares its machine.
    #[arg(long, requires = "http_pub")]
    http_raw: bool,
    /// With --http-pub: --subs Server-Sent Events clients of this URL (herald:
    /// http://HOST:8222/v1/subscribe/SUBJECT) receive the messages; with --idle, N idle ones.
    #[arg(long, value_name = "URL")]
    sse: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    clusters: crate::clusters::ClustersArgs,
}

impl BenchArgs {
    /// Operations awaiting their answer at once (`--inflight`, or the mode's default).
    fn inflight(&self) -> usize {
        let default = if self.request && !self.raw { 1 } else { 256 };
        self.inflight_given.unwrap_or(default)
    }

    /// The server's resident memory, KiB, summed over its processes.
    fn server_rss(&self) -> Option<u64> {
        self.sum_over_server(rss_kib)
    }

    /// The server's CPU time, clock ticks, summed over its processes.
    fn server_cpu(&self) -> Option<u64> {
        self.sum_over_server(cpu_ticks)
    }

    /// The server's time in the kernel, clock ticks, summed over its processes.
    fn server_kernel(&self) -> Option<u64> {
        self.sum_over_server(kernel_ticks)
    }

    fn sum_over_server(&self, read: fn(u32) -> Option<u64>) -> Option<u64> {
        if self.server_pid.is_empty() {
            return None;
        }
        self.server_pid.iter().map(|&pid| read(pid)).sum()
    }

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

/// Runs the benchmark and prints its report.
pub async fn run(args: BenchArgs) -> std::result::Result<(), Box<dyn std::error::Error>> {
    if args.mode.is_some() && (args.request || args.idle.is_some()) {
        return Err("--mode measures JetStream; drop --request and --idle".into());
    }
    if args.pubs == 0 || args.msgs == 0 || args.subjects == 0 {
        return Err("--pubs, --msgs and --subjects must be at least 1".into());
    }
    if args.inflight() == 0 {
        return Err("--inflight must be at least 1".into());
    }
    let whole_run = CpuMark::now(&args);
    let http = (args.http_pub.clone(), args.sse.clone());
    let mut report = match (args.mode, args.idle, args.request, args.raw) {
        _ if http.0.is_some() || http.1.is_some() => match (&http, args.idle, args.subs) {
            ((_, Some(sse)), Some(n), _) => http::idle(&args, sse, n).await,
            ((Some(publish), Some(sse)), None, subs) if subs > 0 => {
                http::fan_out(&args, publish, sse).await
            }
            ((Some(publish), None), None, 0) => http::publish_only(&args, publish).await,
            _ => Err("HTTP: --http-pub URL [--sse URL --subs N], or --sse URL --idle N".into()),
        },
        _ if args.ping && args.clusters.any() => Err("--ping measures one server".into()),
        _ if args.ping => ping::ping(&args).await,
        _ if args.clusters.any() => match (args.mode, args.idle, args.request, args.raw) {
            (None, None, false, false) => spread::pubsub_spread(&args).await,
            _ => Err("--cluster measures publish/subscribe with herald-client only".into()),
        },
        (Some(mode), _, _, _) => js::run(&args, mode).await,
        (None, Some(n), _, _) => idle::idle(&args, n).await,
        (None, None, true, false) => request::request(&args).await,
        (None, None, true, true) => request::request_raw(&args).await,
        (None, None, false, true) => raw::pubsub_raw(&args).await,
        (None, None, false, false) => pubsub::pubsub_nats(&args).await,
    }
    .map_err(|e| e.to_string())?;
    // A mode with untimed setup (a prefill) measured the CPU of its timed part itself.
    if !report.cpu_timed {
        whole_run.record(&args, &mut report);
    }
    // A mode that measured memory itself (idle streams, while open) keeps its reading.
    if report.server_rss_kib.is_none() {
        report.server_rss_kib = args.server_rss();
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}
