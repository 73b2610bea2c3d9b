//! The NATS protocol at the byte level against an in-process server on a real socket: defaults,
//! limits, the errors that close and those that do not, slow consumers, stale connections.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::time::Duration;

use herald_proto::{Limits, Parsed, ServerOp, parse_server};
use herald_server::{Config, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every wait in these tests ends within this.
const WAIT: Duration = Duration::from_secs(10);

async fn start(config: Config) -> Server {
    let config = Config {
        listen: "127.0.0.1:0".into(),
        http: "127.0.0.1:0".into(),
        ..config
    };
    Server::start(config, herald::Node::local())
        .await
        .expect("server starts")
}

/// A client that writes raw bytes and reads server operations as text.
struct Raw {
    socket: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects and consumes the INFO line.
    async fn connect(server: &Server) -> Raw {
        let socket = TcpStream::connect(server.nats_addr()).await.unwrap();
        let mut raw = Raw {
            socket,
            buf: Vec::new(),
        };
        let info = raw.next().await.expect("INFO");
        assert!(info.starts_with("INFO {"), "{info}");
        raw
    }

    /// Connects and sends a non-verbose CONNECT.
    async fn quiet(server: &Server) -> Raw {
        let mut raw = Raw::connect(server).await;
        raw.send(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n")
            .await;
        raw
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.socket.write_all(bytes).await.unwrap();
    }

    /// The next operation from the server as text, or None at end of stream.
    async fn next(&mut self) -> Option<String> {
        tokio::time::timeout(WAIT, self.next_inner())
            .await
            .expect("no server operation within the timeout")
    }

    async fn next_inner(&mut self) -> Option<String> {
        let limits = Limits {
            max_payload: 64 * 1024 * 1024,
            ..Limits::default()
        };
        loop {
            if let Parsed::Op(op, used) =
                parse_server(&self.buf, &limits).expect("server speaks NATS")
            {
                let text = match op {
                    ServerOp::Info(_) => "INFO {".to_owned() + "..}",
                    ServerOp::Msg {
                        subject,
                        sid,
                        reply,
                        payload,
                    } => format!(
                        "MSG {subject} {sid}{} {}",
                        reply.map(|r| format!(" {r}")).unwrap_or_default(),
                        String::from_utf8_lossy(payload)
                    ),
                    ServerOp::HMsg {
                        subject,
                        sid,
                        headers,
                        payload,
                        ..
                    } => format!(
                        "HMSG {subject} {sid} {:?} {}",
                        String::from_utf8_lossy(headers),
                        String::from_utf8_lossy(payload)
                    ),
                    ServerOp::Ping => "PING".into(),
                    ServerOp::Pong => "PONG".into(),
                    ServerOp::Ok => "+OK".into(),
                    ServerOp::Err(text) => format!("-ERR {text}"),
                };
                self.buf.drain(..used);
                return Some(text);
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// PING, then everything up to the PONG.
    async fn round_trip(&mut self) -> Vec<String> {
        self.send(b"PING\r\n").await;
        let mut seen = Vec::new();
        loop {
            match self.next().await.expect("connection open") {
                pong if pong == "PONG" => return seen,
                other => seen.push(other),
            }
        }
    }

    /// Reads until the server closes; returns what came before.
    async fn until_closed(&mut self) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(op) = self.next().await {
            seen.push(op);
        }
        seen
    }
}

#[tokio::test]
async fn verbose_until_connect_says_otherwise() {
    let server = start(Config::default()).await;
    let mut c = Raw::connect(&server).await;
    c.send(b"SUB a 1\r\n").await;
    assert_eq!(c.next().await.unwrap(), "+OK");
    c.send(b"CONNECT {\"verbose\":false}\r\nPUB a 2\r\nhi\r\n")
        .await;
    assert_eq!(c.round_trip().await, ["MSG a 1 hi"]);
    c.send(b"CONNECT {\"verbose\":true}\r\nPUB b 0\r\n\r\n")
        .await;
    assert_eq!(c.round_trip().await, ["+OK", "+OK"]);
}

#[tokio::test]
async fn protocol_violations_get_the_nats_error_and_close() {
    let server = start(Config {
        max_payload: 1024,
        ..Config::default()
    })
    .await;
    let mut bystander = Raw::quiet(&server).await;
    bystander.send(b"SUB > 1\r\n").await;
    bystander.round_trip().await;
    let long = format!("PUB {} 1\r\n", "a".repeat(5000));
    let cases: &[(&[u8], &str)] = &[
        (long.as_bytes(), "-ERR Maximum Control Line Exceeded"),
        (b"PUB a 2048\r\n", "-ERR Maximum Payload Violation"),
        (
            b"PUB a 99999999999999999999\r\n",
            "-ERR Unknown Protocol Operation",
        ),
        (b"PUB a -1\r\n", "-ERR Unknown Protocol Operation"),
        (b"PUB a 3\r\nabcdef\r\n", "-ERR Unknown Protocol Operation"),
        (b"FOO bar\r\n", "-ERR Unknown Protocol Operation"),
        (b"SUB\r\n", "-ERR Unknown Protocol Operation"),
        (b"CONNECT {not json\r\n", "-ERR Invalid CONNECT JSON"),
        (
            b"CONNECT {\"no_responders\":true}\r\n",
            "-ERR no responders requires headers support",
        ),
        (
            b"CONNECT {\"scope\":\"two words\"}\r\n",
            "-ERR Invalid Scope",
        ),
        (b"CONNECT {\"scope\":\"\"}\r\n", "-ERR Invalid Scope"),
        // herald's own scope (the nodes' meta group talks there) is no client's.
        (b"CONNECT {\"scope\":\"$herald\"}\r\n", "-ERR Invalid Scope"),
    ];
    for (input, error) in cases {
        let mut c = Raw::connect(&server).await;
        c.send(b"CONNECT {\"verbose\":false}\r\n").await;
        c.send(input).await;
        assert_eq!(
            c.until_closed().await,
            [*error],
            "for {:?}",
            String::from_utf8_lossy(input)
        );
    }
    // Nothing reached the bystander, which is still served.
    assert_eq!(bystander.round_trip().await, Vec::<String>::new());
}

#[tokio::test]
async fn bad_subjects_are_refused_without_closing() {
    let server = start(Config::default()).await;
    let mut c = Raw::quiet(&server).await;
    c.send(b"SUB a..b 1\r\nSUB a.>.b 2\r\nSUB ok 3\r\n").await;
    assert_eq!(
        c.round_trip().await,
        ["-ERR Invalid Subject", "-ERR Invalid Subject"]
    );
    // Not pedantic: an invalid publish subject is dropped quietly, and wildcard tokens are
    // taken as they are (as nats-server does): only wildcard subscriptions match them.
    c.send(b"PUB ok.* 1\r\nx\r\nPUB a..b 1\r\nx\r\nPUB ok 1\r\ny\r\n")
        .await;
    assert_eq!(c.round_trip().await, ["MSG ok 3 y"]);
    c.send(b"SUB w.> 4\r\nPUB w.x.> 1\r\nz\r\n").await;
    assert_eq!(c.round_trip().await, ["MSG w.x.> 4 z"]);
    c.send(
        b"CONNECT {\"verbose\":false,\"pedantic\":true}\r\nPUB ok.* 1\r\nx\r\nPUB a..b 0\r\n\r\n",
    )
    .await;
    assert_eq!(
        c.round_trip().await,
        [
            "-ERR Invalid Publish Subject",
            "-ERR Invalid Publish Subject"
        ]
    );
}

#[tokio::test]
async fn unsub_with_max_and_no_responders() {
    let server = start(Config::default()).await;
    let mut c = Raw::connect(&server).await;
    c.send(b"CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true}\r\n")
        .await;
    c.send(b"SUB n 1\r\nUNSUB 1 2\r\nSUB _INBOX.me.* 9\r\n")
        .await;
    for i in 0..5 {
        c.send(format!("PUB n 1\r\n{i}\r\n").as_bytes()).await;
    }
    c.send(b"PUB nobody _INBOX.me.1 1\r\nq\r\n").await;
    assert_eq!(
        c.round_trip().await,
        [
            "MSG n 1 0",
            "MSG n 1 1",
            "HMSG _INBOX.me.1 9 \"NATS/1.0 503\\r\\n\\r\\n\" "
        ]
    );
    // A max already reached removes the subscription at once.
    c.send(b"SUB m 2\r\nPUB m 1\r\na\r\nUNSUB 2 1\r\nPUB m 1\r\nb\r\n")
        .await;
    assert_eq!(c.round_trip().await, ["MSG m 2 a"]);
}

#[tokio::test]
async fn headers_are_stripped_for_clients_without_header_support() {
    let server = start(Config::default()).await;
    let mut old = Raw::quiet(&server).await; // no "headers": true
    let mut new = Raw::connect(&server).await;
    new.send(b"CONNECT {\"verbose\":false,\"headers\":true}\r\n")
        .await;
    old.send(b"SUB h 1\r\n").await;
    new.send(b"SUB h 2\r\n").await;
    old.round_trip().await;
    new.round_trip().await;
    new.send(b"HPUB h 12 14\r\nNATS/1.0\r\n\r\nhi\r\n").await;
    assert_eq!(
        new.round_trip().await,
        ["HMSG h 2 \"NATS/1.0\\r\\n\\r\\n\" hi"]
    );
    assert_eq!(old.round_trip().await, ["MSG h 1 hi"]);
}

#[tokio::test]
async fn a_client_that_misses_pings_is_stale() {
    let server = start(Config {
        ping_interval: Duration::from_millis(50),
        max_pings_out: 2,
        ..Config::default()
    })
    .await;
    let mut c = Raw::quiet(&server).await;
    assert_eq!(
        c.until_closed().await,
        ["PING", "PING", "-ERR Stale Connection"]
    );
    // One that answers stays.
    let mut d = Raw::quiet(&server).await;
    for _ in 0..4 {
        assert_eq!(d.next().await.unwrap(), "PING");
        d.send(b"PONG\r\n").await;
    }
}

#[tokio::test]
async fn a_slow_consumer_is_cut_off_and_nobody_else_slows_down() {
    const N: usize = 2000;
    const CHUNK: usize = 50;
    let server = start(Config {
        max_pending: 4 * 1024 * 1024,
        max_payload: 64 * 1024,
        ..Config::default()
    })
    .await;
    // Subscribes and never reads.
    let mut slow = Raw::quiet(&server).await;
    slow.send(b"SUB data 1\r\n").await;
    slow.round_trip().await;
    let mut good = Raw::quiet(&server).await;
    good.send(b"SUB data 1\r\n").await;
    good.round_trip().await;
    let mut publisher = Raw::quiet(&server).await;
    let frame = {
        let mut f = b"PUB data 16384\r\n".to_vec();
        f.extend(std::iter::repeat_n(b'x', 16384));
        f.extend_from_slice(b"\r\n");
        f
    };
    let mut received = 0;
    for _ in 0..N / CHUNK {
        for _ in 0..CHUNK {
            publisher.send(&frame).await;
        }
        // The publisher is never held up: its round trip completes while `slow` reads nothing.
        publisher.round_trip().await;
        for _ in 0..CHUNK {
            let op = good.next().await.expect("good reader stays connected");
            assert!(op.starts_with("MSG data 1 "), "{}", &op[..op.len().min(40)]);
            received += 1;
        }
    }
    assert_eq!(received, N);
    assert_eq!(server.stats().slow_consumers, 1);
    // The slow client's connection is closed: draining it reaches the end.
    let ops = slow.until_closed().await;
    assert!(ops.len() < N, "the slow consumer got everything");
}

/// Publishes `n` messages of 16 KiB on `data` from a fresh connection, with a round trip at
/// the end (which also shows the publisher was never held up).
async fn flood(server: &Server, n: usize) {
    let mut publisher = Raw::quiet(server).await;
    let mut frame = b"PUB data 16384\r\n".to_vec();
    frame.extend(std::iter::repeat_n(b'x', 16384));
    frame.extend_from_slice(b"\r\n");
    for _ in 0..n {
        publisher.send(&frame).await;
    }
    publisher.round_trip().await;
}

#[tokio::test]
async fn under_the_drop_policy_a_slow_consumer_stays_and_loses_the_excess() {
    let server = start(Config {
        max_pending: 256 * 1024,
        max_payload: 64 * 1024,
        slow_consumer: herald_server::SlowConsumerPolicy::Drop,
        ..Config::default()
    })
    .await;
    let mut slow = Raw::quiet(&server).await;
    slow.send(b"SUB data 1\r\n").await;
    slow.round_trip().await;
    // 32 MiB: far more than the socket buffers and 256 KiB of pending output hold.
    flood(&server, 2000).await;
    assert_eq!(server.stats().slow_consumers, 1);
    // Still connected: it reads what was kept, then its PONG.
    let kept = slow.round_trip().await;
    assert!(!kept.is_empty() && kept.len() < 2000, "kept {}", kept.len());
}

#[tokio::test]
async fn a_write_blocked_past_the_deadline_is_a_slow_consumer() {
    let server = start(Config {
        write_deadline: Duration::from_millis(100),
        ..Config::default()
    })
    .await;
    let mut slow = Raw::quiet(&server).await;
    slow.send(b"SUB data 1\r\n").await;
    slow.round_trip().await;
    // Well under max_pending (64 MiB), but the client reads nothing, so a write blocks.
    flood(&server, 2000).await;
    // Reading now would unblock the write; wait (yielding to the server, bounded) until the
    // deadline has cut the client off.
    tokio::time::timeout(WAIT, async {
        while server.stats().slow_consumers == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the blocked writer was not cut off");
    let ops = slow.until_closed().await;
    assert!(ops.len() < 2000, "the blocked client got everything");
}

#[tokio::test]
async fn disconnects_garbage_and_limits_leave_others_alone() {
    let server = start(Config {
        max_connections: 8,
        max_subscriptions: 2,
        ..Config::default()
    })
    .await;
    let mut watcher = Raw::quiet(&server).await;
    watcher.send(b"SUB a 1\r\n").await;
    watcher.round_trip().await;
    // Gone in the middle of a payload.
    let mut c = Raw::quiet(&server).await;
    c.send(b"PUB a 100\r\nabc").await;
    drop(c);
    // Random bytes.
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..20 {
        let mut c = Raw::connect(&server).await;
        let junk: Vec<u8> = (0..rng.usize(1..2000)).map(|_| rng.u8(..)).collect();
        c.send(&junk).await;
        drop(c);
    }
    assert_eq!(watcher.round_trip().await, Vec::<String>::new());
    // Subscription limit.
    let mut s = Raw::quiet(&server).await;
    s.send(b"SUB x 1\r\nSUB y 2\r\nSUB z 3\r\n").await;
    assert_eq!(
        s.round_trip().await,
        ["-ERR maximum subscriptions exceeded"]
    );
    // Connection limit: the watcher, `s` and six more fill it; the next is refused.
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(Raw::quiet(&server).await);
    }
    for h in &mut held {
        h.round_trip().await;
    }
    let mut refused = TcpStream::connect(server.nats_addr()).await.unwrap();
    let mut text = String::new();
    tokio::time::timeout(WAIT, refused.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(text, "-ERR 'maximum connections exceeded'\r\n");
    watcher.send(b"PUB a 2\r\nok\r\n").await;
    assert_eq!(watcher.round_trip().await, ["MSG a 1 ok"]);
}

/// Clients naming new scopes past `max_scopes` are refused, and scopes their clients left are
/// forgotten, so the same number of new ones fit again, round after round.
#[tokio::test]
async fn scopes_are_bounded_and_forgotten_when_their_clients_leave() {
    let node = herald::Node::local();
    let server = Server::start(
        Config {
            listen: "127.0.0.1:0".into(),
            http: String::new(),
            max_scopes: 4,
            ..Config::default()
        },
        node.clone(),
    )
    .await
    .unwrap();
    let idle = node.scope_count();
    assert_eq!(node.scopes(), ["default"]);
    let connect = |scope: &str| {
        format!("CONNECT {{\"verbose\":false,\"pedantic\":false,\"scope\":\"{scope}\"}}\r\n")
    };
    for round in 0..5 {
        let mut clients = Vec::new();
        for i in 0..3 {
            let mut c = Raw::connect(&server).await;
            c.send(connect(&format!("r{round}-{i}")).as_bytes()).await;
            c.send(b"SUB a 1\r\nPUB a 2\r\nhi\r\n").await;
            assert_eq!(c.round_trip().await, ["MSG a 1 hi"]);
            clients.push(c);
        }
        assert_eq!(node.scope_count(), 4);
        let mut over = Raw::connect(&server).await;
        over.send(connect(&format!("r{round}-over")).as_bytes())
            .await;
        assert_eq!(over.until_closed().await, ["-ERR maximum scopes exceeded"]);
        // A scope in use still lets clients in.
        let mut same = Raw::connect(&server).await;
        same.send(connect(&format!("r{round}-0")).as_bytes()).await;
        same.send(b"PUB a 2\r\nho\r\n").await;
        assert_eq!(same.round_trip().await, Vec::<String>::new());
        assert_eq!(clients[0].round_trip().await, ["MSG a 1 ho"]);
        drop((clients, same));
        let deadline = tokio::time::Instant::now() + WAIT;
        while node.scope_count() > idle {
            assert!(
                tokio::time::Instant::now() < deadline,
                "scopes left after their clients: {:?}",
                node.scopes()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    server.shutdown().await;
}
