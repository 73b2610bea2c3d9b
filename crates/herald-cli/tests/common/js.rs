//! JetStream through async-nats, as the JetStream tests drive it.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use async_nats::jetstream::{self, Context};

use super::HeraldProcess;

/// Every wait of these helpers ends within this.
const WAIT: Duration = Duration::from_secs(10);

/// A JetStream context on a new connection to `server`.
pub async fn jetstream(server: &HeraldProcess) -> Context {
    let client = tokio::time::timeout(WAIT, async_nats::connect(server.url()))
        .await
        .expect("connect timed out")
        .expect("connect");
    jetstream::new(client)
}

/// A data directory for a test's server.
pub fn data_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("herald-js-")
        .tempdir()
        .unwrap()
}

/// Publishes and waits for the ack; the stored sequence.
pub async fn publish(js: &Context, subject: &str, payload: &str) -> u64 {
    js.publish(subject.to_owned(), payload.to_owned().into())
        .await
        .expect("publish")
        .await
        .expect("ack")
        .sequence
}

/// Messages the stream holds, once it holds `want` (polled: retention works on acks and on
/// the stream's 100 ms tick).
pub async fn wait_messages(stream: &async_nats::jetstream::stream::Stream, want: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let have = stream.get_info().await.unwrap().state.messages;
        if have == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream holds {have} messages, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The payloads `stream` holds, in order (deleted sequences left out), once all it counts
/// are readable (a message is counted as soon as it is written, and readable once its
/// write completed).
pub async fn payloads_of(stream: &async_nats::jetstream::stream::Stream) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let info = stream.get_info().await.unwrap();
        let mut out = Vec::new();
        for seq in info.state.first_sequence..=info.state.last_sequence {
            match stream.get_raw_message(seq).await {
                Ok(msg) => out.push(String::from_utf8(msg.payload.to_vec()).unwrap()),
                // A deleted message leaves a gap; anything else is a failure to report.
                Err(err) if err.to_string().contains("no message found") => {}
                Err(err) => panic!("message {seq} of {}: {err}", info.config.name),
            }
        }
        if out.len() as u64 >= info.state.messages || tokio::time::Instant::now() >= deadline {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
