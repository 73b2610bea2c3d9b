//! Stream and consumer configurations, their defaults and their rules.
//!
//! A config is plain data with public fields and a builder-style constructor
//! ([`StreamConfig::new`], [`ConsumerConfig::durable`]). The store checks it and fills in
//! what was left to it ([`StreamConfig::normalize`], [`ConsumerConfig::normalize`]) before
//! using it; two normalized configs are equal exactly when they ask for the same thing, which
//! is what makes a repeated create harmless.
//!
//! Limits are `Option`s (`None`: no limit), durations [`Duration`]s and times
//! [`SystemTime`]s. Serialized (a stream's `stream.json`, the HTTP API) durations are
//! humantime strings (`"2m"`) and times RFC 3339.

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::error::{Error, Reason, Result};
use crate::subject;

/// The smallest non-zero `max_age` and `duplicate_window`.
const MIN_DURATION: Duration = Duration::from_millis(100);
/// `duplicate_window` when none is given (and `max_age` is not shorter).
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// `ack_wait` of a consumer with acks when none is given.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
/// How long an ephemeral consumer lives without pulls, when neither it nor its stream says.
pub const DEFAULT_INACTIVE_THRESHOLD: Duration = Duration::from_secs(5);
/// Pull requests a consumer queues at once, by default.
pub const DEFAULT_MAX_WAITING: u64 = 512;
/// Unacknowledged deliveries a consumer with acks allows, by default.
pub const DEFAULT_MAX_ACK_PENDING: u64 = 1000;
/// Longest stream or consumer name, in bytes.
const MAX_NAME_LEN: usize = 255;
/// Longest description, in bytes.
const MAX_DESCRIPTION_LEN: usize = 4096;
/// Subjects a stream may not capture: herald's and JetStream's own services.
const RESERVED_SUBJECTS: &[&str] = &["$JS.API.>", "$HERALD.API.>"];

/// When a stream lets go of its messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// Keep messages until a limit (count, bytes, age) removes them.
    #[default]
    Limits,
    /// Keep each message while some consumer whose filters take it has yet to acknowledge
    /// it (within the limits).
    Interest,
    /// Remove each message once its consumer acknowledges it; each subject has at most one
    /// consumer (within the limits).
    WorkQueue,
}

/// What a stream does when a limit is reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Discard {
    /// Drop the oldest messages to make room.
    #[default]
    Old,
    /// Refuse the new message.
    New,
}

/// Where a stream keeps its messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Storage {
    /// On disk, synced as the store's fsync policy says.
    #[default]
    File,
    /// On disk but never synced: lost in a crash of the machine.
    Memory,
}

/// Where a new consumer starts in its stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliverPolicy {
    /// From the first message kept.
    #[default]
    All,
    /// From the last message (that passes the consumer's filters).
    Last,
    /// Only messages stored after the consumer was made.
    New,
    /// From this stream sequence.
    ByStartSequence(u64),
    /// From the first message stored at or after this time.
    ByStartTime(#[serde(with = "crate::time::serde_rfc3339")] SystemTime),
    /// The last message of each subject (that passes the consumer's filters), then every
    /// message stored after the consumer was made.
    LastPerSubject,
}

/// How a consumer's deliveries are acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckPolicy {
    /// No acks: a message counts as handled once delivered.
    None,
    /// Acking a message acks every earlier one too.
    All,
    /// Each message is acked on its own.
    #[default]
    Explicit,
}

/// How fast a consumer replays stored messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayPolicy {
    /// As fast as the reader takes them.
    #[default]
    Instant,
    /// At the pace they were stored (not supported yet).
    Original,
}

/// A stream: which subjects it captures and what it keeps of them.
///
/// # Examples
/// ```
/// use herald::streams::{Discard, StreamConfig};
/// use std::time::Duration;
///
/// let config = StreamConfig {
///     max_age: Some(Duration::from_secs(7 * 24 * 3600)),
///     max_bytes: Some(1 << 30),
///     discard: Discard::Old,
///     ..StreamConfig::new("ORDERS", ["orders.>"])
/// };
/// assert_eq!(config.normalize()?.duplicate_window, Some(Duration::from_secs(120)));
/// # Ok::<(), herald::streams::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// The stream's name: 1 to 255 bytes without whitespace, `.`, `*`, `>` or path separators.
    pub name: String,
    /// Free text for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Subjects and patterns whose messages the stream stores; the name alone when empty.
    pub subjects: Vec<String>,
    /// When messages are let go.
    pub retention: Retention,
    /// Most consumers at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_consumers: Option<u64>,
    /// Most messages kept.
    #[serde(
        rename = "max_msgs",
        alias = "max_messages",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_messages: Option<u64>,
    /// Most bytes kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Oldest message kept (at least 100 ms).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// Most messages kept per subject; a subject's oldest go first (or, with
    /// `discard_new_per_subject`, its new ones are refused).
    #[serde(
        rename = "max_msgs_per_subject",
        alias = "max_messages_per_subject",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_messages_per_subject: Option<u64>,
    /// With `discard: new` and `max_messages_per_subject`, refuse a message whose subject is
    /// at its limit instead of deleting the subject's oldest.
    pub discard_new_per_subject: bool,
    /// Largest message accepted, headers and payload, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_message_size: Option<u64>,
    /// What happens when a limit is reached.
    pub discard: Discard,
    /// Where messages are kept.
    pub storage: Storage,
    /// Copies kept in a cluster; herald keeps exactly 1 for now.
    #[serde(rename = "num_replicas", alias = "replicas")]
    pub replicas: u8,
    /// Store publishes without acknowledging them to their publisher.
    pub no_ack: bool,
    /// How long a message id is remembered for de-duplication; after
    /// [`normalize`](StreamConfig::normalize), two minutes or `max_age` if shorter.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub duplicate_window: Option<Duration>,
    /// Sequence number of the first message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<NonZeroU64>,
    /// Let clients read messages directly by sequence or subject.
    pub allow_direct: bool,
    /// Refuse message deletes.
    pub deny_delete: bool,
    /// Take no more messages, deletes or purges (set by an update; never undone).
    pub sealed: bool,
    /// Refuse purges.
    pub deny_purge: bool,
    /// Honour rollup headers.
    pub allow_rollup: bool,
    /// Honour a message's own time to live (`Nats-TTL` header).
    pub allow_msg_ttl: bool,
    /// Publish each stored message again on another subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub republish: Option<Republish>,
    /// Copy every message of another stream of this store (a mirror has no subjects of its
    /// own and no other sources).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Source>,
    /// Copy the messages of other streams of this store, besides what its subjects capture.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Source>,
    /// Defaults and caps for this stream's consumers.
    pub consumer_limits: ConsumerLimits,
    /// Free key/value pairs for applications.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// Defaults and caps a stream sets for its consumers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerLimits {
    /// The inactivity threshold of ephemeral consumers that set none.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub inactive_threshold: Option<Duration>,
    /// Cap on every consumer's `max_ack_pending`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ack_pending: Option<NonZeroU64>,
}

impl StreamConfig {
    /// A stream `name` capturing `subjects`, everything else at its default.
    pub fn new<I, S>(name: &str, subjects: I) -> StreamConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        StreamConfig {
            name: name.to_owned(),
            subjects: subjects.into_iter().map(Into::into).collect(),
            replicas: 1,
            ..StreamConfig::default()
        }
    }

    /// Checks the config and fills in defaults: the name as the only subject when none is
    /// given, one replica, the duplicate window. Refuses what is invalid, and what herald
    /// does not implement, with [`ErrorKind::InvalidConfig`](super::ErrorKind) or
    /// [`Unsupported`](super::ErrorKind). Normalizing twice changes nothing.
    pub fn normalize(mut self) -> Result<StreamConfig> {
        let invalid = |why: String| Err(Error::invalid_stream_config(why));
        if !valid_name(&self.name) {
            return invalid("invalid stream name".into());
        }
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.len() > MAX_DESCRIPTION_LEN)
        {
            return invalid(format!(
                "stream description is longer than {MAX_DESCRIPTION_LEN} bytes"
            ));
        }
        if self.discard_new_per_subject
            && (self.discard != Discard::New || self.max_messages_per_subject.is_none())
        {
            return invalid(
                "discard new per subject requires discard new policy to be set and max msgs per subject"
                    .into(),
            );
        }

        if let Some(mirror) = &self.mirror {
            if !self.subjects.is_empty() {
                return invalid("stream mirrors can not contain subjects".into());
            }
            if !self.sources.is_empty() {
                return invalid("stream mirrors can not also contain other sources".into());
            }
            if mirror.name == self.name {
                return invalid("stream mirror can not be itself".into());
            }
        }
        for source in self.mirror.iter().chain(&self.sources) {
            if !valid_name(&source.name) {
                return invalid(format!("invalid source stream name {:?}", source.name));
            }
            if source.name == self.name {
                return invalid("stream can not source itself".into());
            }
            if source.start_seq.is_some() && source.start_time.is_some() {
                return invalid(
                    "source can not have both a start sequence and a start time".into(),
                );
            }
            if let Some(filter) = &source.filter_subject
                && subject::check(filter).is_err()
            {
                return invalid(format!("invalid source filter subject {filter}"));
            }
        }
        if self.subjects.is_empty() && self.mirror.is_none() && self.sources.is_empty() {
            self.subjects = vec![self.name.clone()];
        }
        for (i, s) in self.subjects.iter().enumerate() {
            if subject::check(s).is_err() {
                return invalid(format!("invalid subject {s}"));
            }
            if RESERVED_SUBJECTS.iter().any(|r| subject::overlaps(s, r)) {
                return invalid("subjects overlap with the JetStream API".into());
            }
            if self.subjects[..i].contains(s) {
                return invalid(format!("duplicate subject {s}"));
            }
        }

        if let Some(rule) = &self.republish {
            super::republish::check(rule, &self.subjects)
                .map_err(|why| Error::new(Reason::InvalidStreamConfig, why))?;
        }

        if self.max_age.is_some_and(|age| age < MIN_DURATION) {
            return invalid("max age needs to be at least 100ms".into());
        }
        let window = match (self.duplicate_window, self.max_age) {
            (Some(window), _) => window,
            (None, Some(age)) => age.min(DEFAULT_DUPLICATE_WINDOW),
            (None, None) => DEFAULT_DUPLICATE_WINDOW,
        };
        if window < MIN_DURATION {
            return invalid("duplicate window needs to be at least 100ms".into());
        }
        if self.max_age.is_some_and(|age| window > age) {
            return invalid("duplicate window can not be larger than max age".into());
        }
        self.duplicate_window = Some(window);

        match self.replicas {
            0 => self.replicas = 1,
            1 => {}
            _ => {
                return Err(Error::new(
                    Reason::Replicas,
                    "replicas > 1 not supported in non-clustered mode",
                ));
            }
        }
        self.description = self.description.filter(|d| !d.is_empty());
        Ok(self)
    }

    /// [`normalize`](StreamConfig::normalize) for a replicated stream of a cluster: more
    /// than one replica is kept.
    pub(crate) fn normalize_replicated(self) -> Result<StreamConfig> {
        let replicas = self.replicas;
        let mut config = StreamConfig {
            replicas: 1,
            ..self
        }
        .normalize()?;
        config.replicas = replicas;
        Ok(config)
    }

    /// The duplicate window of a normalized config.
    pub(crate) fn window(&self) -> Duration {
        self.duplicate_window.unwrap_or(DEFAULT_DUPLICATE_WINDOW)
    }
}

/// A consumer: where it reads in its stream, which subjects, and how deliveries are acked.
///
/// # Examples
/// ```
/// use herald::streams::{ConsumerConfig, DeliverPolicy};
/// use std::time::Duration;
///
/// let billing = ConsumerConfig {
///     deliver: DeliverPolicy::New,
///     ack_wait: Some(Duration::from_secs(10)),
///     filter_subjects: vec!["orders.eu.>".into()],
///     ..ConsumerConfig::durable("billing")
/// };
/// assert!(billing.durable);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerConfig {
    /// The consumer's name; a random one is given to a consumer created without.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A durable consumer lives until deleted, and its position survives restarts; an
    /// ephemeral one is deleted after `inactive_threshold` without pulls.
    pub durable: bool,
    /// Free text for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where in the stream delivery starts.
    pub deliver: DeliverPolicy,
    /// How deliveries are acknowledged.
    pub ack_policy: AckPolicy,
    /// How long an unacknowledged delivery waits before it is delivered again; after
    /// [`normalize`](ConsumerConfig::normalize), 30 s (or the first backoff) when acks are on.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub ack_wait: Option<Duration>,
    /// Most deliveries of one message (`None`: no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_deliver: Option<NonZeroU64>,
    /// Successive redelivery delays; the first replaces `ack_wait`.
    #[serde(
        with = "crate::time::serde_durations",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub backoff: Vec<Duration>,
    /// Subject patterns to deliver (empty: all); they may not overlap.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filter_subjects: Vec<String>,
    /// How fast stored messages are replayed.
    pub replay_policy: ReplayPolicy,
    /// Percentage of acks to sample for observability, e.g. `"100%"` (kept, not acted on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_frequency: Option<String>,
    /// Most pull requests queued at once (at least 1).
    pub max_waiting: u64,
    /// Most deliveries awaiting an ack (`None`: no limit; 1000 by default). Without acks,
    /// nothing awaits an ack and this has no effect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ack_pending: Option<NonZeroU64>,
    /// Deliver headers only, without payloads.
    pub headers_only: bool,
    /// Largest batch a pull request may ask for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_batch: Option<NonZeroU64>,
    /// Largest byte budget a pull request may ask for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<NonZeroU64>,
    /// Longest a pull request may wait (at least 1 ms).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub max_expires: Option<Duration>,
    /// How long an ephemeral consumer lives without pulls; the stream's default or 5 s.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub inactive_threshold: Option<Duration>,
    /// Copies kept in a cluster (0: the stream's).
    pub replicas: u8,
    /// Keep the consumer's state in memory only, even on a file stream.
    pub memory_storage: bool,
    /// Free key/value pairs for applications.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Deliver by push (a JetStream push consumer): messages are sent to a subject as they
    /// come, instead of waiting for pull requests. The store keeps this; the JetStream
    /// adapter does the sending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<Push>,
}

/// Another stream of the same store that a stream copies ([`StreamConfig::mirror`],
/// [`StreamConfig::sources`]). Copies carry `Nats-Stream-Source: <stream> <sequence>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Source {
    /// The stream copied.
    pub name: String,
    /// Copy from this sequence of it on (instead of its first message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_seq: Option<u64>,
    /// Copy from its first message stored at or after this time.
    #[serde(
        with = "crate::time::serde_rfc3339_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub start_time: Option<SystemTime>,
    /// Copy only messages on subjects this pattern matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter_subject: Option<String>,
}

/// Where a stream republishes what it stores ([`StreamConfig::republish`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Republish {
    /// The stored messages to republish: a pattern within the stream's subjects.
    pub source: String,
    /// The subject they are republished on; it maps the source's wildcards (`*`, `>`,
    /// `{{wildcard(n)}}`, `$n`) and may not feed the stream again.
    pub destination: String,
    /// Republish the headers only (the payload's size in `Nats-Msg-Size`).
    pub headers_only: bool,
}

/// How a push consumer delivers ([`ConsumerConfig::push`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Push {
    /// Where messages are sent.
    pub deliver_subject: String,
    /// The queue group that shares the deliveries (one member gets each).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliver_group: Option<String>,
    /// A heartbeat after this long without a delivery.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub idle_heartbeat: Option<Duration>,
    /// Pause after a window of deliveries until the client answers a flow-control request.
    pub flow_control: bool,
    /// Most bytes delivered per second (`None`: no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_bps: Option<u64>,
}

impl Default for ConsumerConfig {
    /// An ephemeral consumer with explicit acks, from the start of the stream.
    fn default() -> Self {
        ConsumerConfig {
            name: None,
            durable: false,
            description: None,
            deliver: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: None,
            max_deliver: None,
            backoff: Vec::new(),
            filter_subjects: Vec::new(),
            replay_policy: ReplayPolicy::Instant,
            sample_frequency: None,
            max_waiting: DEFAULT_MAX_WAITING,
            max_ack_pending: NonZeroU64::new(DEFAULT_MAX_ACK_PENDING),
            headers_only: false,
            max_batch: None,
            max_bytes: None,
            max_expires: None,
            inactive_threshold: None,
            replicas: 0,
            memory_storage: false,
            metadata: BTreeMap::new(),
            push: None,
        }
    }
}

impl ConsumerConfig {
    /// A durable consumer `name` with explicit acks, from the start of the stream.
    pub fn durable(name: &str) -> ConsumerConfig {
        ConsumerConfig {
            name: Some(name.to_owned()),
            durable: true,
            ..ConsumerConfig::default()
        }
    }

    /// An ephemeral consumer with explicit acks (deleted after a few idle seconds).
    pub fn ephemeral() -> ConsumerConfig {
        ConsumerConfig::default()
    }

    /// Checks the config against its (normalized) stream's and fills in defaults: the ack
    /// wait, the inactivity threshold of an ephemeral consumer, the stream's cap on
    /// `max_ack_pending`. Normalizing twice changes nothing.
    pub fn normalize(mut self, stream: &StreamConfig) -> Result<ConsumerConfig> {
        if self.durable && self.name.is_none() {
            return Err(Error::invalid_consumer_config(
                "a durable consumer needs a name",
            ));
        }
        if let Some(name) = &self.name
            && !valid_name(name)
        {
            return Err(Error::new(
                Reason::InvalidConsumerName,
                format!(
                    "invalid consumer name {name}: it must be 1 to {MAX_NAME_LEN} bytes \
                     without whitespace, '.', '*', '>' or path separators"
                ),
            ));
        }
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.len() > MAX_DESCRIPTION_LEN)
        {
            return Err(Error::bad_request(format!(
                "consumer description is longer than {MAX_DESCRIPTION_LEN} bytes"
            )));
        }
        if self.deliver == DeliverPolicy::ByStartSequence(0) {
            return Err(Error::invalid_consumer_config(
                "deliver policy by_start_sequence requires opt_start_seq",
            ));
        }
        if self.replay_policy == ReplayPolicy::Original {
            return Err(Error::unsupported(
                "replay policy original is not supported",
            ));
        }

        // Acks and redelivery.
        if let Some(&first) = self.backoff.first() {
            self.ack_wait = Some(first);
            if self
                .max_deliver
                .is_some_and(|n| n.get() <= self.backoff.len() as u64)
            {
                return Err(Error::new(
                    Reason::BackoffTooLong,
                    "max deliver is required to be > length of backoff values",
                ));
            }
        }
        if self.ack_policy != AckPolicy::None {
            if self.ack_wait.is_none_or(|w| w.is_zero()) {
                self.ack_wait = Some(DEFAULT_ACK_WAIT);
            }
            if let Some(cap) = stream.consumer_limits.max_ack_pending
                && self.max_ack_pending.is_none_or(|n| n > cap)
            {
                self.max_ack_pending = Some(cap);
            }
        }

        // Push delivery.
        if let Some(push) = &self.push {
            if subject::check_literal(&push.deliver_subject).is_err() {
                return Err(Error::invalid_consumer_config(format!(
                    "invalid deliver subject {:?}",
                    push.deliver_subject
                )));
            }
            if push.flow_control && push.idle_heartbeat.is_none_or(|h| h.is_zero()) {
                return Err(Error::invalid_consumer_config(
                    "consumer with flow control also needs heartbeats",
                ));
            }
            if self.max_batch.is_some() || self.max_bytes.is_some() || self.max_expires.is_some() {
                return Err(Error::invalid_consumer_config(
                    "consumer in push mode can not set max batch, max bytes or max expires",
                ));
            }
        }

        // Pull request limits.
        if self.max_waiting == 0 {
            return Err(Error::bad_request("max_waiting must be at least 1"));
        }
        if self
            .max_expires
            .is_some_and(|e| e < Duration::from_millis(1))
        {
            return Err(Error::bad_request("max_expires needs to be at least 1ms"));
        }
        if self.inactive_threshold.is_none() && !self.durable {
            self.inactive_threshold = Some(
                stream
                    .consumer_limits
                    .inactive_threshold
                    .unwrap_or(DEFAULT_INACTIVE_THRESHOLD),
            );
        }

        // Filters.
        for (i, filter) in self.filter_subjects.iter().enumerate() {
            if subject::check(filter).is_err() {
                return Err(Error::bad_request(format!(
                    "invalid filter subject {filter}"
                )));
            }
            if !stream.subjects.iter().any(|s| subject::overlaps(s, filter)) {
                return Err(Error::new(
                    Reason::FilterNotInStream,
                    "consumer filter subject is not a valid subset of the interest subjects",
                ));
            }
            if self.filter_subjects[..i]
                .iter()
                .any(|earlier| subject::overlaps(earlier, filter))
            {
                return Err(Error::new(
                    Reason::FiltersOverlap,
                    "consumer subject filters cannot overlap",
                ));
            }
        }

        if self.replicas > 1 {
            return Err(Error::new(
                Reason::Replicas,
                "replicas > 1 not supported in non-clustered mode",
            ));
        }
        self.description = self.description.filter(|d| !d.is_empty());
        Ok(self)
    }

    /// Whether an existing consumer (`self`) may become `new` in place (both normalized).
    pub fn check_update(&self, new: &ConsumerConfig) -> Result<()> {
        let checks: [(bool, &str); 8] = [
            (
                self.push.is_some() != new.push.is_some(),
                "a push consumer can not become a pull consumer, or the reverse",
            ),
            (
                self.deliver != new.deliver,
                match (self.deliver, new.deliver) {
                    (DeliverPolicy::ByStartSequence(_), DeliverPolicy::ByStartSequence(_)) => {
                        "start sequence can not be updated"
                    }
                    (DeliverPolicy::ByStartTime(_), DeliverPolicy::ByStartTime(_)) => {
                        "start time can not be updated"
                    }
                    _ => "deliver policy can not be updated",
                },
            ),
            (
                self.ack_policy != new.ack_policy,
                "ack policy can not be updated",
            ),
            (
                self.replay_policy != new.replay_policy,
                "replay policy can not be updated",
            ),
            (
                self.memory_storage != new.memory_storage,
                "storage type can not be updated",
            ),
            (
                self.max_waiting != new.max_waiting,
                "max waiting can not be updated",
            ),
            (
                self.durable != new.durable,
                "durable name can not be updated",
            ),
            (self.name != new.name, "consumer name can not be updated"),
        ];
        match checks.iter().find(|(differs, _)| *differs) {
            Some((_, reason)) => Err(Error::consumer_update(*reason)),
            None => Ok(()),
        }
    }

    /// The ack wait of a normalized config (the default if acks are off).
    pub(crate) fn ack_wait(&self) -> Duration {
        self.ack_wait.unwrap_or(DEFAULT_ACK_WAIT)
    }
}

/// Whether `name` may name a stream or a consumer: 1 to 255 bytes, with no whitespace, control
/// characters, `.`, `*`, `>` or path separators (it becomes a subject token and a file name).
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\')
        })
}
