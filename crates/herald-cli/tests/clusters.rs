//! herald-client over three separate clusters (`herald serve` processes, once with a Debian
//! nats-server among them): each subject goes through its own cluster only and arrives once,
//! wildcard subscriptions see every cluster, a cluster that dies costs only its own subjects
//! and comes back with its subscriptions, and one that is down at start joins when it starts.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::sse::{WAIT, sync};
use common::{HeraldProcess, NatsServer};
use futures::{FutureExt, StreamExt};
use herald_client::{Client, Error};

const NAMES: [&str; 3] = ["red", "green", "blue"];

fn builder(urls: &[String]) -> herald_client::ClientBuilder {
    let mut builder = Client::builder().name("clusters-test");
    for (name, url) in NAMES.iter().zip(urls) {
        builder = builder.cluster(*name, [url]);
    }
    builder
}

/// Everything a subscription holds right now, without waiting.
fn drain(sub: &mut (impl futures::Stream<Item = async_nats::Message> + Unpin)) -> Vec<String> {
    let mut seen = Vec::new();
    while let Some(Some(msg)) = sub.next().now_or_never() {
        seen.push(msg.subject.to_string());
    }
    seen
}

/// Publishes 300 subjects through the client and checks, with a plain connection to each
/// server, that every subject went through its own cluster only, and that a wildcard
/// subscription of the client got each message once.
async fn each_subject_through_its_cluster(urls: &[String]) {
    let client = builder(urls).connect().await.unwrap();
    let mut observers = Vec::new();
    for url in urls {
        let plain = async_nats::connect(url).await.unwrap();
        let sub = plain.subscribe("s.>").await.unwrap();
        sync(&plain).await;
        observers.push((plain, sub));
    }
    let mut all = client.subscribe("s.>").await.unwrap();
    assert_eq!(all.clusters(), NAMES);
    let mut one = client.subscribe("s.7").await.unwrap();
    assert_eq!(one.clusters(), [client.cluster_of("s.7")]);
    client.flush().await.unwrap();

    let subjects: Vec<String> = (0..300).map(|i| format!("s.{i}")).collect();
    for subject in &subjects {
        client.publish(subject, subject.clone()).await.unwrap();
    }
    client.flush().await.unwrap();

    let mut got = BTreeSet::new();
    for _ in 0..subjects.len() {
        let msg = tokio::time::timeout(WAIT, all.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(msg.payload, msg.subject.as_bytes());
        assert!(got.insert(msg.subject.to_string()), "{} twice", msg.subject);
    }
    assert_eq!(drain(&mut all), Vec::<String>::new(), "more than one copy");
    assert_eq!(drain(&mut one), ["s.7"]);

    let mut expected: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for subject in &subjects {
        expected
            .entry(client.cluster_of(subject))
            .or_default()
            .insert(subject.clone());
    }
    for (name, (plain, sub)) in NAMES.iter().zip(&mut observers) {
        sync(plain).await;
        let seen: BTreeSet<String> = drain(sub).into_iter().collect();
        assert_eq!(
            seen.len(),
            expected[name].len(),
            "{name} carried other clusters' subjects"
        );
        assert_eq!(&seen, &expected[name], "{name}");
        assert!(!seen.is_empty(), "{name} got no subject of 300");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subjects_go_through_their_own_cluster_once() {
    let servers: Vec<HeraldProcess> = (0..3).map(|_| HeraldProcess::start(&[])).collect();
    let urls: Vec<String> = servers.iter().map(HeraldProcess::url).collect();
    each_subject_through_its_cluster(&urls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_can_be_one_of_the_clusters() {
    let herald: Vec<HeraldProcess> = (0..2).map(|_| HeraldProcess::start(&[])).collect();
    let nats = NatsServer::start(None);
    let urls = vec![herald[0].url(), nats.url(), herald[1].url()];
    each_subject_through_its_cluster(&urls).await;
}

/// A free loopback port (bound, then let go) for a server that must come back on it.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One cluster is killed with SIGKILL in the middle of a steady publish: the other
/// clusters' subjects lose nothing, publishes to the dead one fail with an error naming it
/// after the deadline (delivered + failed = sent), and once it is back its subscriptions are
/// in place again within 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_cluster_costs_only_its_own_subjects_and_comes_back() {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let listen: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let start = |i: usize| HeraldProcess::start(&["--listen", &listen[i]]);
    let mut servers: Vec<Option<HeraldProcess>> = (0..3).map(|i| Some(start(i))).collect();
    let urls: Vec<String> = listen.iter().map(|a| format!("nats://{a}")).collect();
    let client = builder(&urls)
        .publish_timeout(Duration::from_millis(100))
        .connect()
        .await
        .unwrap();
    // One subject per cluster.
    let mut subject_of = BTreeMap::new();
    for i in 0.. {
        let subject = format!("steady.{i}");
        subject_of
            .entry(client.cluster_of(&subject).to_owned())
            .or_insert(subject);
        if subject_of.len() == 3 {
            break;
        }
    }
    let mut subs = BTreeMap::new();
    for (cluster, subject) in &subject_of {
        subs.insert(cluster.clone(), client.subscribe(subject).await.unwrap());
    }
    client.flush().await.unwrap();

    let victim = NAMES[1];
    let (mut sent, mut failed) = (BTreeMap::new(), BTreeMap::new());
    for round in 0..60 {
        if round == 20 {
            // Everything published so far has arrived; then the victim dies.
            client.flush().await.unwrap();
            for (cluster, sub) in subs.iter_mut() {
                assert_eq!(count(sub, 20).await, 20, "{cluster} before the kill");
            }
            servers[1].take().unwrap().kill9();
        }
        for (cluster, subject) in &subject_of {
            *sent.entry(cluster.clone()).or_insert(0) += 1;
            match client.publish(subject, format!("{round}")).await {
                Ok(()) => {}
                Err(Error::Unavailable { cluster: c, .. }) => {
                    assert_eq!(&c, cluster);
                    *failed.entry(cluster.clone()).or_insert(0) += 1;
                }
                Err(other) => panic!("{other}"),
            }
        }
    }
    // The live clusters lost nothing and failed nothing.
    for cluster in [NAMES[0], NAMES[2]] {
        assert_eq!(failed.get(cluster), None, "{cluster}");
        assert_eq!(
            count(subs.get_mut(cluster).unwrap(), 40).await,
            40,
            "{cluster}"
        );
    }
    // The victim: every publish after the kill either failed, naming it, or was handed to
    // its connection and arrives (async-nats keeps what it was handed while it reconnects);
    // none is lost silently. Nearly all fail: the kill is seen at once on loopback.
    let victim_failed = failed.get(victim).copied().unwrap_or(0);
    assert!(victim_failed >= 35, "only {victim_failed} of 40 failed");
    let handed_over = 40 - victim_failed;

    // Back on its port: its subscription returns within 2 s, and publishes flow again.
    let restarted = Instant::now();
    servers[1] = Some(start(1));
    let subject = &subject_of[victim];
    let sub = subs.get_mut(victim).unwrap();
    let mut late = 0;
    'back: loop {
        assert!(
            restarted.elapsed() < Duration::from_millis(2500),
            "the subscription did not come back within 2 s"
        );
        if client.publish(subject, "back").await.is_err() {
            continue;
        }
        while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(100), sub.next()).await
        {
            if &msg.payload[..] == b"back" {
                break 'back;
            }
            // Handed over just as the kill happened, and kept by async-nats until it
            // reconnected.
            late += 1;
        }
    }
    eprintln!(
        "resubscribed {:?} after the restart; {victim_failed} publishes failed, {handed_over} \
         were handed over as it died and {late} of those arrived after the restart",
        restarted.elapsed()
    );
    // Core NATS is at most once: a message written to the socket of a server as it is killed
    // is gone; nothing else is.
    assert!(late <= handed_over);
    drop(servers);
}

/// Messages already in `sub`, without waiting.
fn drain_count(sub: &mut herald_client::Subscription) -> usize {
    let mut n = 0;
    while let Some(Some(_)) = sub.next().now_or_never() {
        n += 1;
    }
    n
}

/// Reads `n` messages (each within the wait), then returns how many there were in all once
/// nothing more is pending.
async fn count(sub: &mut herald_client::Subscription, n: usize) -> usize {
    for i in 0..n {
        let next = tokio::time::timeout(WAIT, sub.next()).await;
        assert!(
            matches!(next, Ok(Some(_))),
            "message {i} of {n} did not arrive"
        );
    }
    n + drain_count(sub)
}

/// With one cluster down at start, `connect` returns at once, the other clusters work, and the
/// third joins when it starts (its subscription made while it was down included); the client
/// does not hammer the missing server meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_down_at_start_joins_when_it_starts() {
    let late_port = free_port();
    let late_listen = format!("127.0.0.1:{late_port}");
    let up: Vec<HeraldProcess> = (0..2).map(|_| HeraldProcess::start(&[])).collect();
    let urls = vec![up[0].url(), format!("nats://{late_listen}"), up[1].url()];
    let started = Instant::now();
    let client = builder(&urls)
        .publish_timeout(Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "connect waited for the missing cluster"
    );
    let mut events = Box::pin(client.events());
    let mut wildcard = client.subscribe("w.>").await.unwrap();
    // The live clusters work at once; the missing one's subjects fail with its name.
    let (mut live, mut dead) = (Vec::new(), None);
    for i in 0..50 {
        let subject = format!("w.{i}");
        if client.cluster_of(&subject) == NAMES[1] {
            dead.get_or_insert(subject);
        } else {
            live.push(subject);
        }
    }
    let dead = dead.unwrap();
    for subject in &live {
        client.publish(subject, "x").await.unwrap();
    }
    for _ in &live {
        tokio::time::timeout(WAIT, wildcard.next())
            .await
            .unwrap()
            .unwrap();
    }
    match client.publish(&dead, "x").await {
        Err(Error::Unavailable { cluster, .. }) => assert_eq!(cluster, NAMES[1]),
        other => panic!("{other:?}"),
    }
    // Reconnection attempts back off: over a second, a handful, not a loop.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let attempts = std::iter::from_fn(|| events.next().now_or_never().flatten()).count();
    assert!(attempts < 10, "{attempts} connection events in a second");

    let _late = HeraldProcess::start(&["--listen", &late_listen]);
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "the late cluster never joined");
        match client.publish(&dead, "late").await {
            Ok(()) => break,
            Err(Error::Unavailable { .. }) => continue,
            Err(other) => panic!("{other}"),
        }
    }
    let msg = tokio::time::timeout(WAIT, wildcard.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (msg.subject.as_str(), &msg.payload[..]),
        (dead.as_str(), &b"late"[..])
    );
}

/// Bad configurations are refused before anything is sent, naming what is wrong.
#[tokio::test]
async fn bad_configurations_are_refused_before_connecting() {
    let cases: Vec<(herald_client::ClientBuilder, &str)> = vec![
        (Client::builder(), "no cluster"),
        (
            Client::builder()
                .cluster("a", ["nats://127.0.0.1:1"])
                .cluster("a", ["nats://127.0.0.1:2"]),
            "\"a\" is listed twice",
        ),
        (
            Client::builder().cluster("", ["nats://127.0.0.1:1"]),
            "invalid cluster name",
        ),
        (
            Client::builder().cluster("a", Vec::<String>::new()),
            "\"a\" has no server URL",
        ),
        (
            Client::builder().cluster("a", ["nats://bad host:x"]),
            "bad server URL",
        ),
        (
            Client::builder()
                .cluster("a", ["nats://127.0.0.1:1"])
                .partition_tokens(0),
            "partition_tokens",
        ),
    ];
    for (builder, says) in cases {
        let err = builder.connect().await.unwrap_err().to_string();
        assert!(err.contains(says), "{says}: {err}");
    }
    let client = Client::builder()
        .cluster("a", ["nats://127.0.0.1:1"])
        .publish_timeout(Duration::from_millis(50))
        .connect()
        .await
        .unwrap();
    for (subject, says) in [
        ("a..b", "empty token"),
        ("a.*", "wildcards"),
        ("", "empty subject"),
    ] {
        let err = client.publish(subject, "x").await.unwrap_err().to_string();
        assert!(err.contains(says), "{subject}: {err}");
    }
    let err = client.subscribe("a.>.b").await.unwrap_err().to_string();
    assert!(err.contains("'>' must be the last token"), "{err}");
}
