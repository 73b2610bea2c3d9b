//! A node: this process's membership in a herald cluster, and the owner of its scopes.
//!
//! [`Node::local`] makes a node that joins nothing; [`Node::builder`] one that joins a cluster
//! (see the `cluster` module). Every router made from a node for the same scope shares that
//! scope's index, so routers are cheap views and subscriptions made through one are seen by
//! publishes through another.

use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::cluster::{Cluster, ClusterInfo, NodeBuilder};
use crate::router::{Router, Scope};

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
    // Random per process: names this node's request inboxes.
    pub(crate) id: u64,
    scopes: Mutex<FxHashMap<Arc<str>, Arc<Scope>>>,
    pub(crate) cluster: Option<Arc<Cluster>>,
}

impl NodeInner {
    /// The state of `name`, made on first use.
    pub(crate) fn scope(&self, name: &str) -> Arc<Scope> {
        let mut scopes = self.scopes.lock();
        if let Some(s) = scopes.get(name) {
            return s.clone();
        }
        let name: Arc<str> = name.into();
        let s = Arc::new_cyclic(|me: &Weak<Scope>| {
            Scope::new(name.clone(), self.id, me.clone(), self.cluster.clone())
        });
        scopes.insert(name, s.clone());
        s
    }
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
                id: fastrand::u64(..),
                scopes: Mutex::default(),
                cluster: None,
            }),
        }
    }

    /// Starts configuring a node that joins a cluster; see [`NodeBuilder`].
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    pub(crate) fn clustered(cluster: Arc<Cluster>) -> Node {
        Node {
            inner: Arc::new(NodeInner {
                id: fastrand::u64(..),
                scopes: Mutex::default(),
                cluster: Some(cluster),
            }),
        }
    }

    /// A router for `scope` whose subscriptions buffer `capacity` messages each.
    ///
    /// Routers of different scopes never see each other's messages. Capacity 0 is refused when
    /// subscribing ([`Error::InvalidCapacity`](crate::Error::InvalidCapacity)).
    pub fn router(&self, scope: &str, capacity: usize) -> Router {
        Router::from_parts(self.clone(), self.inner.scope(scope), capacity)
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
            Some(cluster) => cluster.flush(std::time::Duration::from_secs(10)).await,
            None => Ok(()),
        }
    }

    /// This node's view of its cluster (members, routes, interest), or `None` on a local node.
    pub fn cluster_info(&self) -> Option<ClusterInfo> {
        self.inner.cluster.as_ref().map(|c| c.info())
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

    /// Names of the scopes that routers have been made for.
    pub fn scopes(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .scopes
            .lock()
            .keys()
            .map(|k| k.to_string())
            .collect();
        names.sort();
        names
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
            .field("id", &format_args!("{:016x}", self.inner.id))
            .finish()
    }
}
