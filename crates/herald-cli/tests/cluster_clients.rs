//! How NATS clients find and keep a cluster of `herald serve` processes: INFO's
//! `connect_urls` (and the INFOs that update it), servers named uniquely without `--name`,
//! and lame duck mode (SIGUSR2 or `$HERALD.API.SERVER.LAMEDUCK`) for rolling restarts.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use async_nats::{Client, Event};
use common::HeraldProcess;
use common::sse::{ask, cluster_flush};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);
const SECRET: &str = "discovery-secret";

/// A clustered `herald serve` without `--name`, seeded with `seeds`.
fn node(seeds: &[&HeraldProcess], extra: &[&str]) -> HeraldProcess {
    HeraldProcess::clustered(SECRET, seeds, extra)
}

/// A NATS client speaking the protocol by hand, to see every INFO the server sends.
struct Raw {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl Raw {
    /// Connects, returns the first INFO, and completes CONNECT (with PING/PONG).
    async fn connect(addr: SocketAddr) -> (Raw, Value) {
        let socket = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .unwrap()
            .unwrap();
        let (read, write) = socket.into_split();
        let mut raw = Raw {
            lines: BufReader::new(read).lines(),
            write,
        };
        let info = raw.next_info().await.expect("an INFO first");
        raw.write
            .write_all(b"CONNECT {\"protocol\":1,\"verbose\":false}\r\nPING\r\n")
            .await
            .unwrap();
        loop {
            match raw.line().await.as_deref() {
                Some("PONG") => break,
                Some(_) => continue,
                None => panic!("closed before PONG"),
            }
        }
        (raw, info)
    }

    /// The next line; `None` once the server closed the connection.
    async fn line(&mut self) -> Option<String> {
        tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .expect("no line from the server in time")
            .ok()
            .flatten()
    }

    /// The next INFO, skipping other lines; `None` once closed.
    async fn next_info(&mut self) -> Option<Value> {
        loop {
            let line = self.line().await?;
            if let Some(json) = line.strip_prefix("INFO ") {
                return Some(serde_json::from_str(json).unwrap());
            }
        }
    }

    /// INFOs until one satisfies `done`; panics if the server closes first.
    async fn info_until(&mut self, done: impl Fn(&Value) -> bool) -> Value {
        loop {
            let info = self
                .next_info()
                .await
                .expect("closed while waiting for an INFO");
            if done(&info) {
                return info;
            }
        }
    }

    /// Reads until the server closes the connection.
    async fn until_closed(&mut self) {
        while self.line().await.is_some() {}
    }
}

/// An async-nats client of `server`, with its events on a channel.
async fn client(server: &HeraldProcess) -> (Client, mpsc::UnboundedReceiver<Event>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = tokio::time::timeout(
        WAIT,
        async_nats::ConnectOptions::new()
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(event);
                }
            })
            .connect(server.url()),
    )
    .await
    .unwrap()
    .unwrap();
    (client, rx)
}

/// Waits for `want` among the client's events.
async fn event(events: &mut mpsc::UnboundedReceiver<Event>, want: &str) {
    loop {
        let event = tokio::time::timeout(WAIT, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no {want:?} event in time"))
            .expect("events end with the client");
        if event.to_string() == want {
            return;
        }
    }
}

/// Publishes `text` on `fail.over` through `publisher` and waits for it at `sub`.
async fn relay(publisher: &Client, sub: &mut async_nats::Subscriber, text: &'static str) {
    publisher.publish("fail.over", text.into()).await.unwrap();
    publisher.flush().await.unwrap();
    let got = tokio::time::timeout(WAIT, futures::StreamExt::next(sub))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got.payload[..], text.as_bytes());
}

fn urls(info: &Value) -> BTreeSet<String> {
    info["connect_urls"]
        .as_array()
        .map(|a| a.iter().map(|u| u.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// Three nodes started without names: each gets its own, a client connected to the first sees
/// the others join in asynchronous INFOs, async-nats learns all three at connect, and when
/// the first goes into lame duck mode its clients are told, its address leaves the list, it
/// refuses new clients, closes the old ones and exits, and an async-nats client configured
/// with the first server only carries on through another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_find_the_cluster_and_leave_a_lame_duck() {
    let a = node(
        &[],
        &[
            "--lame-duck-duration",
            "2s",
            "--lame-duck-grace-period",
            "500ms",
        ],
    );
    let (mut raw, first) = Raw::connect(a.addr).await;
    assert_eq!(urls(&first), BTreeSet::from([a.addr.to_string()]));
    let b = node(&[&a], &[]);
    let c = node(&[&a], &[]);
    let all = BTreeSet::from([a.addr, b.addr, c.addr].map(|addr| addr.to_string()));
    raw.info_until(|info| urls(info) == all).await;

    let mut names = BTreeSet::new();
    for server in [&a, &b, &c] {
        let (mut raw, info) = Raw::connect(server.addr).await;
        let name = info["server_name"].as_str().unwrap().to_owned();
        assert!(name.starts_with("herald-"), "{name}");
        if urls(&info) != all {
            // This one has not heard of every other yet: an INFO will say when it has.
            raw.info_until(|info| urls(info) == all).await;
        }
        names.insert(name);
    }
    assert_eq!(names.len(), 3, "three different names: {names:?}");

    let (subscriber, mut events) = client(&a).await;
    let discovered: BTreeSet<String> = subscriber.server_info().connect_urls.into_iter().collect();
    assert_eq!(discovered, all);
    let mut sub = subscriber.subscribe("fail.over").await.unwrap();
    cluster_flush(&subscriber, r#"{"peers":2}"#).await;
    let (publisher, _) = client(&c).await;
    relay(&publisher, &mut sub, "before").await;

    a.signal("USR2");
    let lame = raw.info_until(|info| info["ldm"] == true).await;
    let rest = BTreeSet::from([b.addr, c.addr].map(|addr| addr.to_string()));
    assert_eq!(urls(&lame), rest, "a lame duck lists only the others");
    assert!(
        TcpStream::connect(a.addr).await.is_err(),
        "a lame duck accepts no new client"
    );
    event(&mut events, "lame duck mode detected").await;
    raw.until_closed().await;
    event(&mut events, "disconnected").await;
    event(&mut events, "connected").await;
    assert_ne!(subscriber.server_info().port, a.addr.port());
    cluster_flush(&subscriber, r#"{"peers":1}"#).await;
    relay(&publisher, &mut sub, "after").await;
    assert!(a.wait_exit(WAIT).success(), "the lame duck exits cleanly");
}

/// A server without a name makes one and keeps it in its data directory: a restart keeps it,
/// another server gets another. Outside a cluster INFO has no `connect_urls`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_name_is_kept_in_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let first = HeraldProcess::start(&["--data-dir", data]);
    let (_, info) = Raw::connect(first.addr).await;
    let name = info["server_name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("herald-") && name.len() == 15, "{name}");
    assert!(info.get("connect_urls").is_none(), "{info}");
    assert!(first.terminate().success());
    let again = HeraldProcess::start(&["--data-dir", data]);
    let (_, info) = Raw::connect(again.addr).await;
    assert_eq!(info["server_name"], name.as_str());
    let other = HeraldProcess::start(&[]);
    let (_, info) = Raw::connect(other.addr).await;
    assert_ne!(info["server_name"], name.as_str());
    let named = HeraldProcess::start(&["--data-dir", data, "--name", "edge-1"]);
    let (_, info) = Raw::connect(named.addr).await;
    assert_eq!(
        info["server_name"], "edge-1",
        "--name wins over the kept one"
    );
}

/// `$HERALD.API.SERVER.LAMEDUCK` does what SIGUSR2 does: answered at once, then clients are
/// told, closed after the grace period, and the server exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lame_duck_mode_on_request() {
    let server = HeraldProcess::start(&[
        "--lame-duck-duration",
        "1500ms",
        "--lame-duck-grace-period",
        "300ms",
    ]);
    let (mut raw, _) = Raw::connect(server.addr).await;
    let (client, mut events) = client(&server).await;
    let answer = ask(&client, "$HERALD.API.SERVER.LAMEDUCK", "").await;
    assert_eq!(answer["lame_duck"], true);
    assert_eq!(answer["duration_ms"], 1500);
    let lame = raw.info_until(|info| info["ldm"] == true).await;
    assert!(lame.get("connect_urls").is_none());
    event(&mut events, "lame duck mode detected").await;
    raw.until_closed().await;
    assert!(server.wait_exit(WAIT).success());
}
