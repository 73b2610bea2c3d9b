//! Helpers shared by the unit tests of the subscription buffers (`mailbox`, `fanout`):
//! numbered messages, a counting waker, and a stress run of publishers on
//! other threads against a reader that sleeps whenever it finds nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;

use crate::message::{Headers, Message};
use crate::subject::Subject;

/// A message on subject `m` whose payload is `n` in decimal.
pub(crate) fn numbered(n: u32) -> Message {
    Message::new(
        Subject::new("m").unwrap(),
        None,
        Headers::NONE,
        Bytes::from(n.to_string()),
        None,
    )
}

/// The number a [`numbered`] message carries.
pub(crate) fn number(msg: &Message) -> u32 {
    msg.text().unwrap().parse().unwrap()
}

/// A waker that counts its wake-ups.
pub(crate) struct Count(AtomicUsize);

impl Count {
    /// A fresh count and a waker that adds to it.
    pub(crate) fn waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    /// Wake-ups so far.
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Publisher threads of a stress run.
pub(crate) const PUBLISHERS: u32 = 3;
/// Messages each publisher of a stress run sends.
pub(crate) const EACH: u32 = 20_000;

/// Starts [`PUBLISHERS`] threads that each `push` [`EACH`] numbered messages (publisher `p`
/// sends `p * EACH ..`; every push must be taken), and a thread that calls `close` once they
/// are all done. Join the returned handle at the end of the test.
pub(crate) fn publish_then_close(
    push: impl Fn(Message) -> bool + Send + Sync + 'static,
    close: impl FnOnce() + Send + 'static,
) -> JoinHandle<()> {
    let push = Arc::new(push);
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let push = push.clone();
            std::thread::spawn(move || {
                for n in 0..EACH {
                    assert!(push(numbered(p * EACH + n)));
                }
            })
        })
        .collect();
    std::thread::spawn(move || {
        for p in publishers {
            p.join().unwrap();
        }
        close();
    })
}

/// What a reader of a stress run saw.
pub(crate) struct Reading {
    received: u64,
    /// The last number received from each publisher.
    last: [Option<u32>; PUBLISHERS as usize],
}

/// Reads with `poll` until it ends, checking that each publisher's messages come in order and
/// none twice; fails after 30 seconds (a reader that slept through a publish would hang).
pub(crate) async fn read_in_order(
    mut poll: impl FnMut(&mut Context<'_>) -> Poll<Option<Message>>,
) -> Reading {
    let mut reading = Reading {
        received: 0,
        last: [None; PUBLISHERS as usize],
    };
    let read_all = async {
        while let Some(msg) = std::future::poll_fn(&mut poll).await {
            let n = number(&msg);
            let p = (n / EACH) as usize;
            let last = &mut reading.last[p];
            assert!(*last < Some(n), "publisher {p}: {n} after {last:?}");
            *last = Some(n);
            reading.received += 1;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read_all)
        .await
        .expect("a reader missed a wake-up");
    reading
}

impl Reading {
    /// Asserts that every message was received or counted in `dropped`, and that the very last
    /// publish of all is among those received (drop-oldest keeps the newest).
    pub(crate) fn check(&self, dropped: u64) {
        assert_eq!(self.received + dropped, u64::from(PUBLISHERS * EACH));
        let finished = (0..PUBLISHERS).any(|p| self.last[p as usize] == Some(p * EACH + EACH - 1));
        assert!(finished, "the newest message was lost: {:?}", self.last);
    }
}
