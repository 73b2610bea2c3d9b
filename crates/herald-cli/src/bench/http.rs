//! HTTP modes, against herald's HTTP door or any server with a publish URL and an event
//! stream URL (nginx with nchan is the peer in `bench/compare-http.sh`):
//!
//! - `--http-pub URL` alone: `--pubs` keep-alive connections POST `--msgs` messages in total,
//!   each connection one request at a time; the publish rate.
//! - with `--sse URL` and `--subs N`: N event-stream clients, then messages POSTed to
//!   `--http-pub`; delivered events per second over all clients and the latency from POST to
//!   receipt. Publishers stay within a window of the average client, so the run measures what
//!   the server sustains without dropping anyone.
//! - `--sse URL --idle N` (with `--server-pid`): N idle event streams and the server's memory
//!   per stream.
//!
//! A payload is text, `T` and the 19-digit send time in nanoseconds, padded to `--size`, so
//! any server's event data (herald's JSON envelope, nchan's raw payload) carries it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::measure::{Flow, REPORT_EVERY, histogram, split};
use super::report::{Latency, Report, base, progress};
use super::{BenchArgs, Result};

/// Messages a publisher may be ahead of the average event-stream client.
const SSE_WINDOW: u64 = 512;

fn client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .tcp_nodelay(true)
        .build()?)
}

/// A payload of `size` bytes (at least 20) stamped with the time since `base`.
fn payload(size: usize, base: Instant) -> Bytes {
    let mut text = format!("T{:019}", base.elapsed().as_nanos() as u64);
    while text.len() < size {
        text.push('x');
    }
    Bytes::from(text)
}

/// The send time stamped in an event's data, if it carries one.
fn stamp_in(data: &[u8]) -> Option<u64> {
    let at = data
        .windows(20)
        .position(|w| w[0] == b'T' && w[1..].iter().all(u8::is_ascii_digit))?;
    std::str::from_utf8(&data[at + 1..at + 20])
        .ok()?
        .parse()
        .ok()
}

/// POSTs `count` messages on one connection, one at a time, waiting on `flow`.
async fn publish(
    url: String,
    count: u64,
    size: usize,
    base: Instant,
    flow: Arc<Flow>,
    idle: Duration,
    raw: bool,
) -> Result {
    if raw {
        return raw::publish(&url, count, size, base, &flow, idle).await;
    }
    let client = client()?;
    for _ in 0..count {
        flow.admit(1, idle).await?;
        let response = client.post(&url).body(payload(size, base)).send().await?;
        let status = response.status();
        response.bytes().await?;
        if !status.is_success() {
            return Err(format!("publish answered {status}").into());
        }
    }
    Ok(())
}

/// `--http-pub` without `--sse`: the publish rate.
pub(super) async fn publish_only(args: &BenchArgs, url: &str) -> Result<Report> {
    let base_time = Instant::now();
    let flow = Arc::new(Flow::new(0, args.size));
    let start = Instant::now();
    let tasks: Vec<_> = split(args.msgs, args.pubs)
        .into_iter()
        .map(|n| {
            tokio::spawn(publish(
                url.to_owned(),
                n,
                args.size.max(20),
                base_time,
                flow.clone(),
                args.idle_timeout,
                args.http_raw,
            ))
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut report = base(args, "http-pub");
    report.client = if args.http_raw { "http-raw" } else { "http" };
    report.publish_rate = args.msgs as f64 / elapsed;
    Ok(report)
}

/// One event-stream client: opened (headers received) before this returns; then counts
/// events carrying a stamp and records their latency until `expected` arrived.
async fn open_stream(client: &reqwest::Client, url: &str) -> Result<reqwest::Response> {
    let response = client
        .get(url)
        .header("Accept", "text/event-stream")
        .send()
        .await?;
    if !response.status().is_success() {
        return Err(format!("event stream answered {}", response.status()).into());
    }
    Ok(response)
}

async fn read_stream(
    mut response: reqwest::Response,
    expected: u64,
    base: Instant,
    flow: Arc<Flow>,
    idle: Duration,
) -> Result<(u64, hdrhistogram::Histogram<u64>)> {
    let mut hist = histogram();
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let (mut got, mut unreported) = (0u64, 0u64);
    while got < expected {
        let chunk = match tokio::time::timeout(idle, response.chunk()).await {
            Ok(chunk) => chunk?,
            Err(_) => break,
        };
        let Some(chunk) = chunk else { break };
        buf.extend_from_slice(&chunk);
        let mut consumed = 0;
        while let Some(end) = buf[consumed..].windows(2).position(|w| w == b"\n\n") {
            let event = &buf[consumed..consumed + end];
            consumed += end + 2;
            if let Some(sent) = stamp_in(event) {
                let now = base.elapsed().as_nanos() as u64;
                let _ = hist.record(now.saturating_sub(sent) / 1000);
                got += 1;
                unreported += 1;
                if unreported == REPORT_EVERY.min(SSE_WINDOW / 4) {
                    flow.received(unreported);
                    unreported = 0;
                }
            }
        }
        buf.drain(..consumed);
    }
    flow.received(unreported);
    Ok((got, hist))
}

/// `--sse` with `--subs`: fan-out to event-stream clients.
pub(super) async fn fan_out(args: &BenchArgs, pub_url: &str, sse_url: &str) -> Result<Report> {
    let base_time = Instant::now();
    let mut flow = Flow::new(args.subs, args.size);
    flow.window = SSE_WINDOW;
    let flow = Arc::new(flow);
    let client = client()?;
    let mut streams = Vec::with_capacity(args.subs);
    for _ in 0..args.subs {
        streams.push(open_stream(&client, sse_url).await?);
    }
    let bar = progress(args.msgs * args.subs as u64, "events", args.json);
    let readers: Vec<_> = streams
        .into_iter()
        .map(|response| {
            tokio::spawn(read_stream(
                response,
                args.msgs,
                base_time,
                flow.clone(),
                args.idle_timeout,
            ))
        })
        .collect();
    let start = Instant::now();
    let publishers: Vec<_> = split(args.msgs, args.pubs)
        .into_iter()
        .map(|n| {
            tokio::spawn(publish(
                pub_url.to_owned(),
                n,
                args.size.max(20),
                base_time,
                flow.clone(),
                args.idle_timeout,
                args.http_raw,
            ))
        })
        .collect();
    let ticker = {
        let (flow, bar) = (flow.clone(), bar.clone());
        tokio::spawn(async move {
            loop {
                bar.set_position(flow.total_received());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    for p in publishers {
        p.await??;
    }
    let publish_elapsed = start.elapsed().as_secs_f64();
    let mut hist = histogram();
    let mut received = 0;
    for r in readers {
        let (got, h) = r.await??;
        received += got;
        hist.add(&h)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    ticker.abort();
    bar.finish_and_clear();
    let mut report = base(args, "sse");
    report.client = "http";
    report.publish_rate = args.msgs as f64 / publish_elapsed;
    report.deliver_rate = received as f64 / elapsed;
    report.deliver_mb_s = report.deliver_rate * args.size as f64 / 1e6;
    report.received = received;
    report.expected = args.msgs * args.subs as u64;
    report.latency_us = Latency::from(&hist);
    Ok(report)
}

/// `--sse` with `--idle N`: the server's memory per idle event stream.
pub(super) async fn idle(args: &BenchArgs, sse_url: &str, n: usize) -> Result<Report> {
    let before = args
        .server_rss()
        .ok_or("--idle needs --server-pid (its memory is read from /proc)")?;
    let client = client()?;
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        streams.push(open_stream(&client, sse_url).await?);
    }
    let after = args.server_rss().ok_or("cannot read the server's memory")?;
    let mut report = base(args, "idle");
    report.client = "http";
    report.subs = n;
    report.rss_per_idle_conn_kib = Some(after.saturating_sub(before) as f64 / n as f64);
    report.server_rss_kib = Some(after);
    drop(streams);
    Ok(report)
}

/// `--http-raw`: HTTP/1.1 by hand, for publishing only: a POST written in one piece, the
/// answer's head read up to its blank line and its body by `Content-Length`.
mod raw {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::{Flow, Result, payload};

    /// `http://HOST:PORT/PATH` split into the address and the request target.
    fn split_url(url: &str) -> Result<(&str, &str)> {
        let rest = url
            .strip_prefix("http://")
            .ok_or("--http-raw speaks plain http:// only")?;
        Ok(match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        })
    }

    /// A response head: its status, its length, the body's length, and whether the server
    /// closes the connection after it.
    #[derive(Debug, PartialEq, Eq)]
    pub(super) struct Head {
        pub(super) status: u16,
        pub(super) len: usize,
        pub(super) body: usize,
        pub(super) close: bool,
    }

    /// The head of the response at the start of `buf`; `None` until its blank line arrived.
    pub(super) fn parse_head(buf: &[u8]) -> Result<Option<Head>> {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Ok(None);
        };
        let head = std::str::from_utf8(&buf[..end]).map_err(|_| "response head is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .ok_or("no status line in the response")?;
        let (mut body, mut close) = (0, false);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if name.eq_ignore_ascii_case("content-length") {
                body = value.trim().parse().map_err(|_| "bad Content-Length")?;
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.trim().eq_ignore_ascii_case("close");
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err("--http-raw reads Content-Length bodies only".into());
            }
        }
        Ok(Some(Head {
            status,
            len: end + 4,
            body,
            close,
        }))
    }

    pub(super) async fn publish(
        url: &str,
        count: u64,
        size: usize,
        base: Instant,
        flow: &Arc<Flow>,
        idle: Duration,
    ) -> Result {
        let (host, target) = split_url(url)?;
        let connect = async || -> Result<TcpStream> {
            let socket = TcpStream::connect(host).await?;
            socket.set_nodelay(true)?;
            Ok(socket)
        };
        let mut socket = connect().await?;
        let head = format!(
            "POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
        );
        let mut request = Vec::with_capacity(head.len() + size);
        let mut buf = Vec::with_capacity(4096);
        for _ in 0..count {
            flow.admit(1, idle).await?;
            request.clear();
            request.extend_from_slice(head.as_bytes());
            request.extend_from_slice(&payload(size, base));
            socket.write_all(&request).await?;
            loop {
                if let Some(head) = parse_head(&buf)?
                    && buf.len() >= head.len + head.body
                {
                    if !(200..300).contains(&head.status) {
                        return Err(format!("publish answered {}", head.status).into());
                    }
                    buf.drain(..head.len + head.body);
                    if head.close {
                        // As keep-alive clients do when a server ends the connection.
                        socket = connect().await?;
                        buf.clear();
                    }
                    break;
                }
                let mut chunk = [0u8; 4096];
                let n = tokio::time::timeout(idle, socket.read(&mut chunk))
                    .await
                    .map_err(|_| "no answer to a publish")??;
                if n == 0 {
                    return Err("the server closed the connection".into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn stamps_are_found_in_any_event_data() {
        let base = std::time::Instant::now();
        let p = super::payload(32, base);
        assert_eq!(p.len(), 32);
        let sent = super::stamp_in(&p).unwrap();
        let envelope = format!(
            "event: message\nid: 1\ndata: {{\"subject\":\"bench\",\"data\":\"{}\"}}",
            std::str::from_utf8(&p).unwrap()
        );
        assert_eq!(super::stamp_in(envelope.as_bytes()), Some(sent));
        assert_eq!(super::stamp_in(b": keep-alive"), None);
    }

    #[test]
    fn raw_responses_are_read_by_their_length() {
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        let head = super::raw::parse_head(answer).unwrap().unwrap();
        assert_eq!(
            (head.status, head.len, head.body, head.close),
            (200, 38, 2, false)
        );
        let last = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
        assert!(super::raw::parse_head(last).unwrap().unwrap().close);
        assert_eq!(super::raw::parse_head(&answer[..20]).unwrap(), None);
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(super::raw::parse_head(chunked).is_err());
    }
}
