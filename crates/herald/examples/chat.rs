//! A chat between processes that only use the library: no server, the nodes form a cluster.
//!
//! Run it in two terminals (add more the same way), then type lines in either:
//!
//! ```sh
//! cargo run -p herald --example chat -- alice 127.0.0.1:7001
//! cargo run -p herald --example chat -- bob   127.0.0.1:7002 127.0.0.1:7001
//! ```
//!
//! Arguments: a name, the address this node listens on (routes over TCP, gossip over UDP),
//! and optionally the address of any node already running. Lines starting with `/who` list
//! the members this node sees. Set `CHAT_SECRET` to keep strangers out.

use std::io::BufRead;

use herald::{Message, Node};
use serde::{Deserialize, Serialize};

/// One chat line, as JSON on the wire.
#[derive(Serialize, Deserialize)]
struct Line {
    from: String,
    text: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: chat NAME LISTEN_ADDR [SEED_ADDR]";
    let name = args.next().ok_or(usage)?;
    let listen = args.next().ok_or(usage)?;
    let seeds: Vec<String> = args.collect();

    let node = Node::builder()
        .name(&name)
        .listen(&listen)
        .seeds(seeds)
        .cluster_name("chat")
        .cluster_secret(std::env::var("CHAT_SECRET").unwrap_or_default())
        .start()
        .await?;
    let room = node.router("chat", 256);

    // Everyone's lines but our own (publish_others below skips this router's subscriptions).
    let _printer = room.on("room.lobby", |msg: Message| match msg.json::<Line>() {
        Ok(line) => println!("<{}> {}", line.from, line.text),
        Err(err) => eprintln!("(unreadable line: {err})"),
    })?;
    println!("{name} listening on {listen}; type to chat, /who for members, Ctrl-D to leave");

    let stdin = tokio::task::spawn_blocking({
        let node = node.clone();
        let room = room.clone();
        move || -> Result<(), herald::Error> {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if line.trim() == "/who" {
                    for m in node.cluster_info().map(|i| i.members).unwrap_or_default() {
                        let route = if m.route.is_some() {
                            "routed"
                        } else {
                            "no route"
                        };
                        println!("  {} at {} ({}, {route})", m.name, m.route_addr, m.state);
                    }
                    continue;
                }
                let line = Line {
                    from: name.clone(),
                    text: line,
                };
                room.publish_others("room.lobby", serde_json::to_vec(&line)?)?;
            }
            Ok(())
        }
    });
    stdin.await??;
    node.shutdown().await;
    Ok(())
}
