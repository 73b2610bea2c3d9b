//! The warm-ups before a timed run: until every subscriber hears every publisher (publish/
//! subscribe), or until a responder answers (request/reply).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Result;

/// How often a publisher sends a warm-up message.
pub(super) const WARMUP_EVERY: Duration = Duration::from_millis(5);

/// How long the warm-up may take before the run fails.
pub(super) const WARMUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The warm-up before a timed publish/subscribe run. In a cluster a subscription made on one
/// node reaches the others in its own time; instead of sleeping, each publisher sends a
/// warm-up message on the bench subject every [`WARMUP_EVERY`] until every subscriber has
/// received one from every publisher. Then each publisher's server forwards to every
/// subscriber, on herald and nats-server alike, and the timed run starts.
///
/// A warm-up payload is told from a measured one by its length, which is never `--size`, and
/// carries its publisher's index; subscribers leave warm-up messages out of their counts and
/// latencies (some may still arrive after the timed run started).
pub(super) struct WarmUp {
    pub(super) size: usize,
    pub(super) pubs: usize,
    /// Subscribers that have not yet received a warm-up message from every publisher.
    pub(super) cold: AtomicUsize,
}

impl WarmUp {
    pub(super) fn new(pubs: usize, subs: usize, size: usize) -> WarmUp {
        WarmUp {
            size,
            pubs,
            cold: AtomicUsize::new(subs),
        }
    }

    /// The warm-up payload of publisher `index`: the index in 8 bytes (little endian), and one
    /// more byte when `--size` is 8.
    pub(super) fn payload(&self, index: usize) -> Bytes {
        let mut payload = (index as u64).to_le_bytes().to_vec();
        if self.size == payload.len() {
            payload.push(0);
        }
        Bytes::from(payload)
    }

    /// The publisher of a warm-up payload, or `None` for a measured message.
    pub(super) fn publisher(&self, payload: &[u8]) -> Option<usize> {
        if payload.len() == self.size {
            return None;
        }
        let index = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
        Some(index as usize)
    }

    /// One subscriber's record of the warm-up.
    pub(super) fn listener(&self) -> Heard {
        Heard {
            from: vec![false; self.pubs],
            missing: self.pubs,
        }
    }

    /// Whether every subscriber has heard from every publisher.
    pub(super) fn is_done(&self) -> bool {
        self.cold.load(Ordering::Acquire) == 0
    }

    /// Calls `send` (which publishes one warm-up message and flushes it) every
    /// [`WARMUP_EVERY`] until the warm-up is done; fails after [`WARMUP_TIMEOUT`].
    pub(super) async fn send_until_heard(&self, mut send: impl AsyncFnMut() -> Result) -> Result {
        let deadline = Instant::now() + WARMUP_TIMEOUT;
        while !self.is_done() {
            if Instant::now() > deadline {
                return Err(format!(
                    "{} subscriber(s) received no warm-up message within {WARMUP_TIMEOUT:?} \
                     (do the servers route to each other?)",
                    self.cold.load(Ordering::Acquire)
                )
                .into());
            }
            send().await?;
            tokio::time::sleep(WARMUP_EVERY).await;
        }
        Ok(())
    }
}

/// The publishers one subscriber has received a warm-up message from.
pub(super) struct Heard {
    pub(super) from: Vec<bool>,
    pub(super) missing: usize,
}

impl Heard {
    /// Takes note of a received payload; returns whether it was a warm-up message (one to
    /// leave out of the measurement).
    pub(super) fn note(&mut self, warm: &WarmUp, payload: &[u8]) -> bool {
        let Some(index) = warm.publisher(payload) else {
            return false;
        };
        if let Some(seen @ false) = self.from.get_mut(index) {
            *seen = true;
            self.missing -= 1;
            if self.missing == 0 {
                warm.cold.fetch_sub(1, Ordering::AcqRel);
            }
        }
        true
    }

    /// Whether this subscriber has heard from every publisher.
    pub(super) fn is_warm(&self) -> bool {
        self.missing == 0
    }
}

/// The request warm-up: retries a request every [`WARMUP_EVERY`] while nobody answers, until
/// the requester's server knows a responder (one made on another node of a cluster reaches it
/// in its own time); fails after [`WARMUP_TIMEOUT`]. The queue group takes one responder per
/// request, so this does not wait for every responder to be known.
pub(super) async fn first_answer(client: &async_nats::Client, subject: &str) -> Result {
    let deadline = Instant::now() + WARMUP_TIMEOUT;
    loop {
        let answer = tokio::time::timeout(
            WARMUP_TIMEOUT,
            client.request(subject.to_owned(), Bytes::new()),
        )
        .await;
        match answer {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e))
                if e.kind() == async_nats::RequestErrorKind::NoResponders
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(WARMUP_EVERY).await;
            }
            Ok(Err(e)) => return Err(format!("no responder answered the warm-up: {e}").into()),
            Err(_) => {
                return Err(format!("no responder answered within {WARMUP_TIMEOUT:?}").into());
            }
        }
    }
}
