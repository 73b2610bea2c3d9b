//! Membership through chitchat: who is in the cluster, where their routes are, and shared
//! cluster-wide state (groups of topics).
//!
//! Each node gossips over UDP on its route port number and publishes its route address under
//! the key `route`. chitchat's failure detector decides who is live; its live-member map is
//! handed to [`Cluster::set_members`] each time it changes, which dials and closes routes.
//! The chitchat cluster id is the cluster name plus a MAC of it under the shared secret, so
//! nodes with another name or secret never see each other in gossip.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::transport::UdpTransport;
use chitchat::{
    ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, NodeState, ProtocolVersion,
    spawn_chitchat,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{Cluster, Peer, handshake};
use crate::error::{Error, Result};
use crate::scope::GroupState;

/// The gossip key holding a node's route address.
const ROUTE_KEY: &str = "route";

/// Starts gossiping on `listen` (UDP) and follows the live member list.
pub(super) async fn start(
    cluster: &Arc<Cluster>,
    listen: SocketAddr,
    seeds: Vec<String>,
    interval: Duration,
) -> Result<ChitchatHandle> {
    let id = ChitchatId::new(
        cluster.me.name.to_string(),
        cluster.me.generation,
        cluster.route_addr,
    );
    let config = ChitchatConfig {
        chitchat_id: id,
        cluster_id: cluster_id(&cluster.cluster_name, &cluster.secret),
        gossip_interval: interval,
        listen_addr: listen,
        seed_nodes: seeds,
        failure_detector_config: FailureDetectorConfig {
            phi_threshold: 8.0,
            sampling_window_size: 1000,
            max_interval: Duration::from_secs(10),
            // The detector's prior: without it a new peer needs many rounds to be judged.
            initial_interval: interval,
            dead_node_grace_period: Duration::from_secs(60),
        },
        marked_for_deletion_grace_period: Duration::from_secs(3600),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: ProtocolVersion::V1,
    };
    let initial = vec![(ROUTE_KEY.to_owned(), cluster.route_addr.to_string())];
    let handle = spawn_chitchat(config, initial, &UdpTransport)
        .await
        .map_err(|e| Error::Cluster(format!("cannot start gossip on udp {listen}: {e:#}")))?;
    let live = handle.with_chitchat(|c| c.live_nodes_watcher()).await;
    tokio::spawn(follow(cluster.clone(), live));
    if let Some(keys) = cluster.take_gossip_rx() {
        tokio::spawn(share_state(handle.chitchat(), keys));
    }
    Ok(handle)
}

/// Puts group versions and advertised values into this node's gossip state, in the order
/// they were made.
async fn share_state(
    chitchat: Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
    mut keys: tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
) {
    while let Some((key, value)) = keys.recv().await {
        chitchat.lock().await.self_node_state().set(key, value);
    }
}

/// The gossip key prefix of what the application advertises (a server's client address).
pub(super) const ADVERTISED_PREFIX: &str = "adv:";

/// What every other live member advertises, by member name, then key.
fn advertised(
    cluster: &Cluster,
    live: &BTreeMap<ChitchatId, NodeState>,
) -> BTreeMap<Arc<str>, BTreeMap<String, String>> {
    let mut out: BTreeMap<Arc<str>, BTreeMap<String, String>> = BTreeMap::new();
    for (id, state) in live {
        if *id.node_id == *cluster.me.name {
            continue;
        }
        let keys = out.entry(id.node_id.clone()).or_default();
        for (key, versioned) in state.iter_prefix(ADVERTISED_PREFIX) {
            keys.insert(
                key[ADVERTISED_PREFIX.len()..].to_owned(),
                versioned.value.clone(),
            );
        }
    }
    out
}

/// The gossip key prefix of group versions.
const GROUP_PREFIX: &str = "group:";

/// A group version as gossip carries it.
#[derive(Serialize, Deserialize)]
struct SharedGroup {
    scope: String,
    name: String,
    #[serde(flatten)]
    state: GroupState,
}

/// The gossip key and value of a group version.
pub(super) fn group_entry(scope: &str, name: &str, group: &GroupState) -> (String, String) {
    let key = format!(
        "{GROUP_PREFIX}{}",
        serde_json::to_string(&(scope, name)).unwrap_or_default()
    );
    let value = serde_json::to_string(&SharedGroup {
        scope: scope.to_owned(),
        name: name.to_owned(),
        state: group.clone(),
    })
    .unwrap_or_default();
    (key, value)
}

/// Takes the newest version of every group any live member gossips, and mirrors this node's
/// resulting version into its own state, so a group outlives the node that changed it last.
fn merge_groups(cluster: &Cluster, live: &BTreeMap<ChitchatId, NodeState>) {
    let Some(node) = cluster.scopes() else { return };
    let mut newest: BTreeMap<&str, SharedGroup> = BTreeMap::new();
    let mut mine: BTreeMap<&str, &str> = BTreeMap::new();
    for (id, state) in live {
        let is_me = *id.node_id == *cluster.me.name
            && id.generation_id == cluster.me.generation
            && id.gossip_advertise_addr == cluster.me.addr;
        for (key, versioned) in state.iter_prefix(GROUP_PREFIX) {
            if is_me {
                mine.insert(key, &versioned.value);
            }
            let Ok(group) = serde_json::from_str::<SharedGroup>(&versioned.value) else {
                tracing::warn!(peer = %id.node_id, key, "unreadable group in gossip; ignored");
                continue;
            };
            if newest
                .get(key)
                .is_none_or(|best| group.state.newer_than(&best.state))
            {
                newest.insert(key, group);
            }
        }
    }
    for (key, group) in newest {
        // A deleted group of a scope this node no longer has needs no tombstone here.
        let scope = match node.get(&group.scope) {
            Some(scope) => scope,
            None if group.state.deleted => continue,
            None => node.scope(&group.scope),
        };
        scope.merge_group(&group.name, &group.state);
        let ours = scope.groups.lock().get(&group.name).cloned();
        if let Some(ours) = ours {
            let (_, value) = group_entry(&group.scope, &group.name, &ours);
            if mine.get(key) != Some(&value.as_str()) {
                let _ = cluster.gossip_tx.send((key.to_owned(), value));
            }
        }
    }
}

/// Hands every change of the live member map to the cluster until the node closes.
async fn follow(cluster: Arc<Cluster>, mut live: watch::Receiver<BTreeMap<ChitchatId, NodeState>>) {
    let mut closing = cluster.closing.subscribe();
    loop {
        {
            let live = live.borrow_and_update();
            cluster.set_members(members(&cluster, &live));
            cluster.set_advertised(advertised(&cluster, &live));
            merge_groups(&cluster, &live);
        }
        tokio::select! {
            changed = live.changed() => if changed.is_err() { break },
            _ = closing.wait_for(|c| *c) => break,
        }
    }
}

/// The other live members and their route addresses. A member whose route address is
/// missing or unreadable is skipped (and logged): nothing can be sent to it.
fn members(
    cluster: &Cluster,
    live: &BTreeMap<ChitchatId, NodeState>,
) -> BTreeMap<Peer, SocketAddr> {
    let mut out = BTreeMap::new();
    for (id, state) in live {
        let Some(Ok(addr)) = state.get(ROUTE_KEY).map(str::parse::<SocketAddr>) else {
            tracing::warn!(peer = %id.node_id, "member gossips no readable route address; ignored");
            continue;
        };
        let peer = Peer {
            name: id.node_id.clone(),
            generation: id.generation_id,
            addr,
        };
        if peer != cluster.me {
            out.insert(peer, addr);
        }
    }
    out
}

/// The chitchat cluster id: the name and a MAC of it under the secret.
fn cluster_id(name: &str, secret: &[u8]) -> String {
    use hmac::Mac as _;
    let mac = handshake::mac(secret, &[b"herald-cluster", name.as_bytes()]);
    let tag = mac.finalize().into_bytes();
    format!("{name}/{}", hex::encode(&tag[..8]))
}
