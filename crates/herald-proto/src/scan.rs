//! Control-line scanning shared by both parsers: find the line, split its arguments, read sizes.

use memchr::memchr;

/// Limits a parser enforces before it buffers more input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest control line (the operation and its arguments, without CRLF), in bytes.
    pub max_control_line: usize,
    /// Largest payload (headers included) a PUB or HPUB may declare, in bytes.
    pub max_payload: usize,
}

impl Default for Limits {
    /// nats-server's defaults: 4096-byte control lines, 1 MiB payloads.
    fn default() -> Self {
        Limits {
            max_control_line: 4096,
            max_payload: 1024 * 1024,
        }
    }
}

/// The outcome of parsing the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    /// One operation and the number of bytes it took.
    Op(T, usize),
    /// The buffer holds only part of an operation: read more and call again.
    Incomplete,
}

/// Why the input is not valid protocol. The server answers with [`ParseError::nats_error`] and,
/// where [`ParseError::closes`] says so, closes the connection (as nats-server does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The operation name is unknown.
    #[error("unknown protocol operation")]
    UnknownOp,
    /// A control line longer than the limit (or no line end within it).
    #[error("control line longer than {0} bytes")]
    ControlLineTooLong(usize),
    /// A declared payload size larger than max_payload.
    #[error("payload of {size} bytes exceeds the maximum of {max}")]
    PayloadTooLarge {
        /// Declared size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Arguments in the wrong number or form for the operation.
    #[error("invalid arguments for {op}: {reason}")]
    BadArgs {
        /// The operation.
        op: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A payload not followed by CRLF where its declared size ends.
    #[error("payload of {op} not terminated by CRLF at its declared size")]
    BadPayloadEnd {
        /// The operation.
        op: &'static str,
    },
}

impl ParseError {
    /// The text nats-server sends in `-ERR '<text>'` for this error.
    pub fn nats_error(&self) -> &'static str {
        match self {
            ParseError::ControlLineTooLong(_) => "Maximum Control Line Exceeded",
            ParseError::PayloadTooLarge { .. } => "Maximum Payload Violation",
            ParseError::UnknownOp
            | ParseError::BadArgs { .. }
            | ParseError::BadPayloadEnd { .. } => "Unknown Protocol Operation",
        }
    }

    /// Whether the server closes the connection after reporting it (all protocol errors do).
    pub fn closes(&self) -> bool {
        true
    }
}

/// A complete control line at the start of `buf`, without its CRLF, and the offset just after
/// the CRLF; `Ok(None)` if the line is not complete yet.
pub(crate) fn line(buf: &[u8], max: usize) -> Result<Option<(&[u8], usize)>, ParseError> {
    match memchr(b'\n', buf) {
        Some(nl) => {
            let end = if nl > 0 && buf[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            if end > max {
                return Err(ParseError::ControlLineTooLong(max));
            }
            Ok(Some((&buf[..end], nl + 1)))
        }
        None if buf.len() > max + 1 => Err(ParseError::ControlLineTooLong(max)),
        None => Ok(None),
    }
}

/// Splits a control line into its operation name and the rest.
pub(crate) fn op_name(line: &[u8]) -> (&[u8], &[u8]) {
    let end = line.iter().position(|b| is_space(*b)).unwrap_or(line.len());
    (&line[..end], &line[end..])
}

/// Up to `N` whitespace-separated arguments; returns how many there were (or `N + 1` if more).
pub(crate) fn args<const N: usize>(rest: &[u8]) -> ([&[u8]; N], usize) {
    let mut out: [&[u8]; N] = [&[]; N];
    let mut n = 0;
    for arg in rest.split(|b| is_space(*b)).filter(|a| !a.is_empty()) {
        if n == N {
            return (out, N + 1);
        }
        out[n] = arg;
        n += 1;
    }
    (out, n)
}

pub(crate) fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// A non-negative decimal size; no sign, no overflow.
pub(crate) fn size(arg: &[u8]) -> Option<usize> {
    if arg.is_empty() || arg.len() > 19 {
        return None;
    }
    arg.iter().try_fold(0usize, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + usize::from(b - b'0'))
    })
}

/// The body of an operation whose control line ends at `at` and declares `size` bytes: the body
/// and the offset after its CRLF, or `Ok(None)` until all of it is buffered. The size is checked
/// against `max_payload` before anything is buffered.
pub(crate) fn body<'a>(
    buf: &'a [u8],
    at: usize,
    size: &[u8],
    limits: &Limits,
    op: &'static str,
) -> Result<Option<(&'a [u8], usize)>, ParseError> {
    let len = checked_size(size, limits, op, "invalid size")?;
    let end = at + len;
    if buf.len() < end + 2 {
        return Ok(None);
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err(ParseError::BadPayloadEnd { op });
    }
    Ok(Some((&buf[at..end], end + 2)))
}

/// A header block, a payload, and the offset after them.
pub(crate) type HeadedBody<'a> = (&'a [u8], &'a [u8], usize);

/// Like [`body`] for HPUB/HMSG: `hsize` header bytes within `tsize` bytes in all; gives the
/// header block, the payload and the offset after the CRLF.
pub(crate) fn headed_body<'a>(
    buf: &'a [u8],
    at: usize,
    hsize: &[u8],
    tsize: &[u8],
    limits: &Limits,
    op: &'static str,
) -> Result<Option<HeadedBody<'a>>, ParseError> {
    let hsize = size(hsize).ok_or(ParseError::BadArgs {
        op,
        reason: "invalid header size",
    })?;
    if hsize > checked_size(tsize, limits, op, "invalid total size")? {
        return Err(ParseError::BadArgs {
            op,
            reason: "header size larger than total size",
        });
    }
    Ok(body(buf, at, tsize, limits, op)?.map(|(all, end)| {
        let (headers, payload) = all.split_at(hsize);
        (headers, payload, end)
    }))
}

fn checked_size(
    arg: &[u8],
    limits: &Limits,
    op: &'static str,
    reason: &'static str,
) -> Result<usize, ParseError> {
    let size = size(arg).ok_or(ParseError::BadArgs { op, reason })?;
    if size > limits.max_payload {
        return Err(ParseError::PayloadTooLarge {
            size,
            max: limits.max_payload,
        });
    }
    Ok(size)
}

/// An optional argument (a reply subject, a queue group) as UTF-8 text.
pub(crate) fn opt_text<'a>(
    arg: Option<&'a [u8]>,
    op: &'static str,
    what: &'static str,
) -> Result<Option<&'a str>, ParseError> {
    arg.map(|a| text(a, op, what)).transpose()
}

/// The argument as UTF-8 text, or a BadArgs error.
pub(crate) fn text<'a>(
    arg: &'a [u8],
    op: &'static str,
    what: &'static str,
) -> Result<&'a str, ParseError> {
    std::str::from_utf8(arg).map_err(|_| ParseError::BadArgs { op, reason: what })
}

/// A [`ParseError::BadArgs`] for `op`.
pub(crate) fn bad(op: &'static str, reason: &'static str) -> ParseError {
    ParseError::BadArgs { op, reason }
}

/// `s` without leading and trailing spaces or tabs.
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !is_space(*b)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !is_space(*b))
        .map_or(start, |e| e + 1);
    &s[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size(b"0"), Some(0));
        assert_eq!(size(b"1048576"), Some(1_048_576));
        assert_eq!(size(b"-1"), None);
        assert_eq!(size(b"+1"), None);
        assert_eq!(size(b""), None);
        assert_eq!(size(b"99999999999999999999"), None);
        assert_eq!(size(b"1x"), None);
    }

    #[test]
    fn lines() {
        assert_eq!(line(b"PING\r\n", 10).unwrap(), Some((&b"PING"[..], 6)));
        assert_eq!(line(b"PING\n", 10).unwrap(), Some((&b"PING"[..], 5)));
        assert_eq!(line(b"PIN", 10).unwrap(), None);
        assert!(line(&[b'a'; 20], 10).is_err());
        assert!(line(b"0123456789ab\r\n", 10).is_err());
    }

    #[test]
    fn splitting() {
        let (a, n) = args::<3>(b"  a\tb  c ");
        assert_eq!((a, n), ([&b"a"[..], b"b", b"c"], 3));
        assert_eq!(args::<2>(b"a b c").1, 3);
    }
}
