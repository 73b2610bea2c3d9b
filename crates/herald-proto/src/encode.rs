//! Writers: append protocol operations to an output buffer, without allocating beyond it.

/// `PING\r\n`.
pub const PING: &[u8] = b"PING\r\n";
/// `PONG\r\n`.
pub const PONG: &[u8] = b"PONG\r\n";
/// `+OK\r\n`.
pub const OK: &[u8] = b"+OK\r\n";

/// Two decimal digits for each of 0..100.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Appends the decimal form of `n`.
pub fn number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(digits(n, &mut [0; 20]));
}

/// The decimal form of `n`, written at the end of `digits` (two digits per division).
pub fn digits(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut i = digits.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        digits[i] = b'0' + n as u8;
    }
    &digits[i..]
}

/// `MSG <subject> <sid> [reply] <size>` CRLF payload CRLF.
pub fn msg(out: &mut Vec<u8>, subject: &str, sid: &str, reply: Option<&str>, payload: &[u8]) {
    head(out, b"MSG ", subject, Some(sid), reply, payload.len());
    body(out, None, payload);
}

/// `HMSG <subject> <sid> [reply] <header size> <total size>` CRLF headers payload CRLF.
pub fn hmsg(
    out: &mut Vec<u8>,
    subject: &str,
    sid: &str,
    reply: Option<&str>,
    headers: &[u8],
    payload: &[u8],
) {
    head(
        out,
        b"HMSG ",
        subject,
        Some(sid),
        reply,
        headers.len() + payload.len(),
    );
    body(out, Some(headers), payload);
}

/// `PUB <subject> [reply] <size>` CRLF payload CRLF.
pub fn publish(out: &mut Vec<u8>, subject: &str, reply: Option<&str>, payload: &[u8]) {
    head(out, b"PUB ", subject, None, reply, payload.len());
    body(out, None, payload);
}

/// `HPUB <subject> [reply] <header size> <total size>` CRLF headers payload CRLF.
pub fn hpublish(
    out: &mut Vec<u8>,
    subject: &str,
    reply: Option<&str>,
    headers: &[u8],
    payload: &[u8],
) {
    head(
        out,
        b"HPUB ",
        subject,
        None,
        reply,
        headers.len() + payload.len(),
    );
    body(out, Some(headers), payload);
}

/// The operation, subject, sid and reply of a message-carrying line, each followed by a space.
fn head(
    out: &mut Vec<u8>,
    op: &[u8],
    subject: &str,
    sid: Option<&str>,
    reply: Option<&str>,
    body_len: usize,
) {
    out.reserve(
        op.len()
            + subject.len()
            + sid.map_or(0, str::len)
            + reply.map_or(0, str::len)
            + body_len
            + 48,
    );
    out.extend_from_slice(op);
    for part in [Some(subject), sid, reply].into_iter().flatten() {
        out.extend_from_slice(part.as_bytes());
        out.push(b' ');
    }
}

/// The sizes (header size first when there are headers), CRLF, the bytes, CRLF.
fn body(out: &mut Vec<u8>, headers: Option<&[u8]>, payload: &[u8]) {
    let header_len = headers.map_or(0, <[u8]>::len);
    if headers.is_some() {
        number(out, header_len as u64);
        out.push(b' ');
    }
    number(out, (header_len + payload.len()) as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(headers.unwrap_or_default());
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// `SUB <subject> [queue] <sid>` CRLF.
pub fn sub(out: &mut Vec<u8>, subject: &str, queue: Option<&str>, sid: &str) {
    out.extend_from_slice(b"SUB ");
    out.extend_from_slice(subject.as_bytes());
    out.push(b' ');
    if let Some(queue) = queue {
        out.extend_from_slice(queue.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(sid.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `UNSUB <sid> [max]` CRLF.
pub fn unsub(out: &mut Vec<u8>, sid: &str, max: Option<u64>) {
    out.extend_from_slice(b"UNSUB ");
    out.extend_from_slice(sid.as_bytes());
    if let Some(max) = max {
        out.push(b' ');
        number(out, max);
    }
    out.extend_from_slice(b"\r\n");
}

/// `INFO {json}` CRLF.
pub fn info(out: &mut Vec<u8>, json: &[u8]) {
    out.extend_from_slice(b"INFO ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\r\n");
}

/// `CONNECT {json}` CRLF.
pub fn connect(out: &mut Vec<u8>, json: &[u8]) {
    out.extend_from_slice(b"CONNECT ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\r\n");
}

/// `-ERR '<text>'` CRLF.
pub fn err(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"-ERR '");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"'\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        let edges = (0..20).flat_map(|e| {
            let p = 10u64.pow(e);
            [p - 1, p, p + 1]
        });
        for n in (0u64..10_000)
            .chain(edges)
            .chain([12345, u64::MAX - 1, u64::MAX])
        {
            let mut out = Vec::new();
            number(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn forms() {
        let mut out = Vec::new();
        msg(&mut out, "a.b", "1", Some("r"), b"hi");
        assert_eq!(out, b"MSG a.b 1 r 2\r\nhi\r\n");
        out.clear();
        hmsg(&mut out, "a", "9", None, b"NATS/1.0\r\n\r\n", b"x");
        assert_eq!(out, b"HMSG a 9 12 13\r\nNATS/1.0\r\n\r\nx\r\n");
        out.clear();
        err(&mut out, "Slow Consumer");
        assert_eq!(out, b"-ERR 'Slow Consumer'\r\n");
    }
}
