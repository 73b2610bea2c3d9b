//! Fuzzes the server-side parser: any byte stream, parsed the way the server does (operation
//! after operation until Incomplete or an error), must never panic, never report consuming
//! more than it was given, and never return an operation whose payload exceeds the limit.

#![no_main]

use herald_proto::{ClientOp, Limits, Parsed, headers, parse_client};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_control_line: 256, max_payload: 1024 };
    let mut at = 0;
    while at < data.len() {
        match parse_client(&data[at..], &limits) {
            Ok(Parsed::Op(op, used)) => {
                assert!(used > 0 && at + used <= data.len());
                match op {
                    ClientOp::Pub { payload, .. } => assert!(payload.len() <= limits.max_payload),
                    ClientOp::HPub { headers: h, payload, .. } => {
                        assert!(h.len() + payload.len() <= limits.max_payload);
                        let _ = headers::parse(h);
                    }
                    _ => {}
                }
                at += used;
            }
            Ok(Parsed::Incomplete) | Err(_) => break,
        }
    }
});
