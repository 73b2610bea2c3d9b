//! Deferred wake-ups: a reader that delivers a burst of messages wakes each writer once, at
//! the end of the burst, not once per message.
//!
//! A protocol reader (a server connection, a cluster route) opens a [`Batch`] while it handles
//! what one read returned. Targets that queue output for a writer call [`Batch::wake`]
//! instead of waking it directly: inside a batch the wake-up is collected and sent when the
//! batch closes, so everything queued meanwhile leaves in one write; outside one it happens at
//! once. The batch is per thread, so it must be closed before the reader awaits.

use std::cell::RefCell;
use std::sync::Arc;

/// A writer (or anything) that a batch wakes when it closes.
pub trait Wake: Send + Sync + 'static {
    /// Wakes it: there is output to write.
    fn wake(&self);
}

thread_local! {
    /// What to wake when the batch open on this thread closes, if one is open.
    static BATCH: RefCell<Option<Vec<Arc<dyn Wake>>>> = const { RefCell::new(None) };
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
        let outer = BATCH.with(|b| {
            let mut b = b.borrow_mut();
            let outer = b.is_none();
            if outer {
                *b = Some(Vec::new());
            }
            outer
        });
        Batch { outer }
    }

    /// Wakes `w` when the open batch closes, or now if none is open.
    pub fn wake<W: Wake>(w: &Arc<W>) {
        let deferred = BATCH.with(|b| match b.try_borrow_mut() {
            Ok(mut b) => match b.as_mut() {
                Some(list) => {
                    list.push(w.clone());
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
        let list = BATCH.with(|b| b.borrow_mut().take()).unwrap_or_default();
        for w in list {
            w.wake();
        }
    }
}
