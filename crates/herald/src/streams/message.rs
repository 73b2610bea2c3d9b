//! [`StreamMessage`]: a message a consumer handed out, with its place in the stream and the
//! acknowledgements it takes; and the sink that hands such messages to a fetch.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::consumer::{AckKind, Consumer};
use super::error::{Error, Result};
use super::pull::{Delivered, Place, PullEnd, Sink};
use crate::message::{HeaderMap, Headers, Message};
use crate::subject::Subject;

/// A message fetched from a stream consumer.
///
/// Acknowledge it with [`ack`](StreamMessage::ack) once handled; [`nak`](StreamMessage::nak)
/// asks for it again, [`in_progress`](StreamMessage::in_progress) buys time and
/// [`term`](StreamMessage::term) gives up on it. Without an ack within the consumer's ack
/// wait, it is delivered again.
#[derive(Clone)]
pub struct StreamMessage {
    message: Message,
    stream: Arc<str>,
    consumer: Arc<str>,
    seq: u64,
    consumer_seq: u64,
    delivered: u32,
    time: SystemTime,
    pending: u64,
    acker: Acker,
}

/// Where a fetched message's acknowledgements go.
#[derive(Clone)]
pub(crate) enum Acker {
    /// A consumer of this node's store.
    Local(Weak<Consumer>),
    /// A consumer reached through another node (a clustered stream's leader): the adapter
    /// that fetched the message sends its acknowledgements there.
    Remote(Arc<dyn RemoteAck>),
}

/// Sends one fetched message's acknowledgements to a consumer on another node.
pub(crate) trait RemoteAck: Send + Sync {
    /// Sends `kind` for the message this was made for.
    fn acknowledge(&self, kind: AckKind) -> Result<()>;
}

impl StreamMessage {
    pub(crate) fn new(
        message: Message,
        stream: Arc<str>,
        consumer: Arc<str>,
        place: Place,
        acker: Acker,
    ) -> StreamMessage {
        StreamMessage {
            message,
            stream,
            consumer,
            seq: place.seq,
            consumer_seq: place.consumer_seq,
            delivered: place.delivered,
            time: place.time,
            pending: place.pending,
            acker,
        }
    }

    /// The subject it was published on.
    pub fn subject(&self) -> &str {
        self.message.subject()
    }

    /// The headers it was published with, if any.
    pub fn headers(&self) -> Option<&HeaderMap> {
        self.message.headers()
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        self.message.payload()
    }

    /// The payload as UTF-8 text.
    pub fn text(&self) -> crate::Result<&str> {
        self.message.text()
    }

    /// The payload decoded from JSON.
    pub fn json<T: DeserializeOwned>(&self) -> crate::Result<T> {
        self.message.json()
    }

    /// The message as the router would deliver it (subject, headers, payload).
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The stream it was stored in.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The consumer that handed it out.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Its stream sequence.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The consumer sequence of this delivery (it counts redeliveries too).
    pub fn consumer_seq(&self) -> u64 {
        self.consumer_seq
    }

    /// How many times it has been delivered, this time included.
    pub fn delivered(&self) -> u32 {
        self.delivered
    }

    /// When the stream stored it.
    pub fn time(&self) -> SystemTime {
        self.time
    }

    /// Messages of the consumer not delivered yet, after this one.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Acknowledges it: it will not be delivered again. Acking twice is harmless.
    pub fn ack(&self) -> Result<()> {
        self.acknowledge(AckKind::Ack)
    }

    /// Asks for it again, at once or after `delay`.
    pub fn nak(&self, delay: Option<Duration>) -> Result<()> {
        self.acknowledge(AckKind::Nak(delay))
    }

    /// Says it is still being worked on: its ack wait starts again.
    pub fn in_progress(&self) -> Result<()> {
        self.acknowledge(AckKind::Progress)
    }

    /// Stops its redelivery without handling it.
    pub fn term(&self) -> Result<()> {
        self.acknowledge(AckKind::Term)
    }

    fn acknowledge(&self, kind: AckKind) -> Result<()> {
        match &self.acker {
            Acker::Local(consumer) => {
                let consumer = consumer
                    .upgrade()
                    .ok_or_else(|| Error::closed(format!("consumer {} is gone", self.consumer)))?;
                consumer.ack(kind, self.seq).map(drop)
            }
            Acker::Remote(remote) => remote.acknowledge(kind),
        }
    }
}

impl std::fmt::Debug for StreamMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamMessage")
            .field("stream", &self.stream)
            .field("consumer", &self.consumer)
            .field("seq", &self.seq)
            .field("delivered", &self.delivered)
            .field("subject", &self.subject())
            .field("payload", self.payload())
            .finish()
    }
}

/// What a [`Fetch`] sink passes to the waiting call.
pub(crate) enum Event {
    Message(StreamMessage),
    End(PullEnd),
}

/// The sink of [`Streams::fetch`](super::Streams::fetch): typed messages on a channel.
pub(crate) struct Fetch {
    tx: mpsc::UnboundedSender<Event>,
    stream: Arc<str>,
    consumer: Arc<str>,
    acker: Weak<Consumer>,
}

impl Fetch {
    /// A sink for `consumer` of `stream`, and the receiving end.
    pub(crate) fn new(
        stream: Arc<str>,
        consumer: &Arc<Consumer>,
    ) -> (Fetch, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = Fetch {
            tx,
            stream,
            consumer: consumer.name.clone(),
            acker: Arc::downgrade(consumer),
        };
        (sink, rx)
    }
}

impl Sink for Fetch {
    fn deliver(&mut self, msg: &Delivered<'_>) -> bool {
        if self.tx.is_closed() {
            return false;
        }
        let headers = (!msg.headers.is_empty()).then(|| msg.headers.clone());
        let message = Message::new(
            Subject::from_valid(msg.subject),
            None,
            Headers::from_block(headers),
            msg.payload.clone(),
            None,
        );
        let message = StreamMessage::new(
            message,
            self.stream.clone(),
            self.consumer.clone(),
            msg.place,
            Acker::Local(self.acker.clone()),
        );
        self.tx.send(Event::Message(message)).is_ok()
    }

    fn end(&mut self, why: PullEnd) {
        let _ = self.tx.send(Event::End(why));
    }
}
