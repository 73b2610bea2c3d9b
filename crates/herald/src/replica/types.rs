//! A replicated stream's Raft types: its log carries batches of published messages, stamped
//! by the leader that proposed them, the saved state of its durable consumers, and changes
//! made to the stream's messages through its API (purges, message deletes).
//!
//! A batch is kept in one binary encoding from the proposer to every replica's stream: the
//! log line, the followers' requests and the cache of recent entries all hold (or share) the
//! same bytes, written once as base64 in JSON. Each item is a kind byte, then:
//!
//! | kind | fields (little-endian lengths) |
//! |---|---|
//! | 1, message | stamp u64, subject u16+bytes, reply u16+bytes (empty: none), headers u32+bytes, payload u32+bytes |
//! | 2, consumer | name u16+bytes, saved state u32+JSON (`u32::MAX`: deleted) |
//! | 3, change | stamp u64, u32+JSON of a [`Change`] |
//!
//! A batch read from disk or the network is checked whole before it is accepted, so applying
//! one never meets a malformed item.

use std::io::Cursor;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::meta::Member;

openraft::declare_raft_types!(
    /// A replicated stream's Raft configuration.
    pub(crate) TypeConfig:
        D = Batch,
        R = Applied,
        NodeId = u64,
        Node = Member,
        SnapshotData = Cursor<Vec<u8>>,
);

const MESSAGE: u8 = 1;
const CONSUMER: u8 = 2;
const CHANGE: u8 = 3;
/// The saved-state length of a deleted consumer.
const DELETED: u32 = u32::MAX;

/// Published messages and consumers' states, in the order the leader took them: encoded
/// once, shared by every copy (cloning counts a reference).
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Batch {
    bytes: Bytes,
}

/// One item of a batch, borrowed from it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Item<'a> {
    /// A published message as the stream captured it.
    Message(Published<'a>),
    /// A durable consumer's state as its leader saved it; `saved` is `None` once deleted.
    Consumer {
        name: &'a str,
        saved: Option<&'a [u8]>,
    },
    /// A change to the stream's messages (JSON of a [`Change`]), stamped like a message:
    /// at most one per batch, its last item.
    Change { ts: u64, change: &'a [u8] },
}

/// A change to a replicated stream's messages, made on every replica in log order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Change {
    /// `Streams::purge`.
    Purge {
        filter: Option<String>,
        below: Option<u64>,
        keep: Option<u64>,
    },
    /// `Streams::delete_message`.
    DeleteMessage { seq: u64, erase: bool },
}

/// What applying an entry gave: the outcome of its change, on the replica that applied it
/// (never sent anywhere: it goes back to the caller on the leader that proposed it).
#[derive(Debug, Default)]
pub(crate) struct Applied(pub(crate) Option<crate::streams::Result<u64>>);

/// openraft wants responses serializable; this one stays on its member (written as null).
impl Serialize for Applied {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl<'de> Deserialize<'de> for Applied {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Applied, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(Applied(None))
    }
}

/// One published message of a batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Published<'a> {
    /// The leader's stamp, ns since the epoch: strictly increasing along the log, so a
    /// replica that restarts knows which entries its stream holds already.
    pub(crate) ts: u64,
    pub(crate) subject: &'a str,
    /// Where the publisher waits for its ack (answered by the proposing replica only).
    pub(crate) reply: Option<&'a str>,
    /// The NATS header block, if any.
    pub(crate) headers: Option<&'a [u8]>,
    pub(crate) payload: &'a [u8],
}

impl Batch {
    /// The batch's items, in order.
    pub(crate) fn items(&self) -> Items<'_> {
        Items { rest: &self.bytes }
    }

    /// A batch from its encoding, once every item is found whole.
    fn checked(bytes: Bytes) -> Result<Batch, &'static str> {
        let mut items = Items { rest: &bytes };
        while !items.rest.is_empty() {
            items.read()?;
        }
        Ok(Batch { bytes })
    }
}

/// Iterates a batch's items.
pub(crate) struct Items<'a> {
    rest: &'a [u8],
}

impl<'a> Items<'a> {
    fn read(&mut self) -> Result<Item<'a>, &'static str> {
        let kind = take(&mut self.rest, 1)?[0];
        match kind {
            MESSAGE => {
                let ts =
                    u64::from_le_bytes(take(&mut self.rest, 8)?.try_into().unwrap_or_default());
                let subject = text(take_u16(&mut self.rest)?)?;
                let reply = text(take_u16(&mut self.rest)?)?;
                let headers = take_u32(&mut self.rest)?;
                let payload = take_u32(&mut self.rest)?;
                Ok(Item::Message(Published {
                    ts,
                    subject,
                    reply: (!reply.is_empty()).then_some(reply),
                    headers: (!headers.is_empty()).then_some(headers),
                    payload,
                }))
            }
            CONSUMER => {
                let name = text(take_u16(&mut self.rest)?)?;
                let len = take(&mut self.rest, 4)?.get_u32_le();
                let saved = if len == DELETED {
                    None
                } else {
                    Some(take(&mut self.rest, len as usize)?)
                };
                Ok(Item::Consumer { name, saved })
            }
            CHANGE => {
                let ts =
                    u64::from_le_bytes(take(&mut self.rest, 8)?.try_into().unwrap_or_default());
                let change = take_u32(&mut self.rest)?;
                Ok(Item::Change { ts, change })
            }
            _ => Err("unknown item kind"),
        }
    }
}

impl<'a> Iterator for Items<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        // A batch is checked whole when made; a failure here ends the iteration all the same.
        self.read().ok()
    }
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], &'static str> {
    if rest.len() < n {
        return Err("batch cut short");
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn take_u16<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], &'static str> {
    let len = take(rest, 2)?.get_u16_le();
    take(rest, len as usize)
}

fn take_u32<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], &'static str> {
    let len = take(rest, 4)?.get_u32_le();
    take(rest, len as usize)
}

fn text(bytes: &[u8]) -> Result<&str, &'static str> {
    std::str::from_utf8(bytes).map_err(|_| "batch text is not UTF-8")
}

/// Encodes one captured message, stamped later ([`Batch`] builder's `push`): what the
/// leader's capture hands its proposer.
pub(crate) fn encode_message(
    subject: &str,
    reply: Option<&str>,
    headers: Option<&[u8]>,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let reply = reply.unwrap_or_default();
    let headers = headers.unwrap_or_default();
    if subject.len() > u16::MAX as usize
        || reply.len() > u16::MAX as usize
        || headers.len() >= u32::MAX as usize
        || payload.len() >= u32::MAX as usize
    {
        return None;
    }
    let mut buf = Vec::with_capacity(
        1 + 8 + 2 + subject.len() + 2 + reply.len() + 8 + headers.len() + payload.len(),
    );
    buf.put_u8(MESSAGE);
    buf.put_u64_le(0);
    buf.put_u16_le(subject.len() as u16);
    buf.put_slice(subject.as_bytes());
    buf.put_u16_le(reply.len() as u16);
    buf.put_slice(reply.as_bytes());
    buf.put_u32_le(headers.len() as u32);
    buf.put_slice(headers);
    buf.put_u32_le(payload.len() as u32);
    buf.put_slice(payload);
    Some(buf)
}

/// Encodes a consumer's saved state (`None`: deleted).
pub(crate) fn encode_consumer(name: &str, saved: Option<&[u8]>) -> Option<Vec<u8>> {
    if name.len() > u16::MAX as usize || saved.is_some_and(|s| s.len() >= DELETED as usize) {
        return None;
    }
    let mut buf = Vec::with_capacity(1 + 2 + name.len() + 4 + saved.map_or(0, <[u8]>::len));
    buf.put_u8(CONSUMER);
    buf.put_u16_le(name.len() as u16);
    buf.put_slice(name.as_bytes());
    match saved {
        Some(saved) => {
            buf.put_u32_le(saved.len() as u32);
            buf.put_slice(saved);
        }
        None => buf.put_u32_le(DELETED),
    }
    Some(buf)
}

/// Encodes a change, stamped later (as a message).
pub(crate) fn encode_change(change: &Change) -> Option<Vec<u8>> {
    let json = serde_json::to_vec(change).ok()?;
    let mut buf = Vec::with_capacity(1 + 8 + 4 + json.len());
    buf.put_u8(CHANGE);
    buf.put_u64_le(0);
    buf.put_u32_le(u32::try_from(json.len()).ok()?);
    buf.put_slice(&json);
    Some(buf)
}

/// Gathers encoded items into a batch.
#[derive(Default)]
pub(crate) struct Builder {
    buf: BytesMut,
}

impl Builder {
    /// Adds an encoded consumer state.
    pub(crate) fn push_consumer(&mut self, item: &[u8]) {
        self.buf.put_slice(item);
    }

    /// Adds an encoded message or change with its stamp.
    pub(crate) fn push_message(&mut self, item: &[u8], ts: u64) {
        let at = self.buf.len();
        self.buf.put_slice(item);
        self.buf[at + 1..at + 9].copy_from_slice(&ts.to_le_bytes());
    }

    /// The batch.
    pub(crate) fn finish(self) -> Batch {
        Batch {
            bytes: self.buf.freeze(),
        }
    }
}

/// What the leader's proposer takes: an encoded item (see [`encode_message`],
/// [`encode_consumer`] and [`encode_change`]); a change with where its outcome goes.
#[derive(Debug)]
pub(crate) enum Proposal {
    Message(Vec<u8>),
    Consumer(Vec<u8>),
    Change(
        Vec<u8>,
        tokio::sync::oneshot::Sender<crate::streams::Result<u64>>,
    ),
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Batch({} bytes)", self.bytes.len())
    }
}

impl Serialize for Batch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.bytes))
    }
}

impl<'de> Deserialize<'de> for Batch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Batch, D::Error> {
        use base64::Engine as _;
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)?;
        Batch::checked(bytes.into()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Batch {
        let mut builder = Builder::default();
        let msg = encode_message(
            "a.b",
            Some("_INBOX.1"),
            Some(b"NATS/1.0\r\nX: y\r\n\r\n"),
            &[0, 255, 10, 13],
        )
        .unwrap();
        builder.push_message(&msg, 7);
        let plain = encode_message("c", None, None, b"").unwrap();
        builder.push_message(&plain, 8);
        builder.push_consumer(&encode_consumer("c", Some(br#"{"next":2}"#)).unwrap());
        builder.push_consumer(&encode_consumer("gone", None).unwrap());
        let purge = Change::Purge {
            filter: None,
            below: Some(3),
            keep: None,
        };
        builder.push_message(&encode_change(&purge).unwrap(), 9);
        builder.finish()
    }

    #[test]
    fn a_batch_survives_json_with_binary_parts() {
        let batch = sample();
        let json = serde_json::to_string(&batch).unwrap();
        let back: Batch = serde_json::from_str(&json).unwrap();
        assert_eq!(back, batch);
        let items: Vec<Item<'_>> = back.items().collect();
        assert_eq!(
            items,
            vec![
                Item::Message(Published {
                    ts: 7,
                    subject: "a.b",
                    reply: Some("_INBOX.1"),
                    headers: Some(b"NATS/1.0\r\nX: y\r\n\r\n"),
                    payload: &[0, 255, 10, 13],
                }),
                Item::Message(Published {
                    ts: 8,
                    subject: "c",
                    reply: None,
                    headers: None,
                    payload: b"",
                }),
                Item::Consumer {
                    name: "c",
                    saved: Some(br#"{"next":2}"#),
                },
                Item::Consumer {
                    name: "gone",
                    saved: None,
                },
                Item::Change {
                    ts: 9,
                    change: br#"{"purge":{"filter":null,"below":3,"keep":null}}"#,
                },
            ]
        );
    }

    #[test]
    fn a_damaged_batch_is_refused_whole() {
        use base64::Engine as _;
        let bytes = sample().bytes.to_vec();
        for cut in [1, 9, 12, bytes.len() - 1] {
            let text = base64::engine::general_purpose::STANDARD.encode(&bytes[..cut]);
            let json = serde_json::to_string(&text).unwrap();
            assert!(
                serde_json::from_str::<Batch>(&json).is_err(),
                "cut at {cut}"
            );
        }
        let mut odd = bytes.clone();
        odd[0] = 9;
        let json = serde_json::to_string(&base64::engine::general_purpose::STANDARD.encode(&odd));
        assert!(serde_json::from_str::<Batch>(&json.unwrap()).is_err());
        assert!(serde_json::from_str::<Batch>("\"not base64!\"").is_err());
    }
}
