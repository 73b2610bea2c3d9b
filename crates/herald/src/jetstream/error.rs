//! [`ApiError`]: the `error` object of a JetStream reply, and the codes herald's typed errors
//! map to (JETSTREAM-WIRE 1.4 and 10).

use std::fmt::Display;

use serde::{Deserialize, Serialize};

use crate::streams::{self, Reason};

/// A JetStream API error: the `error` object of a reply, with exactly these three keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{description} (code {code}, err_code {err_code})")]
pub struct ApiError {
    /// HTTP-like status: 400, 404, 500 or 503. Clients branch on it.
    pub code: u16,
    /// The JetStream error code. Clients match on it.
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

    /// 400/10056: the name in the subject and the one in the body differ.
    pub fn stream_name_mismatch() -> Self {
        Self::new(400, 10056, "stream name in subject does not match request")
    }

    /// 500/10052: an invalid stream configuration; `desc` says why.
    pub fn invalid_stream_config(desc: impl Into<String>) -> Self {
        Self::new(500, 10052, desc)
    }

    /// 400/10094: the deliver policy and its start options disagree.
    pub fn start_policy(desc: impl Into<String>) -> Self {
        Self::new(400, 10094, desc)
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
}

/// The codes of a typed streams error, as a JetStream server would give them.
impl From<&streams::Error> for ApiError {
    fn from(err: &streams::Error) -> ApiError {
        use Reason::*;
        let (code, err_code) = match err.reason() {
            StreamNotFound => (404, 10059),
            ConsumerNotFound => (404, 10014),
            MessageNotFound => (404, 10037),
            StreamExists => (400, 10058),
            ConsumerExists => (400, 10148),
            ConsumerMissing => (400, 10149),
            SubjectsOverlap => (400, 10065),
            InvalidStreamConfig => (500, 10052),
            InvalidConsumerName => (400, 10103),
            BackoffTooLong => (400, 10116),
            FilterNotInStream => (400, 10093),
            FiltersOverlap => (400, 10138),
            InvalidConsumerConfig | BadRequest | Unsupported => (400, 10003),
            ConsumerUpdate => (500, 10012),
            StreamUpdate => (500, 10069),
            MirrorNotUpdatable => (400, 10055),
            StreamPurge => (500, 10110),
            Replicas => (500, 10074),
            TooManyConsumers => (400, 10026),
            MessageTooLarge => (400, 10054),
            StoreFailed => (503, 10077),
            ExpectedStream => (400, 10060),
            MessageTtl => (400, 10166),
            ConfirmTimeout | Timeout => (408, 0),
            Closed => (503, 0),
            Io => (500, 0),
            StreamCreateIo => (500, 10049),
            StreamDeleteIo => (500, 10050),
            StreamRead => (500, 10057),
            // nats-server refuses it as a failed delete.
            MessageDeleteDenied => (500, 10057),
            WrongLastSequence => (400, 10071),
            WrongLastMsgId => (400, 10070),
            RollupDenied => (400, 10115),
            MessageTtlInvalid => (400, 10165),
            WorkQueueConsumer(code) => (400, code),
            Sealed => (400, 10109),
            Unavailable => (503, 10008),
        };
        ApiError::new(code, err_code, err.message())
    }
}

/// A JetStream error as the typed error it stands for: the reverse of the codes above, for
/// the typed API over another node's JetStream. Codes with no typed meaning go by status.
impl From<&ApiError> for streams::Error {
    fn from(err: &ApiError) -> streams::Error {
        use Reason::*;
        let reason = match (err.code, err.err_code) {
            (_, 10059) => StreamNotFound,
            (_, 10014) => ConsumerNotFound,
            (_, 10037) => MessageNotFound,
            (_, 10058) => StreamExists,
            (_, 10148) => ConsumerExists,
            (_, 10149) => ConsumerMissing,
            (_, 10065) => SubjectsOverlap,
            // 10023: more replicas than the cluster has nodes.
            (_, 10052 | 10023) => InvalidStreamConfig,
            (_, 10103) => InvalidConsumerName,
            (_, 10116) => BackoffTooLong,
            (_, 10093) => FilterNotInStream,
            (_, 10138) => FiltersOverlap,
            (_, 10012) => ConsumerUpdate,
            (_, 10069) => StreamUpdate,
            (_, 10055) => MirrorNotUpdatable,
            (_, 10110) => StreamPurge,
            (_, 10074) => Replicas,
            (_, 10026) => TooManyConsumers,
            (_, 10054) => MessageTooLarge,
            (_, 10077) => StoreFailed,
            (_, 10060) => ExpectedStream,
            (_, 10166) => MessageTtl,
            (_, 10049) => StreamCreateIo,
            (_, 10050) => StreamDeleteIo,
            (_, 10057) => StreamRead,
            (_, 10071) => WrongLastSequence,
            (_, 10070) => WrongLastMsgId,
            (_, 10115) => RollupDenied,
            (_, 10165) => MessageTtlInvalid,
            (_, 10109) => Sealed,
            (_, 10008) | (503, _) => Unavailable,
            (408, _) => Timeout,
            (_, code @ 10098..=10101) => WorkQueueConsumer(code),
            (500, 0) => Io,
            _ => BadRequest,
        };
        streams::Error::new(reason, err.description.clone())
    }
}

impl From<streams::Error> for ApiError {
    fn from(err: streams::Error) -> ApiError {
        ApiError::from(&err)
    }
}
