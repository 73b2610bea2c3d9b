//! The meta group's RPCs between nodes: JSON request/reply over the cluster's routes, in the
//! node's reserved `$herald` scope (clients of a server cannot name a scope that starts with
//! `$`). Each member answers on `$HERALD.META.<id>.<rpc>`; the request waits at most
//! openraft's deadline for the RPC.

use std::time::Duration;

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

use tokio::sync::watch;

use super::types::{Command, Definitions, Member, TypeConfig};
use crate::Router;

type Id = u64;

/// The scope the meta group talks in.
pub(crate) const SCOPE: &str = "$herald";

/// The subject member `id` answers `rpc` on.
pub(crate) fn subject(id: Id, rpc: &str) -> String {
    format!("$HERALD.META.{id}.{rpc}")
}

/// Makes a client per peer; all share the node's router.
pub(crate) struct Network {
    pub(crate) router: Router,
}

/// The RPCs to one peer.
pub(crate) struct Peer {
    router: Router,
    target: Id,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: Id, _node: &Member) -> Peer {
        Peer {
            router: self.router.clone(),
            target,
        }
    }
}

impl Peer {
    async fn call<Req, Resp, E>(
        &self,
        rpc: &str,
        request: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<Id, Member, RaftError<Id, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body =
            serde_json::to_vec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let reply = self
            .router
            .request(&subject(self.target, rpc), body, ttl)
            .await
            .map_err(|e| match e {
                // Not routed to (yet, or any more): openraft backs off before trying again.
                crate::Error::NoResponders(_) => RPCError::Unreachable(Unreachable::new(&e)),
                e => RPCError::Network(NetworkError::new(&e)),
            })?;
        let answer: Result<Resp, RaftError<Id, E>> = serde_json::from_slice(reply.payload())
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<Id>, RPCError<Id, Member, RaftError<Id>>> {
        self.call("append", &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<Id>,
        option: RPCOption,
    ) -> Result<VoteResponse<Id>, RPCError<Id, Member, RaftError<Id>>> {
        self.call("vote", &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<Id>,
        RPCError<Id, Member, RaftError<Id, InstallSnapshotError>>,
    > {
        self.call("snapshot", &rpc, option.hard_ttl()).await
    }
}

/// Answers the meta RPCs addressed to this member until the subscription ends: Raft's own,
/// and the writes and confirmed reads other members forward to their leader.
pub(crate) async fn serve(
    raft: openraft::Raft<TypeConfig>,
    definitions: watch::Receiver<Arc<Definitions>>,
    mut requests: crate::Subscription,
) {
    while let Some(msg) = requests.recv().await {
        let raft = raft.clone();
        let definitions = definitions.clone();
        tokio::spawn(async move {
            let rpc = msg.subject().rsplit('.').next().unwrap_or_default();
            let answer = match rpc {
                "append" => answer(&msg, |r| raft.append_entries(r)).await,
                "vote" => answer(&msg, |r| raft.vote(r)).await,
                "snapshot" => answer(&msg, |r| raft.install_snapshot(r)).await,
                "write" => {
                    answer(&msg, |command: Command| async {
                        raft.client_write(command)
                            .await
                            .map(|done| done.data)
                            .map_err(|e| e.to_string())
                    })
                    .await
                }
                "read" => {
                    let confirmed = raft.ensure_linearizable().await;
                    let read = confirmed
                        .map(|_| Definitions::clone(&definitions.borrow()))
                        .map_err(|e| e.to_string());
                    serde_json::to_vec(&read).ok()
                }
                _ => None,
            };
            if let Some(answer) = answer
                && let Err(err) = msg.respond(answer)
            {
                tracing::debug!(%err, "meta: cannot answer {}", msg.subject());
            }
        });
    }
}

/// Decodes a request, runs it, and encodes its result (the whole `Result`, as the caller
/// decodes it); `None` for a request that cannot be read (it times out on the caller's side).
async fn answer<Req, Resp, E, F, Fut>(msg: &crate::Message, call: F) -> Option<Vec<u8>>
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
