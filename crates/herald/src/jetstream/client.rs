//! [`ClusterStreams`]: the typed streams API for the streams of a cluster's JetStream,
//! whichever nodes keep them.
//!
//! [`Streams`](crate::streams::Streams) is one node's store. In a cluster, a stream lives on
//! the nodes the meta group placed it on (with `replicas` > 1, on a Raft group of them), and
//! this node reaches it through its own JetStream ([`serve_clustered`](super::serve_clustered)),
//! which forwards each call to the stream's leader. This handle makes those calls with the
//! library's types: typed configs and infos in, typed errors out (a stream without a leader
//! right now is [`ErrorKind::Unavailable`], worth a retry), fetched messages that take
//! their acks. The JSON, the `$JS.API` subjects and the codes stay in this module.
//!
//! [`ErrorKind::Unavailable`]: crate::streams::ErrorKind::Unavailable

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::config::{self, ConsumerConfig as JsConsumerConfig, StreamConfig as JsStreamConfig};
use super::error::ApiError;
use crate::dispatch::Reach;
use crate::message::{HeaderMap, Headers, Message};
use crate::router::Router;
use crate::streams::message::{Acker, RemoteAck};
use crate::streams::pull::Place;
use crate::streams::{
    AckKind, ConsumerConfig, ConsumerInfo, Error, Placement, PubAck, Purge, Reason, ReplicaInfo,
    Result, StreamConfig, StreamInfo, StreamMessage,
};

/// How long an API call waits for its answer unless told otherwise.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The streams of the cluster's JetStream, through this node, with the typed API of
/// [`crate::streams`]. Cheap to clone.
///
/// ```no_run
/// # async fn run(router: herald::Router) -> Result<(), Box<dyn std::error::Error>> {
/// use herald::jetstream::ClusterStreams;
/// use herald::streams::{ConsumerConfig, StreamConfig};
/// use std::time::Duration;
/// // `router`'s node is clustered, with JetStream served for its scope
/// // (`herald::jetstream::serve_clustered`).
/// let streams = ClusterStreams::new(&router).await?;
/// let mut config = StreamConfig::new("ORDERS", ["orders.>"]);
/// config.replicas = 3;
/// streams.create(config).await?;
/// let ack = streams.publish("orders.new", "order 1").await?; // a majority holds it
/// streams.create_consumer("ORDERS", ConsumerConfig::durable("billing")).await?;
/// for msg in streams.fetch("ORDERS", "billing", 10, Duration::from_secs(1)).await? {
///     msg.ack()?;
/// }
/// println!("{:?}", streams.placement("ORDERS").await?.leader);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ClusterStreams {
    router: Router,
    timeout: Duration,
}

impl ClusterStreams {
    /// The streams reached through `router`'s node, which serves JetStream for the router's
    /// scope. Waits until the other nodes know where this node's answers go.
    pub async fn new(router: &Router) -> Result<ClusterStreams> {
        // The scope's reply inbox, known cluster-wide before any call needs it.
        router.scope_state().inbox();
        router
            .node()
            .flush()
            .await
            .map_err(|e| Error::new(Reason::Unavailable, e.to_string()))?;
        Ok(ClusterStreams {
            router: router.clone(),
            timeout: DEFAULT_CALL_TIMEOUT,
        })
    }

    /// How long each call waits for its answer ([`DEFAULT_CALL_TIMEOUT`] by default).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Creates a stream (placed by the cluster on `config.replicas` nodes), or returns the
    /// existing one if its config is the same (`ErrorKind::AlreadyExists` if not).
    pub async fn create(&self, config: StreamConfig) -> Result<StreamInfo> {
        self.stream_call("CREATE", config).await
    }

    /// Changes a stream's subjects or limits on every replica.
    pub async fn update(&self, config: StreamConfig) -> Result<StreamInfo> {
        self.stream_call("UPDATE", config).await
    }

    async fn stream_call(&self, call: &str, config: StreamConfig) -> Result<StreamInfo> {
        let body = JsStreamConfig::from_typed(&config);
        let subject = format!("$JS.API.STREAM.{call}.{}", config.name);
        let info: config::StreamInfo = self.call(&subject, to_json(&body)).await?;
        typed(info.to_typed())
    }

    /// A stream's config and state, from its leader.
    pub async fn info(&self, name: &str) -> Result<StreamInfo> {
        let info: config::StreamInfo = self.call(&info_subject(name), Bytes::new()).await?;
        typed(info.to_typed())
    }

    /// Where a stream is kept: its leader and the other replicas with their lag.
    pub async fn placement(&self, name: &str) -> Result<Placement> {
        let info: config::StreamInfo = self.call(&info_subject(name), Bytes::new()).await?;
        Ok(info.cluster.as_ref().map(placement).unwrap_or_default())
    }

    /// The names of the cluster's streams, sorted.
    pub async fn names(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        loop {
            let body = to_json(&json!({"offset": names.len()}));
            let page: Value = self.call("$JS.API.STREAM.NAMES", body).await?;
            let got: Vec<String> = page["streams"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .filter_map(|n| n.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let total = page["total"].as_u64().unwrap_or(0);
            let done = got.is_empty();
            names.extend(got);
            if done || names.len() as u64 >= total {
                break;
            }
        }
        names.sort();
        Ok(names)
    }

    /// Deletes a stream with its messages and consumers, on every replica.
    pub async fn delete(&self, name: &str) -> Result<()> {
        let subject = format!("$JS.API.STREAM.DELETE.{name}");
        self.call::<Value>(&subject, Bytes::new()).await.map(drop)
    }

    /// Deletes messages of a stream (all of them with `Purge::default()`); returns how many.
    pub async fn purge(&self, name: &str, purge: &Purge) -> Result<u64> {
        let mut body = json!({});
        if let Some(filter) = &purge.filter {
            body["filter"] = filter.as_str().into();
        }
        if let Some(below) = purge.below {
            body["seq"] = below.into();
        }
        if let Some(keep) = purge.keep {
            body["keep"] = keep.into();
        }
        let subject = format!("$JS.API.STREAM.PURGE.{name}");
        let reply: Value = self.call(&subject, to_json(&body)).await?;
        Ok(reply["purged"].as_u64().unwrap_or(0))
    }

    /// Makes a stream's leader step down; another replica is elected.
    pub async fn step_down(&self, name: &str) -> Result<()> {
        let subject = format!("$JS.API.STREAM.LEADER.STEPDOWN.{name}");
        self.call::<Value>(&subject, Bytes::new()).await.map(drop)
    }

    /// Publishes to a stream's subject and waits for the stream's acknowledgement: for a
    /// replicated stream, a majority of its replicas holds the message.
    ///
    /// Fails with `ErrorKind::NotFound` when nothing captures `subject`.
    pub async fn publish(&self, subject: &str, payload: impl Into<Bytes>) -> Result<PubAck> {
        self.publish_with_headers(subject, HeaderMap::new(), payload)
            .await
    }

    /// Publishes with headers (for example `Nats-Msg-Id` for de-duplication) and waits for
    /// the stream's acknowledgement.
    pub async fn publish_with_headers(
        &self,
        subject: &str,
        headers: HeaderMap,
        payload: impl Into<Bytes>,
    ) -> Result<PubAck> {
        let reply = self
            .router
            .request_with_headers(subject, headers, payload, self.timeout)
            .await
            .map_err(|e| match e {
                crate::Error::NoResponders(_) => Error::new(
                    Reason::StreamNotFound,
                    format!("no stream captures {subject}"),
                ),
                other => from_router(other),
            })?;
        let ack: config::PubAck = parse_reply(reply.payload())?;
        Ok(PubAck {
            stream: ack.stream,
            seq: ack.seq,
            duplicate: ack.duplicate,
        })
    }

    /// Creates a consumer on a stream's leader (its state replicated with the stream), or
    /// returns the existing one with the same config.
    pub async fn create_consumer(
        &self,
        stream: &str,
        config: ConsumerConfig,
    ) -> Result<ConsumerInfo> {
        let body = JsConsumerConfig::from_typed(&config);
        let subject = match body.name.as_ref().or(body.durable_name.as_ref()) {
            Some(name) => format!("$JS.API.CONSUMER.CREATE.{stream}.{name}"),
            None => format!("$JS.API.CONSUMER.CREATE.{stream}"),
        };
        let request = json!({"stream_name": stream, "config": body});
        let info: config::ConsumerInfo = self.call(&subject, to_json(&request)).await?;
        typed(info.to_typed())
    }

    /// A consumer's config and position.
    pub async fn consumer_info(&self, stream: &str, consumer: &str) -> Result<ConsumerInfo> {
        let subject = format!("$JS.API.CONSUMER.INFO.{stream}.{consumer}");
        let info: config::ConsumerInfo = self.call(&subject, Bytes::new()).await?;
        typed(info.to_typed())
    }

    /// Deletes a consumer (a durable's saved state too).
    pub async fn delete_consumer(&self, stream: &str, consumer: &str) -> Result<()> {
        let subject = format!("$JS.API.CONSUMER.DELETE.{stream}.{consumer}");
        self.call::<Value>(&subject, Bytes::new()).await.map(drop)
    }

    /// Fetches up to `batch` messages from a pull consumer, waiting at most `expires` for
    /// them to arrive. Acknowledge each; their acks go to the consumer on the stream's leader
    /// (sent, not confirmed: one that is lost is delivered again after the ack wait).
    pub async fn fetch(
        &self,
        stream: &str,
        consumer: &str,
        batch: usize,
        expires: Duration,
    ) -> Result<Vec<StreamMessage>> {
        let batch = batch.max(1);
        let scope = self.router.scope_state();
        let mut replies = scope.inbox().register_many();
        let body = json!({"batch": batch, "expires": config::as_nanos(expires)});
        let subject = format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}");
        let sent = scope
            .send(
                &subject,
                Some(replies.reply()),
                None,
                to_json(&body),
                Reach::All,
            )
            .map_err(from_router)?;
        if sent == 0 {
            return Err(Error::closed("JetStream is not served on this node"));
        }
        let names: (Arc<str>, Arc<str>) = (stream.into(), consumer.into());
        let deadline = tokio::time::Instant::now() + expires + self.timeout;
        let mut out = Vec::with_capacity(batch);
        while out.len() < batch {
            let Some(msg) = replies.next(deadline).await else {
                break;
            };
            match msg.reply() {
                Some(ack) => match self.fetched(&msg, ack, &names) {
                    Some(fetched) => out.push(fetched),
                    None => tracing::debug!(ack, "a fetched message with an unknown ack subject"),
                },
                None => match status(&msg) {
                    // Idle heartbeat: the request is alive.
                    Some(100) => {}
                    // No messages now, or the request expired: what came is the answer.
                    Some(404 | 408) | None => break,
                    Some(503) if out.is_empty() => {
                        // Nobody took the request: a missing consumer says so; otherwise the
                        // stream has no leader right now.
                        self.consumer_info(stream, consumer).await?;
                        return Err(Error::new(
                            Reason::Unavailable,
                            format!("no leader took the pull request for {stream} > {consumer}"),
                        ));
                    }
                    Some(code) if out.is_empty() => return Err(pull_error(code, &msg, consumer)),
                    Some(_) => break,
                },
            }
        }
        Ok(out)
    }

    /// A message a pull delivered, with `ack` (its `$JS.ACK` subject) as where its acks go.
    fn fetched(
        &self,
        msg: &Message,
        ack: &str,
        (stream, consumer): &(Arc<str>, Arc<str>),
    ) -> Option<StreamMessage> {
        // $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        let tokens: Vec<&str> = ack.split('.').collect();
        let [_, _, _, _, delivered, seq, consumer_seq, ts, pending] = tokens[..] else {
            return None;
        };
        let place = Place {
            delivered: delivered.parse().ok()?,
            seq: seq.parse().ok()?,
            consumer_seq: consumer_seq.parse().ok()?,
            time: crate::time::from_unix_nanos(ts.parse().ok()?),
            pending: pending.parse().ok()?,
        };
        let message = Message::new(
            msg.subject_shared().clone(),
            None,
            Headers::from_block(msg.header_block().map(Bytes::copy_from_slice)),
            msg.payload().clone(),
            None,
        );
        let acker = Acker::Remote(Arc::new(AckTo {
            router: self.router.clone(),
            subject: ack.to_owned(),
        }));
        Some(StreamMessage::new(
            message,
            stream.clone(),
            consumer.clone(),
            place,
            acker,
        ))
    }

    /// Calls the API on `subject` and reads the reply as `T`, or as the error it holds.
    async fn call<T: DeserializeOwned>(&self, subject: &str, body: Bytes) -> Result<T> {
        let reply = self
            .router
            .request(subject, body, self.timeout)
            .await
            .map_err(|e| match e {
                crate::Error::NoResponders(_) => {
                    Error::closed("JetStream is not served on this node")
                }
                other => from_router(other),
            })?;
        parse_reply(reply.payload())
    }
}

/// Where one fetched message's acks go: its `$JS.ACK` subject, cluster-wide.
struct AckTo {
    router: Router,
    subject: String,
}

impl RemoteAck for AckTo {
    fn acknowledge(&self, kind: AckKind) -> Result<()> {
        let body = match kind {
            AckKind::Ack => "+ACK".to_owned(),
            AckKind::Nak(None) => "-NAK".to_owned(),
            AckKind::Nak(Some(delay)) => format!("-NAK {{\"delay\":{}}}", config::as_nanos(delay)),
            AckKind::Progress => "+WPI".to_owned(),
            AckKind::Term => "+TERM".to_owned(),
        };
        self.router
            .publish(&self.subject, body)
            .map_err(|e| Error::closed(format!("cannot send the ack: {e}")))
    }
}

fn info_subject(name: &str) -> String {
    format!("$JS.API.STREAM.INFO.{name}")
}

fn to_json(value: &impl serde::Serialize) -> Bytes {
    // Serializing these plain structures cannot fail; an empty body would be refused.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

/// A reply's body as `T`, or the typed error its `error` object stands for.
fn parse_reply<T: DeserializeOwned>(payload: &[u8]) -> Result<T> {
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| Error::bad_request(format!("a JetStream reply is not JSON: {e}")))?;
    if let Some(err) = value.get("error") {
        let err: ApiError = serde_json::from_value(err.clone())
            .map_err(|e| Error::bad_request(format!("a JetStream error is malformed: {e}")))?;
        return Err(Error::from(&err));
    }
    serde_json::from_value(value)
        .map_err(|e| Error::bad_request(format!("a JetStream reply is malformed: {e}")))
}

fn typed<T>(converted: std::result::Result<T, ApiError>) -> Result<T> {
    converted.map_err(|e| Error::from(&e))
}

fn from_router(err: crate::Error) -> Error {
    match err {
        crate::Error::Timeout(after) => Error::new(
            Reason::Timeout,
            format!("no answer within {after:?} (the stream may be electing a leader)"),
        ),
        crate::Error::InvalidSubject { .. } => Error::bad_request(err.to_string()),
        other => Error::closed(other.to_string()),
    }
}

/// The status code of a message with a `NATS/1.0 <code>` line, if it has one.
fn status(msg: &Message) -> Option<u16> {
    let block = msg.header_block()?;
    let line = block.split(|&b| b == b'\r').next()?;
    let rest = line.strip_prefix(b"NATS/1.0 ")?;
    std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()
}

/// What a pull request's status (one that ended it before any message) means.
fn pull_error(code: u16, msg: &Message, consumer: &str) -> Error {
    let block = msg.header_block().unwrap_or_default();
    let line = block.split(|&b| b == b'\r').next().unwrap_or_default();
    let text = String::from_utf8_lossy(line.get(13..).unwrap_or_default()).into_owned();
    if code == 409 && text.contains("Consumer Deleted") {
        return Error::new(
            Reason::ConsumerNotFound,
            format!("consumer {consumer} was deleted"),
        );
    }
    Error::bad_request(format!("the pull request was refused: {code} {text}"))
}

/// A `cluster` object of STREAM.INFO, typed.
fn placement(cluster: &Value) -> Placement {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let replicas = cluster["replicas"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|r| ReplicaInfo {
                    name: text(&r["name"]).unwrap_or_default(),
                    current: r["current"].as_bool().unwrap_or(false),
                    offline: r["offline"].as_bool().unwrap_or(false),
                    lag: r["lag"].as_u64().unwrap_or(0),
                    active: r["active"]
                        .as_u64()
                        .filter(|&ns| ns > 0)
                        .map(Duration::from_nanos),
                })
                .collect()
        })
        .unwrap_or_default();
    Placement {
        cluster: text(&cluster["name"]),
        leader: text(&cluster["leader"]),
        replicas,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::ErrorKind;

    #[test]
    fn errors_come_back_typed() {
        let reply = br#"{"type":"x","error":{"code":404,"err_code":10059,"description":"stream not found"}}"#;
        let err = parse_reply::<Value>(reply).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let reply = br#"{"error":{"code":503,"err_code":10008,"description":"no leader"}}"#;
        assert_eq!(
            parse_reply::<Value>(reply).unwrap_err().kind(),
            ErrorKind::Unavailable
        );
        assert_eq!(
            parse_reply::<Value>(b"not json").unwrap_err().kind(),
            ErrorKind::InvalidRequest
        );
    }

    #[test]
    fn every_typed_error_survives_its_codes() {
        for err in [
            Error::stream_not_found(),
            Error::consumer_not_found(),
            Error::no_message(),
            Error::stream_exists(),
            Error::consumer_exists(),
            Error::subjects_overlap(),
            Error::invalid_stream_config("x"),
            Error::message_too_large(),
            Error::new(Reason::WrongLastSequence, "x"),
            Error::new(Reason::Unavailable, "x"),
            Error::new(Reason::Timeout, "x"),
            Error::new(Reason::MirrorNotUpdatable, "x"),
        ] {
            let back = Error::from(&ApiError::from(&err));
            assert_eq!(back.kind(), err.kind(), "{err:?}");
        }
    }

    #[test]
    fn cluster_objects_read_as_placements() {
        let cluster = json!({"name": "c", "leader": "a", "replicas": [
            {"name": "b", "current": true, "offline": false, "active": 1_500_000, "lag": 0},
            {"name": "c", "current": false, "offline": true, "active": 0, "lag": 7}]});
        let p = placement(&cluster);
        assert_eq!(p.leader.as_deref(), Some("a"));
        assert_eq!(p.replicas.len(), 2);
        assert_eq!(p.replicas[0].active, Some(Duration::from_micros(1500)));
        assert!(p.replicas[1].offline && p.replicas[1].lag == 7);
    }
}
