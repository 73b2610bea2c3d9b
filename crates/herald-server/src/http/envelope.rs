//! The message envelope of SPEC 4.2, the JSON form of a message in SSE events, batch
//! publishes and message reads: `{"subject", "data" | "data_base64", "headers"?, "reply"?}`.
//!
//! Writing goes straight into an output buffer (an SSE client's, on the publisher's thread),
//! so a delivery costs no intermediate value; reading (batch publish) goes through serde.

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::Deserialize;

/// The parts of a message an envelope shows.
pub(crate) struct Parts<'a> {
    pub(crate) subject: &'a str,
    pub(crate) reply: Option<&'a str>,
    /// The `NATS/1.0` header block, if any.
    pub(crate) headers: Option<&'a [u8]>,
    pub(crate) payload: &'a [u8],
}

/// Appends `parts` as an envelope object, leaving it open (no closing brace) so a caller can
/// add fields of its own (a stream message's sequence); [`close`] ends it.
pub(crate) fn open(out: &mut Vec<u8>, parts: &Parts<'_>) {
    out.extend_from_slice(b"{\"subject\":");
    string(out, parts.subject);
    match std::str::from_utf8(parts.payload) {
        Ok(text) => {
            out.extend_from_slice(b",\"data\":");
            string(out, text);
        }
        Err(_) => {
            out.extend_from_slice(b",\"data_base64\":\"");
            let start = out.len();
            let len = base64::encoded_len(parts.payload.len(), true).unwrap_or(0);
            out.resize(start + len, 0);
            let written = BASE64
                .encode_slice(parts.payload, &mut out[start..])
                .unwrap_or(0);
            out.truncate(start + written);
            out.push(b'"');
        }
    }
    if let Some(block) = parts.headers
        && let Ok(parsed) = herald_proto::headers::parse(block)
        && !parsed.fields.is_empty()
    {
        out.extend_from_slice(b",\"headers\":");
        let mut grouped: Vec<(&str, Vec<&str>)> = Vec::new();
        for (name, value) in parsed.fields {
            match grouped.iter_mut().find(|(n, _)| *n == name) {
                Some((_, values)) => values.push(value),
                None => grouped.push((name, vec![value])),
            }
        }
        let _ = serde_json::to_writer(&mut *out, &Ordered(&grouped));
    }
    if let Some(reply) = parts.reply {
        out.extend_from_slice(b",\"reply\":");
        string(out, reply);
    }
}

/// Ends an envelope [`open`] began.
pub(crate) fn close(out: &mut Vec<u8>) {
    out.push(b'}');
}

/// Appends `field` and a JSON value to an open envelope.
pub(crate) fn field(out: &mut Vec<u8>, name: &str, value: impl serde::Serialize) {
    out.push(b',');
    string(out, name);
    out.push(b':');
    let _ = serde_json::to_writer(&mut *out, &value);
}

fn string(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Header groups in the order they came, serialized as a JSON object.
struct Ordered<'a>(&'a [(&'a str, Vec<&'a str>)]);

impl serde::Serialize for Ordered<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, values) in self.0 {
            map.serialize_entry(name, values)?;
        }
        map.end()
    }
}

/// One message of a batch publish, as the client sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Incoming {
    pub(crate) subject: String,
    #[serde(default)]
    pub(crate) data: Option<String>,
    #[serde(default)]
    pub(crate) data_base64: Option<String>,
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    pub(crate) reply: Option<String>,
}

/// A header's values: `"v"` or `["v1", "v2"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(crate) fn values(&self) -> &[String] {
        match self {
            OneOrMany::One(v) => std::slice::from_ref(v),
            OneOrMany::Many(v) => v,
        }
    }
}

impl Incoming {
    /// The payload: `data` as UTF-8 bytes, or `data_base64` decoded (not both).
    pub(crate) fn payload(&self) -> Result<Bytes, String> {
        match (&self.data, &self.data_base64) {
            (Some(_), Some(_)) => Err("give data or data_base64, not both".into()),
            (Some(text), None) => Ok(Bytes::copy_from_slice(text.as_bytes())),
            (None, Some(b64)) => BASE64
                .decode(b64)
                .map(Bytes::from)
                .map_err(|e| format!("data_base64 is not base64: {e}")),
            (None, None) => Ok(Bytes::new()),
        }
    }
}

/// Writes `n` in decimal.
pub(crate) fn number(out: &mut Vec<u8>, n: u64) {
    let _ = write!(out, "{n}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(parts: &Parts<'_>) -> serde_json::Value {
        let mut out = Vec::new();
        open(&mut out, parts);
        field(&mut out, "seq", 7);
        close(&mut out);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn text_binary_headers_and_reply() {
        let v = envelope(&Parts {
            subject: "a.b",
            reply: Some("_INBOX.1"),
            headers: Some(b"NATS/1.0\r\nA: 1\r\nB: x\r\nA: 2\r\n\r\n"),
            payload: "h\u{e9}\"\n".as_bytes(),
        });
        assert_eq!(
            v,
            serde_json::json!({"subject": "a.b", "data": "h\u{e9}\"\n", "reply": "_INBOX.1",
                "headers": {"A": ["1", "2"], "B": ["x"]}, "seq": 7})
        );
        let v = envelope(&Parts {
            subject: "bin",
            reply: None,
            headers: None,
            payload: &[0xff, 0, 1],
        });
        assert_eq!(v["data_base64"], "/wAB");
        assert!(v.get("data").is_none() && v.get("headers").is_none());
    }

    #[test]
    fn incoming_payloads() {
        let e: Incoming = serde_json::from_str(r#"{"subject":"a","data_base64":"/wAB"}"#).unwrap();
        assert_eq!(&e.payload().unwrap()[..], &[0xff, 0, 1]);
        let e: Incoming =
            serde_json::from_str(r#"{"subject":"a","data":"x","data_base64":"eA=="}"#).unwrap();
        assert!(e.payload().is_err());
        let e: Incoming =
            serde_json::from_str(r#"{"subject":"a","headers":{"K":"v","L":["1","2"]}}"#).unwrap();
        assert_eq!(e.headers["L"].values(), ["1", "2"]);
        assert!(serde_json::from_str::<Incoming>(r#"{"subject":"a","bogus":1}"#).is_err());
    }
}
