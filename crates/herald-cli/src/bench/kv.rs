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

use std::time::Instant;

use async_nats::jetstream::{self, kv, stream};
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::report::{Report, base, progress};
use super::{BenchArgs, Result};

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
    let result = if get {
        gets(&store, args, &value, key).await
    } else {
        puts(js, &store, args, &value, key).await
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
    let start = Instant::now();
    if args.inflight <= 1 {
        for i in 0..args.msgs {
            store.put(key(i), value.clone()).await?;
        }
    } else {
        // What `put` publishes, with a window of acks.
        let mut acks = FuturesUnordered::new();
        for i in 0..args.msgs {
            if acks.len() >= args.inflight {
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
    let elapsed = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let mut report = kv_base(args, "kv-put");
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
    let start = Instant::now();
    let mut gets = FuturesUnordered::new();
    for i in 0..args.msgs {
        if gets.len() >= args.inflight.max(1) {
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
    let elapsed = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let mut report = kv_base(args, "kv-get");
    report.deliver_rate = args.msgs as f64 / elapsed;
    report.received = args.msgs;
    report.expected = args.msgs;
    Ok(report)
}

fn kv_base(args: &BenchArgs, mode: &'static str) -> Report {
    let mut report = base(args, mode);
    report.subs = 0;
    report.inflight = Some(args.inflight);
    report
}
