//! The bounded buffer behind one subscription: a lock-free ring of messages, its drop policy,
//! and the reader's wake-up.
//!
//! The ring is `crossbeam_queue::ArrayQueue`: publishers push from any thread with one
//! compare-and-swap on its tail, the reader pops with one on its head, and the two ends live on
//! different cache lines, so a publisher and a reader on two cores do not fight over one line.
//! When the ring is full, drop-oldest evicts the oldest message (`force_push`) and drop-newest
//! refuses the new one; either way the drop is counted.
//!
//! Waking the reader costs a publisher one plain load while the reader is busy: a reader that
//! finds the ring empty leaves its waker and raises `waiting`, then looks at the ring once more;
//! a publisher looks at `waiting` after its push and wakes only when it is raised. (Waking
//! through `AtomicWaker::wake` on every push cost two atomic read-modify-writes per delivery.)
//! No wake-up is lost: the flag's store and load are sequentially consistent, as are the ring's
//! tail update on push and its emptiness check on pop, so either the reader's second look finds
//! the message or the publisher's load finds the flag (the argument of Dekker's algorithm).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use crossbeam_queue::ArrayQueue;

use crate::message::Message;

/// What a full subscription does with one more message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DropPolicy {
    /// Evict the oldest buffered message to make room: the newest `capacity` messages are kept.
    #[default]
    DropOldest,
    /// Refuse the new message: the oldest `capacity` messages are kept.
    DropNewest,
}

/// A subscription's own buffer.
pub(crate) struct Mailbox {
    queue: ArrayQueue<Message>,
    waker: AtomicWaker,
    /// Raised by a reader that found the ring empty and is about to sleep.
    waiting: AtomicBool,
    closed: AtomicBool,
    dropped: AtomicU64,
    policy: DropPolicy,
}

impl Mailbox {
    /// A mailbox holding at most `capacity` messages (at least 1).
    pub(crate) fn new(capacity: usize, policy: DropPolicy) -> Self {
        Mailbox {
            queue: ArrayQueue::new(capacity.max(1)),
            waker: AtomicWaker::new(),
            waiting: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            policy,
        }
    }

    /// Buffers `msg`, applying the drop policy when full, and wakes a waiting reader.
    /// Returns false (and keeps nothing) once the mailbox is closed.
    #[inline(always)]
    pub(crate) fn push(&self, msg: Message) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            return false;
        }
        let lost = match self.policy {
            DropPolicy::DropOldest => self.queue.force_push(msg).is_some(),
            DropPolicy::DropNewest => self.queue.push(msg).is_err(),
        };
        if lost {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if self.waiting.load(Ordering::SeqCst) && self.waiting.swap(false, Ordering::AcqRel) {
            self.waker.wake();
        }
        true
    }

    /// The oldest buffered message, without waiting.
    #[inline]
    pub(crate) fn pop(&self) -> Option<Message> {
        self.queue.pop()
    }

    /// The next message, or `None` once closed and empty; else leaves the reader's waker for
    /// the next push.
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        if let Some(msg) = self.queue.pop() {
            return Poll::Ready(Some(msg));
        }
        self.waker.register(cx.waker());
        self.waiting.store(true, Ordering::SeqCst);
        // Look again: a push between the first look and raising the flag did not wake us.
        match self.queue.pop() {
            Some(msg) => {
                self.waiting.store(false, Ordering::Relaxed);
                Poll::Ready(Some(msg))
            }
            None if self.is_closed() => Poll::Ready(None),
            None => Poll::Pending,
        }
    }

    /// Closes the mailbox (later pushes are refused; buffered messages can still be read) and
    /// wakes its reader. True only for the first call.
    pub(crate) fn close(&self) -> bool {
        let first = !self.closed.swap(true, Ordering::AcqRel);
        self.waker.wake();
        first
    }

    /// Discards every buffered message.
    pub(crate) fn clear(&self) {
        while self.queue.pop().is_some() {}
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Messages discarded by the drop policy so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Messages buffered now.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// The most messages it buffers.
    pub(crate) fn capacity(&self) -> usize {
        self.queue.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Count, numbered as msg, publish_then_close, read_in_order};
    use std::sync::Arc;

    fn payload(m: Option<Message>) -> Option<String> {
        m.map(|m| m.text().unwrap().to_owned())
    }

    #[test]
    fn each_drop_policy_keeps_its_end_and_counts_the_rest() {
        for (policy, kept) in [
            (DropPolicy::DropOldest, ["7", "8", "9"]),
            (DropPolicy::DropNewest, ["0", "1", "2"]),
        ] {
            let mb = Mailbox::new(3, policy);
            for n in 0..10 {
                assert!(mb.push(msg(n)));
            }
            assert_eq!((mb.len(), mb.dropped()), (3, 7), "{policy:?}");
            let got: Vec<_> = std::iter::from_fn(|| payload(mb.pop())).collect();
            assert_eq!(got, kept, "{policy:?}");
        }
    }

    #[test]
    fn a_waiting_reader_is_woken_once_by_the_next_push_and_by_close() {
        let mb = Mailbox::new(4, DropPolicy::DropOldest);
        let (count, waker) = Count::waker();
        let mut cx = Context::from_waker(&waker);
        assert!(mb.poll_recv(&mut cx).is_pending());
        mb.push(msg(1));
        mb.push(msg(2));
        assert_eq!(count.get(), 1, "one wake until it polls again");
        assert!(matches!(mb.poll_recv(&mut cx), Poll::Ready(Some(_))));
        assert!(matches!(mb.poll_recv(&mut cx), Poll::Ready(Some(_))));
        assert!(mb.poll_recv(&mut cx).is_pending());
        assert!(mb.close());
        assert!(!mb.close());
        assert_eq!(count.get(), 2);
        assert!(!mb.push(msg(3)), "a closed mailbox takes nothing");
        assert!(matches!(mb.poll_recv(&mut cx), Poll::Ready(None)));
    }

    #[test]
    fn closing_keeps_buffered_messages_readable_and_clear_discards_them() {
        let mb = Mailbox::new(4, DropPolicy::DropOldest);
        mb.push(msg(1));
        mb.push(msg(2));
        mb.close();
        assert_eq!(payload(mb.pop()).unwrap(), "1");
        mb.clear();
        assert!(mb.pop().is_none() && mb.len() == 0);
    }

    /// Several publishers on other threads and a reader that sleeps whenever the mailbox is
    /// empty: every message is either received or counted as dropped, none twice, each
    /// publisher's order holds, and the reader never sleeps through a push.
    #[test]
    fn concurrent_publishers_and_a_sleeping_reader_lose_nothing() {
        let mb = Arc::new(Mailbox::new(64, DropPolicy::DropOldest));
        let closer = publish_then_close(
            {
                let mb = mb.clone();
                move |m| mb.push(m)
            },
            {
                let mb = mb.clone();
                move || {
                    mb.close();
                }
            },
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let reading = runtime.block_on(read_in_order(|cx| mb.poll_recv(cx)));
        closer.join().unwrap();
        reading.check(mb.dropped());
    }
}
