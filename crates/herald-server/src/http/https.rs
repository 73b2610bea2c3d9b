//! The HTTP door over TLS, when `[tls]` is set: the same routes, served by hyper on each
//! accepted connection once its rustls handshake is done (axum's own server speaks plain TCP
//! only). Shutdown stops accepting and lets open connections finish, as the plain server does.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::shared::Shared;
use crate::tls::Certificates;

/// How long open connections get to finish after shutdown.
const GRACE: Duration = Duration::from_secs(10);

/// Returns once the server's shutdown is raised.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serves `routes` over TLS on `listener` (with the certificates `shared` has when each
/// connection comes) until `shutdown` is raised.
pub(super) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    routes: axum::Router,
    handshake_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let builder = Builder::new(TokioExecutor::new());
    loop {
        let (socket, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, "HTTPS accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut shutdown) => break,
        };
        let _ = socket.set_nodelay(true);
        let Some(acceptor) = shared.tls.as_ref().map(Certificates::acceptor) else {
            return;
        };
        let routes = routes.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(handshake_timeout, acceptor.accept(socket)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => {
                        tracing::debug!(%err, "HTTPS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let service = TowerToHyperService::new(routes);
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(err) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%err, "HTTPS connection ended");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTPS clients still connected 10 s after shutdown; leaving them");
    }
}
