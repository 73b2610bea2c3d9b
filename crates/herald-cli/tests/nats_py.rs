//! The Python `nats-py` client (installed by `.ci/run`) against a `herald serve` process, from
//! the script in `tests/py/`.

mod common;

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::HeraldProcess;

#[test]
fn nats_py_compatibility_script_passes() {
    let server = HeraldProcess::start(&[]);
    run_script(&server, "nats_py_compat.py");
}

#[test]
fn nats_py_jetstream_script_passes() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().to_str().expect("utf-8 path");
    let server = HeraldProcess::start(&["--data-dir", data]);
    run_script(&server, "nats_py_jetstream.py");
    drop(server);
}

#[test]
fn nats_py_push_kv_and_object_store_script_passes() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().to_str().expect("utf-8 path");
    let server = HeraldProcess::start(&["--data-dir", data]);
    run_script(&server, "nats_py_push.py");
    drop(server);
}

/// Runs `tests/py/<name>` against `server` and asserts that it passed.
fn run_script(server: &HeraldProcess, name: &str) {
    let script = format!("{}/tests/py/{name}", env!("CARGO_MANIFEST_DIR"));
    let child = Command::new("python3")
        .arg(&script)
        .arg(server.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed for this test (.ci/run installs it)");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the nats-py script did not finish within 60 s")
        .expect("run the nats-py script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "nats-py script failed ({}); is nats-py installed (pip install nats-py)?\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("ok"),
        "the script reported no checks:\n{stdout}"
    );
}
