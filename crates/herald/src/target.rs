//! Delivery targets: where the router hands a matched message.
//!
//! The index does not know what a subscriber is. Each subscription in it points at a
//! [`Target`]: a local subscription's bounded mailbox, a network connection's outbound buffer
//! (herald-server), or a cluster route. Fan-out is the same loop for all of them, so a message
//! reaches a socket as cheaply as a local queue.

use crate::message::Message;

/// Something that accepts matched messages without blocking.
///
/// Implementations must be quick and must never wait: the publisher's thread calls
/// [`deliver`](Target::deliver) for every match. A target that cannot keep up applies its own
/// policy (drop a message, mark itself a slow consumer) and says so in its own counters.
pub trait Target: Send + Sync + 'static {
    /// Hands `msg` to the target for its subscription `sid` (the value given when subscribing;
    /// a network connection uses it as the protocol's subscription id).
    ///
    /// Returns `false` when the target is closed and takes nothing any more; the router then
    /// tries another member of a queue group and does not count it as a responder.
    fn deliver(&self, sid: u64, msg: &Message) -> bool;

    /// Whether this target is in this process. Cluster routes answer `false`: a message that
    /// must stay local (`publish_local`) skips them, and queue groups prefer local members.
    fn is_local(&self) -> bool {
        true
    }

    /// Called once when the router drops subscription `sid` on its own (its node shut down),
    /// so the target can tell its reader that no more messages will come.
    fn detach(&self, sid: u64) {
        let _ = sid;
    }
}
