//! `herald stream` and `herald consume` as a user runs them, against `herald serve --data-dir`
//! (and one server without it).

mod common;

use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::HeraldProcess;

/// Every wait in these tests ends within this.
const WAIT: Duration = Duration::from_secs(20);

/// A `herald serve` with a fresh data directory, removed when dropped (after the server).
struct Server {
    process: HeraldProcess,
    _data: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let data = tempfile::Builder::new()
            .prefix("herald-stream-cli-")
            .tempdir()
            .expect("temp dir");
        let dir = data.path().to_str().expect("utf-8 temp path").to_owned();
        Server {
            process: HeraldProcess::start(&["--data-dir", &dir]),
            _data: data,
        }
    }

    fn url(&self) -> String {
        self.process.url()
    }
}

/// Runs `herald ARGS --server URL` to completion (killed and failed after [`WAIT`]).
fn herald(url: &str, args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .args(["--server", url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn herald");
    let pid = child.id().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(output) => output.expect("wait for herald"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("herald {args:?} did not finish within {WAIT:?}");
        }
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a command that must succeed; returns its standard output.
fn ok(url: &str, args: &[&str]) -> String {
    let out = herald(url, args);
    assert!(
        out.status.success(),
        "herald {args:?} failed: {}",
        stderr(&out)
    );
    stdout(&out)
}

/// Runs a command that must fail with one clear line (no panic); returns that line.
fn fails(url: &str, args: &[&str]) -> String {
    let out = herald(url, args);
    let err = stderr(&out);
    assert!(!out.status.success(), "herald {args:?} succeeded: {out:?}");
    assert!(!err.contains("panicked"), "herald {args:?} panicked: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

/// The value of `KEY  value` in `herald stream info` output.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.trim_start().strip_prefix(key))
        .map(str::trim)
}

/// Runs `f` with a JetStream context on a fresh async-nats connection to `url`.
fn with_js<T>(url: &str, f: impl AsyncFnOnce(async_nats::jetstream::Context) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = tokio::time::timeout(WAIT, async_nats::connect(url))
            .await
            .expect("connect in time")
            .expect("connect");
        f(async_nats::jetstream::new(client)).await
    })
}

/// Publishes through async-nats's JetStream API, each publish acknowledged (stored) before the
/// next: the messages get consecutive sequences in this order.
fn js_publish(url: &str, messages: &[(&str, &str)]) {
    with_js(url, async |js| {
        for (subject, payload) in messages {
            let ack = js
                .publish(subject.to_string(), payload.to_string().into())
                .await
                .expect("publish");
            tokio::time::timeout(WAIT, ack)
                .await
                .expect("ack in time")
                .expect("stored");
        }
    });
}

/// `(num_ack_pending, ack floor stream sequence)` of a consumer.
fn ack_state(url: &str, stream: &str, consumer: &str) -> (usize, u64) {
    with_js(url, async |js| {
        let stream = js.get_stream_no_info(stream).await.expect("stream handle");
        let info = tokio::time::timeout(WAIT, stream.consumer_info(consumer))
            .await
            .expect("consumer info in time")
            .expect("consumer info");
        (info.num_ack_pending, info.ack_floor.stream_sequence)
    })
}

#[test]
fn a_stream_from_add_to_rm() {
    let server = Server::start();
    let url = server.url();

    let added = ok(
        &url,
        &[
            "stream",
            "add",
            "ORDERS",
            "--subjects",
            "orders.>,audit.*",
            "--max-msgs",
            "1000",
            "--max-age",
            "1h",
            "--dupe-window",
            "2m",
            "--discard",
            "old",
            "--storage",
            "file",
        ],
    );
    assert!(added.starts_with("stream ORDERS (created "), "{added}");
    assert_eq!(field(&added, "subjects"), Some("orders.>, audit.*"));
    assert_eq!(field(&added, "max msgs"), Some("1000"));
    assert_eq!(field(&added, "max bytes"), Some("unlimited"));
    assert_eq!(field(&added, "max age"), Some("1h"));
    assert_eq!(field(&added, "dupe window"), Some("2m"));

    let listed = ok(&url, &["stream", "ls"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(lines[0].starts_with("NAME"), "{listed}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        row,
        ["ORDERS", "orders.>,audit.*", "0", "0", "B", "-", "-", "0"]
    );

    // Four acknowledged publishes, then one through `herald pub` with a header.
    js_publish(
        &url,
        &[
            ("orders.1", "order 1"),
            ("orders.2", "order 2"),
            ("orders.3", "order 3"),
            ("orders.4", "order 4"),
        ],
    );
    ok(&url, &["pub", "orders.5", "order 5", "-H", "Trace: abc"]);

    let first = ok(
        &url,
        &["consume", "ORDERS", "--durable", "d", "--count", "3"],
    );
    assert_eq!(
        first,
        "[#1] orders.1\norder 1\n\n[#2] orders.2\norder 2\n\n[#3] orders.3\norder 3\n\n"
    );
    // The durable goes on after what it acknowledged.
    let next = ok(
        &url,
        &[
            "consume",
            "ORDERS",
            "--durable",
            "d",
            "--count",
            "2",
            "--headers",
        ],
    );
    assert_eq!(
        next,
        "[#4] orders.4\norder 4\n\n[#5] orders.5\nTrace: abc\norder 5\n\n"
    );
    assert_eq!(
        ack_state(&url, "ORDERS", "d"),
        (0, 5),
        "every message acked"
    );
    // Drained: the next run waits out its timeout, prints nothing and succeeds.
    let out = herald(
        &url,
        &["consume", "ORDERS", "--durable", "d", "--timeout", "300ms"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("0 messages"), "{}", stderr(&out));

    let info = ok(&url, &["stream", "info", "ORDERS"]);
    assert_eq!(field(&info, "messages"), Some("5"), "{info}");
    assert_eq!(field(&info, "consumers"), Some("1"), "{info}");
    assert!(
        field(&info, "first").is_some_and(|f| f.starts_with("#1 at 20")),
        "{info}"
    );
    assert!(
        field(&info, "last").is_some_and(|f| f.starts_with("#5 at 20")),
        "{info}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&url, &["stream", "info", "ORDERS", "--json"])).expect("JSON");
    assert_eq!(json["config"]["name"], "ORDERS");
    assert_eq!(json["config"]["max_msgs"], 1000);
    assert_eq!(json["state"]["messages"], 5);
    assert_eq!(json["state"]["last_seq"], 5);

    assert_eq!(
        ok(&url, &["stream", "purge", "ORDERS", "--keep", "2"]),
        "purged 3 messages from ORDERS\n"
    );
    assert_eq!(
        ok(&url, &["stream", "purge", "ORDERS"]),
        "purged 2 messages from ORDERS\n"
    );
    let info = ok(&url, &["stream", "info", "ORDERS"]);
    assert_eq!(field(&info, "messages"), Some("0"), "{info}");

    assert_eq!(
        ok(&url, &["stream", "rm", "ORDERS"]),
        "deleted stream ORDERS\n"
    );
    assert_eq!(ok(&url, &["stream", "ls"]), "no streams\n");
    assert_eq!(ok(&url, &["stream", "ls", "--json"]), "[]\n");
}

#[test]
fn ephemeral_consumers_start_where_asked_and_leave_nothing_behind() {
    let server = Server::start();
    let url = server.url();
    ok(&url, &["stream", "add", "EVENTS", "--subjects", "ev.*"]);
    js_publish(&url, &[("ev.a", "one"), ("ev.b", "two"), ("ev.a", "three")]);

    // From sequence 2, no acks, until nothing comes for 300 ms.
    let out = herald(
        &url,
        &[
            "consume",
            "EVENTS",
            "--start",
            "2",
            "--ack",
            "none",
            "--timeout",
            "300ms",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "[#2] ev.b\ntwo\n\n[#3] ev.a\nthree\n\n");
    assert_eq!(
        ok(
            &url,
            &["consume", "EVENTS", "--start", "last", "--count", "1"]
        ),
        "[#3] ev.a\nthree\n\n"
    );
    assert_eq!(
        ok(
            &url,
            &[
                "consume", "EVENTS", "--filter", "ev.a", "--count", "2", "--batch", "1"
            ]
        ),
        "[#1] ev.a\none\n\n[#3] ev.a\nthree\n\n"
    );
    // Ten minutes ago: everything.
    assert_eq!(
        ok(
            &url,
            &["consume", "EVENTS", "--start", "10m", "--count", "1"]
        ),
        "[#1] ev.a\none\n\n"
    );
    let info = ok(&url, &["stream", "info", "EVENTS"]);
    assert_eq!(field(&info, "consumers"), Some("0"), "{info}");

    // A durable's start cannot change once it exists: said plainly.
    ok(
        &url,
        &[
            "consume",
            "EVENTS",
            "--durable",
            "w",
            "--start",
            "new",
            "--timeout",
            "100ms",
        ],
    );
    let err = fails(
        &url,
        &[
            "consume",
            "EVENTS",
            "--durable",
            "w",
            "--start",
            "all",
            "--count",
            "1",
        ],
    );
    assert!(
        err.contains("consumer w") && err.contains("can not be updated"),
        "{err}"
    );
}

#[test]
fn errors_are_one_clear_line() {
    let server = Server::start();
    let url = server.url();
    for args in [
        &["stream", "info", "NOPE"][..],
        &["stream", "rm", "NOPE"],
        &["stream", "purge", "NOPE"],
        &["consume", "NOPE", "--count", "1"],
    ] {
        let err = fails(&url, args);
        assert!(err.contains("stream NOPE not found"), "{args:?}: {err}");
    }
    let err = fails(&url, &["stream", "add", "a.b"]);
    assert!(err.contains("invalid stream name"), "{err}");
    ok(&url, &["stream", "add", "ORDERS", "--subjects", "orders.>"]);
    let err = fails(
        &url,
        &[
            "stream",
            "add",
            "ORDERS",
            "--subjects",
            "orders.>",
            "--max-msgs",
            "5",
        ],
    );
    assert!(
        err.contains("cannot create stream ORDERS") && err.contains("different configuration"),
        "{err}"
    );
    let err = fails(&url, &["stream", "add", "OTHER", "--subjects", "orders.eu"]);
    assert!(err.contains("overlap"), "{err}");
    let out = herald(&url, &["consume", "ORDERS", "--start", "soon"]);
    assert_eq!(out.status.code(), Some(2), "a usage error: {out:?}");
    assert!(stderr(&out).contains("--start"), "{}", stderr(&out));
    for help in [
        &["stream", "--help"][..],
        &["stream", "add", "--help"],
        &["consume", "--help"],
    ] {
        let out = herald(&url, help);
        assert!(out.status.success(), "{help:?}: {out:?}");
    }

    // A server without a data directory does not answer the JetStream API.
    let plain = HeraldProcess::start(&[]);
    let url = plain.url();
    for args in [
        &["stream", "add", "ORDERS", "--subjects", "orders.>"][..],
        &["stream", "ls"],
        &["stream", "info", "ORDERS"],
        &["consume", "ORDERS", "--count", "1"],
    ] {
        let err = fails(&url, args);
        assert!(
            err.contains("no JetStream here") && err.contains("--data-dir"),
            "{args:?}: {err}"
        );
    }
}

/// `herald bench --mode js-pub|js-consume|js-push|js-ordered`, with async-nats and with the
/// raw client, runs to
/// the end against herald and reports every message (each mode checks the stream or the
/// consumer afterwards and fails otherwise).
#[test]
fn bench_js_modes_count_every_message() {
    let server = Server::start();
    for mode in [
        &["--mode", "js-pub", "--inflight", "16"][..],
        &["--mode", "js-pub", "--inflight", "16", "--raw"],
        &["--mode", "js-consume", "--batch", "64"],
        &["--mode", "js-consume", "--batch", "64", "--raw"],
        &["--mode", "js-push", "--raw"],
        &["--mode", "js-ordered", "--raw"],
    ] {
        let mut args = vec!["bench", "bench.js", "--json", "--msgs", "500"];
        args.extend_from_slice(mode);
        let report: serde_json::Value =
            serde_json::from_str(ok(&server.url(), &args).trim()).expect("one JSON report");
        assert_eq!(report["received"], 500, "{mode:?}: {report}");
        let rate = if mode[1] == "js-pub" {
            &report["publish_rate"]
        } else {
            &report["deliver_rate"]
        };
        assert!(rate.as_f64().is_some_and(|r| r > 0.0), "{mode:?}: {report}");
        let client = if mode.contains(&"--raw") {
            "raw"
        } else {
            "async-nats"
        };
        assert_eq!(report["client"], client);
    }
}

/// `herald bench --ping`: round trips one at a time with either client, each counted and
/// timed; it refuses to be mixed with another mode.
#[test]
fn bench_ping_counts_every_round_trip() {
    let server = Server::start();
    for client in [&[][..], &["--raw"]] {
        let mut args = vec!["bench", "--json", "--ping", "--msgs", "200"];
        args.extend_from_slice(client);
        let report: serde_json::Value =
            serde_json::from_str(ok(&server.url(), &args).trim()).expect("one JSON report");
        assert_eq!(
            (&report["mode"], &report["received"]),
            (&"ping".into(), &200.into()),
            "{report}"
        );
        assert!(report["latency_us"]["p50"].as_u64().is_some(), "{report}");
    }
    let refused = herald(&server.url(), &["bench", "--ping", "--request"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("cannot be used with"),
        "{refused:?}"
    );
}

/// `herald bench --request`: raw requesters, and async-nats ones, with requests in flight
/// (raw responders in a queue group), and async-nats one at a time by default; every request
/// is answered, and no requests in flight is refused.
#[test]
fn bench_request_answers_every_request() {
    let server = Server::start();
    let runs: [(&[&str], &str, u64); 3] = [
        (&["--raw", "--inflight", "32"], "raw", 32),
        (&["--inflight", "32"], "async-nats", 32),
        (&[], "async-nats", 1),
    ];
    for (extra, client, inflight) in runs {
        let mut args = vec![
            "bench",
            "bench.req",
            "--json",
            "--request",
            "--msgs",
            "3000",
            "--pubs",
            "2",
            "--subs",
            "2",
        ];
        args.extend_from_slice(extra);
        let report: serde_json::Value =
            serde_json::from_str(ok(&server.url(), &args).trim()).expect("one JSON report");
        assert_eq!(report["received"], 3000, "{report}");
        assert_eq!(
            (&report["client"], &report["inflight"]),
            (&client.into(), &inflight.into()),
            "{args:?}"
        );
        assert!(report["latency_us"]["p50"].as_u64().is_some(), "{report}");
    }
    let refused = herald(
        &server.url(),
        &["bench", "--request", "--subs", "1", "--inflight", "0"],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--inflight must be at least 1"),
        "{refused:?}"
    );
}
