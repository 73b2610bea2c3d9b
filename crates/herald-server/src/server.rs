//! The listener: accepts clients, hands each to its connection tasks, and shuts down
//! gracefully (stop accepting, let every connection flush what it has queued, close).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herald::jetstream::JetStream;
use herald::streams::Streams;
use herald::{CallbackHandle, Node, SubscribeOptions};
use herald_proto::{Limits, encode};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::stats::{Stats, StatsSnapshot};

/// The NATS protocol level herald speaks, advertised as INFO `version`: clients read that
/// field as the nats-server feature level, not as herald's own version.
pub const NATS_VERSION: &str = "2.11.0";

/// The subject of the server's own information service (JSON request/reply).
pub const SERVER_INFO_SUBJECT: &str = "$HERALD.API.SERVER.INFO";

/// The subject of the server's cluster view (members, routes, interest), as JSON.
pub const CLUSTER_INFO_SUBJECT: &str = "$HERALD.API.CLUSTER.INFO";

/// The subject of the cluster barrier: the answer comes once the subscriptions this server
/// had when the request arrived are known to every member (`Node::flush`). A JSON body
/// `{"peers": N}` first waits until N other members are routed to; `"timeout_ms"` bounds
/// that wait (default 5000, under a client's usual request timeout).
pub const CLUSTER_FLUSH_SUBJECT: &str = "$HERALD.API.CLUSTER.FLUSH";

/// What every connection of one server shares.
pub(crate) struct Shared {
    pub(crate) node: Node,
    pub(crate) config: Config,
    pub(crate) stats: Arc<Stats>,
    pub(crate) limits: Limits,
    pub(crate) shutdown: watch::Receiver<bool>,
    server_id: String,
    jetstream: bool,
    addr: SocketAddr,
}

impl Shared {
    /// The INFO JSON for client `id`.
    pub(crate) fn info_json(&self, id: u64, peer: Option<SocketAddr>) -> Vec<u8> {
        let info = serde_json::json!({
            "server_id": self.server_id,
            "server_name": self.config.name,
            "version": NATS_VERSION,
            "herald_version": env!("CARGO_PKG_VERSION"),
            "proto": 1,
            "host": self.addr.ip().to_string(),
            "port": self.addr.port(),
            "headers": true,
            "jetstream": self.jetstream,
            "max_payload": self.config.max_payload,
            "client_id": id,
            "client_ip": peer.map(|p| p.ip().to_string()).unwrap_or_default(),
        });
        serde_json::to_vec(&info).unwrap_or_default()
    }
}

/// A running server.
pub struct Server {
    nats_addr: SocketAddr,
    stats: Arc<Stats>,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
    streams: Option<(Streams, JetStream)>,
    _services: [CallbackHandle; 3],
}

impl Server {
    /// Binds the listener and starts serving clients on `node` (whose routers the embedding
    /// application may use too: they share scopes with the clients). Needs a tokio runtime.
    ///
    /// With a `data_dir`, the streams kept there are recovered first and the JetStream API is
    /// answered in the default scope.
    pub async fn start(config: Config, node: Node) -> std::io::Result<Server> {
        let streams = match config.streams() {
            Some(options) => {
                let router = node.router("default", config.capacity);
                let streams = Streams::open(&router, options)
                    .await
                    .map_err(|e| std::io::Error::other(format!("cannot open streams: {e}")))?;
                let jetstream = herald::jetstream::serve(&streams)
                    .map_err(|e| std::io::Error::other(format!("cannot serve JetStream: {e}")))?;
                Some((streams, jetstream))
            }
            None => None,
        };
        let listener = TcpListener::bind(&config.listen).await?;
        let nats_addr = listener.local_addr()?;
        let stats = Arc::new(Stats::default());
        let (stop, shutdown) = watch::channel(false);
        let shared = Arc::new(Shared {
            node: node.clone(),
            limits: Limits {
                max_control_line: config.max_control_line,
                max_payload: config.max_payload,
            },
            stats: stats.clone(),
            shutdown,
            server_id: format!("HERALD{:016X}", fastrand::u64(..)),
            jetstream: streams.is_some(),
            addr: nats_addr,
            config,
        });
        let services = [
            info_service(&shared),
            cluster_service(&shared),
            flush_service(&shared),
        ];
        let [Ok(info), Ok(cluster), Ok(flush)] = services else {
            return Err(std::io::Error::other(
                "cannot subscribe the server's services",
            ));
        };
        let accept = tokio::spawn(accept_loop(listener, shared));
        Ok(Server {
            nats_addr,
            stats,
            stop,
            accept,
            streams,
            _services: [info, cluster, flush],
        })
    }

    /// The address the NATS-protocol listener is bound to (with the real port when the
    /// configuration asked for port 0).
    pub fn nats_addr(&self) -> SocketAddr {
        self.nats_addr
    }

    /// The server's counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// The streams this server keeps, when it has a data directory.
    pub fn streams(&self) -> Option<&Streams> {
        self.streams.as_ref().map(|(streams, _)| streams)
    }

    /// Stops accepting, lets every connection write what is queued for it, and closes them;
    /// returns when all are closed (or after a grace period of 10 s). Streams are synced and
    /// durable consumers' states saved.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.accept.await;
        if let Some((streams, jetstream)) = self.streams {
            jetstream.stop();
            streams.close();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Each connection task holds a clone; `recv` returns None once all are done.
    let (alive, mut all_done) = mpsc::channel::<()>(1);
    let mut shutdown = shared.shutdown.clone();
    let next_id = AtomicU64::new(1);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let open = shared.stats.connections.load(Ordering::Relaxed);
                    if open >= shared.config.max_connections as u64 {
                        tokio::spawn(refuse(socket));
                        continue;
                    }
                    shared.stats.connections.fetch_add(1, Ordering::Relaxed);
                    shared.stats.connections_total.fetch_add(1, Ordering::Relaxed);
                    let shared = shared.clone();
                    let alive = alive.clone();
                    tokio::spawn(async move {
                        crate::conn::serve(socket, id, shared.clone()).await;
                        shared.stats.connections.fetch_sub(1, Ordering::Relaxed);
                        drop(alive);
                    });
                }
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    drop(alive);
    if tokio::time::timeout(Duration::from_secs(10), all_done.recv())
        .await
        .is_err()
    {
        tracing::warn!("connections still open 10 s after shutdown; leaving them");
    }
}

async fn refuse(mut socket: TcpStream) {
    let mut out = Vec::new();
    encode::err(&mut out, "maximum connections exceeded");
    let _ = socket.write_all(&out).await;
    let _ = socket.shutdown().await;
}

/// Answers `$HERALD.API.SERVER.INFO` in the default scope with the server's identity and
/// counters. Node-only: in a cluster, each server answers for itself.
fn info_service(shared: &Arc<Shared>) -> herald::Result<CallbackHandle> {
    let router = shared.node.router("default", shared.config.capacity);
    let weak = Arc::downgrade(shared);
    router.on_with(
        SERVER_INFO_SUBJECT,
        SubscribeOptions::new().node_only(),
        move |msg| {
            let Some(shared) = weak.upgrade() else { return };
            let body = serde_json::json!({
                "server_id": shared.server_id,
                "name": shared.config.name,
                "version": env!("CARGO_PKG_VERSION"),
                "nats_version": NATS_VERSION,
                "stats": shared.stats.snapshot(),
            });
            if let Err(err) = msg.respond(body.to_string()) {
                tracing::debug!(%err, "cannot answer {SERVER_INFO_SUBJECT}");
            }
        },
    )
}

/// Answers `$HERALD.API.CLUSTER.INFO` in the default scope with this node's view of its
/// cluster (`{"error": ..}` when it is in none). Node-only, like the server information.
fn cluster_service(shared: &Arc<Shared>) -> herald::Result<CallbackHandle> {
    let router = shared.node.router("default", shared.config.capacity);
    let node = shared.node.clone();
    router.on_with(
        CLUSTER_INFO_SUBJECT,
        SubscribeOptions::new().node_only(),
        move |msg| {
            let body = match node.cluster_info() {
                Some(info) => serde_json::to_string(&info).unwrap_or_default(),
                None => {
                    serde_json::json!({ "error": "this server is not in a cluster" }).to_string()
                }
            };
            if let Err(err) = msg.respond(body) {
                tracing::debug!(%err, "cannot answer {CLUSTER_INFO_SUBJECT}");
            }
        },
    )
}

/// Answers `$HERALD.API.CLUSTER.FLUSH` once [`Node::flush`] returns: `{}`, or
/// `{"error": ..}`.
fn flush_service(shared: &Arc<Shared>) -> herald::Result<CallbackHandle> {
    #[derive(serde::Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Ask {
        #[serde(default)]
        peers: usize,
        timeout_ms: Option<u64>,
    }
    let router = shared.node.router("default", shared.config.capacity);
    let node = shared.node.clone();
    let runtime = tokio::runtime::Handle::current();
    router.on_with(
        CLUSTER_FLUSH_SUBJECT,
        SubscribeOptions::new().node_only(),
        move |msg| {
            let node = node.clone();
            runtime.spawn(async move {
                // An empty body asks for a plain flush; anything else must be the JSON above.
                let ask: Result<Ask, String> = match msg.payload().trim_ascii() {
                    b"" => Ok(Ask::default()),
                    body => serde_json::from_slice(body).map_err(|e| format!("bad request: {e}")),
                };
                let done = match ask {
                    Ok(ask) => {
                        let wait = std::time::Duration::from_millis(ask.timeout_ms.unwrap_or(5000));
                        match node.wait_for_peers(ask.peers, wait).await {
                            Ok(()) => node.flush().await.map_err(|e| e.to_string()),
                            Err(err) => Err(err.to_string()),
                        }
                    }
                    Err(err) => Err(err),
                };
                let body = match done {
                    Ok(()) => "{}".to_owned(),
                    Err(err) => serde_json::json!({ "error": err }).to_string(),
                };
                if let Err(err) = msg.respond(body) {
                    tracing::debug!(%err, "cannot answer {CLUSTER_FLUSH_SUBJECT}");
                }
            });
        },
    )
}
