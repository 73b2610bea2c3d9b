//! The listener: accepts clients, hands each to its connection tasks, and shuts down
//! gracefully (stop accepting, let every connection flush what it has queued, close).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herald::jetstream::JetStream;
use herald::streams::Streams;
use herald::{CallbackHandle, Node};
use herald_proto::{Limits, encode};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::services::{cluster_service, flush_service, info_service, lame_duck_service};
use crate::shared::Shared;
use crate::stats::{Stats, StatsSnapshot};

/// A running server.
pub struct Server {
    shared: Arc<Shared>,
    nats_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    http: Option<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    /// Raised by lame duck mode: the listener closes, the connections stay.
    stop_accepting: watch::Sender<bool>,
    /// Raised by the accept loop once its listener is closed.
    listener_closed: watch::Receiver<bool>,
    accept: JoinHandle<()>,
    streams: Option<(Streams, JetStream)>,
    _services: [CallbackHandle; 4],
    _default_groups: crate::services::GroupsLease,
}

impl Server {
    /// Binds the listener and starts serving clients on `node` (whose routers the embedding
    /// application may use too: they share scopes with the clients). Needs a tokio runtime.
    ///
    /// With a `data_dir`, the streams kept there are recovered first and the JetStream API is
    /// answered in the default scope.
    pub async fn start(mut config: Config, node: Node) -> std::io::Result<Server> {
        config.name = config
            .resolved_name()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        // Clustered with a data directory: this node takes part in the meta group, where the
        // cluster's definitions are agreed, and its JetStream is one with the cluster's.
        let meta = match (node.cluster_info(), config.data_dir.as_str()) {
            (Some(_), dir) if !dir.is_empty() => {
                let mut options = herald::meta::MetaOptions::new(Path::new(dir).join("meta"));
                if config.bootstrap_expect > 0 {
                    options = options.bootstrap_expect(config.bootstrap_expect);
                }
                let meta = herald::meta::MetaGroup::start(&node, options)
                    .await
                    .map_err(|e| {
                        std::io::Error::other(format!("cannot start the meta group: {e}"))
                    })?;
                Some(Arc::new(meta))
            }
            _ => None,
        };
        let streams = match config.streams() {
            Some(options) => {
                let router = node.router("default", config.capacity);
                let streams = Streams::open(&router, options)
                    .await
                    .map_err(|e| std::io::Error::other(format!("cannot open streams: {e}")))?;
                let jetstream = match &meta {
                    Some(meta) => herald::jetstream::serve_clustered(&streams, meta.clone()),
                    None => herald::jetstream::serve(&streams),
                }
                .map_err(|e| std::io::Error::other(format!("cannot serve JetStream: {e}")))?;
                Some((streams, jetstream))
            }
            None => None,
        };
        let users = crate::auth::Users::from_config(&config.users)
            .map_err(|e| std::io::Error::other(format!("invalid users: {e}")))?;
        let tls = match &config.tls {
            Some(tls) => Some(crate::tls::Certificates::load(tls).map_err(std::io::Error::other)?),
            None => None,
        };
        let listener = TcpListener::bind(&config.listen).await?;
        let nats_addr = listener.local_addr()?;
        let http_listener = match config.http.as_str() {
            "" => None,
            addr => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| std::io::Error::new(e.kind(), format!("http {addr}: {e}")))?,
            ),
        };
        let http_addr = match &http_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let stats = Arc::new(Stats::default());
        let (stop, shutdown) = watch::channel(false);
        let (stop_accepting, accepting) = watch::channel(false);
        let (closed_tx, listener_closed) = watch::channel(false);
        let client_url = crate::discovery::client_url(&config, nats_addr, &node);
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
            http_addr,
            started: std::time::SystemTime::now(),
            client_url,
            lame_duck: Default::default(),
            info_changes: Default::default(),
            lame_duck_asked: watch::channel(false).0,
            meta,
            group_services: Default::default(),
            registry: Default::default(),
            users: Arc::new(users),
            tls,
            config,
        });
        let services = [
            info_service(&shared),
            cluster_service(&shared),
            flush_service(&shared),
            lame_duck_service(&shared),
        ];
        let [Ok(info), Ok(cluster), Ok(flush), Ok(lame_duck)] = services else {
            return Err(std::io::Error::other(
                "cannot subscribe the server's services",
            ));
        };
        let http = http_listener.map(|listener| {
            let app = Arc::new(crate::http::App {
                shared: shared.clone(),
                streams: streams.as_ref().map(|(s, _)| s.clone()),
                replication: streams.as_ref().and_then(|(_, js)| js.replication()),
                tickets: Default::default(),
            });
            crate::http::serve(listener, app)
        });
        let default_groups = crate::services::serve_groups(
            &shared,
            &shared.node.router("default", shared.config.capacity),
        );
        tokio::spawn(reclaim_scopes(shared.node.clone(), shared.shutdown.clone()));
        tokio::spawn(crate::discovery::follow(
            Arc::downgrade(&shared),
            shared.shutdown.clone(),
        ));
        let accept = tokio::spawn(accept_loop(listener, shared.clone(), accepting, closed_tx));
        Ok(Server {
            shared,
            nats_addr,
            http_addr,
            http,
            stop,
            stop_accepting,
            listener_closed,
            accept,
            streams,
            _services: [info, cluster, flush, lame_duck],
            _default_groups: default_groups,
        })
    }

    /// The address the NATS-protocol listener is bound to (with the real port when the
    /// configuration asked for port 0).
    pub fn nats_addr(&self) -> SocketAddr {
        self.nats_addr
    }

    /// The address the HTTP listener is bound to, when `http` is not empty.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The server's counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.snapshot()
    }

    /// The streams this server keeps, when it has a data directory.
    pub fn streams(&self) -> Option<&Streams> {
        self.streams.as_ref().map(|(streams, _)| streams)
    }

    /// Lame duck mode: stops accepting clients, withdraws this server from the cluster's
    /// `connect_urls`, tells the connected clients (INFO `ldm`) so that they reconnect
    /// elsewhere, and after `lame_duck_grace_period` closes those still connected a few at a
    /// time over the rest of `lame_duck_duration`. Returns when every client is closed; then
    /// [`shutdown`](Server::shutdown) stops the rest.
    pub async fn lame_duck(&self) {
        crate::lame_duck::run(&self.shared, &self.stop_accepting, &self.listener_closed).await;
    }

    /// Reads the `[tls]` certificate and key files again (what SIGHUP does to `herald
    /// serve`): NATS and HTTPS connections made from now on use them, open ones keep theirs.
    /// Returns whether the server has TLS at all; on an error (naming the file) the
    /// certificates in use stay.
    pub fn reload_tls(&self) -> Result<bool, String> {
        match &self.shared.tls {
            Some(certificates) => certificates.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// Returns once a client asked for lame duck mode (`$HERALD.API.SERVER.LAMEDUCK`); the
    /// owner of the server then calls [`lame_duck`](Server::lame_duck), as `herald serve` does.
    pub async fn lame_duck_requested(&self) {
        let mut asked = self.shared.lame_duck_asked.subscribe();
        let _ = asked.wait_for(|asked| *asked).await;
    }

    /// Stops accepting, lets every connection write what is queued for it, and closes them;
    /// returns when all are closed (or after a grace period of 10 s). Streams are synced and
    /// durable consumers' states saved.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.accept.await;
        if let Some(http) = self.http {
            // Event streams end only when their clients go: give them the same grace.
            if tokio::time::timeout(Duration::from_secs(10), http)
                .await
                .is_err()
            {
                tracing::warn!("HTTP clients still connected 10 s after shutdown; leaving them");
            }
        }
        if let Some((streams, jetstream)) = self.streams {
            jetstream.stop();
            streams.close();
        }
        if let Some(meta) = &self.shared.meta {
            meta.shutdown().await;
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop_accepting: watch::Receiver<bool>,
    listener_closed: watch::Sender<bool>,
) {
    // Each connection task holds a clone; `recv` returns None once all are done.
    let (alive, mut all_done) = mpsc::channel::<()>(1);
    let mut shutdown = shared.shutdown.clone();
    let next_id = AtomicU64::new(1);
    let lame_duck = loop {
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
            _ = shutdown.changed() => break false,
            _ = async { stop_accepting.wait_for(|stop| *stop).await.is_ok() } => break true,
        }
    };
    drop(listener);
    listener_closed.send_replace(true);
    if lame_duck {
        // Lame duck mode closes the connections; the server stops after.
        let _ = shutdown.wait_for(|stop| *stop).await;
    }
    drop(alive);
    if tokio::time::timeout(Duration::from_secs(10), all_done.recv())
        .await
        .is_err()
    {
        tracing::warn!("connections still open 10 s after shutdown; leaving them");
    }
}

/// Once a second, forgets the scopes whose last user left while something else held the
/// scope for a moment (a message being answered, say); the rest go as their users leave.
async fn reclaim_scopes(node: Node, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {
                let forgotten = node.reclaim_scopes();
                if forgotten > 0 {
                    tracing::debug!(forgotten, "idle scopes forgotten");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

async fn refuse(mut socket: TcpStream) {
    let mut out = Vec::new();
    encode::err(&mut out, "maximum connections exceeded");
    let _ = socket.write_all(&out).await;
    let _ = socket.shutdown().await;
}
