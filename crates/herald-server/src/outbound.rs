//! A client's outbound side: the bounded buffer publishers append to, and the writer task that
//! drains it into the socket.
//!
//! Publishers (any connection's reader, or the embedded library) encode `MSG`/`HMSG` straight
//! into [`Outbound`]'s buffer under a short lock. Appending to an empty buffer schedules one
//! wake-up of the writer; while a reader works through one read buffer, those wake-ups are
//! collected ([`Batch`](herald::batch::Batch)) and sent once at its end, so a burst of publishes costs each
//! subscriber one wake-up, not one per message. The writer swaps the whole buffer out and
//! writes it with a single call, so everything queued meanwhile leaves in one syscall.
//!
//! A buffer past `max_pending` bytes (queued plus being written) makes its client a slow
//! consumer: by default it is closed with `-ERR 'Slow Consumer'`; the publisher never waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use herald::batch::{Batch, Wake};
use herald::{Delivery, Target};
use herald_proto::encode;
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

use crate::auth::Responses;
use crate::config::SlowConsumerPolicy;
use crate::stats::Stats;

/// A connection's writing half: a TCP socket's, or a TLS stream's.
pub(crate) type BoxWrite = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

/// The most queued output a producer writes in place ([`Outbound::flush`]); more is a burst,
/// left to the writer task so that writing it overlaps the producer's next work.
const IN_PLACE_MAX: usize = 16 * 1024;

/// Where a connection's output goes.
pub(crate) enum Socket {
    /// A plain TCP socket: besides the writer task, a publisher waking the writer may write
    /// to it in place when the writer is idle ([`Outbound::flush`]).
    Tcp(OwnedWriteHalf),
    /// Anything else (a TLS stream): only the writer task writes.
    Boxed(BoxWrite),
}

/// Why a connection closes; shown in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Close {
    /// The client went away (EOF or a socket error).
    ClientGone,
    /// A protocol violation, already answered with -ERR.
    Protocol,
    /// Its outbound buffer overflowed or a write blocked past the deadline.
    SlowConsumer,
    /// It missed too many pings.
    Stale,
    /// The server is shutting down.
    Shutdown,
}

struct State {
    /// Encoded output not yet handed to the writer.
    buf: Vec<u8>,
    /// Bytes the writer took and has not finished writing.
    in_flight: usize,
    /// Set once; no more output is accepted after it.
    closed: Option<Close>,
    /// Messages appended (for statistics).
    msgs: u64,
    /// A plain TCP connection's socket, which a publisher may write to in place (see
    /// [`Outbound::flush`]); `None` for TLS, and once the writer has finished.
    direct: Option<Arc<OwnedWriteHalf>>,
}

/// The outbound buffer of one client connection.
pub(crate) struct Outbound {
    state: Mutex<State>,
    /// Wakes the writer: data is pending, or the connection closes.
    writer: Notify,
    /// Wakes the reader: the connection closes, or a subscription reached its UNSUB max.
    reader: Notify,
    /// Subscriptions that reached their UNSUB max, for the reader to remove.
    expired: Mutex<Vec<Arc<str>>>,
    /// Mirrors `State::closed.is_some()`, for checks that need no lock.
    closing: AtomicBool,
    /// Whether the client said `headers: true` in CONNECT; if not, headers are stripped and it
    /// gets MSG, as nats-server does for clients without header support.
    headers: AtomicBool,
    max_pending: usize,
    policy: SlowConsumerPolicy,
    dropped: AtomicU64,
    /// Bytes written to this client, counted here and summed over clients when read.
    bytes_out: AtomicU64,
    stats: Arc<Stats>,
    id: u64,
}

impl Outbound {
    pub(crate) fn new(
        id: u64,
        max_pending: usize,
        policy: SlowConsumerPolicy,
        stats: Arc<Stats>,
    ) -> Outbound {
        Outbound {
            state: Mutex::new(State {
                buf: Vec::new(),
                in_flight: 0,
                closed: None,
                msgs: 0,
                direct: None,
            }),
            writer: Notify::new(),
            reader: Notify::new(),
            expired: Mutex::new(Vec::new()),
            closing: AtomicBool::new(false),
            headers: AtomicBool::new(false),
            max_pending,
            policy,
            dropped: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            stats,
            id,
        }
    }

    /// Appends protocol output (INFO, PONG, +OK, -ERR) written by `write`. Control output is
    /// never refused for size: it is small and answers the client's own requests.
    pub(crate) fn push_control(self: &Arc<Self>, write: impl FnOnce(&mut Vec<u8>)) {
        let mut state = self.state.lock();
        if state.closed.is_some() {
            return;
        }
        let was_empty = state.buf.is_empty();
        write(&mut state.buf);
        drop(state);
        if was_empty {
            Batch::wake(self);
        }
    }

    /// Appends one message for subscription `sid`; false if the connection is closed or the
    /// message was refused as a slow consumer.
    fn push_msg(self: &Arc<Self>, sid: &str, msg: &Delivery<'_>) -> bool {
        let payload = msg.payload();
        let headers = msg
            .header_block()
            .filter(|_| self.headers.load(Ordering::Relaxed));
        let size = payload.len() + headers.map_or(0, <[u8]>::len) + msg.subject().len() + 64;
        let mut state = self.state.lock();
        if state.closed.is_some() {
            return false;
        }
        if state.buf.len() + state.in_flight + size > self.max_pending {
            drop(state);
            return self.slow_consumer();
        }
        let was_empty = state.buf.is_empty();
        match headers {
            None => encode::msg(&mut state.buf, msg.subject(), sid, msg.reply(), payload),
            Some(h) => encode::hmsg(&mut state.buf, msg.subject(), sid, msg.reply(), h, payload),
        }
        state.msgs += 1;
        drop(state);
        if was_empty {
            Batch::wake(self);
        }
        true
    }

    fn slow_consumer(&self) -> bool {
        match self.policy {
            SlowConsumerPolicy::Drop => {
                if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    self.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        client = self.id,
                        "slow consumer: dropping what does not fit"
                    );
                }
                false
            }
            SlowConsumerPolicy::Disconnect => {
                self.close(Close::SlowConsumer, Some("Slow Consumer"));
                false
            }
        }
    }

    /// Closes the connection: queues `-ERR '<error>'` if given, refuses further output, and
    /// lets the writer flush what is queued and the reader stop. Only the first call counts.
    pub(crate) fn close(&self, why: Close, error: Option<&str>) {
        let mut state = self.state.lock();
        if state.closed.is_some() {
            return;
        }
        if why == Close::SlowConsumer {
            // What is queued may never drain; the -ERR goes out alone, best effort.
            state.buf.clear();
            self.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(client = self.id, "slow consumer: closing the connection");
        }
        if let Some(text) = error {
            encode::err(&mut state.buf, text);
        }
        state.closed = Some(why);
        self.closing.store(true, Ordering::Release);
        drop(state);
        self.writer.notify_one();
        self.reader.notify_one();
    }

    /// Records whether the client takes HMSG (its CONNECT `headers`).
    pub(crate) fn set_headers(&self, supported: bool) {
        self.headers.store(supported, Ordering::Relaxed);
    }

    /// Whether the connection is closing (no lock taken).
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Why the connection closed, once it has.
    pub(crate) fn closed(&self) -> Option<Close> {
        self.state.lock().closed
    }

    /// Waits until the reader has something to do (close, or expired subscriptions).
    pub(crate) async fn reader_wakeup(&self) {
        self.reader.notified().await;
    }

    /// Takes the sids of subscriptions that reached their UNSUB max.
    pub(crate) fn take_expired(&self) -> Vec<Arc<str>> {
        std::mem::take(&mut *self.expired.lock())
    }

    /// Messages dropped under [`SlowConsumerPolicy::Drop`].
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Messages queued to this client so far.
    pub(crate) fn msgs_out(&self) -> u64 {
        self.state.lock().msgs
    }

    /// Bytes written to this client so far.
    pub(crate) fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }

    /// Bytes queued and not yet written.
    pub(crate) fn pending_bytes(&self) -> usize {
        let state = self.state.lock();
        state.buf.len() + state.in_flight
    }

    /// Drains the buffer into `socket` until the connection closes and everything queued
    /// before the close is written (or the socket fails, or a write outlasts `deadline`).
    pub(crate) async fn run_writer(self: Arc<Self>, socket: Socket, deadline: Duration) {
        let mut socket = match socket {
            Socket::Tcp(half) => {
                let half = Arc::new(half);
                self.state.lock().direct = Some(half.clone());
                Writing::Tcp(half)
            }
            Socket::Boxed(boxed) => Writing::Boxed(boxed),
        };
        let mut spare = Vec::new();
        loop {
            let closing = {
                let mut state = self.state.lock();
                std::mem::swap(&mut state.buf, &mut spare);
                state.in_flight = spare.len();
                state.closed.is_some()
            };
            if !spare.is_empty() {
                let bytes = spare.len() as u64;
                let result = {
                    let write = tokio::time::timeout(deadline, socket.write_all(&spare));
                    tokio::pin!(write);
                    loop {
                        tokio::select! {
                            result = &mut write => break Some(result),
                            // New data only needs the next round; a slow-consumer close must
                            // not wait for a write that the client is not reading.
                            () = self.writer.notified() => {
                                if self.closed() == Some(Close::SlowConsumer) {
                                    break None;
                                }
                            }
                        }
                    }
                };
                match result {
                    Some(Ok(Ok(()))) => {
                        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
                    }
                    Some(Ok(Err(err))) => {
                        tracing::debug!(client = self.id, %err, "write failed");
                        self.close(Close::ClientGone, None);
                        break;
                    }
                    Some(Err(_)) => {
                        self.close(Close::SlowConsumer, None);
                        break;
                    }
                    None => break,
                }
                // Keep a burst's big buffer only while bursts continue; idle clients stay small.
                if spare.capacity() > 256 * 1024 {
                    spare = Vec::new();
                } else {
                    spare.clear();
                }
                self.state.lock().in_flight = 0;
                continue;
            }
            if closing {
                break;
            }
            self.writer.notified().await;
        }
        // The last reference to a TCP socket's half shuts its writing side down when dropped.
        self.state.lock().direct = None;
        if let Writing::Boxed(boxed) = &mut socket {
            let _ = boxed.shutdown().await;
        }
    }

    /// Writes what is queued straight to the socket, on the caller's thread, if that can be
    /// done now: a plain TCP connection whose writer task is idle, and a socket that takes it
    /// all without waiting. True if nothing is left for the writer task; false if it must be
    /// woken (a TLS connection, a write in progress, a full socket buffer, an error).
    ///
    /// Called when a [`Batch::flushing`] batch closes (a producer off the runtime, such as a
    /// log's writer thread, is done with a burst): a waiting client is spared the wake-up of
    /// a parked worker before each answer is written. (nats-server writes its clients'
    /// output in place at the end of every read; herald's readers do not, since the writer
    /// they wake runs next on the same worker, or on the other core while they go on.)
    fn flush(&self) -> bool {
        let mut state = self.state.lock();
        if state.in_flight != 0 || state.closed.is_some() {
            return false;
        }
        let Some(socket) = &state.direct else {
            return false;
        };
        if state.buf.is_empty() {
            return true;
        }
        if state.buf.len() > IN_PLACE_MAX {
            // A burst: the writer task writes it on another core while this one goes on.
            return false;
        }
        match socket.try_write(&state.buf) {
            Ok(n) if n == state.buf.len() => {
                state.buf.clear();
                self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                true
            }
            Ok(n) => {
                state.buf.drain(..n);
                self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                false
            }
            Err(_) => false,
        }
    }

    /// Marks subscription `sid` for removal by the reader.
    fn expire(&self, sid: Arc<str>) {
        self.expired.lock().push(sid);
        self.reader.notify_one();
    }
}

impl Wake for Outbound {
    fn wake(&self) {
        self.writer.notify_one();
    }

    fn flush(&self) -> bool {
        Outbound::flush(self)
    }
}

/// The writer task's side of a [`Socket`].
enum Writing {
    Tcp(Arc<OwnedWriteHalf>),
    Boxed(BoxWrite),
}

impl Writing {
    async fn write_all(&mut self, mut buf: &[u8]) -> std::io::Result<()> {
        match self {
            Writing::Boxed(boxed) => boxed.write_all(buf).await,
            Writing::Tcp(half) => {
                while !buf.is_empty() {
                    match half.try_write(buf) {
                        Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                        Ok(n) => buf = &buf[n..],
                        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                            half.writable().await?;
                        }
                        Err(err) => return Err(err),
                    }
                }
                Ok(())
            }
        }
    }
}

/// One client subscription as a delivery target: it knows its sid text and its UNSUB max, so
/// delivering needs no lookup.
pub(crate) struct SubTarget {
    out: Arc<Outbound>,
    sid: Arc<str>,
    /// Messages this subscription may still take after UNSUB with max; u64::MAX when unlimited.
    max: AtomicU64,
    delivered: AtomicU64,
    /// Set on UNSUB: a publisher still holding an older match result delivers nothing more.
    removed: AtomicBool,
    /// Denied subjects this subscription's pattern overlaps: never delivered to it. Empty
    /// (nothing to check) for almost every subscription.
    denied: Vec<String>,
    /// Under `allow_responses`: where the reply subjects of requests it receives are granted.
    responses: Option<Arc<Responses>>,
}

impl SubTarget {
    pub(crate) fn new(
        out: Arc<Outbound>,
        sid: Arc<str>,
        denied: Vec<String>,
        responses: Option<Arc<Responses>>,
    ) -> SubTarget {
        SubTarget {
            out,
            sid,
            max: AtomicU64::new(u64::MAX),
            delivered: AtomicU64::new(0),
            removed: AtomicBool::new(false),
            denied,
            responses,
        }
    }

    /// The client's subscription id.
    pub(crate) fn sid(&self) -> &str {
        &self.sid
    }

    /// Marks the subscription removed: it takes no more messages.
    pub(crate) fn remove(&self) {
        self.removed.store(true, Ordering::Release);
    }

    /// Applies `UNSUB <sid> <max>`: true when the subscription is done already (it delivered
    /// `max` or more) and must be removed now.
    pub(crate) fn limit(&self, max: u64) -> bool {
        self.max.store(max, Ordering::SeqCst);
        self.delivered.load(Ordering::SeqCst) >= max
    }
}

impl Target for SubTarget {
    fn deliver(&self, _sid: u64, msg: &Delivery<'_>) -> bool {
        if self.removed.load(Ordering::Acquire) {
            return false;
        }
        if !self.denied.is_empty()
            && self
                .denied
                .iter()
                .any(|d| herald::subject::matches(d, msg.subject()))
        {
            // Withheld, as nats-server does; taken, so a queue group does not retry it.
            return true;
        }
        let max = self.max.load(Ordering::Acquire);
        if max != u64::MAX {
            let n = self.delivered.fetch_add(1, Ordering::AcqRel) + 1;
            if n > max {
                return false;
            }
            if n == max {
                self.out.expire(self.sid.clone());
            }
        } else {
            self.delivered.fetch_add(1, Ordering::Relaxed);
        }
        if let (Some(responses), Some(reply)) = (&self.responses, msg.reply()) {
            responses.grant(reply);
        }
        self.out.push_msg(&self.sid, msg)
    }

    /// A quarter of `max_pending` unwritten: producers that can wait do, well before the
    /// connection is a slow consumer.
    fn congested(&self) -> bool {
        self.out.pending_bytes() > self.out.max_pending / 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// An outbound over a real loopback connection, its writer running, and the client's end.
    async fn connected() -> (Arc<Outbound>, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (_read, write) = accepted.unwrap().0.into_split();
        let out = Arc::new(Outbound::new(
            1,
            1 << 20,
            SlowConsumerPolicy::Disconnect,
            Arc::default(),
        ));
        tokio::spawn(
            out.clone()
                .run_writer(Socket::Tcp(write), Duration::from_secs(5)),
        );
        // The writer shares the socket once it has started.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while out.state.lock().direct.is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the writer never started"
            );
            tokio::task::yield_now().await;
        }
        (out, client.unwrap())
    }

    async fn read_exactly(client: &mut tokio::net::TcpStream, n: usize) -> Vec<u8> {
        let mut got = vec![0; n];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got))
            .await
            .expect("the output arrives")
            .unwrap();
        got
    }

    /// On the current-thread runtime the writer task cannot run between the batch's close and
    /// the check: what is gone from the buffer was written in place.
    #[tokio::test]
    async fn a_flushing_batch_writes_small_output_in_place_and_leaves_bursts_to_the_writer() {
        let (out, mut client) = connected().await;
        {
            let _batch = Batch::flushing();
            out.push_control(|buf| buf.extend_from_slice(b"one\r\n"));
            out.push_control(|buf| buf.extend_from_slice(b"two\r\n"));
        }
        assert_eq!(out.pending_bytes(), 0, "written at the batch's close");
        assert_eq!(read_exactly(&mut client, 10).await, b"one\r\ntwo\r\n");

        // A batch opened on the runtime wakes the writer instead.
        {
            let _batch = Batch::open();
            out.push_control(|buf| buf.extend_from_slice(b"three\r\n"));
        }
        assert_eq!(out.pending_bytes(), 7, "left to the writer");
        assert_eq!(read_exactly(&mut client, 7).await, b"three\r\n");

        // A burst goes to the writer, and what follows it keeps its place behind it.
        let burst = vec![b'x'; IN_PLACE_MAX + 1];
        {
            let _batch = Batch::flushing();
            out.push_control(|buf| buf.extend_from_slice(&burst));
        }
        assert_eq!(out.pending_bytes(), burst.len(), "left to the writer");
        {
            let _batch = Batch::flushing();
            out.push_control(|buf| buf.extend_from_slice(b"after\r\n"));
        }
        let got = read_exactly(&mut client, burst.len() + 7).await;
        assert_eq!(&got[..burst.len()], &burst[..]);
        assert_eq!(&got[burst.len()..], b"after\r\n");
    }
}
