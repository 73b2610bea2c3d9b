//! The NATS client protocol as pure functions over bytes: no I/O, no allocation when parsing.
//!
//! The server reads into a buffer and calls [`parse_client`] until it returns
//! [`Parsed::Incomplete`]; every operation borrows its subject, reply and payload from the
//! buffer. The writers ([`encode`]) append operations to an output buffer. [`parse_server`] is
//! the client-side twin, used by herald's raw benchmark client and by tests.
//!
//! # Layout
//! | module | holds |
//! |---|---|
//! | [`client`] | client → server operations (CONNECT, PUB, HPUB, SUB, UNSUB, PING, PONG) |
//! | [`server`] | server → client operations (INFO, MSG, HMSG, PING, PONG, +OK, -ERR) |
//! | [`encode`] | writers for both directions |
//! | [`headers`] | the `NATS/1.0` header block |
//! | [`route`] | the route protocol between herald nodes (RS+/RS-, RMSG/HRMSG, ROUTE) |
//! | [`subject`] | the rules of subjects and patterns |
//! | `scan` | the shared control-line scanner |

pub mod client;
pub mod encode;
pub mod headers;
pub mod route;
mod scan;
pub mod server;
pub mod subject;

pub use client::{ClientOp, parse_client};
pub use scan::{Limits, ParseError, Parsed};
pub use server::{ServerOp, parse_server};
