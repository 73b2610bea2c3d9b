//! Mirrors and sources: a stream that copies the messages of other streams of its store.
//!
//! One task per (stream, source) reads the source stream's log from where the copy stands,
//! up to what the source has committed, and appends each message (its subject, headers and
//! payload, with `Nats-Stream-Source: <stream> <sequence>` added) to the stream through its
//! writer, as a publish would be. It sleeps until the source commits more (or 250 ms, when
//! the source stream does not exist yet or the writer is behind). Where the copy stands is
//! read back at a restart from the last copied message's header, so nothing is copied twice
//! or skipped as long as the stream keeps that message.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::config::Source;
use super::store::{Held, Store};
use crate::time::unix_nanos;

/// The header a copied message carries.
pub(crate) const SOURCE_HEADER: &str = "Nats-Stream-Source";
/// Messages copied per round.
const BATCH: usize = 1024;
/// How long a task waits when there is nothing it can do now.
const RETRY: Duration = Duration::from_millis(250);

/// Starts copying `source` into the stream of `target`.
pub(crate) fn start(store: &Arc<Store>, target: &Arc<Held>, source: Source) {
    let runtime = store.runtime.clone();
    runtime.spawn(copy(Arc::downgrade(store), Arc::downgrade(target), source));
}

/// The next sequence of `source` to copy: after the last one the target holds, else where
/// the source config says to start.
fn resume_at(target: &Held, source: &Source, origin: &Held) -> u64 {
    let mut last = None;
    let log = target.stream.writer.log();
    let _ = log.scan_with_headers(0, |view| {
        if let Ok(headers) = herald_proto::headers::parse(view.entry.headers)
            && let Some((_, value)) = headers.fields.iter().find(|(n, _)| *n == SOURCE_HEADER)
            && let Some((name, seq)) = value.split_once(' ')
            && name == source.name
            && let Ok(seq) = seq.trim().parse::<u64>()
        {
            last = Some(seq);
        }
        true
    });
    drop(log);
    if let Some(last) = last {
        return last + 1;
    }
    let origin_log = origin.stream.writer.log();
    match (source.start_seq, source.start_time) {
        (Some(seq), _) => seq.max(1),
        (None, Some(at)) => origin_log.seq_for_time(unix_nanos(at)),
        (None, None) => origin_log.first_seq(),
    }
}

async fn copy(store: Weak<Store>, target: Weak<Held>, source: Source) {
    let notify = Arc::new(Notify::new());
    let mut next = None;
    let mut following: Option<Weak<Held>> = None;
    loop {
        let (Some(store), Some(target)) = (store.upgrade(), target.upgrade()) else {
            return;
        };
        if target
            .stream
            .closed
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return;
        }
        let Ok(origin) = store.stream(&source.name) else {
            // Not there (yet): wait for it.
            drop((store, target));
            tokio::time::sleep(RETRY).await;
            continue;
        };
        // Woken when the source commits more (a recreated source is followed anew).
        if !following
            .as_ref()
            .and_then(Weak::upgrade)
            .is_some_and(|f| Arc::ptr_eq(&f, &origin))
        {
            origin.stream.follow(&notify);
            following = Some(Arc::downgrade(&origin));
        }
        let from = *next.get_or_insert_with(|| resume_at(&target, &source, &origin));
        let copied = copy_batch(&target, &origin, &source, from);
        next = Some(copied);
        let caught_up = copied > origin.stream.committed();
        drop((store, target, origin));
        if caught_up {
            tokio::select! {
                () = notify.notified() => {}
                () = tokio::time::sleep(RETRY) => {}
            }
        } else {
            tokio::task::yield_now().await;
        }
    }
}

/// Copies up to [`BATCH`] messages of `origin` from `from` on; returns the next sequence to
/// copy.
fn copy_batch(target: &Held, origin: &Held, source: &Source, from: u64) -> u64 {
    let committed = origin.stream.committed();
    let mut next = from;
    let mut copies = Vec::new();
    {
        let log = origin.stream.writer.log();
        let from = from.max(log.first_seq());
        next = next.max(from);
        let scanned = log.scan(from, |view| {
            if view.seq > committed || copies.len() >= BATCH {
                return false;
            }
            next = view.seq + 1;
            let wanted = source
                .filter_subject
                .as_deref()
                .is_none_or(|f| crate::subject::matches(f, view.entry.subject));
            if wanted {
                copies.push((
                    view.seq,
                    view.entry.subject.to_owned(),
                    view.entry.headers.to_vec(),
                    view.entry.payload.to_vec(),
                    view.entry.timestamp,
                ));
            }
            true
        });
        if let Err(err) = scanned {
            tracing::error!(stream = %target.stream.name, source = %source.name, %err, "cannot read the source stream");
            return from;
        }
    }
    for (seq, subject, headers, payload, timestamp) in copies {
        let block = with_source(&headers, &source.name, seq);
        target
            .stream
            .append_copy(&subject, &block, &payload, timestamp);
    }
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
