//! Fuzzes the route parser (what a node reads from a peer, or from anything that connects to
//! its route port): any byte stream must parse without panicking, never consume more than it
//! was given, and never yield a body over the limit or more queue groups than allowed.

#![no_main]

use herald_proto::route::{MAX_QUEUES, RouteOp, parse_route};
use herald_proto::{Limits, Parsed, headers};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_control_line: 256, max_payload: 1024 };
    let mut at = 0;
    while at < data.len() {
        match parse_route(&data[at..], &limits) {
            Ok(Parsed::Op(op, used)) => {
                assert!(used > 0 && at + used <= data.len());
                if let RouteOp::Msg(m) = op {
                    let h = m.headers.map_or(0, <[u8]>::len);
                    assert!(h + m.payload.len() <= limits.max_payload);
                    assert!(m.queues.len() <= MAX_QUEUES);
                    if let Some(block) = m.headers {
                        let _ = headers::parse(block);
                    }
                }
                at += used;
            }
            Ok(Parsed::Incomplete) | Err(_) => break,
        }
    }
});
