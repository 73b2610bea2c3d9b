//! [`Error`]: what a streams operation reports, with a [`kind`](Error::kind) to match on.
//!
//! Each error carries a `Reason`, the exact failure (which object was missing, which rule a
//! config broke). Callers see its coarse [`ErrorKind`] and a message; the JetStream adapter
//! maps the reason to the codes NATS clients expect, so no wire code lives here.

use std::fmt;

/// What kind of failure a streams operation met. Match on it; the message says more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The stream, consumer or message does not exist.
    NotFound,
    /// A stream or consumer of that name exists with another configuration.
    AlreadyExists,
    /// A stream or consumer configuration is invalid, or a change to it is not allowed.
    InvalidConfig,
    /// A request is malformed or out of the limits its consumer sets.
    InvalidRequest,
    /// A feature herald does not have (yet).
    Unsupported,
    /// A limit refused the message or object: the stream is full (`discard: new`), the
    /// message is larger than `max_message_size`, the stream has `max_consumers`.
    Full,
    /// A publish expectation failed (`expected stream`).
    Conflict,
    /// Waiting for the store (a publish ack, a confirm-N) took longer than allowed.
    Timeout,
    /// The store, stream or consumer is closed.
    Closed,
    /// Reading or writing the data directory failed.
    Io,
    /// A clustered stream has no leader right now (an election, or too few replicas up):
    /// nothing was done; the same call may succeed when retried.
    Unavailable,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::InvalidConfig => "invalid configuration",
            ErrorKind::InvalidRequest => "invalid request",
            ErrorKind::Unsupported => "not supported",
            ErrorKind::Full => "limit reached",
            ErrorKind::Conflict => "expectation failed",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Closed => "closed",
            ErrorKind::Io => "storage error",
            ErrorKind::Unavailable => "unavailable, try again",
        })
    }
}

/// The exact failure behind an [`Error`]: one variant per distinction a caller or the wire
/// adapter makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    StreamNotFound,
    ConsumerNotFound,
    MessageNotFound,
    StreamExists,
    /// `create` (not create-or-update) of a consumer that exists with another config.
    ConsumerExists,
    /// `update` of a consumer that does not exist.
    ConsumerMissing,
    SubjectsOverlap,
    InvalidStreamConfig,
    InvalidConsumerName,
    /// `backoff` longer than `max_deliver` allows.
    BackoffTooLong,
    /// A consumer filter outside the stream's subjects.
    FilterNotInStream,
    FiltersOverlap,
    /// Consumer config invalid for another reason.
    InvalidConsumerConfig,
    /// A consumer change that JetStream does not allow in place.
    ConsumerUpdate,
    StreamUpdate,
    /// An update that changes a mirror's config.
    MirrorNotUpdatable,
    StreamPurge,
    Replicas,
    TooManyConsumers,
    MessageTooLarge,
    /// The log refused or failed a message (full with `discard: new`, or I/O).
    StoreFailed,
    ExpectedStream,
    MessageTtl,
    BadRequest,
    Unsupported,
    ConfirmTimeout,
    Timeout,
    Closed,
    Io,
    /// Making a stream's directory, files or log failed.
    StreamCreateIo,
    /// Removing a deleted stream's directory failed.
    StreamDeleteIo,
    /// Reading the log by subject, or deleting from it, failed.
    StreamRead,
    /// A message delete on a stream with `deny_delete`.
    MessageDeleteDenied,
    /// A publish's expected last sequence (of the stream or of its subject) was not it.
    WrongLastSequence,
    /// A publish's expected last message id was not the last message's.
    WrongLastMsgId,
    /// A rollup header on a stream that does not allow rollups, or a bad one.
    RollupDenied,
    /// A `Nats-TTL` that is not a duration of at least a second.
    MessageTtlInvalid,
    /// A publish to a sealed stream.
    Sealed,
    /// A consumer a work queue does not allow (the JetStream code it has).
    WorkQueueConsumer(u16),
    Unavailable,
}

impl Reason {
    fn kind(self) -> ErrorKind {
        use Reason::*;
        match self {
            StreamNotFound | ConsumerNotFound | MessageNotFound | ConsumerMissing => {
                ErrorKind::NotFound
            }
            StreamExists | ConsumerExists => ErrorKind::AlreadyExists,
            SubjectsOverlap
            | InvalidStreamConfig
            | InvalidConsumerName
            | BackoffTooLong
            | FilterNotInStream
            | FiltersOverlap
            | InvalidConsumerConfig
            | ConsumerUpdate
            | StreamUpdate
            | MirrorNotUpdatable => ErrorKind::InvalidConfig,
            BadRequest | StreamPurge | MessageDeleteDenied => ErrorKind::InvalidRequest,
            Unsupported | Replicas | MessageTtl => ErrorKind::Unsupported,
            TooManyConsumers | MessageTooLarge | StoreFailed => ErrorKind::Full,
            ExpectedStream | WrongLastSequence | WrongLastMsgId => ErrorKind::Conflict,
            RollupDenied | MessageTtlInvalid => ErrorKind::InvalidRequest,
            WorkQueueConsumer(_) => ErrorKind::InvalidConfig,
            Sealed => ErrorKind::Closed,
            ConfirmTimeout | Timeout => ErrorKind::Timeout,
            Closed => ErrorKind::Closed,
            Unavailable => ErrorKind::Unavailable,
            Io | StreamCreateIo | StreamDeleteIo | StreamRead => ErrorKind::Io,
        }
    }
}

/// A failed streams operation: its [`kind`](Error::kind) and what went wrong.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use herald::streams::{ErrorKind, Streams, StreamsOptions};
/// # let dir = tempfile::tempdir()?;
/// let streams = Streams::open(&herald::Router::new(8, "docs"), StreamsOptions::new(dir.path())).await?;
/// match streams.info("NOPE") {
///     Err(e) if e.kind() == ErrorKind::NotFound => {}
///     other => panic!("expected not found, got {other:?}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    reason: Reason,
    message: String,
}

/// The result of a streams operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn new(reason: Reason, message: impl Into<String>) -> Error {
        Error {
            reason,
            message: message.into(),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.reason.kind()
    }

    /// What went wrong, for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The exact failure (for the wire adapter).
    pub(crate) fn reason(&self) -> Reason {
        self.reason
    }

    pub(crate) fn stream_not_found() -> Error {
        Error::new(Reason::StreamNotFound, "stream not found")
    }

    pub(crate) fn consumer_not_found() -> Error {
        Error::new(Reason::ConsumerNotFound, "consumer not found")
    }

    pub(crate) fn no_message() -> Error {
        Error::new(Reason::MessageNotFound, "no message found")
    }

    pub(crate) fn stream_exists() -> Error {
        Error::new(
            Reason::StreamExists,
            "stream name already in use with a different configuration",
        )
    }

    pub(crate) fn consumer_exists() -> Error {
        Error::new(Reason::ConsumerExists, "consumer already exists")
    }

    pub(crate) fn consumer_missing() -> Error {
        Error::new(Reason::ConsumerMissing, "consumer does not exist")
    }

    pub(crate) fn subjects_overlap() -> Error {
        Error::new(
            Reason::SubjectsOverlap,
            "subjects overlap with an existing stream",
        )
    }

    pub(crate) fn invalid_stream_config(why: impl Into<String>) -> Error {
        Error::new(Reason::InvalidStreamConfig, why)
    }

    pub(crate) fn invalid_consumer_config(why: impl Into<String>) -> Error {
        Error::new(Reason::InvalidConsumerConfig, why)
    }

    pub(crate) fn consumer_update(why: impl Into<String>) -> Error {
        Error::new(Reason::ConsumerUpdate, why)
    }

    pub(crate) fn bad_request(why: impl Into<String>) -> Error {
        Error::new(Reason::BadRequest, why)
    }

    pub(crate) fn unsupported(why: impl Into<String>) -> Error {
        Error::new(Reason::Unsupported, why)
    }

    pub(crate) fn too_many_consumers() -> Error {
        Error::new(Reason::TooManyConsumers, "maximum consumers limit reached")
    }

    pub(crate) fn message_too_large() -> Error {
        Error::new(
            Reason::MessageTooLarge,
            "message size exceeds maximum allowed",
        )
    }

    pub(crate) fn store_failed(why: impl Into<String>) -> Error {
        Error::new(Reason::StoreFailed, why)
    }

    /// What the log's refusal of an append means to a publisher.
    pub(crate) fn from_append(err: &herald_log::Error) -> Error {
        match err {
            herald_log::Error::WrongLastSequence(_) => {
                Error::new(Reason::WrongLastSequence, err.to_string())
            }
            herald_log::Error::WrongLastHeader(_) => {
                Error::new(Reason::WrongLastMsgId, err.to_string())
            }
            _ => Error::store_failed(err.to_string()),
        }
    }

    pub(crate) fn closed(what: impl Into<String>) -> Error {
        Error::new(Reason::Closed, what)
    }

    pub(crate) fn io(what: impl fmt::Display, err: impl fmt::Display) -> Error {
        Error::new(Reason::Io, format!("{what}: {err}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind(), self.message)
    }
}

impl std::error::Error for Error {}

/// Router errors met by a streams operation (an invalid subject, a closed node).
impl From<crate::Error> for Error {
    fn from(err: crate::Error) -> Error {
        let reason = match &err {
            crate::Error::Timeout(_) => Reason::Timeout,
            crate::Error::Closed(_) => Reason::Closed,
            _ => Reason::BadRequest,
        };
        Error::new(reason, err.to_string())
    }
}
