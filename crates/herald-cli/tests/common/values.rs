//! Unique values in a stream, as the replicated-stream tests and the fault harness write
//! and read them: each message's payload is a number.

#![allow(dead_code, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(30);

/// Every message of `stream`, read by a new durable consumer `reader` (acking each):
/// (sequence, value). Reads up to sequence `through`, or the stream's last if higher.
pub async fn read_values(
    js: &jetstream::Context,
    stream: &str,
    reader: &str,
    through: u64,
) -> Vec<(u64, u64)> {
    let stream = js.get_stream(stream).await.unwrap();
    let last = stream.cached_info().state.last_sequence.max(through);
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(reader.into()),
            ..Default::default()
        })
        .await
        .expect("a reading consumer");
    let mut read = Vec::new();
    let deadline = Instant::now() + WAIT;
    while read.last().is_none_or(|(seq, _)| *seq < last) {
        assert!(
            Instant::now() < deadline,
            "read up to {:?} of {last}",
            read.last()
        );
        read.extend(fetch_values(&consumer, 1000, Duration::from_millis(500)).await);
    }
    read
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
