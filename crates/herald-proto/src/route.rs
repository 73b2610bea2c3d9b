//! The route protocol between herald nodes: the same framing as the client protocol (text
//! control lines, sized bodies), with operations of its own.
//!
//! | op | form |
//! |---|---|
//! | ROUTE | `ROUTE {json}`: the handshake (cluster, node, proof of the shared secret) |
//! | RS+ / RS- | `RS+ <scope> <pattern> [queue]`: interest appears / disappears on the sender |
//! | RMSG | `RMSG <scope> <subject> [+ <reply>] [\| <queue> ...] <size>` CRLF payload CRLF |
//! | HRMSG | `HRMSG <scope> <subject> [+ <reply>] [\| <queue> ...] <hsize> <tsize>` CRLF headers+payload CRLF |
//! | PING / PONG | keep-alive, and the barrier behind `Node::flush` |
//! | -ERR | `-ERR '<text>'` before the sender closes |
//!
//! A message crosses a route once (forwarding is one hop). The sender picks, for each queue
//! group, the node whose member gets the message; the queues listed after `|` are the groups
//! the receiving node must serve (one member each), besides its plain subscriptions. The `+`
//! and `|` markers are positional, so any reply subject or queue name reads unambiguously.

use crate::scan::{self, Limits, ParseError, Parsed, bad, trim};

/// Most queue groups one RMSG may name.
pub const MAX_QUEUES: usize = 32;

/// One route operation, borrowing from the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteOp<'a> {
    /// `ROUTE {json}`: the handshake, unparsed.
    Route(&'a [u8]),
    /// `RS+` (`add`) or `RS-`: interest in `pattern` (for `queue`) in `scope`.
    Interest {
        /// True for RS+, false for RS-.
        add: bool,
        /// The scope.
        scope: &'a str,
        /// The subscribed pattern.
        pattern: &'a str,
        /// The queue group, if any.
        queue: Option<&'a str>,
    },
    /// `RMSG` or `HRMSG`: a message to deliver on the receiving node.
    Msg(RouteMsg<'a>),
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
    /// `-ERR '<text>'`: the text without quotes.
    Err(&'a str),
}

/// A message carried by RMSG or HRMSG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMsg<'a> {
    /// The scope it was published in.
    pub scope: &'a str,
    /// The subject.
    pub subject: &'a str,
    /// The subject it is delivered to, when not `subject`: a stored message handed to a
    /// client's inbox keeps the subject it was stored under (`RMSG <scope> <subject> >
    /// <to> ...`).
    pub to: Option<&'a str>,
    /// The reply subject, if any.
    pub reply: Option<&'a str>,
    /// Queue groups the receiving node serves, one member each.
    pub queues: Queues<'a>,
    /// The `NATS/1.0` header block (HRMSG only).
    pub headers: Option<&'a [u8]>,
    /// The payload.
    pub payload: &'a [u8],
}

/// The queue groups named by an RMSG: as read off the wire (a space-separated span, so
/// parsing allocates nothing) or as a list a sender chose. Both compare and iterate alike.
#[derive(Debug, Clone, Copy)]
pub enum Queues<'a> {
    /// Names separated by spaces or tabs, as they appear after `|` (empty: none).
    Wire(&'a str),
    /// Names given one by one.
    List(&'a [&'a str]),
}

impl<'a> Queues<'a> {
    /// No queue groups.
    pub const NONE: Queues<'static> = Queues::List(&[]);

    /// The names, in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        let (wire, list) = match *self {
            Queues::Wire(s) => (Some(s.split([' ', '\t']).filter(|q| !q.is_empty())), None),
            Queues::List(l) => (None, Some(l.iter().copied())),
        };
        wire.into_iter().flatten().chain(list.into_iter().flatten())
    }

    /// How many names.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// Whether `queue` is one of them.
    pub fn contains(&self, queue: &str) -> bool {
        self.iter().any(|q| q == queue)
    }
}

impl PartialEq for Queues<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Queues<'_> {}

/// Parses one route operation from the start of `buf`.
///
/// # Examples
/// ```
/// use herald_proto::route::{parse_route, RouteOp};
/// use herald_proto::{Limits, Parsed};
/// let buf = b"RMSG app orders.1 + _INBOX.x | workers 2\r\nhi\r\n";
/// let Parsed::Op(RouteOp::Msg(m), used) = parse_route(buf, &Limits::default()).unwrap() else { panic!() };
/// assert_eq!((m.scope, m.subject, m.reply, m.payload), ("app", "orders.1", Some("_INBOX.x"), &b"hi"[..]));
/// assert_eq!(m.queues.iter().collect::<Vec<_>>(), ["workers"]);
/// assert_eq!(used, buf.len());
/// ```
pub fn parse_route<'a>(buf: &'a [u8], limits: &Limits) -> Result<Parsed<RouteOp<'a>>, ParseError> {
    let Some((line, after)) = scan::line(buf, limits.max_control_line)? else {
        return Ok(Parsed::Incomplete);
    };
    let (name, rest) = scan::op_name(line);
    let done = |op| Ok(Parsed::Op(op, after));
    let headed = name.eq_ignore_ascii_case(b"HRMSG");
    if headed || name.eq_ignore_ascii_case(b"RMSG") {
        let op = if headed { "HRMSG" } else { "RMSG" };
        return message(buf, after, rest, limits, op, headed);
    }
    let add = name == b"RS+";
    if add || name == b"RS-" {
        let op = if add { "RS+" } else { "RS-" };
        let (a, n) = scan::args::<3>(rest);
        if !(2..=3).contains(&n) {
            return Err(bad(op, "expected <scope> <pattern> [queue]"));
        }
        return done(RouteOp::Interest {
            add,
            scope: scan::text(a[0], op, "scope is not UTF-8")?,
            pattern: scan::text(a[1], op, "pattern is not UTF-8")?,
            queue: scan::opt_text((n == 3).then_some(a[2]), op, "queue is not UTF-8")?,
        });
    }
    if name.eq_ignore_ascii_case(b"PING") {
        return done(RouteOp::Ping);
    }
    if name.eq_ignore_ascii_case(b"PONG") {
        return done(RouteOp::Pong);
    }
    if name.eq_ignore_ascii_case(b"ROUTE") {
        return done(RouteOp::Route(trim(rest)));
    }
    if name.eq_ignore_ascii_case(b"-ERR") {
        let text = scan::text(trim(rest), "-ERR", "error is not UTF-8")?;
        return done(RouteOp::Err(text.trim_matches('\'')));
    }
    Err(ParseError::UnknownOp)
}

fn message<'a>(
    buf: &'a [u8],
    after: usize,
    rest: &'a [u8],
    limits: &Limits,
    op: &'static str,
    headed: bool,
) -> Result<Parsed<RouteOp<'a>>, ParseError> {
    // scope, subject, ">" to, "+" reply, "|", queues, and one or two sizes.
    let (a, n) = scan::args::<{ MAX_QUEUES + 9 }>(rest);
    if n > MAX_QUEUES + 9 {
        return Err(bad(op, "too many queue groups"));
    }
    let sizes = if headed { 2 } else { 1 };
    if n < 2 + sizes {
        return Err(bad(
            op,
            "expected <scope> <subject> [> to] [+ reply] [| queue...] <size>",
        ));
    }
    let (head, tail) = a[..n].split_at(n - sizes);
    let scope = scan::text(head[0], op, "scope is not UTF-8")?;
    let subject = scan::text(head[1], op, "subject is not UTF-8")?;
    let mut i = 2;
    let mut to = None;
    if head.get(i) == Some(&&b">"[..]) {
        let t = head
            .get(i + 1)
            .ok_or(bad(op, "'>' without a delivery subject"))?;
        to = Some(scan::text(t, op, "delivery subject is not UTF-8")?);
        i += 2;
    }
    let mut reply = None;
    if head.get(i) == Some(&&b"+"[..]) {
        let r = head
            .get(i + 1)
            .ok_or(bad(op, "'+' without a reply subject"))?;
        reply = Some(scan::text(r, op, "reply is not UTF-8")?);
        i += 2;
    }
    let mut queues = Queues::NONE;
    if head.get(i) == Some(&&b"|"[..]) {
        let names = &head[i + 1..];
        let (Some(first), Some(last)) = (names.first(), names.last()) else {
            return Err(bad(op, "'|' without queue groups"));
        };
        if names.len() > MAX_QUEUES {
            return Err(bad(op, "too many queue groups"));
        }
        // The span from the first name to the end of the last, in place.
        let start = first.as_ptr() as usize - rest.as_ptr() as usize;
        let end = last.as_ptr() as usize - rest.as_ptr() as usize + last.len();
        queues = Queues::Wire(scan::text(&rest[start..end], op, "queue is not UTF-8")?);
        i = head.len();
    }
    if i != head.len() {
        return Err(bad(op, "unexpected argument"));
    }
    let (headers, payload, end) = if headed {
        match scan::headed_body(buf, after, tail[0], tail[1], limits, op)? {
            Some((h, p, end)) => (Some(h), p, end),
            None => return Ok(Parsed::Incomplete),
        }
    } else {
        match scan::body(buf, after, tail[0], limits, op)? {
            Some((p, end)) => (None, p, end),
            None => return Ok(Parsed::Incomplete),
        }
    };
    Ok(Parsed::Op(
        RouteOp::Msg(RouteMsg {
            scope,
            subject,
            to,
            reply,
            queues,
            headers,
            payload,
        }),
        end,
    ))
}

/// Appends `RS+`/`RS-` for `pattern` (and `queue`) in `scope`.
pub fn interest(out: &mut Vec<u8>, add: bool, scope: &str, pattern: &str, queue: Option<&str>) {
    out.extend_from_slice(if add { b"RS+ " } else { b"RS- " });
    out.extend_from_slice(scope.as_bytes());
    out.push(b' ');
    out.extend_from_slice(pattern.as_bytes());
    if let Some(q) = queue {
        out.push(b' ');
        out.extend_from_slice(q.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends an RMSG (or HRMSG when `msg.headers` is set).
pub fn message_op(out: &mut Vec<u8>, msg: &RouteMsg<'_>) {
    out.extend_from_slice(if msg.headers.is_some() {
        b"HRMSG "
    } else {
        b"RMSG "
    });
    out.extend_from_slice(msg.scope.as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg.subject.as_bytes());
    if let Some(to) = msg.to {
        out.extend_from_slice(b" > ");
        out.extend_from_slice(to.as_bytes());
    }
    if let Some(reply) = msg.reply {
        out.extend_from_slice(b" + ");
        out.extend_from_slice(reply.as_bytes());
    }
    if !msg.queues.is_empty() {
        out.extend_from_slice(b" |");
        for q in msg.queues.iter() {
            out.push(b' ');
            out.extend_from_slice(q.as_bytes());
        }
    }
    out.push(b' ');
    if let Some(h) = msg.headers {
        crate::encode::number(out, h.len() as u64);
        out.push(b' ');
        crate::encode::number(out, (h.len() + msg.payload.len()) as u64);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(h);
    } else {
        crate::encode::number(out, msg.payload.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(msg.payload);
    out.extend_from_slice(b"\r\n");
}

/// Appends `ROUTE {json}`.
pub fn route(out: &mut Vec<u8>, json: &[u8]) {
    out.extend_from_slice(b"ROUTE ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(buf: &[u8]) -> Result<RouteOp<'_>, ParseError> {
        match parse_route(buf, &Limits::default())? {
            Parsed::Op(op, used) => {
                assert_eq!(used, buf.len());
                Ok(op)
            }
            Parsed::Incomplete => panic!("incomplete: {:?}", String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn operations() {
        assert_eq!(
            one(b"RS+ app orders.* workers\r\n").unwrap(),
            RouteOp::Interest {
                add: true,
                scope: "app",
                pattern: "orders.*",
                queue: Some("workers")
            }
        );
        assert_eq!(
            one(b"RS- app >\r\n").unwrap(),
            RouteOp::Interest {
                add: false,
                scope: "app",
                pattern: ">",
                queue: None
            }
        );
        assert_eq!(
            one(b"ROUTE {\"a\":1}\r\n").unwrap(),
            RouteOp::Route(b"{\"a\":1}")
        );
        assert_eq!(
            one(b"-ERR 'bad secret'\r\n").unwrap(),
            RouteOp::Err("bad secret")
        );
        // Markers are positional: a reply named "|" and a queue named "+" read as such.
        let RouteOp::Msg(m) = one(b"RMSG s x + | | + q 0\r\n\r\n").unwrap() else {
            panic!()
        };
        assert_eq!((m.reply, m.queues), (Some("|"), Queues::List(&["+", "q"])));
        let RouteOp::Msg(m) = one(b"HRMSG s x 12 14\r\nNATS/1.0\r\n\r\nhi\r\n").unwrap() else {
            panic!()
        };
        assert_eq!(
            (m.headers, m.payload),
            (Some(&b"NATS/1.0\r\n\r\n"[..]), &b"hi"[..])
        );
    }

    #[test]
    fn malformed() {
        for bad in [
            &b"RS+ app\r\n"[..],
            b"RS+ a b c d\r\n",
            b"RMSG s 1\r\n",
            b"RMSG s x + 1\r\n",
            b"RMSG s x | 1\r\n",
            b"RMSG s x y 1\r\n",
            b"RMSG s x -1\r\n",
            b"HRMSG s x 5 2\r\n",
            b"BOGUS\r\n",
        ] {
            assert!(
                parse_route(bad, &Limits::default()).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let many = format!("RMSG s x |{} 0\r\n\r\n", " q".repeat(MAX_QUEUES + 1));
        assert!(parse_route(many.as_bytes(), &Limits::default()).is_err());
        let big = b"RMSG s x 2000000\r\n";
        assert!(matches!(
            parse_route(big, &Limits::default()),
            Err(ParseError::PayloadTooLarge { .. })
        ));
    }
}
