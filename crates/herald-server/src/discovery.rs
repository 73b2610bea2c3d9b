//! What NATS clients learn about the cluster, so that they find the other servers and fail
//! over without a configured list: this server advertises its client address to the other
//! members (through gossip), INFO carries every live member's address in `connect_urls`, and
//! connected clients get a fresh INFO whenever that list changes, as nats-server sends them.

use std::net::SocketAddr;
use std::sync::Weak;
use std::sync::atomic::Ordering;

use herald::Node;
use herald_proto::encode;
use tokio::sync::watch;

use crate::config::Config;
use crate::registry::Connection;
use crate::shared::Shared;

/// The gossip key under which a server advertises its client address.
pub(crate) const CLIENT_URL_KEY: &str = "nats";

/// The address this server's clients are told to reach it at: `client_advertise`, else the
/// listener's (with the cluster's advertised host in place of an unspecified one).
pub(crate) fn client_url(config: &Config, addr: SocketAddr, node: &Node) -> String {
    if !config.client_advertise.is_empty() {
        return config.client_advertise.clone();
    }
    if !addr.ip().is_unspecified() {
        return addr.to_string();
    }
    let host = node
        .cluster_info()
        .and_then(|info| info.route_addr.parse::<SocketAddr>().ok())
        .map(|route| route.ip())
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or([127, 0, 0, 1].into());
    SocketAddr::new(host, addr.port()).to_string()
}

/// INFO's `connect_urls`: this server's address (unless it is in lame duck mode) and those
/// the other live members advertise; `None` outside a cluster.
pub(crate) fn connect_urls(shared: &Shared) -> Option<Vec<String>> {
    shared.node.cluster_info()?;
    let mut urls: Vec<String> = shared
        .node
        .advertised(CLIENT_URL_KEY)
        .into_iter()
        .map(|(_, url)| url)
        .collect();
    if !shared.in_lame_duck() {
        urls.push(shared.client_url.clone());
    }
    urls.sort();
    urls.dedup();
    Some(urls)
}

/// Sends every connected client an INFO of the server's current state (its `connect_urls`,
/// `ldm`); INFO's per-client fields are left out, as nats-server leaves them out of these.
///
/// A client between its greeting and its CONNECT is not sent one: it checks
/// [`Shared::info_changes`] once connected ([`greeted_with_old_info`]). Both sides use
/// sequentially consistent order, so at least one of them sees the other's write.
pub(crate) fn send_async_info(shared: &Shared) {
    shared.info_changes.fetch_add(1, Ordering::SeqCst);
    let line = async_info(shared);
    for conn in shared.registry.list() {
        if conn.connected.load(Ordering::SeqCst) {
            conn.out.push_control(|buf| buf.extend_from_slice(&line));
        }
    }
}

/// The INFO line [`send_async_info`] sends.
pub(crate) fn async_info(shared: &Shared) -> Vec<u8> {
    let info = shared.info_json(0, None, None);
    let mut line = Vec::with_capacity(info.len() + 8);
    encode::info(&mut line, &info);
    line
}

/// Marks `conn` connected; true if the server's INFO changed since `greeted` (the
/// [`Shared::info_changes`] read before its greeting was made), so that the client is owed a
/// fresh one.
pub(crate) fn greeted_with_old_info(shared: &Shared, conn: &Connection, greeted: u64) -> bool {
    conn.connected.store(true, Ordering::SeqCst);
    shared.info_changes.load(Ordering::SeqCst) != greeted
}

/// Advertises this server's address and tells its clients of every change of
/// `connect_urls`, until the server stops. Does nothing outside a cluster.
pub(crate) async fn follow(shared: Weak<Shared>, mut shutdown: watch::Receiver<bool>) {
    let (mut changes, mut sent) = {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let Some(changes) = shared.node.cluster_changes() else {
            return;
        };
        shared.node.advertise(CLIENT_URL_KEY, &shared.client_url);
        (changes, connect_urls(&shared))
    };
    loop {
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = connect_urls(&shared);
        if now != sent {
            tracing::debug!(connect_urls = ?now, "cluster's client addresses changed");
            send_async_info(&shared);
            sent = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_url_is_the_advertised_one_or_a_reachable_listen_address() {
        let node = Node::local();
        let mut config = Config::default();
        let any: SocketAddr = "0.0.0.0:4222".parse().unwrap_or_else(|_| unreachable!());
        let lo: SocketAddr = "127.0.0.2:4222".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(client_url(&config, lo, &node), "127.0.0.2:4222");
        assert_eq!(client_url(&config, any, &node), "127.0.0.1:4222");
        config.client_advertise = "nats.example:4222".into();
        assert_eq!(client_url(&config, any, &node), "nats.example:4222");
    }
}
