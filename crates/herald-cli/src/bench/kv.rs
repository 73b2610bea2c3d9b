//! The key-value modes of `herald bench`, with async-nats's own key-value API (the same
//! client against herald and nats-server), on a fresh bucket `--stream` (history 1, file
//! storage, direct gets; its stream made as the client makes it) with `--keys` keys used in
//! turn:
//!
//! - `--mode kv-put`: `--msgs` puts of `--size` bytes. With `--inflight 1` each is
//!   `Store::put` (a publish to `$KV.<bucket>.<key>` and its ack); with more, as many puts
//!   await their ack at once (the same publishes, windowed). The clock runs from the first put
//!   to the last ack.
//! - `--mode kv-get`: puts every key once (untimed), then `--msgs` gets
//!   (`Store::get`, a direct get of the key's last value), `--inflight` at once, each value
//!   checked.
//!
//! With `--raw`, the timed part runs on the raw client (pre-encoded frames, header-only
//! parsing) so that the server rather than async-nats is the bottleneck: puts are publishes
//! to `$KV.<bucket>.<key>` with a reply subject each, gets are direct gets
//! (`$JS.API.DIRECT.GET.KV_<bucket>.$KV.<bucket>.<key>`), `--inflight` awaiting their answer.

use async_nats::jetstream::{self, kv, stream};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use herald_proto::ServerOp;

use super::measure::CpuMark;
use super::raw::RawConn;
use super::report::{Report, base, progress};
use super::{BenchArgs, Result};

/// The reply subjects of the raw modes: the prefix, then the request's number.
const RAW_INBOX: &str = "_INBOX.herald-bench-kv.";

/// Runs `kv-put` (or `kv-get` when `get`).
pub(super) async fn run(js: &jetstream::Context, args: &BenchArgs, get: bool) -> Result<Report> {
    if args.keys == 0 {
        return Err("--keys must be at least 1".into());
    }
    let bucket = args.stream.clone();
    if js.get_key_value(&bucket).await.is_ok() {
        js.delete_key_value(&bucket)
            .await
            .map_err(|e| format!("cannot delete the old bucket {bucket}: {e}"))?;
    }
    // The bucket's stream as the client's `create_key_value` makes it, created directly:
    // async-nats 0.50 asks for the account info first and cannot read nats-server 2.9's.
    js.create_stream(stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        duplicate_window: std::time::Duration::from_secs(120),
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("cannot create bucket {bucket}: {e}"))?;
    let store = js
        .get_key_value(&bucket)
        .await
        .map_err(|e| format!("cannot open bucket {bucket}: {e}"))?;
    let value = bytes::Bytes::from(vec![b'v'; args.size]);
    let key = |i: u64| format!("k{}", i % args.keys as u64);
    let result = match (get, args.raw) {
        (true, false) => gets(&store, args, &value, key).await,
        (false, false) => puts(js, &store, args, &value, key).await,
        (true, true) => {
            for i in 0..args.keys as u64 {
                store.put(key(i), value.clone()).await?;
            }
            raw(args, true, key).await
        }
        (false, true) => raw(args, false, key).await,
    };
    if !args.keep {
        let deleted = js.delete_key_value(&bucket).await;
        if let (Ok(_), Err(err)) = (&result, deleted) {
            return Err(format!("cannot delete bucket {bucket}: {err}").into());
        }
    }
    result
}

/// `kv-put`: timed puts.
async fn puts(
    js: &jetstream::Context,
    store: &kv::Store,
    args: &BenchArgs,
    value: &bytes::Bytes,
    key: impl Fn(u64) -> String,
) -> Result<Report> {
    let bar = progress(args.msgs, "put", args.json);
    let timed = CpuMark::now(args);
    if args.inflight() <= 1 {
        for i in 0..args.msgs {
            store.put(key(i), value.clone()).await?;
        }
    } else {
        // What `put` publishes, with a window of acks.
        let mut acks = FuturesUnordered::new();
        for i in 0..args.msgs {
            if acks.len() >= args.inflight() {
                acks.next().await.expect("a pending ack")?;
            }
            let ack = js
                .publish(format!("$KV.{}.{}", args.stream, key(i)), value.clone())
                .await?;
            acks.push(ack.into_future());
            if i.is_multiple_of(4096) {
                bar.set_position(i);
            }
        }
        while let Some(ack) = acks.next().await {
            ack?;
        }
    }
    let elapsed = timed.elapsed();
    bar.finish_and_clear();
    let mut report = kv_base(args, "kv-put");
    timed.record(args, &mut report);
    report.publish_rate = args.msgs as f64 / elapsed;
    report.received = args.msgs;
    report.expected = args.msgs;
    Ok(report)
}

/// `kv-get`: every key put once, then timed gets.
async fn gets(
    store: &kv::Store,
    args: &BenchArgs,
    value: &bytes::Bytes,
    key: impl Fn(u64) -> String,
) -> Result<Report> {
    for i in 0..args.keys as u64 {
        store.put(key(i), value.clone()).await?;
    }
    let bar = progress(args.msgs, "get", args.json);
    let check = |got: Option<bytes::Bytes>| -> Result<()> {
        match got {
            Some(v) if v.len() == value.len() => Ok(()),
            other => Err(format!("a get returned {other:?}").into()),
        }
    };
    let timed = CpuMark::now(args);
    let mut gets = FuturesUnordered::new();
    for i in 0..args.msgs {
        if gets.len() >= args.inflight() {
            check(gets.next().await.expect("a pending get")?)?;
        }
        gets.push(store.get(key(i)));
        if i.is_multiple_of(4096) {
            bar.set_position(i);
        }
    }
    while let Some(got) = gets.next().await {
        check(got?)?;
    }
    let elapsed = timed.elapsed();
    bar.finish_and_clear();
    let mut report = kv_base(args, "kv-get");
    // Without the puts of every key before.
    timed.record(args, &mut report);
    report.deliver_rate = args.msgs as f64 / elapsed;
    report.received = args.msgs;
    report.expected = args.msgs;
    Ok(report)
}

fn kv_base(args: &BenchArgs, mode: &'static str) -> Report {
    let mut report = base(args, mode);
    report.subs = 0;
    report.inflight = Some(args.inflight());
    report
}

/// The timed part of `--raw`: puts (publishes with acks) or direct gets, `--inflight` at
/// once, each answer checked.
async fn raw(args: &BenchArgs, get: bool, key: impl Fn(u64) -> String) -> Result<Report> {
    let mut conn = RawConn::open(&args.client).await?;
    conn.send(format!("SUB {RAW_INBOX}* 1\r\n").as_bytes())
        .await?;
    conn.round_trip(args.idle_timeout).await?;
    let bucket = &args.stream;
    let expected_ack = format!("{{\"stream\":\"KV_{bucket}\"");
    let value = vec![b'v'; args.size];
    let bar = progress(args.msgs, if get { "get" } else { "put" }, args.json);
    let mut out = Vec::with_capacity(64 * 1024);
    let (mut sent, mut answered) = (0u64, 0u64);
    let refill = (args.inflight() as u64 / 4).max(1);
    let timed = CpuMark::now(args);
    while answered < args.msgs {
        out.clear();
        while sent < args.msgs && sent - answered < args.inflight() as u64 {
            let k = key(sent);
            if get {
                out.extend_from_slice(
                    format!("PUB $JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}.{k} {RAW_INBOX}{sent} 0\r\n\r\n")
                        .as_bytes(),
                );
            } else {
                out.extend_from_slice(
                    format!("PUB $KV.{bucket}.{k} {RAW_INBOX}{sent} {}\r\n", value.len())
                        .as_bytes(),
                );
                out.extend_from_slice(&value);
                out.extend_from_slice(b"\r\n");
            }
            sent += 1;
        }
        if !out.is_empty() {
            conn.send(&out).await?;
        }
        let before = answered;
        let mut bad = None;
        let progressed = conn
            .read_until(args.idle_timeout, |op| {
                match op {
                    ServerOp::Msg { payload, .. } if !get => {
                        if !payload.starts_with(expected_ack.as_bytes()) {
                            bad = Some(String::from_utf8_lossy(payload).into_owned());
                            return true;
                        }
                        answered += 1;
                    }
                    ServerOp::HMsg {
                        headers, payload, ..
                    } if get => {
                        if payload.len() != args.size || headers.starts_with(b"NATS/1.0 ") {
                            bad = Some(String::from_utf8_lossy(headers).trim().to_owned());
                            return true;
                        }
                        answered += 1;
                    }
                    ServerOp::Msg { payload, .. } | ServerOp::HMsg { payload, .. } => {
                        bad = Some(String::from_utf8_lossy(payload).into_owned());
                        return true;
                    }
                    _ => {}
                }
                answered - before >= refill || answered == sent
            })
            .await?;
        if let Some(bad) = bad {
            return Err(format!("unexpected answer: {bad}").into());
        }
        if !progressed {
            return Err(format!("no answer within {:?}", args.idle_timeout).into());
        }
        bar.set_position(answered);
    }
    let elapsed = timed.elapsed();
    bar.finish_and_clear();
    let mut report = kv_base(args, if get { "kv-get" } else { "kv-put" });
    timed.record(args, &mut report);
    if get {
        report.deliver_rate = answered as f64 / elapsed;
    } else {
        report.publish_rate = answered as f64 / elapsed;
    }
    report.received = answered;
    report.expected = args.msgs;
    Ok(report)
}
