//! One client connection: its reader task parses the NATS protocol and acts on it; its writer
//! task ([`Outbound::run_writer`]) drains what publishers queue for it.
//!
//! The reader reads as much as the socket has (the buffer grows under load and shrinks when
//! idle), parses every complete operation in place, and only then goes back to the socket.
//! A PUB is routed straight from the read buffer: subscribers that are network clients copy
//! its bytes into their outbound buffers during the call, and their writers are woken once per
//! read buffer ([`Batch`](herald::batch::Batch)).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Buf, BytesMut};
use herald::{Router, TargetSubscription, WireMessage};
use herald_proto::{ClientOp, Parsed, encode, parse_client};
use rustc_hash::FxHashMap;
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::auth::{Permissions, Presented, Responses, User};
use crate::outbound::{Close, Outbound, Socket, SubTarget};
use crate::registry::{ClientMeta, Connection};
use crate::services::GroupsLease;
use crate::shared::Shared;
use herald::batch::Batch;

/// The smallest and largest read the reader offers the socket.
const MIN_READ: usize = 512;
const MAX_READ: usize = 64 * 1024;

/// The options a client sends in CONNECT. Fields not listed (auth, tls, nkeys) are ignored, as
/// nats-server ignores what it does not use; a missing field keeps nats-server's default.
// No `Debug`: it would print the password and token fields.
#[derive(Clone, Deserialize)]
#[serde(default)]
struct ConnectOptions {
    verbose: bool,
    pedantic: bool,
    echo: bool,
    headers: bool,
    no_responders: bool,
    name: Option<String>,
    lang: Option<String>,
    version: Option<String>,
    /// herald's extension: the scope this connection publishes and subscribes in.
    scope: Option<String>,
    /// Without authentication configured, the user name selects the scope (so any NATS client
    /// can pick one: `nats://scope:@host:port`, or a user option); the password is ignored.
    user: Option<String>,
    /// Likewise for a token, when there is no user: nats-py and nats.go send the user of a
    /// password-less URL (`nats://scope@host`) as `auth_token`.
    auth_token: Option<String>,
    /// The password that goes with `user`, when users are configured.
    pass: Option<String>,
    /// An nkey user's public key, and its signature of the INFO nonce.
    nkey: Option<String>,
    sig: Option<String>,
}

impl Default for ConnectOptions {
    /// nats-server treats a connection as verbose and pedantic until CONNECT says otherwise.
    fn default() -> Self {
        ConnectOptions {
            verbose: true,
            pedantic: true,
            echo: true,
            headers: false,
            no_responders: false,
            name: None,
            lang: None,
            version: None,
            scope: None,
            user: None,
            auth_token: None,
            pass: None,
            nkey: None,
            sig: None,
        }
    }
}

/// A client subscription as the reader keeps it.
struct ClientSub {
    handle: TargetSubscription,
    target: Arc<SubTarget>,
}

/// The reader side of a connection.
struct Conn {
    id: u64,
    /// [`Shared::info_changes`] when this connection's greeting INFO was made.
    greeted: u64,
    shared: Arc<Shared>,
    out: Arc<Outbound>,
    /// This connection in the server's registry (its counters, for monitoring).
    entry: Arc<Connection>,
    /// The groups service of the connection's scope, held while the connection is in it
    /// (none in `default`, whose service the server holds).
    groups: Option<GroupsLease>,
    router: Router,
    opts: ConnectOptions,
    subs: FxHashMap<Arc<str>, ClientSub>,
    pings_out: u32,
    msgs_in: u64,
    bytes_in: u64,
    /// False until CONNECT proved a configured user (true when there are none).
    authenticated: bool,
    /// A CONNECT whose credentials are being checked.
    /// Boxed: rare, and a connection's task should not carry its size.
    pending_auth: Option<Box<(ConnectOptions, JoinHandle<Option<User>>)>>,
    /// The user's permissions (`None`: everything allowed, and nothing checked).
    perms: Option<Arc<Permissions>>,
    /// Publish decisions per subject under `perms` (bounded).
    publish_checked: FxHashMap<Box<str>, bool>,
    /// Under `allow_responses`: the reply subjects this connection may answer once.
    responses: Option<Arc<Responses>>,
    /// The nonce INFO gave, for an nkey user to sign.
    nonce: Option<String>,
}

/// A connection's reading half: a TCP socket's, or a TLS stream's.
pub(crate) type BoxRead = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// Most publish decisions a connection remembers; then it forgets them all and starts over.
const PUBLISH_CHECKS_KEPT: usize = 256;

/// The subject of a group broadcast request.
const GROUPS_BROADCAST: &str = "$HERALD.API.GROUPS.BROADCAST";

/// Serves one accepted client until it or the server closes.
pub(crate) async fn serve(socket: TcpStream, id: u64, shared: Arc<Shared>) {
    let _ = socket.set_nodelay(true);
    let peer = socket.peer_addr().ok();
    let nonce = shared.users.nkeys().then(crate::auth::nonce);
    let greeted = shared
        .info_changes
        .load(std::sync::atomic::Ordering::SeqCst);
    let info = shared.info_json(id, peer, nonce.as_deref());
    let (read, write, info_sent): (BoxRead, Socket, bool) = match &shared.tls {
        None => {
            let (read, write) = socket.into_split();
            (Box::new(read), Socket::Tcp(write), false)
        }
        Some(certificates) => {
            let mut line = Vec::with_capacity(info.len() + 8);
            encode::info(&mut line, &info);
            // Boxed: the handshake's state (rustls's) would otherwise make every
            // connection's task larger, TLS or not.
            let acceptor = certificates.acceptor();
            let start = crate::tls::start(
                socket,
                &acceptor,
                &line,
                certificates.handshake_first(),
                shared.config.tls_timeout,
            );
            let Some(started) = Box::pin(start).await else {
                return;
            };
            let (read, write) = tokio::io::split(started.stream);
            (
                Box::new(read),
                Socket::Boxed(Box::new(write)),
                started.info_sent,
            )
        }
    };
    let out = Arc::new(Outbound::new(
        id,
        shared.config.max_pending,
        shared.config.slow_consumer,
        shared.stats.clone(),
    ));
    let writer = tokio::spawn(out.clone().run_writer(write, shared.config.write_deadline));
    let entry = Connection::new(id, peer, out.clone());
    shared.registry.add(entry.clone());
    if !info_sent {
        out.push_control(|buf| encode::info(buf, &info));
    }
    let shared_users_required = shared.users.required();
    let mut conn = Conn {
        id,
        groups: None,
        router: shared.node.router("default", shared.config.capacity),
        shared,
        out,
        entry,
        opts: ConnectOptions::default(),
        subs: FxHashMap::default(),
        pings_out: 0,
        msgs_in: 0,
        bytes_in: 0,
        authenticated: !shared_users_required,
        pending_auth: None,
        perms: None,
        publish_checked: FxHashMap::default(),
        responses: None,
        nonce,
        greeted,
    };
    tracing::debug!(client = id, ?peer, "connected");
    let why = conn.read_loop(read).await;
    conn.out.close(why, None);
    for sub in conn.subs.values() {
        conn.router.unsubscribe_target(&sub.handle);
    }
    conn.flush_counters();
    // Last of the connection's hold on its scope: the scope is forgotten if nothing else uses it.
    conn.groups = None;
    let _ = writer.await;
    conn.shared.registry.remove(id);
    tracing::debug!(
        client = id,
        ?why,
        name = conn.opts.name.as_deref().unwrap_or(""),
        msgs_out = conn.out.msgs_out(),
        dropped = conn.out.dropped(),
        "closed"
    );
}

impl Conn {
    /// Reads and handles operations until the connection closes; returns why.
    async fn read_loop(&mut self, mut read: BoxRead) -> Close {
        let mut buf = BytesMut::new();
        // How much each read offers the socket: doubles while reads fill it, halves while they
        // use little of it, so busy clients read 64 KiB at a time and idle ones hold little.
        let mut want = MIN_READ;
        let mut shutdown = self.shared.shutdown.clone();
        let interval = self.shared.config.ping_interval;
        let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        // Only where users are configured (then every connection starts unauthenticated);
        // boxed, so that the others do not carry a timer.
        let mut auth_deadline = (!self.authenticated)
            .then(|| Box::pin(tokio::time::sleep(self.shared.config.auth_timeout)));
        loop {
            if let Some(why) = self.out.closed() {
                return why;
            }
            buf.reserve(want);
            tokio::select! {
                read = read.read_buf(&mut buf) => match read {
                    Ok(0) | Err(_) => return Close::ClientGone,
                    Ok(n) => {
                        if n >= want {
                            want = (want * 2).min(MAX_READ);
                        } else if n < want / 4 {
                            want = (want / 2).max(MIN_READ);
                        }
                        let used = self.handle_buffer(&buf);
                        buf.advance(used);
                        // A CONNECT with credentials stops the buffer until they are checked;
                        // what came after it is handled then.
                        while self.pending_auth.is_some() {
                            self.finish_auth().await;
                            if self.out.closed().is_some() {
                                break;
                            }
                            let used = self.handle_buffer(&buf);
                            buf.advance(used);
                        }
                        if buf.is_empty() && want == MIN_READ && buf.capacity() > 4 * MIN_READ {
                            buf = BytesMut::new();
                        }
                    }
                },
                () = self.out.reader_wakeup() => self.reap_expired(),
                () = async { auth_deadline.as_mut().expect("armed").await },
                    if !self.authenticated && auth_deadline.is_some() => {
                    self.out.close(Close::Protocol, Some("Authentication Timeout"));
                    return Close::Protocol;
                }
                _ = pings.tick() => self.ping(),
                _ = shutdown.changed() => {
                    self.out.close(Close::Shutdown, None);
                    return Close::Shutdown;
                }
            }
        }
    }

    /// Handles every complete operation at the start of `buf`; returns the bytes used.
    fn handle_buffer(&mut self, buf: &[u8]) -> usize {
        let _batch = Batch::open();
        let limits = self.shared.limits;
        let mut pos = 0;
        while pos < buf.len() {
            match parse_client(&buf[pos..], &limits) {
                Ok(Parsed::Op(op, used)) => {
                    pos += used;
                    if !self.handle(op) {
                        break;
                    }
                }
                Ok(Parsed::Incomplete) => break,
                Err(err) => {
                    tracing::debug!(client = self.id, %err, "protocol error");
                    self.out.close(Close::Protocol, Some(err.nats_error()));
                    break;
                }
            }
        }
        self.flush_counters();
        pos
    }

    /// Acts on one operation; false when the connection is closing (or waits for its
    /// credentials to be checked).
    fn handle(&mut self, op: ClientOp<'_>) -> bool {
        if !self.authenticated && !matches!(op, ClientOp::Connect(_)) {
            self.out
                .close(Close::Protocol, Some("Authorization Violation"));
            return false;
        }
        match op {
            ClientOp::Pub {
                subject,
                reply,
                payload,
            } => self.publish(subject, reply, None, payload),
            ClientOp::HPub {
                subject,
                reply,
                headers,
                payload,
            } => self.publish(subject, reply, Some(headers), payload),
            ClientOp::Sub {
                subject,
                queue,
                sid,
            } => self.subscribe(subject, queue, sid),
            ClientOp::Unsub { sid, max } => self.unsubscribe(sid, max),
            ClientOp::Ping => {
                self.out.push_control(|b| b.extend_from_slice(encode::PONG));
                return true;
            }
            ClientOp::Pong => {
                self.pings_out = 0;
                return true;
            }
            ClientOp::Connect(json) => {
                if !self.connect(json) {
                    return false;
                }
            }
        }
        if self.opts.verbose {
            self.out.push_control(|b| b.extend_from_slice(encode::OK));
        }
        !self.out.is_closing()
    }

    fn connect(&mut self, json: &[u8]) -> bool {
        let mut opts: ConnectOptions = match serde_json::from_slice(json) {
            Ok(opts) => opts,
            Err(err) => {
                tracing::debug!(client = self.id, %err, "bad CONNECT");
                self.out
                    .close(Close::Protocol, Some("Invalid CONNECT JSON"));
                return false;
            }
        };
        if opts.no_responders && !opts.headers {
            self.out.close(
                Close::Protocol,
                Some("no responders requires headers support"),
            );
            return false;
        }
        let users = self.shared.users.clone();
        if users.required() {
            // Hashing is slow on purpose: checked off the async threads, and the reader
            // handles nothing more of this connection until it is done.
            let presented = Presented {
                user: opts.user.take().filter(|u| !u.is_empty()),
                password: opts.pass.take().filter(|p| !p.is_empty()),
                token: opts.auth_token.take().filter(|t| !t.is_empty()),
                nkey: match (opts.nkey.take(), opts.sig.take(), self.nonce.clone()) {
                    (Some(nkey), Some(sig), Some(nonce)) => Some((nkey, sig, nonce)),
                    _ => None,
                },
            };
            let check = tokio::task::spawn_blocking(move || users.authenticate_cached(&presented));
            self.pending_auth = Some(Box::new((opts, check)));
            return false;
        }
        let scope = opts
            .scope
            .take()
            .or_else(|| opts.user.take().filter(|u| !u.is_empty()))
            .or_else(|| opts.auth_token.take().filter(|t| !t.is_empty()))
            .unwrap_or_else(|| "default".into());
        if scope != self.router.scope() {
            if !crate::auth::valid_scope(&scope) {
                self.out.close(Close::Protocol, Some("Invalid Scope"));
                return false;
            }
            // Subscriptions made before CONNECT stay in the scope they were made in.
            if !self.enter_scope(&scope) {
                return false;
            }
        }
        self.connected(opts);
        true
    }

    /// Finishes a CONNECT that carried credentials, once they are checked: the connection
    /// lives in its user's scope under its permissions, or is closed.
    async fn finish_auth(&mut self) {
        let Some(pending) = self.pending_auth.take() else {
            return;
        };
        let (opts, check) = *pending;
        let Ok(Some(user)) = check.await else {
            // Nothing the client sent is logged: a token may be in any field.
            tracing::debug!(client = self.id, "authentication failed");
            self.out
                .close(Close::Protocol, Some("Authorization Violation"));
            return;
        };
        tracing::debug!(
            client = self.id,
            user = user.name(),
            scope = user.scope,
            "authenticated"
        );
        self.authenticated = true;
        if user.scope != self.router.scope() && !self.enter_scope(&user.scope) {
            return;
        }
        if let Some(perms) = user.permissions {
            if perms.allow_responses {
                self.responses = Some(Arc::default());
            }
            self.perms = Some(Arc::new(perms));
        }
        let verbose = opts.verbose;
        self.connected(opts);
        if verbose {
            self.out.push_control(|b| b.extend_from_slice(encode::OK));
        }
    }

    /// Moves the connection into `scope` (with its groups service); closes it when the
    /// scope is new and the server has `max_scopes` in use.
    fn enter_scope(&mut self, scope: &str) -> bool {
        match self.shared.router(scope) {
            Ok(router) => {
                self.groups = Some(crate::services::serve_groups(&self.shared, &router));
                self.router = router;
                true
            }
            Err(err) => {
                tracing::debug!(client = self.id, %err, "scope refused");
                self.out
                    .close(Close::Protocol, Some("maximum scopes exceeded"));
                false
            }
        }
    }

    /// What every accepted CONNECT does last.
    fn connected(&mut self, opts: ConnectOptions) {
        tracing::debug!(
            client = self.id,
            name = opts.name.as_deref().unwrap_or(""),
            lang = opts.lang.as_deref().unwrap_or(""),
            version = opts.version.as_deref().unwrap_or(""),
            scope = self.router.scope(),
            "CONNECT"
        );
        self.out.set_headers(opts.headers);
        if crate::discovery::greeted_with_old_info(&self.shared, &self.entry, self.greeted) {
            let line = crate::discovery::async_info(&self.shared);
            self.out.push_control(|buf| buf.extend_from_slice(&line));
        }
        *self.entry.meta.lock() = ClientMeta {
            name: opts.name.clone().unwrap_or_default(),
            lang: opts.lang.clone().unwrap_or_default(),
            version: opts.version.clone().unwrap_or_default(),
            scope: self.router.scope().to_owned(),
        };
        self.opts = opts;
    }

    fn publish(
        &mut self,
        subject: &str,
        reply: Option<&str>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) {
        self.msgs_in += 1;
        self.bytes_in += payload.len() as u64;
        if self.perms.is_some() && !self.may_publish(subject) {
            let refusal = crate::auth::publish_violation(subject);
            self.out.push_control(|b| encode::err(b, &refusal));
            return;
        }
        if let Some(topic) = self.denied_broadcast(subject, payload) {
            let refusal = crate::auth::publish_violation(&topic);
            self.out.push_control(|b| encode::err(b, &refusal));
            return;
        }
        // Like nats-server, only a pedantic client is held to literal subjects; others may
        // publish `*` and `>` tokens, which only wildcard subscriptions match.
        if self.opts.pedantic
            && subject.contains(['*', '>'])
            && herald::subject::check_literal(subject).is_err()
        {
            self.out
                .push_control(|b| encode::err(b, "Invalid Publish Subject"));
            return;
        }
        let msg = WireMessage {
            subject,
            reply,
            headers,
            payload,
        };
        match self.router.publish_wire(&msg, self.opts.echo) {
            Ok(0) => {
                if let Some(reply) = reply
                    && self.opts.no_responders
                {
                    self.no_responders(reply);
                }
            }
            Ok(_) => {}
            Err(err) => {
                tracing::debug!(client = self.id, %err, "publish refused");
                if self.opts.pedantic {
                    self.out
                        .push_control(|b| encode::err(b, "Invalid Publish Subject"));
                }
            }
        }
    }

    /// Tells a requester at once that nobody listens: an empty message with status 503 to its
    /// own subscription that matches the reply subject, as nats-server does.
    fn no_responders(&self, reply: &str) {
        let Some(sub) = self
            .subs
            .values()
            .find(|s| herald::subject::matches(s.handle.pattern(), reply))
        else {
            return;
        };
        let target = sub.target.clone();
        self.out.push_control(|b| {
            encode::hmsg(b, reply, target.sid(), None, b"NATS/1.0 503\r\n\r\n", b"");
        });
    }

    /// A group broadcast publishes on each topic of the group: for a connection with
    /// permissions, the first topic it may not publish to (checked here, where the requester
    /// is known; the groups service that answers does not know who asks).
    fn denied_broadcast(&self, subject: &str, payload: &[u8]) -> Option<String> {
        let perms = self.perms.as_ref()?;
        if subject != GROUPS_BROADCAST {
            return None;
        }
        let name = crate::groups::broadcast_group(payload)?;
        crate::groups::denied_topic(&self.router, &name, |t| perms.publish.allows_subject(t))
    }

    /// Whether this connection's permissions let it publish to `subject` (decisions are
    /// remembered; a granted response is used up).
    fn may_publish(&mut self, subject: &str) -> bool {
        let Some(perms) = &self.perms else {
            return true;
        };
        let allowed = match self.publish_checked.get(subject) {
            Some(&allowed) => allowed,
            None => {
                let allowed = perms.publish.allows_subject(subject);
                if self.publish_checked.len() >= PUBLISH_CHECKS_KEPT {
                    self.publish_checked.clear();
                }
                self.publish_checked.insert(subject.into(), allowed);
                allowed
            }
        };
        allowed || self.responses.as_ref().is_some_and(|r| r.take(subject))
    }

    fn subscribe(&mut self, subject: &str, queue: Option<&str>, sid: &str) {
        let max = self.shared.config.max_subscriptions;
        if max != 0 && self.subs.len() >= max {
            self.out
                .push_control(|b| encode::err(b, "maximum subscriptions exceeded"));
            return;
        }
        if self.subs.contains_key(sid) {
            // nats-server keeps the first subscription of a sid and ignores the repeat.
            return;
        }
        let denied = match &self.perms {
            None => Vec::new(),
            Some(perms) => match perms.subscription(subject, queue) {
                Ok(denied) => denied,
                Err(refusal) => {
                    self.out.push_control(|b| encode::err(b, &refusal));
                    return;
                }
            },
        };
        let sid: Arc<str> = sid.into();
        let target = Arc::new(SubTarget::new(
            self.out.clone(),
            sid.clone(),
            denied,
            self.responses.clone(),
        ));
        match self
            .router
            .subscribe_target(subject, queue, 0, target.clone())
        {
            Ok(handle) => {
                tracing::trace!(client = self.id, subject, ?queue, %sid, "SUB");
                self.subs.insert(sid, ClientSub { handle, target });
                self.count_subscriptions();
            }
            Err(err) => {
                tracing::debug!(client = self.id, %err, "SUB refused");
                self.out.push_control(|b| encode::err(b, "Invalid Subject"));
            }
        }
    }

    fn unsubscribe(&mut self, sid: &str, max: Option<u64>) {
        let done = match (self.subs.get(sid), max) {
            (None, _) => return,
            (Some(sub), Some(max)) => sub.target.limit(max),
            (Some(_), None) => true,
        };
        if done && let Some(sub) = self.subs.remove(sid) {
            self.count_subscriptions();
            sub.target.remove();
            self.router.unsubscribe_target(&sub.handle);
        }
    }

    /// Removes subscriptions that delivered their UNSUB max.
    fn reap_expired(&mut self) {
        for sid in self.out.take_expired() {
            if let Some(sub) = self.subs.remove(&sid) {
                self.count_subscriptions();
                sub.target.remove();
                self.router.unsubscribe_target(&sub.handle);
            }
        }
    }

    fn ping(&mut self) {
        if self.pings_out >= self.shared.config.max_pings_out {
            self.out.close(Close::Stale, Some("Stale Connection"));
            return;
        }
        self.pings_out += 1;
        self.out.push_control(|b| b.extend_from_slice(encode::PING));
    }

    fn count_subscriptions(&self) {
        (self.entry.subscriptions).store(self.subs.len(), Ordering::Relaxed);
    }

    fn flush_counters(&mut self) {
        if self.msgs_in > 0 {
            let entry = &self.entry;
            entry.in_msgs.fetch_add(self.msgs_in, Ordering::Relaxed);
            entry.in_bytes.fetch_add(self.bytes_in, Ordering::Relaxed);
            self.msgs_in = 0;
            self.bytes_in = 0;
        }
    }
}
