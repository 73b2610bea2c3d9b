//! The open client connections, for monitoring (`/connz`), metrics and the server's totals.
//!
//! Each connection counts its own traffic (its reader adds a read's messages once per read,
//! its writer the bytes of each write), so the publish path touches no counter another
//! connection shares; totals are summed when someone asks, plus what connections that have
//! closed counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::outbound::Outbound;
use crate::stats::{Stats, StatsSnapshot};

/// What a client said about itself in CONNECT.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientMeta {
    pub(crate) name: String,
    pub(crate) lang: String,
    pub(crate) version: String,
    pub(crate) scope: String,
}

/// One open connection as monitoring sees it.
pub(crate) struct Connection {
    pub(crate) id: u64,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) started: SystemTime,
    pub(crate) in_msgs: AtomicU64,
    pub(crate) in_bytes: AtomicU64,
    pub(crate) subscriptions: AtomicUsize,
    /// Set once its CONNECT was accepted: it takes asynchronous INFOs from then on.
    pub(crate) connected: AtomicBool,
    pub(crate) meta: Mutex<ClientMeta>,
    pub(crate) out: Arc<Outbound>,
}

impl Connection {
    pub(crate) fn new(id: u64, peer: Option<SocketAddr>, out: Arc<Outbound>) -> Arc<Connection> {
        Arc::new(Connection {
            id,
            peer,
            started: SystemTime::now(),
            in_msgs: AtomicU64::new(0),
            in_bytes: AtomicU64::new(0),
            subscriptions: AtomicUsize::new(0),
            connected: AtomicBool::new(false),
            meta: Mutex::new(ClientMeta {
                scope: "default".into(),
                ..ClientMeta::default()
            }),
            out,
        })
    }
}

/// The open connections, and the totals of those that closed.
#[derive(Default)]
pub(crate) struct Registry {
    open: Mutex<FxHashMap<u64, Arc<Connection>>>,
    closed_in_msgs: AtomicU64,
    closed_in_bytes: AtomicU64,
    closed_out_msgs: AtomicU64,
    closed_out_bytes: AtomicU64,
}

impl Registry {
    pub(crate) fn add(&self, conn: Arc<Connection>) {
        self.open.lock().insert(conn.id, conn);
    }

    /// Takes a closed connection out, keeping what it counted in the totals.
    pub(crate) fn remove(&self, id: u64) {
        let Some(conn) = self.open.lock().remove(&id) else {
            return;
        };
        let add = |to: &AtomicU64, n: u64| {
            to.fetch_add(n, Ordering::Relaxed);
        };
        add(&self.closed_in_msgs, conn.in_msgs.load(Ordering::Relaxed));
        add(&self.closed_in_bytes, conn.in_bytes.load(Ordering::Relaxed));
        add(&self.closed_out_msgs, conn.out.msgs_out());
        add(&self.closed_out_bytes, conn.out.bytes_out());
    }

    /// The open connections, by id.
    pub(crate) fn list(&self) -> Vec<Arc<Connection>> {
        let mut all: Vec<_> = self.open.lock().values().cloned().collect();
        all.sort_unstable_by_key(|c| c.id);
        all
    }

    /// The server's totals: `stats` (connections, slow consumers, the HTTP door's traffic)
    /// plus every connection's own counters.
    pub(crate) fn snapshot(&self, stats: &Stats) -> StatsSnapshot {
        let mut snap = stats.snapshot();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        snap.msgs_in += get(&self.closed_in_msgs);
        snap.bytes_in += get(&self.closed_in_bytes);
        snap.msgs_out += get(&self.closed_out_msgs);
        snap.bytes_out += get(&self.closed_out_bytes);
        for conn in self.list() {
            snap.msgs_in += get(&conn.in_msgs);
            snap.bytes_in += get(&conn.in_bytes);
            snap.msgs_out += conn.out.msgs_out();
            snap.bytes_out += conn.out.bytes_out();
        }
        snap
    }
}
