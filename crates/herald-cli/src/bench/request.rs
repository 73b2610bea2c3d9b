//! Request/reply: requesters that each wait for every reply, responders in a queue group.
//! With `--raw`, both sides are the raw client and each requester keeps `--inflight`
//! requests waiting for their replies, so that the server rather than the client is the
//! bottleneck.

use std::error::Error;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use herald_proto::server::ServerOp;
use indicatif::ProgressBar;
use tokio::task::JoinHandle;

use super::measure::{histogram, record, split, stamp};
use super::raw::{RawConn, pub_frame};
use super::report::{Latency, Report, base, progress};
use super::warmup::first_answer;
use super::{BenchArgs, Result};
use crate::client::round_trip;

/// Request/reply with async-nats: responders in one queue group (taking the `--sub-server`s in
/// turn), requesters one request at a time. With `--inflight` above 1 each requester keeps
/// that many `request`s waiting (as an application's tasks would), and the responders are raw
/// clients, so that what is measured is the requesting client and the server.
pub(super) async fn request(args: &BenchArgs) -> Result<Report> {
    if args.subs == 0 {
        return Err("--request needs at least one responder (--subs)".into());
    }
    let inflight = args.inflight();
    let mut responders = Vec::new();
    for i in 0..args.subs {
        responders.push(if inflight > 1 {
            raw_responder_on(args, i).await?
        } else {
            responder(args, i).await?
        });
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
            let mut waiting = FuturesUnordered::new();
            for _ in 0..count {
                if waiting.len() >= inflight
                    && let Some(sent) = waiting.next().await
                {
                    let _ = hist.record(Instant::elapsed(&sent?).as_micros() as u64);
                    bar.inc(1);
                }
                let request = client.request(subject.clone(), payload.clone());
                let sent = Instant::now();
                waiting.push(async move { request.await.map(|_| sent) });
            }
            while let Some(sent) = waiting.next().await {
                let _ = hist.record(Instant::elapsed(&sent?).as_micros() as u64);
                bar.inc(1);
            }
            Ok::<_, Box<dyn Error + Send + Sync>>(hist)
        }));
    }
    let mut report = finish(args, start, &bar, requesters, responders).await?;
    report.inflight = Some(inflight);
    Ok(report)
}

/// A requester's latencies, or why it failed.
type Requester = JoinHandle<std::result::Result<Histogram<u64>, Box<dyn Error + Send + Sync>>>;

/// Waits for every requester, stops the responders, and reports the rate and latencies.
async fn finish<R>(
    args: &BenchArgs,
    start: Instant,
    bar: &ProgressBar,
    requesters: Vec<Requester>,
    responders: Vec<JoinHandle<R>>,
) -> Result<Report> {
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

/// Connects raw responder `i` to the queue group and spawns its echo loop.
async fn raw_responder_on(args: &BenchArgs, i: usize) -> Result<JoinHandle<()>> {
    let mut conn = RawConn::open(&args.sub_client(i)).await?;
    conn.send(format!("SUB {} herald-bench 1\r\n", args.subject).as_bytes())
        .await?;
    conn.round_trip(args.idle_timeout).await?;
    Ok(tokio::spawn(raw_responder(conn, args.idle_timeout)))
}

/// Request/reply on the raw client: responders in one queue group echo each request to its
/// reply subject; each requester keeps `--inflight` requests (each with a reply subject of
/// its own under one wildcard inbox, as NATS clients make them) waiting, sending one more
/// for each reply. Latency is from the stamp in the request to its echo.
pub(super) async fn request_raw(args: &BenchArgs) -> Result<Report> {
    if args.subs == 0 {
        return Err("--request needs at least one responder (--subs)".into());
    }
    let mut responders = Vec::new();
    for i in 0..args.subs {
        responders.push(raw_responder_on(args, i).await?);
    }
    let mut conns = Vec::new();
    for i in 0..args.pubs {
        let mut conn = RawConn::open(&args.client).await?;
        conn.send(format!("SUB _INBOX.herald-bench-{i}.* 1\r\n").as_bytes())
            .await?;
        conn.round_trip(args.idle_timeout).await?;
        conns.push(conn);
    }
    let bar = progress(args.msgs, "requests", args.json);
    let base_time = Instant::now();
    let start = Instant::now();
    let mut requesters = Vec::new();
    for ((i, conn), count) in conns
        .into_iter()
        .enumerate()
        .zip(split(args.msgs, args.pubs))
    {
        let (subject, bar) = (args.subject.clone(), bar.clone());
        let (size, inflight, idle) = (args.size.max(8), args.inflight(), args.idle_timeout);
        requesters.push(tokio::spawn(async move {
            let mut conn = conn;
            let mut hist = histogram();
            let mut payload = vec![0u8; size];
            let mut next = 0u64;
            let mut frames = Vec::new();
            let mut ask = |frames: &mut Vec<u8>, next: &mut u64| {
                stamp(&mut payload, base_time);
                let reply = format!("_INBOX.herald-bench-{i}.{next}");
                frames.extend_from_slice(
                    format!("PUB {subject} {reply} {}\r\n", payload.len()).as_bytes(),
                );
                frames.extend_from_slice(&payload);
                frames.extend_from_slice(b"\r\n");
                *next += 1;
            };
            while next < count.min(inflight as u64) {
                ask(&mut frames, &mut next);
            }
            conn.send(&frames).await?;
            let mut answered = 0u64;
            while answered < count {
                let mut got = 0u64;
                let heard = conn
                    .read_some(idle, |op| {
                        if let ServerOp::Msg { payload, .. } = op {
                            if (answered + got).is_multiple_of(16) {
                                record(&mut hist, payload, base_time);
                            }
                            got += 1;
                        }
                    })
                    .await?;
                if !heard {
                    return Err(format!("no reply within {idle:?} ({answered} of {count})").into());
                }
                answered += got;
                frames.clear();
                for _ in 0..got {
                    if next < count {
                        ask(&mut frames, &mut next);
                    }
                }
                if !frames.is_empty() {
                    conn.send(&frames).await?;
                }
                bar.inc(got);
            }
            Ok::<_, Box<dyn Error + Send + Sync>>(hist)
        }));
    }
    let mut report = finish(args, start, &bar, requesters, responders).await?;
    report.inflight = Some(args.inflight());
    Ok(report)
}

/// Echoes every request `conn` receives to its reply subject, a read's worth at a time.
async fn raw_responder(mut conn: RawConn, idle: std::time::Duration) {
    let mut answers = Vec::new();
    loop {
        let read = conn
            .read_some(idle, |op| {
                if let ServerOp::Msg {
                    reply: Some(reply),
                    payload,
                    ..
                } = op
                {
                    answers.extend_from_slice(&pub_frame(reply, payload));
                }
            })
            .await;
        if !matches!(read, Ok(true)) {
            return;
        }
        if !answers.is_empty() {
            if conn.send(&answers).await.is_err() {
                return;
            }
            answers.clear();
        }
    }
}
