//! What the store reports: a stream's and a consumer's state, and a publish's acknowledgement.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::config::{ConsumerConfig, StreamConfig};

/// A stream's configuration and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamInfo {
    /// The normalized configuration.
    pub config: StreamConfig,
    /// When the stream was created.
    #[serde(with = "crate::time::serde_rfc3339")]
    pub created: SystemTime,
    /// What the stream holds.
    pub state: StreamState,
    /// How its mirror's copy stands (a mirror only).
    pub mirror: Option<SourceInfo>,
    /// How the copies of its sources stand.
    pub sources: Vec<SourceInfo>,
}

/// How the copy of a mirror or a source stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceInfo {
    /// The stream copied.
    pub name: String,
    /// Only the messages on subjects matching this were copied.
    pub filter_subject: Option<String>,
    /// Sequences of the copied stream after the last one copied (deleted ones included).
    pub lag: u64,
    /// How long ago the copy last read the copied stream; `None` if it never did (the
    /// copied stream does not exist).
    #[serde(with = "humantime_serde")]
    pub active: Option<Duration>,
}

/// What a stream holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StreamState {
    /// Messages stored.
    pub messages: u64,
    /// Bytes stored (records as the log keeps them).
    pub bytes: u64,
    /// Sequence of the first message kept; `last_seq + 1` after a purge, 0 if never written.
    pub first_seq: u64,
    /// When the first message kept was stored.
    #[serde(skip)]
    pub first_time: Option<SystemTime>,
    /// Sequence of the last message stored.
    pub last_seq: u64,
    /// When the last message was stored.
    #[serde(skip)]
    pub last_time: Option<SystemTime>,
    /// Consumers of the stream.
    pub consumers: usize,
}

/// A consumer's configuration and position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerInfo {
    /// The consumer's stream.
    pub stream: String,
    /// The consumer's name.
    pub name: String,
    /// When it was created.
    #[serde(with = "crate::time::serde_rfc3339")]
    pub created: SystemTime,
    /// Its normalized configuration.
    pub config: ConsumerConfig,
    /// The last message handed out.
    pub delivered: Position,
    /// Everything at or below this is acknowledged.
    pub ack_floor: Position,
    /// Delivered and not yet acknowledged.
    pub num_ack_pending: usize,
    /// Delivered more than once and still unacknowledged.
    pub num_redelivered: usize,
    /// Pull requests waiting.
    pub num_waiting: usize,
    /// Matching messages not delivered yet.
    pub num_pending: u64,
    /// The last pull or ack, if any came.
    #[serde(skip)]
    pub last_active: Option<SystemTime>,
}

/// A place in a consumer's deliveries: the consumer sequence (which counts redeliveries) and
/// the stream sequence of the message there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Position {
    /// Consumer sequence.
    pub consumer_seq: u64,
    /// Stream sequence.
    pub stream_seq: u64,
}

/// A stream's acknowledgement of a publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PubAck {
    /// The stream that stored the message.
    pub stream: String,
    /// Its sequence (the original's, for a duplicate).
    pub seq: u64,
    /// The message id was seen within the duplicate window: not stored again.
    pub duplicate: bool,
}

/// Where a stream of a cluster is kept: its leader and its other replicas, as the leader
/// sees them (see `herald::jetstream::ClusterStreams::placement`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// The cluster's name.
    pub cluster: Option<String>,
    /// The node whose replica leads (captures publishes, serves consumers), if one does now.
    pub leader: Option<String>,
    /// The other replicas (none for a stream with one replica).
    pub replicas: Vec<ReplicaInfo>,
}

/// One replica of a stream, other than the leader's, in a [`Placement`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaInfo {
    /// The node keeping it.
    pub name: String,
    /// It holds everything the leader committed.
    pub current: bool,
    /// The leader does not hear from it.
    pub offline: bool,
    /// Log entries it is behind the leader.
    pub lag: u64,
    /// How long ago the leader last heard from it.
    pub active: Option<std::time::Duration>,
}
