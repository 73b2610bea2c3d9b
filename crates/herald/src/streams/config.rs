//! JetStream JSON: the bodies of the `$JS.API` requests and replies, the defaults and checks
//! the server applies to stream and consumer configurations, and the scalar formats they use
//! (JETSTREAM-WIRE sections 1.4, 1.5, 3, 4.2, 5 and 10).
//!
//! Everything here is pure data: no I/O, no locks, no clocks.
//!
//! Parsing is lenient, like the real server's: a missing field or a `null` takes its default,
//! unknown fields are ignored. Durations are `u64` nanoseconds, so a negative duration is
//! invalid JSON (async-nats could not read it back either). Serializing follows the server's
//! echo: the fields the clients require are always written, optional ones are left out when
//! empty, so a normalized config serializes to what a real server would answer.
//!
//! Configurations go through two steps: `serde` turns the request into a config as the client
//! meant it, then `normalize` fills in the server defaults and refuses what is invalid or what
//! herald does not implement. Two normalized configs compare equal exactly when a real server
//! would consider them the same, which is what makes create requests idempotent.

use std::collections::BTreeMap;
use std::fmt::Display;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::subject;

/// One millisecond in nanoseconds.
const MS: u64 = 1_000_000;
/// One second in nanoseconds.
const SEC: u64 = 1_000 * MS;
/// The smallest non-zero `max_age` and `duplicate_window`.
const MIN_DURATION: u64 = 100 * MS;
/// `duplicate_window` when the client leaves it at 0 (and `max_age` is not smaller).
const DEFAULT_DUPLICATE_WINDOW: u64 = 120 * SEC;
/// `ack_wait` when the client leaves it at 0.
const DEFAULT_ACK_WAIT: u64 = 30 * SEC;
/// `inactive_threshold` of an ephemeral consumer when neither client nor stream sets one.
const DEFAULT_INACTIVE_THRESHOLD: u64 = 5 * SEC;
/// `max_waiting` (queued pull requests) when the client leaves it at 0.
const DEFAULT_MAX_WAITING: i64 = 512;
/// `max_ack_pending` when the client leaves it at 0 and acks are on.
const DEFAULT_MAX_ACK_PENDING: i64 = 1000;
/// Longest stream or consumer name, in bytes.
const MAX_NAME_LEN: usize = 255;
/// Longest description, in bytes.
const MAX_DESCRIPTION_LEN: usize = 4096;
/// What a stream may not capture: the API itself.
const API_SUBJECTS: &str = "$JS.API.>";

// ---------------------------------------------------------------------------------------------
// Scalars: timestamps and subject overlap
// ---------------------------------------------------------------------------------------------

/// Seconds from 0001-01-01T00:00:00Z (Go's zero time) to the Unix epoch, negated.
const GO_ZERO_UNIX_SECS: i64 = -62_135_596_800;
/// What a zero timestamp is written as: Go's zero time.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Days since 1970-01-01 of a proleptic Gregorian date (`month` 1..=12, `day` 1..=31).
///
/// Counts in 400-year eras that start on March 1st, so the leap day is the last day of a year.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date `(year, month, day)` that is `days` days after 1970-01-01; inverse of
/// [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Formats nanoseconds since the Unix epoch as RFC 3339 in UTC, the way Go's `RFC3339Nano`
/// does: a `Z` suffix, trailing fractional zeros trimmed, no fraction on a whole second.
/// `0` means "never" and is written as Go's zero time, `0001-01-01T00:00:00Z`.
pub fn rfc3339(ns: u64) -> String {
    if ns == 0 {
        return ZERO_TIME.to_owned();
    }
    // u64 nanoseconds reach only the year 2554, so every cast below is lossless.
    let secs = (ns / SEC) as i64;
    let frac = ns % SEC;
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let in_day = secs.rem_euclid(86_400);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60
    );
    if frac != 0 {
        let digits = format!("{frac:09}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Parses an RFC 3339 timestamp into nanoseconds since the Unix epoch.
///
/// Accepts a `Z` suffix or a `+hh:mm`/`-hh:mm` offset and 0 to 9 fractional digits. Go's zero
/// time (`0001-01-01T00:00:00Z`) gives `Some(0)`, like [`rfc3339`] writes it; any other instant
/// before 1970 or after the `u64` range (year 2554) gives `None`, as does a malformed string.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    // Reads the decimal number in b[from..from + len], all of which must be digits.
    let number = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        digits.iter().try_fold(0i64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let at = |i: usize, expect: &[u8]| b.get(i).is_some_and(|c| expect.contains(c));

    let year = number(0, 4)?;
    let month = number(5, 2)?;
    let day = number(8, 2)?;
    let hour = number(11, 2)?;
    let minute = number(14, 2)?;
    let second = number(17, 2)?;
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt") && at(13, b":") && at(16, b":")) {
        return None;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_len = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if !(1..=month_len).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }

    let mut pos = 19;
    let mut frac = 0u64;
    if at(pos, b".") {
        pos += 1;
        let digits = b[pos..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        let value = number(pos, digits)? as u64;
        frac = value * 10u64.pow((9 - digits) as u32);
        pos += digits;
    }
    let offset = match b.get(pos)? {
        b'Z' | b'z' if b.len() == pos + 1 => 0,
        sign @ (b'+' | b'-') if b.len() == pos + 6 && at(pos + 3, b":") => {
            let (h, m) = (number(pos + 1, 2)?, number(pos + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = h * 60 + m;
            if *sign == b'-' {
                -minutes * 60
            } else {
                minutes * 60
            }
        }
        _ => return None,
    };

    let secs =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    if secs == GO_ZERO_UNIX_SECS && frac == 0 {
        return Some(0);
    }
    let secs = u64::try_from(secs).ok()?;
    secs.checked_mul(SEC)?.checked_add(frac)
}

/// Whether two valid subject patterns can match a common subject.
///
/// `*` matches any one token and `>` one or more trailing tokens, on either side: `a.*` and
/// `*.b` overlap (on `a.b`), `a.>` and `a` do not (`>` needs at least one token).
pub fn overlaps(a: &str, b: &str) -> bool {
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some("*"), Some(_)) | (Some(_), Some("*")) => {}
            (Some(x), Some(y)) if x == y => {}
            _ => return false,
        }
    }
}

/// Whether `name` may name a stream or a consumer: 1 to 255 bytes, with no whitespace, control
/// characters, `.`, `*`, `>` or path separators (it becomes a subject token and a file name).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\')
        })
}

// ---------------------------------------------------------------------------------------------
// Lenient field decoding
// ---------------------------------------------------------------------------------------------

/// A field where `null` means the default, like a missing field.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An optional string where `""` means absent, as with Go's `omitempty`.
fn empty_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

/// An optional number where `0` means absent, as with Go's `omitempty`.
fn zero_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
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

impl Retention {
    /// The wire name, for messages.
    fn as_str(self) -> &'static str {
        match self {
            Retention::Limits => "limits",
            Retention::Interest => "interest",
            Retention::WorkQueue => "workqueue",
        }
    }
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
    "mirror",
    "sources",
    "republish",
    "subject_transform",
    "placement",
    "subject_delete_marker_ttl",
    "allow_msg_counter",
    "allow_atomic",
    "allow_msg_schedules",
    "allow_batched",
    "persist_mode",
];

/// Collects the names of [`UNSUPPORTED_STREAM_FIELDS`] that the request sets, from the keys of
/// a stream config that no field of [`StreamConfig`] takes.
fn unsupported_fields<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<&'static str>, D::Error> {
    let rest = BTreeMap::<String, Value>::deserialize(d)?;
    Ok(UNSUPPORTED_STREAM_FIELDS
        .iter()
        .copied()
        .filter(|name| rest.get(*name).is_some_and(is_set))
        .collect())
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
/// Deserializing is lenient (3.2); [`normalize`](StreamConfig::normalize) applies the server
/// defaults, after which serializing gives the server's echo (3.4).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamConfig {
    /// The stream's name; also the subject token of its API calls.
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    /// Free text for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "empty_none")]
    pub description: Option<String>,
    /// Subjects (and patterns) whose messages the stream stores; `[name]` when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "null_default")]
    pub subjects: Vec<String>,
    /// When messages are let go.
    #[serde(deserialize_with = "null_default")]
    pub retention: Retention,
    /// Most consumers at once; -1 = unlimited.
    #[serde(deserialize_with = "null_default")]
    pub max_consumers: i64,
    /// Most messages kept; -1 = unlimited.
    #[serde(deserialize_with = "null_default")]
    pub max_msgs: i64,
    /// Most bytes kept; -1 = unlimited.
    #[serde(deserialize_with = "null_default")]
    pub max_bytes: i64,
    /// Oldest message kept, in ns; 0 = no limit.
    #[serde(deserialize_with = "null_default")]
    pub max_age: u64,
    /// Most messages kept per subject; -1 = unlimited.
    #[serde(deserialize_with = "null_default")]
    pub max_msgs_per_subject: i64,
    /// Largest message accepted, in bytes; -1 = unlimited.
    #[serde(skip_serializing_if = "is_zero")]
    #[serde(deserialize_with = "null_default")]
    pub max_msg_size: i64,
    /// What happens when a limit is reached.
    #[serde(deserialize_with = "null_default")]
    pub discard: Discard,
    /// Where messages are kept.
    #[serde(deserialize_with = "null_default")]
    pub storage: Storage,
    /// Copies kept in a cluster; herald keeps exactly 1.
    #[serde(deserialize_with = "null_default")]
    pub num_replicas: i64,
    /// Store publishes without answering them with a PubAck.
    #[serde(skip_serializing_if = "is_false")]
    #[serde(deserialize_with = "null_default")]
    pub no_ack: bool,
    /// How long a `Nats-Msg-Id` is remembered for de-duplication, in ns.
    #[serde(skip_serializing_if = "is_zero")]
    #[serde(deserialize_with = "null_default")]
    pub duplicate_window: u64,
    /// Storage compression: `"none"` (the only one herald has) or `"s2"`.
    #[serde(deserialize_with = "null_default")]
    pub compression: String,
    /// Sequence number of the first message.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "zero_none")]
    pub first_seq: Option<u64>,
    /// Answer `$JS.API.DIRECT.GET` requests.
    #[serde(deserialize_with = "null_default")]
    pub allow_direct: bool,
    /// Answer direct gets for the mirrored stream (mirrors only).
    #[serde(deserialize_with = "null_default")]
    pub mirror_direct: bool,
    /// Refuse every change: no more messages, deletes or purges.
    #[serde(deserialize_with = "null_default")]
    pub sealed: bool,
    /// Refuse message deletes.
    #[serde(deserialize_with = "null_default")]
    pub deny_delete: bool,
    /// Refuse purges.
    #[serde(deserialize_with = "null_default")]
    pub deny_purge: bool,
    /// Honour the `Nats-Rollup` header.
    #[serde(deserialize_with = "null_default")]
    pub allow_rollup_hdrs: bool,
    /// Honour the `Nats-TTL` header.
    #[serde(deserialize_with = "null_default")]
    pub allow_msg_ttl: bool,
    /// With `discard: new`, apply the per-subject limit to new messages too.
    #[serde(skip_serializing_if = "is_false")]
    #[serde(deserialize_with = "null_default")]
    pub discard_new_per_subject: bool,
    /// Defaults and caps for this stream's consumers; written as `{}` when empty.
    #[serde(deserialize_with = "null_default")]
    pub consumer_limits: ConsumerLimits,
    /// Free key/value pairs for applications.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Fields herald does not implement that the request set (mirror, sources, republish,
    /// subject_transform, placement, ...), noted while deserializing so that
    /// [`normalize`](StreamConfig::normalize) can refuse them. Never serialized.
    ///
    /// Deserialized from the keys no other field takes (`flatten`).
    #[serde(flatten, skip_serializing, deserialize_with = "unsupported_fields")]
    pub unsupported: Vec<&'static str>,
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

/// Fails [`StreamConfig::normalize`] with 10052 and the reason.
fn invalid<T>(reason: impl Into<String>) -> Result<T, ApiError> {
    Err(ApiError::invalid_stream_config(reason))
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
            ..StreamConfig::default()
        }
    }

    /// Server defaults and validation, per JETSTREAM-WIRE 3.3/3.5.
    ///
    /// Fills in what the client left at zero (limits → -1, one replica, a two-minute
    /// duplicate window, the name as the only subject, ...) and refuses invalid values, and
    /// the features herald does not implement, with 10052 (10074 for replicas). Idempotent.
    pub fn normalize(mut self) -> Result<StreamConfig, ApiError> {
        if !valid_name(&self.name) {
            return invalid("invalid stream name");
        }
        if let Some(field) = self.unsupported.first() {
            return invalid(format!("{field} is not supported"));
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

        // Features herald leaves out.
        if self.retention != Retention::Limits {
            let name = self.retention.as_str();
            return invalid(format!("retention {name} is not supported"));
        }
        if self.compression.is_empty() {
            self.compression = "none".into();
        } else if self.compression != "none" {
            return invalid("compression is not supported");
        }
        if self.max_msgs_per_subject > 0 {
            return invalid("max_msgs_per_subject is not supported");
        }
        if self.discard_new_per_subject {
            return invalid("discard_new_per_subject is not supported");
        }
        if self.sealed {
            return invalid("sealed streams are not supported");
        }
        if self.allow_msg_ttl {
            return invalid("per-message TTL is not supported");
        }
        if self.mirror_direct {
            return invalid("mirror_direct is not supported");
        }

        // Subjects.
        if self.subjects.is_empty() {
            self.subjects = vec![self.name.clone()];
        }
        for (i, s) in self.subjects.iter().enumerate() {
            if subject::check(s).is_err() {
                return invalid(format!("invalid subject {s}"));
            }
            if overlaps(s, API_SUBJECTS) {
                return invalid("subjects overlap with the JetStream API");
            }
            if self.subjects[..i].contains(s) {
                return invalid(format!("duplicate subject {s}"));
            }
        }

        // Limits: 0 (a client's "unset") and anything below -1 mean unlimited.
        for limit in [
            &mut self.max_consumers,
            &mut self.max_msgs,
            &mut self.max_bytes,
            &mut self.max_msgs_per_subject,
            &mut self.max_msg_size,
        ] {
            if *limit == 0 || *limit < -1 {
                *limit = -1;
            }
        }

        // Durations.
        if self.max_age != 0 && self.max_age < MIN_DURATION {
            return invalid("max age needs to be at least 100ms");
        }
        if self.duplicate_window == 0 {
            self.duplicate_window = match self.max_age {
                0 => DEFAULT_DUPLICATE_WINDOW,
                age => age.min(DEFAULT_DUPLICATE_WINDOW),
            };
        }
        if self.duplicate_window < MIN_DURATION {
            return invalid("duplicate window needs to be at least 100ms");
        }
        if self.max_age != 0 && self.duplicate_window > self.max_age {
            return invalid("duplicate window can not be larger than max age");
        }

        match self.num_replicas {
            0 => self.num_replicas = 1,
            1 => {}
            n if n < 0 => return invalid("replicas must be at least 1"),
            _ => return Err(ApiError::replicas_unsupported()),
        }

        // Go's `omitempty` fields: an empty value is the same as none.
        self.description = self.description.filter(|d| !d.is_empty());
        self.first_seq = self.first_seq.filter(|&n| n != 0);
        self.metadata = self.metadata.filter(|m| !m.is_empty());
        let limits = &mut self.consumer_limits;
        limits.inactive_threshold = limits.inactive_threshold.filter(|&t| t != 0);
        limits.max_ack_pending = limits.max_ack_pending.filter(|&n| n > 0);
        Ok(self)
    }
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
            first_ts: ZERO_TIME.to_owned(),
            last_seq: 0,
            last_ts: ZERO_TIME.to_owned(),
            consumer_count: 0,
            num_deleted: 0,
        }
    }
}

/// The reply to stream create, update, info and the items of a stream list (3.4).
#[derive(Debug, Clone, Serialize)]
pub struct StreamInfo {
    /// The normalized configuration.
    pub config: StreamConfig,
    /// When the stream was created (RFC 3339).
    pub created: String,
    /// What the stream holds.
    pub state: StreamState,
    /// `{"leader": <server>}` on STREAM.INFO; left out elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Value>,
    /// When this reply was made (RFC 3339).
    pub ts: String,
    /// On create: whether this request made the stream (false when it already existed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub did_create: Option<bool>,
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

// ---------------------------------------------------------------------------------------------
// Consumers
// ---------------------------------------------------------------------------------------------

/// A consumer's configuration (`ConsumerConfig`, JETSTREAM-WIRE 5.2 and 5.3).
///
/// Deserializing is lenient (nulls and unknown fields are fine, `""` strings are absent);
/// [`normalize`](ConsumerConfig::normalize) applies the server defaults, after which
/// serializing gives the server's echo (5.4).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsumerConfig {
    /// Set for a durable consumer, which lives until deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "empty_none")]
    pub durable_name: Option<String>,
    /// The consumer's name; the durable name when that is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "empty_none")]
    pub name: Option<String>,
    /// Free text for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "empty_none")]
    pub description: Option<String>,
    /// Where in the stream delivery starts.
    #[serde(deserialize_with = "null_default")]
    pub deliver_policy: DeliverPolicy,
    /// First sequence, with [`DeliverPolicy::ByStartSequence`] only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "zero_none")]
    pub opt_start_seq: Option<u64>,
    /// First time (RFC 3339), with [`DeliverPolicy::ByStartTime`] only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "empty_none")]
    pub opt_start_time: Option<String>,
    /// How deliveries are acknowledged.
    #[serde(deserialize_with = "null_default")]
    pub ack_policy: AckPolicy,
    /// How long (ns) an unacked delivery waits before it is redelivered.
    #[serde(deserialize_with = "null_default")]
    pub ack_wait: u64,
    /// Most deliveries of one message; -1 = unlimited.
    #[serde(deserialize_with = "null_default")]
    pub max_deliver: i64,
    /// Successive redelivery delays (ns); the first one replaces `ack_wait`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "null_default")]
    pub backoff: Vec<u64>,
    /// The one subject pattern to deliver.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "empty_none")]
    pub filter_subject: Option<String>,
    /// Several subject patterns to deliver (exclusive with `filter_subject`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "null_default")]
    pub filter_subjects: Vec<String>,
    /// How fast stored messages are replayed.
    #[serde(deserialize_with = "null_default")]
    pub replay_policy: ReplayPolicy,
    /// Percentage of acks to sample for observability, e.g. `"100%"` (kept, not acted on).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "empty_none")]
    pub sample_freq: Option<String>,
    /// Most pull requests queued at once.
    #[serde(deserialize_with = "null_default")]
    pub max_waiting: i64,
    /// Most deliveries awaiting an ack; -1 = unlimited.
    #[serde(deserialize_with = "null_default")]
    pub max_ack_pending: i64,
    /// Deliver headers only, without payloads.
    #[serde(skip_serializing_if = "is_false")]
    #[serde(deserialize_with = "null_default")]
    pub headers_only: bool,
    /// Largest `batch` a pull request may ask for; 0 = no limit.
    #[serde(skip_serializing_if = "is_zero")]
    #[serde(deserialize_with = "null_default")]
    pub max_batch: i64,
    /// Largest `max_bytes` a pull request may ask for; 0 = no limit.
    #[serde(skip_serializing_if = "is_zero")]
    #[serde(deserialize_with = "null_default")]
    pub max_bytes: i64,
    /// Longest `expires` (ns) a pull request may ask for; 0 = no limit.
    #[serde(skip_serializing_if = "is_zero")]
    #[serde(deserialize_with = "null_default")]
    pub max_expires: u64,
    /// Push consumers only (refused by herald).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "empty_none")]
    pub deliver_subject: Option<String>,
    /// Push consumers only (refused by herald).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "empty_none")]
    pub deliver_group: Option<String>,
    /// Push consumers only; must stay 0.
    #[serde(skip_serializing_if = "is_zero")]
    #[serde(deserialize_with = "null_default")]
    pub idle_heartbeat: u64,
    /// Push consumers only; must stay false.
    #[serde(skip_serializing_if = "is_false")]
    #[serde(deserialize_with = "null_default")]
    pub flow_control: bool,
    /// How long (ns) an ephemeral consumer may go without pulls before it is deleted.
    #[serde(skip_serializing_if = "is_zero")]
    #[serde(deserialize_with = "null_default")]
    pub inactive_threshold: u64,
    /// Copies kept in a cluster; 0 = the stream's.
    #[serde(deserialize_with = "null_default")]
    pub num_replicas: i64,
    /// Keep the consumer's state in memory even on a file stream.
    #[serde(skip_serializing_if = "is_false")]
    #[serde(deserialize_with = "null_default")]
    pub mem_storage: bool,
    /// Free key/value pairs for applications.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

impl ConsumerConfig {
    /// A durable pull consumer `name` with explicit acks, from the start of the stream.
    pub fn durable(name: &str) -> ConsumerConfig {
        ConsumerConfig {
            durable_name: Some(name.to_owned()),
            ack_policy: AckPolicy::Explicit,
            ..ConsumerConfig::default()
        }
    }

    /// An ephemeral pull consumer with explicit acks (deleted after a few idle seconds).
    pub fn ephemeral() -> ConsumerConfig {
        ConsumerConfig {
            ack_policy: AckPolicy::Explicit,
            ..ConsumerConfig::default()
        }
    }

    /// Server defaults (5.3) and validation against the stream's config.
    ///
    /// `stream` should be normalized. Refuses push consumers and the features herald does not
    /// implement; fills in `name`, `ack_wait`, `max_deliver`, `max_waiting`,
    /// `max_ack_pending` and (for ephemerals) `inactive_threshold`. Idempotent.
    pub fn normalize(mut self, stream: &StreamConfig) -> Result<ConsumerConfig, ApiError> {
        // Pull only.
        if self.deliver_subject.is_some() || self.deliver_group.is_some() {
            return Err(ApiError::bad_request(
                "push consumers are not supported; use a pull consumer",
            ));
        }
        if self.idle_heartbeat > 0 {
            return Err(ApiError::new(
                400,
                10088,
                "consumer idle heartbeat requires a push based consumer",
            ));
        }
        if self.flow_control {
            return Err(ApiError::bad_request(
                "flow control requires a push based consumer",
            ));
        }

        // Names.
        if let (Some(name), Some(durable)) = (&self.name, &self.durable_name)
            && name != durable
        {
            return Err(ApiError::name_durable_mismatch());
        }
        for name in [&self.name, &self.durable_name].into_iter().flatten() {
            if !valid_name(name) {
                return Err(ApiError::new(
                    400,
                    10103,
                    format!(
                        "invalid consumer name {name}: it must be 1 to {MAX_NAME_LEN} bytes \
                         without whitespace, '.', '*', '>' or path separators"
                    ),
                ));
            }
        }
        if self.name.is_none() {
            self.name = self.durable_name.clone();
        }
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.len() > MAX_DESCRIPTION_LEN)
        {
            return Err(ApiError::bad_request(format!(
                "consumer description is longer than {MAX_DESCRIPTION_LEN} bytes"
            )));
        }

        // Where delivery starts.
        let start_error = |text: &str| ApiError::new(400, 10094, text);
        match self.deliver_policy {
            DeliverPolicy::ByStartSequence => {
                if self.opt_start_seq.is_none() {
                    return Err(start_error(
                        "deliver policy by_start_sequence requires opt_start_seq",
                    ));
                }
                if self.opt_start_time.is_some() {
                    return Err(start_error(
                        "opt_start_time is not allowed with deliver policy by_start_sequence",
                    ));
                }
            }
            DeliverPolicy::ByStartTime => {
                if self.opt_start_seq.is_some() {
                    return Err(start_error(
                        "opt_start_seq is not allowed with deliver policy by_start_time",
                    ));
                }
                let Some(time) = &self.opt_start_time else {
                    return Err(start_error(
                        "deliver policy by_start_time requires opt_start_time",
                    ));
                };
                let Some(ns) = parse_rfc3339(time) else {
                    return Err(start_error("opt_start_time is not a valid RFC 3339 time"));
                };
                // Always `Z`: nats-py cannot read a negative offset back.
                self.opt_start_time = Some(rfc3339(ns));
            }
            DeliverPolicy::LastPerSubject => {
                return Err(ApiError::bad_request(
                    "deliver policy last_per_subject is not supported",
                ));
            }
            DeliverPolicy::All | DeliverPolicy::Last | DeliverPolicy::New => {
                if self.opt_start_seq.is_some() || self.opt_start_time.is_some() {
                    return Err(start_error(
                        "opt_start_seq and opt_start_time need deliver policy by_start_sequence \
                         or by_start_time",
                    ));
                }
            }
        }
        if self.replay_policy == ReplayPolicy::Original {
            return Err(ApiError::bad_request(
                "replay policy original is not supported",
            ));
        }

        // Acks and redelivery.
        if self.max_deliver == 0 || self.max_deliver < -1 {
            self.max_deliver = -1;
        }
        if let Some(&first) = self.backoff.first() {
            self.ack_wait = first;
            let allowed =
                usize::try_from(self.max_deliver).map_or(true, |n| n > self.backoff.len());
            if !allowed {
                return Err(ApiError::new(
                    400,
                    10116,
                    "max deliver is required to be > length of backoff values",
                ));
            }
        }
        if self.ack_wait == 0 && self.ack_policy != AckPolicy::None {
            self.ack_wait = DEFAULT_ACK_WAIT;
        }
        if self.max_ack_pending < -1 {
            self.max_ack_pending = -1;
        }
        if self.ack_policy == AckPolicy::None {
            if self.max_ack_pending == 0 {
                self.max_ack_pending = -1;
            }
        } else {
            if self.max_ack_pending == 0 {
                self.max_ack_pending = DEFAULT_MAX_ACK_PENDING;
            }
            if let Some(cap) = stream.consumer_limits.max_ack_pending.filter(|&n| n > 0)
                && (self.max_ack_pending == -1 || self.max_ack_pending > cap)
            {
                self.max_ack_pending = cap;
            }
        }

        // Pull request limits.
        match self.max_waiting {
            0 => self.max_waiting = DEFAULT_MAX_WAITING,
            n if n < 0 => return Err(ApiError::bad_request("max_waiting can not be negative")),
            _ => {}
        }
        if self.max_batch < 0 {
            return Err(ApiError::bad_request("max_batch can not be negative"));
        }
        if self.max_bytes < 0 {
            return Err(ApiError::bad_request("max_bytes can not be negative"));
        }
        if self.max_expires != 0 && self.max_expires < MS {
            return Err(ApiError::bad_request(
                "max_expires needs to be at least 1ms",
            ));
        }
        if self.inactive_threshold == 0 && !self.is_durable() {
            self.inactive_threshold = stream
                .consumer_limits
                .inactive_threshold
                .filter(|&t| t != 0)
                .unwrap_or(DEFAULT_INACTIVE_THRESHOLD);
        }

        // Filters.
        if self.filter_subject.is_some() && !self.filter_subjects.is_empty() {
            return Err(ApiError::new(
                400,
                10136,
                "consumer cannot have both filter_subject and filter_subjects specified",
            ));
        }
        let default_subjects = [stream.name.clone()];
        let stream_subjects = if stream.subjects.is_empty() {
            &default_subjects[..]
        } else {
            &stream.subjects[..]
        };
        let filters = self.filters();
        for (i, filter) in filters.iter().enumerate() {
            if subject::check(filter).is_err() {
                return Err(ApiError::bad_request(format!(
                    "invalid filter subject {filter}"
                )));
            }
            if !stream_subjects.iter().any(|s| overlaps(s, filter)) {
                return Err(ApiError::new(
                    400,
                    10093,
                    "consumer filter subject is not a valid subset of the interest subjects",
                ));
            }
            if filters[..i].iter().any(|earlier| overlaps(earlier, filter)) {
                return Err(ApiError::new(
                    400,
                    10138,
                    "consumer subject filters cannot overlap",
                ));
            }
        }

        match self.num_replicas {
            n if n > 1 => return Err(ApiError::replicas_unsupported()),
            n if n < 0 => return Err(ApiError::bad_request("num_replicas can not be negative")),
            _ => {}
        }
        self.description = self.description.filter(|d| !d.is_empty());
        self.metadata = self.metadata.filter(|m| !m.is_empty());
        Ok(self)
    }

    /// Whether `self` (existing) may be updated in place to `new` (both normalized); the 10012
    /// errors of 5.2.
    pub fn check_update(&self, new: &ConsumerConfig) -> Result<(), ApiError> {
        let checks: [(bool, &str); 11] = [
            (
                self.deliver_subject.is_none() && new.deliver_subject.is_some(),
                "can not update pull consumer to push based",
            ),
            (
                self.deliver_policy != new.deliver_policy,
                "deliver policy can not be updated",
            ),
            (
                self.opt_start_seq != new.opt_start_seq,
                "start sequence can not be updated",
            ),
            (
                self.opt_start_time != new.opt_start_time,
                "start time can not be updated",
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
                self.mem_storage != new.mem_storage,
                "storage type can not be updated",
            ),
            (
                self.idle_heartbeat != new.idle_heartbeat,
                "heart beats can not be updated",
            ),
            (
                self.flow_control != new.flow_control,
                "flow control can not be updated",
            ),
            (
                self.max_waiting != new.max_waiting,
                "max waiting can not be updated",
            ),
            (
                self.durable_name != new.durable_name,
                "durable name can not be updated",
            ),
        ];
        match checks.iter().find(|(differs, _)| *differs) {
            Some((_, reason)) => Err(ApiError::consumer_update(*reason)),
            None => Ok(()),
        }
    }

    /// The effective filter patterns (filter_subject or filter_subjects; empty = everything).
    pub fn filters(&self) -> Vec<String> {
        match &self.filter_subject {
            Some(filter) => vec![filter.clone()],
            None => self.filter_subjects.clone(),
        }
    }

    /// True for a durable consumer (durable_name set).
    pub fn is_durable(&self) -> bool {
        self.durable_name.is_some()
    }
}

/// A consumer position: `delivered` and `ack_floor` in [`ConsumerInfo`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceInfo {
    /// Consumer sequence (counts deliveries, redeliveries included).
    pub consumer_seq: u64,
    /// Stream sequence of the message.
    pub stream_seq: u64,
    /// When this last moved (RFC 3339); left out when never.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_active: Option<String>,
}

/// The reply to consumer create and info, and the items of a consumer list (5.4).
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerInfo {
    /// The consumer's stream.
    pub stream_name: String,
    /// The consumer's name.
    pub name: String,
    /// When it was created (RFC 3339).
    pub created: String,
    /// Its normalized configuration.
    pub config: ConsumerConfig,
    /// The last message handed out.
    pub delivered: SequenceInfo,
    /// Everything at or below this is acknowledged.
    pub ack_floor: SequenceInfo,
    /// Delivered and not yet acknowledged.
    pub num_ack_pending: usize,
    /// Delivered more than once and still pending.
    pub num_redelivered: usize,
    /// Queued pull requests.
    pub num_waiting: usize,
    /// Matching messages not delivered yet.
    pub num_pending: u64,
    /// When this reply was made (RFC 3339).
    pub ts: String,
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// A JetStream API error: the `error` object of a reply (1.4), with exactly these three keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{description} (code {code}, err_code {err_code})")]
pub struct ApiError {
    /// HTTP-like status: 400, 404, 500 or 503. Clients branch on it.
    pub code: u16,
    /// The JetStream error code (section 10). Clients match on it.
    pub err_code: u16,
    /// What went wrong, for people.
    #[serde(default)]
    pub description: String,
}

impl ApiError {
    /// An error with any codes.
    pub fn new(code: u16, err_code: u16, description: impl Into<String>) -> Self {
        ApiError {
            code,
            err_code,
            description: description.into(),
        }
    }

    /// 400/10003, the generic bad request; an empty `desc` reads "bad request".
    pub fn bad_request(desc: impl Into<String>) -> Self {
        let desc = desc.into();
        let desc = if desc.is_empty() {
            "bad request".to_owned()
        } else {
            desc
        };
        Self::new(400, 10003, desc)
    }

    /// 400/10025: the request body is not the JSON expected.
    pub fn invalid_json(err: impl Display) -> Self {
        Self::new(400, 10025, format!("invalid JSON: {err}"))
    }

    /// 400/10038: the call takes no request body.
    pub fn not_empty() -> Self {
        Self::new(400, 10038, "expected an empty request payload")
    }

    /// 404/10059.
    pub fn stream_not_found() -> Self {
        Self::new(404, 10059, "stream not found")
    }

    /// 404/10014.
    pub fn consumer_not_found() -> Self {
        Self::new(404, 10014, "consumer not found")
    }

    /// 400/10056: the name in the subject and the one in the body differ.
    pub fn stream_name_mismatch() -> Self {
        Self::new(400, 10056, "stream name in subject does not match request")
    }

    /// 400/10058: create of an existing stream with another configuration.
    pub fn stream_exists() -> Self {
        Self::new(
            400,
            10058,
            "stream name already in use with a different configuration",
        )
    }

    /// 400/10065: the subjects collide with another stream's.
    pub fn subjects_overlap() -> Self {
        Self::new(400, 10065, "subjects overlap with an existing stream")
    }

    /// 500/10052: an invalid stream configuration; `desc` says why.
    pub fn invalid_stream_config(desc: impl Into<String>) -> Self {
        Self::new(500, 10052, desc)
    }

    /// 500/10049: stream create failed.
    pub fn stream_create(desc: impl Into<String>) -> Self {
        Self::new(500, 10049, desc)
    }

    /// 500/10069: stream update failed.
    pub fn stream_update(desc: impl Into<String>) -> Self {
        Self::new(500, 10069, desc)
    }

    /// 500/10110: stream purge failed.
    pub fn stream_purge(desc: impl Into<String>) -> Self {
        Self::new(500, 10110, desc)
    }

    /// 500/10012: consumer create failed.
    pub fn consumer_create(desc: impl Into<String>) -> Self {
        Self::new(500, 10012, desc)
    }

    /// 500/10012: the consumer update changes something that can not change.
    pub fn consumer_update(desc: impl Into<String>) -> Self {
        Self::new(500, 10012, desc)
    }

    /// 400/10148: `action: "create"` for an existing consumer with another configuration.
    pub fn consumer_exists() -> Self {
        Self::new(400, 10148, "consumer already exists")
    }

    /// 400/10149: `action: "update"` for a consumer that does not exist.
    pub fn consumer_missing() -> Self {
        Self::new(400, 10149, "consumer does not exist")
    }

    /// 400/10017: the consumer name in the subject is not the body's durable name.
    pub fn durable_name_mismatch() -> Self {
        Self::new(
            400,
            10017,
            "consumer name in subject does not match durable name in request",
        )
    }

    /// 400/10018: DURABLE.CREATE without a durable name.
    pub fn durable_required() -> Self {
        Self::new(
            400,
            10018,
            "consumer expected to be durable but a durable name was not set",
        )
    }

    /// 400/10020: legacy ephemeral create with a durable name.
    pub fn ephemeral_with_durable() -> Self {
        Self::new(
            400,
            10020,
            "consumer expected to be ephemeral but a durable name was set in request",
        )
    }

    /// 400/10132: `name` and `durable_name` both set and different.
    pub fn name_durable_mismatch() -> Self {
        Self::new(
            400,
            10132,
            "consumer name and durable name have to be equal if both are set",
        )
    }

    /// 400/10131: the filter in the create subject is not the body's `filter_subject`.
    pub fn filter_mismatch() -> Self {
        Self::new(
            400,
            10131,
            "consumer create request did not match filtered subject from create subject",
        )
    }

    /// 400/10137: a filter in the create subject while the body has `filter_subjects`.
    pub fn multiple_filters() -> Self {
        Self::new(
            400,
            10137,
            "consumer with multiple subject filters cannot use subject based API",
        )
    }

    /// 400/10026: the stream has `max_consumers` consumers already.
    pub fn max_consumers() -> Self {
        Self::new(400, 10026, "maximum consumers limit reached")
    }

    /// 404/10037: MSG.GET found nothing.
    pub fn no_message() -> Self {
        Self::new(404, 10037, "no message found")
    }

    /// 400/10054: the payload is over `max_msg_size`.
    pub fn msg_too_big() -> Self {
        Self::new(400, 10054, "message size exceeds maximum allowed")
    }

    /// 503/10077: the store refused the message, e.g. "maximum messages exceeded".
    pub fn store_failed(desc: impl Into<String>) -> Self {
        Self::new(503, 10077, desc)
    }

    /// 400/10060: `Nats-Expected-Stream` names another stream.
    pub fn expected_stream() -> Self {
        Self::new(400, 10060, "expected stream does not match")
    }

    /// 400/10071: `Nats-Expected-Last-(Subject-)Sequence` is not `n`, the actual last one.
    pub fn wrong_last_seq(n: u64) -> Self {
        Self::new(400, 10071, format!("wrong last sequence: {n}"))
    }

    /// 400/10070: `Nats-Expected-Last-Msg-Id` is not `id`, the actual last one.
    pub fn wrong_last_msg_id(id: &str) -> Self {
        Self::new(400, 10070, format!("wrong last msg ID: {id}"))
    }

    /// 400/10166: a `Nats-TTL` header on a stream without `allow_msg_ttl`.
    pub fn msg_ttl_disabled() -> Self {
        Self::new(400, 10166, "per-message TTL is disabled")
    }

    /// 500/10074: more than one replica on a single server.
    fn replicas_unsupported() -> Self {
        Self::new(
            500,
            10074,
            "replicas > 1 not supported in non-clustered mode",
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Envelopes and request decoding
// ---------------------------------------------------------------------------------------------

/// `{"type":"io.nats.jetstream.api.v1.<kind>_response"` without the closing brace.
fn type_prefix(kind: &str) -> Vec<u8> {
    let name = format!("io.nats.jetstream.api.v1.{kind}_response");
    let mut out = b"{\"type\":".to_vec();
    // Serializing a string can not fail; `kind` is one of ours anyway.
    out.extend_from_slice(serde_json::to_string(&name).unwrap_or_default().as_bytes());
    out
}

/// A success reply: `body`'s JSON object with `"type":"io.nats.jetstream.api.v1.<kind>_response"`
/// put first (1.4).
///
/// `body` must serialize to a JSON object without a `type` key; anything else gives just the
/// type.
pub fn response<T: Serialize>(kind: &str, body: &T) -> Vec<u8> {
    let mut out = type_prefix(kind);
    match serde_json::to_vec(body) {
        Ok(json) if json.first() == Some(&b'{') => {
            let rest = &json[1..];
            if rest != b"}" {
                out.push(b',');
            }
            out.extend_from_slice(rest);
        }
        _ => out.push(b'}'),
    }
    out
}

/// An error reply: `{"type":"io.nats.jetstream.api.v1.<kind>_response","error":{...}}` (1.4).
pub fn error_response(kind: &str, err: &ApiError) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        error: &'a ApiError,
    }
    response(kind, &Body { error: err })
}

/// Whether a JSON value carries nothing: `null`, `[]` or `{}`.
fn is_empty_json(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        _ => false,
    }
}

/// Lenient request decoding: empty body, `null`, `[]`, `{}` all give T::default(); otherwise
/// serde_json, errors mapped to ApiError::invalid_json.
pub fn parse_request<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    let body = body.trim_ascii();
    if body.is_empty() {
        return Ok(T::default());
    }
    let value: Value = serde_json::from_slice(body).map_err(ApiError::invalid_json)?;
    if is_empty_json(&value) {
        return Ok(T::default());
    }
    serde_json::from_value(value).map_err(ApiError::invalid_json)
}

/// Empty-request check for STREAM.DELETE / CONSUMER.INFO / CONSUMER.DELETE: empty, `{}`,
/// `null`, `[]` are fine; an object with keys is [`ApiError::not_empty`]; anything that is not
/// JSON is ignored, like the real server does (1.3).
pub fn expect_empty(body: &[u8]) -> Result<(), ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) if !fields.is_empty() => Err(ApiError::not_empty()),
        _ => Ok(()),
    }
}

/// The body of `CONSUMER.CREATE` / `CONSUMER.DURABLE.CREATE` (5.2).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CreateConsumerRequest {
    /// Must equal the stream token of the subject.
    #[serde(deserialize_with = "null_default")]
    pub stream_name: String,
    /// The requested configuration, not yet normalized.
    #[serde(deserialize_with = "null_default")]
    pub config: ConsumerConfig,
    /// `""` (create or update), `"create"` or `"update"`.
    #[serde(deserialize_with = "null_default")]
    pub action: String,
}

/// The body of `STREAM.PURGE` (3.5); all absent purges everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PurgeRequest {
    /// Purge only messages on subjects matching this pattern.
    #[serde(deserialize_with = "empty_none")]
    pub filter: Option<String>,
    /// Purge below this sequence (exclusive); 0 = absent.
    #[serde(deserialize_with = "zero_none")]
    pub seq: Option<u64>,
    /// Keep the newest this many messages; 0 = absent.
    #[serde(deserialize_with = "zero_none")]
    pub keep: Option<u64>,
}

/// The body of the paged NAMES / LIST calls (3.6).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PagingRequest {
    /// Items to skip.
    #[serde(deserialize_with = "null_default")]
    pub offset: usize,
    /// STREAM.NAMES: only streams whose subjects overlap this pattern.
    #[serde(deserialize_with = "empty_none")]
    pub subject: Option<String>,
}

/// The body of `STREAM.MSG.GET` (3.1, 3.7).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct MsgGetRequest {
    /// The message with this sequence (or, with `next_by_subj`, the first at or after it).
    pub seq: Option<u64>,
    /// The last message on this subject.
    #[serde(deserialize_with = "empty_none")]
    pub last_by_subj: Option<String>,
    /// The first message on this subject at or after `seq`.
    #[serde(deserialize_with = "empty_none")]
    pub next_by_subj: Option<String>,
}

/// A pull request, the body of `CONSUMER.MSG.NEXT` (6.1); read it with [`parse_pull`].
///
/// Priority-group fields (`group`, `min_pending`, ...) are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PullRequest {
    /// Messages wanted; at least 1 after [`parse_pull`].
    #[serde(deserialize_with = "null_default")]
    pub batch: i64,
    /// Lifetime of the request in ns; 0 = no expiry.
    #[serde(deserialize_with = "null_default")]
    pub expires: u64,
    /// Answer at once when there is nothing to deliver (6.2).
    #[serde(deserialize_with = "null_default")]
    pub no_wait: bool,
    /// Byte budget for the whole batch; 0 = none.
    #[serde(deserialize_with = "null_default")]
    pub max_bytes: i64,
    /// Send `100 Idle Heartbeat` after this long (ns) without a delivery; 0 = never.
    #[serde(deserialize_with = "null_default")]
    pub idle_heartbeat: u64,
}

/// Decodes a pull request: an empty body is batch 1, a bare integer `N` is batch `N`, anything
/// else is a JSON [`PullRequest`] (nulls allowed). A batch of 0 or less becomes 1 (6.1).
pub fn parse_pull(body: &[u8]) -> Result<PullRequest, ApiError> {
    let body = body.trim_ascii();
    let bare = std::str::from_utf8(body)
        .ok()
        .and_then(|s| s.parse::<i64>().ok());
    let mut request = match bare {
        Some(batch) => PullRequest {
            batch,
            ..PullRequest::default()
        },
        None => parse_request::<PullRequest>(body)?,
    };
    if request.batch <= 0 {
        request.batch = 1;
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ASYNC_NATS_STREAM: &str = r#"{"name":"ORDERS","max_bytes":0,"max_msgs":0,
        "max_msgs_per_subject":0,"discard":"old","subjects":["orders.>"],"retention":"limits",
        "max_consumers":0,"max_age":0,"storage":"file","num_replicas":0,"consumer_limits":null}"#;

    const NATS_PY_STREAM: &str = r#"{"name":"ORDERS","subjects":["orders.>"],"discard":"old",
        "discard_new_per_subject":false,"max_msgs_per_subject":-1,"max_msg_size":-1,
        "no_ack":false,"duplicate_window":0,"sealed":false,"deny_delete":false,
        "deny_purge":false,"allow_rollup_hdrs":false,"max_age":0}"#;

    /// The `config` of the STREAM.CREATE reply in 3.4.
    fn stream_echo() -> Value {
        json!({"name":"ORDERS","subjects":["orders.>"],"retention":"limits","max_consumers":-1,
            "max_msgs":-1,"max_bytes":-1,"max_age":0,"max_msgs_per_subject":-1,"max_msg_size":-1,
            "discard":"old","storage":"file","num_replicas":1,"duplicate_window":120000000000u64,
            "compression":"none","allow_direct":false,"mirror_direct":false,"sealed":false,
            "deny_delete":false,"deny_purge":false,"allow_rollup_hdrs":false,
            "consumer_limits":{},"allow_msg_ttl":false})
    }

    const ASYNC_NATS_CONSUMER: &str = r#"{"action":"","config":{"ack_policy":"explicit",
        "deliver_policy":"all","durable_name":"processor","filter_subject":"orders.new",
        "replay_policy":"instant"},"stream_name":"ORDERS"}"#;

    const NATS_PY_CONSUMER: &str = r#"{"stream_name":"ORDERS","config":{"name":"processor",
        "durable_name":"processor","deliver_policy":"all","ack_policy":"explicit",
        "filter_subject":"orders.new","replay_policy":"instant","ack_wait":0,
        "idle_heartbeat":0,"inactive_threshold":0}}"#;

    /// The `config` of the CONSUMER.CREATE reply in 5.4.
    fn consumer_echo() -> Value {
        json!({"durable_name":"processor","name":"processor","deliver_policy":"all",
            "ack_policy":"explicit","ack_wait":30000000000u64,"max_deliver":-1,
            "filter_subject":"orders.new","replay_policy":"instant","max_waiting":512,
            "max_ack_pending":1000,"num_replicas":0})
    }

    fn stream(body: &str) -> Result<StreamConfig, ApiError> {
        parse_request::<StreamConfig>(body.as_bytes())?.normalize()
    }

    fn orders() -> StreamConfig {
        stream(ASYNC_NATS_STREAM).unwrap()
    }

    fn stream_err(body: Value) -> ApiError {
        stream(&body.to_string()).unwrap_err()
    }

    fn consumer(config: Value) -> Result<ConsumerConfig, ApiError> {
        serde_json::from_value::<ConsumerConfig>(config)
            .map_err(ApiError::invalid_json)?
            .normalize(&orders())
    }

    fn consumer_err(config: Value) -> ApiError {
        consumer(config).unwrap_err()
    }

    fn to_json<T: Serialize>(v: &T) -> Value {
        serde_json::to_value(v).unwrap()
    }

    // --- streams ---

    #[test]
    fn client_stream_bodies_normalize_to_the_server_echo() {
        for body in [ASYNC_NATS_STREAM, NATS_PY_STREAM] {
            let config = stream(body).unwrap();
            let got = to_json(&config);
            let want = stream_echo();
            for (key, value) in want.as_object().unwrap() {
                assert_eq!(got.get(key), Some(value), "field {key} for {body}");
            }
            assert_eq!(got, want, "whole echo for {body}");
        }
    }

    #[test]
    fn stream_normalize_is_idempotent_and_survives_json() {
        let config = orders();
        assert_eq!(config.clone().normalize().unwrap(), config);
        let back: StreamConfig = serde_json::from_value(to_json(&config)).unwrap();
        assert_eq!(back.normalize().unwrap(), config);
    }

    #[test]
    fn stream_defaults() {
        let config = stream(r#"{"name":"EVENTS"}"#).unwrap();
        assert_eq!(config.subjects, ["EVENTS"]);
        assert_eq!(config.num_replicas, 1);
        assert_eq!(config.compression, "none");
        assert_eq!(
            (config.max_msgs, config.max_bytes, config.max_consumers),
            (-1, -1, -1)
        );
        let config = stream(r#"{"name":"E","max_msgs":-7,"max_bytes":1024}"#).unwrap();
        assert_eq!((config.max_msgs, config.max_bytes), (-1, 1024));
        // A max_age below two minutes is also the duplicate window.
        let config = stream(r#"{"name":"E","max_age":60000000000}"#).unwrap();
        assert_eq!(config.duplicate_window, 60 * SEC);
        let config = stream(r#"{"name":"E","max_age":600000000000}"#).unwrap();
        assert_eq!(config.duplicate_window, DEFAULT_DUPLICATE_WINDOW);
        // Empty optional values are the same as none.
        let config = stream(
            r#"{"name":"E","description":"","metadata":{},"first_seq":0,
                "consumer_limits":{"inactive_threshold":0,"max_ack_pending":0}}"#,
        )
        .unwrap();
        assert_eq!(config, stream(r#"{"name":"E"}"#).unwrap());
        assert_eq!(to_json(&config)["consumer_limits"], json!({}));
        // Memory storage and the kept options are accepted as they are.
        let config = stream(
            r#"{"name":"E","storage":"memory","allow_direct":true,"deny_delete":true,
                "consumer_limits":{"inactive_threshold":1000000000,"max_ack_pending":10},
                "metadata":{"k":"v"},"description":"d","first_seq":5}"#,
        )
        .unwrap();
        assert_eq!(config.storage, Storage::Memory);
        assert!(config.allow_direct && config.deny_delete);
        assert_eq!(config.consumer_limits.inactive_threshold, Some(SEC));
        assert_eq!(config.consumer_limits.max_ack_pending, Some(10));
        assert_eq!(config.first_seq, Some(5));
        let echo = to_json(&config);
        assert_eq!(echo["metadata"], json!({"k":"v"}));
        assert_eq!(echo["description"], "d");
        assert_eq!(echo["first_seq"], 5);
    }

    #[test]
    fn stream_names_are_checked() {
        let long = "N".repeat(256);
        for name in [
            "", "a.b", "a*", "a>", "a b", "a\tb", "a/b", "a\\b", "a\u{1}b", &long,
        ] {
            let err = stream_err(json!({ "name": name }));
            assert_eq!(
                err,
                ApiError::invalid_stream_config("invalid stream name"),
                "{name:?}"
            );
        }
        assert!(stream(&json!({ "name": "N".repeat(255) }).to_string()).is_ok());
        assert!(stream(r#"{"name":"KV_my-bucket_1"}"#).is_ok());
    }

    #[test]
    fn stream_subjects_are_checked() {
        let err = stream_err(json!({"name":"S","subjects":["a..b"]}));
        assert_eq!((err.code, err.err_code), (500, 10052));
        assert_eq!(err.description, "invalid subject a..b");
        for subjects in [
            json!([">"]),
            json!(["$JS.>"]),
            json!(["$JS.API.STREAM.INFO.X"]),
        ] {
            let err = stream_err(json!({"name":"S","subjects":subjects}));
            assert_eq!(err.description, "subjects overlap with the JetStream API");
        }
        let err = stream_err(json!({"name":"S","subjects":["a.*","a.*"]}));
        assert_eq!(err.err_code, 10052);
        assert!(stream(r#"{"name":"S","subjects":["a.*","b.>","$KV.x.>"]}"#).is_ok());
    }

    #[test]
    fn stream_durations_are_checked() {
        let err = stream_err(json!({"name":"S","max_age":50_000_000}));
        assert_eq!((err.code, err.err_code), (500, 10052));
        let err = stream_err(json!({"name":"S","duplicate_window":50_000_000}));
        assert_eq!(err.err_code, 10052);
        let err = stream_err(json!({"name":"S","max_age":SEC,"duplicate_window":2 * SEC}));
        assert_eq!(err.err_code, 10052);
        let ok = stream(&json!({"name":"S","max_age":2 * SEC,"duplicate_window":SEC}).to_string());
        assert_eq!(ok.unwrap().duplicate_window, SEC);
    }

    #[test]
    fn stream_unsupported_features_are_refused() {
        let err = stream_err(json!({"name":"S","num_replicas":3}));
        assert_eq!((err.code, err.err_code), (500, 10074));
        assert_eq!(
            err.description,
            "replicas > 1 not supported in non-clustered mode"
        );
        let cases = [
            (json!({"compression":"s2"}), "compression is not supported"),
            (
                json!({"retention":"interest"}),
                "retention interest is not supported",
            ),
            (
                json!({"retention":"workqueue"}),
                "retention workqueue is not supported",
            ),
            (
                json!({"max_msgs_per_subject":5}),
                "max_msgs_per_subject is not supported",
            ),
            (
                json!({"discard_new_per_subject":true}),
                "discard_new_per_subject is not supported",
            ),
            (json!({"sealed":true}), "sealed streams are not supported"),
            (
                json!({"allow_msg_ttl":true}),
                "per-message TTL is not supported",
            ),
            (json!({"mirror":{"name":"O"}}), "mirror is not supported"),
            (
                json!({"sources":[{"name":"O"}]}),
                "sources is not supported",
            ),
            (
                json!({"republish":{"src":">","dest":"x.>"}}),
                "republish is not supported",
            ),
            (
                json!({"placement":{"cluster":"c"}}),
                "placement is not supported",
            ),
            (
                json!({"subject_transform":{"src":"a","dest":"b"}}),
                "subject_transform is not supported",
            ),
        ];
        for (mut body, want) in cases {
            body["name"] = json!("S");
            let err = stream_err(body);
            assert_eq!(err, ApiError::invalid_stream_config(want));
        }
        let config: StreamConfig =
            serde_json::from_str(r#"{"name":"S","mirror":{"name":"O"},"sources":null}"#).unwrap();
        assert_eq!(config.unsupported, ["mirror"]);
        assert!(to_json(&config).get("unsupported").is_none());
        // Unset values of unsupported fields are fine.
        let body = r#"{"name":"S","mirror":null,"sources":[],"placement":{"cluster":"","tags":[]},
            "republish":null,"subject_transform":null,"allow_atomic":false,"persist_mode":"default",
            "compression":"none","max_msgs_per_subject":-1}"#;
        let config = parse_request::<StreamConfig>(body.as_bytes()).unwrap();
        assert!(config.unsupported.is_empty());
        assert!(config.normalize().is_ok());
    }

    // --- consumers ---

    #[test]
    fn client_consumer_bodies_normalize_to_the_server_echo() {
        for body in [ASYNC_NATS_CONSUMER, NATS_PY_CONSUMER] {
            let request = parse_request::<CreateConsumerRequest>(body.as_bytes()).unwrap();
            assert_eq!(request.stream_name, "ORDERS");
            assert_eq!(request.action, "");
            let config = request.config.normalize(&orders()).unwrap();
            let got = to_json(&config);
            let want = consumer_echo();
            for (key, value) in want.as_object().unwrap() {
                assert_eq!(got.get(key), Some(value), "field {key} for {body}");
            }
            assert_eq!(got, want, "whole echo for {body}");
            assert!(config.is_durable());
            assert_eq!(config.filters(), ["orders.new"]);
        }
    }

    #[test]
    fn consumer_normalize_is_idempotent_and_survives_json() {
        let config = consumer(json!({"name":"eph","ack_policy":"explicit"})).unwrap();
        assert_eq!(config.clone().normalize(&orders()).unwrap(), config);
        let back: ConsumerConfig = serde_json::from_value(to_json(&config)).unwrap();
        assert_eq!(back.normalize(&orders()).unwrap(), config);
    }

    #[test]
    fn consumer_defaults() {
        // A named ephemeral (nats-py pull_subscribe without durable).
        let config = consumer(json!({"name":"eph","ack_policy":"explicit"})).unwrap();
        assert!(!config.is_durable());
        assert_eq!(config.inactive_threshold, DEFAULT_INACTIVE_THRESHOLD);
        assert_eq!(to_json(&config)["inactive_threshold"], json!(5 * SEC));
        assert!(config.filters().is_empty());
        // No ack policy means none (Go's zero value): no ack wait, unlimited ack pending.
        let config = consumer(json!({})).unwrap();
        assert_eq!(config.ack_policy, AckPolicy::None);
        assert_eq!((config.ack_wait, config.max_ack_pending), (0, -1));
        assert_eq!(config.name, None);
        assert_eq!(to_json(&config)["ack_policy"], "none");
        // The stream's consumer limits.
        let mut stream = orders();
        stream.consumer_limits = ConsumerLimits {
            inactive_threshold: Some(7 * SEC),
            max_ack_pending: Some(100),
        };
        let config: ConsumerConfig = serde_json::from_value(json!({"ack_policy":"all"})).unwrap();
        let config = config.normalize(&stream).unwrap();
        assert_eq!(
            (config.inactive_threshold, config.max_ack_pending),
            (7 * SEC, 100)
        );
        let config: ConsumerConfig =
            serde_json::from_value(json!({"ack_policy":"all","max_ack_pending":50})).unwrap();
        assert_eq!(config.normalize(&stream).unwrap().max_ack_pending, 50);
        // Explicit values stay.
        let config = consumer(json!({"durable_name":"d","ack_policy":"explicit",
            "ack_wait":SEC,"max_deliver":5,"max_waiting":10,"max_ack_pending":20,
            "deliver_policy":"new","max_batch":10,"max_expires":SEC,"headers_only":true}))
        .unwrap();
        assert_eq!(config.ack_wait, SEC);
        assert_eq!(
            (
                config.max_deliver,
                config.max_waiting,
                config.max_ack_pending
            ),
            (5, 10, 20)
        );
        assert_eq!(config.inactive_threshold, 0);
        let echo = to_json(&config);
        assert_eq!(echo["deliver_policy"], "new");
        assert_eq!(echo["max_batch"], 10);
        assert_eq!(echo["headers_only"], true);
    }

    #[test]
    fn consumer_start_policies() {
        let config = consumer(json!({"deliver_policy":"by_start_sequence","opt_start_seq":4}));
        assert_eq!(config.unwrap().opt_start_seq, Some(4));
        let config = consumer(json!({"deliver_policy":"by_start_time",
            "opt_start_time":"2025-03-01T10:16:00.5+01:00"}))
        .unwrap();
        assert_eq!(
            config.opt_start_time.as_deref(),
            Some("2025-03-01T09:16:00.5Z")
        );
        for body in [
            json!({"deliver_policy":"by_start_sequence"}),
            json!({"deliver_policy":"by_start_sequence","opt_start_seq":0}),
            json!({"deliver_policy":"by_start_time"}),
            json!({"deliver_policy":"by_start_time","opt_start_time":"yesterday"}),
            json!({"deliver_policy":"all","opt_start_seq":3}),
            json!({"deliver_policy":"last","opt_start_time":"2025-03-01T09:16:00Z"}),
        ] {
            let err = consumer_err(body.clone());
            assert_eq!((err.code, err.err_code), (400, 10094), "{body}");
        }
        for body in [
            json!({"deliver_policy":"last_per_subject"}),
            json!({"replay_policy":"original"}),
        ] {
            let err = consumer_err(body);
            assert_eq!((err.code, err.err_code), (400, 10003));
            assert!(err.description.ends_with("is not supported"));
        }
    }

    #[test]
    fn consumer_push_options_are_refused() {
        let err = consumer_err(json!({"deliver_subject":"push.here"}));
        assert_eq!(
            err,
            ApiError::bad_request("push consumers are not supported; use a pull consumer")
        );
        let err = consumer_err(json!({"idle_heartbeat":SEC}));
        assert_eq!((err.code, err.err_code), (400, 10088));
        let err = consumer_err(json!({"flow_control":true}));
        assert_eq!((err.code, err.err_code), (400, 10003));
        // nats-py's zeros are not push options.
        assert!(
            consumer(json!({"idle_heartbeat":0,"flow_control":false,"deliver_subject":""})).is_ok()
        );
    }

    #[test]
    fn consumer_backoff() {
        let config = consumer(json!({"ack_policy":"explicit","backoff":[SEC, 2 * SEC],
            "max_deliver":3}))
        .unwrap();
        assert_eq!(config.ack_wait, SEC);
        assert_eq!(to_json(&config)["backoff"], json!([SEC, 2 * SEC]));
        assert_eq!(consumer(json!({"backoff":[SEC]})).unwrap().max_deliver, -1);
        let err = consumer_err(json!({"backoff":[SEC, 2 * SEC],"max_deliver":2}));
        assert_eq!((err.code, err.err_code), (400, 10116));
    }

    #[test]
    fn consumer_names() {
        let err = consumer_err(json!({"name":"a","durable_name":"b"}));
        assert_eq!(err, ApiError::name_durable_mismatch());
        for name in ["a.b", "a*", "a b", "a/b"] {
            let err = consumer_err(json!({ "durable_name": name }));
            assert_eq!(err.code, 400, "{name}");
            let err = consumer_err(json!({ "name": name }));
            assert_eq!(err.code, 400, "{name}");
        }
        let config = consumer(json!({"durable_name":"d"})).unwrap();
        assert_eq!(config.name.as_deref(), Some("d"));
    }

    #[test]
    fn consumer_filters() {
        let err = consumer_err(json!({"filter_subject":"orders.a","filter_subjects":["orders.b"]}));
        assert_eq!((err.code, err.err_code), (400, 10136));
        let err = consumer_err(json!({"filter_subject":"orders..a"}));
        assert_eq!((err.code, err.err_code), (400, 10003));
        let err = consumer_err(json!({"filter_subject":"payments.a"}));
        assert_eq!((err.code, err.err_code), (400, 10093));
        let err = consumer_err(json!({"filter_subjects":["orders.*","orders.a"]}));
        assert_eq!((err.code, err.err_code), (400, 10138));
        let config = consumer(json!({"filter_subjects":["orders.a","orders.b.>"]})).unwrap();
        assert_eq!(config.filters(), ["orders.a", "orders.b.>"]);
        // A wider filter still overlaps the stream; "" is no filter.
        assert!(consumer(json!({"filter_subject":">"})).is_ok());
        assert_eq!(
            consumer(json!({"filter_subject":""}))
                .unwrap()
                .filter_subject,
            None
        );
        let err = consumer_err(json!({"num_replicas":3}));
        assert_eq!((err.code, err.err_code), (500, 10074));
    }

    #[test]
    fn consumer_updates() {
        let base = consumer(json!({"durable_name":"d","ack_policy":"explicit"})).unwrap();
        let same = consumer(json!({"durable_name":"d","ack_policy":"explicit"})).unwrap();
        assert_eq!(base.check_update(&same), Ok(()));
        // Mutable fields may change.
        let more = consumer(json!({"durable_name":"d","ack_policy":"explicit",
            "max_ack_pending":5,"description":"x","filter_subject":"orders.x","max_deliver":9}))
        .unwrap();
        assert_eq!(base.check_update(&more), Ok(()));
        let cases = [
            (
                json!({"deliver_policy":"new"}),
                "deliver policy can not be updated",
            ),
            (json!({"ack_policy":"all"}), "ack policy can not be updated"),
            (json!({"max_waiting":3}), "max waiting can not be updated"),
            (
                json!({"mem_storage":true}),
                "storage type can not be updated",
            ),
            (
                json!({"deliver_policy":"by_start_sequence","opt_start_seq":2}),
                "deliver policy can not be updated",
            ),
        ];
        for (change, want) in cases {
            let mut body = json!({"durable_name":"d","ack_policy":"explicit"});
            for (k, v) in change.as_object().unwrap() {
                body[k] = v.clone();
            }
            let new = consumer(body).unwrap();
            assert_eq!(
                base.check_update(&new),
                Err(ApiError::consumer_update(want))
            );
        }
        let a = consumer(json!({"deliver_policy":"by_start_sequence","opt_start_seq":2})).unwrap();
        let b = consumer(json!({"deliver_policy":"by_start_sequence","opt_start_seq":3})).unwrap();
        let err = a.check_update(&b).unwrap_err();
        assert_eq!((err.code, err.err_code), (500, 10012));
        assert_eq!(err.description, "start sequence can not be updated");
        let mut other = base.clone();
        other.replay_policy = ReplayPolicy::Original;
        assert_eq!(
            base.check_update(&other),
            Err(ApiError::consumer_update(
                "replay policy can not be updated"
            ))
        );
    }

    // --- scalars ---

    #[test]
    fn rfc3339_formats_like_go() {
        assert_eq!(rfc3339(0), "0001-01-01T00:00:00Z");
        assert_eq!(rfc3339(1), "1970-01-01T00:00:00.000000001Z");
        assert_eq!(rfc3339(SEC), "1970-01-01T00:00:01Z");
        // 2025-03-01 is day 20148 since the epoch: 55 years of which 14 leap, then 31 + 28 days.
        let day = (55 * 365 + 14 + 31 + 28) * 86_400;
        assert_eq!(day, 1_740_787_200);
        let ns = (day + 9 * 3600 + 16 * 60) * SEC + 123_456_789;
        assert_eq!(ns, 1_740_820_560_123_456_789);
        assert_eq!(rfc3339(ns), "2025-03-01T09:16:00.123456789Z");
        assert_eq!(
            rfc3339(ns - 123_456_789 + 100_000_000),
            "2025-03-01T09:16:00.1Z"
        );
        assert_eq!(
            rfc3339(ns - 123_456_789 + 482_113_000),
            "2025-03-01T09:16:00.482113Z"
        );
        assert_eq!(rfc3339(ns - 123_456_789), "2025-03-01T09:16:00Z");
        // Leap days and year ends.
        assert_eq!(rfc3339(1_709_164_800 * SEC), "2024-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_767_225_599 * SEC), "2025-12-31T23:59:59Z");
        assert_eq!(rfc3339(951_782_400 * SEC), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(u64::MAX), "2554-07-21T23:34:33.709551615Z");
    }

    #[test]
    fn rfc3339_round_trips() {
        let samples = [
            0,
            1,
            SEC,
            1_740_820_560_123_456_789,
            1_740_820_560_000_000_000,
            1_740_820_560_100_000_000,
            1_740_820_560_120_000_000,
            1_735_689_600_000_000_000, // 2025-01-01
            1_767_225_599_999_999_999, // 2025-12-31T23:59:59.999999999
            1_709_164_800_000_000_007,
            u64::MAX,
        ];
        for ns in samples {
            assert_eq!(
                parse_rfc3339(&rfc3339(ns)),
                Some(ns),
                "{ns} = {}",
                rfc3339(ns)
            );
        }
        // Every day boundary across a few years round-trips too.
        for day in 19_000..21_000u64 {
            let ns = day * 86_400 * SEC + 42;
            assert_eq!(parse_rfc3339(&rfc3339(ns)), Some(ns));
        }
    }

    #[test]
    fn parse_rfc3339_accepts_offsets_and_rejects_junk() {
        let ns = 1_740_820_560_123_456_789;
        assert_eq!(parse_rfc3339("0001-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2025-03-01T09:16:00.123456789Z"), Some(ns));
        assert_eq!(
            parse_rfc3339("2025-03-01T10:16:00.123456789+01:00"),
            Some(ns)
        );
        assert_eq!(
            parse_rfc3339("2025-03-01T04:46:00.123456789-04:30"),
            Some(ns)
        );
        assert_eq!(parse_rfc3339("2025-03-01t09:16:00.123456789z"), Some(ns));
        assert_eq!(
            parse_rfc3339("2025-03-01T09:16:00.1Z"),
            Some(1_740_820_560_100_000_000)
        );
        assert_eq!(
            parse_rfc3339("2025-03-01T09:16:00Z"),
            Some(1_740_820_560_000_000_000)
        );
        for bad in [
            "",
            "2025-03-01",
            "2025-03-01T09:16:00",
            "2025-03-01 09:16:00Z",
            "2025-02-29T00:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025-03-01T24:00:00Z",
            "2025-03-01T09:16:60Z",
            "2025-03-01T09:16:00.Z",
            "2025-03-01T09:16:00.1234567890Z",
            "2025-03-01T09:16:00+0100",
            "2025-03-01T09:16:00Zjunk",
            "1969-12-31T23:59:59Z",
            "0001-01-01T00:00:00.5Z",
            "2600-01-01T00:00:00Z",
            "２025-03-01T09:16:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn overlaps_truth_table() {
        let cases = [
            ("a.*", "a.b", true),
            ("a.>", "a", false),
            ("a.>", "a.b.c", true),
            ("*.b", "a.*", true),
            (">", "a", true),
            (">", "a.b.c", true),
            (">", "*.*", true),
            ("a.b", "a.c", false),
            ("a.b", "a.b", true),
            ("a.*", "a.b.c", false),
            ("a.*.c", "a.>", true),
            ("a.b", "a.b.c", false),
            ("*", "a.b", false),
            ("$JS.API.>", "$JS.>", true),
            ("$JS.API.>", "$KV.>", false),
        ];
        for (a, b, want) in cases {
            assert_eq!(overlaps(a, b), want, "{a} vs {b}");
            assert_eq!(overlaps(b, a), want, "{b} vs {a}");
        }
    }

    // --- envelopes and requests ---

    #[test]
    fn error_json_has_exactly_three_keys() {
        let err = ApiError::consumer_not_found();
        let value = to_json(&err);
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["code", "description", "err_code"]);
        assert_eq!(
            value,
            json!({"code":404,"err_code":10014,"description":"consumer not found"})
        );
        let reply: Value = serde_json::from_slice(&error_response("consumer_info", &err)).unwrap();
        assert_eq!(
            reply,
            json!({"type":"io.nats.jetstream.api.v1.consumer_info_response",
                "error":{"code":404,"err_code":10014,"description":"consumer not found"}})
        );
        assert_eq!(
            err.to_string(),
            "consumer not found (code 404, err_code 10014)"
        );
        assert_eq!(ApiError::bad_request("").description, "bad request");
        assert_eq!(
            ApiError::wrong_last_seq(7).description,
            "wrong last sequence: 7"
        );
        assert_eq!(
            ApiError::wrong_last_msg_id("x").description,
            "wrong last msg ID: x"
        );
        assert_eq!(
            (
                ApiError::stream_not_found().code,
                ApiError::stream_not_found().err_code
            ),
            (404, 10059)
        );
        assert_eq!(
            ApiError::store_failed("maximum messages exceeded").code,
            503
        );
    }

    #[test]
    fn response_puts_type_first() {
        #[derive(Serialize)]
        struct Delete {
            success: bool,
        }
        let bytes = response("stream_delete", &Delete { success: true });
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"type":"io.nats.jetstream.api.v1.stream_delete_response","success":true}"#
        );
        #[derive(Serialize)]
        struct Empty {}
        assert_eq!(
            std::str::from_utf8(&response("system", &Empty {})).unwrap(),
            r#"{"type":"io.nats.jetstream.api.v1.system_response"}"#
        );
        // A whole StreamInfo reply as in 3.4.
        let info = StreamInfo {
            config: orders(),
            created: rfc3339(1_740_820_502_482_113_000),
            state: StreamState::default(),
            cluster: None,
            ts: rfc3339(1_740_820_502_482_200_000),
            did_create: Some(true),
        };
        let reply: Value = serde_json::from_slice(&response("stream_create", &info)).unwrap();
        assert_eq!(
            reply,
            json!({"type":"io.nats.jetstream.api.v1.stream_create_response",
                "config":stream_echo(),
                "created":"2025-03-01T09:15:02.482113Z",
                "state":{"messages":0,"bytes":0,"first_seq":0,"first_ts":"0001-01-01T00:00:00Z",
                    "last_seq":0,"last_ts":"0001-01-01T00:00:00Z","consumer_count":0},
                "ts":"2025-03-01T09:15:02.4822Z","did_create":true})
        );
    }

    #[test]
    fn consumer_info_and_pub_ack_shapes() {
        let config = parse_request::<CreateConsumerRequest>(ASYNC_NATS_CONSUMER.as_bytes())
            .unwrap()
            .config
            .normalize(&orders())
            .unwrap();
        let info = ConsumerInfo {
            stream_name: "ORDERS".into(),
            name: "processor".into(),
            created: "2025-03-01T09:20:11.004Z".into(),
            config,
            delivered: SequenceInfo::default(),
            ack_floor: SequenceInfo::default(),
            num_ack_pending: 0,
            num_redelivered: 0,
            num_waiting: 0,
            num_pending: 3,
            ts: "2025-03-01T09:20:11.004Z".into(),
        };
        let got = to_json(&info);
        assert_eq!(
            got,
            json!({"stream_name":"ORDERS","name":"processor","created":"2025-03-01T09:20:11.004Z",
                "config":consumer_echo(),
                "delivered":{"consumer_seq":0,"stream_seq":0},"ack_floor":{"consumer_seq":0,"stream_seq":0},
                "num_ack_pending":0,"num_redelivered":0,"num_waiting":0,"num_pending":3,
                "ts":"2025-03-01T09:20:11.004Z"})
        );
        let ack = PubAck {
            stream: "ORDERS".into(),
            seq: 7,
            duplicate: false,
        };
        assert_eq!(
            serde_json::to_string(&ack).unwrap(),
            r#"{"stream":"ORDERS","seq":7}"#
        );
        let dup = PubAck {
            duplicate: true,
            ..ack
        };
        assert_eq!(
            serde_json::to_string(&dup).unwrap(),
            r#"{"stream":"ORDERS","seq":7,"duplicate":true}"#
        );
    }

    #[test]
    fn parse_request_is_lenient() {
        for body in ["", "  ", "null", "[]", "{}", " { } "] {
            assert_eq!(
                parse_request::<StreamConfig>(body.as_bytes()).unwrap(),
                StreamConfig::default(),
                "{body:?}"
            );
            assert_eq!(
                parse_request::<PagingRequest>(body.as_bytes()).unwrap(),
                PagingRequest::default()
            );
        }
        let config: StreamConfig = parse_request(
            br#"{"name":"S","consumer_limits":null,"subjects":null,"metadata":null,
                "max_age":null,"retention":null,"future_field":{"x":1},"description":null}"#,
        )
        .unwrap();
        assert_eq!(
            config,
            StreamConfig {
                name: "S".into(),
                ..StreamConfig::default()
            }
        );
        let paging: PagingRequest = parse_request(br#"{"offset":2,"subject":null}"#).unwrap();
        assert_eq!(
            paging,
            PagingRequest {
                offset: 2,
                subject: None
            }
        );
        let get: MsgGetRequest = parse_request(br#"{"seq":null,"last_by_subj":"a.b"}"#).unwrap();
        assert_eq!(
            get,
            MsgGetRequest {
                seq: None,
                last_by_subj: Some("a.b".into()),
                next_by_subj: None
            }
        );
        let purge: PurgeRequest = parse_request(br#"{"filter":"a.>","keep":5}"#).unwrap();
        assert_eq!(
            purge,
            PurgeRequest {
                filter: Some("a.>".into()),
                seq: None,
                keep: Some(5)
            }
        );
        let create: CreateConsumerRequest =
            parse_request(br#"{"stream_name":"S","config":null,"action":null}"#).unwrap();
        assert_eq!(create.config, ConsumerConfig::default());
        let info: StreamState = serde_json::from_str(r#"{"messages":1}"#).unwrap();
        assert_eq!(info.messages, 1);
    }

    #[test]
    fn parse_request_rejects_bad_json() {
        for body in [
            r#"{"name":"S","max_age":-1}"#,
            r#"{"name":"S","duplicate_window":-5}"#,
            r#"{"name":"S","retention":"forever"}"#,
            r#"{"name":"S""#,
            "not json",
        ] {
            let err = parse_request::<StreamConfig>(body.as_bytes()).unwrap_err();
            assert_eq!((err.code, err.err_code), (400, 10025), "{body}");
            assert!(
                err.description.starts_with("invalid JSON: "),
                "{}",
                err.description
            );
        }
        let err =
            parse_request::<CreateConsumerRequest>(br#"{"config":{"ack_wait":-1}}"#).unwrap_err();
        assert_eq!(err.err_code, 10025);
        let err = parse_pull(br#"{"batch":1,"expires":-1}"#).unwrap_err();
        assert_eq!(err.err_code, 10025);
    }

    #[test]
    fn expect_empty_accepts_what_clients_send() {
        for body in ["", "{}", "null", "[]", " {} ", "garbage", "[1]"] {
            assert_eq!(expect_empty(body.as_bytes()), Ok(()), "{body:?}");
        }
        assert_eq!(expect_empty(br#"{"a":1}"#), Err(ApiError::not_empty()));
    }

    #[test]
    fn parse_pull_shapes() {
        assert_eq!(
            parse_pull(b"").unwrap(),
            PullRequest {
                batch: 1,
                ..PullRequest::default()
            }
        );
        assert_eq!(
            parse_pull(b"5").unwrap(),
            PullRequest {
                batch: 5,
                ..PullRequest::default()
            }
        );
        assert_eq!(parse_pull(b" 0 ").unwrap().batch, 1);
        let req = parse_pull(
            br#"{"batch":200,"no_wait":true,"max_bytes":0,"min_pending":null,
                "min_ack_pending":null,"group":null,"priority":null,"expires":30000000000,
                "idle_heartbeat":15000000000}"#,
        )
        .unwrap();
        assert_eq!(
            req,
            PullRequest {
                batch: 200,
                expires: 30 * SEC,
                no_wait: true,
                max_bytes: 0,
                idle_heartbeat: 15 * SEC
            }
        );
        let req = parse_pull(br#"{"batch":1,"expires":null}"#).unwrap();
        assert_eq!((req.batch, req.expires), (1, 0));
        assert_eq!(parse_pull(b"{}").unwrap().batch, 1);
    }
}
