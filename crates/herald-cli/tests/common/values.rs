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
