//! Lame duck mode, as nats-server has it for rolling restarts: the server stops accepting
//! clients, withdraws its address from the cluster's `connect_urls`, tells its clients (an
//! INFO with `ldm: true`, on which NATS clients reconnect elsewhere), waits a grace period,
//! then closes the clients still connected a few at a time over the rest of
//! `lame_duck_duration`, so the other servers are not hit by all of them at once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use crate::discovery::{CLIENT_URL_KEY, send_async_info};
use crate::outbound::Close;
use crate::shared::Shared;

/// The shortest pause between two batches of closes.
const MIN_PAUSE: Duration = Duration::from_millis(10);

/// Runs lame duck mode to its end: every client is closed when it returns. A second call
/// while one runs returns at once.
pub(crate) async fn run(
    shared: &Arc<Shared>,
    stop_accepting: &watch::Sender<bool>,
    listener_closed: &watch::Receiver<bool>,
) {
    if shared.lame_duck.swap(true, Ordering::AcqRel) {
        return;
    }
    stop_accepting.send_replace(true);
    // Closed before clients are told: one that reconnects at once must not come back here.
    let _ = listener_closed.clone().wait_for(|closed| *closed).await;
    shared.node.advertise(CLIENT_URL_KEY, "");
    send_async_info(shared);
    let grace = shared.config.lame_duck_grace_period;
    tracing::info!(
        clients = shared.registry.list().len(),
        ?grace,
        duration = ?shared.config.lame_duck_duration,
        "lame duck mode: no new clients; the connected ones are told to go elsewhere"
    );
    let mut shutdown = shared.shutdown.clone();
    let stopped = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    tokio::select! {
        () = close_gradually(shared, grace) => {}
        () = stopped => {}
    }
}

async fn close_gradually(shared: &Arc<Shared>, grace: Duration) {
    tokio::time::sleep(grace).await;
    let clients = shared.registry.list();
    if clients.is_empty() {
        return;
    }
    let spread = shared.config.lame_duck_duration.saturating_sub(grace);
    let batches = (spread.as_millis() / MIN_PAUSE.as_millis()).clamp(1, clients.len() as u128);
    let per_batch = clients.len().div_ceil(batches as usize);
    let pause = spread / batches as u32;
    for (n, batch) in clients.chunks(per_batch).enumerate() {
        if n > 0 {
            tokio::time::sleep(pause).await;
        }
        for conn in batch {
            conn.out.close(Close::Shutdown, None);
        }
    }
}
