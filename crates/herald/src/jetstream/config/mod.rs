//! JetStream's JSON for stream and consumer configurations and infos, and its translation to
//! and from herald's typed configs (JETSTREAM-WIRE 3.2 to 3.4, 4.2, 5.2 to 5.4).
//!
//! Parsing is lenient, like the real server's: a missing field or a `null` takes its default
//! (the request decoder drops `null` members before these types see them), unknown fields are
//! ignored. Durations are `u64` nanoseconds and "unlimited" is `-1`.
//! [`StreamConfig::to_typed`] turns what a client sent into a [`streams::StreamConfig`]
//! (refusing what herald does not have); [`StreamConfig::from_typed`] writes a typed config
//! back as the server's echo: the fields the clients require always, optional ones only when
//! set, so a normalized config serializes to what a real server would answer.

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::error::ApiError;
use super::time::{self, rfc3339};
use crate::streams;

mod consumer;

pub use consumer::{ConsumerConfig, ConsumerInfo, SequenceInfo};

// ---------------------------------------------------------------------------------------------
// Lenient field decoding
// ---------------------------------------------------------------------------------------------

/// An optional string where `""` means absent, as with Go's `omitempty`.
pub(crate) fn empty_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

/// An optional number where `0` means absent, as with Go's `omitempty`.
pub(crate) fn zero_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<u64>::deserialize(d)?.filter(|&n| n != 0))
}

/// For `skip_serializing_if` on integers.
fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

/// For `skip_serializing_if` on booleans.
fn is_false(b: &bool) -> bool {
    !*b
}

// ---------------------------------------------------------------------------------------------
// Enums
// ---------------------------------------------------------------------------------------------

/// When a stream lets go of its messages (`retention`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    /// Keep messages until a limit (count, bytes, age) removes them.
    #[default]
    Limits,
    /// Keep each message while some consumer has yet to acknowledge it.
    Interest,
    /// Remove each message as soon as one consumer acknowledges it.
    #[serde(rename = "workqueue")]
    WorkQueue,
}

/// What a stream does when a limit is reached (`discard`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Discard {
    /// Drop the oldest messages to make room.
    #[default]
    Old,
    /// Refuse the new message.
    New,
}

/// Where a stream keeps its messages (`storage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// On disk.
    #[default]
    File,
    /// In memory only.
    Memory,
}

/// Where a consumer starts in its stream (`deliver_policy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliverPolicy {
    /// From the first message.
    #[default]
    All,
    /// From the last message.
    Last,
    /// Only messages stored after the consumer was created.
    New,
    /// From `opt_start_seq`.
    ByStartSequence,
    /// From the first message stored at or after `opt_start_time`.
    ByStartTime,
    /// The last message of each subject.
    LastPerSubject,
}

/// How a consumer's messages must be acknowledged (`ack_policy`).
///
/// The default is `None`, Go's zero value: a request without `ack_policy` gets no acks (5.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckPolicy {
    /// No acks: a message counts as handled once delivered.
    #[default]
    None,
    /// Acking a message acks every earlier one too.
    All,
    /// Each message is acked on its own.
    Explicit,
}

/// How fast a consumer replays stored messages (`replay_policy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplayPolicy {
    /// As fast as the client takes them.
    #[default]
    Instant,
    /// At the pace they were stored.
    Original,
}

// ---------------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------------

/// Stream fields that herald does not implement. A request that sets one (anything but
/// `null`, `false`, `0`, `""`, `"default"`, `[]` or an object of those) is refused by
/// [`StreamConfig::normalize`] rather than silently ignored.
const UNSUPPORTED_STREAM_FIELDS: &[&str] = &[
    "subject_transform",
    "placement",
    "subject_delete_marker_ttl",
    "allow_msg_counter",
    "allow_atomic",
    "allow_msg_schedules",
    "allow_batched",
    "persist_mode",
];

/// Consumer fields that herald does not implement (2.11's pausing and priority groups),
/// refused like [`UNSUPPORTED_STREAM_FIELDS`]. A `priority_policy` of `"none"` is unset.
const UNSUPPORTED_CONSUMER_FIELDS: &[&str] = &[
    "pause_until",
    "priority_groups",
    "priority_policy",
    "priority_timeout",
];

/// Collects the names of [`UNSUPPORTED_STREAM_FIELDS`] that the request sets, from the keys of
/// a stream config that no field of [`StreamConfig`] takes.
fn unsupported_fields<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<&'static str>, D::Error> {
    let rest = BTreeMap::<String, Value>::deserialize(d)?;
    Ok(set_among(&rest, UNSUPPORTED_STREAM_FIELDS))
}

/// [`unsupported_fields`] for consumers ([`UNSUPPORTED_CONSUMER_FIELDS`]).
fn unsupported_consumer_fields<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<&'static str>, D::Error> {
    let rest = BTreeMap::<String, Value>::deserialize(d)?;
    Ok(set_among(&rest, UNSUPPORTED_CONSUMER_FIELDS))
}

/// The names of `fields` that `rest` sets.
fn set_among(rest: &BTreeMap<String, Value>, fields: &[&'static str]) -> Vec<&'static str> {
    fields
        .iter()
        .copied()
        .filter(|name| {
            rest.get(*name)
                .is_some_and(|v| is_set(v) && v.as_str() != Some("none"))
        })
        .collect()
}

/// Whether a JSON value says anything beyond "unset".
fn is_set(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty() && s != "default",
        Value::Array(items) => !items.is_empty(),
        Value::Object(fields) => fields.values().any(is_set),
    }
}

/// A stream's configuration (`StreamConfig`, JETSTREAM-WIRE 3.2 and 3.3).
///
/// Deserializing is lenient (3.2); [`to_typed`](StreamConfig::to_typed) hands it to the store,
/// and [`from_typed`](StreamConfig::from_typed) gives the server's echo (3.4).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamConfig {
    /// The stream's name; also the subject token of its API calls.
    pub name: String,
    /// Free text for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "empty_none")]
    pub description: Option<String>,
    /// Subjects (and patterns) whose messages the stream stores; `[name]` when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    /// When messages are let go.
    pub retention: Retention,
    /// Most consumers at once; -1 = unlimited.
    pub max_consumers: i64,
    /// Most messages kept; -1 = unlimited.
    pub max_msgs: i64,
    /// Most bytes kept; -1 = unlimited.
    pub max_bytes: i64,
    /// Oldest message kept, in ns; 0 = no limit.
    pub max_age: u64,
    /// Most messages kept per subject; -1 = unlimited.
    pub max_msgs_per_subject: i64,
    /// Largest message accepted, in bytes; -1 = unlimited.
    #[serde(skip_serializing_if = "is_zero")]
    pub max_msg_size: i64,
    /// What happens when a limit is reached.
    pub discard: Discard,
    /// Where messages are kept.
    pub storage: Storage,
    /// Copies kept in a cluster; herald keeps exactly 1.
    pub num_replicas: i64,
    /// Store publishes without answering them with a PubAck.
    #[serde(skip_serializing_if = "is_false")]
    pub no_ack: bool,
    /// How long a `Nats-Msg-Id` is remembered for de-duplication, in ns.
    #[serde(skip_serializing_if = "is_zero")]
    pub duplicate_window: u64,
    /// Storage compression: `"none"` (the only one herald has) or `"s2"`.
    pub compression: String,
    /// Sequence number of the first message.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "zero_none")]
    pub first_seq: Option<u64>,
    /// Answer `$JS.API.DIRECT.GET` requests.
    pub allow_direct: bool,
    /// Answer direct gets for the mirrored stream (mirrors only).
    pub mirror_direct: bool,
    /// Refuse every change: no more messages, deletes or purges.
    pub sealed: bool,
    /// Refuse message deletes.
    pub deny_delete: bool,
    /// Refuse purges.
    pub deny_purge: bool,
    /// Honour the `Nats-Rollup` header.
    pub allow_rollup_hdrs: bool,
    /// Honour the `Nats-TTL` header.
    pub allow_msg_ttl: bool,
    /// Publish each stored message again on another subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub republish: Option<RePublish>,
    /// The stream this one copies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<StreamSource>,
    /// Streams this one copies besides its own subjects.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "null_empty")]
    pub sources: Vec<StreamSource>,
    /// With `discard: new`, apply the per-subject limit to new messages too.
    #[serde(skip_serializing_if = "is_false")]
    pub discard_new_per_subject: bool,
    /// Defaults and caps for this stream's consumers; written as `{}` when empty.
    pub consumer_limits: ConsumerLimits,
    /// Free key/value pairs for applications.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Fields herald does not implement that the request set (mirror, sources, republish,
    /// subject_transform, placement, ...), noted while deserializing so that
    /// [`normalize`](crate::streams::StreamConfig::normalize) can refuse them. Never serialized.
    ///
    /// Deserialized from the keys no other field takes (`flatten`).
    #[serde(flatten, skip_serializing, deserialize_with = "unsupported_fields")]
    pub unsupported: Vec<&'static str>,
}

/// Another stream a stream copies (`StreamSource`, for `mirror` and `sources`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamSource {
    /// The stream copied.
    pub name: String,
    /// Copy from this sequence on; 0 = from its first message.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "zero_none"
    )]
    pub opt_start_seq: Option<u64>,
    /// Copy from this time on (RFC 3339).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_none"
    )]
    pub opt_start_time: Option<String>,
    /// Copy only messages on subjects this pattern matches.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_none"
    )]
    pub filter_subject: Option<String>,
    /// Another account or domain: refused (herald copies within one server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external: Option<Value>,
    /// Subject transforms of copies: refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_transforms: Option<Value>,
}

impl StreamSource {
    fn to_typed(&self) -> Result<streams::Source, ApiError> {
        let invalid = |why: String| Err(ApiError::invalid_stream_config(why));
        if self.external.as_ref().is_some_and(is_set) {
            return invalid("external stream sources are not supported".into());
        }
        if self.subject_transforms.as_ref().is_some_and(is_set) {
            return invalid("subject transforms of sources are not supported".into());
        }
        let start_time = match &self.opt_start_time {
            Some(text) => match time::parse(text) {
                Ok(at) => at,
                Err(_) => return invalid(format!("invalid opt_start_time {text:?}")),
            },
            None => None,
        };
        Ok(streams::Source {
            name: self.name.clone(),
            start_seq: self.opt_start_seq,
            start_time,
            filter_subject: self.filter_subject.clone(),
        })
    }

    fn from_typed(source: &streams::Source) -> StreamSource {
        StreamSource {
            name: source.name.clone(),
            opt_start_seq: source.start_seq,
            opt_start_time: source.start_time.map(|t| rfc3339(Some(t))),
            filter_subject: source.filter_subject.clone(),
            external: None,
            subject_transforms: None,
        }
    }
}

/// A `null` list is an empty one.
fn null_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// A stream's republish rule (`RePublish`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RePublish {
    /// The stored subjects to republish.
    pub src: String,
    /// Where to (maps the source's wildcards).
    pub dest: String,
    /// Headers only, without payloads.
    #[serde(skip_serializing_if = "is_false")]
    pub headers_only: bool,
}

/// Defaults and caps a stream sets for its consumers (`consumer_limits`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsumerLimits {
    /// Default (ns) for consumers that do not set `inactive_threshold`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "zero_none")]
    pub inactive_threshold: Option<u64>,
    /// Cap on every consumer's `max_ack_pending`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ack_pending: Option<i64>,
}

impl StreamConfig {
    /// The typed config a client's request asks for; what herald does not have is refused
    /// (10052), as are values no server takes. The store then normalizes it.
    pub fn to_typed(self) -> Result<streams::StreamConfig, ApiError> {
        let invalid = |why: String| Err(ApiError::invalid_stream_config(why));
        if let Some(field) = self.unsupported.first() {
            return invalid(format!("{field} is not supported"));
        }
        if !matches!(self.compression.as_str(), "" | "none") {
            return invalid("compression is not supported".into());
        }
        for (set, what) in [(self.mirror_direct, "mirror_direct is")] {
            if set {
                return invalid(format!("{what} not supported"));
            }
        }
        if self.num_replicas < 0 {
            return invalid("replicas must be at least 1".into());
        }
        let limit = |n: i64| u64::try_from(n).ok().filter(|&n| n > 0);
        Ok(streams::StreamConfig {
            name: self.name,
            description: self.description,
            subjects: self.subjects,
            retention: match self.retention {
                Retention::Limits => streams::Retention::Limits,
                Retention::Interest => streams::Retention::Interest,
                Retention::WorkQueue => streams::Retention::WorkQueue,
            },
            max_consumers: limit(self.max_consumers),
            max_messages: limit(self.max_msgs),
            max_bytes: limit(self.max_bytes),
            max_age: nanos(self.max_age),
            max_messages_per_subject: limit(self.max_msgs_per_subject),
            discard_new_per_subject: self.discard_new_per_subject,
            max_message_size: limit(self.max_msg_size),
            discard: match self.discard {
                Discard::Old => streams::Discard::Old,
                Discard::New => streams::Discard::New,
            },
            storage: match self.storage {
                Storage::File => streams::Storage::File,
                Storage::Memory => streams::Storage::Memory,
            },
            replicas: u8::try_from(self.num_replicas).unwrap_or(u8::MAX),
            no_ack: self.no_ack,
            duplicate_window: nanos(self.duplicate_window),
            first_seq: self.first_seq.and_then(NonZeroU64::new),
            allow_direct: self.allow_direct,
            deny_delete: self.deny_delete,
            sealed: self.sealed,
            deny_purge: self.deny_purge,
            allow_rollup: self.allow_rollup_hdrs,
            allow_msg_ttl: self.allow_msg_ttl,
            mirror: self
                .mirror
                .as_ref()
                .map(StreamSource::to_typed)
                .transpose()?,
            sources: self
                .sources
                .iter()
                .map(StreamSource::to_typed)
                .collect::<Result<_, _>>()?,
            republish: self.republish.map(|r| streams::Republish {
                source: r.src,
                destination: r.dest,
                headers_only: r.headers_only,
            }),
            consumer_limits: streams::ConsumerLimits {
                inactive_threshold: self.consumer_limits.inactive_threshold.and_then(nanos),
                max_ack_pending: self
                    .consumer_limits
                    .max_ack_pending
                    .and_then(|n| NonZeroU64::new(u64::try_from(n).ok()?)),
            },
            metadata: self.metadata.unwrap_or_default(),
        })
    }

    /// A typed (normalized) config as the server echoes it.
    pub fn from_typed(config: &streams::StreamConfig) -> StreamConfig {
        let limit = |n: Option<u64>| n.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        StreamConfig {
            name: config.name.clone(),
            description: config.description.clone(),
            subjects: config.subjects.clone(),
            retention: match config.retention {
                streams::Retention::Limits => Retention::Limits,
                streams::Retention::Interest => Retention::Interest,
                streams::Retention::WorkQueue => Retention::WorkQueue,
            },
            max_consumers: limit(config.max_consumers),
            max_msgs: limit(config.max_messages),
            max_bytes: limit(config.max_bytes),
            max_age: config.max_age.map_or(0, as_nanos),
            max_msgs_per_subject: limit(config.max_messages_per_subject),
            max_msg_size: limit(config.max_message_size),
            discard: match config.discard {
                streams::Discard::Old => Discard::Old,
                streams::Discard::New => Discard::New,
            },
            storage: match config.storage {
                streams::Storage::File => Storage::File,
                streams::Storage::Memory => Storage::Memory,
            },
            num_replicas: i64::from(config.replicas),
            no_ack: config.no_ack,
            duplicate_window: config.duplicate_window.map_or(0, as_nanos),
            compression: "none".into(),
            first_seq: config.first_seq.map(NonZeroU64::get),
            allow_direct: config.allow_direct,
            mirror_direct: false,
            sealed: config.sealed,
            deny_delete: config.deny_delete,
            deny_purge: config.deny_purge,
            allow_rollup_hdrs: config.allow_rollup,
            allow_msg_ttl: config.allow_msg_ttl,
            mirror: config.mirror.as_ref().map(StreamSource::from_typed),
            sources: config
                .sources
                .iter()
                .map(StreamSource::from_typed)
                .collect(),
            republish: config.republish.as_ref().map(|r| RePublish {
                src: r.source.clone(),
                dest: r.destination.clone(),
                headers_only: r.headers_only,
            }),
            discard_new_per_subject: config.discard_new_per_subject,
            consumer_limits: ConsumerLimits {
                inactive_threshold: config.consumer_limits.inactive_threshold.map(as_nanos),
                max_ack_pending: config
                    .consumer_limits
                    .max_ack_pending
                    .map(|n| i64::try_from(n.get()).unwrap_or(i64::MAX)),
            },
            metadata: (!config.metadata.is_empty()).then(|| config.metadata.clone()),
            unsupported: Vec::new(),
        }
    }
}

/// A duration given in nanoseconds; 0 is none.
fn nanos(ns: u64) -> Option<Duration> {
    (ns > 0).then(|| Duration::from_nanos(ns))
}

/// A duration in nanoseconds, saturating.
pub(crate) fn as_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A stream's state (`StreamState`, JETSTREAM-WIRE 3.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamState {
    /// Messages stored.
    pub messages: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Sequence of the first message; `last_seq + 1` after a purge, 0 if never written.
    pub first_seq: u64,
    /// Time of the first message (RFC 3339), or the zero time.
    pub first_ts: String,
    /// Sequence of the last message written.
    pub last_seq: u64,
    /// Time of the last message (RFC 3339), or the zero time.
    pub last_ts: String,
    /// Consumers on the stream.
    pub consumer_count: usize,
    /// Deleted messages between `first_seq` and `last_seq`; left out when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub num_deleted: u64,
}

impl Default for StreamState {
    /// The state of an empty, never-written stream: zeros and the zero time.
    fn default() -> Self {
        StreamState {
            messages: 0,
            bytes: 0,
            first_seq: 0,
            first_ts: time::ZERO_TIME.to_owned(),
            last_seq: 0,
            last_ts: time::ZERO_TIME.to_owned(),
            consumer_count: 0,
            num_deleted: 0,
        }
    }
}

/// The reply to stream create, update, info and the items of a stream list (3.4).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamInfo {
    /// The normalized configuration.
    pub config: StreamConfig,
    /// When the stream was created (RFC 3339).
    pub created: String,
    /// What the stream holds.
    #[serde(default)]
    pub state: StreamState,
    /// `{"leader": <server>}` on STREAM.INFO; left out elsewhere.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cluster: Option<Value>,
    /// How the mirror's copy stands (a mirror only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mirror: Option<StreamSourceInfo>,
    /// How the copies of the sources stand.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub sources: Vec<StreamSourceInfo>,
    /// When this reply was made (RFC 3339).
    #[serde(default)]
    pub ts: String,
    /// On create: whether this request made the stream (false when it already existed).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub did_create: Option<bool>,
}

/// How the copy of a mirror or a source stands, in a stream's info.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSourceInfo {
    /// The stream copied.
    pub name: String,
    /// Only its messages on subjects matching this are copied.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub filter_subject: Option<String>,
    /// Its sequences after the last one copied.
    #[serde(default)]
    pub lag: u64,
    /// Nanoseconds since the copy last read it; -1 if it never did.
    #[serde(default = "never")]
    pub active: i64,
}

fn never() -> i64 {
    -1
}

impl StreamSourceInfo {
    fn from_typed(info: &streams::SourceInfo) -> StreamSourceInfo {
        StreamSourceInfo {
            name: info.name.clone(),
            filter_subject: info.filter_subject.clone(),
            lag: info.lag,
            active: info
                .active
                .map_or(-1, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        }
    }

    fn to_typed(&self) -> streams::SourceInfo {
        streams::SourceInfo {
            name: self.name.clone(),
            filter_subject: self.filter_subject.clone(),
            lag: self.lag,
            active: u64::try_from(self.active).ok().map(Duration::from_nanos),
        }
    }
}

impl StreamInfo {
    /// A typed info as JetStream reports it; `did_create` on create replies only.
    pub fn from_typed(info: &streams::StreamInfo, did_create: Option<bool>) -> StreamInfo {
        let state = &info.state;
        StreamInfo {
            config: StreamConfig::from_typed(&info.config),
            created: rfc3339(Some(info.created)),
            state: StreamState {
                messages: state.messages,
                bytes: state.bytes,
                first_seq: state.first_seq,
                first_ts: rfc3339(state.first_time),
                last_seq: state.last_seq,
                last_ts: rfc3339(state.last_time),
                consumer_count: state.consumers,
                // Sequences between the first and the last that hold no message.
                num_deleted: if state.messages == 0 {
                    0
                } else {
                    (state.last_seq + 1)
                        .saturating_sub(state.first_seq)
                        .saturating_sub(state.messages)
                },
            },
            cluster: None,
            mirror: info.mirror.as_ref().map(StreamSourceInfo::from_typed),
            sources: info
                .sources
                .iter()
                .map(StreamSourceInfo::from_typed)
                .collect(),
            ts: rfc3339(Some(SystemTime::now())),
            did_create,
        }
    }

    /// The typed info a server's reply stands for (the typed API over a cluster's
    /// JetStream reads replies with it).
    pub fn to_typed(self) -> Result<streams::StreamInfo, ApiError> {
        let state = &self.state;
        Ok(streams::StreamInfo {
            created: parse_time(&self.created)?.unwrap_or(std::time::UNIX_EPOCH),
            state: streams::StreamState {
                messages: state.messages,
                bytes: state.bytes,
                first_seq: state.first_seq,
                first_time: parse_time(&state.first_ts)?,
                last_seq: state.last_seq,
                last_time: parse_time(&state.last_ts)?,
                consumers: state.consumer_count,
            },
            mirror: self.mirror.as_ref().map(StreamSourceInfo::to_typed),
            sources: self
                .sources
                .iter()
                .map(StreamSourceInfo::to_typed)
                .collect(),
            config: self.config.to_typed()?,
        })
    }
}

/// A time in a server's reply; an empty one is "never".
pub(crate) fn parse_time(text: &str) -> Result<Option<SystemTime>, ApiError> {
    if text.is_empty() {
        return Ok(None);
    }
    time::parse(text).map_err(ApiError::bad_request)
}

/// The reply to a JetStream publish (4.2). Sent without `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PubAck {
    /// The stream that stored the message.
    pub stream: String,
    /// Its sequence (the original's, for a duplicate).
    pub seq: u64,
    /// The message was a duplicate and was not stored again.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub duplicate: bool,
}
