//! Health and nats-server's monitoring endpoints, with its JSON field names so that NATS
//! tooling reads herald.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use serde_json::{Value, json};

use super::{AppState, query_value};
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
    let stats = shared.snapshot();
    let now = SystemTime::now();
    let uptime = now.duration_since(shared.started).unwrap_or_default();
    let subscriptions = shared.subscriptions();
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
        "max_scopes": config.max_scopes,
        "scopes": shared.node.scope_count(),
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
        "out_msgs": stats.msgs_out,
        "out_bytes": stats.bytes_out,
        "slow_consumers": stats.slow_consumers,
        "subscriptions": subscriptions,
        "start": herald::time::rfc3339(shared.started),
        "now": herald::time::rfc3339(now),
        "uptime": humantime::format_duration(std::time::Duration::from_secs(uptime.as_secs())).to_string(),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "auth_required": shared.users.required(),
        "auth_timeout": config.auth_timeout.as_secs_f64(),
        "tls_required": shared.tls.is_some(),
        "tls_timeout": config.tls_timeout.as_secs_f64(),
    }))
}

/// Paging of a monitoring list: `?offset=&limit=` (nats-server's default limit is 1024).
fn paging(uri: &Uri) -> (usize, usize) {
    let number = |name: &str, default: usize| {
        query_value(uri.query(), name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    (number("offset", 0), number("limit", 1024))
}

fn seconds(d: std::time::Duration) -> String {
    humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
}

/// `GET /connz`: the open NATS connections, with their counters.
pub(crate) async fn connz(State(app): AppState, uri: Uri) -> Json<Value> {
    let shared = &app.shared;
    let now = SystemTime::now();
    let all = shared.registry.list();
    let (offset, limit) = paging(&uri);
    let connections: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|conn| {
            let meta = conn.meta.lock().clone();
            json!({
                "cid": conn.id,
                "kind": "Client",
                "type": "nats",
                "ip": conn.peer.map(|p| p.ip().to_string()).unwrap_or_default(),
                "port": conn.peer.map(|p| p.port()).unwrap_or(0),
                "start": herald::time::rfc3339(conn.started),
                "uptime": seconds(now.duration_since(conn.started).unwrap_or_default()),
                "pending_bytes": conn.out.pending_bytes(),
                "in_msgs": conn.in_msgs.load(Ordering::Relaxed),
                "out_msgs": conn.out.msgs_out(),
                "in_bytes": conn.in_bytes.load(Ordering::Relaxed),
                "out_bytes": conn.out.bytes_out(),
                "subscriptions": conn.subscriptions.load(Ordering::Relaxed),
                "name": meta.name,
                "lang": meta.lang,
                "version": meta.version,
                "account": meta.scope,
            })
        })
        .collect();
    Json(json!({
        "server_id": shared.server_id,
        "now": herald::time::rfc3339(now),
        "num_connections": connections.len(),
        "total": all.len(),
        "offset": offset,
        "limit": limit,
        "connections": connections,
    }))
}

/// `GET /subsz`: subscription counts, over every scope of this node.
pub(crate) async fn subsz(State(app): AppState) -> Json<Value> {
    let shared = &app.shared;
    let (mut subscriptions, mut cached) = (0, 0);
    for scope in shared.node.scopes() {
        let Some(router) = shared.node.existing_router(&scope, 1) else {
            continue;
        };
        subscriptions += router.subscription_count();
        cached += router.index().cached();
    }
    Json(json!({
        "server_id": shared.server_id,
        "now": herald::time::rfc3339(SystemTime::now()),
        "num_subscriptions": subscriptions,
        "num_cache": cached,
    }))
}

/// `GET /routez`: the routes to the other members of this node's cluster.
pub(crate) async fn routez(State(app): AppState) -> Json<Value> {
    let shared = &app.shared;
    let routes: Vec<Value> = shared
        .node
        .cluster_info()
        .map(|info| {
            info.members
                .iter()
                .filter_map(|m| m.route.as_ref().map(|r| (m, r)))
                .enumerate()
                .map(|(i, (member, route))| {
                    let addr: Option<std::net::SocketAddr> = member.route_addr.parse().ok();
                    json!({
                        "rid": i + 1,
                        "remote_id": member.name,
                        "remote_name": member.name,
                        "did_solicit": route.direction == "outbound",
                        "ip": addr.map(|a| a.ip().to_string()).unwrap_or_default(),
                        "port": addr.map(|a| a.port()).unwrap_or(0),
                        "in_msgs": route.msgs_in,
                        "out_msgs": route.msgs_out,
                        "in_bytes": route.bytes_in,
                        "out_bytes": route.bytes_out,
                        "subscriptions": route.interest,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Json(json!({
        "server_id": shared.server_id,
        "now": herald::time::rfc3339(SystemTime::now()),
        "num_routes": routes.len(),
        "routes": routes,
    }))
}

/// `GET /jsz`: the streams this server keeps (`?streams=true` lists each).
pub(crate) async fn jsz(State(app): AppState, uri: Uri) -> Json<Value> {
    let shared = &app.shared;
    let now = herald::time::rfc3339(SystemTime::now());
    let Some(streams) = app.streams.as_ref() else {
        return Json(json!({
            "server_id": shared.server_id,
            "now": now,
            "disabled": true,
        }));
    };
    let list = streams.list();
    let (mut messages, mut bytes, mut consumers) = (0, 0, 0);
    for info in &list {
        messages += info.state.messages;
        bytes += info.state.bytes;
        consumers += info.state.consumers;
    }
    let mut answer = json!({
        "server_id": shared.server_id,
        "now": now,
        "config": { "store_dir": shared.config.data_dir },
        "storage": bytes,
        "memory": 0,
        "streams": list.len(),
        "consumers": consumers,
        "messages": messages,
        "bytes": bytes,
    });
    if let Some(meta) = &shared.meta {
        // The meta group as nats-server's `meta_cluster` shows it.
        let members = meta.members();
        let leader = meta.leader().and_then(|id| members.get(&id).cloned());
        answer["meta_cluster"] = json!({
            "name": shared.node.cluster_info().map(|c| c.cluster).unwrap_or_default(),
            "leader": leader,
            "cluster_size": members.len(),
        });
    }
    let replicated = app.replication.as_ref().map(|r| (r, r.streams()));
    if query_value(uri.query(), "streams").as_deref() == Some("true") {
        let detail: Vec<Value> = list
            .iter()
            .map(|info| {
                let mut stream = json!({
                    "name": info.config.name,
                    "created": herald::time::rfc3339(info.created),
                    "state": info.state,
                });
                // A replica: the leader, the others with their lag, the leader changes seen.
                if let Some((replication, states)) = &replicated
                    && let Some(state) = states.iter().find(|s| s.stream == info.config.name)
                {
                    stream["cluster"] = replication.cluster_object(state);
                    stream["leader_changes"] = state.leader_changes.into();
                }
                stream
            })
            .collect();
        answer["account_details"] = json!([{ "name": "default", "stream_detail": detail }]);
    }
    Json(answer)
}
