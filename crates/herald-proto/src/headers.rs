//! The `NATS/1.0` header block of HPUB and HMSG.
//!
//! `NATS/1.0[ <status>[ <description>]]` CRLF, then `Name: value` CRLF lines, then an empty
//! line. Names keep their case and may repeat. A status line (`NATS/1.0 503`) is how the server
//! tells a requester there are no responders.

/// A parsed header block, borrowing from the buffer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderBlock<'a> {
    /// The status code, if the version line carries one (e.g. 503).
    pub status: Option<u16>,
    /// The status description after the code (may be empty).
    pub description: &'a str,
    /// The fields in order; names may repeat.
    pub fields: Vec<(&'a str, &'a str)>,
}

/// Why a header block is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The block does not start with `NATS/1.0`.
    #[error("header block does not start with NATS/1.0")]
    Version,
    /// The block is not UTF-8 text.
    #[error("header block is not UTF-8")]
    Utf8,
    /// A field line without a `:`, or with an empty or invalid name.
    #[error("malformed header line")]
    Line,
    /// A status that is not a three-digit number.
    #[error("malformed status")]
    Status,
}

/// Parses a header block (as carried by HPUB/HMSG, final blank line included or not).
pub fn parse(block: &[u8]) -> Result<HeaderBlock<'_>, HeaderError> {
    let text = std::str::from_utf8(block).map_err(|_| HeaderError::Utf8)?;
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let rest = first.strip_prefix("NATS/1.0").ok_or(HeaderError::Version)?;
    let mut out = HeaderBlock::default();
    let rest = rest.trim_start();
    if !rest.is_empty() {
        let (code, description) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HeaderError::Status);
        }
        out.status = code.parse().ok();
        out.description = description.trim();
    }
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line.split_once(':').ok_or(HeaderError::Line)?;
        if name.is_empty()
            || name
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(HeaderError::Line);
        }
        out.fields.push((name, value.trim()));
    }
    Ok(out)
}

/// Appends a header block with an optional status and the given fields.
///
/// Names must not hold `:`, whitespace or control characters and values must not hold CR or
/// LF; herald's `HeaderMap` guarantees both.
pub fn encode<'a>(
    out: &mut Vec<u8>,
    status: Option<(u16, &str)>,
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    out.extend_from_slice(b"NATS/1.0");
    if let Some((code, description)) = status {
        out.push(b' ');
        crate::encode::number(out, u64::from(code));
        if !description.is_empty() {
            out.push(b' ');
            out.extend_from_slice(description.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    for (name, value) in fields {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_fields() {
        let h = parse(b"NATS/1.0 503\r\n\r\n").unwrap();
        assert_eq!(
            (h.status, h.description, h.fields.len()),
            (Some(503), "", 0)
        );
        let h = parse(b"NATS/1.0 408 Request Timeout\r\nA: 1\r\nA: 2\r\nb:x\r\n\r\n").unwrap();
        assert_eq!(h.status, Some(408));
        assert_eq!(h.description, "Request Timeout");
        assert_eq!(h.fields, [("A", "1"), ("A", "2"), ("b", "x")]);
        assert_eq!(
            parse(b"HTTP/1.1\r\n\r\n").unwrap_err(),
            HeaderError::Version
        );
        assert_eq!(
            parse(b"NATS/1.0\r\nnocolon\r\n\r\n").unwrap_err(),
            HeaderError::Line
        );
        assert_eq!(
            parse(b"NATS/1.0 5x3\r\n\r\n").unwrap_err(),
            HeaderError::Status
        );
    }
}
