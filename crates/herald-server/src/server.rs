//! The listener: accepts clients, hands each to its connection tasks, and shuts down
//! gracefully (stop accepting, let every connection flush what it has queued, close).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herald::{CallbackHandle, Node};
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

/// What every connection of one server shares.
pub(crate) struct Shared {
    pub(crate) node: Node,
    pub(crate) config: Config,
    pub(crate) stats: Arc<Stats>,
    pub(crate) limits: Limits,
    pub(crate) shutdown: watch::Receiver<bool>,
    server_id: String,
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
    _info_service: CallbackHandle,
}

impl Server {
    /// Binds the listener and starts serving clients on `node` (whose routers the embedding
    /// application may use too: they share scopes with the clients). Needs a tokio runtime.
    pub async fn start(config: Config, node: Node) -> std::io::Result<Server> {
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
            addr: nats_addr,
            config,
        });
        let info_service = info_service(&shared).map_err(std::io::Error::other)?;
        let accept = tokio::spawn(accept_loop(listener, shared));
        Ok(Server {
            nats_addr,
            stats,
            stop,
            accept,
            _info_service: info_service,
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

    /// Stops accepting, lets every connection write what is queued for it, and closes them;
    /// returns when all are closed (or after a grace period of 10 s).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.accept.await;
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
/// counters.
fn info_service(shared: &Arc<Shared>) -> herald::Result<CallbackHandle> {
    let router = shared.node.router("default", shared.config.capacity);
    let weak = Arc::downgrade(shared);
    router.on(SERVER_INFO_SUBJECT, move |msg| {
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
    })
}
