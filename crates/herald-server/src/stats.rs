//! Server-wide counters, updated with relaxed atomics and read as a snapshot: connection
//! events, slow consumers, and the HTTP door's traffic. NATS connections count their own
//! traffic (`registry`), summed in when a snapshot is taken.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Counters shared by every connection of a server.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Connections open now.
    pub connections: AtomicU64,
    /// Clients closed (or, under the drop policy, first refused) as slow consumers.
    pub slow_consumers: AtomicU64,
    /// Messages received over HTTP.
    pub msgs_in: AtomicU64,
    /// Payload bytes received over HTTP.
    pub bytes_in: AtomicU64,
    /// Messages sent to SSE clients.
    pub msgs_out: AtomicU64,
    /// Bytes written to SSE clients.
    pub bytes_out: AtomicU64,
    /// HTTP connections accepted since start.
    pub http_connections_total: AtomicU64,
    /// HTTP connections open now.
    pub http_connections: AtomicU64,
    /// Event streams open now (subscriptions and stream consumers over SSE).
    pub event_streams: AtomicU64,
}

/// A point-in-time copy of [`Stats`], as `$HERALD.API.SERVER.INFO` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Connections open now.
    pub connections: u64,
    /// Slow consumers seen.
    pub slow_consumers: u64,
    /// Messages received from clients.
    pub msgs_in: u64,
    /// Payload bytes received from clients.
    pub bytes_in: u64,
    /// Messages sent to clients.
    #[serde(default)]
    pub msgs_out: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// HTTP connections accepted since start.
    #[serde(default)]
    pub http_connections_total: u64,
    /// HTTP connections open now.
    #[serde(default)]
    pub http_connections: u64,
    /// Event streams open now.
    #[serde(default)]
    pub event_streams: u64,
}

impl Stats {
    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            connections_total: get(&self.connections_total),
            connections: get(&self.connections),
            slow_consumers: get(&self.slow_consumers),
            msgs_in: get(&self.msgs_in),
            bytes_in: get(&self.bytes_in),
            msgs_out: get(&self.msgs_out),
            bytes_out: get(&self.bytes_out),
            http_connections_total: get(&self.http_connections_total),
            http_connections: get(&self.http_connections),
            event_streams: get(&self.event_streams),
        }
    }
}

/// Counts one open thing in a gauge of [`Stats`] for as long as it is held.
pub(crate) struct Held {
    stats: Arc<Stats>,
    gauge: fn(&Stats) -> &AtomicU64,
}

impl Held {
    /// Adds one to `gauge` (and to `total`, if given) until the result is dropped.
    pub(crate) fn new(
        stats: Arc<Stats>,
        gauge: fn(&Stats) -> &AtomicU64,
        total: Option<fn(&Stats) -> &AtomicU64>,
    ) -> Held {
        gauge(&stats).fetch_add(1, Ordering::Relaxed);
        if let Some(total) = total {
            total(&stats).fetch_add(1, Ordering::Relaxed);
        }
        Held { stats, gauge }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        (self.gauge)(&self.stats).fetch_sub(1, Ordering::Relaxed);
    }
}
