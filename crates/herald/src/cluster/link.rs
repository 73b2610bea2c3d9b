//! Routes: one TCP connection between two nodes, its handshake, and its two loops.
//!
//! **Handshake** (nothing else is read or sent before it succeeds; 5 s to finish): the frames
//! and checks of `handshake`, each frame the JSON of a `ROUTE`; a refused peer hears why
//! (`-ERR 'cluster name mismatch'`, `-ERR 'authentication failed'`) before the close.
//!
//! **Sending**: a [`Link`] is the delivery target of every remote interest it carries (one
//! [`ScopeRoute`] per scope). Messages are encoded into one buffer under a short lock; the
//! writer task swaps the buffer out and writes it in one call, so whatever accumulates while a
//! write is in flight leaves together. Past `route_max_pending` queued bytes, or a write
//! blocked for 10 s, the route is closed (and dialled again) instead of growing.
//!
//! **Receiving**: the reader parses frames in place and applies them: `RS+`/`RS-` change the
//! peer's entries in the scope indexes, `RMSG` is fanned out to local subscriptions only.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use herald_proto::route::{self, Queues, RouteMsg, RouteOp, parse_route};
use herald_proto::{Limits, Parsed};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

use super::handshake::{self, Dial, Refused};
use super::{Cluster, Peer, RouteInfo};
use crate::batch::{Batch, Wake};
use crate::dispatch::Reach;
use crate::scope::{Scope, Sink, WireMessage};
use crate::target::{Delivery, Target};

/// What a node sends on each route when it shuts down gracefully.
const GOODBYE: &str = "node shut down";
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// Frames a route accepts: roomy control lines (up to 32 queue groups), payloads up to 64 MiB.
const LIMITS: Limits = Limits {
    max_control_line: 16 * 1024,
    max_payload: 64 * 1024 * 1024,
};

/// A route's reading half: a TCP socket's, or a TLS stream's.
type RouteRead = Box<dyn AsyncRead + Send + Unpin>;
/// A route's writing half.
type RouteWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Splits a plaintext route.
fn plain(stream: TcpStream) -> (RouteRead, RouteWrite) {
    let (rd, wr) = stream.into_split();
    (Box::new(rd), Box::new(wr))
}

/// Splits a TLS route.
fn secure<S>(stream: S) -> (RouteRead, RouteWrite)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    (Box::new(rd), Box::new(wr))
}

/// Writes all of `bytes` and flushes (a TLS stream may hold the last record until then).
async fn write_flush(wr: &mut RouteWrite, bytes: &[u8]) -> std::io::Result<()> {
    wr.write_all(bytes).await?;
    wr.flush().await
}

/// Reads the next handshake frame: the JSON of a ROUTE, or why there is none.
async fn read_route(rd: &mut RouteRead, buf: &mut BytesMut) -> Result<Vec<u8>, String> {
    loop {
        match parse_route(buf, &LIMITS) {
            Ok(Parsed::Op(op, used)) => {
                let out = match op {
                    RouteOp::Route(json) => Ok(json.to_vec()),
                    RouteOp::Err(text) => Err(format!("refused by the peer: {text}")),
                    _ => Err("expected ROUTE during the handshake".to_owned()),
                };
                buf.advance(used);
                return out;
            }
            Ok(Parsed::Incomplete) => {}
            Err(e) => return Err(format!("handshake: {e}")),
        }
        buf.reserve(4096);
        match rd.read_buf(buf).await {
            Ok(0) => return Err("closed during the handshake".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("handshake read: {e}")),
        }
    }
}

async fn refuse(wr: &mut RouteWrite, text: &str) {
    let mut out = Vec::new();
    herald_proto::encode::err(&mut out, text);
    let _ = tokio::time::timeout(Duration::from_secs(1), write_flush(wr, &out)).await;
}

/// Sends one handshake frame (the JSON of a ROUTE).
async fn send_route(wr: &mut RouteWrite, json: &[u8]) -> Result<(), Refused> {
    let mut out = Vec::new();
    route::route(&mut out, json);
    write_flush(wr, &out).await.map_err(|e| Refused {
        tell_peer: None,
        why: format!("handshake write: {e}"),
    })
}

/// Tells the peer why it is refused (if it should hear), and gives the reason for the log.
async fn refused(wr: &mut RouteWrite, refusal: Refused) -> String {
    if let Some(text) = refusal.tell_peer {
        refuse(wr, text).await;
    }
    refusal.why
}

/// The dialler's side of the handshake; returns who answered.
async fn dial_handshake(
    cluster: &Cluster,
    rd: &mut RouteRead,
    wr: &mut RouteWrite,
    buf: &mut BytesMut,
) -> Result<Peer, String> {
    let local = cluster.local();
    let (dial, hello) = Dial::start(&local, handshake::nonce().map_err(|r| r.why)?);
    if let Err(r) = send_route(wr, &hello).await {
        return Err(r.why);
    }
    let answer = read_route(rd, buf).await?;
    let (peer, proof) = match dial.finish(&local, &answer) {
        Ok(done) => done,
        Err(r) => return Err(refused(wr, r).await),
    };
    send_route(wr, &proof).await.map_err(|r| r.why)?;
    Ok(peer)
}

/// The acceptor's side of the handshake; returns who dialled.
async fn accept_handshake(
    cluster: &Cluster,
    rd: &mut RouteRead,
    wr: &mut RouteWrite,
    buf: &mut BytesMut,
) -> Result<Peer, String> {
    let local = cluster.local();
    let hello = read_route(rd, buf).await?;
    let nonce = handshake::nonce().map_err(|r| r.why)?;
    let (accept, answer) = match handshake::accept(&local, &hello, nonce) {
        Ok(accepted) => accepted,
        Err(r) => return Err(refused(wr, r).await),
    };
    send_route(wr, &answer).await.map_err(|r| r.why)?;
    let proof = read_route(rd, buf).await?;
    match accept.finish(&local, &proof) {
        Ok(peer) => Ok(peer),
        Err(r) => Err(refused(wr, r).await),
    }
}

/// Accepts routes until the node closes; each connection is handled on its own task.
pub(super) async fn accept_loop(cluster: Arc<Cluster>, listener: TcpListener) {
    let mut closing = cluster.closing.subscribe();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = closing.wait_for(|c| *c) => return,
        };
        match accepted {
            Ok((stream, addr)) => {
                tokio::spawn(accepted_route(cluster.clone(), stream, addr));
            }
            Err(err) => {
                // Out of descriptors and the like: wait a little instead of spinning.
                tracing::warn!(%err, "accepting a route");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn accepted_route(cluster: Arc<Cluster>, stream: TcpStream, addr: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let shake = async {
        let (mut rd, mut wr) = match &cluster.tls {
            None => plain(stream),
            Some(tls) => match tls.acceptor.accept(stream).await {
                Ok(stream) => secure(stream),
                Err(err) => return Err(format!("TLS: {err}")),
            },
        };
        let mut buf = BytesMut::with_capacity(4096);
        let peer = accept_handshake(&cluster, &mut rd, &mut wr, &mut buf).await?;
        Ok((peer, rd, wr, buf))
    };
    let (peer, rd, wr, buf) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, shake).await {
        Ok(Ok((peer, ..))) if peer == cluster.me => {
            tracing::warn!(%addr, "a route from this node to itself; closed");
            return;
        }
        Ok(Ok(accepted)) => accepted,
        Ok(Err(why)) => {
            tracing::warn!(%addr, "refused route: {why}");
            return;
        }
        Err(_) => {
            tracing::warn!(%addr, "refused route: no handshake within {HANDSHAKE_TIMEOUT:?}");
            return;
        }
    };
    run(cluster, peer, addr, Direction::In, rd, wr, buf).await;
}

/// Dials `peer` and keeps a route to it while it is a member: after a failure or a close,
/// dials again with a backoff (50 ms doubling to 2 s).
pub(super) async fn dial_loop(cluster: Arc<Cluster>, peer: Peer, mut addr: SocketAddr) {
    let mut backoff = Duration::from_millis(50);
    let mut closing = cluster.closing.subscribe();
    let mut failures = 0u32;
    while !*closing.borrow() {
        match dial(&cluster, &peer, addr).await {
            Ok((rd, wr, buf)) => {
                backoff = Duration::from_millis(50);
                failures = 0;
                run(
                    cluster.clone(),
                    peer.clone(),
                    addr,
                    Direction::Out,
                    rd,
                    wr,
                    buf,
                )
                .await;
            }
            Err(why) => {
                failures += 1;
                // The first failure is news; repeats are noise until they stop.
                if failures == 1 {
                    tracing::warn!(peer = %peer, %addr, "cannot open route: {why}");
                } else {
                    tracing::debug!(peer = %peer, %addr, failures, "cannot open route: {why}");
                }
            }
        }
        match cluster.member_addr(&peer) {
            Some(a) => addr = a,
            None => break,
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = closing.wait_for(|c| *c) => break,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
    cluster.done_dialing(&peer);
}

async fn dial(
    cluster: &Cluster,
    peer: &Peer,
    addr: SocketAddr,
) -> Result<(RouteRead, RouteWrite, BytesMut), String> {
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("no answer within {HANDSHAKE_TIMEOUT:?}"))?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let shake = async {
        let (mut rd, mut wr) = match &cluster.tls {
            None => plain(stream),
            Some(tls) => {
                let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
                match tls.connector.connect(name, stream).await {
                    Ok(stream) => secure(stream),
                    Err(err) => return Err(format!("TLS: {err}")),
                }
            }
        };
        let mut buf = BytesMut::with_capacity(4096);
        let answered = dial_handshake(cluster, &mut rd, &mut wr, &mut buf).await?;
        Ok((answered, rd, wr, buf))
    };
    let (answered, rd, wr, buf) = tokio::time::timeout(HANDSHAKE_TIMEOUT, shake)
        .await
        .map_err(|_| format!("no handshake within {HANDSHAKE_TIMEOUT:?}"))??;
    if answered != *peer {
        return Err(format!(
            "{addr} answered as {answered}, not {peer}; the member list is stale"
        ));
    }
    Ok((rd, wr, buf))
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    In,
    Out,
}

/// An established route: its outbound buffer, counters, and the peer's interest here.
pub(crate) struct Link {
    pub(crate) peer: Peer,
    pub(crate) addr: SocketAddr,
    direction: Direction,
    out: Mutex<Out>,
    wake: tokio::sync::Notify,
    closing: watch::Sender<Option<String>>,
    max_pending: usize,
    remote: Mutex<FxHashMap<Arc<str>, RemoteScope>>,
    msgs_out: AtomicU64,
    msgs_in: AtomicU64,
    bytes_out: AtomicU64,
    bytes_in: AtomicU64,
}

struct Out {
    buf: Vec<u8>,
    closed: bool,
    /// Answers owed for our PINGs, in the order sent.
    pongs: VecDeque<oneshot::Sender<()>>,
}

/// The peer's interest in one scope: its index entries here, all targeting one [`ScopeRoute`].
struct RemoteScope {
    scope: Arc<Scope>,
    target: Arc<dyn Target>,
    subs: FxHashMap<RemoteKey, (Arc<str>, u64)>,
}

/// A peer's interest in a scope: (pattern, queue group).
type RemoteKey = (Box<str>, Option<Box<str>>);

impl Link {
    fn new(cluster: &Cluster, peer: Peer, addr: SocketAddr, direction: Direction) -> Link {
        Link {
            peer,
            addr,
            direction,
            out: Mutex::new(Out {
                buf: Vec::new(),
                closed: false,
                pongs: VecDeque::new(),
            }),
            wake: tokio::sync::Notify::new(),
            closing: watch::Sender::new(None),
            max_pending: cluster.route_max_pending,
            remote: Mutex::default(),
            msgs_out: AtomicU64::new(0),
            msgs_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
        }
    }

    /// Queues `bytes` unless closed or over the limit; says whether they were queued.
    fn queue(self: &Arc<Self>, write: impl FnOnce(&mut Vec<u8>)) -> bool {
        let mut out = self.out.lock();
        if out.closed {
            return false;
        }
        if out.buf.len() > self.max_pending {
            out.closed = true;
            drop(out);
            self.fail(format!(
                "the peer reads too slowly ({} bytes queued)",
                self.max_pending
            ));
            return false;
        }
        let was_empty = out.buf.is_empty();
        write(&mut out.buf);
        drop(out);
        if was_empty {
            Batch::wake(self);
        }
        true
    }

    /// Queues `RS+`/`RS-`.
    pub(crate) fn send_interest(
        self: &Arc<Self>,
        add: bool,
        scope: &str,
        pattern: &str,
        queue: Option<&str>,
    ) {
        self.queue(|buf| route::interest(buf, add, scope, pattern, queue));
    }

    /// Queues a PING; the receiver completes when its PONG arrives, fails if the route closes.
    pub(crate) fn ping(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut out = self.out.lock();
        if !out.closed {
            let was_empty = out.buf.is_empty();
            out.buf.extend_from_slice(b"PING\r\n");
            out.pongs.push_back(tx);
            drop(out);
            if was_empty {
                self.wake.notify_one();
            }
        }
        rx
    }

    /// Says goodbye (`-ERR 'node shut down'`, so the peer neither redials nor waits for the
    /// failure detector) and closes.
    pub(crate) fn leave(&self) {
        {
            let mut out = self.out.lock();
            if !out.closed {
                herald_proto::encode::err(&mut out.buf, GOODBYE);
            }
        }
        self.fail("node shut down".into());
    }

    /// Marks the route for closing; its tasks do the cleanup (never the caller, who may be a
    /// publisher inside the index).
    pub(crate) fn fail(&self, why: String) {
        self.out.lock().closed = true;
        self.closing.send_if_modified(|reason| {
            if reason.is_none() {
                *reason = Some(why);
                true
            } else {
                false
            }
        });
        self.wake.notify_one();
    }

    pub(crate) fn info(&self) -> RouteInfo {
        RouteInfo {
            direction: match self.direction {
                Direction::In => "in",
                Direction::Out => "out",
            }
            .into(),
            interest: self.remote.lock().values().map(|r| r.subs.len()).sum(),
            msgs_out: self.msgs_out.load(Ordering::Relaxed),
            msgs_in: self.msgs_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
        }
    }

    /// Applies the peer's `RS+`/`RS-`.
    fn remote_interest(
        self: &Arc<Self>,
        cluster: &Cluster,
        add: bool,
        scope: &str,
        pattern: &str,
        queue: Option<&str>,
    ) {
        let mut remote = self.remote.lock();
        let key = (Box::<str>::from(pattern), queue.map(Box::<str>::from));
        if !add {
            if let Some(r) = remote.get_mut(scope)
                && let Some((pattern, id)) = r.subs.remove(&key)
            {
                r.scope.remove(&pattern, id);
                if r.subs.is_empty()
                    && let Some(r) = remote.remove(scope)
                {
                    drop(remote);
                    r.scope.release(1);
                }
            }
            return;
        }
        let Some(node) = cluster.scopes() else { return };
        let r = remote.entry(scope.into()).or_insert_with(|| {
            let scope = node.scope(scope);
            RemoteScope {
                target: Arc::new(ScopeRoute {
                    link: self.clone(),
                    scope: scope.name.clone(),
                }),
                scope,
                subs: FxHashMap::default(),
            }
        });
        if r.subs.contains_key(&key) {
            return;
        }
        match r
            .scope
            .add(pattern, queue, 0, 0, Sink::Target(r.target.clone()), false)
        {
            Ok(entry) => {
                r.subs.insert(key, (entry.pattern.clone(), entry.id));
            }
            Err(err) => {
                tracing::warn!(peer = %self.peer, %err, "ignored invalid interest from the peer");
            }
        }
    }

    /// Removes every entry of the peer from the scope indexes.
    fn drop_remote_interest(&self) {
        let remote = std::mem::take(&mut *self.remote.lock());
        for r in remote.into_values() {
            for (pattern, id) in r.subs.into_values() {
                r.scope.remove(&pattern, id);
            }
            r.scope.release(1);
        }
    }
}

impl Wake for Link {
    fn wake(&self) {
        self.wake.notify_one();
    }
}

/// The delivery target for a peer's interest in one scope: forwards to the link, naming the
/// scope.
struct ScopeRoute {
    link: Arc<Link>,
    scope: Arc<str>,
}

impl Target for ScopeRoute {
    fn deliver(&self, _sid: u64, msg: &Delivery<'_>) -> bool {
        self.forward(msg, &[])
    }

    fn is_local(&self) -> bool {
        false
    }

    fn forward(&self, msg: &Delivery<'_>, queues: &[&str]) -> bool {
        let frame = RouteMsg {
            scope: &self.scope,
            subject: msg.subject(),
            to: msg.delivered_to(),
            reply: msg.reply(),
            queues: Queues::List(queues),
            headers: msg.header_block(),
            payload: msg.payload(),
        };
        let queued = self.link.queue(|buf| route::message_op(buf, &frame));
        if queued {
            self.link.msgs_out.fetch_add(1, Ordering::Relaxed);
        }
        queued
    }
}

/// Runs an established route until it closes, then removes the peer's interest.
async fn run(
    cluster: Arc<Cluster>,
    peer: Peer,
    addr: SocketAddr,
    direction: Direction,
    rd: RouteRead,
    wr: RouteWrite,
    buf: BytesMut,
) {
    let link = Arc::new(Link::new(&cluster, peer, addr, direction));
    if !cluster.attach(&link) {
        tracing::info!(peer = %link.peer, %addr, "a route to this peer is already up; closed the new one");
        return;
    }
    tracing::info!(peer = %link.peer, %addr, ?direction, "route up");
    let writer = tokio::spawn(write_loop(link.clone(), wr));
    let mut closing = link.closing.subscribe();
    let mut node_closing = cluster.closing.subscribe();
    tokio::select! {
        result = read_loop(&cluster, &link, rd, buf) => {
            let why = match result {
                Ok(()) => "closed by the peer".to_owned(),
                Err(why) => why,
            };
            link.fail(why);
        }
        _ = closing.wait_for(Option::is_some) => {}
        _ = node_closing.wait_for(|c| *c) => link.leave(),
    }
    // Gives the writer a moment to send what is queued (a -ERR, a last message).
    if tokio::time::timeout(Duration::from_secs(1), writer)
        .await
        .is_err()
    {
        tracing::debug!(peer = %link.peer, "route writer did not finish in time");
    }
    cluster.detach(&link);
    link.drop_remote_interest();
    let why = link.closing.borrow().clone().unwrap_or_default();
    if why == "the peer shut down" || why == "node shut down" {
        tracing::info!(peer = %link.peer, %addr, "route closed: {why}");
    } else {
        tracing::warn!(peer = %link.peer, %addr, "route closed: {why}");
    }
    // Wake whoever waits for a PONG: the route is gone.
    link.out.lock().pongs.clear();
}

async fn write_loop(link: Arc<Link>, mut wr: RouteWrite) {
    let mut spare = Vec::new();
    loop {
        let closed = {
            let mut out = link.out.lock();
            if out.buf.is_empty() {
                out.closed
            } else {
                std::mem::swap(&mut out.buf, &mut spare);
                false
            }
        };
        if spare.is_empty() {
            if closed {
                return;
            }
            link.wake.notified().await;
            continue;
        }
        match tokio::time::timeout(WRITE_DEADLINE, write_flush(&mut wr, &spare)).await {
            Ok(Ok(())) => {
                link.bytes_out
                    .fetch_add(spare.len() as u64, Ordering::Relaxed);
            }
            Ok(Err(err)) => return link.fail(format!("write: {err}")),
            Err(_) => {
                return link.fail(format!("a write was blocked for {WRITE_DEADLINE:?}"));
            }
        }
        spare.clear();
        if spare.capacity() > 1024 * 1024 {
            spare = Vec::new();
        }
    }
}

async fn read_loop(
    cluster: &Cluster,
    link: &Arc<Link>,
    mut rd: RouteRead,
    mut buf: BytesMut,
) -> Result<(), String> {
    // Scopes are looked up once per read, not per message, and let go of after it so that
    // they can be reclaimed. The node itself is not held, so dropping every handle to it
    // still shuts it down.
    let mut scopes: FxHashMap<Box<str>, Arc<Scope>> = FxHashMap::default();
    loop {
        let mut at = 0;
        // Writers of local subscribers (and routes) are woken once per read, not per message.
        let batch = Batch::open();
        loop {
            match parse_route(&buf[at..], &LIMITS) {
                Ok(Parsed::Op(op, used)) => {
                    at += used;
                    match op {
                        RouteOp::Msg(m) => {
                            link.msgs_in.fetch_add(1, Ordering::Relaxed);
                            let scope = match scopes.get(m.scope) {
                                Some(s) => s,
                                None => {
                                    let Some(node) = cluster.scopes() else {
                                        return Err("node shut down".into());
                                    };
                                    // A scope that is gone has nobody left to deliver to.
                                    let Some(scope) = node.get(m.scope) else {
                                        continue;
                                    };
                                    scopes.entry(m.scope.into()).or_insert(scope)
                                }
                            };
                            if let Some(to) = m.to {
                                // A stored message for an inbox here: delivered to `to`,
                                // shown under the subject it was stored under.
                                let headers = m.headers.map(bytes::Bytes::copy_from_slice);
                                let payload = bytes::Bytes::copy_from_slice(m.payload);
                                scope.send_as(
                                    to,
                                    m.subject,
                                    m.reply,
                                    headers.as_ref(),
                                    &payload,
                                    Reach::Local,
                                );
                                continue;
                            }
                            let wire = WireMessage {
                                subject: m.subject,
                                reply: m.reply,
                                headers: m.headers,
                                payload: m.payload,
                            };
                            if let Err(err) = scope.send_wire(&wire, Reach::Routed(m.queues)) {
                                tracing::debug!(peer = %link.peer, %err, "dropped a routed message");
                            }
                        }
                        RouteOp::Interest {
                            add,
                            scope,
                            pattern,
                            queue,
                        } => link.remote_interest(cluster, add, scope, pattern, queue),
                        RouteOp::Ping => {
                            link.queue(|b| b.extend_from_slice(b"PONG\r\n"));
                        }
                        RouteOp::Pong => {
                            if let Some(tx) = link.out.lock().pongs.pop_front() {
                                let _ = tx.send(());
                            }
                        }
                        RouteOp::Err(GOODBYE) => {
                            cluster.peer_left(&link.peer);
                            return Err("the peer shut down".into());
                        }
                        RouteOp::Err(text) => return Err(format!("the peer reported: {text}")),
                        RouteOp::Route(_) => return Err("ROUTE after the handshake".into()),
                    }
                }
                Ok(Parsed::Incomplete) => break,
                Err(err) => {
                    let text = format!("protocol error: {err}");
                    link.queue(|b| herald_proto::encode::err(b, &text));
                    return Err(text);
                }
            }
        }
        drop(batch);
        scopes.clear();
        buf.advance(at);
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => return Ok(()),
            Ok(n) => {
                link.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(err) => return Err(format!("read: {err}")),
        }
    }
}
