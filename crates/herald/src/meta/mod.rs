//! The meta group: definitions every member of a cluster agrees on (which streams exist,
//! their configs and where they are placed), replicated through Raft with the `openraft`
//! crate. herald writes no consensus of its own: this module gives openraft a state machine
//! (`machine`) beside the log on disk and the RPCs over the routes that every herald group
//! shares (`crate::raft`), and decides who forms the group and who joins it.
//!
//! **Forming and growing.** A fresh group is formed once: when at least `bootstrap_expect`
//! members are live (gossip says so), none of them is in a group yet, and this node has the
//! lowest Raft id among them, it initializes the group with all of them. Every member
//! advertises in gossip whether it is in a group; a node that sees one never forms another.
//! The leader adds every live member that is not in the group yet, first as a learner (it
//! catches up from the log, or a snapshot when far behind), then as a voter. Members that die
//! stay voters (a quorum is counted over them) until removed.
//!
//! **Writes** go to the leader: a member that is not the leader forwards them over the routes.
//! Reads of [`MetaGroup::definitions`] are of this member's applied state (eventually
//! consistent); [`MetaGroup::read`] first confirms with a quorum that this member's leader
//! is still the leader.
//!
//! | module | holds |
//! |---|---|
//! | `types` | the Raft types: commands, outcomes, member ids |
//! | `machine` | the definitions and their snapshot file |
//! | `rpc` | answering the other members: Raft's requests, forwarded writes and reads |

mod machine;
mod rpc;
pub mod types;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, Config, Raft, ServerState};
use serde_json::Value;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::{Node, Router};
use types::TypeConfig;
pub use types::{Command, Definitions, Member, Outcome, node_id};

/// The gossip key a member advertises whether it is in a group under (`1` once it is).
const IN_GROUP_KEY: &str = "meta";

/// How the meta group of a node runs.
#[derive(Debug, Clone)]
pub struct MetaOptions {
    dir: PathBuf,
    bootstrap_expect: Option<usize>,
    heartbeat: Duration,
}

impl MetaOptions {
    /// Raft state in `dir`; a new group waits for this node and its seeds (see
    /// [`bootstrap_expect`]).
    ///
    /// [`bootstrap_expect`]: MetaOptions::bootstrap_expect
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        MetaOptions {
            dir: dir.into(),
            bootstrap_expect: None,
            heartbeat: Duration::from_millis(150),
        }
    }

    /// Live members a fresh group waits for before it forms (the first time only). By
    /// default, this node and the seeds it was given: a node without seeds forms a group
    /// alone, nodes started with one list of each other form one group once all are up, and
    /// a node seeded with members of a formed group joins it. Set it when seeds name fewer
    /// nodes than start together.
    pub fn bootstrap_expect(mut self, members: usize) -> Self {
        self.bootstrap_expect = Some(members.max(1));
        self
    }

    /// The leader's heartbeat; elections start after 4 to 8 missed ones.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every.max(Duration::from_millis(10));
        self
    }
}

/// This node's member of its cluster's meta group. Stops when dropped (or
/// [`shutdown`](MetaGroup::shutdown)).
pub struct MetaGroup {
    raft: Raft<TypeConfig>,
    definitions: watch::Receiver<Arc<Definitions>>,
    router: Router,
    id: u64,
    tasks: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl MetaGroup {
    /// Starts this node's member. The node must be in a cluster (a local node has no other
    /// member to agree with).
    pub async fn start(node: &Node, options: MetaOptions) -> Result<MetaGroup> {
        let info = node
            .cluster_info()
            .ok_or_else(|| Error::Cluster("the meta group needs a clustered node".into()))?;
        let id = node_id(&info.name);
        let io = |e: std::io::Error| Error::Cluster(format!("meta group state: {e}"));
        let log = crate::raft::log_store::LogStore::<TypeConfig>::open(
            &options.dir,
            herald_log::Fsync::Always,
        )
        .map_err(io)?;
        let machine = machine::Machine::open(&options.dir).map_err(io)?;
        let definitions = machine.watch();
        let heartbeat = options.heartbeat.as_millis() as u64;
        let config = Config {
            cluster_name: info.cluster.clone(),
            heartbeat_interval: heartbeat,
            election_timeout_min: heartbeat * 4,
            election_timeout_max: heartbeat * 8,
            install_snapshot_timeout: 2_000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(1_000),
            max_in_snapshot_log_to_keep: 100,
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::Cluster(format!("meta group settings: {e}")))?;
        let router = node.router(crate::raft::network::SCOPE, 1024);
        let requests = router.subscribe(&rpc::subject(id, "*"))?;
        let raft = Raft::new(
            id,
            Arc::new(config),
            crate::raft::network::Network::new(router.clone(), rpc::PREFIX),
            log,
            machine,
        )
        .await
        .map_err(|e| Error::Cluster(format!("meta group: {e}")))?;
        let tasks = vec![
            tokio::spawn(rpc::serve(raft.clone(), definitions.clone(), requests)),
            tokio::spawn(drive(
                raft.clone(),
                node.clone(),
                info.name.clone(),
                options.bootstrap_expect.unwrap_or(1 + info.seeds.len()),
            )),
        ];
        Ok(MetaGroup {
            raft,
            definitions,
            router,
            id,
            tasks: parking_lot::Mutex::new(tasks),
        })
    }

    /// Sets `key` to `value` in every member's definitions; with `if_absent`, only if it has
    /// no value yet or this very one (else [`Outcome::Conflict`] with the value it has).
    /// Returns once a quorum has the change. Fails while there is no leader (retry).
    pub async fn put(&self, key: &str, value: Value, if_absent: bool) -> Result<Outcome> {
        self.write(Command::Put {
            key: key.to_owned(),
            value,
            if_absent,
        })
        .await
    }

    /// Removes `key` from every member's definitions.
    pub async fn delete(&self, key: &str) -> Result<Outcome> {
        self.write(Command::Delete {
            key: key.to_owned(),
        })
        .await
    }

    async fn write(&self, command: Command) -> Result<Outcome> {
        match self.raft.client_write(command.clone()).await {
            Ok(done) => Ok(done.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(to))) => {
                let Some(leader) = to.leader_id else {
                    return Err(Error::Cluster("the meta group has no leader now".into()));
                };
                let body = serde_json::to_vec(&command)?;
                let reply = self
                    .router
                    .request(&rpc::subject(leader, "write"), body, Duration::from_secs(5))
                    .await?;
                let answer: std::result::Result<Outcome, String> =
                    serde_json::from_slice(reply.payload())?;
                answer.map_err(Error::Cluster)
            }
            Err(err) => Err(Error::Cluster(format!("meta group: {err}"))),
        }
    }

    /// Takes the member named `name` out of the group (its vote and its place), for a node
    /// that is gone for good; on any member (the leader makes the change). Fails while there
    /// is no leader, or when the change cannot be made (retry).
    pub async fn remove_member(&self, name: &str) -> Result<()> {
        let id = node_id(name);
        match remove_voter(&self.raft, id).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(to))) => {
                let Some(leader) = to.leader_id else {
                    return Err(Error::Cluster("the meta group has no leader now".into()));
                };
                let body = serde_json::to_vec(&id)?;
                let reply = self
                    .router
                    .request(
                        &rpc::subject(leader, "remove"),
                        body,
                        Duration::from_secs(10),
                    )
                    .await?;
                let answer: std::result::Result<(), String> =
                    serde_json::from_slice(reply.payload())?;
                answer.map_err(Error::Cluster)
            }
            Err(err) => Err(Error::Cluster(format!("meta group: {err}"))),
        }
    }

    /// The definitions as this member has applied them, and their changes.
    pub fn definitions(&self) -> watch::Receiver<Arc<Definitions>> {
        self.definitions.clone()
    }

    /// The definitions, confirmed current: a quorum agrees this member's leader still leads,
    /// and this member has applied everything it committed. Fails on a member cut off from
    /// the leader.
    pub async fn read(&self) -> Result<Arc<Definitions>> {
        let leader = self.raft.current_leader().await;
        if leader != Some(self.id) {
            let reply = match leader {
                Some(leader) => {
                    self.router
                        .request(&rpc::subject(leader, "read"), "", Duration::from_secs(5))
                        .await?
                }
                None => return Err(Error::Cluster("the meta group has no leader now".into())),
            };
            let answer: std::result::Result<Definitions, String> =
                serde_json::from_slice(reply.payload())?;
            return answer.map(Arc::new).map_err(Error::Cluster);
        }
        self.raft
            .ensure_linearizable()
            .await
            .map_err(|e| Error::Cluster(format!("meta group: {e}")))?;
        Ok(self.definitions.borrow().clone())
    }

    /// Waits until the group has a leader other than `not` (a leader that went away) and at
    /// least `voters` voters, as this member sees it; returns the leader's Raft id. Fails after
    /// `timeout`.
    pub async fn wait_for_leader(
        &self,
        not: Option<u64>,
        voters: usize,
        timeout: Duration,
    ) -> Result<u64> {
        let mut metrics = self.raft.metrics();
        let waited = tokio::time::timeout(timeout, async {
            loop {
                let ready = {
                    let m = metrics.borrow_and_update();
                    let count = m.membership_config.membership().voter_ids().count();
                    m.current_leader
                        .filter(|l| Some(*l) != not && count >= voters)
                };
                if let Some(leader) = ready {
                    return Ok(leader);
                }
                if metrics.changed().await.is_err() {
                    return Err(Error::Closed("the meta group stopped"));
                }
            }
        })
        .await;
        waited.unwrap_or_else(|_| {
            Err(Error::Cluster(format!(
                "the meta group has no leader with {voters} voters after {timeout:?}"
            )))
        })
    }

    /// The Raft id of the leader, if there is one now.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// The members of the group (voters and learners) by Raft id, with their names.
    pub fn members(&self) -> BTreeMap<u64, String> {
        let metrics = self.raft.metrics().borrow().clone();
        metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(id, member)| (*id, member.name.clone()))
            .collect()
    }

    /// This member's Raft id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Stops this member (the others carry on without it).
    pub async fn shutdown(&self) {
        self.abort_tasks();
        let _ = self.raft.shutdown().await;
    }

    fn abort_tasks(&self) {
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
    }
}

impl Drop for MetaGroup {
    fn drop(&mut self) {
        self.abort_tasks();
    }
}

/// Takes member `id` out of the group's voters and members, on the leader.
pub(crate) async fn remove_voter(
    raft: &Raft<TypeConfig>,
    id: u64,
) -> std::result::Result<(), RaftError<u64, ClientWriteError<u64, types::Member>>> {
    raft.change_membership(ChangeMembers::RemoveVoters([id].into()), false)
        .await
        .map(|_| ())
}

/// Forms the group when this node should, advertises membership, and (as leader) adds the
/// live members that are not in the group yet. Runs until aborted.
async fn drive(raft: Raft<TypeConfig>, node: Node, name: String, expect: usize) {
    let id = node_id(&name);
    let Some(mut changes) = node.cluster_changes() else {
        return;
    };
    let mut metrics = raft.metrics();
    // One membership change at a time: openraft takes one while none is pending.
    let mut adding: Option<u64> = None;
    let mut tried_forming = false;
    let (added_tx, mut added) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    loop {
        let (in_group, leader) = {
            let m = metrics.borrow_and_update();
            let in_group = m.membership_config.membership().nodes().next().is_some();
            (in_group, m.state == ServerState::Leader)
        };
        node.advertise(IN_GROUP_KEY, if in_group { "1" } else { "0" });
        let live: BTreeMap<u64, String> = node
            .cluster_info()
            .map(|info| {
                info.members
                    .into_iter()
                    .filter(|m| m.state == "live")
                    .map(|m| (node_id(&m.name), m.name))
                    .collect()
            })
            .unwrap_or_default();
        if !in_group {
            let others_in_group = node.advertised(IN_GROUP_KEY).iter().any(|(_, v)| v == "1");
            let lowest = live.keys().all(|peer| id < *peer);
            if !tried_forming && !others_in_group && live.len() + 1 >= expect && lowest {
                tried_forming = true;
                let mut founders: BTreeMap<u64, Member> = live
                    .iter()
                    .map(|(peer, name)| (*peer, Member { name: name.clone() }))
                    .collect();
                founders.insert(id, Member { name: name.clone() });
                tracing::info!(members = founders.len(), "meta group: forming");
                if let Err(err) = raft.initialize(founders).await {
                    tracing::debug!(%err, "meta group: not formed here");
                }
            }
        } else if leader && adding.is_none() {
            let (known, voters): (BTreeSet<u64>, BTreeSet<u64>) = {
                let m = metrics.borrow();
                let membership = m.membership_config.membership();
                (
                    membership.nodes().map(|(id, _)| *id).collect(),
                    membership.voter_ids().collect(),
                )
            };
            if let Some((&peer, name)) = live.iter().find(|(peer, _)| !voters.contains(peer)) {
                adding = Some(peer);
                let raft = raft.clone();
                let member = Member { name: name.clone() };
                let learner = known.contains(&peer);
                let done = added_tx.clone();
                tokio::spawn(async move {
                    tracing::info!(member = %member.name, "meta group: adding a member");
                    let added = async {
                        if !learner {
                            raft.add_learner(peer, member, true).await?;
                        }
                        raft.change_membership(ChangeMembers::AddVoterIds([peer].into()), false)
                            .await
                    };
                    if let Err(err) = added.await {
                        tracing::debug!(%err, "meta group: member not added yet");
                    }
                    let _ = done.send(peer);
                });
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            changed = metrics.changed() => if changed.is_err() { return },
            Some(peer) = added.recv() => if adding == Some(peer) { adding = None },
            _ = retry.tick() => {}
        }
    }
}
