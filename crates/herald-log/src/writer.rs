//! Group commit: one thread appends for many publishers and makes each batch durable at once.
//!
//! Publishers hand [`Writer::append`] a message and a tag. The message's bytes are copied into
//! a staging buffer shared with the writer thread (no allocation per message once the buffer
//! has grown); the writer thread swaps the whole staging buffer out, appends it all, writes it
//! with one call, and under [`Fsync::Always`] fsyncs once for the whole batch before
//! completing any of it: concurrent publishers share one fsync, and a completion with
//! `Ok(seq)` means the message is on disk. Completions run in append order, through the one
//! handler given to [`Writer::spawn`], with each message's tag. The fsync runs without the
//! log's lock, so readers are not held up by it.
//!
//! A publisher that reads requests in bursts (a network connection) queues with
//! [`Writer::append_deferred`] and calls [`Writer::kick`] at the end of its burst: a small
//! batch is then appended on its own thread when the writer thread is idle, which spares a
//! lone publisher waiting for its ack two thread wake-ups; a larger one, or any under
//! [`Fsync::Always`], goes to the thread.

use std::cell::Cell;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{Entry, Expect, Log, Result};

/// When appended messages reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Before a publish is acknowledged: acknowledged means on disk (group commit).
    Always,
    /// At most this long after a publish is acknowledged: a crash of the machine (not of the
    /// process: the data is in the page cache) loses at most this window.
    Interval(Duration),
    /// Left to the operating system.
    Never,
}

/// Messages waiting for the writer thread: their bytes back to back, and per message its
/// lengths, timestamp and tag.
struct Staged<T> {
    bytes: Vec<u8>,
    items: Vec<Item<T>>,
}

struct Item<T> {
    timestamp: u64,
    subject: usize,
    headers: usize,
    payload: usize,
    expect: Option<Box<Expect>>,
    tag: T,
}

impl<T> Default for Staged<T> {
    fn default() -> Self {
        Staged {
            bytes: Vec::new(),
            items: Vec::new(),
        }
    }
}

struct Queue<T> {
    staged: Staged<T>,
    /// How many messages were ever staged.
    total: u64,
    /// Set when the writer is dropped: the thread completes what is staged and stops.
    closed: bool,
}

/// What appending a batch needs, taken by the thread or by a caller appending in place
/// ([`Writer::kick`]), one at a time.
struct Work<T> {
    batch: Staged<T>,
    results: Vec<Result<u64>>,
    done: Box<Done<T>>,
}

/// The completion handler given to [`Writer::spawn`].
type Done<T> = dyn FnMut(Completions<'_, T>) + Send;

struct Shared<T> {
    log: Mutex<Log>,
    queue: Mutex<Queue<T>>,
    /// Held while a batch is appended and completed: by the thread, or by a caller appending
    /// in place. Completions stay in append order.
    work: Mutex<Work<T>>,
    fsync: Fsync,
    /// Signalled when the queue goes from empty to not, and at close.
    ready: Condvar,
    /// Whether something was written since the last fsync (under [`Fsync::Interval`], the
    /// thread then wakes in time for the next one).
    unsynced: AtomicBool,
    syncs: AtomicU64,
    /// How many messages were completed (appended or refused, their handler called).
    completed: AtomicU64,
    /// Where [`Writer::drain`] waits for `completed` to move.
    progress_lock: Mutex<()>,
    progress: Condvar,
    /// Callers waiting in [`Writer::drain`]: the writer wakes them only when there are some
    /// (a wake-up is a system call; draining is rare).
    draining: AtomicUsize,
}

/// The completions of one batch, in append order: each message's sequence (or the error that
/// kept it out) and its tag. A handler should take them all; what it leaves is dropped.
pub struct Completions<'a, T> {
    items: std::vec::Drain<'a, Item<T>>,
    results: std::vec::Drain<'a, Result<u64>>,
}

impl<T> Iterator for Completions<'_, T> {
    type Item = (Result<u64>, T);

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.items.next()?;
        let result = self.results.next()?;
        Some((result, item.tag))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.items.size_hint()
    }
}

impl<T> ExactSizeIterator for Completions<'_, T> {}

/// The appending thread of one log, shared by every publisher of its stream. `T` is what a
/// publisher attaches to a message to know it again in the completion.
pub struct Writer<T: Send + 'static> {
    shared: Arc<Shared<T>>,
    thread: Option<JoinHandle<()>>,
}

fn lock<U>(mutex: &Mutex<U>) -> MutexGuard<'_, U> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The most messages [`Writer::kick`] appends on its caller's thread; a larger batch is the
/// writer thread's.
pub const IN_PLACE_MOST: usize = 4;

thread_local! {
    /// Whether this thread appends nothing in place: a writer thread (another log's batch
    /// would hold up its own), or one appending in place already (its completions may stage
    /// into another log: that one's writer thread takes it rather than this stack growing).
    static NOT_IN_PLACE: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as appending in place until dropped (also when a completion panics).
struct InPlace;

impl InPlace {
    fn enter() -> InPlace {
        NOT_IN_PLACE.with(|c| c.set(true));
        InPlace
    }
}

impl Drop for InPlace {
    fn drop(&mut self) {
        NOT_IN_PLACE.with(|c| c.set(false));
    }
}

impl<T: Send + 'static> Writer<T> {
    /// Starts the writer thread for `log`; `done` is called once per batch with the batch's
    /// [`Completions`]: each message, in append order, with its sequence once it is stored as
    /// the fsync policy says (or the error that kept it out) and its tag. It runs on the
    /// writer thread, or on a caller's thread in [`kick`](Writer::kick).
    pub fn spawn(
        log: Log,
        fsync: Fsync,
        done: impl FnMut(Completions<'_, T>) + Send + 'static,
    ) -> Writer<T> {
        let shared = Arc::new(Shared {
            log: Mutex::new(log),
            queue: Mutex::new(Queue {
                staged: Staged::default(),
                total: 0,
                closed: false,
            }),
            work: Mutex::new(Work {
                batch: Staged::default(),
                results: Vec::new(),
                done: Box::new(done),
            }),
            fsync,
            ready: Condvar::new(),
            unsynced: AtomicBool::new(false),
            syncs: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            progress_lock: Mutex::new(()),
            progress: Condvar::new(),
            draining: AtomicUsize::new(0),
        });
        let thread = std::thread::Builder::new()
            .name("herald-log-writer".into())
            .spawn({
                let shared = shared.clone();
                move || run(&shared)
            })
            .map_err(|err| tracing::error!(%err, "cannot start a log writer thread"))
            .ok();
        Writer { shared, thread }
    }

    /// Queues `entry` (copied) with `tag`; the completion handler gets the tag back with the
    /// message's sequence once it is stored, or with the error that kept it out. `Err` gives
    /// the tag straight back when there is no writer thread (it could not be started): nothing
    /// was queued and the handler will not be called for it.
    pub fn append(&self, entry: &Entry<'_>, tag: T) -> std::result::Result<(), T> {
        self.append_and_wake(entry, None, tag)
    }

    /// [`append`](Writer::append) under conditions checked as it is appended
    /// ([`Log::append_expecting`]).
    pub fn append_expecting(
        &self,
        entry: &Entry<'_>,
        expect: Expect,
        tag: T,
    ) -> std::result::Result<(), T> {
        self.append_and_wake(entry, Some(Box::new(expect)), tag)
    }

    /// Queues `entry` and wakes the thread for the first message of a batch.
    fn append_and_wake(
        &self,
        entry: &Entry<'_>,
        expect: Option<Box<Expect>>,
        tag: T,
    ) -> std::result::Result<(), T> {
        if self.stage(entry, expect, tag)? == 0 {
            self.shared.ready.notify_one();
        }
        Ok(())
    }

    /// [`append`](Writer::append) (with conditions, if `expect`) that may leave the writer
    /// asleep: `Ok(true)` says the caller must call [`kick`](Writer::kick) for it to be
    /// stored, once it has queued what else it has at hand; `Ok(false)` that a kick is already
    /// owed for what was queued before it and takes this message too, or that the queue holds
    /// more than [`IN_PLACE_MOST`] and the thread was woken for it (a burst is appended while
    /// its reader goes on).
    pub fn append_deferred(
        &self,
        entry: &Entry<'_>,
        expect: Option<Expect>,
        tag: T,
    ) -> std::result::Result<bool, T> {
        let before = self.stage(entry, expect.map(Box::new), tag)?;
        if before == IN_PLACE_MOST {
            self.shared.ready.notify_one();
        }
        Ok(before == 0)
    }

    /// Stores what [`append_deferred`](Writer::append_deferred) queued: appended here, on the
    /// caller's thread, if the writer is idle, nobody is reading the log, at most
    /// [`IN_PLACE_MOST`] messages are queued and no fsync is owed per batch
    /// ([`Fsync::Always`] is left to the thread, as is every fsync); otherwise by the writer
    /// thread. In place saves a waiting publisher the thread's wake-up and its own.
    pub fn kick(&self) {
        if !self.append_in_place() {
            self.shared.ready.notify_one();
        }
    }

    /// What [`kick`](Writer::kick) appends here; `false` leaves the queue to the thread.
    fn append_in_place(&self) -> bool {
        let shared = &*self.shared;
        if shared.fsync == Fsync::Always || NOT_IN_PLACE.with(Cell::get) {
            return false;
        }
        // Held: the thread is appending, and looks at the queue again when done.
        let Ok(mut work) = shared.work.try_lock() else {
            return false;
        };
        match lock(&shared.queue).staged.items.len() {
            // Taken by the thread already.
            0 => return true,
            // Too many for here (plain appends wake the thread only for a first message).
            n if n > IN_PLACE_MOST => return false,
            _ => {}
        }
        // Held by a reader of the log (a purge, a long scan): the thread waits for it, the
        // caller does not.
        let Ok(log) = shared.log.try_lock() else {
            return false;
        };
        let in_place = InPlace::enter();
        let outcome = process(shared, &mut work, log, SyncRule::Never);
        drop(in_place);
        drop(work);
        if outcome.newly_unsynced && matches!(shared.fsync, Fsync::Interval(_)) {
            // The thread may be waiting with no deadline: it owes an fsync now. Under the
            // queue's lock, where the thread reads `unsynced` before it waits: it either
            // sees it set or is waiting already.
            let _queue = lock(&shared.queue);
            shared.ready.notify_one();
        }
        true
    }

    /// Copies `entry` into the queue; says how many messages it held before (whoever staged
    /// the first message of a batch wakes the writer, or has it woken).
    fn stage(
        &self,
        entry: &Entry<'_>,
        expect: Option<Box<Expect>>,
        tag: T,
    ) -> std::result::Result<usize, T> {
        if self.thread.is_none() {
            return Err(tag);
        }
        let mut queue = lock(&self.shared.queue);
        let staged = &mut queue.staged;
        let before = staged.items.len();
        staged.bytes.extend_from_slice(entry.subject.as_bytes());
        staged.bytes.extend_from_slice(entry.headers);
        staged.bytes.extend_from_slice(entry.payload);
        staged.items.push(Item {
            timestamp: entry.timestamp,
            subject: entry.subject.len(),
            headers: entry.headers.len(),
            payload: entry.payload.len(),
            expect,
            tag,
        });
        queue.total += 1;
        Ok(before)
    }

    /// Waits until every message queued before this call is completed (appended, or refused,
    /// and its handler called), or until `timeout`; says whether they were. What is done to
    /// the log afterwards comes after them (a purge that must see every earlier message).
    pub fn drain(&self, timeout: Duration) -> bool {
        if self.thread.is_none() {
            return true;
        }
        let target = lock(&self.shared.queue).total;
        self.shared.draining.fetch_add(1, SeqCst);
        let completed = || self.shared.completed.load(SeqCst);
        let guard = lock(&self.shared.progress_lock);
        let waited = self
            .shared
            .progress
            .wait_timeout_while(guard, timeout, |()| completed() < target)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        drop(waited);
        self.shared.draining.fetch_sub(1, SeqCst);
        completed() >= target
    }

    /// The log, for reading (held briefly: the writer needs it for each batch).
    pub fn log(&self) -> MutexGuard<'_, Log> {
        lock(&self.shared.log)
    }

    /// How many times the writer has fsynced (fewer than appends under load: group commit).
    pub fn syncs(&self) -> u64 {
        self.shared.syncs.load(Relaxed)
    }
}

impl<T: Send + 'static> Drop for Writer<T> {
    /// Completes what is queued, stops the thread, and closes the log as [`Log::close`] does
    /// (synced, the active segment's index written).
    fn drop(&mut self) {
        lock(&self.shared.queue).closed = true;
        self.shared.ready.notify_one();
        if let Some(thread) = self.thread.take()
            // Dropped from a completion (its handler held the last reference): the thread
            // finishes on its own after this batch.
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

/// When a batch is fsynced.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SyncRule {
    /// Not now (a caller appending in place, or an interval not yet over).
    Never,
    /// If the batch appended anything (group commit under [`Fsync::Always`]).
    IfAppended,
    /// If anything was written since the last fsync (an interval that is over).
    IfUnsynced,
}

/// What one [`process`] did.
struct Outcome {
    /// The queue was closed when the batch was taken.
    closed: bool,
    /// It fsynced.
    synced: bool,
    /// It wrote what is not fsynced, where all was before.
    newly_unsynced: bool,
}

/// Takes what is queued, appends it to `log` (released once written), fsyncs as `sync`
/// says, and completes it.
fn process<T>(
    shared: &Shared<T>,
    work: &mut Work<T>,
    mut log: MutexGuard<'_, Log>,
    sync: SyncRule,
) -> Outcome {
    let Work {
        batch,
        results,
        done,
    } = work;
    // Left by a batch whose completion panicked (its messages may be stored or not): never
    // appended twice. Their publishers get no answer.
    batch.bytes.clear();
    batch.items.clear();
    let closed = {
        let mut queue = lock(&shared.queue);
        std::mem::swap(&mut queue.staged, batch);
        queue.closed
    };
    results.clear();
    let handle = {
        let mut at = 0;
        for item in &batch.items {
            let subject = &batch.bytes[at..at + item.subject];
            let headers = &batch.bytes[at + item.subject..at + item.subject + item.headers];
            let end = at + item.subject + item.headers + item.payload;
            let payload = &batch.bytes[at + item.subject + item.headers..end];
            at = end;
            results.push(match std::str::from_utf8(subject) {
                Ok(subject) => {
                    let entry = Entry {
                        subject,
                        headers,
                        payload,
                        timestamp: item.timestamp,
                    };
                    match &item.expect {
                        None => log.append(&entry),
                        Some(expect) => log.append_expecting(&entry, expect),
                    }
                }
                Err(_) => Err(crate::Error::FieldTooLong),
            });
        }
        match log.flush() {
            Ok(()) => log.sync_handle(),
            Err(err) => {
                // Nothing of this batch reached the file: fail it all.
                let text = err.to_string();
                for r in results.iter_mut().filter(|r| r.is_ok()) {
                    *r = Err(crate::Error::Io {
                        path: log.dir().to_owned(),
                        source: std::io::Error::other(text.clone()),
                    });
                }
                None
            }
        }
    };
    drop(log);
    let appended = !batch.items.is_empty();
    let due = match sync {
        SyncRule::Never => false,
        SyncRule::IfAppended => appended,
        SyncRule::IfUnsynced => appended || shared.unsynced.load(SeqCst),
    };
    let mut newly_unsynced = false;
    if due {
        let synced = match &handle {
            Some((file, path)) => file
                .sync_data()
                .map_err(|e| format!("{}: fsync: {e}", path.display())),
            None => Err("no handle on the segment to fsync".to_owned()),
        };
        shared.syncs.fetch_add(1, Relaxed);
        shared.unsynced.store(false, SeqCst);
        if let Err(text) = synced {
            tracing::error!("{text}");
            if shared.fsync == Fsync::Always {
                for r in results.iter_mut().filter(|r| r.is_ok()) {
                    *r = Err(crate::Error::Io {
                        path: Default::default(),
                        source: std::io::Error::other(text.clone()),
                    });
                }
            }
        }
    } else if appended {
        newly_unsynced = !shared.unsynced.swap(true, SeqCst);
    }
    batch.bytes.clear();
    let count = batch.items.len() as u64;
    if count > 0 {
        done(Completions {
            items: batch.items.drain(..),
            results: results.drain(..),
        });
    }
    // What a handler left untaken is dropped.
    batch.items.clear();
    results.clear();
    if count > 0 {
        // No lock per batch: only a drain in progress is woken (under its lock, so that a
        // drain about to wait does not miss it).
        shared.completed.fetch_add(count, SeqCst);
        if shared.draining.load(SeqCst) > 0 {
            let _held = lock(&shared.progress_lock);
            shared.progress.notify_all();
        }
    }
    Outcome {
        closed,
        synced: due,
        newly_unsynced,
    }
}

fn run<T>(shared: &Shared<T>) {
    NOT_IN_PLACE.with(|c| c.set(true));
    let mut last_sync = Instant::now();
    loop {
        let sync = {
            let mut queue = lock(&shared.queue);
            loop {
                if !queue.staged.items.is_empty() || queue.closed {
                    break;
                }
                match shared.fsync {
                    Fsync::Interval(every) if shared.unsynced.load(SeqCst) => {
                        let left = every.saturating_sub(last_sync.elapsed());
                        if left.is_zero() {
                            break;
                        }
                        queue = shared
                            .ready
                            .wait_timeout(queue, left)
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .0;
                    }
                    _ => {
                        queue = shared
                            .ready
                            .wait(queue)
                            .unwrap_or_else(|poisoned| poisoned.into_inner());
                    }
                }
            }
            match shared.fsync {
                Fsync::Always => SyncRule::IfAppended,
                Fsync::Interval(every) if last_sync.elapsed() >= every => SyncRule::IfUnsynced,
                _ => SyncRule::Never,
            }
        };
        // A caller appending in place may hold it: the batch it took is done when it is free.
        let mut work = lock(&shared.work);
        let outcome = process(shared, &mut work, lock(&shared.log), sync);
        drop(work);
        if outcome.synced {
            last_sync = Instant::now();
        }
        if outcome.closed && lock(&shared.queue).staged.items.is_empty() {
            break;
        }
    }
    // A clean shutdown: the last sync, and the active segment's index for a fast next open.
    let mut log = lock(&shared.log);
    if let Err(err) = log.close_in_place() {
        tracing::error!(%err, "closing the log failed");
    }
}
