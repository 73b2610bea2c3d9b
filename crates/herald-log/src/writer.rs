//! Group commit: one thread appends for many publishers and makes each batch durable at once.
//!
//! Publishers hand [`Writer::append`] a message and a completion. The writer thread takes
//! everything queued, appends it all, writes it with one call, and under [`Fsync::Always`]
//! fsyncs once for the whole batch before completing any of it: concurrent publishers share
//! one fsync, and a completion with `Ok(seq)` means the message is on disk. The fsync runs
//! without the log's lock, so readers are not held up by it.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{Entry, Log, Result};

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

/// A message to append, owned so it can cross to the writer thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    /// The subject.
    pub subject: String,
    /// The header block, or empty.
    pub headers: Vec<u8>,
    /// The payload.
    pub payload: Vec<u8>,
    /// Nanoseconds since the Unix epoch.
    pub timestamp: u64,
}

type Done = Box<dyn FnOnce(Result<u64>) + Send>;

/// The appending thread of one log, shared by every publisher of its stream.
pub struct Writer {
    log: Arc<Mutex<Log>>,
    tx: Option<Sender<(Owned, Done)>>,
    thread: Option<JoinHandle<()>>,
    syncs: Arc<std::sync::atomic::AtomicU64>,
}

impl Writer {
    /// Starts the writer thread for `log`.
    pub fn spawn(log: Log, fsync: Fsync) -> Writer {
        let log = Arc::new(Mutex::new(log));
        let (tx, rx) = channel();
        let syncs = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let thread = std::thread::Builder::new()
            .name("herald-log-writer".into())
            .spawn({
                let log = log.clone();
                let syncs = syncs.clone();
                move || run(&log, &rx, fsync, &syncs)
            })
            .ok();
        Writer {
            log,
            tx: Some(tx),
            thread,
            syncs,
        }
    }

    /// Queues `msg`; `done` is called on the writer thread with its sequence once it is
    /// stored as the fsync policy says, or with the error that kept it out.
    pub fn append(&self, msg: Owned, done: impl FnOnce(Result<u64>) + Send + 'static) {
        let request = (msg, Box::new(done) as Done);
        if let Some(Err(std::sync::mpsc::SendError((_, done)))) =
            self.tx.as_ref().map(|tx| tx.send(request))
        {
            done(Err(crate::Error::Io {
                path: Default::default(),
                source: std::io::Error::other("the log writer has stopped"),
            }));
        }
    }

    /// The log, for reading (held briefly: the writer needs it for each batch).
    pub fn log(&self) -> MutexGuard<'_, Log> {
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many times the writer has fsynced (fewer than appends under load: group commit).
    pub fn syncs(&self) -> u64 {
        self.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Writer {
    /// Completes what is queued, stops the thread, and closes the log as [`Log::close`] does
    /// (synced, the active segment's index written).
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(
    log: &Mutex<Log>,
    rx: &Receiver<(Owned, Done)>,
    fsync: Fsync,
    syncs: &std::sync::atomic::AtomicU64,
) {
    let lock = || log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut last_sync = Instant::now();
    let mut unsynced = false;
    loop {
        let first = match fsync {
            Fsync::Interval(every) if unsynced => {
                match rx.recv_timeout(every.saturating_sub(last_sync.elapsed())) {
                    Ok(request) => Some(request),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            _ => match rx.recv() {
                Ok(request) => Some(request),
                Err(_) => break,
            },
        };
        let mut batch: Vec<(Owned, Done)> = first.into_iter().collect();
        batch.extend(rx.try_iter());
        let mut results = Vec::with_capacity(batch.len());
        let handle = {
            let mut log = lock();
            for (msg, _) in &batch {
                results.push(log.append(&Entry {
                    subject: &msg.subject,
                    headers: &msg.headers,
                    payload: &msg.payload,
                    timestamp: msg.timestamp,
                }));
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
        let due = match fsync {
            Fsync::Always => !batch.is_empty(),
            Fsync::Interval(every) => {
                last_sync.elapsed() >= every && (unsynced || !batch.is_empty())
            }
            Fsync::Never => false,
        };
        if due {
            let synced = match &handle {
                Some((file, path)) => file
                    .sync_data()
                    .map_err(|e| format!("{}: fsync: {e}", path.display())),
                None => Err("no handle on the segment to fsync".to_owned()),
            };
            syncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            last_sync = Instant::now();
            unsynced = false;
            if let Err(text) = synced {
                tracing::error!("{text}");
                if fsync == Fsync::Always {
                    for r in results.iter_mut().filter(|r| r.is_ok()) {
                        *r = Err(crate::Error::Io {
                            path: Default::default(),
                            source: std::io::Error::other(text.clone()),
                        });
                    }
                }
            }
        } else if !batch.is_empty() {
            unsynced = true;
        }
        for ((_, done), result) in batch.into_iter().zip(results) {
            done(result);
        }
    }
    // A clean shutdown: the last sync, and the active segment's index for a fast next open.
    let mut log = lock();
    if let Err(err) = log.close_in_place() {
        tracing::error!(%err, "closing the log failed");
    }
}
