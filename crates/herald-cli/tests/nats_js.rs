//! The official NATS JavaScript client (nats.js 3: `@nats-io/transport-node`, `jetstream`,
//! `kv`, `obj`; installed into `tests/js/node_modules` by `.ci/run`, run by the machine's Node.js)
//! against a `herald serve` process, from the scripts in `tests/js/`. Each script prints one
//! JSON object of what it saw; the tests compare it with what nats-server 2.9 gives.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::HeraldProcess;
use serde_json::{Value, json};

/// Runs `node tests/js/<name> URL` and returns the JSON it printed.
fn run_script(server: &HeraldProcess, name: &str) -> Value {
    let dir = format!("{}/tests/js", env!("CARGO_MANIFEST_DIR"));
    assert!(
        std::path::Path::new(&format!("{dir}/node_modules/@nats-io/jetstream")).exists(),
        "nats.js is not installed: run `npm ci` in {dir} (.ci/run does)"
    );
    let child = Command::new("node")
        .arg(format!("{dir}/{name}"))
        .arg(server.url())
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node must be installed for this test (.ci/run installs it)");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the nats.js script did not finish within 60 s")
        .expect("run the nats.js script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "nats.js script {name} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|err| panic!("{err}: {stdout}"))
}

fn data_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("herald-nats-js-")
        .tempdir()
        .unwrap()
}

#[test]
fn pull_consumers_as_nats_js_uses_them() {
    let dir = data_dir();
    let server = HeraldProcess::start(&["--data-dir", dir.path().to_str().unwrap()]);
    let out = run_script(&server, "pull.mjs");
    // A fetch of 5 with 2 stored returns the 2 when the request expires (1 s), not an error.
    assert_eq!(out["fetched"], json!(["pull.a", "pull.b"]), "{out}");
    let fetch_ms = out["fetch_ms"].as_u64().unwrap();
    assert!((900..5000).contains(&fetch_ms), "{out}");
    // next() on an empty consumer returns nothing at expiry.
    assert_eq!(out["next_empty"], json!(true), "{out}");
    // num_pending counts what the filter selects: 3 of 4.
    assert_eq!(out["num_pending_filtered"], json!(3), "{out}");
    // Redeliveries wait the backoff of their delivery: 300 ms, then 600 ms.
    let gaps: Vec<u64> = out["backoff_gaps_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_u64().unwrap())
        .collect();
    assert_eq!(gaps.len(), 2, "{out}");
    assert!((250..550).contains(&gaps[0]), "{out}");
    assert!((550..1000).contains(&gaps[1]), "{out}");
    // A direct get of a stream that does not exist: nobody answers.
    assert!(
        out["direct_missing"]
            .as_str()
            .unwrap()
            .contains("no responders"),
        "{out}"
    );
}

#[test]
fn key_value_buckets_as_nats_js_uses_them() {
    let dir = data_dir();
    let server = HeraldProcess::start(&["--data-dir", dir.path().to_str().unwrap()]);
    let out = run_script(&server, "kv.mjs");
    assert_eq!(out["put"], json!([1, 2, 3]), "{out}");
    assert_eq!(
        out["get"],
        json!({"value": "2", "revision": 2, "operation": "PUT"}),
        "{out}"
    );
    assert_eq!(out["update_ok"], json!(4), "{out}");
    assert_eq!(
        out["update_stale"],
        json!("error: wrong last sequence: 4"),
        "{out}"
    );
    assert_eq!(out["create_new"], json!(5), "{out}");
    assert_eq!(
        out["create_existing"],
        json!("error: wrong last sequence: 5"),
        "{out}"
    );
    // History, keys and watch read through ordered push consumers (last_per_subject,
    // headers only for keys).
    assert_eq!(out["history"], json!(["1", "2", "3"]), "{out}");
    assert_eq!(out["keys"], json!(["a", "b", "c"]), "{out}");
    assert_eq!(out["delete"], json!("DEL"), "{out}");
    // A purge rolls the key's history up into one marker.
    assert_eq!(
        out["purge"],
        json!({"operation": "PURGE", "history": ["PURGE"]}),
        "{out}"
    );
    assert_eq!(out["watch"], json!(["w.1=one", "w.2=two"]), "{out}");
    assert_eq!(
        out["bad_key"],
        json!("error: invalid key: bad key"),
        "{out}"
    );
}

#[test]
fn object_stores_as_nats_js_uses_them() {
    let dir = data_dir();
    let server = HeraldProcess::start(&["--data-dir", dir.path().to_str().unwrap()]);
    let out = run_script(&server, "obj.mjs");
    // 300 KiB in 128 KiB chunks, its SHA-256 as the client computes it.
    assert_eq!(
        out["put"],
        json!({"size": 307200, "chunks": 3, "digest_ok": true}),
        "{out}"
    );
    assert_eq!(out["get"], json!({"size": 307200, "same": true}), "{out}");
    assert_eq!(
        out["info"],
        json!({"name": "big.bin", "size": 307200, "deleted": false}),
        "{out}"
    );
    assert_eq!(out["link"], json!(307200), "{out}");
    assert_eq!(out["list"], json!(["alias.bin", "big.bin"]), "{out}");
    assert_eq!(out["watch"], json!(5), "{out}");
    assert_eq!(out["delete"], json!(true), "{out}");
    assert_eq!(
        out["status"],
        json!({"bucket": "files", "sealed": false}),
        "{out}"
    );
}
