//! The meta group's requests between members: Raft's own, and the writes, member removals
//! and confirmed reads a member that is not the leader forwards to the leader.

use std::sync::Arc;

use tokio::sync::watch;

use super::types::{Command, Definitions, TypeConfig};
use crate::raft::network::{answer, answer_raft};

/// Where the meta group's members answer: `$HERALD.META.<id>.<rpc>`.
pub(crate) const PREFIX: &str = "$HERALD.META";

/// The subject member `id` answers `rpc` on.
pub(crate) fn subject(id: u64, rpc: &str) -> String {
    crate::raft::network::subject(PREFIX, id, rpc)
}

/// Answers the meta requests addressed to this member until the subscription ends.
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
                "write" => {
                    answer(&msg, |command: Command| async {
                        raft.client_write(command)
                            .await
                            .map(|done| done.data)
                            .map_err(|e| e.to_string())
                    })
                    .await
                }
                "remove" => {
                    answer(&msg, |id: u64| async move {
                        super::remove_voter(&raft, id)
                            .await
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
                rpc => answer_raft(&raft, rpc, &msg).await,
            };
            if let Some(answer) = answer
                && let Err(err) = msg.respond(answer)
            {
                tracing::debug!(%err, "meta: cannot answer {}", msg.subject());
            }
        });
    }
}
