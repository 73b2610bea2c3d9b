//! Messages and their headers.
//!
//! A [`Message`] is published once and shared by every subscription that receives it: cloning
//! one is a reference-count increment, so fan-out to N targets costs N increments, not N copies.

use std::fmt;
use std::sync::{OnceLock, Weak};

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::subject::Subject;

/// Multi-valued message headers with NATS/1.0 semantics.
///
/// Names keep their case and are compared exactly, as nats-server does; a name may carry several
/// values, kept in insertion order.
///
/// # Examples
/// ```
/// let mut h = herald::HeaderMap::new();
/// h.append("Trace", "a").unwrap();
/// h.append("Trace", "b").unwrap();
/// h.insert("Kind", "order").unwrap();
/// assert_eq!(h.get("Trace"), Some("a"));
/// assert_eq!(h.get_all("Trace").collect::<Vec<_>>(), ["a", "b"]);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HeaderMap {
    // (name, value) in insertion order; few entries, so a Vec beats a map.
    entries: Vec<(Box<str>, Box<str>)>,
}

impl HeaderMap {
    /// An empty header map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value for `name`, keeping values already there.
    pub fn append(&mut self, name: &str, value: &str) -> Result<()> {
        check_header(name, value)?;
        self.entries.push((name.into(), value.into()));
        Ok(())
    }

    /// Sets `name` to exactly one value, replacing the values already there.
    pub fn insert(&mut self, name: &str, value: &str) -> Result<()> {
        check_header(name, value)?;
        self.entries.retain(|(n, _)| &**n != name);
        self.entries.push((name.into(), value.into()));
        Ok(())
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| &**v)
    }

    /// Every value of `name`, in insertion order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |(n, _)| &**n == name)
            .map(|(_, v)| &**v)
    }

    /// Removes every value of `name`; says whether there was one.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(n, _)| &**n != name);
        before != self.entries.len()
    }

    /// The fields of a `NATS/1.0` block; a malformed block gives an empty map (a network
    /// client's bad headers never fail a subscriber).
    fn from_block(block: &[u8]) -> HeaderMap {
        let entries = match herald_proto::headers::parse(block) {
            Ok(parsed) => parsed
                .fields
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
            Err(_) => Vec::new(),
        };
        HeaderMap { entries }
    }

    /// All (name, value) pairs in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (&**n, &**v))
    }

    /// Number of (name, value) pairs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Debug for HeaderMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

fn check_header(name: &str, value: &str) -> Result<()> {
    let fail = |reason| {
        Err(Error::InvalidHeader {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return fail("empty name");
    }
    if name
        .bytes()
        .any(|b| b == b':' || b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return fail("name holds ':', whitespace or a control character");
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n') {
        return fail("value holds CR or LF");
    }
    Ok(())
}

/// Publishes a reply on behalf of [`Message::respond`]; implemented by the scope that delivered
/// the message, so messages need not know about routers.
pub(crate) trait Responder: Send + Sync {
    fn respond(&self, reply: &str, payload: Bytes) -> Result<()>;
}

/// A message's headers, kept in whichever form they arrived in and converted on demand: a
/// message from a network client carries its `NATS/1.0` block, passed through to other clients
/// untouched and parsed only if a local subscriber asks for the map; a message from the
/// library carries a [`HeaderMap`], encoded once if a network subscriber needs the block.
pub(crate) struct Headers(Option<HeaderForm>);

enum HeaderForm {
    Map(HeaderMap, OnceLock<Bytes>),
    Block(Bytes, OnceLock<HeaderMap>),
}

impl Headers {
    /// No headers.
    pub(crate) const NONE: Headers = Headers(None);

    /// Headers given as a map (by the library).
    pub(crate) fn from_map(map: Option<HeaderMap>) -> Headers {
        Headers(map.map(|map| HeaderForm::Map(map, OnceLock::new())))
    }

    /// Headers given as a wire block (by a network client).
    pub(crate) fn from_block(block: Option<Bytes>) -> Headers {
        Headers(block.map(|block| HeaderForm::Block(block, OnceLock::new())))
    }

    fn map(&self) -> Option<&HeaderMap> {
        Some(match self.0.as_ref()? {
            HeaderForm::Map(map, _) => map,
            HeaderForm::Block(block, map) => map.get_or_init(|| HeaderMap::from_block(block)),
        })
    }

    fn block(&self) -> Option<&[u8]> {
        Some(match self.0.as_ref()? {
            HeaderForm::Block(block, _) => block,
            HeaderForm::Map(map, block) => block.get_or_init(|| {
                let mut out = Vec::with_capacity(16 + 32 * map.len());
                herald_proto::headers::encode(&mut out, None, map.iter());
                Bytes::from(out)
            }),
        })
    }
}

/// A published message as a subscriber sees it: subject, payload, optional headers and reply
/// subject. Cheap to clone.
// `triomphe::Arc` has no weak count: freeing a message, and checking that nobody else holds
// one before refilling it in place, cost no atomic read-modify-write beyond the strong count.
#[derive(Clone)]
pub struct Message(triomphe::Arc<Inner>);

/// 56 bytes, a 64-byte allocation with glibc's malloc: a ring or a mailbox holding many
/// messages touches as few cache lines and pages as it can.
struct Inner {
    subject: Subject,
    payload: Bytes,
    extras: Extras,
}

/// What most messages do not have: headers, a reply subject. Boxed together, so a message with
/// neither pays one null word for them, and dropping them is one test of that word.
struct Extras(Option<Box<Extra>>);

struct Extra {
    headers: Headers,
    reply: Option<Subject>,
    // Where `respond` publishes; only set when there is a reply subject. Weak, so buffered
    // messages never keep a scope (and through it their own mailbox) alive.
    responder: Option<Weak<dyn Responder>>,
}

impl Drop for Extras {
    // Inlined into the message's drop: most messages have no extras, and the generated drop
    // glue was an out-of-line call for that one test.
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(extra) = self.0.take() {
            drop_extra(extra);
        }
    }
}

#[cold]
#[inline(never)]
fn drop_extra(extra: Box<Extra>) {
    drop(extra);
}

impl Extras {
    fn headers(&self) -> Option<&Headers> {
        self.0.as_ref().map(|extra| &extra.headers)
    }

    fn reply(&self) -> Option<&Subject> {
        self.0.as_ref()?.reply.as_ref()
    }
}

impl Message {
    pub(crate) fn new(
        subject: Subject,
        reply: Option<Subject>,
        headers: Headers,
        payload: Bytes,
        responder: Option<Weak<dyn Responder>>,
    ) -> Self {
        let extras = if reply.is_none() && headers.0.is_none() {
            Extras(None)
        } else {
            Extras(Some(Box::new(Extra {
                headers,
                responder: reply.as_ref().and(responder),
                reply,
            })))
        };
        Message(triomphe::Arc::new(Inner {
            subject,
            payload,
            extras,
        }))
    }

    /// Makes this message a new publish of `payload` on `subject` if no other handle shares it
    /// and it has no reply subject or headers either: a ring reuses the message in a slot it
    /// overwrites once every reader is done with it, which saves the allocation and its
    /// reference counts. On success `payload` holds the old payload and the result the old
    /// subject if it changed, for the caller to drop outside any lock; `None` leaves both as
    /// they were. (Swapping through `&mut` keeps the payload from being copied through return
    /// values on the hot path.)
    #[inline]
    pub(crate) fn refill(
        &mut self,
        subject: &Subject,
        payload: &mut Bytes,
    ) -> Option<Option<Subject>> {
        let inner = triomphe::Arc::get_mut(&mut self.0)?;
        if inner.extras.0.is_some() {
            return None;
        }
        std::mem::swap(&mut inner.payload, payload);
        // A publisher repeats its subjects: keep the one held rather than clone it again.
        if inner.subject.ptr_eq(subject) {
            return Some(None);
        }
        Some(Some(std::mem::replace(&mut inner.subject, subject.clone())))
    }

    /// Whether `self` and `other` are handles of the same published message (not just equal
    /// contents): a target that renders each message once for many subscribers can key a
    /// cache on it.
    pub fn ptr_eq(&self, other: &Message) -> bool {
        triomphe::Arc::ptr_eq(&self.0, &other.0)
    }

    /// How many handles share this message (tests of who keeps a message alive).
    #[cfg(test)]
    pub(crate) fn holders(&self) -> usize {
        triomphe::Arc::count(&self.0)
    }

    /// The subject it was published on.
    pub fn subject(&self) -> &str {
        self.0.subject.as_str()
    }

    /// The subject, as a shared [`Subject`].
    pub fn subject_shared(&self) -> &Subject {
        &self.0.subject
    }

    /// The reply subject, when the publisher expects an answer.
    pub fn reply(&self) -> Option<&str> {
        self.0.extras.reply().map(Subject::as_str)
    }

    /// The headers, when the publisher set any. A malformed block from a network client reads
    /// as an empty map.
    pub fn headers(&self) -> Option<&HeaderMap> {
        self.0.extras.headers()?.map()
    }

    /// The headers as a `NATS/1.0` block (final blank line included), as HMSG carries them;
    /// `None` when the publisher set none.
    pub fn header_block(&self) -> Option<&[u8]> {
        self.0.extras.headers()?.block()
    }

    /// The payload bytes.
    pub fn payload(&self) -> &Bytes {
        &self.0.payload
    }

    /// The payload as UTF-8 text.
    pub fn text(&self) -> Result<&str> {
        Ok(std::str::from_utf8(&self.0.payload)?)
    }

    /// The payload decoded from JSON.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), herald::Error> {
    /// let router = herald::Router::new(8, "docs");
    /// let mut sub = router.subscribe("points")?;
    /// router.publish_json("points", &(3, 4))?;
    /// let (x, y): (i32, i32) = sub.recv().await.unwrap().json()?;
    /// assert_eq!(x * x + y * y, 25);
    /// # Ok(()) }
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_slice(&self.0.payload)?)
    }

    /// Publishes `payload` to this message's reply subject, in the scope it was delivered in.
    ///
    /// Fails with [`Error::NoReplySubject`] when the publisher expects no answer, and with
    /// [`Error::Closed`] when the router is gone.
    pub fn respond(&self, payload: impl Into<Bytes>) -> Result<()> {
        let (Some(reply), Some(extra)) = (self.0.extras.reply(), self.0.extras.0.as_ref()) else {
            return Err(Error::NoReplySubject(self.subject().to_owned()));
        };
        let responder = extra
            .responder
            .as_ref()
            .and_then(Weak::upgrade)
            .ok_or(Error::Closed(
                "the router that delivered this message is gone",
            ))?;
        responder.respond(reply, payload.into())
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Message");
        d.field("subject", &self.0.subject);
        if let Some(reply) = self.0.extras.reply() {
            d.field("reply", reply);
        }
        if let Some(headers) = self.headers() {
            d.field("headers", headers);
        }
        d.field("payload", &self.0.payload).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_multi_valued_and_case_kept() {
        let mut h = HeaderMap::new();
        h.append("A", "1").unwrap();
        h.append("a", "2").unwrap();
        h.append("A", "3").unwrap();
        assert_eq!(h.get_all("A").collect::<Vec<_>>(), ["1", "3"]);
        assert_eq!(h.get("a"), Some("2"));
        h.insert("A", "x").unwrap();
        assert_eq!(h.get_all("A").collect::<Vec<_>>(), ["x"]);
        assert!(h.remove("a"));
        assert!(!h.remove("a"));
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn headers_convert_between_map_and_block() {
        let mut h = HeaderMap::new();
        h.append("A", "1").unwrap();
        h.append("A", "2").unwrap();
        let from_map = Headers::from_map(Some(h.clone()));
        assert_eq!(
            from_map.block().unwrap(),
            b"NATS/1.0\r\nA: 1\r\nA: 2\r\n\r\n"
        );
        let from_block = Headers::from_block(from_map.block().map(Bytes::copy_from_slice));
        assert_eq!(from_block.map(), Some(&h));
        let bad = Headers::from_block(Some(Bytes::from_static(b"HTTP/1.1\r\n\r\n")));
        assert_eq!(bad.map(), Some(&HeaderMap::new()));
        assert!(Headers::NONE.map().is_none() && Headers::NONE.block().is_none());
    }

    #[test]
    fn bad_headers_are_rejected() {
        let mut h = HeaderMap::new();
        assert!(h.append("", "v").is_err());
        assert!(h.append("a:b", "v").is_err());
        assert!(h.append("a b", "v").is_err());
        assert!(h.append("a", "line\r\nInjected: 1").is_err());
        assert!(h.is_empty());
    }

    #[test]
    fn a_plain_message_fits_a_64_byte_allocation() {
        // With malloc's 8-byte chunk header: a 56-byte body is a 64-byte chunk.
        assert!(std::mem::size_of::<Inner>() + std::mem::size_of::<usize>() <= 56);
    }

    #[test]
    fn respond_without_reply_is_an_error() {
        let msg = Message::new(
            Subject::new("a").unwrap(),
            None,
            Headers::NONE,
            Bytes::new(),
            None,
        );
        assert!(matches!(msg.respond("x"), Err(Error::NoReplySubject(s)) if s == "a"));
        assert!(msg.text().unwrap().is_empty());
    }
}
