//! Delivery targets: where the router hands a matched message.
//!
//! The index does not know what a subscriber is. Each subscription in it points at a
//! [`Target`]: the bounded buffer of local subscriptions, a network connection's outbound buffer
//! (herald-server), or a cluster route. Fan-out is the same loop for all of them, so a message
//! reaches a socket as cheaply as a local queue.
//!
//! Targets receive a [`Delivery`], not a [`Message`]: a message that came off the network
//! stays in the reader's buffer, borrowed, and a network target copies its bytes straight into
//! its outbound buffer. Only a target that keeps the message (a local buffer) asks for a
//! shared [`Message`], which is then built once per publish, however many keep it.

use std::sync::{OnceLock, Weak};

use bytes::Bytes;

use crate::message::{Headers, Message, Responder};
use crate::subject::Subject;

/// Something that accepts matched messages without blocking.
///
/// Implementations must be quick and must never wait: the publisher's thread calls
/// [`deliver`](Target::deliver) for every match. A target that cannot keep up applies its own
/// policy (drop a message, mark itself a slow consumer) and says so in its own counters.
pub trait Target: Send + Sync + 'static {
    /// Hands `msg` to the target for its subscription `sid` (the value given when subscribing).
    ///
    /// Returns `false` when the target is closed and takes nothing any more; the router then
    /// tries another member of a queue group and does not count it as a responder.
    fn deliver(&self, sid: u64, msg: &Delivery<'_>) -> bool;

    /// [`deliver`](Target::deliver), when no other target of this publish sees the message
    /// after this one: a target that keeps the message can take it
    /// ([`Delivery::into_message`]) instead of sharing a copy. The default calls `deliver`.
    fn deliver_owned(&self, sid: u64, msg: Delivery<'_>) -> bool {
        self.deliver(sid, &msg)
    }

    /// Whether this target is in this process. Cluster routes answer `false`: a message that
    /// must stay local (`publish_local`) skips them, and queue groups prefer local members.
    fn is_local(&self) -> bool {
        true
    }

    /// Forwards one message to another node, once for all of this target's matching
    /// subscriptions, asking that node to also serve `queues` (one member of each there).
    ///
    /// Only targets that are not [local](Target::is_local) get this call, in place of
    /// [`deliver`](Target::deliver): a publish reaches each remote node at most once, however
    /// many of its patterns match. The default delivers as subscription 0.
    fn forward(&self, msg: &Delivery<'_>, queues: &[&str]) -> bool {
        let _ = queues;
        self.deliver(0, msg)
    }

    /// Whether this target holds so much it has not passed on yet (a network connection's
    /// unwritten output) that a producer that can wait should: a push consumer reading a
    /// stream's backlog then goes at the pace of its subscribers instead of filling their
    /// buffers until they are dropped as slow consumers. The default says no.
    fn congested(&self) -> bool {
        false
    }

    /// Called once when the router drops subscription `sid` on its own (its node shut down),
    /// so the target can tell its reader that no more messages will come.
    fn detach(&self, sid: u64) {
        let _ = sid;
    }
}

/// One published message on its way to the targets that match it.
///
/// Its parts can be read without building anything; [`message`](Delivery::message) gives the
/// shared [`Message`], built on the first call and cloned after.
pub struct Delivery<'a> {
    source: Source<'a>,
}

enum Source<'a> {
    /// Published through the library: the message is built up front.
    Built(Message),
    /// Parsed off the wire: parts borrowed from the reader's buffer, and the message once a
    /// target asked for it.
    Wire {
        subject: &'a Subject,
        reply: Option<&'a str>,
        headers: Option<&'a [u8]>,
        payload: &'a [u8],
        responder: &'a Weak<dyn Responder>,
        message: OnceLock<Message>,
    },
    /// A stored message handed out under its stored subject (JetStream deliveries): parts
    /// borrowed, shared buffers cloned only if a target keeps the message.
    Stored {
        subject: &'a str,
        /// The subject it is delivered to, when not `subject`.
        to: Option<&'a str>,
        reply: Option<&'a str>,
        headers: Option<&'a Bytes>,
        payload: &'a Bytes,
        responder: &'a Weak<dyn Responder>,
        message: OnceLock<Message>,
    },
}

impl<'a> Delivery<'a> {
    pub(crate) fn built(message: Message) -> Delivery<'a> {
        Delivery {
            source: Source::Built(message),
        }
    }

    pub(crate) fn wire(
        subject: &'a Subject,
        reply: Option<&'a str>,
        headers: Option<&'a [u8]>,
        payload: &'a [u8],
        responder: &'a Weak<dyn Responder>,
    ) -> Delivery<'a> {
        Delivery {
            source: Source::Wire {
                subject,
                reply,
                headers,
                payload,
                responder,
                message: OnceLock::new(),
            },
        }
    }

    /// A message stored earlier, shown as published on `subject` with `reply` (both valid
    /// literal subjects).
    pub(crate) fn stored(
        subject: &'a str,
        to: Option<&'a str>,
        reply: Option<&'a str>,
        headers: Option<&'a Bytes>,
        payload: &'a Bytes,
        responder: &'a Weak<dyn Responder>,
    ) -> Delivery<'a> {
        Delivery {
            source: Source::Stored {
                subject,
                to,
                reply,
                headers,
                payload,
                responder,
                message: OnceLock::new(),
            },
        }
    }

    /// The subject this delivery goes to when it is not [`subject`](Delivery::subject): a
    /// stored message handed to an inbox. A route carries both.
    pub fn delivered_to(&self) -> Option<&str> {
        match &self.source {
            Source::Stored { to, .. } => *to,
            _ => None,
        }
    }

    fn built_message(&self) -> &Message {
        match &self.source {
            Source::Built(message) => message,
            Source::Wire { message, .. } | Source::Stored { message, .. } => {
                message.get_or_init(|| self.build())
            }
        }
    }

    /// A new message from borrowed parts.
    fn build(&self) -> Message {
        match &self.source {
            Source::Built(message) => message.clone(),
            Source::Wire {
                subject,
                reply,
                headers,
                payload,
                responder,
                ..
            } => Message::new(
                (*subject).clone(),
                // Checked before fan-out; building it again cannot fail.
                reply.map(Subject::from_valid),
                Headers::from_block(headers.map(Bytes::copy_from_slice)),
                Bytes::copy_from_slice(payload),
                reply.map(|_| (*responder).clone()),
            ),
            Source::Stored {
                subject,
                reply,
                headers,
                payload,
                responder,
                ..
            } => Message::new(
                Subject::from_valid(subject),
                reply.map(Subject::from_valid),
                Headers::from_block(headers.cloned()),
                (*payload).clone(),
                reply.map(|_| (*responder).clone()),
            ),
        }
    }

    /// The subject it was published on.
    pub fn subject(&self) -> &str {
        match &self.source {
            Source::Wire { subject, .. } => subject.as_str(),
            Source::Stored { subject, .. } => subject,
            Source::Built(m) => m.subject(),
        }
    }

    /// The reply subject, if any.
    pub fn reply(&self) -> Option<&str> {
        match &self.source {
            Source::Wire { reply, .. } | Source::Stored { reply, .. } => *reply,
            Source::Built(m) => m.reply(),
        }
    }

    /// The headers as a `NATS/1.0` block, if any.
    pub fn header_block(&self) -> Option<&[u8]> {
        match &self.source {
            Source::Wire { headers, .. } => *headers,
            Source::Stored { headers, .. } => headers.map(|h| &h[..]),
            Source::Built(m) => m.header_block(),
        }
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        match &self.source {
            Source::Wire { payload, .. } => payload,
            Source::Stored { payload, .. } => payload,
            Source::Built(m) => m.payload(),
        }
    }

    /// The shared message, for a target that keeps it (built on the first call).
    pub fn message(&self) -> Message {
        self.built_message().clone()
    }

    /// The message itself, for the last target of a publish: no copy is shared when this
    /// delivery holds the only one.
    pub fn into_message(mut self) -> Message {
        let cached = match &mut self.source {
            Source::Built(_) => None,
            Source::Wire { message, .. } | Source::Stored { message, .. } => message.take(),
        };
        match (cached, self.source) {
            (Some(message), _) | (None, Source::Built(message)) => message,
            (None, source) => Delivery { source }.build(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A responder that never was: the messages of these tests are not answered.
    struct Nobody;

    impl Responder for Nobody {
        fn respond(&self, _reply: &str, _payload: Bytes) -> crate::Result<()> {
            Ok(())
        }
    }

    fn no_responder() -> Weak<dyn Responder> {
        Weak::<Nobody>::new()
    }

    #[test]
    fn into_message_takes_what_an_earlier_target_built_or_builds_it() {
        let subject = Subject::new("a.b").unwrap();
        let responder = no_responder();
        let wire = || Delivery::wire(&subject, Some("r.1"), None, b"wire", &responder);

        let fresh = wire().into_message();
        assert_eq!((fresh.subject(), fresh.reply()), ("a.b", Some("r.1")));
        assert_eq!(&fresh.payload()[..], b"wire");

        let shared = wire();
        let first = shared.message();
        let last = shared.into_message();
        assert_eq!(
            first.payload().as_ptr(),
            last.payload().as_ptr(),
            "the last target gets the message built for the first, not a copy"
        );

        let payload = Bytes::from_static(b"stored");
        let stored = Delivery::stored("s.1", None, None, None, &payload, &responder).into_message();
        assert_eq!((stored.subject(), stored.payload()), ("s.1", &payload));

        let built = Delivery::built(fresh.clone()).into_message();
        assert_eq!(built.payload().as_ptr(), fresh.payload().as_ptr());
    }
}
