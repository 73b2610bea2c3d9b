//! Client → server operations: what a NATS client sends and herald's server parses.

use crate::scan::{self, Limits, ParseError, Parsed, bad, trim};

/// One operation from a client, borrowing from the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp<'a> {
    /// `CONNECT {json}`: the JSON options, unparsed.
    Connect(&'a [u8]),
    /// `PUB <subject> [reply] <size>` and its payload.
    Pub {
        /// Subject published to (UTF-8; rules are the server's to check).
        subject: &'a str,
        /// Reply subject, if any.
        reply: Option<&'a str>,
        /// Payload bytes.
        payload: &'a [u8],
    },
    /// `HPUB <subject> [reply] <header size> <total size>`, its header block and payload.
    HPub {
        /// Subject published to.
        subject: &'a str,
        /// Reply subject, if any.
        reply: Option<&'a str>,
        /// The `NATS/1.0` header block, final blank line included.
        headers: &'a [u8],
        /// Payload bytes after the headers.
        payload: &'a [u8],
    },
    /// `SUB <subject> [queue] <sid>`.
    Sub {
        /// Subject or pattern.
        subject: &'a str,
        /// Queue group, if any.
        queue: Option<&'a str>,
        /// The client's subscription id.
        sid: &'a str,
    },
    /// `UNSUB <sid> [max]`.
    Unsub {
        /// The client's subscription id.
        sid: &'a str,
        /// Unsubscribe after this many messages in total.
        max: Option<u64>,
    },
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
}

/// Parses one client operation from the start of `buf`.
///
/// # Examples
/// ```
/// use herald_proto::{parse_client, ClientOp, Limits, Parsed};
/// let buf = b"PUB orders.42 5\r\nhello\r\nPING\r\n";
/// let Parsed::Op(op, used) = parse_client(buf, &Limits::default()).unwrap() else { panic!() };
/// assert_eq!(op, ClientOp::Pub { subject: "orders.42", reply: None, payload: b"hello" });
/// assert_eq!(parse_client(&buf[used..], &Limits::default()).unwrap(), Parsed::Op(ClientOp::Ping, 6));
/// assert_eq!(parse_client(b"PUB a 5\r\nhel", &Limits::default()).unwrap(), Parsed::Incomplete);
/// ```
pub fn parse_client<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Parsed<ClientOp<'a>>, ParseError> {
    let Some((line, after)) = scan::line(buf, limits.max_control_line)? else {
        return Ok(Parsed::Incomplete);
    };
    let (name, rest) = scan::op_name(line);
    let done = |op| Ok(Parsed::Op(op, after));
    if name.eq_ignore_ascii_case(b"PUB") {
        let (a, n) = scan::args::<3>(rest);
        let (subject, reply, size) = match n {
            2 => (a[0], None, a[1]),
            3 => (a[0], Some(a[1]), a[2]),
            _ => return Err(bad("PUB", "expected <subject> [reply] <size>")),
        };
        let Some((payload, end)) = scan::body(buf, after, size, limits, "PUB")? else {
            return Ok(Parsed::Incomplete);
        };
        let subject = scan::text(subject, "PUB", "subject is not UTF-8")?;
        let reply = scan::opt_text(reply, "PUB", "reply is not UTF-8")?;
        return Ok(Parsed::Op(
            ClientOp::Pub {
                subject,
                reply,
                payload,
            },
            end,
        ));
    }
    if name.eq_ignore_ascii_case(b"HPUB") {
        let (a, n) = scan::args::<4>(rest);
        let (subject, reply, hsize, tsize) = match n {
            3 => (a[0], None, a[1], a[2]),
            4 => (a[0], Some(a[1]), a[2], a[3]),
            _ => {
                return Err(bad(
                    "HPUB",
                    "expected <subject> [reply] <header size> <total size>",
                ));
            }
        };
        let Some((headers, payload, end)) =
            scan::headed_body(buf, after, hsize, tsize, limits, "HPUB")?
        else {
            return Ok(Parsed::Incomplete);
        };
        let subject = scan::text(subject, "HPUB", "subject is not UTF-8")?;
        let reply = scan::opt_text(reply, "HPUB", "reply is not UTF-8")?;
        return Ok(Parsed::Op(
            ClientOp::HPub {
                subject,
                reply,
                headers,
                payload,
            },
            end,
        ));
    }
    if name.eq_ignore_ascii_case(b"SUB") {
        let (a, n) = scan::args::<3>(rest);
        let (subject, queue, sid) = match n {
            2 => (a[0], None, a[1]),
            3 => (a[0], Some(a[1]), a[2]),
            _ => return Err(bad("SUB", "expected <subject> [queue] <sid>")),
        };
        return done(ClientOp::Sub {
            subject: scan::text(subject, "SUB", "subject is not UTF-8")?,
            queue: scan::opt_text(queue, "SUB", "queue is not UTF-8")?,
            sid: scan::text(sid, "SUB", "sid is not UTF-8")?,
        });
    }
    if name.eq_ignore_ascii_case(b"UNSUB") {
        let (a, n) = scan::args::<2>(rest);
        let max = match n {
            1 => None,
            2 => Some(scan::size(a[1]).ok_or(bad("UNSUB", "invalid max"))? as u64),
            _ => return Err(bad("UNSUB", "expected <sid> [max]")),
        };
        return done(ClientOp::Unsub {
            sid: scan::text(a[0], "UNSUB", "sid is not UTF-8")?,
            max,
        });
    }
    if name.eq_ignore_ascii_case(b"PING") {
        return done(ClientOp::Ping);
    }
    if name.eq_ignore_ascii_case(b"PONG") {
        return done(ClientOp::Pong);
    }
    if name.eq_ignore_ascii_case(b"CONNECT") {
        return done(ClientOp::Connect(trim(rest)));
    }
    Err(ParseError::UnknownOp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(buf: &[u8]) -> Result<ClientOp<'_>, ParseError> {
        match parse_client(buf, &Limits::default())? {
            Parsed::Op(op, used) => {
                assert_eq!(
                    used,
                    buf.len(),
                    "consumed all of {:?}",
                    String::from_utf8_lossy(buf)
                );
                Ok(op)
            }
            Parsed::Incomplete => panic!("incomplete: {:?}", String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn operations() {
        assert_eq!(one(b"ping\r\n").unwrap(), ClientOp::Ping);
        assert_eq!(one(b"PoNg\r\n").unwrap(), ClientOp::Pong);
        assert_eq!(
            one(b"CONNECT {\"verbose\":false}\r\n").unwrap(),
            ClientOp::Connect(b"{\"verbose\":false}")
        );
        assert_eq!(
            one(b"pub a.b  r.1\t3\r\nx\r\n\r\n").unwrap(),
            ClientOp::Pub {
                subject: "a.b",
                reply: Some("r.1"),
                payload: b"x\r\n"
            }
        );
        assert_eq!(
            one(b"HPUB a 12 14\r\nNATS/1.0\r\n\r\nhi\r\n").unwrap(),
            ClientOp::HPub {
                subject: "a",
                reply: None,
                headers: b"NATS/1.0\r\n\r\n",
                payload: b"hi"
            }
        );
        assert_eq!(
            one(b"SUB jobs.> workers 7\r\n").unwrap(),
            ClientOp::Sub {
                subject: "jobs.>",
                queue: Some("workers"),
                sid: "7"
            }
        );
        assert_eq!(
            one(b"UNSUB 7 10\r\n").unwrap(),
            ClientOp::Unsub {
                sid: "7",
                max: Some(10)
            }
        );
        assert_eq!(
            one(b"UNSUB 7\r\n").unwrap(),
            ClientOp::Unsub {
                sid: "7",
                max: None
            }
        );
    }

    #[test]
    fn errors() {
        let lim = Limits::default();
        assert_eq!(one(b"FOO\r\n").unwrap_err(), ParseError::UnknownOp);
        assert_eq!(one(b"\r\n").unwrap_err(), ParseError::UnknownOp);
        assert!(matches!(
            one(b"PUB a -1\r\n"),
            Err(ParseError::BadArgs { .. })
        ));
        assert!(matches!(one(b"PUB a\r\n"), Err(ParseError::BadArgs { .. })));
        assert!(matches!(
            one(b"PUB a b c d\r\n"),
            Err(ParseError::BadArgs { .. })
        ));
        assert!(matches!(
            one(b"HPUB a 5 3\r\n"),
            Err(ParseError::BadArgs { .. })
        ));
        assert!(matches!(
            one(b"PUB a 2\r\nabc\r\n"),
            Err(ParseError::BadPayloadEnd { .. })
        ));
        let huge = parse_client(b"PUB a 1048577\r\n", &lim).unwrap_err();
        assert_eq!(huge.nats_error(), "Maximum Payload Violation");
        let long = vec![b'A'; 5000];
        assert_eq!(
            parse_client(&long, &lim).unwrap_err().nats_error(),
            "Maximum Control Line Exceeded"
        );
        assert!(matches!(
            one(b"SUB \xff 1\r\n"),
            Err(ParseError::BadArgs { .. })
        ));
    }

    #[test]
    fn incomplete_until_whole() {
        let full = b"PUB a.b 5\r\nhello\r\n";
        for cut in 0..full.len() {
            assert_eq!(
                parse_client(&full[..cut], &Limits::default()).unwrap(),
                Parsed::Incomplete,
                "{cut}"
            );
        }
    }
}
