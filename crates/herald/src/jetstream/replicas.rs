//! This node's replicas of the cluster's replicated streams: one Raft group member each
//! (`crate::replica`), started from the meta group's definitions and stopped when the
//! stream is deleted.
//!
//! A replicated stream's requests go to `$HERALD.JSAPI.~<group>`, which only its leader
//! subscribes: the replica that leads answers them (with the stream and its consumers), and
//! a change of leader moves the subscription with it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};

use super::api::ClusterView;
use super::cluster::{self, Front};
use super::error::ApiError;
use crate::SubscribeOptions;
use crate::replica::ReplicaGroup;

/// How often a replicated stream's leader is heard from; elections start after 4 to 8
/// missed heartbeats.
const HEARTBEAT: Duration = Duration::from_millis(100);

/// How long a replica that stopped leading still takes its stream's calls (and forwards
/// them on to the new leader).
const HANDOVER_GRACE: Duration = Duration::from_secs(2);

/// The queue group of the subscriptions that take a stream's calls: while a former
/// leader's subscription lingers beside the new leader's (or a replica that led, stopped and
/// leads again within the grace holds two), each call goes to one of them, never both (a
/// pull request answered twice hands half its messages to a request nobody waits for).
const TAKERS: &str = "leader";

/// How long a purge or message delete of a replicated stream waits to be applied.
const CHANGE_WAIT: Duration = Duration::from_secs(10);

/// How long a leader stepdown waits for another replica to lead.
const STEPDOWN_WAIT: Duration = Duration::from_secs(5);

/// The replicas this node holds, by stream name.
pub(crate) struct Replicas {
    pub(crate) cluster: String,
    node: crate::Node,
    held: Mutex<BTreeMap<String, Replica>>,
}

struct Replica {
    group: Arc<ReplicaGroup>,
    /// Its Raft state, removed with the replica.
    dir: PathBuf,
    /// Moves the leader's request subscription along with the leadership.
    follower: tokio::task::JoinHandle<()>,
    /// That subscription, while this replica leads.
    taking: Arc<Mutex<Option<crate::CallbackHandle>>>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.follower.abort();
        if let Some(handle) = self.taking.lock().take() {
            handle.cancel();
        }
    }
}

/// The names of the nodes a definition places a stream's replicas on (none for a stream
/// with one replica).
pub(crate) fn replicas_of(definition: &Value) -> Vec<String> {
    names_at(definition, "replicas")
}

/// The replicas that joined the stream after its group was formed (replacements).
pub(crate) fn joined_of(definition: &Value) -> Vec<String> {
    names_at(definition, "joined")
}

/// The node names a definition lists under `key`.
fn names_at(definition: &Value, key: &str) -> Vec<String> {
    definition
        .get(key)
        .and_then(Value::as_array)
        .map(|names| {
            names
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the stream's replicas changed since the group was formed: then no member forms
/// the group again, not even a founder whose state was lost (its first entry would differ
/// from the group's); the leader brings each up to date.
fn reformed(definition: &Value) -> bool {
    !joined_of(definition).is_empty()
}

/// The group token of a replicated stream's definition.
pub(crate) fn group_of(definition: &Value) -> Option<&str> {
    definition.get("group").and_then(Value::as_str)
}

/// Where a replicated stream's leader takes requests, after `$HERALD.JSAPI.`.
pub(crate) fn leader_target(group: &str) -> String {
    format!("~{group}")
}

impl Replicas {
    /// Whether this node holds a replica of `stream` (one being removed too).
    pub(crate) fn holds(&self, stream: &str) -> bool {
        self.held.lock().contains_key(stream)
    }

    /// Makes `change` on every replica of `stream`, through its group (on its leader).
    pub(crate) async fn change(
        &self,
        stream: &str,
        change: &crate::replica::Change,
    ) -> crate::streams::Result<u64> {
        let group = self.held.lock().get(stream).map(|r| r.group.clone());
        match group {
            Some(group) => group.change(change, CHANGE_WAIT).await,
            None => Err(crate::streams::Error::stream_not_found()),
        }
    }

    /// No replicas yet, on `node` of the cluster named `cluster`.
    pub(crate) fn new(node: crate::Node, cluster: String) -> Replicas {
        Replicas {
            cluster,
            node,
            held: Mutex::default(),
        }
    }

    /// The name of the node leading `stream`, as this node's replica knows it.
    pub(crate) fn leader_of(&self, stream: &str) -> Option<String> {
        let group = self.held.lock().get(stream)?.group.clone();
        group.leader()
    }

    /// Whether this node's replica of `stream` leads it now.
    pub(crate) fn leads(&self, stream: &str) -> bool {
        self.held
            .lock()
            .get(stream)
            .is_some_and(|r| *r.group.leading().borrow())
    }
}

impl Replicas {
    /// Moves the leadership of `stream` from this node's replica to a current one.
    pub(crate) async fn step_down(&self, stream: &str) -> Result<(), ApiError> {
        let group = self.held.lock().get(stream).map(|r| r.group.clone());
        let Some(group) = group else {
            return Err(ApiError::new(400, 10005, "no suitable peers for placement"));
        };
        match group.step_down(STEPDOWN_WAIT).await {
            Ok(leader) => {
                tracing::info!(stream, leader, "leadership handed over");
                Ok(())
            }
            Err(err) => Err(ApiError::new(
                503,
                10008,
                format!("JetStream system temporarily unavailable: {err}"),
            )),
        }
    }
}

/// How this node sees one replicated stream it holds a replica of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamReplicas {
    /// The stream.
    pub stream: String,
    /// Its leader now, if it has one.
    pub leader: Option<String>,
    /// Whether this node's replica leads.
    pub leads: bool,
    /// Leader changes this node saw since its replica started.
    pub leader_changes: u64,
    /// The other replicas (their lag as the leader knows it).
    pub replicas: Vec<ReplicaState>,
}

/// One replica of a stream, as its leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    /// The node's name.
    pub name: String,
    /// Whether it has every entry the leader has.
    pub current: bool,
    /// Whether gossip sees its node down.
    pub offline: bool,
    /// Entries it is behind the leader.
    pub lag: u64,
    /// How long since the leader last heard from it (`None`: never, or this node does not
    /// lead).
    pub active: Option<Duration>,
}

impl Replicas {
    /// How this node sees each replicated stream it holds, by name.
    pub(crate) fn states(&self) -> Vec<StreamReplicas> {
        let held: Vec<(String, Arc<ReplicaGroup>)> = self
            .held
            .lock()
            .iter()
            .map(|(name, r)| (name.clone(), r.group.clone()))
            .collect();
        held.into_iter()
            .map(|(name, group)| self.state_of(name, &group))
            .collect()
    }

    fn state_of(&self, stream: String, group: &ReplicaGroup) -> StreamReplicas {
        let live = self.node.live_members();
        let replicas = group
            .replicas()
            .into_iter()
            .map(|r| {
                let offline = !live.contains(&r.name);
                ReplicaState {
                    current: r.current && !offline,
                    offline,
                    lag: r.lag,
                    active: r.active,
                    name: r.name,
                }
            })
            .collect();
        StreamReplicas {
            stream,
            leader: group.leader(),
            leads: *group.leading().borrow(),
            leader_changes: group.leader_changes(),
            replicas,
        }
    }
}

/// STREAM.INFO's (and `/jsz`'s) `cluster` object of a replicated stream.
pub(crate) fn cluster_object(cluster: &str, state: &StreamReplicas) -> Value {
    let replicas: Vec<Value> = state
        .replicas
        .iter()
        .map(|r| {
            json!({"name": r.name, "current": r.current, "offline": r.offline,
                "active": r.active.map_or(0, |a| a.as_nanos() as u64),
                   "lag": r.lag})
        })
        .collect();
    let mut object = json!({"name": cluster, "replicas": replicas});
    if let Some(leader) = &state.leader {
        object["leader"] = leader.clone().into();
    }
    object
}

impl ClusterView for Replicas {
    fn cluster(&self, stream: &str) -> Option<Value> {
        let group = self.held.lock().get(stream)?.group.clone();
        let state = self.state_of(stream.to_owned(), &group);
        Some(cluster_object(&self.cluster, &state))
    }

    fn reports(&self, stream: &str) -> bool {
        match self.held.lock().get(stream) {
            Some(replica) => *replica.group.leading().borrow(),
            None => true,
        }
    }
}

/// Starts a replica for each replicated stream the definitions place on this node, and
/// stops (and deletes) those of streams no longer defined here.
pub(crate) async fn reconcile(front: &Arc<Front>, defined: &BTreeMap<String, Value>) {
    let mine: BTreeMap<&String, &Value> = defined
        .iter()
        .filter(|(_, d)| replicas_of(d).contains(&front.me))
        .collect();
    let gone: Vec<(String, Replica)> = {
        let mut held = front.replicas.held.lock();
        let names: Vec<String> = held
            .keys()
            .filter(|name| !mine.contains_key(name))
            .cloned()
            .collect();
        names
            .into_iter()
            .filter_map(|name| held.remove(&name).map(|r| (name, r)))
            .collect()
    };
    for (name, replica) in gone {
        replica.group.shutdown().await;
        let dir = replica.dir.clone();
        drop(replica);
        if let Err(err) = front.api.streams.delete(&name) {
            tracing::warn!(stream = name, %err, "cannot delete a replica");
        }
        if let Err(err) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(stream = name, %err, "cannot delete a replica's Raft state");
        }
        tracing::info!(stream = name, "replica removed: the stream is deleted");
    }
    for (name, definition) in mine {
        let held = front
            .replicas
            .held
            .lock()
            .get(name)
            .map(|r| r.group.clone());
        if let Some(group) = held {
            group.set_members(&replicas_of(definition));
            update(front, &group, name, definition);
            continue;
        }
        if let Err(err) = start(front, name, definition).await {
            tracing::warn!(stream = name, %err, "cannot start a replica");
        }
    }
}

/// Takes an updated config from the definition into this node's replica, if it changed.
fn update(front: &Front, group: &ReplicaGroup, name: &str, definition: &Value) {
    let wanted = cluster::typed_config(definition)
        .and_then(|c| c.normalize_replicated().map_err(|e| e.to_string()));
    let wanted = match wanted {
        Ok(wanted) => wanted,
        Err(err) => return tracing::warn!(stream = name, err, "an unusable stream definition"),
    };
    if *group.stream().config.lock() == wanted {
        return;
    }
    match front.api.streams.update(wanted) {
        Ok(_) => tracing::info!(stream = name, "replica's config updated"),
        Err(err) => tracing::warn!(stream = name, %err, "cannot update a replica's config"),
    }
}

async fn start(front: &Arc<Front>, name: &str, definition: &Value) -> Result<(), String> {
    let group = group_of(definition).ok_or("the definition names no group")?;
    let config = cluster::typed_config(definition)?;
    let streams = &front.api.streams;
    let mut stream = streams.replica(config.clone()).map_err(|e| e.to_string())?;
    if let Some(damage) = crate::replica::damaged(&stream) {
        // Not trusted: rebuilt from the group's log, as the others agreed on it.
        tracing::warn!(
            stream = name,
            damage,
            "a damaged replica: rebuilt from the group"
        );
        drop(stream);
        streams.delete(name).map_err(|e| e.to_string())?;
        stream = streams.replica(config).map_err(|e| e.to_string())?;
    }
    // `<data>/raft/<group>`, beside the streams.
    let dir = stream
        .dir
        .parent()
        .and_then(|streams| streams.parent())
        .map(|data| data.join("raft").join(group))
        .unwrap_or_else(|| PathBuf::from("raft").join(group));
    let members = replicas_of(definition);
    let node = front.router.node();
    let settings = crate::replica::Settings {
        group,
        members: &members,
        heartbeat: HEARTBEAT,
        fsync: streams.fsync(),
        joining: reformed(definition),
        store: streams.clone(),
    };
    let replica = ReplicaGroup::start(&node, stream, &dir, settings)
        .await
        .map_err(|e| e.to_string())?;
    let replica = Arc::new(replica);
    let taking = Arc::new(Mutex::new(None));
    let follower = tokio::spawn(follow_leadership(
        Arc::downgrade(front),
        name.to_owned(),
        replica.clone(),
        leader_target(group),
        taking.clone(),
    ));
    tracing::info!(stream = name, replicas = members.len(), "replica started");
    front.replicas.held.lock().insert(
        name.to_owned(),
        Replica {
            group: replica,
            dir,
            follower,
            taking,
        },
    );
    Ok(())
}

/// Runs the stream's consumers and takes its requests while this replica leads.
async fn follow_leadership(
    front: Weak<Front>,
    stream: String,
    group: Arc<ReplicaGroup>,
    target: String,
    taking: Arc<Mutex<Option<crate::CallbackHandle>>>,
) {
    let mut leading = group.leading();
    loop {
        let leads = *leading.borrow_and_update();
        let took = taking.lock().is_some();
        match (leads, took) {
            (true, false) => {
                let Some(strong) = front.upgrade() else {
                    return;
                };
                let api = &strong.api;
                match api.streams.take_over(&stream) {
                    Ok(()) => api.flows.install_stream(&api.streams, &api.scope, &stream),
                    Err(err) => tracing::warn!(stream, %err, "cannot start the consumers"),
                }
                let callback = front.clone();
                let subscribed = strong.router.on_with(
                    &cluster::forwarded_subject(&target),
                    SubscribeOptions::new().capacity(1 << 16).queue(TAKERS),
                    move |msg| {
                        if let Some(front) = callback.upgrade() {
                            cluster::on_forwarded(&front, msg);
                        }
                    },
                );
                match subscribed {
                    Ok(handle) => *taking.lock() = Some(handle),
                    Err(err) => tracing::warn!(%err, "cannot take a stream's requests"),
                }
            }
            (false, true) => {
                // Calls already on their way here keep arriving for a moment: they are
                // handed on to the new leader (`cluster::on_forwarded`).
                if let Some(handle) = taking.lock().take() {
                    tokio::spawn(async move {
                        tokio::time::sleep(HANDOVER_GRACE).await;
                        handle.cancel();
                    });
                }
                if let Some(front) = front.upgrade()
                    && let Err(err) = front.api.streams.hand_over(&stream)
                {
                    tracing::debug!(stream, %err, "cannot stop the consumers");
                }
            }
            _ => {}
        }
        if leading.changed().await.is_err() {
            if let Some(handle) = taking.lock().take() {
                handle.cancel();
            }
            return;
        }
    }
}
