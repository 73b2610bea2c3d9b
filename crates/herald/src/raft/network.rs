//! Raft RPCs between nodes, for any of herald's groups: JSON request/reply over the
//! cluster's routes, in the node's reserved `$herald` scope (clients of a server cannot name
//! a scope that starts with `$`). Each member of a group answers on `<prefix>.<id>.<rpc>` (the
//! meta group's prefix is `$HERALD.META`, a stream's `$HERALD.RAFT.<group>`); a request waits
//! at most openraft's deadline for the RPC.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use std::sync::Arc;

use openraft::{Raft, RaftTypeConfig};

use crate::Router;

type Id = u64;

/// The scope the meta group talks in.
pub(crate) const SCOPE: &str = "$herald";

/// The subject member `id` of the group at `prefix` answers `rpc` on.
pub(crate) fn subject(prefix: &str, id: Id, rpc: &str) -> String {
    format!("{prefix}.{id}.{rpc}")
}

/// What the network needs of a Raft configuration.
pub(crate) trait Config:
    RaftTypeConfig<NodeId = Id, SnapshotData = std::io::Cursor<Vec<u8>>>
{
}

impl<C> Config for C where C: RaftTypeConfig<NodeId = Id, SnapshotData = std::io::Cursor<Vec<u8>>> {}

/// When each peer last answered one of this member's RPCs (the leader's heartbeats make it
/// fresh on the leader).
pub(crate) type Heard = Arc<parking_lot::Mutex<BTreeMap<Id, Instant>>>;

/// Makes a client per peer of one group; all share the node's router.
pub(crate) struct Network<C> {
    router: Router,
    prefix: Arc<str>,
    heard: Heard,
    _config: std::marker::PhantomData<C>,
}

impl<C> Network<C> {
    /// The RPCs of the group at `prefix`.
    pub(crate) fn new(router: Router, prefix: &str) -> Network<C> {
        Network {
            router,
            prefix: prefix.into(),
            heard: Heard::default(),
            _config: std::marker::PhantomData,
        }
    }

    /// When each peer last answered.
    pub(crate) fn heard(&self) -> Heard {
        self.heard.clone()
    }
}

/// The RPCs to one peer.
pub(crate) struct Peer<C> {
    router: Router,
    prefix: Arc<str>,
    target: Id,
    heard: Heard,
    _config: std::marker::PhantomData<C>,
}

impl<C: Config> RaftNetworkFactory<C> for Network<C>
where
    C::Node: Serialize + DeserializeOwned,
    C::Entry: Serialize,
{
    type Network = Peer<C>;

    async fn new_client(&mut self, target: Id, _node: &C::Node) -> Peer<C> {
        Peer {
            router: self.router.clone(),
            prefix: self.prefix.clone(),
            target,
            heard: self.heard.clone(),
            _config: std::marker::PhantomData,
        }
    }
}

impl<C: Config> Peer<C>
where
    C::Node: DeserializeOwned,
{
    async fn call<Req, Resp, E>(
        &self,
        rpc: &str,
        request: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<Id, C::Node, RaftError<Id, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body =
            serde_json::to_vec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let reply = self
            .router
            .request(&subject(&self.prefix, self.target, rpc), body, ttl)
            .await
            .map_err(|e| match e {
                // Not routed to (yet, or any more): openraft backs off before trying again.
                crate::Error::NoResponders(_) => RPCError::Unreachable(Unreachable::new(&e)),
                e => RPCError::Network(NetworkError::new(&e)),
            })?;
        self.heard.lock().insert(self.target, Instant::now());
        let answer: Result<Resp, RaftError<Id, E>> = serde_json::from_slice(reply.payload())
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl<C: Config> RaftNetwork<C> for Peer<C>
where
    C::Node: Serialize + DeserializeOwned,
    C::Entry: Serialize,
{
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<Id>, RPCError<Id, C::Node, RaftError<Id>>> {
        self.call("append", &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<Id>,
        option: RPCOption,
    ) -> Result<VoteResponse<Id>, RPCError<Id, C::Node, RaftError<Id>>> {
        self.call("vote", &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<Id>,
        RPCError<Id, C::Node, RaftError<Id, InstallSnapshotError>>,
    > {
        self.call("snapshot", &rpc, option.hard_ttl()).await
    }
}

/// Answers one of Raft's own RPCs (`append`, `vote`, `snapshot`) addressed to this member;
/// `None` for another RPC or a request that cannot be read.
pub(crate) async fn answer_raft<C: Config>(
    raft: &Raft<C>,
    rpc: &str,
    msg: &crate::Message,
) -> Option<Vec<u8>>
where
    C::Node: Serialize + DeserializeOwned,
    C::Entry: Serialize + DeserializeOwned,
{
    match rpc {
        "append" => answer(msg, |r| raft.append_entries(r)).await,
        "vote" => answer(msg, |r| raft.vote(r)).await,
        "snapshot" => answer(msg, |r| raft.install_snapshot(r)).await,
        _ => None,
    }
}

/// Decodes a request, runs it, and encodes its result (the whole `Result`, as the caller
/// decodes it); `None` for a request that cannot be read (it times out on the caller's side).
pub(crate) async fn answer<Req, Resp, E, F, Fut>(msg: &crate::Message, call: F) -> Option<Vec<u8>>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    E: Serialize,
    F: FnOnce(Req) -> Fut,
    Fut: std::future::Future<Output = Result<Resp, E>>,
{
    let request: Req = match serde_json::from_slice(msg.payload()) {
        Ok(request) => request,
        Err(err) => {
            tracing::warn!(%err, subject = msg.subject(), "meta: unreadable request; ignored");
            return None;
        }
    };
    serde_json::to_vec(&call(request).await).ok()
}
