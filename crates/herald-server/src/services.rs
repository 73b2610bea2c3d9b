//! herald's own services on `$HERALD.API.>` (JSON request/reply, in the default scope, each
//! answered by the node it reaches): the server's identity and counters, its cluster view,
//! and the cluster barrier.

use std::sync::Arc;

use herald::{CallbackHandle, Router, SubscribeOptions};

use crate::groups::{GROUPS_SUBJECT_PREFIX, answer, parse_request, run};

use crate::shared::{NATS_VERSION, Shared};

/// The subject of the server's own information service (JSON request/reply).
pub const SERVER_INFO_SUBJECT: &str = "$HERALD.API.SERVER.INFO";

/// The subject of the server's cluster view (members, routes, interest), as JSON.
pub const CLUSTER_INFO_SUBJECT: &str = "$HERALD.API.CLUSTER.INFO";

/// The subject of the cluster barrier: the answer comes once the subscriptions this server
/// had when the request arrived are known to every member (`Node::flush`). A JSON body
/// `{"peers": N}` first waits until N other members are routed to, `"meta": M` until the meta
/// group has a leader and M voters; `"timeout_ms"` bounds each wait (default 5000, under a
/// client's usual request timeout).
pub const CLUSTER_FLUSH_SUBJECT: &str = "$HERALD.API.CLUSTER.FLUSH";

/// Answers `$HERALD.API.SERVER.INFO` in the default scope with the server's identity and
/// counters. Node-only: in a cluster, each server answers for itself.
pub(crate) fn info_service(shared: &Arc<Shared>) -> herald::Result<CallbackHandle> {
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
                "stats": shared.snapshot(),
            });
            if let Err(err) = msg.respond(body.to_string()) {
                tracing::debug!(%err, "cannot answer {SERVER_INFO_SUBJECT}");
            }
        },
    )
}

/// The subject that puts the server in lame duck mode (what SIGUSR2 does to `herald serve`):
/// the answer `{"lame_duck": true, "duration_ms": ..}` comes at once, then the server stops
/// accepting, tells its clients to go elsewhere, closes them over `lame_duck_duration` and
/// stops. Node-only: each server is asked on its own. Where users are configured, deny it in
/// the permissions of those who must not restart servers.
pub const LAME_DUCK_SUBJECT: &str = "$HERALD.API.SERVER.LAMEDUCK";

/// Answers `$HERALD.API.SERVER.LAMEDUCK` in the default scope (see [`LAME_DUCK_SUBJECT`]).
pub(crate) fn lame_duck_service(shared: &Arc<Shared>) -> herald::Result<CallbackHandle> {
    let router = shared.node.router("default", shared.config.capacity);
    let weak = Arc::downgrade(shared);
    router.on_with(
        LAME_DUCK_SUBJECT,
        SubscribeOptions::new().node_only(),
        move |msg| {
            let Some(shared) = weak.upgrade() else { return };
            tracing::info!("lame duck mode asked for on {LAME_DUCK_SUBJECT}");
            let body = serde_json::json!({
                "lame_duck": true,
                "duration_ms": shared.config.lame_duck_duration.as_millis() as u64,
            });
            if let Err(err) = msg.respond(body.to_string()) {
                tracing::debug!(%err, "cannot answer {LAME_DUCK_SUBJECT}");
            }
            shared.lame_duck_asked.send_replace(true);
        },
    )
}

/// Answers `$HERALD.API.CLUSTER.INFO` in the default scope with this node's view of its
/// cluster (`{"error": ..}` when it is in none). Node-only, like the server information.
pub(crate) fn cluster_service(shared: &Arc<Shared>) -> herald::Result<CallbackHandle> {
    let router = shared.node.router("default", shared.config.capacity);
    let node = shared.node.clone();
    let meta = shared.meta.clone();
    router.on_with(
        CLUSTER_INFO_SUBJECT,
        SubscribeOptions::new().node_only(),
        move |msg| {
            let body = match node.cluster_info() {
                Some(info) => {
                    let mut body = serde_json::to_value(&info).unwrap_or_default();
                    if let Some(meta) = &meta {
                        let members = meta.members();
                        body["meta"] = serde_json::json!({
                            "leader": meta.leader().and_then(|id| members.get(&id)),
                            "members": members.values().collect::<Vec<_>>(),
                        });
                    }
                    body.to_string()
                }
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

/// Requests the groups service of a scope holds while it answers others; past it the oldest
/// waiting request is dropped (its requester times out).
const GROUPS_SERVICE_CAPACITY: usize = 16;

/// A hold on the groups service of one scope: the scope answers `$HERALD.API.GROUPS.<OP>`
/// while any connection in it holds one, and the last one out stops the service, so that the
/// scope can be forgotten once unused.
pub(crate) struct GroupsLease {
    shared: Arc<Shared>,
    scope: String,
}

/// Makes sure `router`'s scope answers `$HERALD.API.GROUPS.<OP>` while the lease is held.
pub(crate) fn serve_groups(shared: &Arc<Shared>, router: &Router) -> GroupsLease {
    let mut services = shared.group_services.lock();
    match services.get_mut(router.scope()) {
        Some((holders, _)) => *holders += 1,
        None => match groups_service(router) {
            Ok(handle) => {
                services.insert(router.scope().to_owned(), (1, handle));
            }
            Err(err) => tracing::warn!(%err, scope = router.scope(), "cannot serve groups"),
        },
    }
    GroupsLease {
        shared: shared.clone(),
        scope: router.scope().to_owned(),
    }
}

impl Drop for GroupsLease {
    fn drop(&mut self) {
        let mut services = self.shared.group_services.lock();
        let Some((holders, _)) = services.get_mut(&self.scope) else {
            return;
        };
        *holders -= 1;
        if *holders == 0
            && let Some((_, service)) = services.remove(&self.scope)
        {
            drop(services);
            service.cancel();
        }
    }
}

/// Answers `$HERALD.API.GROUPS.<OP>` in `router`'s scope (see [`crate::groups`]). Node-only:
/// groups are shared through the cluster by gossip, so each node answers for itself.
fn groups_service(router: &Router) -> herald::Result<CallbackHandle> {
    // The scope's routers are its users: the service must not be one of them.
    let node = router.node();
    let scope = router.scope().to_owned();
    // Requests to it are rare: a small buffer (a scope per tenant must stay cheap).
    let router = node.router(&scope, GROUPS_SERVICE_CAPACITY);
    router.on_with(
        &format!("{GROUPS_SUBJECT_PREFIX}*"),
        SubscribeOptions::new().node_only(),
        move |msg| {
            let op = &msg.subject()[GROUPS_SUBJECT_PREFIX.len()..];
            let Some(scoped) = node.existing_router(&scope, 1) else {
                return;
            };
            let result = parse_request(op, msg.payload()).and_then(|op| run(&scoped, op));
            if let Err(err) = msg.respond(answer(result)) {
                tracing::debug!(%err, "cannot answer {}", msg.subject());
            }
        },
    )
}

/// Answers `$HERALD.API.CLUSTER.FLUSH` once [`Node::flush`] returns: `{}`, or
/// `{"error": ..}`.
pub(crate) fn flush_service(shared: &Arc<Shared>) -> herald::Result<CallbackHandle> {
    #[derive(serde::Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Ask {
        #[serde(default)]
        peers: usize,
        /// Also wait until the meta group has a leader and this many voters.
        meta: Option<usize>,
        timeout_ms: Option<u64>,
    }
    let router = shared.node.router("default", shared.config.capacity);
    let node = shared.node.clone();
    let meta = shared.meta.clone();
    let runtime = tokio::runtime::Handle::current();
    router.on_with(
        CLUSTER_FLUSH_SUBJECT,
        SubscribeOptions::new().node_only(),
        move |msg| {
            let node = node.clone();
            let meta = meta.clone();
            runtime.spawn(async move {
                // An empty body asks for a plain flush; anything else must be the JSON above.
                let ask: Result<Ask, String> = match msg.payload().trim_ascii() {
                    b"" => Ok(Ask::default()),
                    body => serde_json::from_slice(body).map_err(|e| format!("bad request: {e}")),
                };
                let done = match ask {
                    Ok(ask) => {
                        let wait = std::time::Duration::from_millis(ask.timeout_ms.unwrap_or(5000));
                        let formed = match (ask.meta, &meta) {
                            (None, _) => Ok(()),
                            (Some(voters), Some(meta)) => meta
                                .wait_for_leader(None, voters, wait)
                                .await
                                .map(drop)
                                .map_err(|e| e.to_string()),
                            (Some(_), None) => {
                                Err("this server is in no meta group (clustered, with a data directory)".to_owned())
                            }
                        };
                        match formed {
                            Ok(()) => match node.wait_for_peers(ask.peers, wait).await {
                                Ok(()) => node.flush().await.map_err(|e| e.to_string()),
                                Err(err) => Err(err.to_string()),
                            },
                            Err(err) => Err(err),
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
