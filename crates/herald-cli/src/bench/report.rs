//! What a run measured, and how it is printed (a table, or JSON with `--json`).

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::BenchArgs;

/// What one run measured.
#[derive(Debug, Default, Serialize)]
pub(super) struct Report {
    pub(super) mode: &'static str,
    pub(super) client: &'static str,
    pub(super) pubs: usize,
    pub(super) subs: usize,
    pub(super) size: usize,
    pub(super) msgs: u64,
    /// Messages (or requests) published per second (js-pub: acknowledged; js-consume: the
    /// untimed prefill).
    pub(super) publish_rate: f64,
    /// Messages received per second, over all subscribers (replies with --request).
    pub(super) deliver_rate: f64,
    /// Payload megabytes per second delivered.
    pub(super) deliver_mb_s: f64,
    pub(super) received: u64,
    pub(super) expected: u64,
    pub(super) latency_us: Option<Latency>,
    /// Server CPU time over the run, in cores (1.0 = one core busy the whole time).
    pub(super) server_cpu_cores: Option<f64>,
    /// The part of `server_cpu_cores` spent in the kernel.
    pub(super) server_kernel_cores: Option<f64>,
    /// This client's own CPU time over the run, in cores: with the server's, what the
    /// machine had left (a run whose two add up to every core is bound by the machine).
    pub(super) client_cpu_cores: Option<f64>,
    /// The CPU fields cover the timed part only (not a prefill before it).
    #[serde(skip)]
    pub(super) cpu_timed: bool,
    /// Server resident memory after the run, KiB.
    pub(super) server_rss_kib: Option<u64>,
    /// With --idle: server memory per idle connection, KiB.
    pub(super) rss_per_idle_conn_kib: Option<f64>,
    /// JetStream modes: publishes awaiting their ack at once.
    pub(super) inflight: Option<usize>,
    /// With --mode js-consume: messages per fetch.
    pub(super) batch: Option<usize>,
}

#[derive(Debug, Serialize)]
pub(super) struct Latency {
    pub(super) p50: u64,
    pub(super) p90: u64,
    pub(super) p99: u64,
    pub(super) max: u64,
}

impl Latency {
    pub(super) fn from(h: &Histogram<u64>) -> Option<Latency> {
        (!h.is_empty()).then(|| Latency {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        })
    }
}

pub(super) fn base(args: &BenchArgs, mode: &'static str) -> Report {
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

pub(super) fn print_table(r: &Report) {
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
            "ping" => "round trips",
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
        let kernel = r
            .server_kernel_cores
            .map(|k| format!(" ({k:.2} in the kernel)"))
            .unwrap_or_default();
        println!("server CPU   {cpu:.2} cores{kernel}");
    }
    if let Some(cpu) = r.client_cpu_cores {
        println!("client CPU   {cpu:.2} cores");
    }
}

pub(super) fn progress(total: u64, what: &str, hidden: bool) -> ProgressBar {
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
