//! Server → client operations: what herald's server sends and a client (herald's raw bench
//! client, the tests) parses.

use crate::scan::{self, Limits, ParseError, Parsed, bad};

/// One operation from a server, borrowing from the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOp<'a> {
    /// `INFO {json}`.
    Info(&'a [u8]),
    /// `MSG <subject> <sid> [reply] <size>` and its payload.
    Msg {
        /// Subject the message was published on.
        subject: &'a str,
        /// Subscription id it is delivered for.
        sid: &'a str,
        /// Reply subject, if any.
        reply: Option<&'a str>,
        /// Payload bytes.
        payload: &'a [u8],
    },
    /// `HMSG <subject> <sid> [reply] <header size> <total size>`, headers and payload.
    HMsg {
        /// Subject the message was published on.
        subject: &'a str,
        /// Subscription id it is delivered for.
        sid: &'a str,
        /// Reply subject, if any.
        reply: Option<&'a str>,
        /// The `NATS/1.0` header block.
        headers: &'a [u8],
        /// Payload bytes after the headers.
        payload: &'a [u8],
    },
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
    /// `+OK`.
    Ok,
    /// `-ERR '<text>'`: the text without quotes.
    Err(&'a str),
}

/// Parses one server operation from the start of `buf`. `limits.max_payload` bounds what a
/// MSG or HMSG may declare, so a misbehaving server cannot make a client buffer without end.
pub fn parse_server<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Parsed<ServerOp<'a>>, ParseError> {
    let Some((line, after)) = scan::line(buf, limits.max_control_line)? else {
        return Ok(Parsed::Incomplete);
    };
    let (name, rest) = scan::op_name(line);
    let done = |op| Ok(Parsed::Op(op, after));
    if name.eq_ignore_ascii_case(b"MSG") {
        let (a, n) = scan::args::<4>(rest);
        let (subject, sid, reply, size) = match n {
            3 => (a[0], a[1], None, a[2]),
            4 => (a[0], a[1], Some(a[2]), a[3]),
            _ => return Err(bad("MSG", "expected <subject> <sid> [reply] <size>")),
        };
        let Some((payload, end)) = scan::body(buf, after, size, limits, "MSG")? else {
            return Ok(Parsed::Incomplete);
        };
        let op = ServerOp::Msg {
            subject: scan::text(subject, "MSG", "subject is not UTF-8")?,
            sid: scan::text(sid, "MSG", "sid is not UTF-8")?,
            reply: scan::opt_text(reply, "MSG", "reply is not UTF-8")?,
            payload,
        };
        return Ok(Parsed::Op(op, end));
    }
    if name.eq_ignore_ascii_case(b"HMSG") {
        let (a, n) = scan::args::<5>(rest);
        let (subject, sid, reply, hsize, tsize) = match n {
            4 => (a[0], a[1], None, a[2], a[3]),
            5 => (a[0], a[1], Some(a[2]), a[3], a[4]),
            _ => {
                return Err(bad(
                    "HMSG",
                    "expected <subject> <sid> [reply] <header size> <total size>",
                ));
            }
        };
        let Some((headers, payload, end)) =
            scan::headed_body(buf, after, hsize, tsize, limits, "HMSG")?
        else {
            return Ok(Parsed::Incomplete);
        };
        let op = ServerOp::HMsg {
            subject: scan::text(subject, "HMSG", "subject is not UTF-8")?,
            sid: scan::text(sid, "HMSG", "sid is not UTF-8")?,
            reply: scan::opt_text(reply, "HMSG", "reply is not UTF-8")?,
            headers,
            payload,
        };
        return Ok(Parsed::Op(op, end));
    }
    if name.eq_ignore_ascii_case(b"PING") {
        return done(ServerOp::Ping);
    }
    if name.eq_ignore_ascii_case(b"PONG") {
        return done(ServerOp::Pong);
    }
    if name.eq_ignore_ascii_case(b"+OK") {
        return done(ServerOp::Ok);
    }
    if name.eq_ignore_ascii_case(b"-ERR") {
        let text = scan::text(rest, "-ERR", "text is not UTF-8")?.trim();
        let text = text
            .strip_prefix('\'')
            .and_then(|t| t.strip_suffix('\''))
            .unwrap_or(text);
        return done(ServerOp::Err(text));
    }
    if name.eq_ignore_ascii_case(b"INFO") {
        let start = rest
            .iter()
            .position(|b| !scan::is_space(*b))
            .unwrap_or(rest.len());
        return done(ServerOp::Info(&rest[start..]));
    }
    Err(ParseError::UnknownOp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_and_limits() {
        let lim = Limits::default();
        let p = |b| parse_server(b, &lim);
        assert_eq!(p(b"+OK\r\n").unwrap(), Parsed::Op(ServerOp::Ok, 5));
        assert_eq!(
            p(b"-ERR 'Slow Consumer'\r\n").unwrap(),
            Parsed::Op(ServerOp::Err("Slow Consumer"), 22)
        );
        assert_eq!(
            p(b"INFO {}\r\n").unwrap(),
            Parsed::Op(ServerOp::Info(b"{}"), 9)
        );
        assert_eq!(p(b"MSG a 1 2\r\nh").unwrap(), Parsed::Incomplete);
        // A server cannot make a client wait for (and buffer) an oversized body.
        assert!(matches!(
            p(b"MSG a 1 1048577\r\n"),
            Err(ParseError::PayloadTooLarge { .. })
        ));
        assert!(matches!(
            p(b"HMSG a 1 12 1048577\r\n"),
            Err(ParseError::PayloadTooLarge { .. })
        ));
        assert!(matches!(
            p(b"HMSG a 1 5 3\r\n"),
            Err(ParseError::BadArgs { .. })
        ));
    }
}
