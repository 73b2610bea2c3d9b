//! Replicated streams: each stream with more than one replica has its own Raft group
//! (`openraft`) over the nodes that hold it, on the log store and routes every herald group
//! shares (`crate::raft`).
//!
//! **Publishing.** Only the leader's replica subscribes the stream's subjects. What it
//! captures goes to a proposer task, which stamps each message (strictly increasing, above
//! everything applied before) and proposes what has queued up as one entry. Once a majority
//! has appended the entry (and synced it, with `fsync = always`) it is committed and every replica applies it: its stream admits each
//! message with the same checks and stamp (`machine`), so all store the same messages under
//! the same sequences, and the proposer's replica answers the publishers once its own copy
//! is stored. A publish is thus acknowledged only when a majority holds it.
//!
//! **Changes.** A purge or a message delete of a replicated stream is proposed by its leader
//! like a message (stamped, in capture order) and made by every replica as its entry applies;
//! the leader answers the call with its own outcome. A change never runs on one replica only.
//!
//! **Leaders.** A replica that becomes leader first confirms its leadership and applies
//! everything committed before (so its checks see every earlier message), then starts
//! capturing; one that stops leading stops capturing at once. What a deposed leader had
//! captured but not committed is never acknowledged: its publishers time out and retry.
//!
//! | module | holds |
//! |---|---|
//! | `types` | the Raft types: batches of published messages |
//! | `machine` | applying batches to the replica's stream; its snapshots |
//! | `catchup` | fetching a copy's missing messages from another member's |

mod catchup;
mod machine;
mod types;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openraft::{Config, Raft, ServerState};
use tokio::sync::{mpsc, watch};

use crate::Node;
use crate::error::{Error, Result};
use crate::meta::{Member, node_id};
use crate::raft::network::{self, Network};
use crate::streams::stream::{Propose, Stream};
use crate::target::Delivery;
use crate::time::now_nanos;
pub(crate) use types::Change;
use types::{Builder, Proposal, TypeConfig};

/// Most messages one entry carries.
const MAX_BATCH: usize = 1024;

/// Most entries proposed and not yet applied. openraft 0.9 syncs each entry on its own
/// before replicating it, so while this many wait, what is captured gathers into the next
/// entry instead of costing a sync of its own.
const WINDOW: usize = 4;

/// Longest the proposer waits for the oldest entry of its window.
const WINDOW_WAIT: Duration = Duration::from_secs(2);

/// What is wrong with a replica's stream files, if anything: every record of every segment
/// is read and checked (segment indexes are not trusted here), so damage that recovery let
/// through behind an index is found too. A damaged replica is rebuilt from the group's log
/// rather than trusted.
pub(crate) fn damaged(stream: &Stream) -> Option<String> {
    let max_record = stream.writer.log().config().max_msg_size;
    use herald_log::inspect::Item;
    let mut found = None;
    // The sequence after the last record seen: the next segment must start there (a segment
    // cut short in the middle of the log leaves a hole).
    let mut next: Option<u64> = None;
    let scanned = herald_log::inspect::scan(&stream.dir, max_record, |item| {
        if found.is_some() {
            return;
        }
        match item {
            Item::Segment {
                path, first_seq, ..
            } => {
                if let Some(next) = next
                    && next != first_seq
                {
                    found = Some(format!(
                        "{} starts at {first_seq}, after a segment ending before {next}",
                        path.display()
                    ));
                }
            }
            Item::Record(view) => next = Some(view.seq + 1),
            Item::Damage {
                path,
                offset,
                reason,
                ..
            } => found = Some(format!("{} at byte {offset}: {reason}", path.display())),
        }
    });
    if let Err(err) = scanned {
        tracing::warn!(stream = %stream.name, %err, "cannot check the replica's files");
    }
    found
}

/// One member of a replica set, as a status reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// The node's name.
    pub name: String,
    /// Whether it has every entry the leader has (as the leader last heard).
    pub current: bool,
    /// How many entries it is behind the leader.
    pub lag: u64,
    /// How long since it last answered this member (the leader hears from every replica at
    /// each heartbeat); `None` if it never did.
    pub active: Option<Duration>,
}

/// This node's member of a replicated stream's group. Stops when dropped (or
/// [`shutdown`](ReplicaGroup::shutdown)).
pub struct ReplicaGroup {
    raft: Raft<TypeConfig>,
    id: u64,
    /// How many times the group's leader changed, as this member saw it.
    leader_changes: Arc<AtomicU64>,
    leading: watch::Receiver<bool>,
    /// The members the stream is placed on now (its leader makes them the group's voters).
    members: watch::Sender<BTreeMap<u64, Member>>,
    /// When each other member last answered this one.
    heard: network::Heard,
    tasks: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    stream: Arc<Stream>,
    /// The proposer's queue (changes go through it, after what was captured before).
    queue: mpsc::UnboundedSender<Queued>,
    /// The Raft term this member leads the stream in; 0 while it does not (see [`Queued`]).
    term: Arc<AtomicU64>,
}

/// The proposer's side of [`Propose`]: captured messages wait for the proposer task here.
struct Proposer {
    queue: mpsc::UnboundedSender<(u64, Proposal)>,
    /// The term this member's captures belong to (see [`Queued`]).
    term: Arc<AtomicU64>,
}

/// What the proposer queue carries: a proposal with the Raft term this member led in when it
/// was captured (0: it did not lead). The proposer proposes it only in that term: a publish
/// captured while this member led before may have been captured by the leader in between
/// too (both had the stream's interest for a moment), and proposing it in a later term of
/// this member's would store it twice.
type Queued = (u64, Proposal);

impl Propose for Proposer {
    fn propose(&self, msg: &Delivery<'_>) -> bool {
        let Some(item) = types::encode_message(
            msg.subject(),
            msg.reply(),
            msg.header_block(),
            msg.payload(),
        ) else {
            return false;
        };
        let term = self.term.load(Ordering::Acquire);
        self.queue.send((term, Proposal::Message(item))).is_ok()
    }

    fn consumer(&self, name: &str, saved: Option<Vec<u8>>) {
        if let Some(item) = types::encode_consumer(name, saved.as_deref()) {
            let term = self.term.load(Ordering::Acquire);
            let _ = self.queue.send((term, Proposal::Consumer(item)));
        }
    }
}

/// Where and how a member of a stream's group runs.
pub(crate) struct Settings<'a> {
    /// The group's token (unique to the stream).
    pub(crate) group: &'a str,
    /// The nodes holding the stream, by name (this node among them).
    pub(crate) members: &'a [String],
    /// The leader's heartbeat; elections start after 4 to 8 missed ones.
    pub(crate) heartbeat: Duration,
    /// The node's: with `always`, an entry counts toward a commit (and its publishers'
    /// acks) only once synced; otherwise the Raft log is synced in the background, as
    /// unreplicated streams are.
    pub(crate) fsync: herald_log::Fsync,
    /// A member joining a group formed before (a replacement) does not form it: the leader
    /// adds it, and it catches up from the log. A fresh group is formed by all its members
    /// alike.
    pub(crate) joining: bool,
    /// The store holding the replica (changes to its messages are made through it).
    pub(crate) store: crate::streams::Streams,
}

impl ReplicaGroup {
    /// Starts this node's member of a stream's group, as `settings` say, for its replica
    /// `stream`, with its Raft state in `dir`.
    pub(crate) async fn start(
        node: &Node,
        stream: Arc<Stream>,
        dir: &Path,
        settings: Settings<'_>,
    ) -> Result<ReplicaGroup> {
        let Settings {
            group,
            members,
            heartbeat,
            fsync,
            joining,
            store,
        } = settings;
        let info = node
            .cluster_info()
            .ok_or_else(|| Error::Cluster("a replicated stream needs a clustered node".into()))?;
        let id = node_id(&info.name);
        let io =
            |e: std::io::Error| Error::Cluster(format!("stream {} raft state: {e}", stream.name));
        let mut log =
            crate::raft::log_store::LogStore::<TypeConfig>::open(dir, fsync).map_err(io)?;
        let held = openraft::storage::RaftLogStorage::get_log_state(&mut log)
            .await
            .map_err(|e| Error::Cluster(format!("stream {} raft log: {e}", stream.name)))?;
        let replayed_to = held.last_log_id.map_or(0, |l| l.index);
        let snapshot_every = store.raft_snapshot_entries();
        let prefix = format!("$HERALD.RAFT.{group}");
        let router = node.router(network::SCOPE, 1024);
        let peers = machine::Peers {
            router: router.clone(),
            prefix: prefix.clone(),
        };
        let machine = machine::Machine::open(stream.clone(), store, dir, id, replayed_to, peers)
            .map_err(io)?;
        let last_ts = machine.last_ts.clone();
        let heartbeat = heartbeat.as_millis().max(10) as u64;

        let config = Config {
            cluster_name: format!("{}/{group}", info.cluster),
            heartbeat_interval: heartbeat,
            election_timeout_min: heartbeat * 4,
            election_timeout_max: heartbeat * 8,
            // A snapshot records where the stream stands (the stream is the state); the log
            // before it is dropped, keeping some entries for replicas a little behind (0: the
            // log is kept whole).
            snapshot_policy: match snapshot_every {
                0 => openraft::SnapshotPolicy::Never,
                every => openraft::SnapshotPolicy::LogsSinceLast(every),
            },
            max_in_snapshot_log_to_keep: snapshot_every.clamp(1, 1000),
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::Cluster(format!("stream group settings: {e}")))?;
        let requests = router.subscribe(&network::subject(&prefix, id, "*"))?;
        let network = Network::new(router.clone(), &prefix);
        let heard = network.heard();
        let raft = Raft::new(id, Arc::new(config), network, log, machine)
            .await
            .map_err(|e| Error::Cluster(format!("stream group: {e}")))?;
        let founders: BTreeMap<u64, Member> = members
            .iter()
            .map(|name| (node_id(name), Member { name: name.clone() }))
            .collect();
        // Every founding member forms the group alike (openraft allows the same membership
        // on each); one that has a log or a vote already is left as it is.
        if !joining && let Err(err) = raft.initialize(founders.clone()).await {
            tracing::debug!(%err, stream = %stream.name, "stream group formed already");
        }
        let (members_tx, wanted) = watch::channel(founders);
        let (queue, proposals) = mpsc::unbounded_channel();
        let term = Arc::new(AtomicU64::new(0));
        if stream
            .replication
            .set(Arc::new(Proposer {
                queue: queue.clone(),
                term: term.clone(),
            }))
            .is_err()
        {
            return Err(Error::Cluster(format!(
                "stream {} has a Raft group already",
                stream.name
            )));
        }
        let clock = Arc::new(AtomicU64::new(0));
        let (leading_tx, leading) = watch::channel(false);
        let leader_changes = Arc::new(AtomicU64::new(0));
        let tasks = vec![
            tokio::spawn(serve(raft.clone(), stream.clone(), requests)),
            tokio::spawn(propose(raft.clone(), proposals, clock.clone())),
            tokio::spawn(lead(
                raft.clone(),
                stream.clone(),
                clock,
                last_ts,
                leading_tx,
                term.clone(),
            )),
            tokio::spawn(count_leaders(raft.clone(), leader_changes.clone())),
            tokio::spawn(keep_members(raft.clone(), wanted)),
        ];
        Ok(ReplicaGroup {
            raft,
            id,
            heard,
            members: members_tx,
            leader_changes,
            leading,
            tasks: parking_lot::Mutex::new(tasks),
            stream,
            queue,
            term,
        })
    }

    /// Makes `change` on every replica through the group's log, after everything captured
    /// before it, and returns its outcome on this one (how many messages a purge removed; 0
    /// for a delete). Only the leader proposes; another member, or a leader deposed before
    /// the change applied, gets a retryable error (the change may have been made all the
    /// same, as with any request whose answer is lost).
    pub(crate) async fn change(
        &self,
        change: &Change,
        timeout: Duration,
    ) -> crate::streams::Result<u64> {
        use crate::streams::{Error as StreamsError, Reason};
        let unavailable = |why: &str| StreamsError::new(Reason::Unavailable, why);
        if !*self.leading.borrow() {
            return Err(unavailable("this replica does not lead the stream"));
        }
        let item = types::encode_change(change)
            .ok_or_else(|| StreamsError::bad_request("a change too large to propose"))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.queue
            .send((
                self.term.load(Ordering::Acquire),
                Proposal::Change(item, tx),
            ))
            .map_err(|_| unavailable("the stream's group stopped"))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(unavailable("the stream's leader changed")),
            Err(_) => Err(StreamsError::new(
                Reason::Timeout,
                format!("the change was not applied within {timeout:?}"),
            )),
        }
    }

    /// This member's replica of the stream.
    pub(crate) fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// Whether this member leads now (it captures the stream's publishes and answers its
    /// requests), and its changes.
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// The leader's name, if the group has one now.
    pub fn leader(&self) -> Option<String> {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|m| m.name.clone())
    }

    /// How many times the group's leader changed since this member started (its first
    /// leader counts).
    pub fn leader_changes(&self) -> u64 {
        self.leader_changes.load(Ordering::Relaxed)
    }

    /// The other members as the leader sees them (only the leader knows their lag; other
    /// members report them current when they have a leader).
    pub fn replicas(&self) -> Vec<ReplicaStatus> {
        let metrics = self.raft.metrics().borrow().clone();
        let last = metrics.last_log_index.unwrap_or(0);
        let matched = metrics.replication.clone().unwrap_or_default();
        let heard = self.heard.lock().clone();
        metrics
            .membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| Some(**id) != metrics.current_leader)
            .map(|(id, member)| {
                let behind = match matched.get(id) {
                    Some(at) => last.saturating_sub(at.map_or(0, |l| l.index)),
                    None if *id == self.id => {
                        last.saturating_sub(metrics.last_applied.map_or(0, |l| l.index))
                    }
                    None => 0,
                };
                ReplicaStatus {
                    name: member.name.clone(),
                    current: behind == 0 && metrics.current_leader.is_some(),
                    lag: behind,
                    active: heard.get(id).map(Instant::elapsed),
                }
            })
            .collect()
    }

    /// Hands the leadership to another member: the leader stops capturing and stops its
    /// heartbeats until another member (one with every entry: followers refuse to elect a
    /// member with less) has been elected in its place. Fails on a member that does not lead,
    /// or when no other member leads after `timeout` (this one then leads on).
    pub async fn step_down(&self, timeout: Duration) -> Result<String> {
        let mut watch = self.raft.metrics();
        if watch.borrow().current_leader != Some(self.id) {
            return Err(Error::Cluster(
                "this replica does not lead the stream".into(),
            ));
        }
        self.stream.unsubscribe();
        self.raft.runtime_config().heartbeat(false);
        let moved = tokio::time::timeout(timeout, async {
            loop {
                let leader = watch.borrow_and_update().current_leader;
                if leader.is_some_and(|l| l != self.id) {
                    return Ok(());
                }
                if watch.changed().await.is_err() {
                    return Err(Error::Closed("the stream group stopped"));
                }
            }
        })
        .await;
        self.raft.runtime_config().heartbeat(true);
        let moved = moved.unwrap_or_else(|_| {
            Err(Error::Cluster(format!(
                "no other replica leads after {timeout:?}"
            )))
        });
        if moved.is_err() && *self.leading.borrow() {
            // Still the leader: capturing again.
            self.stream.subscribe()?;
        }
        moved?;
        Ok(self.leader().unwrap_or_default())
    }

    /// The stream is placed on `members` now (by name): whichever member leads adds the new
    /// ones as learners, lets them catch up from the log, then makes exactly these the
    /// group's voters.
    pub fn set_members(&self, members: &[String]) {
        let wanted: BTreeMap<u64, Member> = members
            .iter()
            .map(|name| (node_id(name), Member { name: name.clone() }))
            .collect();
        self.members.send_if_modified(|held| {
            let changed = *held != wanted;
            *held = wanted;
            changed
        });
    }

    /// Stops this member (the others carry on without it).
    pub async fn shutdown(&self) {
        self.stream.unsubscribe();
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
        let _ = self.raft.shutdown().await;
    }
}

impl Drop for ReplicaGroup {
    fn drop(&mut self) {
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
    }
}

/// Counts the leaders this member sees, one per change.
async fn count_leaders(raft: Raft<TypeConfig>, changes: Arc<AtomicU64>) {
    let mut metrics = raft.metrics();
    let mut seen = None;
    loop {
        let leader = metrics.borrow_and_update().current_leader;
        if leader.is_some() && leader != seen {
            seen = leader;
            changes.fetch_add(1, Ordering::Relaxed);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Most time a new member is given to catch up before the change is tried again.
const CATCH_UP: Duration = Duration::from_secs(60);

/// While this member leads, makes the group's voters the members `wanted`: new ones join as
/// learners first (a change waits until they have caught up), then one joint change replaces
/// the voters. Retried while it fails (no quorum yet, leadership moving).
async fn keep_members(raft: Raft<TypeConfig>, mut wanted: watch::Receiver<BTreeMap<u64, Member>>) {
    use openraft::ChangeMembers;
    // Leadership and membership only (not every append).
    let mut metrics = raft.server_metrics();
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    loop {
        let goal = wanted.borrow_and_update().clone();
        let (leads, voters, known) = {
            let m = metrics.borrow_and_update();
            let membership = m.membership_config.membership();
            (
                m.state == ServerState::Leader,
                membership
                    .voter_ids()
                    .collect::<std::collections::BTreeSet<u64>>(),
                membership
                    .nodes()
                    .map(|(id, _)| *id)
                    .collect::<std::collections::BTreeSet<u64>>(),
            )
        };
        let goal_ids: std::collections::BTreeSet<u64> = goal.keys().copied().collect();
        if leads && voters != goal_ids && !goal.is_empty() {
            let changed = async {
                for (id, member) in goal.iter().filter(|(id, _)| !known.contains(id)) {
                    tracing::info!(member = %member.name, "stream group: adding a replica");
                    let added =
                        tokio::time::timeout(CATCH_UP, raft.add_learner(*id, member.clone(), true));
                    added
                        .await
                        .map_err(|_| "the new replica did not catch up in time".to_owned())?
                        .map_err(|e| e.to_string())?;
                }
                raft.change_membership(ChangeMembers::ReplaceAllVoters(goal_ids), false)
                    .await
                    .map_err(|e| e.to_string())
            };
            match changed.await {
                Ok(_) => tracing::info!(voters = goal.len(), "stream group: replicas changed"),
                Err(err) => tracing::debug!(%err, "stream group: replicas not changed yet"),
            }
        }
        tokio::select! {
            changed = wanted.changed() => if changed.is_err() { return },
            changed = metrics.changed() => if changed.is_err() { return },
            _ = retry.tick() => {}
        }
    }
}

/// Answers the group's requests addressed to this member: Raft's, and catching another
/// member's copy up from this one.
async fn serve(raft: Raft<TypeConfig>, stream: Arc<Stream>, mut requests: crate::Subscription) {
    while let Some(msg) = requests.recv().await {
        let (raft, stream) = (raft.clone(), stream.clone());
        tokio::spawn(async move {
            let rpc = msg.subject().rsplit('.').next().unwrap_or_default();
            if rpc == catchup::RPC {
                let answer = tokio::task::spawn_blocking(move || {
                    let answer = catchup::answer(&stream, msg.payload());
                    (msg, answer)
                })
                .await;
                if let Ok((msg, answer)) = answer
                    && let Err(err) = msg.respond(answer)
                {
                    tracing::debug!(%err, "stream group: cannot answer a catch-up request");
                }
                return;
            }
            if let Some(answer) = network::answer_raft(&raft, rpc, &msg).await
                && let Err(err) = msg.respond(answer)
            {
                tracing::debug!(%err, "stream group: cannot answer {}", msg.subject());
            }
        });
    }
}

/// Stamps and proposes what the leader captured, a batch per entry, in capture order.
async fn propose(
    raft: Raft<TypeConfig>,
    mut proposals: mpsc::UnboundedReceiver<Queued>,
    clock: Arc<AtomicU64>,
) {
    // Proposed entries not yet applied, with the term they were proposed in.
    let mut waiting = std::collections::VecDeque::with_capacity(WINDOW);
    let mut next = proposals.recv().await;
    while let Some(first) = next.take() {
        // Entries of an earlier term are not waited for: this member may learn of them
        // through a snapshot, which answers none of them.
        let term = raft.metrics().borrow().current_term;
        waiting.retain(|(proposed, _)| *proposed == term);
        if waiting.len() >= WINDOW
            && let Some((_, oldest)) = waiting.pop_front()
        {
            // Its outcome is the publishers' (answered when applied); only its end matters.
            // Bounded all the same: the window only paces proposals.
            let _ = tokio::time::timeout(WINDOW_WAIT, oldest).await;
        }
        let stamp = || {
            let last = clock.load(Ordering::Acquire);
            let ts = now_nanos().max(last + 1);
            clock.store(ts, Ordering::Release);
            ts
        };
        let mut batch = Builder::default();
        // A change ends its batch: its entry's outcome is the change's.
        let mut change = None;
        let mut proposal = Some(first);
        let mut taken = 0;
        // Read after the wait above: the term may have changed meanwhile.
        let now = raft.metrics().borrow().current_term;
        while let Some((captured, item)) = proposal.take() {
            if captured != now {
                // Captured while this member led in an earlier term (or did not lead):
                // dropped (a change's caller hears it from the dropped answer).
                if taken < MAX_BATCH {
                    proposal = proposals.try_recv().ok();
                }
                continue;
            }
            match item {
                Proposal::Message(item) => batch.push_message(&item, stamp()),
                Proposal::Consumer(item) => batch.push_consumer(&item),
                Proposal::Change(item, answer) => {
                    batch.push_message(&item, stamp());
                    change = Some(answer);
                    break;
                }
            }
            taken += 1;
            if taken < MAX_BATCH {
                proposal = proposals.try_recv().ok();
            }
        }
        if taken == 0 && change.is_none() {
            // Everything taken was of an earlier leadership.
            next = proposals.recv().await;
            continue;
        }
        match change {
            // The answer comes from applying the entry; a proposal that fails (this member
            // stopped leading) is never answered, and its publishers retry.
            None => match raft.client_write_ff(batch.finish()).await {
                Ok(applied) => waiting.push_back((term, applied)),
                Err(err) => {
                    tracing::debug!(%err, "stream group stopped");
                    return;
                }
            },
            // Changes are rare: the proposer waits for one to apply, and hands its outcome
            // to the caller.
            Some(answer) => match raft.client_write(batch.finish()).await {
                Ok(written) => {
                    let outcome = written.data.0.unwrap_or_else(|| {
                        Err(crate::streams::Error::closed("the change was not made"))
                    });
                    let _ = answer.send(outcome);
                }
                Err(openraft::error::RaftError::Fatal(err)) => {
                    tracing::debug!(%err, "stream group stopped");
                    return;
                }
                // Not the leader any more: the caller hears it from the dropped answer.
                Err(err) => tracing::debug!(%err, "a change not made here"),
            },
        }
        next = proposals.recv().await;
    }
}

/// Captures the stream's publishes while this member leads, and stops when it does not.
/// `term` says which Raft term the captures belong to: the term of the leadership, set once
/// it is confirmed, and 0 as soon as it ends (this member follows, or leads again in a later
/// term without having been seen to follow in between).
async fn lead(
    raft: Raft<TypeConfig>,
    stream: Arc<Stream>,
    clock: Arc<AtomicU64>,
    last_ts: Arc<AtomicU64>,
    leading: watch::Sender<bool>,
    term: Arc<AtomicU64>,
) {
    let mut metrics = raft.metrics();
    let stop = |why: &str| {
        stream.unsubscribe();
        leading.send_replace(false);
        term.store(0, Ordering::Release);
        tracing::info!(stream = %stream.name, "{why}");
    };
    loop {
        let (leader, current) = {
            let m = metrics.borrow_and_update();
            (m.state == ServerState::Leader, m.current_term)
        };
        if *leading.borrow() && (!leader || term.load(Ordering::Acquire) != current) {
            stop("no longer leading the stream");
        }
        if leader && !*leading.borrow() {
            // Everything committed before is applied first: the new leader's checks see
            // every earlier message and its stamps rise above theirs.
            match tokio::time::timeout(Duration::from_secs(5), raft.ensure_linearizable()).await {
                Ok(Ok(_)) => {
                    clock.fetch_max(last_ts.load(Ordering::Acquire), Ordering::AcqRel);
                    // Captures from now on belong to this term; what was captured in an
                    // earlier one is not proposed (and if the term moved on meanwhile, the
                    // next round ends this leadership at once).
                    term.store(current, Ordering::Release);
                    match stream.subscribe() {
                        Ok(()) => {
                            tracing::info!(stream = %stream.name, "leading the stream");
                            leading.send_replace(true);
                        }
                        Err(err) => {
                            term.store(0, Ordering::Release);
                            tracing::warn!(%err, "cannot capture the stream");
                        }
                    }
                }
                Ok(Err(err)) => tracing::debug!(%err, "not leading the stream after all"),
                Err(_) => tracing::debug!("no quorum to lead the stream with"),
            }
            if *leading.borrow() {
                continue;
            }
            // Not confirmed: look again when something changes, or shortly.
            let changed = tokio::time::timeout(Duration::from_millis(200), metrics.changed());
            if let Ok(Err(_)) = changed.await {
                return;
            }
            continue;
        }
        if metrics.changed().await.is_err() {
            stop("the stream's group stopped");
            return;
        }
    }
}
