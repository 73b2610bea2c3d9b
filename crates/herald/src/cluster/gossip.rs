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
use tokio::sync::watch;

use super::{Cluster, Peer, link};
use crate::error::{Error, Result};

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
    Ok(handle)
}

/// Hands every change of the live member map to the cluster until the node closes.
async fn follow(cluster: Arc<Cluster>, mut live: watch::Receiver<BTreeMap<ChitchatId, NodeState>>) {
    let mut closing = cluster.closing.subscribe();
    loop {
        let members = members(&cluster, &live.borrow_and_update());
        cluster.set_members(members);
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
        let peer = Peer {
            name: id.node_id.clone(),
            generation: id.generation_id,
        };
        if peer == cluster.me {
            continue;
        }
        match state.get(ROUTE_KEY).map(str::parse::<SocketAddr>) {
            Some(Ok(addr)) => {
                out.insert(peer, addr);
            }
            _ => tracing::warn!(peer = %peer, "member gossips no readable route address; ignored"),
        }
    }
    out
}

/// The chitchat cluster id: the name and a MAC of it under the secret.
fn cluster_id(name: &str, secret: &[u8]) -> String {
    let mac = link::mac(secret, &[b"herald-cluster", name.as_bytes()]);
    format!("{name}/{}", &mac[..16])
}
