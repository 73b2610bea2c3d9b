//! herald's server: NATS clients connect to it unchanged and share scopes with the routers of
//! the process that embeds it.
//!
//! # Layout
//! | module | holds |
//! |---|---|
//! | [`config`] | settings and their layers (defaults, TOML file, `HERALD_*`, flags) |
//! | `server` | [`Server`]: the listener, streams and JetStream, graceful shutdown |
//! | `shared` | what every connection shares: node, settings, counters, INFO |
//! | `services` | `$HERALD.API.SERVER.INFO`, `SERVER.LAMEDUCK`, `CLUSTER.INFO`, `CLUSTER.FLUSH` and `GROUPS.<OP>` |
//! | `discovery` | this server's client address in gossip, INFO `connect_urls` and its updates |
//! | `lame_duck` | lame duck mode: stop accepting, tell clients, close them gradually |
//! | `groups` | the operations on groups both doors share, and their answers |
//! | `conn` | one client: the reader that parses and acts on the protocol |
//! | `outbound` | one client's bounded outbound buffer, its writer, and per-subscription targets |
//! | [`tls`] | TLS for client connections: settings, rustls configuration, the handshake |
//! | `registry` | the open connections and their own counters, summed when read |
//! | `http` | the HTTP door: publish, request, SSE subscriptions, monitoring |
//! | [`stats`] | server-wide counters |
//!
//! Data flows one way: a reader parses a PUB and publishes it through the node's router; the
//! router hands it to each matching target, which encodes it into its client's outbound
//! buffer; that client's writer drains the buffer to the socket.
//!
//! # Examples
//! ```
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! let config = herald_server::Config {
//!     listen: "127.0.0.1:0".into(),
//!     http: "127.0.0.1:0".into(),
//!     ..Default::default()
//! };
//! let server = herald_server::Server::start(config, herald::Node::local()).await?;
//! println!("listening nats {}", server.nats_addr());
//! println!("listening http {}", server.http_addr().expect("HTTP is on"));
//! server.shutdown().await;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod config;
mod conn;
mod discovery;
mod groups;
mod http;
mod lame_duck;
mod outbound;
mod registry;
mod server;
mod services;
mod shared;
pub mod stats;
pub mod tls;

pub use auth::{PermissionsConfig, RulesConfig, UserConfig, hash_secret};
pub use config::{Config, ConfigError, SlowConsumerPolicy};
pub use groups::GROUPS_SUBJECT_PREFIX;
pub use server::Server;
pub use services::{
    CLUSTER_FLUSH_SUBJECT, CLUSTER_INFO_SUBJECT, LAME_DUCK_SUBJECT, SERVER_INFO_SUBJECT,
};
pub use shared::NATS_VERSION;
pub use stats::StatsSnapshot;
