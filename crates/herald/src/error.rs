//! The one error type of the library.
//!
//! Every fallible operation returns [`Error`]; callers `match` on its variants. Receiving has
//! its own small enums ([`TryRecvError`], [`RecvTimeoutError`]) in the manner of
//! `std::sync::mpsc`, because "nothing yet" is not a failure.

use std::time::Duration;

/// What went wrong in a herald operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A subject or pattern broke the rules of SPEC section 1; names the subject and the reason.
    #[error("invalid subject {subject:?}: {reason}")]
    InvalidSubject {
        /// The rejected subject, as given (cut to 256 characters).
        subject: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A subscription was asked for with capacity 0; a buffered subscription holds at least one message.
    #[error("invalid capacity 0: a subscription must buffer at least one message")]
    InvalidCapacity,
    /// A header name or value cannot be carried in a NATS/1.0 header block.
    #[error("invalid header {name:?}: {reason}")]
    InvalidHeader {
        /// The header name, as given.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A group name was empty, too long, or held whitespace or control characters.
    #[error("invalid group name {name:?}: {reason}")]
    InvalidGroupName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// `groups().create` for a group that already exists in this scope.
    #[error("group {0:?} already exists")]
    AlreadyExists(String),
    /// A group operation named a group that does not exist in this scope.
    #[error("group {0:?} not found")]
    NotFound(String),
    /// A cluster operation failed: a node could not start (address in use, bad seed), or a
    /// member stayed unreachable. The text says which and why.
    #[error("cluster: {0}")]
    Cluster(String),
    /// A request got no reply within its timeout.
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    /// A request was published where nobody subscribes; reported at once, without waiting.
    #[error("no responders on {0:?}")]
    NoResponders(String),
    /// `respond` on a message that carries no reply subject.
    #[error("message on {0:?} has no reply subject")]
    NoReplySubject(String),
    /// The router (its node) that this operation needs is gone, or the subscription was cancelled.
    #[error("closed: {0}")]
    Closed(&'static str),
    /// [`Node::try_router`](crate::Node::try_router) named a new scope while the node already
    /// has as many as it allows.
    #[error("maximum scopes exceeded ({max})")]
    TooManyScopes {
        /// The limit.
        max: usize,
    },
    /// A payload was not valid UTF-8 where text was asked for.
    #[error("payload is not UTF-8: {0}")]
    Utf8(#[from] std::str::Utf8Error),
    /// Encoding or decoding JSON failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// The result type of herald operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why [`Subscription::try_recv`](crate::Subscription::try_recv) returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// Nothing is buffered right now.
    #[error("no message buffered")]
    Empty,
    /// The subscription was cancelled, or its node is gone: no message will ever come.
    #[error("subscription closed")]
    Closed,
}

/// Why [`Subscription::recv_timeout`](crate::Subscription::recv_timeout) returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvTimeoutError {
    /// The timeout passed with nothing buffered.
    #[error("timed out waiting for a message")]
    Timeout,
    /// The subscription was cancelled, or its node is gone: no message will ever come.
    #[error("subscription closed")]
    Closed,
}
