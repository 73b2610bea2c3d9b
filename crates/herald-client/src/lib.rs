//! A NATS client over several independent clusters (herald or nats-server, any mix): every
//! subject lives on one cluster, chosen by rendezvous hashing of its name (see
//! [`rendezvous`]), so publishers and subscribers agree without talking to each other and
//! each cluster carries only its share of the traffic and interest.
//!
//! ```no_run
//! # async fn run() -> Result<(), herald_client::Error> {
//! use futures::StreamExt;
//! let client = herald_client::Client::builder()
//!     .cluster("eu", ["nats://eu-1:4222", "nats://eu-2:4222"])
//!     .cluster("us", ["nats://us-1:4222"])
//!     .connect()
//!     .await?;
//! let mut sub = client.subscribe("orders.42").await?;
//! client.publish("orders.42", "payload").await?;
//! let msg = sub.next().await;
//! println!("orders.42 lives on {}", client.cluster_of("orders.42"));
//! # Ok(()) }
//! ```
//!
//! - One `async-nats` connection per cluster, never one list mixing servers of several
//!   clusters (a failover would then move subjects to a cluster they do not live on). Each
//!   reconnects on its own (50 ms doubling to 1 s, with jitter) and resubscribes; a cluster that
//!   is down affects only its own subjects, including at start: `connect` returns at once and
//!   a cluster that is not up yet joins when it starts.
//! - [`publish`](Client::publish) hands the message to its cluster's connection; while that
//!   cluster is disconnected it waits, retrying with capped exponential backoff and jitter,
//!   until the publish deadline, then fails with [`Error::Unavailable`] naming the cluster.
//!   As with any NATS publish, a message handed over just before a server dies can be lost:
//!   [`flush`](Client::flush) (or a request) confirms that the servers have everything.
//! - A subscription goes to one cluster, or to all of them when its pattern has a wildcard
//!   among the hashed tokens; since each message is published to one cluster only, each
//!   arrives once. [`events`](Client::events) reports every cluster's connection events.

pub mod rendezvous;

mod error;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_nats::connection::State;
use bytes::Bytes;
use futures::stream::{Stream, StreamExt};

pub use async_nats::{ConnectOptions, Event, HeaderMap, Message};
pub use error::{Error, Result};
use rendezvous::{Reach, Ring};

/// How often each connection pings an idle server by default: a server that died without
/// closing its sockets is noticed within about twice this (async-nats's own default is 60 s).
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(5);

/// How long a publish waits for its cluster by default before failing.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest pause between reconnection attempts (and between publish retries).
const MAX_BACKOFF: Duration = Duration::from_secs(1);

type Options = Arc<dyn Fn(&str) -> ConnectOptions + Send + Sync>;

/// Configures a [`Client`]; from [`Client::builder`].
#[derive(Clone)]
pub struct ClientBuilder {
    clusters: Vec<(String, Vec<String>)>,
    partition: Option<usize>,
    publish_timeout: Duration,
    ping_interval: Duration,
    name: Option<String>,
    options: Option<Options>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("clusters", &self.clusters)
            .field("partition", &self.partition)
            .field("publish_timeout", &self.publish_timeout)
            .field("ping_interval", &self.ping_interval)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Adds cluster `name`, reached through `urls` (any of its servers).
    pub fn cluster<I, S>(mut self, name: impl Into<String>, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let urls = urls.into_iter().map(|u| u.as_ref().to_owned()).collect();
        self.clusters.push((name.into(), urls));
        self
    }

    /// Hashes only the first `k` tokens of each subject, so that subjects sharing them live on
    /// one cluster (`orders.eu.*` with `k = 2`). Default: the whole subject.
    pub fn partition_tokens(mut self, k: usize) -> Self {
        self.partition = Some(k);
        self
    }

    /// How long a publish (or request) waits for a disconnected cluster before failing
    /// (default 10 s).
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// How often each connection pings its server (default 5 s).
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// The client name every connection gives its server.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The base `async-nats` options of each cluster's connection (credentials, TLS, request
    /// timeout, ...), made by `options` from the cluster's name. The client then sets its own
    /// on top: name, ping interval, reconnect delays, event callback, connecting in the
    /// background.
    pub fn connect_options<F>(mut self, options: F) -> Self
    where
        F: Fn(&str) -> ConnectOptions + Send + Sync + 'static,
    {
        self.options = Some(Arc::new(options));
        self
    }

    /// Checks the clusters and their URLs, and starts one connection per cluster. Returns at
    /// once: connections come up in the background, and each cluster's subjects work as soon as
    /// its connection does.
    pub async fn connect(self) -> Result<Client> {
        let ring = self.ring()?;
        let (events, _) = tokio::sync::broadcast::channel(1024);
        // Request and flush inboxes of this client only: its own flush echoes are kept from
        // its subscriptions by their prefix.
        let inbox = format!("_INBOX.{:016x}", fastrand::u64(..));
        let mut clusters = Vec::with_capacity(self.clusters.len());
        for (name, urls) in &self.clusters {
            let addrs = urls
                .iter()
                .map(|u| {
                    u.parse::<async_nats::ServerAddr>()
                        .map_err(|e| Error::BadUrl {
                            cluster: name.clone(),
                            url: u.clone(),
                            reason: e.to_string(),
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            let options = self
                .options_for(name, events.clone())
                .custom_inbox_prefix(inbox.clone());
            let client = options.connect(addrs).await.map_err(|e| Error::Cluster {
                cluster: name.clone(),
                reason: e.to_string(),
            })?;
            clusters.push(Cluster {
                name: name.clone(),
                client,
            });
        }
        Ok(Client {
            inner: Arc::new(Inner {
                ring,
                clusters,
                events,
                publish_timeout: self.publish_timeout,
                echo: Arc::from(format!("{inbox}.flush.")),
            }),
        })
    }

    /// The ring of the configured clusters, after checking them (nothing is sent).
    pub fn ring(&self) -> Result<Ring> {
        if self.clusters.is_empty() {
            return Err(Error::NoClusters);
        }
        if self.partition == Some(0) {
            return Err(Error::InvalidPartition);
        }
        let mut seen = std::collections::BTreeSet::new();
        for (name, urls) in &self.clusters {
            if name.is_empty()
                || name
                    .chars()
                    .any(|c| c.is_whitespace() || matches!(c, '=' | ',' | '*' | '>'))
            {
                return Err(Error::InvalidClusterName(name.clone()));
            }
            if !seen.insert(name.as_str()) {
                return Err(Error::DuplicateCluster(name.clone()));
            }
            if urls.is_empty() {
                return Err(Error::NoUrls(name.clone()));
            }
            for url in urls {
                if let Err(e) = url.parse::<async_nats::ServerAddr>() {
                    return Err(Error::BadUrl {
                        cluster: name.clone(),
                        url: url.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        Ok(Ring::new(
            self.clusters.iter().map(|(n, _)| n.clone()),
            self.partition,
        ))
    }

    fn options_for(
        &self,
        cluster: &str,
        events: tokio::sync::broadcast::Sender<(String, Event)>,
    ) -> ConnectOptions {
        let base = match &self.options {
            Some(make) => make(cluster),
            None => ConnectOptions::new(),
        };
        let name = self.name.clone().unwrap_or_else(|| "herald-client".into());
        let cluster = cluster.to_owned();
        base.name(format!("{name} ({cluster})"))
            // Subjects are checked here, by herald's rules (stricter), once.
            .skip_subject_validation(true)
            .ping_interval(self.ping_interval)
            .retry_on_initial_connect()
            // Jittered, so that clients do not come back in step.
            .reconnect_delay_callback(backoff)
            .event_callback(move |event| {
                let events = events.clone();
                let cluster = cluster.clone();
                async move {
                    match &event {
                        Event::Connected => tracing::info!(%cluster, "connected"),
                        Event::Disconnected => tracing::warn!(%cluster, "disconnected"),
                        other => tracing::debug!(%cluster, "{other}"),
                    }
                    // Nobody listening is fine.
                    let _ = events.send((cluster, event));
                }
            })
    }
}

/// Capped exponential backoff with jitter: 50 ms doubling to [`MAX_BACKOFF`], times a random
/// factor between 0.5 and 1.
fn backoff(attempt: usize) -> Duration {
    let base = Duration::from_millis(50)
        .saturating_mul(1 << attempt.min(16))
        .min(MAX_BACKOFF);
    base.mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// One cluster and its connection.
struct Cluster {
    name: String,
    client: async_nats::Client,
}

struct Inner {
    ring: Ring,
    clusters: Vec<Cluster>,
    events: tokio::sync::broadcast::Sender<(String, Event)>,
    publish_timeout: Duration,
    /// The subject prefix of this client's flush echoes.
    echo: Arc<str>,
}

/// A client of several clusters; cheap to clone (shared).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("clusters", &self.clusters())
            .finish()
    }
}

fn check(subject: &str, literal: bool) -> Result<()> {
    use herald_proto::subject::{Kind, validate};
    let invalid = |reason| Error::InvalidSubject {
        subject: subject.to_owned(),
        reason,
    };
    match validate(subject).map_err(invalid)? {
        Kind::Pattern if literal => Err(invalid("wildcards are not allowed in a publish subject")),
        _ => Ok(()),
    }
}

impl Client {
    /// Starts configuring a client; see [`ClientBuilder`].
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            clusters: Vec::new(),
            partition: None,
            publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            name: None,
            options: None,
        }
    }

    /// The names of the clusters, in the order given.
    pub fn clusters(&self) -> Vec<&str> {
        self.inner.ring.names().collect()
    }

    /// The name of the cluster `subject` lives on.
    pub fn cluster_of(&self, subject: &str) -> &str {
        &self.inner.clusters[self.home(subject)].name
    }

    /// The `async-nats` connection of cluster `name`, for what this client does not wrap.
    pub fn connection(&self, name: &str) -> Option<&async_nats::Client> {
        self.inner
            .clusters
            .iter()
            .find(|c| c.name == name)
            .map(|c| &c.client)
    }

    fn home(&self, subject: &str) -> usize {
        // Clusters are never empty (the builder checks).
        self.inner.ring.pick(subject).unwrap_or(0)
    }

    /// The connection of `subject`'s cluster, once it is connected (waiting with backoff
    /// until the publish deadline otherwise).
    async fn ready(&self, subject: &str) -> Result<&Cluster> {
        let cluster = &self.inner.clusters[self.home(subject)];
        if cluster.client.connection_state() == State::Connected {
            return Ok(cluster);
        }
        let started = Instant::now();
        let deadline = started + self.inner.publish_timeout;
        let mut attempt = 0;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Unavailable {
                    cluster: cluster.name.clone(),
                    waited: now - started,
                });
            }
            tokio::time::sleep(backoff(attempt).min(deadline - now)).await;
            attempt += 1;
            if cluster.client.connection_state() == State::Connected {
                return Ok(cluster);
            }
        }
    }

    /// Publishes `payload` on literal `subject`, through the subject's cluster.
    pub async fn publish(&self, subject: &str, payload: impl Into<Bytes>) -> Result<()> {
        check(subject, true)?;
        let cluster = self.ready(subject).await?;
        cluster
            .client
            .publish(subject.to_owned(), payload.into())
            .await
            .map_err(|e| failed(cluster, e))
    }

    /// Publishes with headers.
    pub async fn publish_with_headers(
        &self,
        subject: &str,
        headers: HeaderMap,
        payload: impl Into<Bytes>,
    ) -> Result<()> {
        check(subject, true)?;
        let cluster = self.ready(subject).await?;
        cluster
            .client
            .publish_with_headers(subject.to_owned(), headers, payload.into())
            .await
            .map_err(|e| failed(cluster, e))
    }

    /// Publishes with a reply subject (for a responder of the subject's cluster to answer on:
    /// the reply subject should live there too, or be subscribed on every cluster).
    pub async fn publish_with_reply(
        &self,
        subject: &str,
        reply: &str,
        payload: impl Into<Bytes>,
    ) -> Result<()> {
        check(subject, true)?;
        check(reply, true)?;
        let cluster = self.ready(subject).await?;
        cluster
            .client
            .publish_with_reply(subject.to_owned(), reply.to_owned(), payload.into())
            .await
            .map_err(|e| failed(cluster, e))
    }

    /// Sends a request on literal `subject` to its cluster and waits for the reply (within
    /// the connection's request timeout, 10 s unless the options say otherwise).
    pub async fn request(&self, subject: &str, payload: impl Into<Bytes>) -> Result<Message> {
        check(subject, true)?;
        let cluster = self.ready(subject).await?;
        cluster
            .client
            .request(subject.to_owned(), payload.into())
            .await
            .map_err(|e| failed(cluster, e))
    }

    /// Sends a request with headers.
    pub async fn request_with_headers(
        &self,
        subject: &str,
        headers: HeaderMap,
        payload: impl Into<Bytes>,
    ) -> Result<Message> {
        check(subject, true)?;
        let cluster = self.ready(subject).await?;
        cluster
            .client
            .request_with_headers(subject.to_owned(), headers, payload.into())
            .await
            .map_err(|e| failed(cluster, e))
    }

    /// Subscribes to `pattern` on the clusters its subjects live on (one, or all when the
    /// hashed tokens hold a wildcard). A cluster that is down gets the subscription when it
    /// comes up; dropping the [`Subscription`] ends it everywhere.
    pub async fn subscribe(&self, pattern: &str) -> Result<Subscription> {
        self.subscribe_inner(pattern, None).await
    }

    /// Like [`subscribe`](Client::subscribe), as a member of queue group `queue` (on each
    /// cluster the subscription goes to).
    pub async fn queue_subscribe(&self, pattern: &str, queue: &str) -> Result<Subscription> {
        self.subscribe_inner(pattern, Some(queue)).await
    }

    async fn subscribe_inner(&self, pattern: &str, queue: Option<&str>) -> Result<Subscription> {
        check(pattern, false)?;
        let targets: Vec<&Cluster> = match self.inner.ring.reach(pattern) {
            Some(Reach::One(i)) => vec![&self.inner.clusters[i]],
            _ => self.inner.clusters.iter().collect(),
        };
        let mut parts = Vec::with_capacity(targets.len());
        let mut names = Vec::with_capacity(targets.len());
        for cluster in targets {
            let sub = match queue {
                Some(q) => {
                    cluster
                        .client
                        .queue_subscribe(pattern.to_owned(), q.to_owned())
                        .await
                }
                None => cluster.client.subscribe(pattern.to_owned()).await,
            }
            .map_err(|e| failed(cluster, e))?;
            parts.push(Part {
                cluster: cluster.name.clone(),
                sub,
                ended: false,
            });
            names.push(cluster.name.clone());
        }
        Ok(Subscription {
            parts,
            next: 0,
            clusters: names,
            echo: self.inner.echo.clone(),
        })
    }

    /// Whether cluster `name`'s connection is up now.
    pub fn is_connected(&self, name: &str) -> bool {
        self.connection(name)
            .is_some_and(|c| c.connection_state() == State::Connected)
    }

    /// Waits until every cluster's connection is up (connections come up in the background
    /// after [`connect`](ClientBuilder::connect)); fails after `timeout` naming the first
    /// cluster still down, whose subjects keep waiting for it while the others work.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let down = self
                .inner
                .clusters
                .iter()
                .find(|c| c.client.connection_state() != State::Connected);
            let Some(down) = down else { return Ok(()) };
            let waited = started.elapsed();
            if waited >= timeout {
                return Err(Error::Unavailable {
                    cluster: down.name.clone(),
                    waited,
                });
            }
            tokio::time::sleep(backoff(attempt).min(timeout - waited)).await;
            attempt += 1;
        }
    }

    /// [`flush`](Client::flush) for cluster `name` only.
    pub async fn flush_cluster(&self, name: &str) -> Result<()> {
        let Some(cluster) = self.inner.clusters.iter().find(|c| c.name == name) else {
            return Err(Error::Cluster {
                cluster: name.to_owned(),
                reason: "no such cluster".into(),
            });
        };
        self.flush_one(cluster).await
    }

    async fn flush_one(&self, cluster: &Cluster) -> Result<()> {
        let timeout = self.inner.publish_timeout;
        let echo = format!("{}{:016x}", self.inner.echo, fastrand::u64(..));
        match tokio::time::timeout(timeout, round_trip(&cluster.client, echo)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(failed(cluster, e)),
            Err(_) => Err(Error::Unavailable {
                cluster: cluster.name.clone(),
                waited: timeout,
            }),
        }
    }

    /// Waits until every cluster's server has handled everything this client sent it so far
    /// (a round trip through each: the client's own message on a fresh inbox comes back only
    /// after what it sent before); fails naming the first cluster that cannot answer within
    /// the publish deadline.
    pub async fn flush(&self) -> Result<()> {
        let rounds = self.inner.clusters.iter().map(|c| self.flush_one(c));
        futures::future::join_all(rounds)
            .await
            .into_iter()
            .collect::<Result<Vec<()>>>()
            .map(drop)
    }

    /// Connection events of every cluster, as `(cluster name, event)`, from now on. A reader
    /// that falls more than 1,024 events behind skips the oldest.
    pub fn events(&self) -> impl Stream<Item = (String, Event)> + Send + 'static {
        let rx = self.inner.events.subscribe();
        futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(event) => return Some((event, rx)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }
}

/// One round trip through `client`'s server: a message to a fresh inbox of its own, back.
/// (async-nats's `flush` only empties the client's buffer; a request nobody answers would
/// do, unless some subscriber to `>` answers or swallows it.)
async fn round_trip(client: &async_nats::Client, inbox: String) -> std::result::Result<(), String> {
    let mut echo = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| e.to_string())?;
    client
        .publish(inbox, Bytes::new())
        .await
        .map_err(|e| e.to_string())?;
    match echo.next().await {
        Some(_) => Ok(()),
        None => Err("the connection closed".into()),
    }
}

fn failed(cluster: &Cluster, e: impl std::fmt::Display) -> Error {
    Error::Cluster {
        cluster: cluster.name.clone(),
        reason: e.to_string(),
    }
}

/// One cluster's part of a subscription.
struct Part {
    cluster: String,
    sub: async_nats::Subscriber,
    /// The connection closed for good: nothing more comes from this cluster.
    ended: bool,
}

/// Messages of one subscription from every cluster it went to, as a [`Stream`]; dropping it
/// unsubscribes everywhere. The clusters' parts are read in turn, starting after the part
/// that gave the last message, so that a busy cluster cannot starve another.
pub struct Subscription {
    parts: Vec<Part>,
    next: usize,
    clusters: Vec<String>,
    /// The prefix of the client's own flush echoes, which a wide pattern would catch.
    echo: Arc<str>,
}

impl Subscription {
    /// The clusters this subscription went to.
    pub fn clusters(&self) -> &[String] {
        &self.clusters
    }

    /// The clusters whose part of the subscription ended because their connection closed for
    /// good (none while the client lives and reconnects).
    pub fn lost(&self) -> Vec<&str> {
        self.parts
            .iter()
            .filter(|p| p.ended)
            .map(|p| p.cluster.as_str())
            .collect()
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("clusters", &self.clusters)
            .finish()
    }
}

impl Stream for Subscription {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let this = &mut *self;
        let n = this.parts.len();
        let mut open = false;
        for k in 0..n {
            let i = (this.next + k) % n;
            let part = &mut this.parts[i];
            if part.ended {
                continue;
            }
            loop {
                match part.sub.poll_next_unpin(cx) {
                    Poll::Ready(Some(msg)) if msg.subject.starts_with(&*this.echo) => continue,
                    Poll::Ready(Some(msg)) => {
                        this.next = (i + 1) % n;
                        return Poll::Ready(Some(msg));
                    }
                    Poll::Ready(None) => {
                        part.ended = true;
                        // Only a closed connection ends a part: said, never silent.
                        tracing::error!(
                            cluster = %part.cluster,
                            "a subscription's connection closed; its messages from this cluster stop"
                        );
                        break;
                    }
                    Poll::Pending => {
                        open = true;
                        break;
                    }
                }
            }
        }
        if open {
            Poll::Pending
        } else {
            Poll::Ready(None)
        }
    }
}
