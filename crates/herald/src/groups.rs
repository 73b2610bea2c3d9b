//! Named groups of topics, per scope (SPEC section 2).
//!
//! A group is a name and a set of literal topics; `broadcast` publishes one payload on every
//! topic of a group. Errors are explicit: creating an existing group is
//! [`Error::AlreadyExists`], naming a missing one is [`Error::NotFound`].
//!
//! On a clustered node groups are cluster-wide: every change is stamped (wall-clock
//! milliseconds, growing per group, ties broken by node name) and shared through gossip, and
//! each node keeps the newest version of each group, so a node that joins later learns them
//! all. A change replaces the whole group: two nodes changing one group within the same
//! gossip round keep only the later change.

use std::collections::BTreeSet;

use bytes::Bytes;

use crate::dispatch::Reach;
use crate::error::{Error, Result};
use crate::router::Router;
use crate::scope::GroupState;
use crate::subject;

/// The groups of one scope, from [`Router::groups`].
///
/// # Examples
/// ```
/// # fn main() -> Result<(), herald::Error> {
/// let router = herald::Router::new(10, "my_app");
/// let groups = router.groups();
/// groups.create("frontend")?;
/// groups.add("frontend", "room:lobby")?;
/// groups.add("frontend", "room:help")?;
/// let mut lobby = router.subscribe("room:lobby")?;
/// groups.broadcast("frontend", "deploy at 5")?;
/// assert_eq!(lobby.try_recv().unwrap().text()?, "deploy at 5");
/// assert!(matches!(groups.create("frontend"), Err(herald::Error::AlreadyExists(_))));
/// # Ok(()) }
/// ```
pub struct Groups<'a> {
    router: &'a Router,
}

/// The groups of topics are reached through a router.
impl Router {
    /// The named groups of topics of this router's scope.
    pub fn groups(&self) -> Groups<'_> {
        Groups { router: self }
    }
}

impl<'a> Groups<'a> {
    /// Stamps a changed group with a new version and shares it with the cluster.
    fn changed(&self, name: &str, group: &mut GroupState) {
        let scope = self.router.scope_state();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        group.stamp = now.max(group.stamp + 1);
        group.origin = scope.node_name();
        scope.share_group(name, group);
    }

    /// Runs `op` on live group `name` under the scope's lock; [`Error::NotFound`] if there is
    /// none. `op` says whether it changed the group.
    fn with_live<T>(&self, name: &str, op: impl FnOnce(&mut GroupState) -> (T, bool)) -> Result<T> {
        let mut groups = self.router.scope_state().groups.lock();
        let group = groups
            .get_mut(name)
            .filter(|g| !g.deleted)
            .ok_or_else(|| Error::NotFound(name.to_owned()))?;
        let (out, changed) = op(group);
        if changed {
            self.changed(name, group);
        }
        Ok(out)
    }

    /// Creates an empty group; [`Error::AlreadyExists`] if the name is taken.
    pub fn create(&self, name: &str) -> Result<()> {
        check_name(name)?;
        let mut groups = self.router.scope_state().groups.lock();
        let group = groups.entry(name.to_owned()).or_insert(GroupState {
            topics: BTreeSet::new(),
            deleted: true,
            stamp: 0,
            origin: String::new(),
        });
        if !group.deleted {
            return Err(Error::AlreadyExists(name.to_owned()));
        }
        group.deleted = false;
        group.topics.clear();
        self.changed(name, group);
        Ok(())
    }

    /// Deletes a group; [`Error::NotFound`] if there is none of that name.
    pub fn delete(&self, name: &str) -> Result<()> {
        self.with_live(name, |g| {
            g.deleted = true;
            g.topics.clear();
            ((), true)
        })
    }

    /// Adds a literal topic to a group; says whether it was new (adding twice is harmless).
    pub fn add(&self, name: &str, topic: &str) -> Result<bool> {
        subject::check_literal(topic)?;
        self.with_live(name, |g| {
            let new = g.topics.insert(topic.to_owned());
            (new, new)
        })
    }

    /// Removes a topic from a group; says whether it was there.
    pub fn remove(&self, name: &str, topic: &str) -> Result<bool> {
        self.with_live(name, |g| {
            let was = g.topics.remove(topic);
            (was, was)
        })
    }

    /// The topics of a group.
    pub fn topics(&self, name: &str) -> Result<BTreeSet<String>> {
        let groups = self.router.scope_state().groups.lock();
        groups
            .get(name)
            .filter(|g| !g.deleted)
            .map(|g| g.topics.clone())
            .ok_or_else(|| Error::NotFound(name.to_owned()))
    }

    /// The names of all groups, sorted.
    pub fn list(&self) -> Vec<String> {
        self.router
            .scope_state()
            .groups
            .lock()
            .iter()
            .filter(|(_, g)| !g.deleted)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Publishes `payload` on every topic of the group; returns how many subscriptions took it.
    /// [`Error::NotFound`] for a missing group; an empty group publishes nothing.
    pub fn broadcast(&self, name: &str, payload: impl Into<Bytes>) -> Result<usize> {
        let topics = self.topics(name)?;
        let payload = payload.into();
        let mut delivered = 0;
        for topic in &topics {
            delivered +=
                self.router
                    .scope_state()
                    .send_payload(topic, payload.clone(), Reach::All)?;
        }
        Ok(delivered)
    }
}

fn check_name(name: &str) -> Result<()> {
    let fail = |reason| {
        Err(Error::InvalidGroupName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return fail("empty name");
    }
    if name.len() > 256 {
        return fail("longer than 256 bytes");
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return fail("whitespace or control character");
    }
    Ok(())
}
