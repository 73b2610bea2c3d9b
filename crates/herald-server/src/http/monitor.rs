//! Health and nats-server's monitoring endpoints, with its JSON field names so that NATS
//! tooling reads herald.

use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use crate::shared::NATS_VERSION;

/// `GET /healthz`: 200 while serving, 503 once shutting down.
pub(crate) async fn healthz(State(app): AppState) -> (StatusCode, Json<Value>) {
    if *app.shared.shutdown.borrow() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "error": "shutting down" })),
        );
    }
    (StatusCode::OK, Json(json!({ "status": "ok" })))
}

/// `GET /varz`: the server's identity, settings and counters.
pub(crate) async fn varz(State(app): AppState) -> Json<Value> {
    let shared = &app.shared;
    let config = &shared.config;
    let stats = shared.stats.snapshot();
    let now = SystemTime::now();
    let uptime = now.duration_since(shared.started).unwrap_or_default();
    let subscriptions: usize = shared
        .node
        .scopes()
        .iter()
        .map(|scope| shared.node.router(scope, 1).subscription_count())
        .sum();
    let routes = shared
        .node
        .cluster_info()
        .map(|info| info.members.iter().filter(|m| m.route.is_some()).count())
        .unwrap_or(0);
    Json(json!({
        "server_id": shared.server_id,
        "server_name": config.name,
        "version": NATS_VERSION,
        "herald_version": env!("CARGO_PKG_VERSION"),
        "proto": 1,
        "host": shared.addr.ip().to_string(),
        "port": shared.addr.port(),
        "http_host": shared.http_addr.map(|a| a.ip().to_string()),
        "http_port": shared.http_addr.map(|a| a.port()),
        "max_connections": config.max_connections,
        "max_subscriptions": config.max_subscriptions,
        "ping_interval": config.ping_interval.as_nanos() as u64,
        "ping_max": config.max_pings_out,
        "max_control_line": config.max_control_line,
        "max_payload": config.max_payload,
        "max_pending": config.max_pending,
        "write_deadline": config.write_deadline.as_nanos() as u64,
        "jetstream": { "enabled": shared.jetstream },
        "connections": stats.connections,
        "total_connections": stats.connections_total,
        "routes": routes,
        "in_msgs": stats.msgs_in,
        "in_bytes": stats.bytes_in,
        "out_bytes": stats.bytes_out,
        "slow_consumers": stats.slow_consumers,
        "subscriptions": subscriptions,
        "start": herald::time::rfc3339(shared.started),
        "now": herald::time::rfc3339(now),
        "uptime": humantime::format_duration(std::time::Duration::from_secs(uptime.as_secs())).to_string(),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "auth_required": false,
    }))
}
