//! A node: this process's membership in a herald cluster, and the owner of its scopes.
//!
//! [`Node::local`] makes a node that joins nothing. Every router made from a node for the same
//! scope shares that scope's index, so routers are cheap views and subscriptions made through
//! one are seen by publishes through another.

use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

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
}

impl Node {
    /// A node that joins no cluster: routers on it reach only this process.
    pub fn local() -> Node {
        Node {
            inner: Arc::new(NodeInner {
                id: fastrand::u64(..),
                scopes: Mutex::default(),
            }),
        }
    }

    /// A router for `scope` whose subscriptions buffer `capacity` messages each.
    ///
    /// Routers of different scopes never see each other's messages. Capacity 0 is refused when
    /// subscribing ([`Error::InvalidCapacity`](crate::Error::InvalidCapacity)).
    pub fn router(&self, scope: &str, capacity: usize) -> Router {
        let scope = {
            let mut scopes = self.inner.scopes.lock();
            match scopes.get(scope) {
                Some(s) => s.clone(),
                None => {
                    let name: Arc<str> = scope.into();
                    let s = Arc::new_cyclic(|me: &Weak<Scope>| {
                        Scope::new(name.clone(), self.inner.id, me.clone())
                    });
                    scopes.insert(name, s.clone());
                    s
                }
            }
        };
        Router::from_parts(self.clone(), scope, capacity)
    }

    /// Waits until this node's subscriptions are known to every member of its cluster.
    ///
    /// A local node has no other member, so this returns at once; it is here so code written
    /// against a local node keeps working on a clustered one.
    pub async fn flush(&self) -> crate::Result<()> {
        Ok(())
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
