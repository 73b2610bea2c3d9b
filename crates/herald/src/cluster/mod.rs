//! Clustering: nodes find each other by gossip and forward messages over routes, by interest.
//!
//! - **Membership** (`gossip`): [chitchat](https://docs.rs/chitchat), Quickwit's scuttlebutt
//!   gossip with a phi-accrual failure detector, over UDP on the same port number as the
//!   route listener. Each node advertises its route address in its gossip state; a node
//!   started with one seed learns every member. Groups of topics ride on the same state.
//! - **Routes** (`link`): one TCP connection per pair of nodes, dialled by the node whose
//!   identity sorts first and opened with a handshake that checks the cluster name and proves
//!   the shared secret both ways (HMAC-SHA256 over fresh nonces, `handshake`). Nothing else is read or sent
//!   before it succeeds.
//! - **Interest**: each node counts its local subscriptions per (scope, pattern, queue group)
//!   and tells every route when a count goes from 0 to 1 (`RS+`) or back (`RS-`). A new route
//!   starts with the full set. The far side puts one entry per interest in the scope's index,
//!   whose target is the route.
//! - **Forwarding** (in the router's fan-out): a publish goes once to each node with matching
//!   interest, naming the queue groups that node must serve; it is fanned out there to local
//!   subscriptions only, so a message crosses one route at most.

mod gossip;
mod handshake;
mod link;
mod tls;

pub use tls::RouteTls;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use serde::Serialize;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::scope::{Announce, GroupState, Scopes};

pub(crate) use link::Link;

/// Default most bytes a route may have queued for its peer before it is closed as stalled.
pub const DEFAULT_ROUTE_MAX_PENDING: usize = 64 * 1024 * 1024;

/// How a node joins a cluster: what [`NodeBuilder`](crate::NodeBuilder) collects.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) name: Option<String>,
    pub(crate) listen: String,
    pub(crate) advertise: Option<String>,
    pub(crate) seeds: Vec<String>,
    pub(crate) cluster_name: String,
    pub(crate) secret: String,
    pub(crate) gossip_interval: Duration,
    pub(crate) route_max_pending: usize,
    pub(crate) tls: Option<RouteTls>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            name: None,
            listen: "127.0.0.1:0".into(),
            advertise: None,
            seeds: Vec::new(),
            cluster_name: "herald".into(),
            secret: String::new(),
            gossip_interval: Duration::from_millis(100),
            route_max_pending: DEFAULT_ROUTE_MAX_PENDING,
            tls: None,
        }
    }
}

/// Binds the route and gossip ports, starts gossiping with the seeds, and returns the
/// cluster membership of the node whose scopes are `scopes`: every scope of it announces its
/// interest to the cluster, and the cluster finds the scopes that remote interest and
/// messages name there. Needs a tokio runtime.
pub(crate) async fn start(settings: Settings, scopes: &Arc<Scopes>) -> Result<Arc<Cluster>> {
    let name = settings
        .name
        .clone()
        .unwrap_or_else(|| format!("node-{:08x}", fastrand::u32(..)));
    if name.is_empty()
        || name
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(Error::Cluster(format!(
            "invalid node name {name:?}: it must be non-empty, without whitespace or control characters"
        )));
    }
    let listen = resolve(&settings.listen).await?;
    let generation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let (listener, route_addr) = bind_tcp(listen).await?;
    let advertised = match &settings.advertise {
        Some(a) => resolve(a).await?,
        None if route_addr.ip().is_unspecified() => {
            tracing::warn!(%route_addr, "listening on an unspecified address: advertising 127.0.0.1; set an advertise address for other hosts");
            SocketAddr::new([127, 0, 0, 1].into(), route_addr.port())
        }
        None => route_addr,
    };
    let me = Peer {
        name: name.as_str().into(),
        generation,
        addr: advertised,
    };
    let (closing, _) = watch::channel(false);
    let (changed, _) = watch::channel(0u64);
    let (gossip_tx, gossip_rx) = tokio::sync::mpsc::unbounded_channel();
    let cluster = Arc::new(Cluster {
        me: me.clone(),
        cluster_name: settings.cluster_name.clone(),
        secret: settings.secret.clone().into_bytes(),
        route_addr: advertised,
        scopes: Arc::downgrade(scopes),
        state: Mutex::default(),
        changed,
        closing,
        gossip: Mutex::new(None),
        route_max_pending: settings.route_max_pending,
        tls: settings.tls.clone(),
        seeds: Mutex::default(),
        gossip_tx,
        gossip_rx: Mutex::new(Some(gossip_rx)),
    });
    // Before anything is heard from other nodes: every scope, including those remote
    // interest makes, announces its own.
    scopes.announce_to(cluster.clone());
    let seeds: Vec<String> = settings
        .seeds
        .iter()
        .filter(|s| !is_self(s, route_addr, advertised))
        .cloned()
        .collect();
    let gossip = gossip::start(
        &cluster,
        route_addr,
        seeds.clone(),
        settings.gossip_interval,
    )
    .await?;
    cluster.seeds.lock().clone_from(&seeds);
    if !seeds.is_empty() {
        tokio::spawn(warn_if_alone(Arc::downgrade(&cluster), seeds));
    }
    *cluster.gossip.lock() = Some(gossip);
    tokio::spawn(link::accept_loop(cluster.clone(), listener));
    tracing::info!(node = %me, cluster = %settings.cluster_name, route = %advertised, "joined cluster");
    Ok(cluster)
}

/// Says once, clearly, when no seed let this node in: gossip from another cluster (other name
/// or secret) is dropped without an answer, so silence is all a misconfigured node sees.
async fn warn_if_alone(cluster: Weak<Cluster>, seeds: Vec<String>) {
    let patience = Duration::from_secs(5);
    tokio::time::sleep(patience).await;
    if let Some(cluster) = cluster.upgrade()
        && !*cluster.closing.borrow()
        && cluster.state.lock().members.is_empty()
    {
        tracing::warn!(
            seeds = %seeds.join(","),
            cluster = %cluster.cluster_name,
            "no member reachable through the seeds after {patience:?}: check their addresses, the cluster name and the cluster secret"
        );
    }
}

/// The first address `addr` resolves to.
async fn resolve(addr: &str) -> Result<SocketAddr> {
    let mut addrs = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| Error::Cluster(format!("cannot resolve {addr:?}: {e}")))?;
    addrs
        .next()
        .ok_or_else(|| Error::Cluster(format!("{addr:?} resolves to no address")))
}

/// Binds the route listener. Gossip takes the same port number over UDP; with port 0, a port
/// whose UDP twin is taken is given back and another tried.
async fn bind_tcp(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr)> {
    let attempts = if addr.port() == 0 { 16 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Cluster(format!("cannot listen for routes on {addr}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::Cluster(format!("route listener: {e}")))?;
        match std::net::UdpSocket::bind(local) {
            // Free over UDP too: release the probe, chitchat binds it next.
            Ok(_) => return Ok((listener, local)),
            Err(e) => last = Some(format!("cannot gossip on udp {local}: {e}")),
        }
    }
    Err(Error::Cluster(last.unwrap_or_default()))
}

/// Whether seed `seed` names this node (a shared seed list may include every member).
fn is_self(seed: &str, listen: SocketAddr, advertised: SocketAddr) -> bool {
    let Ok(addr) = seed.parse::<SocketAddr>() else {
        return false;
    };
    addr == listen
        || addr == advertised
        || (addr.port() == listen.port() && listen.ip().is_unspecified() && addr.ip().is_loopback())
}

/// One node process: its name, its start time (milliseconds), which tells a restarted
/// process from the one it replaces, and its route address, which tells apart two processes
/// wrongly given one name (and started within the same millisecond).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Peer {
    pub(crate) name: Arc<str>,
    pub(crate) generation: u64,
    pub(crate) addr: SocketAddr,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.name, self.generation)
    }
}

/// A local interest: (scope, pattern, queue group).
type InterestKey = (Arc<str>, Arc<str>, Option<Arc<str>>);

/// A node's cluster membership: its routes, the members gossip reports, and the interest it
/// shares.
pub(crate) struct Cluster {
    pub(crate) me: Peer,
    pub(crate) cluster_name: String,
    pub(crate) secret: Vec<u8>,
    route_addr: SocketAddr,
    /// The scopes of this node (weak: the node owns them, and the cluster).
    scopes: Weak<Scopes>,
    state: Mutex<State>,
    /// Bumped whenever a route or the member list changes (flush and waits watch it).
    changed: watch::Sender<u64>,
    /// Set once when the node leaves: every task of the cluster ends.
    pub(crate) closing: watch::Sender<bool>,
    gossip: Mutex<Option<chitchat::ChitchatHandle>>,
    pub(crate) route_max_pending: usize,
    /// Mutual TLS on routes, when configured.
    pub(crate) tls: Option<RouteTls>,
    /// The seeds it was given, this node's own address left out.
    seeds: Mutex<Vec<String>>,
    /// Keys to set in this node's gossip state, in order: group versions and what the
    /// application advertises ([`Cluster::advertise`]).
    pub(crate) gossip_tx: tokio::sync::mpsc::UnboundedSender<(String, String)>,
    gossip_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<(String, String)>>>,
}

#[derive(Default)]
struct State {
    interest: FxHashMap<InterestKey, usize>,
    links: BTreeMap<Peer, Arc<Link>>,
    dialing: BTreeSet<Peer>,
    /// Live members other than this node, with their route addresses.
    members: BTreeMap<Peer, SocketAddr>,
    /// Members that left (gossip declared them dead), and when.
    departed: BTreeMap<Peer, (SocketAddr, Instant)>,
    /// Members that said goodbye on their route; ignored until gossip forgets them too.
    left: BTreeSet<Peer>,
    /// What each live member other than this one advertises (see [`Cluster::advertise`]),
    /// by member name, then key.
    advertised: BTreeMap<Arc<str>, BTreeMap<String, String>>,
    warned_names: BTreeSet<Arc<str>>,
}

/// The cluster is told of the interest and group changes of the node's scopes.
impl Announce for Cluster {
    /// A local subscription appeared (`add`) or went away: counted, and told to every route
    /// when the count leaves or reaches zero.
    fn interest(&self, add: bool, scope: &Arc<str>, pattern: &Arc<str>, queue: Option<&Arc<str>>) {
        let key = (scope.clone(), pattern.clone(), queue.cloned());
        let mut st = self.state.lock();
        let edge = if add {
            let count = st.interest.entry(key).or_insert(0);
            *count += 1;
            *count == 1
        } else {
            match st.interest.get_mut(&key) {
                Some(count) if *count > 1 => {
                    *count -= 1;
                    false
                }
                Some(_) => {
                    st.interest.remove(&key);
                    true
                }
                None => false,
            }
        };
        if edge {
            for link in st.links.values() {
                link.send_interest(add, scope, pattern, queue.map(|q| &**q));
            }
        }
    }

    /// Shares a new version of a group through gossip.
    fn share_group(&self, scope: &str, name: &str, group: &GroupState) {
        let (key, value) = gossip::group_entry(scope, name, group);
        // Closed only when gossip stopped: the node is leaving anyway.
        let _ = self.gossip_tx.send((key, value));
    }

    fn node_name(&self) -> &str {
        &self.me.name
    }
}

impl Cluster {
    /// This node as the route handshake knows it.
    fn local(&self) -> handshake::Local<'_> {
        handshake::Local {
            cluster: &self.cluster_name,
            secret: &self.secret,
            me: &self.me,
        }
    }

    /// The scopes of this node, while it lives.
    pub(crate) fn scopes(&self) -> Option<Arc<Scopes>> {
        self.scopes.upgrade()
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// Puts `key = value` in this node's gossip state for the other members to read with
    /// [`Cluster::advertised`]; an empty value withdraws it.
    pub(crate) fn advertise(&self, key: &str, value: &str) {
        // Closed only when gossip stopped: the node is leaving anyway.
        let _ = self.gossip_tx.send((
            format!("{}{key}", gossip::ADVERTISED_PREFIX),
            value.to_owned(),
        ));
    }

    /// What the other live members advertise under `key`: (member name, value), by name.
    pub(crate) fn advertised(&self, key: &str) -> Vec<(String, String)> {
        let st = self.state.lock();
        st.advertised
            .iter()
            .filter_map(|(name, keys)| Some((name.to_string(), keys.get(key)?.clone())))
            .filter(|(_, value)| !value.is_empty())
            .collect()
    }

    /// Replaces what the other members advertise; a change wakes [`Cluster::changes`].
    pub(crate) fn set_advertised(&self, advertised: BTreeMap<Arc<str>, BTreeMap<String, String>>) {
        let mut st = self.state.lock();
        if st.advertised != advertised {
            st.advertised = advertised;
            drop(st);
            self.bump();
        }
    }

    /// A counter bumped whenever a route, the member list or what members advertise changes.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub(crate) fn take_gossip_rx(
        &self,
    ) -> Option<tokio::sync::mpsc::UnboundedReceiver<(String, String)>> {
        self.gossip_rx.lock().take()
    }

    /// Registers an established route; false if one to the same peer is already up (the new
    /// one is then closed). The route starts with every local interest, under the same lock
    /// that orders later changes, so none is missed or sent twice.
    pub(crate) fn attach(&self, link: &Arc<Link>) -> bool {
        let mut st = self.state.lock();
        if st.links.contains_key(&link.peer) {
            return false;
        }
        for (scope, pattern, queue) in st.interest.keys() {
            link.send_interest(true, scope, pattern, queue.as_deref());
        }
        st.links.insert(link.peer.clone(), link.clone());
        drop(st);
        self.bump();
        true
    }

    /// Forgets a route that closed.
    pub(crate) fn detach(&self, link: &Arc<Link>) {
        let mut st = self.state.lock();
        if st
            .links
            .get(&link.peer)
            .is_some_and(|l| Arc::ptr_eq(l, link))
        {
            st.links.remove(&link.peer);
        }
        drop(st);
        self.bump();
    }

    pub(crate) fn member_addr(&self, peer: &Peer) -> Option<SocketAddr> {
        self.state.lock().members.get(peer).copied()
    }

    pub(crate) fn done_dialing(&self, peer: &Peer) {
        self.state.lock().dialing.remove(peer);
    }

    /// Takes the live member list from gossip: dials new members (when this node sorts first),
    /// closes routes to members that left.
    pub(crate) fn set_members(self: &Arc<Self>, mut live: BTreeMap<Peer, SocketAddr>) {
        let mut st = self.state.lock();
        st.left.retain(|p| live.contains_key(p));
        live.retain(|p, _| !st.left.contains(p));
        if st.members == live {
            return;
        }
        let now = Instant::now();
        let gone: Vec<Peer> = st
            .members
            .keys()
            .filter(|p| !live.contains_key(*p))
            .cloned()
            .collect();
        for peer in &gone {
            if let Some(addr) = st.members.get(peer).copied() {
                tracing::warn!(peer = %peer, %addr, "member left the cluster (failure detector or shutdown)");
                st.departed.insert(peer.clone(), (addr, now));
            }
            if let Some(link) = st.links.get(peer) {
                link.fail("the member left the cluster".into());
            }
        }
        for (peer, addr) in &live {
            st.departed.remove(peer);
            if !st.members.contains_key(peer) {
                tracing::info!(peer = %peer, %addr, "member joined");
            }
            let clash = live.iter().any(|(p, a)| p.name == peer.name && a != addr)
                || (peer.name == self.me.name && *addr != self.route_addr);
            if clash && st.warned_names.insert(peer.name.clone()) {
                tracing::error!(name = %peer.name, "two live nodes share this name at different addresses; node names must be unique");
            }
            if self.me < *peer && !st.links.contains_key(peer) && st.dialing.insert(peer.clone()) {
                tokio::spawn(link::dial_loop(self.clone(), peer.clone(), *addr));
            }
        }
        // Departed members are kept for a minute, for `cluster status`.
        st.departed
            .retain(|_, (_, at)| now.duration_since(*at) < Duration::from_secs(60));
        st.members = live;
        drop(st);
        self.bump();
    }

    /// A member said goodbye on its route: it is gone now, not after failure detection.
    pub(crate) fn peer_left(&self, peer: &Peer) {
        let mut st = self.state.lock();
        st.left.insert(peer.clone());
        if let Some(addr) = st.members.remove(peer) {
            tracing::info!(peer = %peer, %addr, "member left the cluster");
            st.departed.insert(peer.clone(), (addr, Instant::now()));
        }
        drop(st);
        self.bump();
    }

    /// Waits until every current member has a route that answered a ping; see [`Node::flush`].
    pub(crate) async fn flush(&self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.changed.subscribe();
        loop {
            changed.borrow_and_update();
            let (links, missing) = {
                let st = self.state.lock();
                let missing: Vec<Peer> = st
                    .members
                    .keys()
                    .filter(|p| !st.links.contains_key(*p))
                    .cloned()
                    .collect();
                (st.links.values().cloned().collect::<Vec<_>>(), missing)
            };
            if missing.is_empty() {
                let pings: Vec<_> = links.iter().map(|l| l.ping()).collect();
                let all = all_answered(pings);
                match tokio::time::timeout_at(deadline, all).await {
                    Ok(true) => return Ok(()),
                    // A route closed while pinged: look again.
                    Ok(false) => continue,
                    Err(_) => {
                        return Err(Error::Cluster(format!(
                            "flush: a route did not answer within {timeout:?}"
                        )));
                    }
                }
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                let names: Vec<String> = missing.iter().map(ToString::to_string).collect();
                return Err(Error::Cluster(format!(
                    "flush: no route to {} within {timeout:?}",
                    names.join(", ")
                )));
            }
        }
    }

    /// Waits until `count` members are live and routed to.
    pub(crate) async fn wait_for_peers(&self, count: usize, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.changed.subscribe();
        loop {
            changed.borrow_and_update();
            let routed = {
                let st = self.state.lock();
                st.members
                    .keys()
                    .filter(|p| st.links.contains_key(*p))
                    .count()
            };
            if routed >= count {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                return Err(Error::Cluster(format!(
                    "{routed} of {count} peers routed after {timeout:?}"
                )));
            }
        }
    }

    /// This node's view of the cluster.
    pub(crate) fn info(&self) -> ClusterInfo {
        let st = self.state.lock();
        let mut members: Vec<MemberInfo> = st
            .members
            .iter()
            .map(|(p, a)| (p, a, "live"))
            .chain(st.departed.iter().map(|(p, (a, _))| (p, a, "dead")))
            .map(|(peer, addr, state)| MemberInfo {
                name: peer.name.to_string(),
                generation: peer.generation,
                route_addr: addr.to_string(),
                state: state.into(),
                route: st.links.get(peer).map(|l| l.info()),
            })
            .collect();
        // Routes whose peer gossip has not reported yet.
        for (peer, link) in &st.links {
            if !st.members.contains_key(peer) && !st.departed.contains_key(peer) {
                members.push(MemberInfo {
                    name: peer.name.to_string(),
                    generation: peer.generation,
                    route_addr: link.addr.to_string(),
                    state: "joining".into(),
                    route: Some(link.info()),
                });
            }
        }
        members.sort_by(|a, b| (&a.name, a.generation).cmp(&(&b.name, b.generation)));
        ClusterInfo {
            cluster: self.cluster_name.clone(),
            name: self.me.name.to_string(),
            generation: self.me.generation,
            route_addr: self.route_addr.to_string(),
            interest: st.interest.len(),
            seeds: self.seeds.lock().clone(),
            members,
        }
    }

    /// Starts leaving (from `Drop`, so not async): every task sees `closing` and ends.
    pub(crate) fn close(&self) {
        self.closing.send_replace(true);
        for link in self.state.lock().links.values() {
            link.leave();
        }
        if let Some(gossip) = self.gossip.lock().as_ref() {
            let _ = gossip.initiate_shutdown();
        }
    }

    /// Leaves the cluster and waits for gossip to stop.
    pub(crate) async fn shutdown(&self) {
        self.close();
        let gossip = self.gossip.lock().take();
        if let Some(gossip) = gossip
            && let Err(err) = gossip.shutdown().await
        {
            tracing::debug!(%err, "gossip shutdown");
        }
    }
}

/// Awaits every ping; true when all were answered.
async fn all_answered(pings: Vec<tokio::sync::oneshot::Receiver<()>>) -> bool {
    let mut ok = true;
    for ping in pings {
        ok &= ping.await.is_ok();
    }
    ok
}

/// A node's view of its cluster, from [`Node::cluster_info`](crate::Node::cluster_info); also served as JSON on
/// `$HERALD.API.CLUSTER.INFO` by `herald serve`.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterInfo {
    /// The cluster's name.
    pub cluster: String,
    /// This node's name.
    pub name: String,
    /// This node's generation (its start time in milliseconds).
    pub generation: u64,
    /// The address other nodes reach this one at.
    pub route_addr: String,
    /// Distinct local interests (scope, pattern, queue) this node shares.
    pub interest: usize,
    /// The seeds this node was given, its own address left out.
    pub seeds: Vec<String>,
    /// Every other member this node knows of.
    pub members: Vec<MemberInfo>,
}

/// One other member, as [`ClusterInfo`] lists it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberInfo {
    /// Its name.
    pub name: String,
    /// Its generation (start time in milliseconds); a restart makes a new one.
    pub generation: u64,
    /// Its route address.
    pub route_addr: String,
    /// `live`, `dead` (left within the last minute) or `joining` (routed, not yet gossiped).
    pub state: String,
    /// The route to it, when one is up.
    pub route: Option<RouteInfo>,
}

/// Counters of one route.
#[derive(Debug, Clone, Serialize)]
pub struct RouteInfo {
    /// `out` when this node dialled it, `in` when the peer did.
    pub direction: String,
    /// Interests the peer shared with this node (its distinct subscriptions).
    pub interest: usize,
    /// Messages forwarded to the peer.
    pub msgs_out: u64,
    /// Messages received from the peer.
    pub msgs_in: u64,
    /// Bytes written to the peer.
    pub bytes_out: u64,
    /// Bytes read from the peer.
    pub bytes_in: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_skips_itself_in_its_seed_list() {
        let listen: SocketAddr = "127.0.0.1:7000".parse().unwrap_or_else(|_| unreachable!());
        let any: SocketAddr = "0.0.0.0:7000".parse().unwrap_or_else(|_| unreachable!());
        let public: SocketAddr = "10.0.0.5:7000".parse().unwrap_or_else(|_| unreachable!());
        assert!(is_self("127.0.0.1:7000", listen, listen));
        assert!(!is_self("127.0.0.1:7001", listen, listen));
        assert!(!is_self("seed.example:7000", listen, listen));
        // Listening on every interface: a loopback seed on our port is us, and so is the
        // advertised address.
        assert!(is_self("127.0.0.1:7000", any, public));
        assert!(is_self("10.0.0.5:7000", any, public));
        assert!(!is_self("10.0.0.6:7000", any, public));
    }
}
