//! Interest and work-queue retention: a message goes once the consumers that take it are done
//! with it, within the stream's limits as always.
//!
//! - On an interest stream, a message that no consumer's filters take is deleted as soon as
//!   it is stored, before any consumer can see it (its publisher still gets its sequence):
//!   the stream keeps what its consumers take ([`Takers`](super::stream::Takers)).
//! - After each acknowledgement, the acknowledged message is deleted if every consumer whose
//!   filters take its subject is done with it (for a work queue, that is its one consumer).
//! - Every stream tick, everything below the first message some consumer may still need is
//!   dropped (cumulative acks, deleted consumers, and, for interest, messages stored while
//!   the stream had no consumer at all). A work queue without consumers keeps its messages
//!   for the consumer to come.
//!
//! - A replica that does not lead its replicated stream runs no consumers: the leader does,
//!   and the group replicates their states into each replica's directory. Such a replica
//!   drops what is below the first message any of those states may still need, and keeps
//!   everything while it knows of no consumer (it cannot tell "nobody is interested" from a
//!   state not replicated yet). Its copy then stays close to the leader's, and the next
//!   leader, whose consumers start from those states, finds every message they need.
//!
//! Work queues also restrict their consumers ([`check_consumer`]): explicit acks, delivery
//! from the start, and at most one consumer per subject.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::config::{AckPolicy, ConsumerConfig, DeliverPolicy, Retention};
use super::error::{Error, Reason, Result};
use super::saved::Saved;
use super::store::Held;
use super::stream::Stream;
use crate::subject;

/// After consumer acks of `seq`: deletes it when everyone who takes it is done with it.
pub(crate) fn after_ack(held: &Held, seq: u64) {
    let stream = &held.stream;
    if stream.config.lock().retention == Retention::Limits {
        return;
    }
    let Ok(Some(message)) = stream.writer.log().get(seq) else {
        return;
    };
    let consumers: Vec<_> = held.consumers.read().values().cloned().collect();
    if consumers.iter().all(|c| c.done_with(seq, &message.subject))
        && let Err(err) = stream.writer.log().delete(seq, false)
    {
        tracing::error!(stream = %stream.name, seq, %err, "cannot remove an acknowledged message");
    }
}

/// Drops what every consumer is done with.
pub(crate) fn sweep(held: &Held) {
    let stream = &held.stream;
    let retention = stream.config.lock().retention;
    if retention == Retention::Limits {
        return;
    }
    let floor = if following(stream) {
        let mut floor = held.follower_floor.lock();
        if stream.states_changed.swap(false, Ordering::AcqRel) {
            *floor = floor_of_states(&stream.dir.join("consumers"));
        }
        match *floor {
            Some(floor) => floor,
            None => return,
        }
    } else {
        let consumers: Vec<_> = held.consumers.read().values().cloned().collect();
        match consumers.iter().map(|c| c.needs_from()).min() {
            Some(floor) => floor,
            // Nobody is interested: nothing is kept. A work queue waits for its consumer.
            None if retention == Retention::Interest => stream.committed() + 1,
            None => return,
        }
    };
    let mut log = stream.writer.log();
    let floor = floor.min(stream.committed() + 1);
    if floor > log.first_seq()
        && let Err(err) = log.discard_below(floor)
    {
        tracing::error!(stream = %stream.name, %err, "cannot remove consumed messages");
    }
}

/// Whether `stream` is a replica of a replicated stream that does not lead it (it captures
/// its subjects only while it leads).
fn following(stream: &Stream) -> bool {
    stream.replication.get().is_some() && !stream.capturing()
}

/// The first message any of the consumer states kept in `dir` may still need; `None` when
/// there is none, or one cannot be read (then everything is kept).
fn floor_of_states(dir: &Path) -> Option<u64> {
    let mut floor: Option<u64> = None;
    for (_, saved) in Saved::read_all(dir) {
        let needs = saved.ok()?.needs_from();
        floor = Some(floor.map_or(needs, |f| f.min(needs)));
    }
    floor
}

/// A work queue's rules for a new consumer `config` beside the `others` it has.
pub(crate) fn check_consumer<'a>(
    retention: Retention,
    config: &ConsumerConfig,
    others: impl Iterator<Item = &'a ConsumerConfig>,
) -> Result<()> {
    if retention != Retention::WorkQueue {
        return Ok(());
    }
    if config.ack_policy != AckPolicy::Explicit {
        return Err(Error::new(
            Reason::WorkQueueConsumer(10098),
            "workqueue stream requires explicit ack",
        ));
    }
    if config.deliver != DeliverPolicy::All {
        return Err(Error::new(
            Reason::WorkQueueConsumer(10101),
            "consumer must be deliver all on workqueue stream",
        ));
    }
    for other in others {
        if config.filter_subjects.is_empty() || other.filter_subjects.is_empty() {
            return Err(Error::new(
                Reason::WorkQueueConsumer(10099),
                "multiple non-filtered consumers not allowed on workqueue stream",
            ));
        }
        let overlap = config.filter_subjects.iter().any(|mine| {
            other
                .filter_subjects
                .iter()
                .any(|theirs| subject::overlaps(mine, theirs))
        });
        if overlap {
            return Err(Error::new(
                Reason::WorkQueueConsumer(10100),
                "filtered consumer not unique on workqueue stream",
            ));
        }
    }
    Ok(())
}
