//! [`Messages`]: a consumer's messages as they come, for a reader that stays (a server's
//! event stream, a worker loop), where [`Streams::fetch`](super::Streams::fetch) takes one
//! batch.
//!
//! It keeps one pull request of `batch` messages open on the consumer and opens the next when
//! that one is filled or expires, so messages arrive as soon as they are stored and at most
//! `batch` are ever buffered for a reader that does not keep up (the rest wait in the log).
//! A request expires after a while so that a reader that went away without a word leaves no
//! request behind for long. Dropping it gives back the messages it held and its reader never
//! took.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc;

use super::consumer::Consumer;
use super::error::{Error, Reason, Result};
use super::message::{Event, Fetch, StreamMessage};
use super::pull::PullRequest;

/// How long one pull request of a [`Messages`] waits before it is renewed.
const RENEW_AFTER: Duration = Duration::from_secs(30);

/// A consumer's messages, one at a time, as they are stored (see
/// [`Streams::messages`](super::Streams::messages)).
pub struct Messages {
    stream: Arc<str>,
    consumer: Weak<Consumer>,
    name: Arc<str>,
    batch: usize,
    /// Messages the open request may still deliver (0: none open).
    outstanding: usize,
    events: Option<mpsc::UnboundedReceiver<Event>>,
    /// Set by [`close`](Messages::close) or a failure: no more requests.
    done: bool,
}

impl Messages {
    pub(crate) fn new(stream: Arc<str>, consumer: &Arc<Consumer>, batch: usize) -> Messages {
        Messages {
            stream,
            consumer: Arc::downgrade(consumer),
            name: consumer.name.clone(),
            batch: batch.max(1),
            outstanding: 0,
            events: None,
            done: false,
        }
    }

    /// The consumer's name (an ephemeral consumer's was made by the server).
    pub fn consumer(&self) -> &str {
        &self.name
    }

    /// The next message, waiting as long as it takes. Fails when the consumer is deleted or
    /// its store closed; once it failed, it keeps failing.
    ///
    /// Cancel-safe: a message is never lost by dropping the future (it stays buffered for the
    /// next call).
    pub async fn next(&mut self) -> Result<StreamMessage> {
        loop {
            if self.done {
                return Err(self.gone());
            }
            if self.outstanding == 0 {
                self.renew()?;
            }
            let Some(events) = self.events.as_mut() else {
                return Err(self.gone());
            };
            match events.recv().await {
                Some(Event::Message(msg)) => {
                    self.outstanding -= 1;
                    return Ok(msg);
                }
                Some(Event::End(end)) => {
                    self.outstanding = 0;
                    if let Some(err) = end.error(&self.name) {
                        self.events = None;
                        self.done = true;
                        return Err(err);
                    }
                }
                None => {
                    self.events = None;
                    self.done = true;
                    return Err(self.gone());
                }
            }
        }
    }

    /// The next message if one is here already, without waiting (none also when the next
    /// request would have to be opened first).
    pub fn try_next(&mut self) -> Option<StreamMessage> {
        let events = self.events.as_mut()?;
        match events.try_recv() {
            Ok(Event::Message(msg)) => {
                self.outstanding -= 1;
                Some(msg)
            }
            Ok(Event::End(end)) => {
                self.outstanding = 0;
                if end.error(&self.name).is_some() {
                    self.events = None;
                    self.done = true;
                }
                None
            }
            Err(_) => None,
        }
    }

    /// Stops reading: the open request takes no more messages, and those delivered to it
    /// that the reader never took go back for redelivery at once rather than after their ack
    /// wait. [`next`](Messages::next) then fails. Dropping does the same.
    pub fn close(&mut self) {
        self.done = true;
        let Some(mut events) = self.events.take() else {
            return;
        };
        // Closed first: a message given back must not come straight back here. Closed and
        // drained between deliveries: a send under way when the channel closes is counted
        // but not yet queued, and `try_recv` would miss it; the message would then wait out
        // its ack wait (an hour for an event stream) instead of going back at once.
        let mut left = Vec::new();
        let mut drain = || {
            events.close();
            while let Ok(event) = events.try_recv() {
                if let Event::Message(msg) = event {
                    left.push(msg);
                }
            }
        };
        match self.consumer.upgrade() {
            Some(consumer) => consumer.between_deliveries(drain),
            None => drain(),
        }
        for msg in left {
            let _ = msg.nak(None);
        }
    }

    /// Opens the next pull request.
    fn renew(&mut self) -> Result<()> {
        let consumer = self.consumer.upgrade().ok_or_else(|| self.gone())?;
        let (sink, events) = Fetch::new(self.stream.clone(), &consumer);
        self.events = Some(events);
        self.outstanding = self.batch;
        let request = PullRequest {
            batch: self.batch,
            expires: Some(RENEW_AFTER),
            ..PullRequest::default()
        };
        consumer.pull(&request, Box::new(sink));
        Ok(())
    }

    fn gone(&self) -> Error {
        Error::new(
            Reason::ConsumerNotFound,
            format!("consumer {} of stream {} is gone", self.name, self.stream),
        )
    }
}

impl Drop for Messages {
    fn drop(&mut self) {
        self.close();
    }
}

impl std::fmt::Debug for Messages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messages")
            .field("stream", &self.stream)
            .field("consumer", &self.name)
            .field("batch", &self.batch)
            .finish()
    }
}
