//! Authentication and permissions on the NATS door (SPEC 8.1), with async-nats and raw
//! sockets: users bound to scopes, passwords and tokens, the exact `-ERR` strings, wildcard
//! subscriptions kept from denied subjects, `allow_responses`, and no secret in the logs.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::HeraldProcess;
use common::sse::{WAIT, next};
use futures::StreamExt;
use tempfile::TempDir;

const ALICE: &str = "wonderland-pw";
const BOB: &str = "builder-pw";
const TOKEN: &str = "metrics-token-0123456789";
const CAROL: &str = "carol-responds-pw";
const ADMIN: &str = "admin-of-default-pw";
const DAVE: &str = "dave-broadcasts-pw";

/// A config with users, written to a temporary directory.
fn config(dir: &TempDir) -> std::path::PathBuf {
    let hash = |s: &str| herald_server::hash_secret(s).unwrap();
    let text = format!(
        r#"
auth_timeout = "1s"

[[users]]
user = "alice"
password = "{alice}"
scope = "shop"
[users.permissions]
publish = {{ allow = ["orders.>", "_INBOX.>", "svc.>"], deny = ["orders.secret.>"] }}
subscribe = {{ allow = [">"], deny = ["admin.>", "orders.secret.>"] }}

[[users]]
user = "bob"
password = "{bob}"
scope = "other"

[[users]]
token = "{token}"
scope = "shop"

[[users]]
user = "carol"
password = "{carol}"
scope = "shop"
[users.permissions]
publish = {{ allow = ["carol.>"] }}
subscribe = {{ allow = ["svc.>", "_INBOX.>"] }}
allow_responses = true

[[users]]
user = "admin"
password = "{admin}"
scope = "default"

[[users]]
user = "dave"
password = "{dave}"
scope = "shop"
[users.permissions]
publish = {{ allow = ["$HERALD.API.GROUPS.>", "news.>", "_INBOX.>"] }}
"#,
        alice = hash(ALICE),
        bob = hash(BOB),
        token = hash(TOKEN),
        carol = hash(CAROL),
        admin = hash(ADMIN),
        dave = hash(DAVE),
    );
    let path = dir.path().join("herald.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Waits until the server has handled everything `client` sent: a request nobody answers
/// ("no responders" comes at once), on a subject the users here who sync may publish to.
async fn sync(client: &async_nats::Client) {
    let answer = tokio::time::timeout(WAIT, client.request("svc.barrier", "".into()))
        .await
        .expect("barrier round trip timed out");
    let err = answer.expect_err("nobody answers the barrier");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}

async fn login(server: &HeraldProcess, user: &str, password: &str) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .user_and_password(user.into(), password.into())
        .connect(server.url())
        .await
        .unwrap_or_else(|e| panic!("{user} cannot connect: {e}"))
}

/// A raw connection: INFO read, then `send` written; returns what the server says within
/// `wait` (until it closes or goes quiet).
fn raw(server: &HeraldProcess, send: &str, wait: Duration) -> String {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let mut info = [0u8; 4096];
    let n = s.read(&mut info).unwrap();
    let info = String::from_utf8_lossy(&info[..n]).into_owned();
    assert!(info.contains("\"auth_required\":true"), "{info}");
    s.write_all(send.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_log_in_to_their_scopes_and_nobody_else_gets_in() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let conf = config(&dir);
    let server = HeraldProcess::start_logging_to(
        &["--config", conf.to_str().unwrap(), "--log", "trace"],
        &log,
    );
    let alice = login(&server, "alice", ALICE).await;
    let bob = login(&server, "bob", BOB).await;
    let metrics = async_nats::ConnectOptions::new()
        .token(TOKEN.into())
        .connect(server.url())
        .await
        .unwrap();
    // The token user is in alice's scope; bob is not.
    let mut in_shop = metrics.subscribe("orders.>").await.unwrap();
    let mut in_other = bob.subscribe("orders.>").await.unwrap();
    sync(&metrics).await;
    sync(&bob).await;
    alice
        .publish("orders.1", "for the shop".into())
        .await
        .unwrap();
    sync(&alice).await;
    assert_eq!(&next(&mut in_shop).await.payload[..], b"for the shop");
    assert!(
        tokio::time::timeout(Duration::from_millis(100), in_other.next())
            .await
            .is_err(),
        "a user of another scope saw it"
    );
    // Wrong password, unknown user, no credentials, a bad token: refused.
    for options in [
        async_nats::ConnectOptions::new()
            .user_and_password("alice".into(), "supersecret-wrong".into()),
        async_nats::ConnectOptions::new().user_and_password("mallory".into(), ALICE.into()),
        async_nats::ConnectOptions::new(),
        async_nats::ConnectOptions::new().token("supersecret-token-wrong".into()),
    ] {
        let refused = tokio::time::timeout(WAIT, options.connect(server.url()))
            .await
            .unwrap();
        let err = refused.expect_err("refused").to_string();
        assert!(err.contains("authorization violation"), "{err}");
    }
    // A socket that says nothing, one that subscribes before CONNECT, garbage credentials.
    assert_eq!(
        raw(&server, "", Duration::from_secs(5)),
        "-ERR 'Authentication Timeout'\r\n"
    );
    assert_eq!(
        raw(&server, "SUB x 1\r\n", WAIT),
        "-ERR 'Authorization Violation'\r\n"
    );
    let huge = "x".repeat(100_000);
    let garbage = format!("CONNECT {{\"user\":[1],\"pass\":\"{huge}\"}}\r\nPING\r\n");
    assert!(raw(&server, &garbage, WAIT).starts_with("-ERR"));
    let long =
        format!("CONNECT {{\"user\":\"alice\",\"pass\":\"{huge}\",\"verbose\":false}}\r\nPING\r\n");
    assert_eq!(
        raw(&server, &long, WAIT),
        "-ERR 'Maximum Control Line Exceeded'\r\n"
    );
    let wrong = "y".repeat(3000);
    let long = format!(
        "CONNECT {{\"user\":\"alice\",\"pass\":\"{wrong}\",\"verbose\":false}}\r\nPING\r\n"
    );
    assert_eq!(
        raw(&server, &long, WAIT),
        "-ERR 'Authorization Violation'\r\n"
    );
    // No secret in the server's log, not even a failed attempt's.
    drop(server);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("authentication failed"),
        "the log says what happened"
    );
    for secret in [
        ALICE,
        BOB,
        TOKEN,
        "supersecret-wrong",
        "supersecret-token-wrong",
    ] {
        assert!(!logged.contains(secret), "{secret} is in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_are_enforced_with_nats_server_s_errors_and_the_connection_stays() {
    let dir = tempfile::tempdir().unwrap();
    let conf = config(&dir);
    let server = HeraldProcess::start(&["--config", conf.to_str().unwrap()]);
    let hello =
        format!("CONNECT {{\"user\":\"alice\",\"pass\":\"{ALICE}\",\"verbose\":false}}\r\n");
    let said = raw(
        &server,
        &format!(
            "{hello}PUB orders.secret.x 1\r\nx\r\nPUB admin.x 1\r\nx\r\nSUB admin.x 1\r\nSUB admin.> q 2\r\nSUB orders.secret.* 3\r\nPUB orders.ok 1\r\nx\r\nSUB orders.> 4\r\nPING\r\n"
        ),
        Duration::from_secs(1),
    );
    assert_eq!(
        said,
        concat!(
            "-ERR 'Permissions Violation for Publish to \"orders.secret.x\"'\r\n",
            "-ERR 'Permissions Violation for Publish to \"admin.x\"'\r\n",
            "-ERR 'Permissions Violation for Subscription to \"admin.x\"'\r\n",
            "-ERR 'Permissions Violation for Subscription to \"admin.>\" using queue \"q\"'\r\n",
            "-ERR 'Permissions Violation for Subscription to \"orders.secret.*\"'\r\n",
            "PONG\r\n",
        ),
        "the connection stays open after each violation"
    );
    // A wildcard subscription overlapping a denied subject is accepted and never gets it.
    let alice = login(&server, "alice", ALICE).await;
    let token = async_nats::ConnectOptions::new()
        .token(TOKEN.into())
        .connect(server.url())
        .await
        .unwrap();
    let mut all = alice.subscribe("orders.>").await.unwrap();
    sync(&alice).await;
    for subject in [
        "orders.secret.plans",
        "orders.1",
        "orders.secret.x",
        "orders.2",
    ] {
        token.publish(subject, subject.into()).await.unwrap();
    }
    sync(&token).await;
    assert_eq!(next(&mut all).await.subject.as_str(), "orders.1");
    assert_eq!(next(&mut all).await.subject.as_str(), "orders.2");
    // A denied publish through async-nats: the client stays connected and can go on.
    alice.publish("admin.x", "no".into()).await.unwrap();
    alice.publish("orders.3", "yes".into()).await.unwrap();
    sync(&alice).await;
    assert_eq!(next(&mut all).await.subject.as_str(), "orders.3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_responses_lets_a_responder_answer_each_request_once() {
    let dir = tempfile::tempdir().unwrap();
    let conf = config(&dir);
    let server = HeraldProcess::start(&["--config", conf.to_str().unwrap()]);
    // carol may publish only carol.>, but answers requests on svc.>.
    let mut carol = TcpStream::connect(server.addr).unwrap();
    carol.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = vec![0u8; 65536];
    let _ = carol.read(&mut buf).unwrap();
    carol
        .write_all(
            format!(
                "CONNECT {{\"user\":\"carol\",\"pass\":\"{CAROL}\",\"verbose\":false}}\r\nSUB svc.time 1\r\nPING\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let mut seen = String::new();
    while !seen.ends_with("PONG\r\n") {
        let n = carol.read(&mut buf).unwrap();
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let alice = login(&server, "alice", ALICE).await;
    let asking = tokio::spawn({
        let alice = alice.clone();
        async move { alice.request("svc.time", "now?".into()).await }
    });
    // The request reaches carol with its reply subject.
    let mut got = String::new();
    while !got.contains("now?") {
        let n = carol.read(&mut buf).unwrap();
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let reply = got.split_whitespace().nth(3).unwrap().to_owned();
    carol
        .write_all(
            format!("PUB {reply} 4\r\nnoon\r\nPUB {reply} 5\r\nagain\r\nPING\r\n").as_bytes(),
        )
        .unwrap();
    let answer = tokio::time::timeout(WAIT, asking)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&answer.payload[..], b"noon");
    let mut after = String::new();
    while !after.ends_with("PONG\r\n") {
        let n = carol.read(&mut buf).unwrap();
        after.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(
        after,
        format!("-ERR 'Permissions Violation for Publish to \"{reply}\"'\r\nPONG\r\n"),
        "a second answer to the same request is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_authenticate_and_event_streams_take_single_use_tickets() {
    use common::sse::{Events, error_of, http};
    use reqwest::StatusCode;
    let dir = tempfile::tempdir().unwrap();
    let conf = config(&dir);
    let server = HeraldProcess::start(&["--config", conf.to_str().unwrap()]);
    let url = server.http_url();
    let c = http();
    // Health is open; everything else needs credentials.
    assert_eq!(
        c.get(format!("{url}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let anonymous = c
        .post(format!("{url}/v1/publish/orders.1"))
        .send()
        .await
        .unwrap();
    assert!(
        anonymous.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("Basic")
    );
    error_of(anonymous, StatusCode::UNAUTHORIZED).await;
    let varz = c.get(format!("{url}/varz")).send().await.unwrap();
    error_of(varz, StatusCode::UNAUTHORIZED).await;
    let wrong = c
        .post(format!("{url}/v1/publish/orders.1"))
        .basic_auth("alice", Some("supersecret-wrong"))
        .send()
        .await
        .unwrap();
    error_of(wrong, StatusCode::UNAUTHORIZED).await;
    let bad_token = c
        .post(format!("{url}/v1/publish/orders.1"))
        .bearer_auth("supersecret-token-wrong")
        .send()
        .await
        .unwrap();
    error_of(bad_token, StatusCode::UNAUTHORIZED).await;
    // alice publishes into her scope, where a NATS client of the token user listens.
    let listener = async_nats::ConnectOptions::new()
        .token(TOKEN.into())
        .connect(server.url())
        .await
        .unwrap();
    let mut heard = listener.subscribe("orders.>").await.unwrap();
    sync(&listener).await;
    let ok = c
        .post(format!("{url}/v1/publish/orders.1"))
        .basic_auth("alice", Some(ALICE))
        .body("over http")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(&next(&mut heard).await.payload[..], b"over http");
    let denied = c
        .post(format!("{url}/v1/publish/orders.secret.x"))
        .basic_auth("alice", Some(ALICE))
        .send()
        .await
        .unwrap();
    let message = error_of(denied, StatusCode::FORBIDDEN).await;
    assert_eq!(
        message,
        "Permissions Violation for Publish to \"orders.secret.x\""
    );
    let elsewhere = c
        .post(format!("{url}/v1/publish/orders.1"))
        .basic_auth("alice", Some(ALICE))
        .header("Herald-Scope", "other")
        .send()
        .await
        .unwrap();
    error_of(elsewhere, StatusCode::FORBIDDEN).await;
    let sub_denied = c
        .get(format!("{url}/v1/subscribe/admin.%3E"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        sub_denied.status(),
        StatusCode::OK,
        "the token user has no limits"
    );
    drop(sub_denied);
    // An EventSource cannot send headers: a ticket, good once.
    let ticket: serde_json::Value = c
        .post(format!("{url}/v1/tickets"))
        .basic_auth("alice", Some(ALICE))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ticket = ticket["ticket"].as_str().unwrap().to_owned();
    let stream_url = format!("{url}/v1/subscribe/orders.%3E?ticket={ticket}");
    let mut events = Events::open(c.get(&stream_url)).await;
    let again = c.get(&stream_url).send().await.unwrap();
    error_of(again, StatusCode::UNAUTHORIZED).await;
    // alice's stream overlaps a denied subject: it never sees it.
    for subject in ["orders.secret.x", "orders.2"] {
        listener.publish(subject, subject.into()).await.unwrap();
    }
    sync(&listener).await;
    assert_eq!(events.next().await.data["subject"], "orders.2");
    // A denied subscription over HTTP.
    let ticket: serde_json::Value = c
        .post(format!("{url}/v1/tickets"))
        .basic_auth("alice", Some(ALICE))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refused = c
        .get(format!(
            "{url}/v1/subscribe/admin.x?ticket={}",
            ticket["ticket"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    let message = error_of(refused, StatusCode::FORBIDDEN).await;
    assert_eq!(
        message,
        "Permissions Violation for Subscription to \"admin.x\""
    );
    // Streams, groups and monitoring are allowed as their NATS requests would be: alice may
    // not publish to `$JS.API.>`, `$HERALD.API.>` or `$SYS.>`; the token user has no limits.
    for (method, path, subject) in [
        (reqwest::Method::GET, "/v1/streams", "$JS.API.STREAM.LIST"),
        (
            reqwest::Method::PUT,
            "/v1/streams/S",
            "$JS.API.STREAM.CREATE.S",
        ),
        (
            reqwest::Method::POST,
            "/v1/streams/S/consumers/C/ack/1",
            "$JS.ACK.S.C",
        ),
        (
            reqwest::Method::PUT,
            "/v1/groups/g",
            "$HERALD.API.GROUPS.CREATE",
        ),
        (reqwest::Method::GET, "/varz", "$SYS.REQ.SERVER.PING.VARZ"),
    ] {
        let r = c
            .request(method.clone(), format!("{url}{path}"))
            .basic_auth("alice", Some(ALICE))
            .send()
            .await
            .unwrap();
        let message = error_of(r, StatusCode::FORBIDDEN).await;
        assert_eq!(
            message,
            format!("Permissions Violation for Publish to \"{subject}\"")
        );
        let unlimited = c
            .request(method, format!("{url}{path}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_ne!(unlimited.status(), StatusCode::FORBIDDEN, "{path}");
    }
}

/// An nkey user signs the nonce of INFO (async-nats does, given the seed); a wrong key, a
/// missing signature, and (after an nkey login) a client with no credentials are all refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nkey_users_sign_the_nonce() {
    let dir = tempfile::tempdir().unwrap();
    let user = nkeys::KeyPair::new_user();
    let stranger = nkeys::KeyPair::new_user();
    let conf = dir.path().join("nkeys.toml");
    std::fs::write(
        &conf,
        format!(
            "[[users]]\nnkey = \"{}\"\nscope = \"keys\"\n",
            user.public_key()
        ),
    )
    .unwrap();
    let server = HeraldProcess::start(&["--config", conf.to_str().unwrap()]);
    let client = async_nats::ConnectOptions::with_nkey(user.seed().unwrap())
        .connect(server.url())
        .await
        .expect("the nkey user gets in");
    let mut sub = client.subscribe("k").await.unwrap();
    client.publish("k", "signed".into()).await.unwrap();
    assert_eq!(&next(&mut sub).await.payload[..], b"signed");
    for options in [
        async_nats::ConnectOptions::with_nkey(stranger.seed().unwrap()),
        async_nats::ConnectOptions::new(),
    ] {
        let refused = tokio::time::timeout(WAIT, options.connect(server.url()))
            .await
            .unwrap();
        let err = refused.expect_err("refused").to_string();
        assert!(err.contains("authorization violation"), "{err}");
    }
    // The right key with a signature of something else than this connection's nonce.
    let forged = format!(
        "CONNECT {{\"nkey\":\"{}\",\"sig\":\"AAAA\",\"verbose\":false}}\r\nPING\r\n",
        user.public_key()
    );
    assert_eq!(
        raw(&server, &forged, WAIT),
        "-ERR 'Authorization Violation'\r\n"
    );
    // The CLI logs in with a seed file.
    let seed = dir.path().join("user.nk");
    std::fs::write(&seed, user.seed().unwrap()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "pub",
            "k",
            "from the cli",
            "--server",
            &server.url(),
            "--nkey-seed",
        ])
        .arg(&seed)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(&next(&mut sub).await.payload[..], b"from the cli");
}

/// Nothing secret shows anywhere an operator looks: not the passwords, tokens or cluster
/// secret (nor the password hashes) in the log at trace level, the monitoring endpoints,
/// `herald cluster status`, or the errors a client gets for bad credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_logs_monitoring_cluster_status_or_errors() {
    const CLUSTER_SECRET: &str = "cluster-secret-s3cret-value";
    let dir = tempfile::tempdir().unwrap();
    let conf = config(&dir);
    let hashes: Vec<String> = std::fs::read_to_string(&conf)
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.split_once(" = \"$")
                .map(|(_, h)| format!("${}", h.trim_end_matches('"')))
        })
        .collect();
    assert_eq!(hashes.len(), 6, "{hashes:?}");
    let log = dir.path().join("server.log");
    let server = HeraldProcess::start_logging_to(
        &[
            "--config",
            conf.to_str().unwrap(),
            "--log",
            "trace",
            "--cluster-listen",
            "127.0.0.1:0",
            "--cluster-secret",
            CLUSTER_SECRET,
        ],
        &log,
    );
    let alice = login(&server, "alice", ALICE).await;
    sync(&alice).await;
    let mut seen = String::new();
    let http = common::sse::http();
    for path in [
        "/varz", "/connz", "/subsz", "/routez", "/jsz", "/healthz", "/metrics",
    ] {
        let response = http
            .get(format!("{}{path}", server.http_url()))
            .basic_auth("admin", Some(ADMIN))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        seen.push_str(&response.text().await.unwrap());
    }
    let wrong = http
        .get(format!("{}/varz", server.http_url()))
        .basic_auth("admin", Some("supersecret-wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    seen.push_str(&wrong.text().await.unwrap());
    for (user, password) in [("admin", ADMIN), ("admin", "supersecret-wrong")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["cluster", "status", "--server", &server.url()])
            .args(["--user", user, "--password", password])
            .output()
            .unwrap();
        assert_eq!(out.status.success(), password == ADMIN, "{out:?}");
        seen.push_str(&String::from_utf8_lossy(&out.stdout));
        seen.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    assert!(
        seen.contains("server_id") && seen.contains("members"),
        "{seen}"
    );
    seen.push_str(&raw(
        &server,
        "CONNECT {\"user\":\"alice\",\"pass\":\"supersecret-wrong\"}\r\n",
        WAIT,
    ));
    drop(alice);
    drop(server);
    seen.push_str(&std::fs::read_to_string(&log).unwrap());
    let secrets = [
        ALICE,
        BOB,
        TOKEN,
        CAROL,
        ADMIN,
        CLUSTER_SECRET,
        "supersecret-wrong",
    ];
    for secret in secrets
        .iter()
        .copied()
        .chain(hashes.iter().map(String::as_str))
    {
        assert!(!seen.contains(secret), "{secret} is shown");
    }
}

/// A group broadcast publishes on every topic of the group: a user may broadcast only to a
/// group whose topics it may all publish to, over NATS and over HTTP alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_needs_permission_for_every_topic() {
    let dir = tempfile::tempdir().unwrap();
    let server = HeraldProcess::start(&["--config", config(&dir).to_str().unwrap()]);
    let dave = login(&server, "dave", DAVE).await;
    let ask = async |op: &str, body: serde_json::Value| -> serde_json::Value {
        let reply = tokio::time::timeout(
            WAIT,
            dave.request(format!("$HERALD.API.GROUPS.{op}"), body.to_string().into()),
        )
        .await
        .unwrap()
        .unwrap();
        serde_json::from_slice(&reply.payload).unwrap()
    };
    // Making groups is allowed; which topics they hold does not matter until a broadcast.
    let made = ask(
        "CREATE",
        serde_json::json!({"name": "mixed", "topics": ["news.a", "orders.secret.b"]}),
    )
    .await;
    assert_eq!(
        made["topics"],
        serde_json::json!(["news.a", "orders.secret.b"]),
        "{made}"
    );
    let made = ask(
        "CREATE",
        serde_json::json!({"name": "news", "topics": ["news.a", "news.b"]}),
    )
    .await;
    assert!(made.get("error").is_none(), "{made}");

    // Over NATS: the broadcast of "mixed" is refused for its first forbidden topic, and the
    // connection stays; "news" goes out.
    let mut raw = std::net::TcpStream::connect(server.addr).unwrap();
    raw.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 4096];
    let _ = raw.read(&mut buf).unwrap(); // INFO
    let connect =
        format!("CONNECT {{\"user\":\"dave\",\"pass\":\"{DAVE}\",\"verbose\":false}}\r\n");
    let body = r#"{"name":"mixed","data":"hi"}"#;
    let send = format!(
        "{connect}PUB $HERALD.API.GROUPS.BROADCAST {}\r\n{body}\r\nPING\r\n",
        body.len()
    );
    raw.write_all(send.as_bytes()).unwrap();
    let mut seen = String::new();
    while !seen.contains("PONG") {
        let n = raw.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(
        seen,
        "-ERR 'Permissions Violation for Publish to \"orders.secret.b\"'\r\nPONG\r\n"
    );
    let sent = ask(
        "BROADCAST",
        serde_json::json!({"name": "news", "data": "hi"}),
    )
    .await;
    assert_eq!(sent["topics"], 2, "{sent}");

    // Over HTTP: 403 with the same words, and "news" goes out.
    let http = common::sse::http();
    let broadcast = |group: &str| {
        http.post(format!("{}/v1/groups/{group}/broadcast", server.http_url()))
            .basic_auth("dave", Some(DAVE))
            .body("hi")
            .send()
    };
    let refused = broadcast("mixed").await.unwrap();
    let message = common::sse::error_of(refused, reqwest::StatusCode::FORBIDDEN).await;
    assert_eq!(
        message,
        "Permissions Violation for Publish to \"orders.secret.b\""
    );
    assert!(broadcast("news").await.unwrap().status().is_success());
}

/// nats-py, as its users write it: a user/password login, permission errors reported through
/// its error callback (it recognises nats-server's words), the connection kept, and a wrong
/// password refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_logs_in_and_meets_the_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let server = HeraldProcess::start(&["--config", config(&dir).to_str().unwrap()]);
    let script = r#"
import asyncio, sys
import nats
async def main():
    url, password = sys.argv[1], sys.argv[2]
    errors = []
    async def on_error(e):
        errors.append(str(e))
    nc = await nats.connect(url, user="alice", password=password, connect_timeout=3,
                            allow_reconnect=False, error_cb=on_error)
    wide = await nc.subscribe("orders.>")
    await nc.publish("orders.secret.x", b"denied")
    await nc.subscribe("admin.keys")
    await nc.publish("orders.open", b"allowed")
    await nc.flush()
    msg = await wide.next_msg(timeout=5)
    print("got", msg.subject)
    for _ in range(50):
        if len(errors) >= 2:
            break
        await asyncio.sleep(0.02)
    for e in sorted(errors):
        print("error", e)
    print("connected", nc.is_connected)
    await nc.close()
    try:
        await nats.connect(url, user="alice", password="wrong", connect_timeout=3,
                           allow_reconnect=False, max_reconnect_attempts=0, error_cb=on_error)
        print("wrong password accepted")
    except Exception as e:
        print("refused", "Authorization Violation" in str(e) or any("Authorization Violation" in x for x in errors))
asyncio.run(asyncio.wait_for(main(), 20))
"#;
    let url = server.url();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(url)
            .arg(ALICE)
            .output()
            .expect("python3 with nats-py is needed (.ci/run installs it)")
    })
    .await
    .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines[0], "got orders.open", "{printed}");
    // nats-py recognises nats-server's words and reports them as its own permissions error.
    assert!(
        lines.contains(&"error nats: permissions violation for publish to \"orders.secret.x\""),
        "{printed}"
    );
    assert!(
        lines.contains(&"error nats: permissions violation for subscription to \"admin.keys\""),
        "{printed}"
    );
    assert!(lines.contains(&"connected True"), "{printed}");
    assert_eq!(lines.last(), Some(&"refused True"), "{printed}");
}
