//! Unique values in a stream, as the replicated-stream tests and the fault harness write
//! and read them: each message's payload is a number.

#![allow(dead_code, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(30);

/// Every message of `stream`, read by a new durable consumer `reader` (acking each):
/// (sequence, value), in sequence order, each sequence once. Reads until every message the
/// stream holds (and every sequence after its last up to `through`) is in hand: a delivery
/// lost on its way (a route coming back after a fault) is delivered again after the
/// consumer's short ack wait rather than taken for a lost message.
pub async fn read_values(
    js: &jetstream::Context,
    stream: &str,
    reader: &str,
    through: u64,
) -> Vec<(u64, u64)> {
    let stream = js.get_stream(stream).await.unwrap();
    let info = stream.cached_info();
    let (first, last) = (
        info.state.first_sequence,
        info.state.last_sequence.max(through),
    );
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(reader.into()),
            ack_wait: Duration::from_secs(1),
            ..Default::default()
        })
        .await
        .expect("a reading consumer");
    let mut read = std::collections::BTreeMap::new();
    let deadline = Instant::now() + WAIT;
    let wanted = (info.state.messages + through.saturating_sub(info.state.last_sequence)) as usize;
    while read.range(first..=last).count() < wanted {
        assert!(
            Instant::now() < deadline,
            "read {} of sequences {first}..={last}; missing from {:?}",
            read.range(first..=last).count(),
            (first..=last).find(|s| !read.contains_key(s))
        );
        read.extend(fetch_values(&consumer, 1000, Duration::from_millis(500)).await);
    }
    read.into_iter().collect()
}

/// One fetch of at most `max` messages (waiting at most `expires`), each acked:
/// (sequence, value).
pub async fn fetch_values(
    consumer: &jetstream::consumer::PullConsumer,
    max: usize,
    expires: Duration,
) -> Vec<(u64, u64)> {
    let mut batch = consumer
        .fetch()
        .max_messages(max)
        .expires(expires)
        .messages()
        .await
        .unwrap();
    let mut read = Vec::new();
    while let Some(msg) = tokio::time::timeout(WAIT, batch.next()).await.unwrap() {
        let msg = msg.unwrap();
        let seq = msg.info().unwrap().stream_sequence;
        let value: u64 = std::str::from_utf8(&msg.payload).unwrap().parse().unwrap();
        read.push((seq, value));
        msg.double_ack().await.unwrap();
    }
    read
}

/// Publishes `value` on `subject` (the value as payload, `v<value>` as its `Nats-Msg-Id`)
/// until it is acknowledged, or panics at `deadline`; returns its sequence. A retry after an
/// unanswered publish that was stored after all is acknowledged as the duplicate it is.
pub async fn publish_value(
    js: &jetstream::Context,
    subject: &str,
    value: u64,
    deadline: Instant,
) -> u64 {
    let mut retry = tokio::time::interval(Duration::from_millis(50));
    loop {
        assert!(
            Instant::now() < deadline,
            "value {value} never acknowledged"
        );
        let sent = tokio::time::timeout(Duration::from_secs(2), async {
            let message = jetstream::message::PublishMessage::build()
                .message_id(format!("v{value}"))
                .payload(value.to_string().into());
            js.send_publish(subject.to_owned(), message).await?.await
        })
        .await;
        match sent {
            Ok(Ok(ack)) => return ack.sequence,
            _ => {
                retry.tick().await;
            }
        }
    }
}

/// `server`'s `/jsz?streams=true`.
pub async fn jsz(server: &super::HeraldProcess) -> serde_json::Value {
    super::sse::http()
        .get(format!("{}/jsz?streams=true", server.http_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until `server`'s own copy of its (one) stream, as its `/jsz` says, holds `count`
/// messages, the last of them `last`.
pub async fn holds(server: &super::HeraldProcess, count: u64, last: u64) {
    let deadline = Instant::now() + WAIT;
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    loop {
        let jsz = jsz(server).await;
        let state = &jsz["account_details"][0]["stream_detail"][0]["state"];
        if state["messages"] == count && state["last_seq"] == last {
            return;
        }
        assert!(Instant::now() < deadline, "the server's copy: {jsz}");
        poll.tick().await;
    }
}
