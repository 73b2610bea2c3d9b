//! Request/reply: one inbox subscription per scope, shared by all requests.
//!
//! Like the NATS clients, a scope subscribes once to `_INBOX.<id>.*`; each request publishes
//! with the reply subject `_INBOX.<id>.<token>` and waits for the reply routed to its token. So
//! requests do not churn the subscription index (nor invalidate its cache). A request that
//! takes several replies (a pull of a stream's messages) registers for all that come.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::message::Message;
use crate::target::{Delivery, Target};

/// Routes replies to the requests waiting for them.
pub(crate) struct Inbox {
    prefix: String,
    next_token: AtomicU64,
    waiting: Mutex<FxHashMap<u64, Waiter>>,
}

/// What waits on a token: the first reply only, or every reply until it is dropped.
enum Waiter {
    One(oneshot::Sender<Message>),
    Many(mpsc::UnboundedSender<Message>),
}

impl Inbox {
    pub(crate) fn new(prefix: String) -> Self {
        Inbox {
            prefix,
            next_token: AtomicU64::new(1),
            waiting: Mutex::default(),
        }
    }

    /// `_INBOX.<id>.`: the reply subjects of this inbox are this prefix and a token.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Registers a new request; the returned guard unregisters it when dropped.
    pub(crate) fn register(self: &Arc<Self>) -> Pending {
        let (tx, rx) = oneshot::channel();
        let (token, reply) = self.add(Waiter::One(tx));
        Pending {
            inbox: self.clone(),
            token,
            reply,
            rx,
        }
    }

    /// Registers a request that takes every reply sent to it until the returned guard is
    /// dropped.
    pub(crate) fn register_many(self: &Arc<Self>) -> Replies {
        let (tx, rx) = mpsc::unbounded_channel();
        let (token, reply) = self.add(Waiter::Many(tx));
        Replies {
            inbox: self.clone(),
            token,
            reply,
            rx,
        }
    }

    fn add(&self, waiter: Waiter) -> (u64, String) {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        self.waiting.lock().insert(token, waiter);
        (token, format!("{}{token}", self.prefix))
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiting.lock().len()
    }
}

impl Target for Inbox {
    fn deliver(&self, _sid: u64, msg: &Delivery<'_>) -> bool {
        // A stored message handed to this inbox shows the subject it was stored under.
        let token = msg
            .delivered_to()
            .unwrap_or(msg.subject())
            .strip_prefix(self.prefix.as_str())
            .and_then(|t| t.parse::<u64>().ok());
        let Some(token) = token else { return true };
        let mut waiting = self.waiting.lock();
        // Only the first reply to a single request wins; later ones (and unknown tokens) are
        // dropped quietly.
        match waiting.get(&token) {
            Some(Waiter::One(_)) => {
                if let Some(Waiter::One(tx)) = waiting.remove(&token) {
                    drop(waiting);
                    let _ = tx.send(msg.message());
                }
            }
            // A request that stopped listening is forgotten.
            Some(Waiter::Many(tx)) if tx.send(msg.message()).is_err() => {
                waiting.remove(&token);
            }
            Some(Waiter::Many(_)) | None => {}
        }
        true
    }
}

/// One request waiting for its reply; unregisters itself when dropped (also on cancellation).
pub(crate) struct Pending {
    inbox: Arc<Inbox>,
    token: u64,
    reply: String,
    rx: oneshot::Receiver<Message>,
}

impl Pending {
    /// The reply subject to publish the request with.
    pub(crate) fn reply(&self) -> &str {
        &self.reply
    }

    /// Waits for the reply for at most `timeout`.
    pub(crate) async fn wait(&mut self, timeout: Duration) -> Result<Message> {
        match tokio::time::timeout(timeout, &mut self.rx).await {
            Ok(Ok(msg)) => Ok(msg),
            Ok(Err(_)) => Err(Error::Closed(
                "the router was dropped while a request waited",
            )),
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.inbox.waiting.lock().remove(&self.token);
    }
}

/// A request taking several replies; unregisters itself when dropped.
pub(crate) struct Replies {
    inbox: Arc<Inbox>,
    token: u64,
    reply: String,
    rx: mpsc::UnboundedReceiver<Message>,
}

impl Replies {
    /// The reply subject to publish the request with.
    pub(crate) fn reply(&self) -> &str {
        &self.reply
    }

    /// The next reply, or `None` once `deadline` passed.
    pub(crate) async fn next(&mut self, deadline: tokio::time::Instant) -> Option<Message> {
        tokio::time::timeout_at(deadline, self.rx.recv())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for Replies {
    fn drop(&mut self) {
        self.inbox.waiting.lock().remove(&self.token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_requests_unregister() {
        let inbox = Arc::new(Inbox::new("_INBOX.x.".into()));
        let a = inbox.register();
        let b = inbox.register();
        assert_ne!(a.reply(), b.reply());
        assert_eq!(inbox.waiting(), 2);
        let c = inbox.register_many();
        assert_eq!(inbox.waiting(), 3);
        drop(a);
        drop(b);
        drop(c);
        assert_eq!(inbox.waiting(), 0);
    }
}
