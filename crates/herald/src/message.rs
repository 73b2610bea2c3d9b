//! Messages and their headers.
//!
//! A [`Message`] is published once and shared by every subscription that receives it: cloning
//! one is a reference-count increment, so fan-out to N targets costs N increments, not N copies.

use std::fmt;
use std::sync::{Arc, Weak};

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

/// A published message as a subscriber sees it: subject, payload, optional headers and reply
/// subject. Cheap to clone.
#[derive(Clone)]
pub struct Message(Arc<Inner>);

struct Inner {
    subject: Subject,
    reply: Option<Subject>,
    headers: Option<HeaderMap>,
    payload: Bytes,
    // Where `respond` publishes; only set when there is a reply subject. Weak, so buffered
    // messages never keep a scope (and through it their own mailbox) alive.
    responder: Option<Weak<dyn Responder>>,
}

impl Message {
    pub(crate) fn new(
        subject: Subject,
        reply: Option<Subject>,
        headers: Option<HeaderMap>,
        payload: Bytes,
        responder: Option<Weak<dyn Responder>>,
    ) -> Self {
        Message(Arc::new(Inner {
            subject,
            reply,
            headers,
            payload,
            responder,
        }))
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
        self.0.reply.as_deref()
    }

    /// The headers, when the publisher set any.
    pub fn headers(&self) -> Option<&HeaderMap> {
        self.0.headers.as_ref()
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
        let reply = self
            .0
            .reply
            .as_ref()
            .ok_or_else(|| Error::NoReplySubject(self.subject().to_owned()))?;
        let responder = self
            .0
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
        if let Some(reply) = &self.0.reply {
            d.field("reply", reply);
        }
        if let Some(headers) = &self.0.headers {
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
    fn bad_headers_are_rejected() {
        let mut h = HeaderMap::new();
        assert!(h.append("", "v").is_err());
        assert!(h.append("a:b", "v").is_err());
        assert!(h.append("a b", "v").is_err());
        assert!(h.append("a", "line\r\nInjected: 1").is_err());
        assert!(h.is_empty());
    }

    #[test]
    fn respond_without_reply_is_an_error() {
        let msg = Message::new(Subject::new("a").unwrap(), None, None, Bytes::new(), None);
        assert!(matches!(msg.respond("x"), Err(Error::NoReplySubject(s)) if s == "a"));
        assert!(msg.text().unwrap().is_empty());
    }
}
