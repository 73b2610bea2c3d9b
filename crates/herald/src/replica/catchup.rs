//! Catching a replica's stream up from another member's copy: what a replica needs when the
//! group's log no longer holds the entries it missed (they were compacted into a snapshot),
//! or when its own copy was cut short while the log before its snapshot is gone.
//!
//! A member answers `catchup` requests (`{from, to}`) with the records its stream keeps in
//! that range, in pages of about [`PAGE_BYTES`], each with its sequence and stamp. The
//! replica stores them as they are, under the same sequences: a sequence the other copy does
//! not keep (deleted there, or dropped by a limit) is stored as an empty record and deleted at
//! once, so both copies number their messages alike. Stream limits are lifted while records
//! are stored (the other copy applied them already) and enforced again after.

use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::Router;
use crate::raft::network;
use crate::streams::stream::Stream;

/// About how many bytes of records one answer carries.
pub(crate) const PAGE_BYTES: usize = 1 << 20;

/// How long one page may take to come (then the next member is asked).
const PAGE_WAIT: Duration = Duration::from_secs(3);

/// The RPC's name under the group's prefix.
pub(crate) const RPC: &str = "catchup";

#[derive(Serialize, Deserialize)]
struct Ask {
    from: u64,
    to: u64,
    /// Asks for the sequences in the range this copy does not keep, instead of records.
    #[serde(default)]
    gaps: bool,
}

/// One page of records, and where the next page starts.
#[derive(Serialize, Deserialize)]
struct Page {
    records: Vec<Record>,
    next: u64,
}

#[derive(Serialize, Deserialize)]
struct Record {
    seq: u64,
    ts: u64,
    subject: String,
    /// Base64.
    headers: String,
    /// Base64.
    payload: String,
}

/// Answers a `catchup` request from this member's copy of the stream: a page of records from
/// `from` on (none past `to`), or an error when the copy does not reach `to`.
pub(crate) fn answer(stream: &Stream, request: &[u8]) -> Vec<u8> {
    let body = match serde_json::from_slice::<Ask>(request) {
        Ok(ask) if ask.gaps => match gaps(stream, &ask) {
            Ok(gaps) => serde_json::json!({ "gaps": gaps }),
            Err(why) => serde_json::json!({ "err": why }),
        },
        Ok(ask) => match page(stream, &ask) {
            Ok(page) => serde_json::json!({ "ok": page }),
            Err(why) => serde_json::json!({ "err": why }),
        },
        Err(e) => serde_json::json!({ "err": format!("a malformed catch-up request: {e}") }),
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

fn page(stream: &Stream, ask: &Ask) -> Result<Page, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let log = stream.writer.log();
    let last = log.next_seq().saturating_sub(1);
    if last < ask.to {
        return Err(format!("this copy ends at {last}, before {}", ask.to));
    }
    let mut records = Vec::new();
    let mut bytes = 0;
    let mut next = ask.to + 1;
    log.scan(ask.from, |view| {
        if view.seq > ask.to {
            return false;
        }
        if bytes >= PAGE_BYTES {
            next = view.seq;
            return false;
        }
        bytes += view.size;
        records.push(Record {
            seq: view.seq,
            ts: view.entry.timestamp,
            subject: view.entry.subject.to_owned(),
            headers: b64.encode(view.entry.headers),
            payload: b64.encode(view.entry.payload),
        });
        true
    })
    .map_err(|e| format!("cannot read the stream: {e}"))?;
    Ok(Page { records, next })
}

/// The runs of sequences in `ask`'s range that this copy does not keep (deleted, purged,
/// dropped by a limit), as inclusive `[first, last]` pairs.
fn gaps(stream: &Stream, ask: &Ask) -> Result<Vec<[u64; 2]>, String> {
    let log = stream.writer.log();
    let last = log.next_seq().saturating_sub(1);
    if last < ask.to {
        return Err(format!("this copy ends at {last}, before {}", ask.to));
    }
    let mut gaps = Vec::new();
    let mut expected = ask.from;
    log.scan(ask.from, |view| {
        if view.seq > ask.to {
            return false;
        }
        if view.seq > expected {
            gaps.push([expected, view.seq - 1]);
        }
        expected = view.seq + 1;
        true
    })
    .map_err(|e| format!("cannot read the stream: {e}"))?;
    if expected <= ask.to {
        gaps.push([expected, ask.to]);
    }
    Ok(gaps)
}

/// Asks the `peers` in turn (Raft ids, in the group `prefix`) until one gives an answer
/// that `read` takes; otherwise says what each did.
async fn ask_peers<T>(
    router: &Router,
    prefix: &str,
    peers: &[u64],
    ask: &Ask,
    read: impl Fn(&[u8]) -> Result<T, String>,
) -> Result<T, String> {
    let body = serde_json::to_vec(ask).map_err(|e| e.to_string())?;
    let mut failures = Vec::new();
    for &peer in peers {
        let subject = network::subject(prefix, peer, RPC);
        match router.request(&subject, body.clone(), PAGE_WAIT).await {
            Ok(reply) => match read(reply.payload()) {
                Ok(answer) => return Ok(answer),
                Err(why) => failures.push(format!("{peer:016x}: {why}")),
            },
            Err(err) => failures.push(format!("{peer:016x}: {err}")),
        }
    }
    Err(failures.join("; "))
}

/// A member's answer: `{"ok": ..}` (records), `{"gaps": ..}`, or `{"err": why}`.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    Ok(Page),
    Gaps(Vec<[u64; 2]>),
    Err(String),
}

fn read_answer(body: &[u8]) -> Result<Answer, String> {
    match serde_json::from_slice::<Answer>(body) {
        Ok(Answer::Err(why)) => Err(why),
        Ok(answer) => Ok(answer),
        Err(e) => Err(format!("a malformed catch-up answer: {e}")),
    }
}

/// Deletes from `stream`'s copy, up to `to`, what the first of `peers` that answers no longer
/// keeps: messages deleted or purged while this copy missed the entries that did it.
pub(crate) async fn prune(
    router: &Router,
    prefix: &str,
    peers: &[u64],
    stream: &Stream,
    to: u64,
) -> Result<(), String> {
    let from = stream.writer.log().first_seq();
    if from > to {
        return Ok(());
    }
    let ask = Ask {
        from,
        to,
        gaps: true,
    };
    let gaps = ask_peers(router, prefix, peers, &ask, |body| {
        match read_answer(body)? {
            Answer::Gaps(gaps) => Ok(gaps),
            _ => Err("an answer without gaps".to_owned()),
        }
    })
    .await
    .map_err(|why| format!("no member told what it keeps: {why}"))?;
    let mut log = stream.writer.log();
    let failed = |e: herald_log::Error| format!("cannot delete a message: {e}");
    for [first, last] in gaps {
        if first <= from && last >= from {
            log.purge(Some(last + 1)).map_err(failed)?;
            continue;
        }
        for seq in first..=last.min(to) {
            log.delete(seq, false).map_err(failed)?;
        }
    }
    log.sync().map_err(failed)
}

/// Brings `stream`'s copy up to sequence `to` from the first of `peers` (Raft ids, in the
/// group `prefix`) that has it. Does nothing when the copy reaches `to` already.
pub(crate) async fn fetch(
    router: &Router,
    prefix: &str,
    peers: &[u64],
    stream: &Stream,
    to: u64,
) -> Result<(), String> {
    let mut from = stream.writer.log().next_seq();
    while from <= to {
        let ask = Ask {
            from,
            to,
            gaps: false,
        };
        let page = ask_peers(router, prefix, peers, &ask, |body| {
            match read_answer(body)? {
                Answer::Ok(page) if page.next > from => Ok(page),
                _ => Err("an empty page".to_owned()),
            }
        })
        .await
        .map_err(|why| format!("no member has the stream up to {to}: {why}"))?;
        from = store(stream, page, from)?;
    }
    Ok(())
}

/// Stores a page's records under their sequences (from `from`), the sequences between them
/// as deleted ones; returns the sequence after the page.
fn store(stream: &Stream, page: Page, from: u64) -> Result<u64, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let failed = |e: herald_log::Error| format!("cannot store a caught-up record: {e}");
    let mut log = stream.writer.log();
    let limits = log.config().clone();
    log.set_config(limits.without_limits()).map_err(failed)?;
    let stored = (|| {
        // Sequences kept nowhere are stored with the time of a neighbour: times rise along
        // the log.
        let mut last_ts = page
            .records
            .first()
            .map(|r| r.ts)
            .or_else(|| log.timestamp(log.next_seq().saturating_sub(1)))
            .unwrap_or(0);
        for record in &page.records {
            if record.seq < log.next_seq() {
                continue;
            }
            log.skip_to(record.seq, record.ts).map_err(failed)?;
            let headers = b64
                .decode(&record.headers)
                .map_err(|e| format!("a caught-up record's headers: {e}"))?;
            let payload = b64
                .decode(&record.payload)
                .map_err(|e| format!("a caught-up record's payload: {e}"))?;
            let seq = log
                .append(&herald_log::Entry {
                    subject: &record.subject,
                    headers: &headers,
                    payload: &payload,
                    timestamp: record.ts,
                })
                .map_err(failed)?;
            if seq != record.seq {
                return Err(format!("record {} stored as {seq}", record.seq));
            }
            last_ts = record.ts;
        }
        log.skip_to(page.next.max(from), last_ts).map_err(failed)?;
        log.sync().map_err(failed)
    })();
    let restored = log.set_config(limits).map_err(failed);
    stored?;
    restored?;
    let last = log.next_seq().saturating_sub(1);
    drop(log);
    stream.caught_up(last);
    Ok(page.next.max(from))
}
