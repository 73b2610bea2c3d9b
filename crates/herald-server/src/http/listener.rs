//! The accept loop of the HTTP door, plain or over TLS (when `[tls]` is set, offering HTTP/2
//! by ALPN): each accepted connection is read by [`super::events`] first, which answers an
//! opening HTTP/1.1 event-stream request itself, and is otherwise served by hyper (HTTP/1.1,
//! or HTTP/2 when the client opens with its preface) with the same routes. Shutdown stops
//! accepting and lets open connections finish.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::events;
use crate::shared::Shared;
use crate::stats::Held;
use crate::tls::Certificates;

/// How long open connections get to finish after shutdown.
const GRACE: Duration = Duration::from_secs(10);

/// Returns once the server's shutdown is raised.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serves `routes` on `listener` (over TLS with the certificates `shared` has when each
/// connection comes, if it has any) until the server's shutdown is raised.
pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>, routes: axum::Router) {
    let mut shutdown = shared.shutdown.clone();
    let graceful = GracefulShutdown::new();
    let builder = Builder::new(TokioExecutor::new());
    let write_deadline = shared.config.write_deadline;
    let handshake_timeout = shared.config.tls_timeout;
    loop {
        let (socket, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut shutdown) => break,
        };
        let _ = socket.set_nodelay(true);
        let open = Held::new(
            shared.stats.clone(),
            |s| &s.http_connections,
            Some(|s| &s.http_connections_total),
        );
        let acceptor = shared.tls.as_ref().map(Certificates::https_acceptor);
        let door = Door {
            routes: routes.clone(),
            builder: builder.clone(),
            watcher: graceful.watcher(),
            write_deadline,
        };
        tokio::spawn(async move {
            let _open = open;
            let Some(acceptor) = acceptor else {
                return door.serve(socket).await;
            };
            // Boxed: the handshake's state would otherwise make every connection's task
            // larger, TLS or not.
            let handshake = Box::pin(tokio::time::timeout(
                handshake_timeout,
                acceptor.accept(socket),
            ));
            match handshake.await {
                Ok(Ok(stream)) => door.serve(stream).await,
                Ok(Err(err)) => tracing::debug!(%err, "HTTPS handshake failed"),
                Err(_) => tracing::debug!("HTTPS handshake timed out"),
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP clients still connected 10 s after shutdown; leaving them");
    }
}

/// What one connection is served with.
struct Door {
    routes: axum::Router,
    builder: Builder<TokioExecutor>,
    watcher: Watcher,
    write_deadline: Duration,
}

impl Door {
    async fn serve<S>(self, io: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Some(io) = events::first_request(io, &self.routes, self.write_deadline).await else {
            return;
        };
        let service = TowerToHyperService::new(self.routes);
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        // Boxed: only connections that stay with hyper pay for its state.
        if let Err(err) = Box::pin(self.watcher.watch(connection.into_owned())).await {
            tracing::debug!(%err, "HTTP connection ended");
        }
    }
}
