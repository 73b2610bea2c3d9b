//! TLS on the NATS door with certificates made in the test (rcgen): async-nats and nats-py
//! over TLS, both after the plaintext INFO and TLS-first, client certificates when the server
//! verifies them, and plaintext clients refused.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::HeraldProcess;
use common::sse::{WAIT, metric_value};
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};
use tempfile::TempDir;

/// A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate, as PEM
/// files in `dir`.
struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    /// The CA's certificate and key, to sign more.
    signer: (rcgen::Certificate, KeyPair),
}

fn make_certs(dir: &Path) -> Certs {
    let ca_key = KeyPair::generate().unwrap();
    // Distinct names: with rcgen's one default name for all, OpenSSL (nats-py) takes the
    // server's certificate for a self-signed one.
    let named = |sans: Vec<String>, name: &str| {
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params
    };
    let mut ca_params = named(Vec::new(), "herald test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = named(
        vec!["127.0.0.1".into(), "localhost".into()],
        "herald test server",
    )
    .signed_by(&key, &ca, &ca_key)
    .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client_cert = named(vec!["client".into()], "herald test client")
        .signed_by(&client_key, &ca, &ca_key)
        .unwrap();
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Certs {
        ca: write("ca.pem", ca.pem()),
        cert: write("server.pem", cert.pem()),
        key: write("server-key.pem", key.serialize_pem()),
        client_cert: write("client.pem", client_cert.pem()),
        client_key: write("client-key.pem", client_key.serialize_pem()),
        signer: (ca, ca_key),
    }
}

fn server(dir: &TempDir, certs: &Certs, verify: bool) -> HeraldProcess {
    server_with(dir, certs, &format!("verify = {verify}\n"))
}

/// A server with `[tls]` of `certs` and the further lines `extra` in that table.
fn server_with(dir: &TempDir, certs: &Certs, extra: &str) -> HeraldProcess {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let conf = dir.path().join(format!("tls-{n}.toml"));
    std::fs::write(
        &conf,
        format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n{extra}",
            certs.cert.display(),
            certs.key.display(),
            certs.ca.display()
        ),
    )
    .unwrap();
    HeraldProcess::start(&["--config", conf.to_str().unwrap()])
}

fn tls_url(server: &HeraldProcess) -> String {
    format!("tls://{}", server.addr)
}

async fn round_trip(client: &async_nats::Client) {
    let mut sub = client.subscribe("secure.>").await.unwrap();
    client.flush().await.unwrap();
    // Published until heard: the subscription is in place once one comes back.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        client.publish("secure.x", "over tls".into()).await.unwrap();
        if let Ok(Some(msg)) = tokio::time::timeout(
            Duration::from_millis(200),
            futures::StreamExt::next(&mut sub),
        )
        .await
        {
            assert_eq!(&msg.payload[..], b"over tls");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing came back over TLS"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nats_over_tls_after_info_and_tls_first_and_plaintext_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let server = server(&dir, &certs, false);
    for tls_first in [false, true] {
        let mut options = async_nats::ConnectOptions::new()
            .add_root_certificates(certs.ca.clone())
            .require_tls(true);
        if tls_first {
            options = options.tls_first();
        }
        let client = tokio::time::timeout(WAIT, options.connect(tls_url(&server)))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("tls_first={tls_first}: {e}"));
        round_trip(&client).await;
    }
    // A client that does not trust the CA gets no connection.
    let untrusting = async_nats::ConnectOptions::new()
        .require_tls(true)
        .connect(tls_url(&server));
    assert!(
        tokio::time::timeout(WAIT, untrusting)
            .await
            .unwrap()
            .is_err()
    );
    // A plaintext client sees INFO saying TLS is required, and is refused when it goes on.
    let mut plain = TcpStream::connect(server.addr).unwrap();
    plain.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 4096];
    let n = plain.read(&mut buf).unwrap();
    let info = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(info.contains("\"tls_required\":true"), "{info}");
    plain.write_all(b"CONNECT {}\r\nPING\r\n").unwrap();
    let mut said = Vec::new();
    loop {
        match plain.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => said.extend_from_slice(&buf[..n]),
        }
    }
    assert_eq!(
        String::from_utf8_lossy(&said),
        "-ERR 'Secure Connection - TLS Required'\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_when_the_server_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let server = server(&dir, &certs, true);
    let with_cert = async_nats::ConnectOptions::new()
        .add_root_certificates(certs.ca.clone())
        .add_client_certificate(certs.client_cert.clone(), certs.client_key.clone())
        .require_tls(true)
        .connect(tls_url(&server));
    let client = tokio::time::timeout(WAIT, with_cert)
        .await
        .unwrap()
        .unwrap();
    round_trip(&client).await;
    let without = async_nats::ConnectOptions::new()
        .add_root_certificates(certs.ca.clone())
        .require_tls(true)
        .connect(tls_url(&server));
    let refused = tokio::time::timeout(WAIT, without).await.unwrap();
    assert!(refused.is_err(), "a client without a certificate got in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let server = server(&dir, &certs, false);
    let script = r#"
import asyncio, ssl, sys
import nats
async def main():
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    async def quiet(e):
        pass
    nc = await nats.connect(sys.argv[1], tls=ctx, connect_timeout=3, allow_reconnect=False,
                            error_cb=quiet)
    sub = await nc.subscribe("py.tls")
    await nc.flush()
    await nc.publish("py.tls", b"hello over tls")
    msg = await sub.next_msg(timeout=5)
    print(msg.data.decode())
    await nc.close()
asyncio.run(asyncio.wait_for(main(), 10))
"#;
    let url = tls_url(&server);
    let ca = certs.ca.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(url)
            .arg(ca)
            .output()
            .expect("python3 with nats-py is needed (.ci/run installs it)")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello over tls"
    );
}

/// `handshake_first` as nats-server reads it: `true` starts with TLS (no INFO in plaintext,
/// a client waiting for one is not served), `false` sends INFO at once (a TLS-first client
/// cannot connect, one that reads INFO first can).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_first_is_chosen_in_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    for (setting, info_first_works, tls_first_works) in
        [("true", false, true), ("false", true, false)]
    {
        let server = server_with(&dir, &certs, &format!("handshake_first = {setting}\n"));
        for tls_first in [false, true] {
            let mut options = async_nats::ConnectOptions::new()
                .add_root_certificates(certs.ca.clone())
                .require_tls(true)
                .connection_timeout(Duration::from_secs(3));
            if tls_first {
                options = options.tls_first();
            }
            let connected = tokio::time::timeout(WAIT, options.connect(tls_url(&server)))
                .await
                .expect("an answer in time");
            let want = if tls_first {
                tls_first_works
            } else {
                info_first_works
            };
            assert_eq!(
                connected.is_ok(),
                want,
                "handshake_first = {setting}, tls_first = {tls_first}: {:?}",
                connected.err()
            );
        }
        if setting == "true" {
            // Plaintext in, no plaintext INFO out: the server only ever speaks TLS.
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut raw = tokio::net::TcpStream::connect(server.addr).await.unwrap();
            raw.write_all(b"CONNECT {}\r\nPING\r\n").await.unwrap();
            let mut got = Vec::new();
            let _ = tokio::time::timeout(WAIT, raw.read_to_end(&mut got))
                .await
                .expect("closed in time");
            assert!(
                !got.starts_with(b"INFO"),
                "{:?}",
                String::from_utf8_lossy(&got)
            );
        }
    }
}

/// Broken TLS settings stop the server at startup with a message naming the problem.
#[test]
fn bad_certificates_are_startup_errors() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let truncated = dir.path().join("truncated.pem");
    let pem = std::fs::read_to_string(&certs.cert).unwrap();
    std::fs::write(&truncated, &pem[..pem.len() / 2]).unwrap();
    for (cert, key, extra, says) in [
        (
            dir.path().join("missing.pem"),
            certs.key.clone(),
            "",
            "no such file",
        ),
        (truncated, certs.key.clone(), "", "truncated.pem"),
        (certs.cert.clone(), certs.cert.clone(), "", "no private key"),
        (
            certs.cert.clone(),
            certs.key.clone(),
            "verify = true\n",
            "tls.verify needs tls.ca",
        ),
        (
            certs.cert.clone(),
            certs.key.clone(),
            "handshake_first = \"soon\"\n",
            "handshake_first must be true, false, \"auto\" or a duration",
        ),
    ] {
        let conf = dir.path().join("bad.toml");
        std::fs::write(
            &conf,
            format!(
                "[tls]\ncert = \"{}\"\nkey = \"{}\"\n{extra}",
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["serve", "--listen", "127.0.0.1:0", "--http", "", "--config"])
            .arg(&conf)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{says}: {err}");
    }
}

/// With `[tls]`, the HTTP listener speaks HTTPS with the same certificate: requests and event
/// streams work over it, plain HTTP does not. HTTP/2 is offered: ten event streams of one
/// client (more than the six HTTP/1.1 connections a browser opens to a server) share one
/// connection; a client that speaks only HTTP/1.1 is served too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_door_is_https_with_the_same_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let server = server(&dir, &certs, false);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&certs.ca).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(ca)
        .timeout(WAIT)
        .build()
        .unwrap();
    let base = format!("https://{}", server.http.unwrap());
    let health = https.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let mut events = common::sse::Events::open(
        https
            .get(format!("{base}/v1/subscribe/secure.%3E"))
            .timeout(Duration::from_secs(3600)),
    )
    .await;
    let r = https
        .post(format!("{base}/v1/publish/secure.1"))
        .body("over https")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(events.next().await.data["data"], "over https");

    assert_eq!(health.version(), reqwest::Version::HTTP_2);
    let mut more = Vec::new();
    for _ in 0..9 {
        more.push(
            common::sse::Events::open(
                https
                    .get(format!("{base}/v1/subscribe/secure.%3E"))
                    .timeout(Duration::from_secs(3600)),
            )
            .await,
        );
    }
    let http1 = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&certs.ca).unwrap()).unwrap(),
        )
        .http1_only()
        .timeout(WAIT)
        .build()
        .unwrap();
    let mut old_style = common::sse::Events::open(
        http1
            .get(format!("{base}/v1/subscribe/secure.%3E"))
            .timeout(Duration::from_secs(3600)),
    )
    .await;
    let metrics = https
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(metric_value(&metrics, "herald_event_streams"), 11);
    // The ten and the scrape on one HTTP/2 connection, the HTTP/1.1 client's on another.
    assert_eq!(metric_value(&metrics, "herald_http_connections"), 2);
    https
        .post(format!("{base}/v1/publish/secure.2"))
        .body("to all")
        .send()
        .await
        .unwrap();
    for events in more.iter_mut().chain([&mut events, &mut old_style]) {
        assert_eq!(events.next().await.data["data"], "to all");
    }

    let plain = reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .unwrap()
        .get(format!("http://{}/healthz", server.http.unwrap()))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

/// The client commands speak TLS with `--tls-ca`, and present a certificate with
/// `--tls-cert`/`--tls-key` to a server that verifies clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_connects_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let server = server(&dir, &certs, true);
    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(certs.ca.clone())
        .add_client_certificate(certs.client_cert.clone(), certs.client_key.clone())
        .require_tls(true)
        .connect(tls_url(&server))
        .await
        .unwrap();
    let mut sub = client.subscribe("cli.tls").await.unwrap();
    client.flush().await.unwrap();
    let herald = |extra: &[&std::ffi::OsStr]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args([
                "pub",
                "cli.tls",
                "from the cli",
                "--server",
                &tls_url(&server),
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let ca = certs.ca.as_os_str();
    let ok = herald(&[
        "--tls-ca".as_ref(),
        ca,
        "--tls-cert".as_ref(),
        certs.client_cert.as_os_str(),
        "--tls-key".as_ref(),
        certs.client_key.as_os_str(),
    ]);
    assert!(ok.status.success(), "{ok:?}");
    let got = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut sub))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got.payload[..], b"from the cli");
    let without_cert = herald(&["--tls-ca".as_ref(), ca]);
    assert!(!without_cert.status.success(), "{without_cert:?}");
}

/// A node's route certificate signed by the test CA (or, for an impostor, by itself), and the
/// `[cluster.tls]` config file that uses it.
fn cluster_node_config(dir: &Path, certs: &Certs, name: &str, self_signed: bool) -> PathBuf {
    let (ca, ca_key) = &certs.signer;
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".into()]).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = if self_signed {
        params.self_signed(&key).unwrap()
    } else {
        params.signed_by(&key, ca, ca_key).unwrap()
    };
    let (cert_path, key_path) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let conf = dir.join(format!("{name}.toml"));
    std::fs::write(
        &conf,
        format!(
            "[cluster.tls]\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n",
            cert_path.display(),
            key_path.display(),
            certs.ca.display()
        ),
    )
    .unwrap();
    conf
}

fn cluster_node(name: &str, conf: Option<&Path>, seed: Option<&HeraldProcess>) -> HeraldProcess {
    let seed = seed.map(|s| s.cluster_addr());
    let mut args = vec![
        "--name",
        name,
        "--cluster-listen",
        "127.0.0.1:0",
        "--cluster-secret",
        "s3cret",
    ];
    if let Some(seed) = &seed {
        args.extend(["--seeds", seed]);
    }
    if let Some(conf) = conf {
        args.extend(["--config", conf.to_str().unwrap()]);
    }
    HeraldProcess::start(&args)
}

/// The server's JSON answer on `subject`.
async fn ask(client: &async_nats::Client, subject: &str, body: &str) -> serde_json::Value {
    let reply = tokio::time::timeout(
        WAIT,
        client.request(subject.to_owned(), body.to_owned().into()),
    )
    .await
    .expect("an answer in time")
    .expect("request");
    serde_json::from_slice(&reply.payload).unwrap()
}

/// Three nodes with `[cluster.tls]` route to each other over mutual TLS; a node whose
/// certificate is self-signed, and one without TLS, know the secret and still never get a
/// route, nor inject a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_routes_use_mutual_tls_and_refuse_nodes_without_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let confs: Vec<PathBuf> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| cluster_node_config(dir.path(), &certs, n, false))
        .collect();
    let n1 = cluster_node("n1", Some(&confs[0]), None);
    let n2 = cluster_node("n2", Some(&confs[1]), Some(&n1));
    let n3 = cluster_node("n3", Some(&confs[2]), Some(&n1));
    let c1 = common::sse::nats(&n1).await;
    let mut sub = c1.subscribe("orders.>").await.unwrap();
    assert_eq!(
        ask(&c1, "$HERALD.API.CLUSTER.FLUSH", "{\"peers\":2}").await,
        serde_json::json!({})
    );
    for node in [&n2, &n3] {
        let client = common::sse::nats(node).await;
        assert_eq!(
            ask(&client, "$HERALD.API.CLUSTER.FLUSH", "{\"peers\":2}").await,
            serde_json::json!({})
        );
        client.publish("orders.new", "routed".into()).await.unwrap();
        client.flush().await.unwrap();
        let msg = common::sse::next(&mut sub).await;
        assert_eq!(&msg.payload[..], b"routed");
    }

    let impostor_conf = cluster_node_config(dir.path(), &certs, "impostor", true);
    for (name, conf) in [("impostor", Some(impostor_conf.as_path())), ("plain", None)] {
        let intruder = cluster_node(name, conf, Some(&n1));
        let client = common::sse::nats(&intruder).await;
        let answer = ask(
            &client,
            "$HERALD.API.CLUSTER.FLUSH",
            "{\"peers\":1,\"timeout_ms\":1500}",
        )
        .await;
        assert!(answer["error"].is_string(), "{name}: {answer}");
        client
            .publish("orders.new", "injected".into())
            .await
            .unwrap();
        common::sse::sync(&client).await;
        let info = ask(&c1, "$HERALD.API.CLUSTER.INFO", "").await;
        let routed: Vec<&str> = info["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| !m["route"].is_null())
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(routed, ["n2", "n3"], "{name}: {info:#}");
    }
    common::sse::sync(&c1).await;
    let stray = tokio::time::timeout(
        Duration::from_millis(100),
        futures::StreamExt::next(&mut sub),
    )
    .await;
    assert!(stray.is_err(), "an intruder's message arrived: {stray:?}");
}

/// `[cluster.tls]` with a missing file, or an unknown key, is a startup error naming it.
#[test]
fn bad_cluster_tls_settings_are_startup_errors() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let missing = dir.path().join("missing.pem");
    for (body, says) in [
        (
            format!(
                "cert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n",
                missing.display(),
                certs.key.display(),
                certs.ca.display()
            ),
            "missing.pem",
        ),
        (
            format!(
                "cert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\nverify = true\n",
                certs.cert.display(),
                certs.key.display(),
                certs.ca.display()
            ),
            "verify",
        ),
    ] {
        let conf = dir.path().join("bad-cluster.toml");
        std::fs::write(&conf, format!("[cluster.tls]\n{body}")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["serve", "--listen", "127.0.0.1:0", "--http", ""])
            .args(["--cluster-listen", "127.0.0.1:0", "--config"])
            .arg(&conf)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("cluster") && err.contains(says),
            "{says}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reads_the_certificates_again() {
    let dir = tempfile::tempdir().unwrap();
    let old = make_certs(dir.path());
    let conf = dir.path().join("tls.toml");
    std::fs::write(
        &conf,
        format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            old.cert.display(),
            old.key.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("server.log");
    let server = HeraldProcess::start_logging_to(&["--config", conf.to_str().unwrap()], &log);
    let connect = |ca: PathBuf| {
        let options = async_nats::ConnectOptions::new()
            .add_root_certificates(ca)
            .require_tls(true);
        let url = tls_url(&server);
        async move {
            tokio::time::timeout(Duration::from_secs(2), options.connect(url))
                .await
                .ok()
                .and_then(Result::ok)
        }
    };
    let before = connect(old.ca.clone())
        .await
        .expect("the first certificate");
    round_trip(&before).await;

    // A certificate from another CA written over the same files, then SIGHUP: connections
    // made after it are served with it (polled: the signal is handled in the background).
    let elsewhere = tempfile::tempdir().unwrap();
    let new = make_certs(elsewhere.path());
    std::fs::copy(&new.cert, &old.cert).unwrap();
    std::fs::copy(&new.key, &old.key).unwrap();
    server.signal("HUP");
    let deadline = tokio::time::Instant::now() + WAIT;
    let after = loop {
        if let Some(client) = connect(new.ca.clone()).await {
            break client;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate is not served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    round_trip(&after).await;
    assert!(
        connect(old.ca.clone()).await.is_none(),
        "the old one still is"
    );
    // The HTTPS door too.
    let health = |ca: PathBuf| {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
        let https = reqwest::Client::builder()
            .add_root_certificate(ca)
            .timeout(WAIT)
            .build()
            .unwrap();
        https
            .get(format!("https://{}/healthz", server.http.unwrap()))
            .send()
    };
    assert_eq!(health(new.ca.clone()).await.unwrap().status(), 200);
    assert!(health(old.ca.clone()).await.is_err());
    // The connection made before keeps going.
    round_trip(&before).await;

    // Files that make no certificate leave the one in use, and the log says why.
    std::fs::write(&old.key, "not a key").unwrap();
    server.signal("HUP");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        if said.contains("TLS certificates not changed") {
            assert!(said.contains("no private key found"), "{said}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no error logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let still = connect(new.ca.clone())
        .await
        .expect("the certificate in use");
    round_trip(&still).await;
}
