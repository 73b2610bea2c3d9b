//! Network namespaces for partition tests: each node in its own namespace, all joined by a
//! bridge in a hub namespace, and the test itself (in the root namespace) on the same bridge
//! through one more veth pair. Cutting a node's link in the hub partitions it from everyone,
//! the test's client included, as a switch port going dark would; restoring it heals.
//!
//! Everything is made here and removed when dropped: namespaces named after this process,
//! addresses in 198.18.0.0/15 (set aside for benchmarks, RFC 2544). It needs root and `ip`
//! (iproute2); without them the test fails loudly, never skips.

use std::process::Command;

/// Runs `ip` with `args`, panicking with its output when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` (iproute2 is needed, as root): {e}"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Namespaces for `nodes` nodes and the bridge between them.
pub struct Network {
    prefix: String,
    subnet: String,
    nodes: usize,
}

impl Network {
    /// Creates the hub, `nodes` node namespaces, and the test's own link.
    pub fn new(nodes: usize) -> Network {
        let pid = std::process::id();
        let network = Network {
            prefix: format!("hf{pid}"),
            subnet: format!("198.18.{}", 20 + pid % 200),
            nodes,
        };
        let hub = network.hub();
        ip(&["netns", "add", &hub]);
        ip(&[
            "-n",
            &hub,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "forward_delay",
            "0",
        ]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        for node in 0..nodes {
            let ns = network.namespace(node);
            let (inside, port) = (format!("{}n{node}", network.prefix), network.port(node));
            ip(&["netns", "add", &ns]);
            ip(&[
                "link", "add", &inside, "type", "veth", "peer", "name", &port,
            ]);
            ip(&["link", "set", &inside, "netns", &ns]);
            ip(&["link", "set", &port, "netns", &hub]);
            ip(&["-n", &hub, "link", "set", &port, "master", "br0", "up"]);
            let addr = format!("{}/24", network.addr(node));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", &inside]);
            ip(&["-n", &ns, "link", "set", &inside, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        // The test's side: an address on the bridge from the root namespace.
        let (here, there) = (
            format!("{}r", network.prefix),
            format!("{}rh", network.prefix),
        );
        ip(&["link", "add", &here, "type", "veth", "peer", "name", &there]);
        ip(&["link", "set", &there, "netns", &hub]);
        ip(&["-n", &hub, "link", "set", &there, "master", "br0", "up"]);
        ip(&[
            "addr",
            "add",
            &format!("{}.1/24", network.subnet),
            "dev",
            &here,
        ]);
        ip(&["link", "set", &here, "up"]);
        network
    }

    fn hub(&self) -> String {
        format!("{}h", self.prefix)
    }

    /// The namespace node `node` runs in.
    pub fn namespace(&self, node: usize) -> String {
        format!("{}-{node}", self.prefix)
    }

    /// Node `node`'s port on the bridge (in the hub).
    fn port(&self, node: usize) -> String {
        format!("{}p{node}", self.prefix)
    }

    /// Node `node`'s address.
    pub fn addr(&self, node: usize) -> String {
        format!("{}.{}", self.subnet, 11 + node)
    }

    /// Cuts node `node` off from every other node and from the test.
    pub fn isolate(&self, node: usize) {
        ip(&["-n", &self.hub(), "link", "set", &self.port(node), "down"]);
    }

    /// Joins node `node` again.
    pub fn heal(&self, node: usize) {
        ip(&["-n", &self.hub(), "link", "set", &self.port(node), "up"]);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Removing a namespace removes the veth ends in it, and with them their peers.
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{}r", self.prefix)])
            .status();
        for node in 0..self.nodes {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.namespace(node)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.hub()])
            .status();
    }
}
