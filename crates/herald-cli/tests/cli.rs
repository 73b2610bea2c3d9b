//! The `herald` client commands as a user runs them: `sub`, `pub`, `reply`, `req`, `--help`.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::HeraldProcess;

const WAIT: Duration = Duration::from_secs(20);

fn herald(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.args(args);
    cmd
}

/// Runs a command to completion, within [`WAIT`].
fn run(mut cmd: Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn herald");
    finish(child)
}

fn finish(child: Child) -> Output {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(WAIT)
        .expect("herald command did not finish in time")
        .expect("wait for herald")
}

/// Starts a long-running client command and waits for the stderr line that says it is ready.
fn start_ready(mut cmd: Command, ready: &str) -> Child {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn herald");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    let ready = ready.to_owned();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stderr).lines();
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if line.contains(&ready) {
                let _ = tx.send(());
                break;
            }
        }
        // Keep draining so the child never blocks on a full pipe.
        for _ in lines {}
    });
    rx.recv_timeout(WAIT)
        .expect("client command never became ready");
    child
}

#[test]
fn sub_prints_what_pub_sends_in_its_scope() {
    let server = HeraldProcess::start(&[]);
    let url = server.url();
    let sub = start_ready(
        herald(&[
            "sub", "greet.*", "--count", "2", "--server", &url, "--scope", "s",
        ]),
        "subscribed to greet.*",
    );
    let out = run(herald(&[
        "pub",
        "greet.other",
        "wrong scope",
        "--server",
        &url,
    ]));
    assert!(out.status.success(), "{out:?}");
    for (subject, data) in [("greet.en", "hello"), ("greet.fr", "bonjour")] {
        let out = run(herald(&[
            "pub", subject, data, "-H", "Lang: x", "--server", &url, "--scope", "s",
        ]));
        assert!(out.status.success(), "{out:?}");
    }
    let mut sub = sub;
    let mut stdout = String::new();
    sub.stdout
        .take()
        .expect("piped")
        .read_to_string(&mut stdout)
        .expect("read sub output");
    let status = finish(sub).status;
    assert!(status.success());
    assert_eq!(
        stdout,
        "[#1] greet.en\nLang: x\nhello\n\n[#2] greet.fr\nLang: x\nbonjour\n\n"
    );
}

/// A subscriber to everything is an ordinary subscriber: it starts, and it neither swallows
/// nor answers the round trip by which another `herald sub` knows it is subscribed.
#[test]
fn a_subscriber_to_everything_does_not_stop_other_subscribers() {
    let server = HeraldProcess::start(&[]);
    let url = server.url();
    let all = start_ready(
        herald(&["sub", ">", "--count", "2", "--server", &url]),
        "subscribed to >",
    );
    let one = start_ready(
        herald(&["sub", "greet.y", "--count", "1", "--server", &url]),
        "subscribed to greet.y",
    );
    let out = run(herald(&["pub", "greet.y", "hello", "--server", &url]));
    assert!(out.status.success(), "{out:?}");
    for child in [one, all] {
        let out = finish(child);
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.ends_with("] greet.y\nhello\n\n"), "{stdout:?}");
    }
}

/// `herald serve` reads the variables of its settings and only warns about other `HERALD_*`
/// variables (a script's own, a misspelt setting).
#[test]
fn serve_starts_beside_unrelated_herald_variables() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command
        .env("HERALD_BUILD_ID", "1234")
        .env("HERALD_NAME", "from-env");
    let server = HeraldProcess::spawn(command, &[]);
    let url = server.url();
    let out = run(herald(&[
        "req",
        "$HERALD.API.SERVER.INFO",
        "",
        "--server",
        &url,
    ]));
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("from-env"),
        "{out:?}"
    );
}

#[test]
fn req_gets_what_reply_answers_and_fails_clearly_without_responders() {
    let server = HeraldProcess::start(&[]);
    let url = server.url();
    let replier = start_ready(
        herald(&[
            "reply", "svc.time", "noon", "--count", "1", "--server", &url,
        ]),
        "answering requests on svc.time",
    );
    let out = run(herald(&["req", "svc.time", "now?", "--server", &url]));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "noon\n");
    assert!(finish(replier).status.success());

    let out = run(herald(&[
        "req",
        "svc.none",
        "x",
        "--server",
        &url,
        "--timeout",
        "2s",
    ]));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no responders"),
        "{out:?}"
    );
}

#[test]
fn help_everywhere_and_clear_errors() {
    for cmd in [
        &["--help"][..],
        &["serve", "--help"],
        &["pub", "--help"],
        &["sub", "--help"],
        &["req", "--help"],
        &["reply", "--help"],
        &["bench", "--help"],
    ] {
        let out = run(herald(cmd));
        assert!(out.status.success(), "{cmd:?}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{cmd:?}"
        );
    }
    // Nobody listens on this port (a listener bound and dropped).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let out = run(herald(&[
        "pub",
        "a",
        "b",
        "--server",
        &url,
        "--connect-timeout",
        "1s",
    ]));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect"),
        "{out:?}"
    );
    let out = run(herald(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--max-payload",
        "0",
    ]));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("max_payload"),
        "{out:?}"
    );
}

#[test]
fn data_inspect_verifies_without_changing_anything() {
    use herald_log::{Config, Entry, Log};
    let data = tempfile::tempdir().expect("temp dir");
    let dir = data.path().join("streams").join("orders");
    let (mut log, _) = Log::open(&dir, Config::default()).expect("open log");
    for i in 0..3u8 {
        let payload = format!("order {i}");
        log.append(&Entry {
            subject: "orders.created",
            headers: b"",
            payload: payload.as_bytes(),
            timestamp: 1_700_000_000_000_000_000,
        })
        .expect("append");
    }
    log.sync().expect("sync");
    drop(log);

    let out = run(herald(&["data", "inspect", &data.path().to_string_lossy()]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("stream orders"), "{text}");
    assert!(
        text.contains("#2 ") && text.contains("orders.created") && text.contains("order 1"),
        "{text}"
    );
    assert!(
        text.contains("3 records, seq 1..=3 in 1 segment(s)"),
        "{text}"
    );

    // A flipped bit in the last record: reported, the command fails, the file is untouched.
    let file = dir.join("00000000000000000001.log");
    let mut bytes = std::fs::read(&file).expect("read segment");
    let last = bytes.len() - 2;
    bytes[last] ^= 1;
    std::fs::write(&file, &bytes).expect("write segment");
    let out = run(herald(&[
        "data",
        "inspect",
        &data.path().to_string_lossy(),
        "--stream",
        "orders",
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("2 records, seq 1..=2"), "{text}");
    assert!(
        text.contains("DAMAGED") && text.contains("checksum mismatch"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(&file).expect("read again"),
        bytes,
        "inspect wrote nothing"
    );

    let out = run(herald(&[
        "data",
        "inspect",
        &data.path().to_string_lossy(),
        "--stream",
        "nope",
    ]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no stream \"nope\""));
}

#[test]
fn data_dump_and_restore_move_a_stream() {
    use herald_log::{Config, Entry, Log};
    use std::io::Write;
    let from = tempfile::tempdir().expect("temp dir");
    let dir = from.path().join("streams").join("orders");
    let (mut log, _) = Log::open(&dir, Config::default()).expect("open log");
    for i in 0..5u64 {
        let payload = vec![i as u8; 3];
        log.append(&Entry {
            subject: "orders.created",
            headers: if i == 2 {
                b"NATS/1.0\r\nK: v\r\n\r\n"
            } else {
                b""
            },
            payload: &payload,
            timestamp: 1_000 + i,
        })
        .expect("append");
    }
    log.purge(Some(3)).expect("purge the first two");
    log.sync().expect("sync");
    drop(log);

    let dump = run(herald(&[
        "data",
        "dump",
        &from.path().to_string_lossy(),
        "--stream",
        "orders",
    ]));
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    // Records below the purge mark are not dumped, though their segment still holds them.
    assert_eq!(String::from_utf8_lossy(&dump.stdout).lines().count(), 3);

    let to = tempfile::tempdir().expect("temp dir");
    let restore = |input: &[u8]| {
        let mut child = herald(&[
            "data",
            "restore",
            &to.path().to_string_lossy(),
            "--stream",
            "orders",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn restore");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write dump");
        finish(child)
    };
    // Bad input: refused, and no half-made stream is left.
    let out = restore(b"{\"seq\":1,\"time_ns\":1,\"subject\":\"x\",\"payload\":\"!!\"}\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1: payload"));
    assert!(!to.path().join("streams").join("orders").exists());

    let out = restore(&dump.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (log, recovery) =
        Log::open(to.path().join("streams").join("orders"), Config::default()).expect("reopen");
    assert!(recovery.truncations.is_empty());
    assert_eq!((log.first_seq(), log.next_seq()), (3, 6));
    let third = log.get(3).expect("read").expect("present");
    assert_eq!((third.timestamp, third.payload), (1_002, vec![2u8; 3]));
    assert_eq!(third.headers, b"NATS/1.0\r\nK: v\r\n\r\n");
    // Restoring over an existing stream is refused.
    let again = restore(&dump.stdout);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

/// A data directory written before the typed streams API (configs in JetStream's JSON) is
/// rewritten by `herald data migrate`, after which its stream and durable consumer open.
#[test]
fn data_migrate_rewrites_old_configs() {
    let dir = tempfile::tempdir().unwrap();
    let stream = dir.path().join("streams/ORDERS");
    std::fs::create_dir_all(stream.join("consumers")).unwrap();
    std::fs::write(
        stream.join("stream.json"),
        r#"{"config":{"name":"ORDERS","subjects":["orders.>"],"retention":"limits",
            "max_consumers":-1,"max_msgs":-1,"max_bytes":-1,"max_age":0,
            "max_msgs_per_subject":-1,"max_msg_size":-1,"discard":"old","storage":"file",
            "num_replicas":1,"duplicate_window":120000000000,"compression":"none",
            "allow_direct":false,"mirror_direct":false,"sealed":false,"deny_delete":false,
            "deny_purge":false,"allow_rollup_hdrs":false,"consumer_limits":{},
            "allow_msg_ttl":false},"created":1700000000000000000}"#,
    )
    .unwrap();
    std::fs::write(
        stream.join("consumers/billing.json"),
        r#"{"config":{"durable_name":"billing","name":"billing","deliver_policy":"all",
            "ack_policy":"explicit","ack_wait":30000000000,"max_deliver":-1,
            "replay_policy":"instant","max_waiting":512,"max_ack_pending":1000,
            "num_replicas":0},"created":1700000000000000000,"next":1,"cseq":0,
            "last_sseq":0,"pending":[]}"#,
    )
    .unwrap();
    let path = dir.path().to_str().unwrap();
    let out = run(herald(&["data", "migrate", path]));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ORDERS: stream.json migrated, 1 consumer file(s) migrated\n"
    );
    let again = run(herald(&["data", "migrate", path]));
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        "ORDERS: stream.json already current, 0 consumer file(s) migrated\n"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let router = herald::Router::new(16, "default");
        let options = herald::streams::StreamsOptions::new(dir.path());
        let streams = herald::streams::Streams::open(&router, options)
            .await
            .unwrap();
        let info = streams.info("ORDERS").unwrap();
        assert_eq!(info.config.subjects, ["orders.>"]);
        assert_eq!(info.config.max_bytes, None);
        let billing = streams.consumer_info("ORDERS", "billing").unwrap();
        assert!(billing.config.durable);
        assert_eq!(
            billing.config.ack_wait,
            Some(std::time::Duration::from_secs(30))
        );
        streams.close();
    });
}

/// `herald group` in a scope: create, add, remove, ls, topics, broadcast, rm, with errors
/// said plainly.
#[test]
fn group_commands_manage_and_broadcast_to_groups() {
    let server = HeraldProcess::start(&[]);
    let url = server.url();
    let group = |args: &[&str]| {
        let mut all = vec!["group"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--server", &url, "--scope", "shop"]);
        run(herald(&all))
    };
    let text = |out: &Output| String::from_utf8_lossy(&out.stdout).into_owned();
    let made = group(&["create", "news", "news.eu", "news.us"]);
    assert!(made.status.success(), "{made:?}");
    assert_eq!(text(&made).trim(), "created group news with 2 topics");
    let again = group(&["create", "news"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{again:?}"
    );
    assert!(group(&["add", "news", "news.asia"]).status.success());
    let removed = group(&["remove", "news", "news.us"]);
    assert_eq!(
        text(&removed).trim(),
        "removed news.us from group news (2 topics)"
    );
    let topics = group(&["topics", "news"]);
    assert_eq!(text(&topics), "news.asia\nnews.eu\n");
    assert_eq!(text(&group(&["ls"])).trim(), "news\t2 topics");
    // A subscriber in the scope sees the broadcast on each topic.
    let sub = start_ready(
        herald(&[
            "sub", "news.>", "--server", &url, "--scope", "shop", "--count", "2",
        ]),
        "subscribed",
    );
    let sent = group(&["broadcast", "news", "hello"]);
    assert_eq!(
        text(&sent).trim(),
        "broadcast to 2 topics of news: 2 deliveries"
    );
    let got = finish(sub);
    assert_eq!(text(&got).matches("hello").count(), 2, "{got:?}");
    assert!(group(&["rm", "news"]).status.success());
    let gone = group(&["topics", "news"]);
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("not found"),
        "{gone:?}"
    );
    // Another scope has its own groups.
    let other = run(herald(&["group", "ls", "--server", &url]));
    assert_eq!(text(&other).trim(), "no groups");
}

/// `herald passwd` hashes what stdin gives; the client commands log in with `--user` /
/// `--password` or `--token` and are refused without.
#[test]
fn passwd_and_logging_in_from_the_command_line() {
    let hash = |secret: &str| {
        let mut child = herald(&["passwd"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn herald passwd");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{secret}\n").as_bytes())
            .expect("write the password");
        let out = finish(child);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout)
            .expect("UTF-8")
            .trim()
            .to_owned()
    };
    let alice = hash("open-sesame");
    assert!(alice.starts_with("$argon2id$"), "{alice}");
    let token = hash("a-token-for-scripts");
    let dir = tempfile::tempdir().expect("a directory");
    let conf = dir.path().join("herald.toml");
    std::fs::write(
        &conf,
        format!(
            "[[users]]\nuser = \"alice\"\npassword = \"{alice}\"\nscope = \"s\"\n\n[[users]]\ntoken = \"{token}\"\nscope = \"s\"\n"
        ),
    )
    .expect("write the config");
    let server = HeraldProcess::start(&["--config", conf.to_str().expect("UTF-8 path")]);
    let url = server.url();
    let sub = start_ready(
        herald(&[
            "sub",
            "greet",
            "--count",
            "1",
            "--server",
            &url,
            "--token",
            "a-token-for-scripts",
        ]),
        "subscribed",
    );
    let sent = run(herald(&[
        "pub",
        "greet",
        "hi",
        "--server",
        &url,
        "--user",
        "alice",
        "--password",
        "open-sesame",
    ]));
    assert!(sent.status.success(), "{sent:?}");
    let got = finish(sub);
    assert!(
        String::from_utf8_lossy(&got.stdout).contains("hi"),
        "{got:?}"
    );
    for args in [
        vec!["pub", "greet", "x", "--server", &url],
        vec![
            "pub",
            "greet",
            "x",
            "--server",
            &url,
            "--user",
            "alice",
            "--password",
            "wrong",
        ],
    ] {
        let refused = run(herald(&args));
        assert!(!refused.status.success());
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(err.contains("authorization violation"), "{err}");
    }
}
