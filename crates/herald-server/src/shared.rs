//! What every connection of one server shares: the node, the settings, the counters, the
//! shutdown signal, and the identity clients see in INFO.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use std::collections::HashMap;

use herald::{CallbackHandle, Node};
use herald_proto::Limits;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::auth::Users;
use crate::config::Config;
use crate::registry::Registry;
use crate::stats::Stats;

/// The NATS protocol level herald speaks, advertised as INFO `version`: clients read that
/// field as the nats-server feature level, not as herald's own version. 2.10: herald answers
/// what 2.10 clients use; of 2.11 it has message TTLs and batched direct gets, but not
/// consumer pausing or priority groups, so clients must not take it for a 2.11 server.
pub const NATS_VERSION: &str = "2.10.24";

/// What every connection of one server shares.
pub(crate) struct Shared {
    pub(crate) node: Node,
    pub(crate) config: Config,
    pub(crate) stats: Arc<Stats>,
    pub(crate) registry: Registry,
    /// The configured users (none: no authentication).
    pub(crate) users: Arc<Users>,
    /// TLS for client connections, when `[tls]` is set.
    pub(crate) tls: Option<crate::tls::Certificates>,
    pub(crate) limits: Limits,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) server_id: String,
    pub(crate) jetstream: bool,
    pub(crate) addr: SocketAddr,
    /// The HTTP listener's address, when there is one.
    pub(crate) http_addr: Option<SocketAddr>,
    pub(crate) started: std::time::SystemTime,
    /// The address other members' clients are told to reach this server at.
    pub(crate) client_url: String,
    /// Set once lame duck mode starts (INFO `ldm`).
    pub(crate) lame_duck: AtomicBool,
    /// Raised each time the server's INFO changes for every client (see
    /// [`crate::discovery::send_async_info`]), so that a connection can tell whether the INFO
    /// it was greeted with is out of date by the time its CONNECT is accepted.
    pub(crate) info_changes: AtomicU64,
    /// Raised by `$HERALD.API.SERVER.LAMEDUCK`: whoever runs the server starts lame duck mode.
    pub(crate) lame_duck_asked: watch::Sender<bool>,
    /// This node's member of the cluster's meta group (clustered with a data directory).
    pub(crate) meta: Option<Arc<herald::meta::MetaGroup>>,
    /// The groups service of each scope NATS clients are connected to, by scope, with how
    /// many hold it (see [`crate::services::GroupsLease`]).
    pub(crate) group_services: Mutex<HashMap<String, (usize, CallbackHandle)>>,
}

impl Shared {
    /// Subscriptions in every scope of this node (clients', routers', services').
    pub(crate) fn subscriptions(&self) -> usize {
        self.node
            .scopes()
            .iter()
            .filter_map(|scope| self.node.existing_router(scope, 1))
            .map(|router| router.subscription_count())
            .sum()
    }

    /// A router for `scope`, unless it is a new scope and `max_scopes` are in use.
    pub(crate) fn router(&self, scope: &str) -> herald::Result<herald::Router> {
        self.node
            .try_router(scope, self.config.capacity, self.config.max_scopes)
    }

    /// Whether lame duck mode has started.
    pub(crate) fn in_lame_duck(&self) -> bool {
        self.lame_duck.load(Ordering::Acquire)
    }

    /// The server's totals now.
    pub(crate) fn snapshot(&self) -> crate::stats::StatsSnapshot {
        self.registry.snapshot(&self.stats)
    }

    /// The INFO JSON for client `id`.
    pub(crate) fn info_json(
        &self,
        id: u64,
        peer: Option<SocketAddr>,
        nonce: Option<&str>,
    ) -> Vec<u8> {
        let mut info = serde_json::json!({
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
            "auth_required": self.users.required(),
        });
        if self.tls.is_some() {
            info["tls_required"] = serde_json::Value::Bool(true);
            info["tls_available"] = serde_json::Value::Bool(true);
            if self.config.tls.as_ref().is_some_and(|t| t.verify) {
                info["tls_verify"] = serde_json::Value::Bool(true);
            }
        }
        if let Some(nonce) = nonce {
            info["nonce"] = serde_json::Value::String(nonce.to_owned());
        }
        if let Some(urls) = crate::discovery::connect_urls(self) {
            info["connect_urls"] = urls.into();
        }
        if self.in_lame_duck() {
            info["ldm"] = serde_json::Value::Bool(true);
        }
        serde_json::to_vec(&info).unwrap_or_default()
    }
}
