//! One ring shared by every plain drop-oldest subscription of a pattern (made through the same
//! router, with the same capacity): a publish writes the message once, and each subscription
//! reads it at its own cursor.
//!
//! Per-subscription queues cost a publish one enqueue per subscriber and keep one copy of every
//! reference per subscriber; here a publish claims one position and writes one slot, however
//! many read it. A reader pays what it would pay with a queue of its own: one slot lock and one
//! reference count per message.
//!
//! Positions are *stamps*: a lap number times `one_lap` (the capacity rounded up to a power of
//! two) plus an index below the capacity, as in `crossbeam_queue::ArrayQueue`. Stamps grow
//! monotonically, a slot's index is a mask of its stamp, and the ring holds exactly `capacity`
//! slots, so drop-oldest keeps exactly the newest `capacity` messages for every reader, without
//! a division on the hot path.
//!
//! Each slot is a spin lock around the stamp it holds and its message: readers clone the
//! message under it, writers replace it, both for a few instructions; the lock's release is a
//! plain store. A reader whose slot holds a newer stamp than it expects was lapped: it jumps to
//! the oldest message still kept and counts the ones it missed.
//!
//! Publishers claim positions in order and write them in any order: a publisher stalled
//! between its claim and its write (preempted) holds back every reader of the ring at that
//! position until it writes, as in any multi-producer ring; readers lapped meanwhile lose the
//! oldest messages as usual.
//!
//! Waking readers costs a publisher one plain load while they are busy: a reader that finds
//! nothing leaves its waker, raises `asleep`, then looks at its slot once more. The publisher
//! that writes that slot loads `asleep` after releasing the slot's lock; the slot lock orders
//! the two (either the reader's second look comes after the write and sees it, or the write's
//! lock acquisition comes after the reader's release, and then the raised flag is visible to
//! the publisher's load). A raised flag makes the publisher wake every sleeping reader.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;
use smallvec::SmallVec;
use spin::mutex::{SpinMutex, SpinMutexGuard};

use bytes::Bytes;

use crate::message::{Headers, Message};
use crate::subject::Subject;

/// What subscriptions sharing one ring have in common: they see exactly the same messages.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct RingKey {
    pub(crate) pattern: Arc<str>,
    /// The router that made them, so `publish_others` can skip them all.
    pub(crate) owner: u64,
    pub(crate) capacity: usize,
    pub(crate) node_only: bool,
}

/// Failed attempts at a slot's lock before each further attempt yields the thread: the holder
/// needs a few instructions, unless it was preempted.
const SPINS_BEFORE_YIELD: u32 = 64;

/// A value alone on its cache line(s), so that publishers claiming positions do not disturb
/// readers of the fields next to it.
#[repr(align(128))]
struct Padded<T>(T);

/// The ring of one group of subscriptions.
pub(crate) struct Fanout {
    /// The stamp the next publish claims.
    tail: Padded<AtomicU64>,
    slots: Box<[SpinMutex<Slot>]>,
    capacity: u64,
    /// `capacity` rounded up to a power of two: the stamp of lap `l`, index `i` is
    /// `l * one_lap + i`.
    one_lap: u64,
    /// Raised by a reader about to sleep; publishers wake the sleepers when it is up. Alone
    /// on its line: readers write it, every publish reads it.
    asleep: Padded<AtomicBool>,
    closed: AtomicBool,
    /// Set when the last reader left: messages written after that are taken back.
    retired: AtomicBool,
    members: Mutex<Members>,
}

/// One slot: the stamp of the message it holds plus one (0: never written), and the message.
#[derive(Default)]
struct Slot {
    seq: u64,
    msg: Option<Message>,
}

/// The readers of a ring and the wakers of those asleep.
#[derive(Default)]
struct Members {
    /// By member number: the waker a sleeping reader left.
    wakers: Vec<Option<Waker>>,
    /// Member numbers with a waker, to wake without scanning every member.
    sleeping: Vec<usize>,
    /// Member numbers free for reuse.
    free: Vec<usize>,
    count: usize,
}

/// How a read of one slot went.
enum Seen {
    Message(Message),
    /// The slot still holds an older message: nothing new yet (or its publisher is writing).
    Nothing,
    /// The slot holds a newer message: the reader was lapped.
    Lapped,
}

impl Fanout {
    /// A ring keeping the newest `capacity` messages (at least 1) for each reader.
    pub(crate) fn new(capacity: usize) -> Fanout {
        let capacity = capacity.max(1);
        Fanout {
            tail: Padded(AtomicU64::new(0)),
            slots: (0..capacity).map(|_| SpinMutex::default()).collect(),
            capacity: capacity as u64,
            one_lap: (capacity as u64).next_power_of_two(),
            asleep: Padded(AtomicBool::new(false)),
            closed: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            members: Mutex::default(),
        }
    }

    /// The stamp after `stamp`.
    #[inline(always)]
    fn advance(&self, stamp: u64) -> u64 {
        let index = stamp & (self.one_lap - 1);
        if index + 1 < self.capacity {
            stamp + 1
        } else {
            (stamp - index).wrapping_add(self.one_lap)
        }
    }

    /// How many positions precede `stamp`.
    fn ordinal(&self, stamp: u64) -> u64 {
        (stamp / self.one_lap) * self.capacity + (stamp & (self.one_lap - 1))
    }

    /// The stamp of position `ordinal`.
    fn stamp(&self, ordinal: u64) -> u64 {
        (ordinal / self.capacity) * self.one_lap + ordinal % self.capacity
    }

    #[inline(always)]
    fn slot(&self, stamp: u64) -> SpinMutexGuard<'_, Slot> {
        let slot = &self.slots[(stamp & (self.one_lap - 1)) as usize];
        match slot.try_lock() {
            Some(guard) => guard,
            None => lock_contended(slot),
        }
    }

    /// Writes `msg` for every reader, overwriting the oldest message, and wakes sleeping
    /// readers. Returns false (and keeps nothing) once the ring is closed.
    #[inline]
    pub(crate) fn push(&self, msg: Message) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            return false;
        }
        let stamp = self.claim();
        let replaced = self.write(stamp, msg);
        self.written(stamp);
        // The last reference to the message it replaced may go here, outside the lock.
        drop(replaced);
        true
    }

    /// [`push`](Fanout::push) of a message without reply subject or headers, given by its
    /// parts: the slot's previous message is refilled in place when no reader holds it any
    /// more, so a steady publisher allocates nothing.
    #[inline]
    pub(crate) fn publish(&self, subject: &Subject, mut payload: Bytes) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            return false;
        }
        let stamp = self.claim();
        let refilled = {
            let mut slot = self.slot(stamp);
            match &mut *slot {
                Slot {
                    seq,
                    msg: Some(held),
                } if *seq <= stamp => {
                    let refilled = held.refill(subject, &mut payload);
                    if refilled.is_some() {
                        *seq = stamp + 1;
                    }
                    refilled
                }
                _ => None,
            }
        };
        match refilled {
            Some(old_subject) => {
                self.written(stamp);
                // `payload` is the old message's now; both may be the last references.
                drop(old_subject);
                drop(payload);
            }
            None => {
                // Built with the slot's lock released: its readers never wait on an allocation.
                let fresh = Message::new(subject.clone(), None, Headers::NONE, payload, None);
                let replaced = self.write(stamp, fresh);
                self.written(stamp);
                drop(replaced);
            }
        }
        true
    }

    /// Puts `msg` in the slot of `stamp`; returns what is to be dropped (after the lock).
    #[inline(always)]
    fn write(&self, stamp: u64, msg: Message) -> Option<Message> {
        let mut slot = self.slot(stamp);
        if slot.seq <= stamp {
            slot.seq = stamp + 1;
            slot.msg.replace(msg)
        } else {
            // A publisher a whole lap ahead wrote first: this message is already among the
            // dropped ones.
            Some(msg)
        }
    }

    /// What a publish does once its slot is written: wake sleeping readers, and take the
    /// message back if the ring was retired meanwhile (nobody reads it, and a stale cached
    /// match may keep the ring alive).
    #[inline(always)]
    fn written(&self, stamp: u64) {
        if self.asleep.0.load(Ordering::SeqCst) {
            self.wake_sleepers();
        }
        if self.closed.load(Ordering::Relaxed) {
            self.written_after_close(stamp);
        }
    }

    #[cold]
    fn written_after_close(&self, stamp: u64) {
        if self.retired.load(Ordering::Acquire) {
            let mut slot = self.slot(stamp);
            let taken = (slot.seq == stamp + 1).then(|| slot.msg.take());
            drop(slot);
            drop(taken);
        }
    }

    /// Claims the next stamp.
    #[inline(always)]
    fn claim(&self) -> u64 {
        let mut stamp = self.tail.0.load(Ordering::Relaxed);
        while let Err(now) = self.tail.0.compare_exchange_weak(
            stamp,
            self.advance(stamp),
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            stamp = now;
        }
        stamp
    }

    /// The message at `stamp`, if it is there.
    #[inline(always)]
    fn read(&self, stamp: u64) -> Seen {
        let slot = self.slot(stamp);
        if slot.seq == stamp + 1
            && let Some(msg) = &slot.msg
        {
            Seen::Message(msg.clone())
        } else if slot.seq > stamp + 1 {
            Seen::Lapped
        } else {
            Seen::Nothing
        }
    }

    /// Wakes every sleeping reader.
    fn wake_sleepers(&self) {
        let wakers: SmallVec<[Waker; 8]> = {
            let mut members = self.members.lock();
            self.asleep.0.store(false, Ordering::Relaxed);
            let Members {
                wakers, sleeping, ..
            } = &mut *members;
            sleeping
                .drain(..)
                .filter_map(|m| wakers[m].take())
                .collect()
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// Leaves `waker` for member `member` and raises `asleep`, unless the member was cancelled:
    /// it may have left already, and its number may be another reader's now.
    fn sleep(&self, member: usize, cancelled: &AtomicBool, waker: &Waker) {
        let mut members = self.members.lock();
        // The member's cancel is stored before it leaves under this lock.
        if cancelled.load(Ordering::Acquire) {
            return;
        }
        let Members {
            wakers, sleeping, ..
        } = &mut *members;
        match &mut wakers[member] {
            Some(left) if left.will_wake(waker) => {}
            Some(left) => *left = waker.clone(),
            slot @ None => {
                *slot = Some(waker.clone());
                sleeping.push(member);
            }
        }
        self.asleep.0.store(true, Ordering::SeqCst);
    }

    /// Wakes member `member` if it sleeps.
    fn wake_member(&self, member: usize) {
        let waker = {
            let mut members = self.members.lock();
            let waker = members.wakers.get_mut(member).and_then(Option::take);
            members.sleeping.retain(|&m| m != member);
            waker
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// A new reader, starting after the messages published so far.
    pub(crate) fn join(self: &Arc<Self>) -> Reader {
        let member = {
            let mut members = self.members.lock();
            members.count += 1;
            match members.free.pop() {
                Some(member) => member,
                None => {
                    members.wakers.push(None);
                    members.wakers.len() - 1
                }
            }
        };
        Reader {
            fanout: self.clone(),
            next: AtomicU64::new(self.tail.0.load(Ordering::Acquire)),
            lost: AtomicU64::new(0),
            cancelled: AtomicBool::new(false),
            member,
        }
    }

    /// Removes member `member`; returns how many readers are left.
    fn leave(&self, member: usize) -> usize {
        let mut members = self.members.lock();
        if let Some(waker) = members.wakers.get_mut(member) {
            *waker = None;
        }
        members.sleeping.retain(|&m| m != member);
        members.free.push(member);
        members.count -= 1;
        members.count
    }

    /// Closes the ring: later publishes are refused, readers read what is left and then end.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake_sleepers();
    }

    /// Closes the ring and lets go of every message in it (its last reader left).
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.close();
        for slot in self.slots.iter() {
            let old = lock_contended(slot).msg.take();
            drop(old);
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Takes a slot's lock that was busy: spins a little, then yields between attempts, so a
/// reader or publisher preempted while holding it gets the CPU back.
#[cold]
fn lock_contended(slot: &SpinMutex<Slot>) -> SpinMutexGuard<'_, Slot> {
    let mut tries = 0u32;
    loop {
        if let Some(guard) = slot.try_lock() {
            return guard;
        }
        if tries < SPINS_BEFORE_YIELD {
            tries += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// One subscription's place in a [`Fanout`].
///
/// Only its subscription reads through it (`&mut` receive calls); other threads may cancel it
/// and ask what it dropped, hence the atomics.
pub(crate) struct Reader {
    fanout: Arc<Fanout>,
    /// The stamp of the next message to read.
    next: AtomicU64,
    /// Messages it was lapped past and has counted.
    lost: AtomicU64,
    cancelled: AtomicBool,
    member: usize,
}

impl Reader {
    /// The ring it reads.
    pub(crate) fn fanout(&self) -> &Arc<Fanout> {
        &self.fanout
    }

    /// The next message, without waiting.
    #[inline]
    pub(crate) fn pop(&self) -> Option<Message> {
        if self.cancelled.load(Ordering::Relaxed) {
            return None;
        }
        let fanout = &*self.fanout;
        let mut next = self.next.load(Ordering::Relaxed);
        loop {
            match fanout.read(next) {
                Seen::Message(msg) => {
                    self.next.store(fanout.advance(next), Ordering::Relaxed);
                    return Some(msg);
                }
                Seen::Nothing => return None,
                Seen::Lapped => next = self.catch_up(next),
            }
        }
    }

    /// Moves a lapped reader to the oldest message still kept, counting those it missed.
    #[cold]
    fn catch_up(&self, next: u64) -> u64 {
        let fanout = &*self.fanout;
        let behind = self.behind(next);
        if behind == 0 {
            return next;
        }
        let next = fanout.stamp(fanout.ordinal(next) + behind);
        self.lost.fetch_add(behind, Ordering::Relaxed);
        self.next.store(next, Ordering::Relaxed);
        next
    }

    /// How many messages a reader at `next` has been lapped past (0 when it is not behind).
    fn behind(&self, next: u64) -> u64 {
        let fanout = &*self.fanout;
        let tail = fanout.ordinal(fanout.tail.0.load(Ordering::Acquire));
        tail.saturating_sub(fanout.capacity)
            .saturating_sub(fanout.ordinal(next))
    }

    /// The next message, or `None` once cancelled, or closed and read to the end; else leaves
    /// the reader's waker for the next publish.
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        if let Some(msg) = self.pop() {
            return Poll::Ready(Some(msg));
        }
        if self.is_closed() {
            return Poll::Ready(None);
        }
        self.fanout.sleep(self.member, &self.cancelled, cx.waker());
        // Look again: a publish between the first look and raising the flag did not wake us.
        match self.pop() {
            Some(msg) => Poll::Ready(Some(msg)),
            None if self.is_closed() => Poll::Ready(None),
            None => Poll::Pending,
        }
    }

    /// Marks the reader cancelled (it reads nothing more) and wakes it; true only for the first
    /// call. Its subscription then leaves the ring with [`Reader::leave`].
    pub(crate) fn cancel(&self) -> bool {
        let first = !self.cancelled.swap(true, Ordering::AcqRel);
        if first {
            // What it lost so far is final: later publishes are not its losses.
            let behind = self.behind(self.next.load(Ordering::Relaxed));
            self.lost.fetch_add(behind, Ordering::Relaxed);
            self.fanout.wake_member(self.member);
        }
        first
    }

    /// Takes the reader out of its ring; returns how many readers are left.
    pub(crate) fn leave(&self) -> usize {
        self.fanout.leave(self.member)
    }

    /// True once cancelled, or once the ring is closed (its node is gone).
    pub(crate) fn is_closed(&self) -> bool {
        self.cancelled.load(Ordering::Acquire) || self.fanout.is_closed()
    }

    /// Messages it lost to drop-oldest so far, counting those overwritten and not yet noticed.
    pub(crate) fn dropped(&self) -> u64 {
        let lost = self.lost.load(Ordering::Relaxed);
        if self.cancelled.load(Ordering::Acquire) {
            return lost;
        }
        lost + self.behind(self.next.load(Ordering::Relaxed))
    }

    /// Messages published for it and not yet read (at most the capacity).
    pub(crate) fn len(&self) -> usize {
        if self.cancelled.load(Ordering::Relaxed) {
            return 0;
        }
        let fanout = &*self.fanout;
        let tail = fanout.ordinal(fanout.tail.0.load(Ordering::Acquire));
        let next = fanout.ordinal(self.next.load(Ordering::Relaxed));
        tail.saturating_sub(next).min(fanout.capacity) as usize
    }

    /// The most messages it keeps.
    pub(crate) fn capacity(&self) -> usize {
        self.fanout.capacity as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Count, number, numbered as msg, publish_then_close, read_in_order};

    fn drain(reader: &Reader) -> Vec<u32> {
        std::iter::from_fn(|| reader.pop())
            .map(|m| number(&m))
            .collect()
    }

    #[test]
    fn each_reader_keeps_the_newest_capacity_messages_and_counts_the_rest() {
        // 3 is not a power of two: the ring still keeps exactly 3.
        let fanout = Arc::new(Fanout::new(3));
        let early = fanout.join();
        for n in 0..2 {
            assert!(fanout.push(msg(n)));
        }
        let late = fanout.join();
        for n in 2..10 {
            assert!(fanout.push(msg(n)));
        }
        for reader in [&early, &late] {
            assert_eq!((reader.len(), reader.capacity()), (3, 3));
        }
        assert_eq!((early.dropped(), late.dropped()), (7, 5));
        assert_eq!(drain(&early), [7, 8, 9]);
        assert_eq!(drain(&late), [7, 8, 9]);
        assert_eq!((early.dropped(), late.dropped()), (7, 5), "counted once");
        assert!(early.pop().is_none() && early.len() == 0);
    }

    #[test]
    fn a_reader_part_way_through_loses_exactly_what_was_overwritten() {
        let fanout = Arc::new(Fanout::new(3));
        let reader = fanout.join();
        for n in 0..3 {
            fanout.push(msg(n));
        }
        assert_eq!(
            reader.pop().map(|m| m.text().unwrap().to_owned()),
            Some("0".into())
        );
        // 1 and 2 are kept; two more publishes push 1 out (3 newest: 2, 3, 4).
        fanout.push(msg(3));
        fanout.push(msg(4));
        assert_eq!(reader.dropped(), 1);
        assert_eq!(drain(&reader), [2, 3, 4]);
        // Laps of any length, with capacity 1.
        let one = Arc::new(Fanout::new(1));
        let reader = one.join();
        for lap in 0..5u32 {
            for n in 0..=lap {
                one.push(msg(lap * 10 + n));
            }
            assert_eq!(drain(&reader), [lap * 10 + lap]);
        }
        assert_eq!(reader.dropped(), (0..5).sum::<u64>());
    }

    #[test]
    fn a_slot_message_is_refilled_only_when_no_reader_holds_it() {
        let fanout = Arc::new(Fanout::new(1));
        let reader = fanout.join();
        let (s, t) = (Subject::new("s").unwrap(), Subject::new("t").unwrap());
        let text = |m: &Message| (m.subject().to_owned(), m.text().unwrap().to_owned());
        fanout.publish(&s, Bytes::from_static(b"1"));
        let kept = reader.pop().unwrap();
        // The reader holds message 1: the slot gets a new message, 1 stays as it was.
        fanout.publish(&s, Bytes::from_static(b"2"));
        assert_eq!(text(&kept), ("s".into(), "1".into()));
        assert_eq!(text(&reader.pop().unwrap()), ("s".into(), "2".into()));
        // Nobody holds 2 any more: it is refilled, with another subject too.
        fanout.publish(&t, Bytes::from_static(b"3"));
        assert_eq!(text(&reader.pop().unwrap()), ("t".into(), "3".into()));
        let shared = Message::new(
            s.clone(),
            None,
            Headers::NONE,
            Bytes::from_static(b"4"),
            None,
        );
        fanout.push(shared.clone());
        fanout.publish(&s, Bytes::from_static(b"5"));
        assert_eq!(
            text(&shared),
            ("s".into(), "4".into()),
            "a pushed message is never refilled while shared"
        );
        assert_eq!(text(&reader.pop().unwrap()), ("s".into(), "5".into()));
        assert_eq!(reader.dropped(), 1);
        // A message with a reply subject is replaced, never refilled: no reply leaks into the
        // next message.
        let reply = Some(Subject::new("r").unwrap());
        fanout.push(Message::new(
            s.clone(),
            reply,
            Headers::NONE,
            Bytes::from_static(b"6"),
            None,
        ));
        assert_eq!(reader.pop().unwrap().reply(), Some("r"));
        fanout.publish(&s, Bytes::from_static(b"7"));
        let seventh = reader.pop().unwrap();
        assert_eq!(
            (text(&seventh), seventh.reply()),
            (("s".into(), "7".into()), None)
        );
    }

    #[test]
    fn sleeping_readers_are_woken_by_a_publish_a_cancel_and_a_close() {
        let fanout = Arc::new(Fanout::new(4));
        let (a, b) = (fanout.join(), fanout.join());
        let ((ca, wa), (cb, wb)) = (Count::waker(), Count::waker());
        assert!(a.poll_recv(&mut Context::from_waker(&wa)).is_pending());
        assert!(b.poll_recv(&mut Context::from_waker(&wb)).is_pending());
        // Polling again with the same waker leaves it once.
        assert!(a.poll_recv(&mut Context::from_waker(&wa)).is_pending());
        fanout.push(msg(1));
        fanout.push(msg(2));
        let woken = || (ca.get(), cb.get());
        assert_eq!(woken(), (1, 1), "one wake each until they poll again");
        assert!(matches!(
            a.poll_recv(&mut Context::from_waker(&wa)),
            Poll::Ready(Some(_))
        ));
        assert_eq!(drain(&b), [1, 2]);
        assert!(b.poll_recv(&mut Context::from_waker(&wb)).is_pending());
        assert!(b.cancel() && !b.cancel());
        assert_eq!(woken(), (1, 2));
        assert!(matches!(
            b.poll_recv(&mut Context::from_waker(&wb)),
            Poll::Ready(None)
        ));
        assert_eq!(b.leave(), 1);
        // The cancelled reader keeps nothing; the other still has message 2.
        assert!(b.pop().is_none());
        fanout.close();
        assert!(!fanout.push(msg(3)), "a closed ring takes nothing");
        assert!(matches!(
            a.poll_recv(&mut Context::from_waker(&wa)),
            Poll::Ready(Some(_))
        ));
        assert!(matches!(
            a.poll_recv(&mut Context::from_waker(&wa)),
            Poll::Ready(None)
        ));
    }

    #[test]
    fn a_cancelled_reader_leaves_no_waker_where_a_new_reader_took_its_number() {
        let fanout = Arc::new(Fanout::new(4));
        let _other = fanout.join();
        let gone = fanout.join();
        assert!(gone.cancel());
        assert_eq!(gone.leave(), 1);
        // The new reader gets the number `gone` had.
        let new = fanout.join();
        let ((cn, wn), (cg, wg)) = (Count::waker(), Count::waker());
        assert!(new.poll_recv(&mut Context::from_waker(&wn)).is_pending());
        // A task of the cancelled reader that saw it open just before the cancel (a callback
        // runner) goes on to leave its waker.
        fanout.sleep(gone.member, &gone.cancelled, &wg);
        assert!(matches!(
            gone.poll_recv(&mut Context::from_waker(&wg)),
            Poll::Ready(None)
        ));
        fanout.push(msg(1));
        assert_eq!(
            (cn.get(), cg.get()),
            (1, 0),
            "the publish wakes the new reader, not the cancelled one"
        );
    }

    #[test]
    fn what_a_cancelled_reader_dropped_stops_counting() {
        let fanout = Arc::new(Fanout::new(2));
        let (_other, reader) = (fanout.join(), fanout.join());
        for n in 0..5 {
            fanout.push(msg(n));
        }
        assert_eq!(reader.dropped(), 3);
        reader.cancel();
        for n in 5..10 {
            fanout.push(msg(n));
        }
        assert_eq!(reader.dropped(), 3);
    }

    #[test]
    fn a_retired_ring_lets_go_of_its_messages() {
        let fanout = Arc::new(Fanout::new(2));
        let reader = fanout.join();
        let kept = msg(1);
        fanout.push(kept.clone());
        assert_eq!(reader.leave(), 0);
        fanout.retire();
        assert_eq!(kept.holders(), 1, "only the test holds the message");
        assert!(!fanout.push(msg(2)));
        // A publisher that passed the closed check just before the retire writes afterwards:
        // it takes its message back.
        let late = msg(3);
        let stamp = fanout.claim();
        drop(fanout.write(stamp, late.clone()));
        fanout.written(stamp);
        assert_eq!(
            late.holders(),
            1,
            "the retired ring let go of the late message"
        );
    }

    /// Several publishers on other threads and two readers that sleep whenever the ring is
    /// empty: each reader gets every message or counts it as dropped, none twice, each
    /// publisher's order holds, and no reader sleeps through a publish.
    #[test]
    fn concurrent_publishers_and_sleeping_readers_lose_nothing() {
        let fanout = Arc::new(Fanout::new(64));
        let readers = [fanout.join(), fanout.join()];
        let closer = publish_then_close(
            {
                let fanout = fanout.clone();
                move |m| fanout.push(m)
            },
            {
                let fanout = fanout.clone();
                move || fanout.close()
            },
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let tasks: Vec<_> = readers
                .into_iter()
                .map(|reader| {
                    tokio::spawn(async move {
                        let reading = read_in_order(|cx| reader.poll_recv(cx)).await;
                        reading.check(reader.dropped());
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        });
        closer.join().unwrap();
    }
}
