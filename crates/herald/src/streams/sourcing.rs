//! Mirrors and sources: a stream that copies the messages of other streams of its store.
//!
//! One task per (stream, source) reads the source stream's log from where the copy stands,
//! up to what the source has committed, and copies what it reads:
//!
//! - **A mirror** keeps the messages as they are, under the origin's own sequences: the
//!   sequences the origin no longer holds are passed over
//!   ([`Log::skip_to`](herald_log::Log::skip_to)), so a mirror's message `n` is the origin's
//!   message `n`. Nothing else writes to a mirror (it has no subjects), so the task writes to
//!   its log directly, and resumes after the mirror's last sequence.
//! - **A source**'s messages are published into the stream through its writer, beside its
//!   own, with `Nats-Stream-Source: <stream> <sequence>` added; where the copy stands is read
//!   back at a restart from the last copied message's header.
//!
//! A task sleeps until the source commits more (or 250 ms, when the source stream does not
//! exist yet or the writer is behind). Each copy reports how far behind it is and when it
//! last read its source ([`Copying::info`]); an update of the stream's sources stops the
//! copies of those removed and starts those added.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use herald_log::{Entry, Fsync, Stored};
use tokio::sync::Notify;

use super::config::Source;
use super::info::SourceInfo;
use super::store::{Held, Store};
use crate::time::{now_nanos, unix_nanos};

/// The header a source's copied message carries.
pub(crate) const SOURCE_HEADER: &str = "Nats-Stream-Source";
/// Messages copied per round.
const BATCH: usize = 1024;
/// How long a task waits when there is nothing it can do now.
const RETRY: Duration = Duration::from_millis(250);

/// One copy that runs for a stream: its mirror or one of its sources.
pub(crate) struct Copying {
    pub(crate) source: Source,
    mirror: bool,
    stopped: AtomicBool,
    wake: Notify,
    /// When the copy last read its source (ns since the epoch; 0: never).
    active: AtomicU64,
    /// Source sequences after the last one copied.
    lag: AtomicU64,
}

impl Copying {
    /// How the copy stands.
    pub(crate) fn info(&self) -> SourceInfo {
        let active = match self.active.load(Ordering::Relaxed) {
            0 => None,
            at => Some(Duration::from_nanos(now_nanos().saturating_sub(at))),
        };
        SourceInfo {
            name: self.source.name.clone(),
            filter_subject: self.source.filter_subject.clone(),
            lag: self.lag.load(Ordering::Relaxed),
            active,
        }
    }

    /// Whether this is the stream's mirror.
    pub(crate) fn is_mirror(&self) -> bool {
        self.mirror
    }

    /// Stops the copy (what it copied stays).
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

/// Starts copying `source` into the stream of `target` (as its mirror if `mirror`).
pub(crate) fn start(store: &Arc<Store>, target: &Arc<Held>, source: Source, mirror: bool) {
    let copying = Arc::new(Copying {
        source,
        mirror,
        stopped: AtomicBool::new(false),
        wake: Notify::new(),
        active: AtomicU64::new(0),
        lag: AtomicU64::new(0),
    });
    target.copies.lock().push(copying.clone());
    let runtime = store.runtime.clone();
    runtime.spawn(copy(Arc::downgrade(store), Arc::downgrade(target), copying));
}

/// Where a stream's copy of `source` starts when it has copied nothing: where the source
/// config says, else the origin's first message.
fn configured_start(source: &Source, origin: &Held) -> u64 {
    let origin_log = origin.stream.writer.log();
    match (source.start_seq, source.start_time) {
        (Some(seq), _) => seq.max(1),
        (None, Some(at)) => origin_log.seq_for_time(unix_nanos(at)),
        (None, None) => origin_log.first_seq(),
    }
}

/// The source sequence a copied message's header names, if it names `source`.
fn copied_from(headers: &[u8], source: &str) -> Option<u64> {
    let headers = herald_proto::headers::parse(headers).ok()?;
    let (_, value) = headers.fields.iter().find(|(n, _)| *n == SOURCE_HEADER)?;
    let (name, seq) = value.split_once(' ')?;
    let seq = seq.split(' ').next()?;
    (name == source).then(|| seq.trim().parse().ok()).flatten()
}

/// The next sequence of a source to copy: after the last one the target holds, else where
/// the source config says to start.
fn source_resume_at(target: &Held, source: &Source, origin: &Held) -> u64 {
    // Copies an earlier copy of this source queued are in the log first.
    target.stream.writer.drain(RETRY);
    let mut last = None;
    let log = target.stream.writer.log();
    let _ = log.scan_with_headers(0, |view| {
        if let Some(seq) = copied_from(view.entry.headers, &source.name) {
            last = Some(seq);
        }
        true
    });
    drop(log);
    match last {
        Some(last) => last + 1,
        None => configured_start(source, origin),
    }
}

/// The next sequence of a mirror to copy: after its last one (its sequences are the
/// origin's), else where the config says. A mirror written by an earlier herald kept its
/// own sequences and named the origin's in a header: it goes on after that one.
fn mirror_resume_at(target: &Held, source: &Source, origin: &Held) -> u64 {
    let log = target.stream.writer.log();
    let next = log.next_seq();
    if next == 1 {
        drop(log);
        return configured_start(source, origin);
    }
    let by_header = log
        .get(next - 1)
        .ok()
        .flatten()
        .and_then(|last| copied_from(&last.headers, &source.name));
    by_header.map_or(next, |seq| seq + 1)
}

async fn copy(store: Weak<Store>, target: Weak<Held>, copying: Arc<Copying>) {
    let notify = Arc::new(Notify::new());
    let mut next = None;
    let mut following: Option<Weak<Held>> = None;
    let mut synced = Instant::now();
    // Stops following the source once the copy ends.
    let unfollow = |following: Option<Weak<Held>>| {
        if let Some(origin) = following.as_ref().and_then(Weak::upgrade) {
            origin.stream.unfollow(&notify);
        }
    };
    loop {
        let (Some(store), Some(target)) = (store.upgrade(), target.upgrade()) else {
            return unfollow(following);
        };
        if target.stream.closed.load(Ordering::Acquire) || copying.stopped.load(Ordering::Acquire) {
            return unfollow(following);
        }
        let source = &copying.source;
        let Ok(origin) = store.stream(&source.name) else {
            // Not there (yet): wait for it.
            drop((store, target));
            tokio::select! {
                () = copying.wake.notified() => {}
                () = tokio::time::sleep(RETRY) => {}
            }
            continue;
        };
        // Woken when the source commits more (a recreated source is followed anew).
        if !following
            .as_ref()
            .and_then(Weak::upgrade)
            .is_some_and(|f| Arc::ptr_eq(&f, &origin))
        {
            unfollow(following.take());
            origin.stream.follow(&notify);
            following = Some(Arc::downgrade(&origin));
        }
        let from = *next.get_or_insert_with(|| {
            if copying.mirror {
                mirror_resume_at(&target, source, &origin)
            } else {
                source_resume_at(&target, source, &origin)
            }
        });
        let batch = read_batch(&target, &origin, source, from);
        let copied = if copying.mirror {
            let sync = match store.fsync {
                Fsync::Always => true,
                Fsync::Interval(every) => synced.elapsed() >= every,
                Fsync::Never => false,
            };
            let copied = store_mirrored(&target, batch, sync);
            if sync {
                synced = Instant::now();
            }
            copied
        } else {
            publish_sourced(&target, source, batch)
        };
        next = Some(copied);
        let committed = origin.stream.committed();
        copying.active.store(now_nanos(), Ordering::Relaxed);
        copying.lag.store(
            committed.saturating_sub(copied.saturating_sub(1)),
            Ordering::Relaxed,
        );
        // No progress (a sealed mirror, a log that refuses): wait as when caught up.
        let caught_up = copied > committed || copied == from;
        drop((store, target, origin));
        if caught_up {
            tokio::select! {
                () = notify.notified() => {}
                () = copying.wake.notified() => {}
                () = tokio::time::sleep(RETRY) => {}
            }
        } else {
            tokio::task::yield_now().await;
        }
    }
}

/// What one round read from the source.
struct Batch {
    /// Where it started.
    from: u64,
    /// The source sequence after the last one read.
    next: u64,
    /// The messages to copy.
    messages: Vec<Stored>,
}

/// Reads up to [`BATCH`] messages of `origin` from `from` on.
fn read_batch(target: &Held, origin: &Held, source: &Source, from: u64) -> Batch {
    let committed = origin.stream.committed();
    let mut messages = Vec::new();
    let log = origin.stream.writer.log();
    let start = from.max(log.first_seq());
    let mut next = start;
    let scanned = log.scan(start, |view| {
        if view.seq > committed || messages.len() >= BATCH {
            return false;
        }
        next = view.seq + 1;
        let wanted = source
            .filter_subject
            .as_deref()
            .is_none_or(|f| crate::subject::matches(f, view.entry.subject));
        if wanted {
            messages.push(Stored {
                seq: view.seq,
                timestamp: view.entry.timestamp,
                subject: view.entry.subject.to_owned(),
                headers: view.entry.headers.to_vec(),
                payload: view.entry.payload.to_vec(),
            });
        }
        true
    });
    if messages.len() < BATCH {
        // Everything committed was read: the rest up to it (if deleted) is passed too.
        next = next.max((committed + 1).min(log.next_seq()));
    }
    drop(log);
    if let Err(err) = scanned {
        tracing::error!(stream = %target.stream.name, source = %source.name, %err, "cannot read the source stream");
        return Batch {
            from,
            next: from,
            messages: Vec::new(),
        };
    }
    Batch {
        from,
        next,
        messages,
    }
}

/// Publishes a source's messages into the stream; returns the next sequence to copy.
fn publish_sourced(target: &Held, source: &Source, batch: Batch) -> u64 {
    for m in batch.messages {
        let block = with_source(&m.headers, &source.name, m.seq);
        target
            .stream
            .append_copy(&m.subject, &block, &m.payload, m.timestamp);
    }
    batch.next
}

/// Stores a mirror's messages under the origin's sequences, passing over the ones it does
/// not hold; returns the next sequence to copy (where it stopped, if the log refused one).
fn store_mirrored(target: &Held, batch: Batch, sync: bool) -> u64 {
    let stream = &target.stream;
    if stream.config.lock().sealed {
        return batch.from;
    }
    // Nothing else writes to a mirror; anything queued before (a copy of an earlier herald)
    // goes first.
    stream.writer.drain(RETRY);
    let mut log = stream.writer.log();
    let mut next = batch.from;
    let mut stored = || -> herald_log::Result<()> {
        for m in &batch.messages {
            if m.seq >= log.next_seq() {
                log.skip_to(m.seq, m.timestamp)?;
                log.append(&Entry {
                    subject: &m.subject,
                    headers: &m.headers,
                    payload: &m.payload,
                    timestamp: m.timestamp,
                })?;
            }
            next = m.seq + 1;
        }
        let last_ts = batch
            .messages
            .last()
            .map_or_else(now_nanos, |m| m.timestamp);
        log.skip_to(batch.next, last_ts)?;
        next = batch.next;
        log.flush()?;
        if sync {
            log.sync()?;
        }
        Ok(())
    };
    if let Err(err) = stored() {
        tracing::error!(stream = %stream.name, %err, "cannot store a mirrored message");
        // What was appended is flushed with the next round or the stream's close.
    }
    // Readable as the log's lock goes: the count and the last sequence agree.
    stream.appended(log.next_seq().saturating_sub(1));
    drop(log);
    next
}

/// `headers` (a header block or empty) with the source's header added.
fn with_source(headers: &[u8], stream: &str, seq: u64) -> Vec<u8> {
    let mut block = if headers.is_empty() {
        b"NATS/1.0\r\n".to_vec()
    } else {
        headers[..headers.len().saturating_sub(2)].to_vec()
    };
    block.extend_from_slice(format!("{SOURCE_HEADER}: {stream} {seq}\r\n\r\n").as_bytes());
    block
}
