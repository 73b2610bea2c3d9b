//! The raw client: pre-encoded PUB frames written in large batches, and subscribers that only
//! parse MSG headers, so that the server, not the client, is the bottleneck.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use herald_proto::{Limits, Parsed, ServerOp, parse_server};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::measure::{REPORT_EVERY, histogram, record, split, stamp};
use super::pubsub::{Run, SubResult, finish_pubsub};
use super::report::Report;
use super::warmup::WARMUP_TIMEOUT;
use super::{BenchArgs, Result};
use crate::client::ClientArgs;

/// A byte stream to the server: TCP, or TLS over it.
pub(super) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The raw client's connection: CONNECT sent, INFO consumed.
pub(super) struct RawConn {
    pub(super) socket: Box<dyn Stream>,
    pub(super) buf: BytesMut,
}

/// Reads the plaintext INFO, then starts TLS as NATS clients do, trusting the CA in `ca`.
async fn tls(
    socket: TcpStream,
    ca: &std::path::Path,
    host: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    let mut reader = tokio::io::BufReader::new(socket);
    let mut info = String::new();
    reader.read_line(&mut info).await?;
    if !info.starts_with("INFO ") {
        return Err(format!("expected INFO, got {info:?}").into());
    }
    let socket = reader.into_inner();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca)
        .map_err(|e| format!("{}: {e}", ca.display()))?
    {
        roots.add(cert.map_err(|e| format!("{}: {e}", ca.display()))?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h).to_owned();
    let name = rustls::pki_types::ServerName::try_from(name)?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    Ok(connector.connect(name, socket).await?)
}

impl RawConn {
    /// Connects to the first of `client`'s servers, in its scope.
    pub(super) async fn open(client: &ClientArgs) -> Result<RawConn> {
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
        let socket: Box<dyn Stream> = match &client.tls_ca {
            None => Box::new(socket),
            Some(ca) => Box::new(tls(socket, ca, &host).await?),
        };
        let mut conn = RawConn {
            socket,
            buf: BytesMut::with_capacity(256 * 1024),
        };
        let mut connect = serde_json::json!({"verbose": false, "pedantic": false, "headers": true});
        if let (Some(user), Some(password)) = (&client.user, &client.password) {
            connect["user"] = user.as_str().into();
            connect["pass"] = password.as_str().into();
        } else if let Some(token) = &client.token {
            connect["auth_token"] = token.as_str().into();
        } else if let Some(scope) = &client.scope {
            connect["user"] = scope.as_str().into();
        }
        conn.send(format!("CONNECT {connect}\r\n").as_bytes())
            .await?;
        Ok(conn)
    }

    /// Reads until `until` says stop, calling it on each server operation.
    pub(super) async fn read_until(
        &mut self,
        idle: Duration,
        mut until: impl FnMut(&ServerOp<'_>) -> bool,
    ) -> Result<bool> {
        let limits = read_limits();
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
            if !self.read_more(idle).await? {
                return Ok(false);
            }
        }
    }

    /// One read from the socket into the buffer; false if nothing came within `idle`.
    async fn read_more(&mut self, idle: Duration) -> Result<bool> {
        if self.buf.capacity() - self.buf.len() < 64 * 1024 {
            self.buf.reserve(256 * 1024);
        }
        match tokio::time::timeout(idle, self.socket.read_buf(&mut self.buf)).await {
            Ok(Ok(0)) => Err("the server closed the connection".into()),
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Ok(false),
        }
    }

    /// Calls `each` on every complete operation buffered, reading once first if there is
    /// none; false if nothing came within `idle`.
    pub(super) async fn read_some(
        &mut self,
        idle: Duration,
        mut each: impl FnMut(&ServerOp<'_>),
    ) -> Result<bool> {
        let limits = read_limits();
        if matches!(parse_server(&self.buf, &limits)?, Parsed::Incomplete)
            && !self.read_more(idle).await?
        {
            return Ok(false);
        }
        let mut used = 0;
        while let Parsed::Op(op, n) = parse_server(&self.buf[used..], &limits)? {
            used += n;
            if let ServerOp::Err(text) = op {
                return Err(format!("server error: -ERR '{text}'").into());
            }
            each(&op);
        }
        let _ = self.buf.split_to(used);
        Ok(true)
    }

    /// Writes `bytes` and flushes them: over TLS a write can leave its last record queued in
    /// the session when the socket is full, and a client that then only reads waits for an
    /// answer to what the server never got.
    pub(super) async fn send(&mut self, bytes: &[u8]) -> Result {
        self.socket.write_all(bytes).await?;
        self.socket.flush().await?;
        Ok(())
    }

    /// PING, and wait for the PONG.
    pub(super) async fn round_trip(&mut self, idle: Duration) -> Result {
        self.send(b"PING\r\n").await?;
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

/// What the raw client accepts from a server: payloads up to 64 MiB.
fn read_limits() -> Limits {
    Limits {
        max_payload: 64 * 1024 * 1024,
        ..Limits::default()
    }
}

/// One PUB frame: the command line, the payload, CRLF.
pub(super) fn pub_frame(subject: &str, payload: &[u8]) -> Vec<u8> {
    let mut frame = format!("PUB {subject} {}\r\n", payload.len()).into_bytes();
    frame.extend_from_slice(payload);
    frame.extend_from_slice(b"\r\n");
    frame
}

/// Publish/subscribe with the raw client.
pub(super) async fn pubsub_raw(args: &BenchArgs) -> Result<Report> {
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
            .send_until_heard(async move || Ok(conn.send(&frame).await?))
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
pub(super) async fn raw_subscriber(
    args: &BenchArgs,
    i: usize,
    run: &Arc<Run>,
) -> Result<JoinHandle<SubResult>> {
    let mut conn = RawConn::open(&args.sub_client(i)).await?;
    conn.send(format!("SUB {} 1\r\n", run.subject).as_bytes())
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
pub(super) async fn raw_publisher(mut conn: RawConn, count: u64, run: Arc<Run>) -> Result {
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
        conn.send(bytes).await?;
        sent += n;
        run.show_progress(sent);
    }
    conn.round_trip(run.idle.max(Duration::from_secs(30)))
        .await?;
    Ok(())
}
