//! A real browser (Debian's `chromium`, headless) against `herald serve`: a page from another
//! origin (CORS) subscribes with `EventSource` to messages async-nats publishes, consumes a
//! stream, acknowledges with `fetch()`, disconnects and resumes without loss. The page posts
//! what it saw back to the test's own server.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::Html;
use axum::routing::{get, post};
use common::HeraldProcess;
use common::sse::{http, nats};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The whole browser session ends within this.
const BROWSER_WAIT: Duration = Duration::from_secs(30);

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>herald in a browser</title>
<script>
const HERALD = "__HERALD__";
const report = (what) => fetch("/report", {
  method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(what),
});
window.addEventListener("error", (e) => report({step: "error", message: String(e.message)}));
window.addEventListener("unhandledrejection", (e) => report({step: "error", message: String(e.reason)}));
// Messages published by a NATS client reach an EventSource on a pattern.
const live = new EventSource(HERALD + "/v1/subscribe/web.%3E");
live.onopen = () => report({step: "live-open"});
live.addEventListener("message", (e) => {
  const m = JSON.parse(e.data);
  report({step: "live", subject: m.subject, data: m.data, id: e.lastEventId});
  live.close();
});
// A stream through a durable consumer: ack each message with fetch(), leave after three,
// come back with the last id seen (as a polyfill would, in the query) and get the rest.
const seen = [];
function consume(lastId) {
  const query = lastId ? "&last_event_id=" + lastId : "";
  const es = new EventSource(HERALD + "/v1/streams/S/consume?consumer=web" + query);
  let here = 0;
  es.addEventListener("consumer", (e) => report({step: "consumer", name: JSON.parse(e.data).consumer}));
  es.addEventListener("message", async (e) => {
    const m = JSON.parse(e.data);
    const n = ++here;
    if (n > 3 && !lastId) return; // already leaving: not acked, must come again
    const r = await fetch(HERALD + "/v1/streams/S/consumers/" + m.consumer + "/ack/" + m.seq, {method: "POST"});
    seen.push({seq: m.seq, data: m.data, delivered: m.delivered, ack: r.status});
    seen.sort((a, b) => a.seq - b.seq);
    if (!lastId && seen.length === 3) {
      es.close();
      report({step: "left", seen: seen.slice()});
      consume(String(seen[2].seq));
    } else if (seen.length === 6) {
      es.close();
      report({step: "done", seen});
    }
  });
}
consume(null);
</script>
"#;

/// Reports the page posted, in order.
type Reports = mpsc::UnboundedSender<Value>;

async fn serve_page(herald: String) -> (String, mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = mpsc::unbounded_channel::<Value>();
    let page = PAGE.replace("__HERALD__", &herald);
    let app = axum::Router::new()
        .route("/", get(move || async move { Html(page) }))
        .route(
            "/report",
            post(
                |State(tx): State<Reports>, Json(v): Json<Value>| async move {
                    let _ = tx.send(v);
                },
            ),
        )
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/"), rx)
}

/// Headless chromium on `url`, killed when dropped; its profile directory goes with it.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn open(url: &str) -> Browser {
        let profile = tempfile::tempdir().expect("a profile directory");
        let child = Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium must be installed (.ci/run installs it): cannot start it");
        Browser {
            child,
            _profile: profile,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_browser_subscribes_consumes_acks_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let server = HeraldProcess::start(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--http-cors",
        "*",
    ]);
    let herald = server.http_url();
    let r = http()
        .put(format!("{herald}/v1/streams/S"))
        .json(&json!({"subjects": ["s.>"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let client = nats(&server).await;
    let js = async_nats::jetstream::new(client.clone());
    for i in 1..=6 {
        js.publish(format!("s.{i}"), format!("m{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let (page, mut reports) = serve_page(herald.clone()).await;
    let _browser = Browser::open(&page);
    let mut done = None;
    let mut left = None;
    let mut consumer = None;
    let deadline = tokio::time::Instant::now() + BROWSER_WAIT;
    while done.is_none() {
        let report = tokio::time::timeout_at(deadline, reports.recv())
            .await
            .expect("the page did not finish in time")
            .expect("report channel");
        match report["step"].as_str().unwrap() {
            // The page's EventSource is subscribed: publish from the NATS side.
            "live-open" => client
                .publish("web.hello", "from nats".into())
                .await
                .unwrap(),
            "live" => {
                assert_eq!(
                    (
                        report["subject"].as_str(),
                        report["data"].as_str(),
                        report["id"].as_str()
                    ),
                    (Some("web.hello"), Some("from nats"), Some("1"))
                );
            }
            "consumer" => consumer = Some(report["name"].clone()),
            "left" => left = Some(report["seen"].clone()),
            "done" => done = Some(report["seen"].clone()),
            "error" => panic!("the page failed: {report}"),
            other => panic!("unknown report {other}: {report}"),
        }
    }
    assert_eq!(consumer, Some(json!("web")));
    let seqs = |v: &Value| -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(seqs(left.as_ref().unwrap()), [1, 2, 3]);
    let done = done.unwrap();
    // Every message once, each ack accepted; nothing lost across the reconnect.
    assert_eq!(seqs(&done), [1, 2, 3, 4, 5, 6]);
    assert!(
        done.as_array().unwrap().iter().all(|m| m["ack"] == 200),
        "{done}"
    );
    // 4 to 6 reached the first connection, which left without acking them: delivered again.
    let again: Vec<_> = done.as_array().unwrap()[3..]
        .iter()
        .map(|m| m["delivered"].clone())
        .collect();
    assert_eq!(again, [json!(2), json!(2), json!(2)], "{done}");
    let info: Value = http()
        .get(format!("{herald}/v1/streams/S/consumers/web"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["ack_floor"]["stream_seq"], 6, "{info}");
    assert_eq!(info["num_ack_pending"], 0, "{info}");
}
