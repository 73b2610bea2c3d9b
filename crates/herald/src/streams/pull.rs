//! Pull requests: what a reader asks of a consumer, where the consumer hands the messages
//! ([`Sink`]), and how a request ends ([`PullEnd`]).
//!
//! The consumer does not know who reads. [`Streams::fetch`](super::Streams::fetch) reads
//! through a sink that is a channel to the waiting call (in `message`); the JetStream adapter
//! reads through a sink that writes to a NATS client's inbox, with the ack subjects and
//! status lines NATS clients expect.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::error::{Error, Reason};

/// A pull request as a consumer takes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PullRequest {
    /// Messages wanted (at least 1).
    pub(crate) batch: usize,
    /// How long the request waits for messages (`None`: until filled).
    pub(crate) expires: Option<Duration>,
    /// End at once when nothing can be delivered now.
    pub(crate) no_wait: bool,
    /// Byte budget for the whole batch.
    pub(crate) max_bytes: Option<usize>,
    /// Heartbeat after this long without a delivery.
    pub(crate) heartbeat: Option<Duration>,
}

/// Where a delivered message sits: its sequences, delivery count, storage time and what is
/// left behind it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place {
    pub(crate) seq: u64,
    pub(crate) consumer_seq: u64,
    pub(crate) delivered: u32,
    pub(crate) time: SystemTime,
    pub(crate) pending: u64,
}

/// One message a consumer hands to a sink: parts borrowed from the consumer's read buffer.
pub(crate) struct Delivered<'a> {
    pub(crate) subject: &'a str,
    pub(crate) headers: &'a Bytes,
    pub(crate) payload: &'a Bytes,
    pub(crate) place: Place,
}

/// Why a pull request ended before its batch was full, or was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PullEnd {
    /// Nothing to deliver now, and the request asked not to wait.
    NoMessages,
    /// The request expired.
    Expired {
        /// Messages the request still wanted.
        messages: usize,
        /// Bytes it had left (0 without a byte budget).
        bytes: usize,
    },
    /// The consumer was deleted (or its store closed).
    ConsumerDeleted,
    /// The next message is larger than the budget the request has left.
    MessageTooLarge {
        /// Messages the request still wanted.
        messages: usize,
        /// Bytes it had left.
        bytes: usize,
    },
    /// Refused: the batch is larger than the consumer's `max_batch`.
    BatchTooLarge(u64),
    /// Refused: the request waits longer than the consumer's `max_expires`.
    ExpiresTooLong(Duration),
    /// Refused: the byte budget is larger than the consumer's `max_bytes`.
    MaxBytesTooLarge(u64),
    /// Refused: heartbeats more than half the request's lifetime apart (or without one).
    HeartbeatTooLong,
    /// Refused: the consumer has `max_waiting` requests queued already.
    TooManyWaiting,
}

impl PullEnd {
    /// The error a reader that waited for messages reports for this end, if it is one.
    pub(crate) fn error(&self, consumer: &str) -> Option<Error> {
        let refused = |why: String| Some(Error::bad_request(why));
        match self {
            PullEnd::NoMessages | PullEnd::Expired { .. } | PullEnd::MessageTooLarge { .. } => None,
            PullEnd::ConsumerDeleted => Some(Error::new(
                Reason::ConsumerNotFound,
                format!("consumer {consumer} was deleted"),
            )),
            PullEnd::BatchTooLarge(max) => refused(format!("the consumer's max batch is {max}")),
            PullEnd::ExpiresTooLong(max) => {
                refused(format!("the consumer's max expires is {max:?}"))
            }
            PullEnd::MaxBytesTooLarge(max) => refused(format!("the consumer's max bytes is {max}")),
            PullEnd::HeartbeatTooLong => refused("heartbeat value too large".into()),
            PullEnd::TooManyWaiting => refused(format!(
                "consumer {consumer} has as many pull requests waiting as it allows"
            )),
        }
    }
}

/// Where a pull request's messages go. Called under the consumer's lock: quick, no waiting.
pub(crate) trait Sink: Send {
    /// The bytes `msg` counts against a request's byte budget.
    fn cost(&self, msg: &Delivered<'_>) -> usize {
        msg.subject.len() + msg.headers.len() + msg.payload.len()
    }

    /// Hands one message over; `false` when nobody takes it any more (the request is then
    /// dropped and the message kept for another).
    fn deliver(&mut self, msg: &Delivered<'_>) -> bool;

    /// The request ended (or was refused) for `why`.
    fn end(&mut self, why: PullEnd);

    /// Nothing was delivered for a heartbeat interval; the consumer's last sequences.
    fn heartbeat(&mut self, consumer_seq: u64, stream_seq: u64) {
        let _ = (consumer_seq, stream_seq);
    }

    /// Whether the sink takes no message now (a push consumer waiting for flow control, or
    /// over its rate), and until when at the latest (it may also wake the consumer sooner).
    fn blocked(&mut self, now: Instant) -> Option<Instant> {
        let _ = now;
        None
    }

    /// Whether someone reads what the sink delivers (a push consumer's subject has
    /// subscribers): keeps an ephemeral push consumer from counting as inactive.
    fn active(&self) -> bool {
        false
    }
}
