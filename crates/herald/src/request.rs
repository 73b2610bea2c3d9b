//! Request/reply: one inbox subscription per scope, shared by all requests.
//!
//! Like the NATS clients, a scope subscribes once to `_INBOX.<id>.*`; each request publishes
//! with the reply subject `_INBOX.<id>.<token>` and waits for the reply routed to its token. So
//! requests do not churn the subscription index (nor invalidate its cache).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::message::Message;
use crate::target::{Delivery, Target};

/// Routes replies to the requests waiting for them.
pub(crate) struct Inbox {
    prefix: String,
    next_token: AtomicU64,
    waiting: Mutex<FxHashMap<u64, oneshot::Sender<Message>>>,
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
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().insert(token, tx);
        Pending {
            inbox: self.clone(),
            token,
            reply: format!("{}{token}", self.prefix),
            rx,
        }
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiting.lock().len()
    }
}

impl Target for Inbox {
    fn deliver(&self, _sid: u64, msg: &Delivery<'_>) -> bool {
        let token = msg
            .subject()
            .strip_prefix(self.prefix.as_str())
            .and_then(|t| t.parse::<u64>().ok());
        // Only the first reply wins; later ones (and unknown tokens) are dropped quietly.
        if let Some(tx) = token.and_then(|t| self.waiting.lock().remove(&t)) {
            let _ = tx.send(msg.message());
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
        drop(a);
        drop(b);
        assert_eq!(inbox.waiting(), 0);
    }
}
