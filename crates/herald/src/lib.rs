//! herald: embeddable, clusterable publish/subscribe.
//!
//! An application makes a [`Node`] (its membership in a cluster; [`Node::local`] joins none)
//! and from it [`Router`]s, one per *scope*. Routers subscribe to subjects and patterns
//! (`orders.*`, `orders.>`), publish to subjects, answer requests, and manage named groups of
//! topics. Subscriptions are bounded buffers that drop the oldest message when their reader
//! falls behind, so a slow subscriber never slows a publisher.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), herald::Error> {
//! let router = herald::Router::new(100, "my_app");
//! let mut sub = router.subscribe("events")?;
//! router.publish("events", "Hello, cluster!")?;
//! let msg = sub.recv().await.expect("open subscription");
//! assert_eq!(msg.text()?, "Hello, cluster!");
//! # Ok(()) }
//! ```
//!
//! # Layout
//! Data flows one way: publish → [`index`] (which subscriptions match) → [`target`]s
//! (the ring subscriptions to a pattern share, a subscription's own mailbox, a network
//! connection, a cluster route) → the reader. Modules depend one way too: `node` →
//! `cluster` → the core (`router`, `index`, ...); the core tells the cluster of interest
//! changes through `scope::Announce`, which the cluster implements, and a route is just one
//! more [`Target`].
//!
//! | module | holds |
//! |---|---|
//! | [`subject`] | subject and pattern rules, validation, the reference matcher |
//! | [`index`] | the subscription trie and its bounded match cache |
//! | `router` | [`Router`]: the public handle on a scope |
//! | `scope` | a scope's state (index, groups, rings, inbox), the node's `Scopes`, what they announce (`Announce`) |
//! | `dispatch` | the fan-out loop: a matched publish handed to each target and the `Reach` of a publish |
//! | `node` | [`Node`] and [`NodeBuilder`]: owner of the scopes and of the cluster membership |
//! | `cluster` | gossip membership (chitchat), routes between nodes, the route handshake, interest |
//! | [`meta`] | the meta group: cluster-wide definitions agreed through Raft (openraft) |
//! | `raft` | what every Raft group gets from herald: the log and vote on disk, RPCs over the routes |
//! | `replica` | a replicated stream's Raft group: proposing captured publishes, applying them to each replica |
//! | `fanout` | the ring plain drop-oldest subscriptions of a pattern share, a cursor each |
//! | `mailbox` | a subscription's own bounded buffer: queue, [`DropPolicy`], reader wake-up |
//! | `subscription` | [`Subscription`], [`SubscribeOptions`], callbacks; how a subscription leaves its scope |
//! | [`target`] | the [`Target`] trait every delivery destination implements |
//! | [`batch`] | deferred writer wake-ups: one per burst of messages, not one per message |
//! | `message` | [`Message`] and [`HeaderMap`] |
//! | `request` | the per-scope reply inbox behind [`Router::request`] |
//! | [`streams`] | streams on herald-log: typed configs, consumers, [`streams::StreamMessage`] |
//! | `jetstream` | the JetStream API as an adapter over [`streams`] (feature `jetstream`) |
//! | [`time`] | RFC 3339 timestamps, one style everywhere |
//! | `groups` | named groups of topics ([`Groups`], `Router::groups`) |
//! | `error` | [`Error`] and the receive errors |

// Without the JetStream adapter, the crate-internal hooks it uses (answers on reply subjects,
// stored deliveries, pull sinks) have no caller.
#![cfg_attr(not(feature = "jetstream"), allow(dead_code))]

pub mod batch;
mod cluster;
mod dispatch;
mod error;
mod fanout;
mod groups;
pub mod index;
#[cfg(feature = "jetstream")]
pub mod jetstream;
mod mailbox;
mod message;
pub mod meta;
mod node;
mod raft;
pub(crate) mod replica;
mod request;
mod router;
mod scope;
pub mod streams;
pub mod subject;
mod subscription;
pub mod target;
#[cfg(test)]
mod testing;
pub mod time;

pub use bytes::Bytes;
pub use cluster::{ClusterInfo, DEFAULT_ROUTE_MAX_PENDING, MemberInfo, RouteInfo, RouteTls};
pub use error::{Error, RecvTimeoutError, Result, TryRecvError};
pub use groups::Groups;
pub use message::{HeaderMap, Message};
pub use node::{Node, NodeBuilder};
pub use router::{Router, TargetSubscription};
pub use scope::WireMessage;
pub use subject::Subject;
pub use subscription::{CallbackHandle, DropPolicy, SubscribeOptions, Subscription};
pub use target::{Delivery, Target};

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
