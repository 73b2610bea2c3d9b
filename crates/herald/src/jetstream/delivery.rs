//! The JetStream side of consumers and publishes: pull requests answered in a client's inbox
//! (with `$JS.ACK` reply subjects and `NATS/1.0` status lines), the acks that come back on
//! those subjects, and publish acks (`PubAck` JSON) on a publisher's reply subject.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

use super::error::ApiError;
use super::requests::parse_pull;
use crate::dispatch::Reach;
use crate::scope::Scope;
use crate::streams::pull::{Delivered, PullEnd, Sink};
use crate::streams::stream::Answers;
use crate::streams::{self, AckKind, Streams};
use crate::target::{Delivery, Target};

/// What an ack message asks: a typed acknowledgement, or an ack followed by a pull request
/// (`+NXT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AckMessage {
    Ack(AckKind),
    /// Ack, then take the request in the body (empty: one message).
    Next(Vec<u8>),
}

impl AckMessage {
    /// Reads an ack payload (empty, `+ACK`, `-NAK [{"delay":ns}]`, `+WPI`, `+TERM [reason]`,
    /// `+NXT [request]`); `None` for anything else.
    pub(crate) fn parse(body: &[u8]) -> Option<AckMessage> {
        let text = std::str::from_utf8(body).ok()?.trim();
        let (word, rest) = text.split_once(' ').unwrap_or((text, ""));
        Some(match word {
            "" | "+ACK" | "+OK" => AckMessage::Ack(AckKind::Ack),
            "+WPI" => AckMessage::Ack(AckKind::Progress),
            "+TERM" => AckMessage::Ack(AckKind::Term),
            "+NXT" => AckMessage::Next(rest.trim().as_bytes().to_vec()),
            "-NAK" => AckMessage::Ack(AckKind::Nak(parse_delay(rest.trim()))),
            _ => return None,
        })
    }
}

/// A nak's delay: `{"delay": ns}` or a duration such as `5s` / `250ms`.
fn parse_delay(text: &str) -> Option<Duration> {
    if text.is_empty() {
        return None;
    }
    #[derive(Deserialize)]
    struct Delay {
        delay: u64,
    }
    if let Ok(d) = serde_json::from_str::<Delay>(text) {
        return Some(Duration::from_nanos(d.delay));
    }
    humantime::parse_duration(text).ok()
}

/// A pull request from a NATS client: messages go to its inbox under their stored subject,
/// each with the ack subject
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>` as its reply.
pub(crate) struct Inbox {
    scope: Arc<Scope>,
    reply: String,
    /// `$JS.ACK.<stream>.<consumer>.`
    ack_prefix: String,
    ack: Vec<u8>,
}

impl Inbox {
    pub(crate) fn new(scope: Arc<Scope>, reply: &str, stream: &str, consumer: &str) -> Inbox {
        Inbox {
            scope,
            reply: reply.to_owned(),
            ack_prefix: format!("$JS.ACK.{stream}.{consumer}."),
            ack: Vec::with_capacity(64),
        }
    }

    /// Writes the ack subject of `msg` into `self.ack`.
    fn ack_subject(&mut self, msg: &Delivered<'_>) {
        let place = msg.place;
        self.ack.clear();
        self.ack.extend_from_slice(self.ack_prefix.as_bytes());
        let numbers = [
            u64::from(place.delivered),
            place.seq,
            place.consumer_seq,
            crate::time::unix_nanos(place.time),
            place.pending,
        ];
        for (i, n) in numbers.into_iter().enumerate() {
            if i > 0 {
                self.ack.push(b'.');
            }
            herald_proto::encode::number(&mut self.ack, n);
        }
    }
}

impl Sink for Inbox {
    fn cost(&self, msg: &Delivered<'_>) -> usize {
        let digits = |n: u64| n.checked_ilog10().map_or(1, |d| d as usize + 1);
        let place = msg.place;
        let ack = self.ack_prefix.len()
            + 4
            + digits(u64::from(place.delivered))
            + digits(place.seq)
            + digits(place.consumer_seq)
            + digits(crate::time::unix_nanos(place.time))
            + digits(place.pending);
        msg.subject.len() + ack + msg.headers.len() + msg.payload.len()
    }

    fn deliver(&mut self, msg: &Delivered<'_>) -> bool {
        self.ack_subject(msg);
        let ack = std::str::from_utf8(&self.ack).unwrap_or_default();
        let headers = (!msg.headers.is_empty()).then_some(msg.headers);
        self.scope.send_as(
            &self.reply,
            msg.subject,
            Some(ack),
            headers,
            msg.payload,
            Reach::All,
        ) > 0
    }

    fn end(&mut self, why: PullEnd) {
        let pending = |messages: usize, bytes: usize| {
            format!("Nats-Pending-Messages: {messages}\r\nNats-Pending-Bytes: {bytes}\r\n")
        };
        let (status, extra) = match why {
            PullEnd::NoMessages => ("404 No Messages".to_owned(), String::new()),
            // Clients count what is still owed to them from these (nats.js's fetch ends
            // with the messages it got only when they are there).
            PullEnd::Expired { messages, bytes } => {
                ("408 Request Timeout".to_owned(), pending(messages, bytes))
            }
            PullEnd::ConsumerDeleted => ("409 Consumer Deleted".to_owned(), String::new()),
            PullEnd::MessageTooLarge { messages, bytes } => (
                "409 Message Size Exceeds MaxBytes".to_owned(),
                pending(messages, bytes),
            ),
            PullEnd::BatchTooLarge(max) => (
                format!("409 Exceeded MaxRequestBatch of {max}"),
                String::new(),
            ),
            PullEnd::ExpiresTooLong(max) => (
                format!("409 Exceeded MaxRequestExpires of {max:?}"),
                String::new(),
            ),
            PullEnd::MaxBytesTooLarge(max) => (
                format!("409 Exceeded MaxRequestMaxBytes of {max}"),
                String::new(),
            ),
            PullEnd::HeartbeatTooLong => (
                "400 Bad Request - heartbeat value too large".to_owned(),
                String::new(),
            ),
            PullEnd::TooManyWaiting => ("409 Exceeded MaxWaiting".to_owned(), String::new()),
        };
        send_status(&self.scope, &self.reply, &format!("{status}\r\n{extra}"));
    }

    fn heartbeat(&mut self, consumer_seq: u64, stream_seq: u64) {
        let headers = format!(
            "100 Idle Heartbeat\r\nNats-Last-Consumer: {consumer_seq}\r\nNats-Last-Stream: {stream_seq}\r\n"
        );
        send_status(&self.scope, &self.reply, &headers);
    }
}

/// Sends `NATS/1.0 <status and header lines>` with no payload to a pull request's inbox.
pub(crate) fn send_status(scope: &Scope, reply: &str, status: &str) {
    let block = Bytes::from(format!("NATS/1.0 {status}\r\n"));
    scope.send_as(reply, reply, None, Some(&block), &Bytes::new(), Reach::All);
}

/// The `$JS.ACK.>` subscription of a scope: hands each ack to its consumer, and answers an ack
/// that asks for an answer.
pub(crate) struct Acks {
    pub(crate) streams: Streams,
    pub(crate) scope: Arc<Scope>,
}

impl Target for Acks {
    fn deliver(&self, _sid: u64, msg: &Delivery<'_>) -> bool {
        self.on_ack(msg);
        true
    }
}

impl Acks {
    fn on_ack(&self, msg: &Delivery<'_>) {
        // By byte: this runs once per acknowledged message.
        let mut tokens = msg
            .subject()
            .as_bytes()
            .split(|&b| b == b'.')
            .map(|token| std::str::from_utf8(token).unwrap_or_default());
        let (Some(_js), Some(_ack), Some(stream), Some(name), Some(_delivered), Some(sseq)) = (
            tokens.next(),
            tokens.next(),
            tokens.next(),
            tokens.next(),
            tokens.next(),
            tokens.next(),
        ) else {
            return;
        };
        if tokens.count() != 3 {
            return;
        }
        let Ok(sseq) = sseq.parse::<u64>() else {
            return;
        };
        let Some(ack) = AckMessage::parse(msg.payload()) else {
            tracing::debug!(stream, consumer = name, "unknown ack payload; ignored");
            return;
        };
        let kind = match &ack {
            AckMessage::Ack(kind) => *kind,
            AckMessage::Next(_) => AckKind::Ack,
        };
        let sample = (kind == AckKind::Ack)
            .then(|| self.streams.ack_sample(stream, name, sseq))
            .flatten();
        let took = match self.streams.acknowledge(stream, name, kind, sseq) {
            Ok(took) => took,
            Err(err) => {
                tracing::debug!(stream, consumer = name, %err, "ack not applied");
                return;
            }
        };
        if took && let Some(since) = sample {
            self.ack_advisory(stream, name, msg.subject(), sseq, since);
        }
        match (ack, msg.reply()) {
            (AckMessage::Next(body), Some(reply)) => self.next(stream, name, &body, reply),
            (AckMessage::Ack(_), Some(reply)) if took => {
                let _ = self.scope.send(reply, None, None, Bytes::new(), Reach::All);
            }
            _ => {}
        }
    }

    /// A sampled ack's metric, as nats-server publishes it on
    /// `$JS.EVENT.METRIC.CONSUMER.ACK.<stream>.<consumer>`.
    fn ack_advisory(
        &self,
        stream: &str,
        consumer: &str,
        ack_subject: &str,
        sseq: u64,
        since: Option<Duration>,
    ) {
        // $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        let tokens: Vec<&str> = ack_subject.split('.').collect();
        let number = |i: usize| {
            tokens
                .get(i)
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let body = serde_json::json!({
            "type": "io.nats.jetstream.metric.v1.consumer_ack",
            "id": format!("{:016x}", fastrand::u64(..)),
            "timestamp": super::time::rfc3339(Some(std::time::SystemTime::now())),
            "stream": stream,
            "consumer": consumer,
            "consumer_seq": number(6),
            "stream_seq": sseq,
            "ack_time": since.map_or(0, |d| d.as_nanos() as u64),
            "deliveries": number(4),
        });
        let subject = format!("$JS.EVENT.METRIC.CONSUMER.ACK.{stream}.{consumer}");
        if let Err(err) = self.scope.send(
            &subject,
            None,
            None,
            Bytes::from(body.to_string()),
            Reach::All,
        ) {
            tracing::debug!(%err, "cannot publish an ack metric");
        }
    }

    /// `+NXT`: the pull request that follows an ack.
    fn next(&self, stream: &str, consumer: &str, body: &[u8], reply: &str) {
        match parse_pull(body) {
            Ok(req) => pull(&self.streams, &self.scope, stream, consumer, &req, reply),
            Err(err) => send_status(
                &self.scope,
                reply,
                &format!("400 Bad Request - {}\r\n", err.description),
            ),
        }
    }
}

/// A pull request from a NATS client: queued on the consumer, or answered with a status.
pub(crate) fn pull(
    streams: &Streams,
    scope: &Arc<Scope>,
    stream: &str,
    consumer: &str,
    req: &super::requests::PullRequest,
    reply: &str,
) {
    let inbox = Inbox::new(scope.clone(), reply, stream, consumer);
    if streams
        .pull(stream, consumer, &req.to_typed(), Box::new(inbox))
        .is_err()
    {
        // What a client sees from a real server when nothing serves the consumer.
        send_status(scope, reply, "503\r\n");
    }
}

/// Publish acks as JetStream clients read them: `{"stream":..,"seq":..}` or
/// `{"error":{..},"stream":..,"seq":0}`.
pub(crate) struct PubAcks;

impl Answers for PubAcks {
    fn ack(&self, scope: &Scope, reply: &str, stream: &str, seq: u64, duplicate: bool) {
        // Built by hand: one per stored message.
        let mut body = smallvec::SmallVec::<[u8; 128]>::new();
        body.extend_from_slice(b"{\"stream\":");
        // A stream name has no control characters or backslashes; one without quotes is
        // its own JSON string body.
        if stream.contains('"') {
            if serde_json::to_writer(&mut body, stream).is_err() {
                return;
            }
        } else {
            body.push(b'"');
            body.extend_from_slice(stream.as_bytes());
            body.push(b'"');
        }
        body.extend_from_slice(b",\"seq\":");
        body.extend_from_slice(herald_proto::encode::digits(seq, &mut [0; 20]));
        if duplicate {
            body.extend_from_slice(b",\"duplicate\":true");
        }
        body.push(b'}');
        scope.answer(reply, &body);
    }

    fn error(&self, scope: &Scope, reply: &str, stream: &str, err: &streams::Error) {
        let body = serde_json::json!({"error": ApiError::from(err), "stream": stream, "seq": 0});
        if let Err(err) = scope.send(reply, None, None, Bytes::from(body.to_string()), Reach::All) {
            tracing::debug!(%reply, %err, "cannot answer a publish");
        }
    }
}
