//! The fan-out loop: a publish, matched in the index, handed to each target. Each ring of
//! plain subscriptions gets it once, each other subscription its copy, one member of each
//! queue group one copy (a local member first), and each other node with matching interest
//! one frame naming the queue groups it serves. [`Reach`] says which of them a publish may
//! reach.

use std::sync::Arc;

use herald_proto::route::Queues;
use smallvec::SmallVec;

use crate::fanout::Fanout;
use crate::index::{Entry, Matches};
use crate::message::Message;
use crate::target::{Delivery, Target};

/// Which matching targets a publish reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach<'q> {
    /// Every match, local or remote.
    All,
    /// Only targets in this process.
    Local,
    /// Every match except the subscriptions made by this router (sender) id.
    Others(u64),
    /// A message another node forwarded: local plain subscriptions, and one local member of
    /// each queue group the sender named (it chose this node for them). Never forwarded on:
    /// a message crosses one route.
    Routed(Queues<'q>),
}

impl Reach<'_> {
    fn admits(self, entry: &Entry) -> bool {
        match self {
            Reach::All => true,
            Reach::Local => entry.local,
            // Node-only subscriptions see only this node's publishes.
            Reach::Routed(_) => entry.announced,
            Reach::Others(owner) => entry.owner != owner,
        }
    }

    /// Whether this publish serves queue group `queue` at all.
    fn serves(self, queue: Option<&str>) -> bool {
        match (self, queue) {
            (Reach::Routed(queues), Some(q)) => queues.contains(q),
            _ => true,
        }
    }
}

/// Hands `msg` to every admitted plain match and to one member of each queue group, and
/// forwards it once to each other node with matching interest.
pub(crate) fn fan_out(matches: &Matches, msg: Delivery<'_>, reach: Reach<'_>) -> usize {
    if !matches.remote {
        return fan_out_local(matches, msg, reach);
    }
    let msg = &msg;
    let mut delivered = 0;
    let mut forwards = Forwards::default();
    for entry in &matches.plain {
        if !reach.admits(entry) {
            continue;
        }
        if entry.local {
            delivered += usize::from(deliver(entry, msg));
        } else {
            forwards.add(&entry.target, None);
        }
    }
    for group in &matches.groups {
        match group.first() {
            Some(first) if reach.serves(first.queue.as_deref()) => {}
            _ => continue,
        }
        match deliver_to_one(group, msg, reach) {
            Picked::Local => delivered += 1,
            Picked::Remote(entry) => forwards.add(&entry.target, entry.queue.as_deref()),
            Picked::None => {}
        }
    }
    delivered + forwards.send(msg)
}

/// [`fan_out`] when every match is in this process (no node to forward to). When there is no
/// queue group, the last subscription is given the message itself rather than a shared copy.
pub(crate) fn fan_out_local(matches: &Matches, msg: Delivery<'_>, reach: Reach<'_>) -> usize {
    let (plain, last) = match matches.plain.split_last() {
        Some((last, rest)) if matches.groups.is_empty() => (rest, Some(last)),
        _ => (&matches.plain[..], None),
    };
    let mut delivered = 0;
    for entry in plain {
        if reach.admits(entry) && deliver(entry, &msg) {
            delivered += 1;
        }
    }
    for group in &matches.groups {
        let serves = group
            .first()
            .is_some_and(|e| reach.serves(e.queue.as_deref()));
        if serves && matches!(deliver_to_one(group, &msg, reach), Picked::Local) {
            delivered += 1;
        }
    }
    if let Some(entry) = last
        && reach.admits(entry)
        && match &entry.buffer {
            Some(buffer) => buffer.push(msg.into_message()),
            None => entry.target.deliver_owned(entry.sid, msg),
        }
    {
        delivered += 1;
    }
    delivered
}

/// [`fan_out`] of a message published through the library.
#[inline]
pub(crate) fn fan_out_built(matches: &Matches, msg: Message, reach: Reach<'_>) -> usize {
    match reach {
        Reach::All | Reach::Local if !matches.rings.is_empty() => to_rings(&matches.rings, msg),
        _ => fan_out(matches, Delivery::built(msg), reach),
    }
}

/// [`fan_out`] of a message published through the library when every match is a ring of
/// local subscriptions and every one is admitted (the common embedded case): no [`Delivery`],
/// no virtual call, no look at the entries, and the last ring takes the message itself.
pub(crate) fn to_rings(rings: &[Arc<Fanout>], msg: Message) -> usize {
    let Some((last, rest)) = rings.split_last() else {
        return 0;
    };
    let delivered = rest.iter().filter(|r| r.push(msg.clone())).count();
    delivered + usize::from(last.push(msg))
}

/// Hands `msg` to a local entry: straight into its buffer when it is local subscriptions',
/// else through its [`Target`].
#[inline]
pub(crate) fn deliver(entry: &Entry, msg: &Delivery<'_>) -> bool {
    match &entry.buffer {
        Some(buffer) => buffer.push(msg.message()),
        None => entry.target.deliver(entry.sid, msg),
    }
}

/// Which member of a queue group gets a message.
enum Picked<'m> {
    /// A local member took it.
    Local,
    /// A member on another node: the message is forwarded there, naming the group.
    Remote(&'m Entry),
    /// No member took it.
    None,
}

/// Delivers to one member of a queue group: a random start spreads the load; local members are
/// tried before remote ones; a closed member is skipped.
fn deliver_to_one<'m>(group: &'m [Arc<Entry>], msg: &Delivery<'_>, reach: Reach<'_>) -> Picked<'m> {
    let len = group.len();
    let start = if len == 1 { 0 } else { fastrand::usize(..len) };
    let mut remote = None;
    for k in 0..len {
        let entry = &group[(start + k) % len];
        if !reach.admits(entry) {
            continue;
        }
        if !entry.local {
            remote = remote.or(Some(&**entry));
        } else if deliver(entry, msg) {
            return Picked::Local;
        }
    }
    remote.map_or(Picked::None, Picked::Remote)
}

/// The other nodes one publish goes to: each once, with the queue groups it serves there.
/// Kept on the stack for the usual handful of nodes.
#[derive(Default)]
struct Forwards<'m> {
    list: SmallVec<[Forward<'m>; 4]>,
}

/// One remote target of a publish, and the queue groups it serves.
type Forward<'m> = (&'m Arc<dyn Target>, SmallVec<[&'m str; 2]>);

impl<'m> Forwards<'m> {
    fn add(&mut self, target: &'m Arc<dyn Target>, queue: Option<&'m str>) {
        let at = match self
            .list
            .iter()
            .position(|(t, _)| std::ptr::addr_eq(Arc::as_ptr(t), Arc::as_ptr(target)))
        {
            Some(at) => at,
            None => {
                self.list.push((target, SmallVec::new()));
                self.list.len() - 1
            }
        };
        if let Some(q) = queue {
            self.list[at].1.push(q);
        }
    }

    fn send(&self, msg: &Delivery<'_>) -> usize {
        self.list
            .iter()
            .filter(|(target, queues)| target.forward(msg, queues))
            .count()
    }
}
