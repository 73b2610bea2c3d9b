//! Property tests: encode → parse round trips, parsing split at every point, and the parser
//! never panicking on arbitrary bytes.

#![allow(clippy::unwrap_used)]

use herald_proto::{
    ClientOp, Limits, Parsed, ServerOp, encode, headers, parse_client, parse_server,
};
use proptest::prelude::*;

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.:>*-]{1,20}"
}

fn parse_all_client(buf: &[u8]) -> Vec<ClientOp<'_>> {
    let mut ops = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        match parse_client(&buf[at..], &Limits::default()).unwrap() {
            Parsed::Op(op, used) => {
                ops.push(op);
                at += used;
            }
            Parsed::Incomplete => panic!("incomplete at {at}"),
        }
    }
    ops
}

proptest! {
    #[test]
    fn pub_round_trip(subject in token(), reply in prop::option::of(token()), payload in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut out = Vec::new();
        encode::publish(&mut out, &subject, reply.as_deref(), &payload);
        encode::hpublish(&mut out, &subject, reply.as_deref(), b"NATS/1.0\r\nK: v\r\n\r\n", &payload);
        let ops = parse_all_client(&out);
        prop_assert_eq!(&ops[0], &ClientOp::Pub { subject: &subject, reply: reply.as_deref(), payload: &payload });
        prop_assert_eq!(&ops[1], &ClientOp::HPub { subject: &subject, reply: reply.as_deref(), headers: b"NATS/1.0\r\nK: v\r\n\r\n", payload: &payload });
    }

    #[test]
    fn sub_unsub_round_trip(subject in token(), queue in prop::option::of(token()), sid in "[0-9]{1,8}", max in prop::option::of(any::<u32>())) {
        let mut out = Vec::new();
        encode::sub(&mut out, &subject, queue.as_deref(), &sid);
        encode::unsub(&mut out, &sid, max.map(u64::from));
        let ops = parse_all_client(&out);
        prop_assert_eq!(&ops[0], &ClientOp::Sub { subject: &subject, queue: queue.as_deref(), sid: &sid });
        prop_assert_eq!(&ops[1], &ClientOp::Unsub { sid: &sid, max: max.map(u64::from) });
    }

    #[test]
    fn msg_round_trip(subject in token(), sid in "[0-9]{1,8}", reply in prop::option::of(token()), payload in prop::collection::vec(any::<u8>(), 0..300), status in prop::option::of(100u16..600)) {
        let mut hdr = Vec::new();
        headers::encode(&mut hdr, status.map(|s| (s, "")), [("A", "1"), ("A", "2")]);
        let mut out = Vec::new();
        encode::msg(&mut out, &subject, &sid, reply.as_deref(), &payload);
        encode::hmsg(&mut out, &subject, &sid, reply.as_deref(), &hdr, &payload);
        let Parsed::Op(first, used) = parse_server(&out, &Limits::default()).unwrap() else { panic!() };
        prop_assert_eq!(first, ServerOp::Msg { subject: &subject, sid: &sid, reply: reply.as_deref(), payload: &payload });
        let Parsed::Op(second, rest) = parse_server(&out[used..], &Limits::default()).unwrap() else { panic!() };
        prop_assert_eq!(used + rest, out.len());
        let ServerOp::HMsg { headers: h, payload: p, .. } = second else { panic!() };
        prop_assert_eq!(p, &payload[..]);
        let block = headers::parse(h).unwrap();
        prop_assert_eq!(block.status, status);
        prop_assert_eq!(block.fields, vec![("A", "1"), ("A", "2")]);
    }

    #[test]
    fn any_split_point_is_incomplete_then_whole(payload in prop::collection::vec(any::<u8>(), 0..64), cut in any::<prop::sample::Index>()) {
        let mut out = Vec::new();
        encode::publish(&mut out, "a.b", Some("r"), &payload);
        let cut = cut.index(out.len());
        prop_assert_eq!(parse_client(&out[..cut], &Limits::default()).unwrap(), Parsed::Incomplete);
        prop_assert!(matches!(parse_client(&out, &Limits::default()).unwrap(), Parsed::Op(_, n) if n == out.len()));
    }

    #[test]
    fn arbitrary_bytes_never_panic(buf in prop::collection::vec(any::<u8>(), 0..200)) {
        let limits = Limits { max_control_line: 64, max_payload: 64 };
        let _ = parse_client(&buf, &limits);
        let _ = parse_server(&buf, &limits);
        let _ = headers::parse(&buf);
    }
}

proptest! {
    #[test]
    fn route_round_trip(
        scope in "[a-z0-9_-]{1,12}",
        subject in token(),
        reply in prop::option::of(token()),
        to in prop::option::of(token()),
        queues in prop::collection::vec(token(), 0..5),
        headers in prop::option::of(Just(b"NATS/1.0\r\nK: v\r\n\r\n".to_vec())),
        payload in prop::collection::vec(any::<u8>(), 0..300),
        add in any::<bool>(),
        queue in prop::option::of(token()),
    ) {
        use herald_proto::route::{self, RouteMsg, RouteOp, parse_route};
        let queue_list: Vec<&str> = queues.iter().map(String::as_str).collect();
        let msg = RouteMsg {
            scope: &scope,
            subject: &subject,
            to: to.as_deref(),
            reply: reply.as_deref(),
            queues: route::Queues::List(&queue_list),
            headers: headers.as_deref(),
            payload: &payload,
        };
        let mut out = Vec::new();
        route::message_op(&mut out, &msg);
        route::interest(&mut out, add, &scope, &subject, queue.as_deref());
        // Split anywhere: the first part is incomplete or whole, never an error.
        for cut in 0..out.len() {
            let parsed = parse_route(&out[..cut], &Limits::default());
            prop_assert!(parsed.is_ok(), "cut at {}: {:?}", cut, parsed);
        }
        let Parsed::Op(first, used) = parse_route(&out, &Limits::default()).unwrap() else { panic!() };
        prop_assert_eq!(first, RouteOp::Msg(msg));
        let Parsed::Op(second, rest) = parse_route(&out[used..], &Limits::default()).unwrap() else { panic!() };
        prop_assert_eq!(second, RouteOp::Interest { add, scope: &scope, pattern: &subject, queue: queue.as_deref() });
        prop_assert_eq!(used + rest, out.len());
    }

    #[test]
    fn route_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = herald_proto::route::parse_route(&bytes, &Limits::default());
    }
}
