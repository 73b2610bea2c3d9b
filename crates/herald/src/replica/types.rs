//! A replicated stream's Raft types: its log carries batches of published messages, stamped
//! by the leader that proposed them, and the saved state of its durable consumers.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::meta::Member;

openraft::declare_raft_types!(
    /// A replicated stream's Raft configuration.
    pub(crate) TypeConfig:
        D = Batch,
        R = (),
        NodeId = u64,
        Node = Member,
        SnapshotData = Cursor<Vec<u8>>,
);

/// Published messages, in the order the leader captured them, then consumers' states.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Batch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) msgs: Vec<Published>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) consumers: Vec<ConsumerState>,
}

/// A durable consumer's state as its leader saved it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ConsumerState {
    pub(crate) name: String,
    /// The saved state (the consumer's state file); `None` once the consumer is deleted.
    pub(crate) saved: Option<serde_json::Value>,
}

/// What the leader's proposer takes: a captured publish, or a consumer's state.
#[derive(Debug)]
pub(crate) enum Proposal {
    Publish(Published),
    Consumer(ConsumerState),
}

/// One published message as the stream captured it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Published {
    pub(crate) subject: String,
    /// Where the publisher waits for its ack (answered by the proposing replica only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reply: Option<String>,
    /// The NATS header block, empty for none.
    #[serde(default, with = "base64_bytes", skip_serializing_if = "Vec::is_empty")]
    pub(crate) headers: Vec<u8>,
    #[serde(with = "base64_bytes")]
    pub(crate) payload: Vec<u8>,
    /// The leader's stamp, ns since the epoch: strictly increasing along the log, so a
    /// replica that restarts knows which entries its stream holds already.
    pub(crate) ts: u64,
}

/// Bytes as base64 text in JSON.
mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_survives_json_with_binary_parts() {
        let batch = Batch {
            msgs: vec![Published {
                subject: "a.b".into(),
                reply: Some("_INBOX.1".into()),
                headers: b"NATS/1.0\r\nX: y\r\n\r\n".to_vec(),
                payload: vec![0, 255, 10, 13],
                ts: 7,
            }],
            consumers: vec![ConsumerState {
                name: "c".into(),
                saved: Some(serde_json::json!({"next": 2})),
            }],
        };
        let json = serde_json::to_string(&batch).unwrap();
        assert_eq!(serde_json::from_str::<Batch>(&json).unwrap(), batch);
    }
}
