//! A `herald serve` child process for tests: started on a free loopback port, found by the
//! `listening nats HOST:PORT` line it prints, killed when dropped.

#![allow(dead_code)]

pub mod js;
pub mod netns;
pub mod sse;
pub mod values;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `herald serve`.
pub struct HeraldProcess {
    child: Option<Child>,
    /// Address of the NATS listener.
    pub addr: SocketAddr,
    /// Address of the route and gossip listener, when clustered.
    pub cluster: Option<SocketAddr>,
    /// Address of the HTTP listener, unless the test turned it off (`--http ""`).
    pub http: Option<SocketAddr>,
}

impl HeraldProcess {
    /// A clustered `herald serve` (routes on a free loopback port, `secret` shared), seeded
    /// with `seeds`, with extra arguments.
    pub fn clustered(secret: &str, seeds: &[&HeraldProcess], extra: &[&str]) -> HeraldProcess {
        let joined: Vec<String> = seeds.iter().map(|s| s.cluster_addr()).collect();
        let joined = joined.join(",");
        let mut args = vec![
            "--cluster-listen",
            "127.0.0.1:0",
            "--cluster-secret",
            secret,
        ];
        if !seeds.is_empty() {
            args.extend(["--seeds", &joined]);
        }
        args.extend(extra);
        HeraldProcess::start(&args)
    }

    /// Starts `herald serve --listen 127.0.0.1:0` (and HTTP on a free port, through
    /// `HERALD_HTTP`, so that `--http` in `extra` wins) with extra arguments.
    pub fn start(extra: &[&str]) -> HeraldProcess {
        HeraldProcess::spawn(Command::new(env!("CARGO_BIN_EXE_herald")), extra)
    }

    /// Like [`start`](HeraldProcess::start), but no file the server writes may grow past
    /// `kib` KiB: a write beyond fails with EFBIG, as on a full disk (`ulimit -f`, with
    /// SIGXFSZ ignored so the failure reaches the server as an error).
    pub fn start_with_file_limit(extra: &[&str], kib: u64) -> HeraldProcess {
        let mut sh = Command::new("sh");
        sh.args([
            "-c",
            &format!("trap '' XFSZ; ulimit -f {}; exec \"$0\" \"$@\"", kib * 2),
            env!("CARGO_BIN_EXE_herald"),
        ]);
        HeraldProcess::spawn(sh, extra)
    }

    /// Like [`start`](HeraldProcess::start), with the server's log (stderr) written to `log`.
    pub fn start_logging_to(extra: &[&str], log: &std::path::Path) -> HeraldProcess {
        let mut sh = Command::new("sh");
        sh.args([
            "-c",
            &format!("exec \"$0\" \"$@\" 2>'{}'", log.display()),
            env!("CARGO_BIN_EXE_herald"),
        ]);
        HeraldProcess::spawn(sh, extra)
    }

    /// The server's resident memory now, in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// Starts `herald serve` through `command` (for example `herald` itself with variables
    /// set in its environment).
    pub fn spawn(mut command: Command, extra: &[&str]) -> HeraldProcess {
        let http_off = extra
            .windows(2)
            .any(|w| w[0] == "--http" && w[1].is_empty());
        let log = std::env::var("TEST_HERALD_LOG").unwrap_or("warn".into());
        // A test that sets --log itself keeps it.
        let log_flag: &[&str] = if extra.contains(&"--log") {
            &[]
        } else {
            &["--log", &log]
        };
        // A test that sets --listen (to come back on the same port) keeps it.
        let listen_flag: &[&str] = if extra.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut child = command
            .env("HERALD_HTTP", "127.0.0.1:0")
            .arg("serve")
            .args(listen_flag)
            .args(log_flag)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start herald serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("listening ") {
                    let _ = tx.send(rest.to_owned());
                }
            }
        });
        // `listening cluster ADDR` (when clustered) comes before `listening nats ADDR`, and
        // that before `listening http ADDR`.
        let (mut cluster, mut nats) = (None, None);
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("herald serve did not print its listening line within 30 s");
            let (kind, addr) = line.split_once(' ').expect("listening KIND ADDR");
            let addr: SocketAddr = addr.parse().expect("listening line holds HOST:PORT");
            let http = match kind {
                "cluster" => {
                    cluster = Some(addr);
                    continue;
                }
                "nats" if http_off => None,
                "nats" => {
                    nats = Some(addr);
                    continue;
                }
                "http" => Some(addr),
                other => panic!("unknown listener {other:?}"),
            };
            return HeraldProcess {
                child: Some(child),
                addr: nats
                    .or((kind == "nats").then_some(addr))
                    .expect("nats before http"),
                cluster,
                http,
            };
        }
    }

    /// `http://HOST:PORT` of the HTTP listener.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http.expect("HTTP is on"))
    }

    /// The route address, for other nodes' `--seeds`.
    pub fn cluster_addr(&self) -> String {
        self.cluster.expect("a clustered server").to_string()
    }

    /// Kills the process with SIGKILL (no chance to say goodbye) and reaps it.
    pub fn kill9(mut self) {
        let mut child = self.child.take().expect("child present until dropped");
        child.kill().expect("kill -9");
        child.wait().expect("reap");
    }

    /// `nats://HOST:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Sends the signal `name` (`USR2`, `TERM`, ..) to the process.
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -{name} {pid} failed");
    }

    /// Waits (at most `timeout`) for the process to exit by itself; returns its status.
    pub fn wait_exit(mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("child present until dropped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        rx.recv_timeout(timeout)
            .unwrap_or_else(|_| panic!("herald serve did not exit within {timeout:?}"))
            .expect("wait for herald serve")
    }

    /// Sends SIGTERM and waits (at most 10 s) for the process to exit; returns its status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("child present until dropped");
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("herald serve did not exit within 10 s of SIGTERM")
            .expect("wait for herald serve")
    }
}

impl Drop for HeraldProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A Debian `nats-server` child process on a free loopback port, killed when dropped.
pub struct NatsServer {
    child: Option<Child>,
    /// Address of its client listener.
    pub addr: SocketAddr,
}

impl NatsServer {
    /// Starts `nats-server` on 127.0.0.1 with a port of its choosing (or `port`), and waits
    /// for the line that names it. Fails loudly when nats-server is not installed.
    pub fn start(port: Option<u16>) -> NatsServer {
        let port = port.map_or("-1".to_owned(), |p| p.to_string());
        let mut child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start nats-server (apt-get install nats-server)");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some((_, addr)) = line.split_once("Listening for client connections on ") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("nats-server did not say where it listens within 30 s");
        NatsServer {
            child: Some(child),
            addr: addr.parse().expect("HOST:PORT"),
        }
    }

    /// `nats://HOST:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
