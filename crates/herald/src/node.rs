//! A node: this process's membership in a herald cluster, and the owner of its scopes.
//!
//! [`Node::local`] makes a node that joins nothing; [`Node::builder`] one that joins a cluster
//! (see the `cluster` module). Every router made from a node for the same scope shares that
//! scope's index, so routers are cheap views and subscriptions made through one are seen by
//! publishes through another.

use std::sync::Arc;
use std::time::Duration;

use crate::cluster::{self, Cluster, ClusterInfo};
use crate::error::Result;
use crate::router::Router;
use crate::scope::Scopes;

/// This process's membership in a cluster; makes [`Router`]s. Cheap to clone (shared).
///
/// # Examples
/// ```
/// let node = herald::Node::local();
/// let a = node.router("my_app", 100);
/// let b = node.router("my_app", 100); // same scope: shares subscriptions with `a`
/// let mut sub = a.subscribe("events").unwrap();
/// b.publish("events", "hi").unwrap();
/// assert_eq!(sub.try_recv().unwrap().text().unwrap(), "hi");
/// ```
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<NodeInner>,
}

pub(crate) struct NodeInner {
    scopes: Arc<Scopes>,
    cluster: Option<Arc<Cluster>>,
}

impl Drop for NodeInner {
    fn drop(&mut self) {
        if let Some(cluster) = &self.cluster {
            cluster.close();
        }
    }
}

impl Node {
    /// A node that joins no cluster: routers on it reach only this process.
    pub fn local() -> Node {
        Node {
            inner: Arc::new(NodeInner {
                scopes: Arc::new(Scopes::new(fastrand::u64(..))),
                cluster: None,
            }),
        }
    }

    /// Starts configuring a node that joins a cluster; see [`NodeBuilder`].
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// A router for `scope` whose subscriptions buffer `capacity` messages each.
    ///
    /// Routers of different scopes never see each other's messages. Capacity 0 is refused when
    /// subscribing ([`Error::InvalidCapacity`](crate::Error::InvalidCapacity)).
    ///
    /// A scope lives while something uses it: a router, a subscription, a live group (or,
    /// in a cluster, another node's subscription). Once nothing does, the node forgets it,
    /// so naming many scopes over time does not grow the node.
    pub fn router(&self, scope: &str, capacity: usize) -> Router {
        Router::from_parts(self.inner.clone(), self.inner.scopes.scope(scope), capacity)
    }

    /// [`router`](Node::router), unless `scope` is new and the node already has `max_scopes`
    /// scopes in use: then [`Error::TooManyScopes`](crate::Error::TooManyScopes). Servers use
    /// it so that clients naming scopes cannot exhaust memory.
    pub fn try_router(&self, scope: &str, capacity: usize, max_scopes: usize) -> Result<Router> {
        let state = self.inner.scopes.scope_within(scope, max_scopes)?;
        Ok(Router::from_parts(self.inner.clone(), state, capacity))
    }

    /// A router for `scope` if the scope is in use on this node; never makes one (monitoring
    /// reads scopes through it without keeping them alive).
    pub fn existing_router(&self, scope: &str, capacity: usize) -> Option<Router> {
        let state = self.inner.scopes.get(scope)?;
        Some(Router::from_parts(self.inner.clone(), state, capacity))
    }

    /// How many scopes are in use on this node.
    pub fn scope_count(&self) -> usize {
        self.inner.scopes.len()
    }

    /// Forgets at once every scope nothing uses any more and returns how many. Scopes are
    /// forgotten as their last router goes anyway; this catches those whose last user was
    /// something else (a subscription, another node's interest), which new scopes otherwise
    /// sweep up once the node has twice as many as at the last sweep.
    pub fn reclaim_scopes(&self) -> usize {
        self.inner.scopes.sweep()
    }

    /// Waits until this node's subscriptions are known to every current member of its
    /// cluster: a route to each is up, and each has answered a ping sent after every interest
    /// change made so far. After it returns, a publish from any member reaches the
    /// subscriptions made before the call.
    ///
    /// A local node has no other member, so this returns at once. Fails with
    /// [`Error::Cluster`](crate::Error::Cluster) when a member stays unreachable for 10 seconds.
    pub async fn flush(&self) -> crate::Result<()> {
        match &self.inner.cluster {
            Some(cluster) => cluster.flush(Duration::from_secs(10)).await,
            None => Ok(()),
        }
    }

    /// This node's view of its cluster (members, routes, interest), or `None` on a local node.
    pub fn cluster_info(&self) -> Option<ClusterInfo> {
        self.inner.cluster.as_ref().map(|c| c.info())
    }

    /// The names of the other members gossip sees live now (empty on a local node).
    pub fn live_members(&self) -> Vec<String> {
        self.cluster_info()
            .map(|info| {
                info.members
                    .into_iter()
                    .filter(|m| m.state == "live")
                    .map(|m| m.name)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Tells the other members of the cluster `key = value` (a server's client address, say);
    /// an empty value withdraws it. They read it with [`advertised`](Node::advertised) while
    /// this node is live. Does nothing on a local node.
    pub fn advertise(&self, key: &str, value: &str) {
        if let Some(cluster) = &self.inner.cluster {
            cluster.advertise(key, value);
        }
    }

    /// What the other live members advertise under `key`, as (member name, value) pairs
    /// sorted by name; empty on a local node.
    pub fn advertised(&self, key: &str) -> Vec<(String, String)> {
        match &self.inner.cluster {
            Some(cluster) => cluster.advertised(key),
            None => Vec::new(),
        }
    }

    /// A counter that moves whenever a member, a route or what members advertise changes;
    /// `None` on a local node.
    pub fn cluster_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.cluster.as_ref().map(|c| c.changes())
    }

    /// Waits until `count` other members are live and routed to, or fails after `timeout`.
    /// Handy before [`flush`](Node::flush) when a test starts several nodes at once.
    pub async fn wait_for_peers(
        &self,
        count: usize,
        timeout: std::time::Duration,
    ) -> crate::Result<()> {
        match &self.inner.cluster {
            Some(cluster) => cluster.wait_for_peers(count, timeout).await,
            None if count == 0 => Ok(()),
            None => Err(crate::Error::Cluster("a local node has no peers".into())),
        }
    }

    /// Leaves the cluster: closes every route and stops gossiping, so other members drop this
    /// node's interest at once rather than after failure detection. Local routers keep working.
    pub async fn shutdown(&self) {
        if let Some(cluster) = &self.inner.cluster {
            cluster.shutdown().await;
        }
    }

    /// Names of the scopes in use on this node.
    pub fn scopes(&self) -> Vec<String> {
        self.inner.scopes.names()
    }
}

impl Default for Node {
    fn default() -> Self {
        Node::local()
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &format_args!("{:016x}", self.inner.scopes.id()))
            .finish()
    }
}

/// Routers are made from nodes; these are the parts of [`Router`] that name its node.
impl Router {
    /// A router for `scope` on a private local node, with `capacity` per subscription.
    /// Same as `Node::local().router(scope, capacity)`.
    pub fn new(capacity: usize, scope: &str) -> Router {
        Node::local().router(scope, capacity)
    }

    /// The node this router belongs to.
    pub fn node(&self) -> Node {
        let inner = self
            .owner
            .clone()
            .downcast::<NodeInner>()
            .expect("a router is made from a node and keeps it");
        Node { inner }
    }
}

/// How a node joins a cluster; from [`Node::builder`].
///
/// # Examples
/// ```no_run
/// # async fn run() -> Result<(), herald::Error> {
/// let node = herald::Node::builder()
///     .name("orders-1")
///     .listen("127.0.0.1:7000")
///     .seeds(["127.0.0.1:7001"])
///     .cluster_secret("s3cret")
///     .start()
///     .await?;
/// let router = node.router("shop", 100);
/// router.publish("orders.created", "42")?; // reaches subscribers on every node
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct NodeBuilder {
    settings: cluster::Settings,
}

impl NodeBuilder {
    /// This node's name, unique in the cluster (default: `node-` and random hex).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.settings.name = Some(name.into());
        self
    }

    /// Where to accept routes (TCP) and gossip (UDP, same port): `HOST:PORT`, port 0 for any
    /// free port. Default `127.0.0.1:0`.
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.settings.listen = addr.into();
        self
    }

    /// The address other nodes should use to reach this one, when it differs from the listen
    /// address (listening on `0.0.0.0`, behind NAT). Default: the listen address.
    pub fn advertise(mut self, addr: impl Into<String>) -> Self {
        self.settings.advertise = Some(addr.into());
        self
    }

    /// Addresses of nodes to join through (their listen addresses). One reachable seed is
    /// enough to learn every member; this node's own address may be among them.
    pub fn seeds<I, S>(mut self, seeds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.settings
            .seeds
            .extend(seeds.into_iter().map(Into::into));
        self
    }

    /// The cluster's name (default `herald`): nodes of different clusters never join.
    pub fn cluster_name(mut self, name: impl Into<String>) -> Self {
        self.settings.cluster_name = name.into();
        self
    }

    /// The secret every member shares. Routes prove it in their handshake and gossip is
    /// partitioned by it, so a node without it cannot join or inject messages.
    pub fn cluster_secret(mut self, secret: impl Into<String>) -> Self {
        self.settings.secret = secret.into();
        self
    }

    /// How often gossip runs (default 100 ms). Failure detection takes about ten rounds.
    pub fn gossip_interval(mut self, interval: Duration) -> Self {
        self.settings.gossip_interval = interval;
        self
    }

    /// Most bytes a route may queue for a peer that does not read; past it the route is closed
    /// (and dialled again) rather than grow without bound.
    pub fn route_max_pending(mut self, bytes: usize) -> Self {
        self.settings.route_max_pending = bytes;
        self
    }

    /// Mutual TLS on routes: this node presents `tls`'s certificate and accepts only peers
    /// whose certificate chains to its CA (both ways), before the handshake that proves the
    /// cluster secret. Node certificates need both the server and the client extended key
    /// usage; host names are not checked, since nodes dial each other by address.
    /// Gossip (UDP) is not encrypted; it stays authenticated by the cluster secret.
    pub fn route_tls(mut self, tls: crate::RouteTls) -> Self {
        self.settings.tls = Some(tls);
        self
    }

    /// Binds the route and gossip ports, starts gossiping with the seeds, and returns the node.
    /// Needs a tokio runtime. Fails when the address cannot be bound or resolved.
    pub async fn start(self) -> Result<Node> {
        let scopes = Arc::new(Scopes::new(fastrand::u64(..)));
        let cluster = cluster::start(self.settings, &scopes).await?;
        Ok(Node {
            inner: Arc::new(NodeInner {
                scopes,
                cluster: Some(cluster),
            }),
        })
    }
}
