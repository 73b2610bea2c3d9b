//! Push consumers: the sink that sends a consumer's messages to its deliver subject as they
//! come, with the `$JS.ACK` reply subjects pull deliveries have, idle heartbeats, flow
//! control (`100 FlowControl Request` answered on `$JS.FC.<stream>.<consumer>.<n>`) and a
//! byte rate limit; and the `$JS.FC.>` subscription that takes the answers.
//!
//! The consumer itself (window of unacknowledged messages, redelivery, `last_per_subject`)
//! is the store's, as for pull consumers: a push consumer is one standing request whose sink
//! is this one. Nothing is sent while nobody subscribes to the deliver subject.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use super::delivery::{Inbox, send_status};
use crate::scope::Scope;
use crate::streams::pull::{Delivered, PullEnd, Sink};
use crate::streams::{ConsumerConfig, Streams};
use crate::target::{Delivery, Target};

/// The subjects flow-control answers come back on.
pub(crate) const FC_SUBJECTS: &str = "$JS.FC.>";
/// Bytes delivered after which a flow-control request goes out.
const FC_REQUEST_AFTER: u64 = 1 << 20;
/// Bytes delivered without an answer after which delivery pauses.
const FC_STALL_AT: u64 = 2 << 20;
/// How soon a sink that waits for an answer, or for a subscriber, looks again (an answer
/// wakes it at once).
const RECHECK: Duration = Duration::from_millis(100);
/// Bytes delivered between two looks at whether a subscriber is congested (holds much of its
/// output unwritten): delivery then pauses, so that a consumer reading a long backlog without
/// flow control goes at its subscribers' pace instead of having them dropped as slow
/// consumers.
const CONGESTION_CHECK_EVERY: u64 = 256 << 10;
/// How soon a sink paused by a congested subscriber looks again.
const CONGESTION_RECHECK: Duration = Duration::from_millis(1);

/// Flow-control state of one push consumer, shared by its sink and the `$JS.FC` answers.
#[derive(Default)]
struct FlowState {
    /// Bytes delivered since the last answered request.
    unanswered: u64,
    /// The reply subject of the request waiting for its answer.
    outstanding: Option<String>,
    /// Requests sent so far (numbers the reply subjects).
    sent: u64,
}

/// One push consumer's flow-control state, shared.
type Flow = Arc<Mutex<FlowState>>;
/// (stream, consumer).
type ConsumerKey = (String, String);

/// The push consumers of a store that use flow control, by (stream, consumer).
#[derive(Default)]
pub(crate) struct Flows {
    by_consumer: Mutex<HashMap<ConsumerKey, Weak<Mutex<FlowState>>>>,
}

/// Sends a push consumer's messages to its deliver subject.
struct PushSink {
    inbox: Inbox,
    scope: Arc<Scope>,
    deliver: String,
    fc_prefix: String,
    flow: Option<Flow>,
    rate: Option<Rate>,
    headers_only: bool,
    /// Bytes delivered since the subscribers' congestion was last looked at.
    since_congestion_check: u64,
}

/// A byte budget refilled at `per_sec`, holding at most a second's worth.
struct Rate {
    per_sec: u64,
    tokens: f64,
    at: Instant,
}

impl Rate {
    fn refill(&mut self, now: Instant) {
        let per_sec = self.per_sec as f64;
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * per_sec).min(per_sec);
        self.at = now;
    }
}

impl Sink for PushSink {
    fn cost(&self, msg: &Delivered<'_>) -> usize {
        self.inbox.cost(msg)
    }

    fn deliver(&mut self, msg: &Delivered<'_>) -> bool {
        let cost = self.inbox.cost(msg) as u64;
        let sent = if self.headers_only {
            // The headers, and the size of the payload left out.
            let mut block = match msg.headers.is_empty() {
                true => b"NATS/1.0\r\n".to_vec(),
                false => msg.headers[..msg.headers.len().saturating_sub(2)].to_vec(),
            };
            block.extend_from_slice(
                format!("Nats-Msg-Size: {}\r\n\r\n", msg.payload.len()).as_bytes(),
            );
            let block = Bytes::from(block);
            let empty = Bytes::new();
            self.inbox.deliver(&Delivered {
                headers: &block,
                payload: &empty,
                ..*msg
            })
        } else {
            self.inbox.deliver(msg)
        };
        if !sent {
            return false;
        }
        if let Some(rate) = &mut self.rate {
            rate.tokens -= cost as f64;
        }
        self.since_congestion_check += cost;
        if let Some(flow) = &self.flow {
            let mut state = flow.lock();
            state.unanswered += cost;
            if state.outstanding.is_none() && state.unanswered >= FC_REQUEST_AFTER {
                state.sent += 1;
                let reply = format!("{}{}", self.fc_prefix, state.sent);
                let block = Bytes::from_static(b"NATS/1.0 100 FlowControl Request\r\n\r\n");
                self.scope.send_as(
                    &self.deliver,
                    &self.deliver,
                    Some(&reply),
                    Some(&block),
                    &Bytes::new(),
                    crate::dispatch::Reach::All,
                );
                state.outstanding = Some(reply);
            }
        }
        true
    }

    fn end(&mut self, _why: PullEnd) {
        // A push consumer's subscribers are not told anything when it goes.
    }

    fn heartbeat(&mut self, consumer_seq: u64, stream_seq: u64) {
        let mut headers = format!(
            "100 Idle Heartbeat\r\nNats-Last-Consumer: {consumer_seq}\r\nNats-Last-Stream: {stream_seq}\r\n"
        );
        if let Some(flow) = &self.flow
            && let Some(reply) = &flow.lock().outstanding
        {
            headers.push_str(&format!("Nats-Consumer-Stalled: {reply}\r\n"));
        }
        send_status(&self.scope, &self.deliver, &headers);
    }

    fn blocked(&mut self, now: Instant) -> Option<Instant> {
        if !self.scope.has_interest(&self.deliver) {
            return Some(now + RECHECK);
        }
        if let Some(flow) = &self.flow
            && flow.lock().unanswered >= FC_STALL_AT
        {
            return Some(now + RECHECK);
        }
        if self.since_congestion_check >= CONGESTION_CHECK_EVERY {
            if self.scope.congested(&self.deliver) {
                return Some(now + CONGESTION_RECHECK);
            }
            self.since_congestion_check = 0;
        }
        if let Some(rate) = &mut self.rate {
            rate.refill(now);
            if rate.tokens < 0.0 {
                let wait = -rate.tokens / rate.per_sec as f64;
                return Some(now + Duration::from_secs_f64(wait));
            }
        }
        None
    }

    fn active(&self) -> bool {
        self.scope.has_interest(&self.deliver)
    }
}

impl Flows {
    /// Makes `consumer` of `stream` deliver by push as `config` says, if it is a push
    /// consumer (replacing the sink it had).
    pub(crate) fn install(
        self: &Arc<Self>,
        streams: &Streams,
        scope: &Arc<Scope>,
        stream: &str,
        consumer: &str,
        config: &ConsumerConfig,
    ) {
        let Some(push) = &config.push else {
            return;
        };
        let flow = push.flow_control.then(|| {
            let flow = Arc::new(Mutex::new(FlowState::default()));
            let mut all = self.by_consumer.lock();
            all.retain(|_, f| f.strong_count() > 0);
            all.insert(
                (stream.to_owned(), consumer.to_owned()),
                Arc::downgrade(&flow),
            );
            flow
        });
        let sink = PushSink {
            inbox: Inbox::new(scope.clone(), &push.deliver_subject, stream, consumer),
            scope: scope.clone(),
            deliver: push.deliver_subject.clone(),
            fc_prefix: format!("$JS.FC.{stream}.{consumer}."),
            flow,
            rate: push.rate_limit_bps.map(|per_sec| Rate {
                per_sec: per_sec.max(1),
                tokens: per_sec as f64,
                at: Instant::now(),
            }),
            headers_only: config.headers_only,
            since_congestion_check: 0,
        };
        if let Err(err) = streams.push(stream, consumer, Box::new(sink), push.idle_heartbeat) {
            tracing::debug!(stream, consumer, %err, "push consumer not installed");
        }
    }

    /// Makes every push consumer of the store deliver (after a restart).
    pub(crate) fn install_all(self: &Arc<Self>, streams: &Streams, scope: &Arc<Scope>) {
        for stream in streams.names() {
            self.install_stream(streams, scope, &stream);
        }
    }

    /// Starts delivering for the push consumers of `stream`.
    pub(crate) fn install_stream(
        self: &Arc<Self>,
        streams: &Streams,
        scope: &Arc<Scope>,
        stream: &str,
    ) {
        for info in streams.consumers(stream).unwrap_or_default() {
            self.install(streams, scope, stream, &info.name, &info.config);
        }
    }
}

/// The `$JS.FC.>` subscription of a scope: an answer to a flow-control request lets its
/// consumer deliver again.
pub(crate) struct FlowAnswers {
    pub(crate) flows: Arc<Flows>,
    pub(crate) streams: Streams,
}

impl Target for FlowAnswers {
    fn deliver(&self, _sid: u64, msg: &Delivery<'_>) -> bool {
        let subject = msg.subject();
        let mut tokens = subject.split('.');
        let (Some(_js), Some(_fc), Some(stream), Some(consumer)) =
            (tokens.next(), tokens.next(), tokens.next(), tokens.next())
        else {
            return true;
        };
        let key = (stream.to_owned(), consumer.to_owned());
        let Some(flow) = self
            .flows
            .by_consumer
            .lock()
            .get(&key)
            .and_then(Weak::upgrade)
        else {
            return true;
        };
        {
            let mut state = flow.lock();
            if state.outstanding.as_deref() != Some(subject) {
                return true;
            }
            state.outstanding = None;
            state.unanswered = 0;
        }
        self.streams.wake(stream, consumer);
        true
    }
}
