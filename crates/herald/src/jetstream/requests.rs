//! The JetStream API's envelopes and request bodies: replies typed by `type`, lenient
//! decoding of what clients send (JETSTREAM-WIRE 1.3, 1.4, 3.5 to 3.7, 5.2, 6.1).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::{ConsumerConfig, empty_none, zero_none};
use super::error::ApiError;

/// A success reply: `body`'s JSON object with `"type":"io.nats.jetstream.api.v1.<kind>_response"`
/// put first (1.4).
///
/// `body` must serialize to a JSON object without a `type` key; anything else gives just the
/// type.
pub fn response<T: Serialize>(kind: &str, body: &T) -> Vec<u8> {
    #[derive(Serialize)]
    struct Envelope<'a, T> {
        #[serde(rename = "type")]
        kind: &'a str,
        #[serde(flatten)]
        body: Option<&'a T>,
    }
    let kind = format!("io.nats.jetstream.api.v1.{kind}_response");
    serde_json::to_vec(&Envelope {
        kind: &kind,
        body: Some(body),
    })
    .or_else(|_| {
        serde_json::to_vec(&Envelope::<T> {
            kind: &kind,
            body: None,
        })
    })
    .unwrap_or_default()
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
    let mut value: Value = serde_json::from_slice(body).map_err(ApiError::invalid_json)?;
    if is_empty_json(&value) {
        return Ok(T::default());
    }
    drop_nulls(&mut value);
    serde_json::from_value(value).map_err(ApiError::invalid_json)
}

/// Decodes a JSON body as `T`, a `null` member anywhere meaning "absent" (its default), as Go's
/// encoding/json reads it.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut value: Value = serde_json::from_slice(body).map_err(ApiError::invalid_json)?;
    drop_nulls(&mut value);
    serde_json::from_value(value).map_err(ApiError::invalid_json)
}

/// Removes the `null` members of every object in `value`; `#[serde(default)]` then fills them
/// in like missing ones.
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            fields.retain(|_, v| !v.is_null());
            fields.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
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
    pub stream_name: String,
    /// The requested configuration, not yet normalized.
    pub config: ConsumerConfig,
    /// `""` (create or update), `"create"` or `"update"`.
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

/// The body of `STREAM.MSG.DELETE`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct MsgDeleteRequest {
    /// The message to delete.
    pub seq: u64,
    /// Only mark it deleted: do not overwrite its content on disk.
    pub no_erase: bool,
}

/// The body of `STREAM.INFO`, all optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct StreamInfoRequest {
    /// Report the message count of each subject matching this pattern.
    #[serde(deserialize_with = "empty_none")]
    pub subjects_filter: Option<String>,
    /// Report the deleted sequences (accepted; herald reports their count only).
    pub deleted_details: bool,
    /// Subjects to skip in the subjects report.
    pub offset: usize,
}

/// The body of `DIRECT.GET`: one message like `STREAM.MSG.GET`, or with `batch` several.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct DirectGetRequest {
    /// The message with this sequence (or, with `next_by_subj` or `batch`, the first at or
    /// after it).
    pub seq: Option<u64>,
    /// The last message on this subject.
    #[serde(deserialize_with = "empty_none")]
    pub last_by_subj: Option<String>,
    /// The first message on this subject at or after `seq`.
    #[serde(deserialize_with = "empty_none")]
    pub next_by_subj: Option<String>,
    /// Up to this many messages from `seq` on (on `next_by_subj` if given), then an
    /// end-of-batch status.
    pub batch: Option<usize>,
}

/// The body of the paged NAMES / LIST calls (3.6).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PagingRequest {
    /// Items to skip.
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
    pub batch: i64,
    /// Lifetime of the request in ns; 0 = no expiry.
    pub expires: u64,
    /// Answer at once when there is nothing to deliver (6.2).
    pub no_wait: bool,
    /// Byte budget for the whole batch; 0 = none.
    pub max_bytes: i64,
    /// Send `100 Idle Heartbeat` after this long (ns) without a delivery; 0 = never.
    pub idle_heartbeat: u64,
}

impl PurgeRequest {
    /// What the request purges, for the store.
    pub fn to_typed(&self) -> crate::streams::Purge {
        crate::streams::Purge {
            filter: self.filter.clone(),
            below: self.seq,
            keep: self.keep,
        }
    }
}

impl PullRequest {
    /// The request as a consumer takes it.
    pub(crate) fn to_typed(&self) -> crate::streams::pull::PullRequest {
        let nanos = |ns: u64| (ns > 0).then(|| std::time::Duration::from_nanos(ns));
        crate::streams::pull::PullRequest {
            batch: usize::try_from(self.batch.max(1)).unwrap_or(usize::MAX),
            expires: nanos(self.expires),
            no_wait: self.no_wait,
            max_bytes: usize::try_from(self.max_bytes).ok().filter(|&n| n > 0),
            heartbeat: nanos(self.idle_heartbeat),
        }
    }
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
