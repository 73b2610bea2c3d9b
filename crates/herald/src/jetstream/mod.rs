//! JetStream, the NATS streaming API, as an adapter over [`crate::streams`]: NATS clients
//! (async-nats, nats-py, the `nats` CLI) drive herald's streams through it unchanged.
//!
//! [`serve`] turns it on for a [`Streams`] store: the store's scope then answers the
//! JetStream API (`$JS.API.>`), takes acks on `$JS.ACK.>`, and answers publishes that carry
//! a reply subject with a PubAck. Everything JetStream-shaped lives here: the JSON bodies
//! with their `-1`s and nanoseconds, the error codes, the ack subjects and the `NATS/1.0`
//! status lines of pull requests. The typed API underneath knows none of it.
//!
//! | module | holds |
//! |---|---|
//! | `api` | the `$JS.API` request handlers |
//! | `cluster` | one JetStream across a cluster: streams placed by the meta group, requests forwarded to their node |
//! | `replicas` | this node's replicas of replicated streams, and their leaders' requests |
//! | `client` | [`ClusterStreams`]: the typed streams API over the cluster's JetStream |
//! | `config` | stream and consumer configs and infos as JSON, to and from the typed ones |
//! | `requests` | reply envelopes and request bodies (purge, paging, message get, pull) |
//! | `delivery` | pull requests into a client's inbox, `$JS.ACK` acks, publish acks |
//! | `push` | push consumers: deliveries to a subject, heartbeats, flow control, rate limit |
//! | `error` | [`ApiError`] and the codes of herald's typed errors |
//! | `time` | timestamps as JetStream writes them (Go's zero time) |
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use herald::streams::{Streams, StreamsOptions};
//! # let dir = tempfile::tempdir()?;
//! let router = herald::Router::new(100, "default");
//! let streams = Streams::open(&router, StreamsOptions::new(dir.path())).await?;
//! let _jetstream = herald::jetstream::serve(&streams)?; // answers until dropped
//! let reply = router.request("$JS.API.INFO", "", std::time::Duration::from_secs(1)).await?;
//! assert!(reply.text()?.contains("account_info_response"));
//! # Ok(()) }
//! ```

mod api;
mod client;
mod cluster;
pub mod config;
mod delivery;
mod error;
mod push;
mod replicas;
pub mod requests;
pub mod time;

use std::sync::Arc;
use std::sync::atomic::Ordering;

pub use client::{ClusterStreams, DEFAULT_CALL_TIMEOUT};
pub use error::ApiError;

use crate::scope::Sink;
use crate::streams::Streams;
use crate::subscription::{CallbackHandle, SubscribeOptions};

/// The JetStream API subjects a store answers in its scope.
pub const API_SUBJECTS: &str = "$JS.API.>";
/// The subjects acks come back on.
pub const ACK_SUBJECTS: &str = "$JS.ACK.>";

/// JetStream served for one store; the API and acks stop when it is dropped (or
/// [`stop`](JetStream::stop)ped). Publishes with a reply subject keep getting PubAcks: a
/// client that published before the stop is still answered.
pub struct JetStream {
    api: Option<CallbackHandle>,
    /// In a cluster: the calls other nodes forward here, and the task keeping this node's
    /// streams in step with the meta group's definitions.
    clustered: Option<(CallbackHandle, tokio::task::JoinHandle<()>)>,
    acks: Option<(Arc<str>, u64)>,
    flow_answers: Option<(Arc<str>, u64)>,
    scope: Arc<crate::scope::Scope>,
    streams: Streams,
    replicas: Option<Arc<replicas::Replicas>>,
}

pub use replicas::{ReplicaState, StreamReplicas};

/// This node's view of the replicated streams it holds a replica of (from
/// [`JetStream::replication`]), for monitoring. Cheap to clone.
#[derive(Clone)]
pub struct Replication(Arc<replicas::Replicas>);

impl Replication {
    /// Each replicated stream this node holds a replica of: its leader, the other replicas
    /// with their lag, and how often the leader changed.
    pub fn streams(&self) -> Vec<StreamReplicas> {
        self.0.states()
    }

    /// The `cluster` object nats-server writes for `state` (STREAM.INFO's, `/jsz`'s).
    pub fn cluster_object(&self, state: &StreamReplicas) -> serde_json::Value {
        replicas::cluster_object(&self.0.cluster, state)
    }
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication").finish_non_exhaustive()
    }
}

/// Serves JetStream for `streams` in its router's scope: the API, acks and publish acks.
///
/// The API and pull requests are answered by this node only (a stream lives on the node that
/// holds it).
pub fn serve(streams: &Streams) -> crate::Result<JetStream> {
    serve_with(streams, None)
}

/// Serves JetStream for `streams` as this node's part of its cluster's JetStream: streams
/// are defined and placed through `meta` (the cluster's meta group), and this node answers
/// the API for any stream, forwarding a stream's requests to the node that holds it. Acks
/// and flow-control answers are taken from the whole cluster. Needs a tokio runtime.
pub fn serve_clustered(
    streams: &Streams,
    meta: Arc<crate::meta::MetaGroup>,
) -> crate::Result<JetStream> {
    serve_with(streams, Some(meta))
}

fn serve_with(
    streams: &Streams,
    meta: Option<Arc<crate::meta::MetaGroup>>,
) -> crate::Result<JetStream> {
    // Clustered, acks and flow-control answers come from clients of any node.
    let node_only = meta.is_none();
    if streams.hooks().served.swap(true, Ordering::AcqRel) {
        return Err(crate::Error::Closed(
            "JetStream is already served for this store",
        ));
    }
    let router = streams.router();
    let scope = router.scope_state().clone();
    // Publish acks from now on, for every stream of the store.
    let _ = streams.hooks().answers.set(Arc::new(delivery::PubAcks));
    let acks = Arc::new(delivery::Acks {
        streams: streams.clone(),
        scope: scope.clone(),
    });
    let entry = scope.add(ACK_SUBJECTS, None, 0, 0, Sink::Target(acks), node_only)?;
    let flows = Arc::new(push::Flows::default());
    let answers = Arc::new(push::FlowAnswers {
        flows: flows.clone(),
        streams: streams.clone(),
    });
    let fc_entry = match scope.add(
        push::FC_SUBJECTS,
        None,
        0,
        0,
        Sink::Target(answers),
        node_only,
    ) {
        Ok(fc_entry) => fc_entry,
        Err(err) => {
            scope.remove(&entry.pattern, entry.id);
            streams.hooks().served.store(false, Ordering::Release);
            return Err(err);
        }
    };
    // Push consumers recovered with the store deliver again.
    flows.install_all(streams, &scope);
    let cluster_info = router.node().cluster_info().filter(|_| meta.is_some());
    let api = Arc::new(api::Api {
        streams: streams.clone(),
        scope: scope.clone(),
        flows,
        cluster: cluster_info
            .as_ref()
            .map(|info| serde_json::json!({"name": info.cluster, "leader": info.name})),
        view: std::sync::OnceLock::new(),
    });
    let mut clustered = None;
    let mut held_replicas = None;
    let handle = match meta.zip(cluster_info.map(|info| info.name)) {
        None => router.on_with(
            API_SUBJECTS,
            SubscribeOptions::new().node_only().capacity(1 << 16),
            move |msg| api::handle(&api, &msg),
        ),
        Some((meta, me)) => {
            let cluster_name = router
                .node()
                .cluster_info()
                .map(|info| info.cluster)
                .unwrap_or_default();
            let replicas = Arc::new(replicas::Replicas::new(router.node(), cluster_name));
            let _ = api.view.set(replicas.clone());
            held_replicas = Some(replicas.clone());
            let front = Arc::new(cluster::Front {
                api,
                meta,
                me: me.clone(),
                router: router.clone(),
                runtime: tokio::runtime::Handle::current(),
                replicas,
            });
            let forwarded = {
                let front = front.clone();
                router.on_with(
                    &cluster::forwarded_subject(&me),
                    SubscribeOptions::new().capacity(1 << 16),
                    move |msg| cluster::on_forwarded(&front, msg),
                )
            };
            match forwarded {
                Ok(forwarded) => {
                    let reconciling = tokio::spawn(cluster::reconcile(front.clone()));
                    clustered = Some((forwarded, reconciling));
                    router.on_with(
                        API_SUBJECTS,
                        SubscribeOptions::new().node_only().capacity(1 << 16),
                        move |msg| cluster::on_request(&front, msg),
                    )
                }
                Err(err) => Err(err),
            }
        }
    };
    let handle = match handle {
        Ok(handle) => handle,
        Err(err) => {
            scope.remove(&entry.pattern, entry.id);
            scope.remove(&fc_entry.pattern, fc_entry.id);
            if let Some((forwarded, reconciling)) = clustered {
                forwarded.cancel();
                reconciling.abort();
            }
            streams.hooks().served.store(false, Ordering::Release);
            return Err(err);
        }
    };
    Ok(JetStream {
        api: Some(handle),
        clustered,
        acks: Some((entry.pattern.clone(), entry.id)),
        flow_answers: Some((fc_entry.pattern.clone(), fc_entry.id)),
        scope,
        streams: streams.clone(),
        replicas: held_replicas,
    })
}

impl JetStream {
    /// In a cluster: this node's view of the replicated streams it holds.
    pub fn replication(&self) -> Option<Replication> {
        self.replicas.clone().map(Replication)
    }

    /// Stops answering the API and taking acks.
    pub fn stop(mut self) {
        self.close();
    }

    fn close(&mut self) {
        if let Some(api) = self.api.take() {
            api.cancel();
        }
        if let Some((forwarded, reconciling)) = self.clustered.take() {
            forwarded.cancel();
            reconciling.abort();
        }
        if let Some((pattern, id)) = self.flow_answers.take() {
            self.scope.remove(&pattern, id);
        }
        if let Some((pattern, id)) = self.acks.take() {
            self.scope.remove(&pattern, id);
            self.streams.hooks().served.store(false, Ordering::Release);
        }
    }
}

impl Drop for JetStream {
    fn drop(&mut self) {
        self.close();
    }
}

impl std::fmt::Debug for JetStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStream")
            .field("serving", &self.api.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests;
