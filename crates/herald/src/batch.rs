//! Deferred wake-ups: a reader that delivers a burst of messages wakes each writer once, at
//! the end of the burst, not once per message.
//!
//! A protocol reader (a server connection, a cluster route) opens a [`Batch`] while it handles
//! what one read returned. Targets that queue output for a writer call [`Batch::wake`]
//! instead of waking it directly: inside a batch the wake-up is collected and sent when the
//! batch closes, so everything queued meanwhile leaves in one write; outside one it happens at
//! once. A producer off the runtime's threads opens a [`Batch::flushing`] batch instead, whose
//! close lets each target write in place ([`Wake::flush`]). The batch is per thread, so it
//! must be closed before the reader awaits.

use std::cell::RefCell;
use std::sync::Arc;

/// A writer (or anything) that a batch wakes when it closes.
pub trait Wake: Send + Sync + 'static {
    /// Wakes it: there is output to write.
    fn wake(&self);

    /// Called when a [`Batch::flushing`] batch closes, before [`wake`](Wake::wake): writes
    /// what is queued now, on the closing thread, if that can be done without waiting, and
    /// says whether nothing is left to write (then `wake` is not called). By default nothing
    /// is written here.
    fn flush(&self) -> bool {
        false
    }
}

thread_local! {
    /// What to wake when the batch open on this thread closes, if one is open.
    static BATCH: RefCell<Option<Open>> = const { RefCell::new(None) };
}

/// The batch open on a thread.
struct Open {
    wakes: Vec<Arc<dyn Wake>>,
    /// Whether closing it writes in place ([`Batch::flushing`]).
    flush: bool,
}

/// A batch open on this thread; closing it (dropping the guard) sends the collected wake-ups.
///
/// # Examples
/// ```
/// use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
/// use herald::batch::{Batch, Wake};
/// struct Writer(AtomicUsize);
/// impl Wake for Writer { fn wake(&self) { self.0.fetch_add(1, Ordering::Relaxed); } }
/// let writer = Arc::new(Writer(AtomicUsize::new(0)));
/// {
///     let _batch = Batch::open();
///     Batch::wake(&writer);
///     assert_eq!(writer.0.load(Ordering::Relaxed), 0); // deferred
/// }
/// assert_eq!(writer.0.load(Ordering::Relaxed), 1);
/// ```
#[must_use = "the batch closes when the guard is dropped"]
pub struct Batch {
    /// Whether this guard opened the batch (a nested open leaves closing to the outer one).
    outer: bool,
}

impl Batch {
    /// Opens a batch on this thread (or joins the one already open). Must not be held across
    /// an `.await`: the task may move to another thread.
    pub fn open() -> Batch {
        Batch::start(false)
    }

    /// Opens a batch whose close lets each target write in place ([`Wake::flush`]) before
    /// waking it (or joins the batch already open, as it is). For producers off the runtime's
    /// threads, such as a log's writer thread: waking a parked runtime worker to write an
    /// answer costs a waiting client more than the write itself. Producers on the runtime
    /// use [`open`](Batch::open): the writer they wake runs next on the same worker, and
    /// writes a burst on another core while the producer goes on.
    pub fn flushing() -> Batch {
        Batch::start(true)
    }

    fn start(flush: bool) -> Batch {
        let outer = BATCH.with(|b| {
            let mut b = b.borrow_mut();
            let outer = b.is_none();
            if outer {
                *b = Some(Open {
                    wakes: Vec::new(),
                    flush,
                });
            }
            outer
        });
        Batch { outer }
    }

    /// Whether a batch is open on this thread (and not closing): a [`wake`](Batch::wake) now
    /// is deferred to its close.
    pub fn is_open() -> bool {
        BATCH.with(|b| b.try_borrow().is_ok_and(|b| b.is_some()))
    }

    /// Wakes `w` when the open batch closes, or now if none is open.
    pub fn wake<W: Wake>(w: &Arc<W>) {
        let deferred = BATCH.with(|b| match b.try_borrow_mut() {
            Ok(mut b) => match b.as_mut() {
                Some(open) => {
                    open.wakes.push(w.clone());
                    true
                }
                None => false,
            },
            Err(_) => false,
        });
        if !deferred {
            w.wake();
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if !self.outer {
            return;
        }
        let Some(open) = BATCH.with(|b| b.borrow_mut().take()) else {
            return;
        };
        for w in open.wakes {
            if !(open.flush && w.flush()) {
                w.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts its wake-ups and flushes; a flush writes everything when `writes` says so.
    struct Target {
        wakes: AtomicUsize,
        flushes: AtomicUsize,
        writes: bool,
    }

    impl Wake for Target {
        fn wake(&self) {
            self.wakes.fetch_add(1, Ordering::Relaxed);
        }

        fn flush(&self) -> bool {
            self.flushes.fetch_add(1, Ordering::Relaxed);
            self.writes
        }
    }

    fn target(writes: bool) -> Arc<Target> {
        Arc::new(Target {
            wakes: AtomicUsize::new(0),
            flushes: AtomicUsize::new(0),
            writes,
        })
    }

    fn counts(t: &Target) -> (usize, usize) {
        (
            t.flushes.load(Ordering::Relaxed),
            t.wakes.load(Ordering::Relaxed),
        )
    }

    #[test]
    fn only_a_flushing_batch_writes_in_place_and_wakes_what_it_could_not_write() {
        let (writes, cannot) = (target(true), target(false));
        {
            let _batch = Batch::open();
            Batch::wake(&writes);
        }
        assert_eq!(counts(&writes), (0, 1), "an ordinary batch only wakes");
        {
            let _batch = Batch::flushing();
            Batch::wake(&writes);
            Batch::wake(&cannot);
            // A nested open joins the flushing batch as it is.
            let _inner = Batch::open();
            assert_eq!(counts(&writes), (0, 1), "deferred to the close");
        }
        assert_eq!(counts(&writes), (1, 1), "written in place: not woken");
        assert_eq!(counts(&cannot), (1, 1), "not written: woken");
        // Outside a batch a wake-up is sent at once, never written in place.
        Batch::wake(&writes);
        assert_eq!(counts(&writes), (1, 2));
    }
}
