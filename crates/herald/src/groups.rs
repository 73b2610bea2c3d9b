//! Named groups of topics, per scope (SPEC section 2).
//!
//! A group is a name and a set of literal topics; `broadcast` publishes one payload on every
//! topic of a group. Errors are explicit: creating an existing group is
//! [`Error::AlreadyExists`], naming a missing one is [`Error::NotFound`].

use std::collections::BTreeSet;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::router::{Reach, Router};
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

impl<'a> Groups<'a> {
    pub(crate) fn new(router: &'a Router) -> Self {
        Groups { router }
    }

    /// Creates an empty group; [`Error::AlreadyExists`] if the name is taken.
    pub fn create(&self, name: &str) -> Result<()> {
        check_name(name)?;
        let mut groups = self.router.scope_state().groups.lock();
        if groups.contains_key(name) {
            return Err(Error::AlreadyExists(name.to_owned()));
        }
        groups.insert(name.to_owned(), BTreeSet::new());
        Ok(())
    }

    /// Deletes a group; [`Error::NotFound`] if there is none of that name.
    pub fn delete(&self, name: &str) -> Result<()> {
        match self.router.scope_state().groups.lock().remove(name) {
            Some(_) => Ok(()),
            None => Err(Error::NotFound(name.to_owned())),
        }
    }

    /// Adds a literal topic to a group; says whether it was new (adding twice is harmless).
    pub fn add(&self, name: &str, topic: &str) -> Result<bool> {
        subject::check_literal(topic)?;
        let mut groups = self.router.scope_state().groups.lock();
        let topics = groups
            .get_mut(name)
            .ok_or_else(|| Error::NotFound(name.to_owned()))?;
        Ok(topics.insert(topic.to_owned()))
    }

    /// Removes a topic from a group; says whether it was there.
    pub fn remove(&self, name: &str, topic: &str) -> Result<bool> {
        let mut groups = self.router.scope_state().groups.lock();
        let topics = groups
            .get_mut(name)
            .ok_or_else(|| Error::NotFound(name.to_owned()))?;
        Ok(topics.remove(topic))
    }

    /// The topics of a group.
    pub fn topics(&self, name: &str) -> Result<BTreeSet<String>> {
        let groups = self.router.scope_state().groups.lock();
        groups
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(name.to_owned()))
    }

    /// The names of all groups, sorted.
    pub fn list(&self) -> Vec<String> {
        self.router
            .scope_state()
            .groups
            .lock()
            .keys()
            .cloned()
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
                    .send(topic, None, None, payload.clone(), Reach::All)?;
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
