//! The HTTP door (SPEC 4.2): publish, request and subscribe over HTTP and Server-Sent
//! Events, and the monitoring endpoints. It is a second door to the same node: a publish here
//! goes through the scope's router like a NATS client's, and an event stream is a target in
//! the scope's index like a NATS subscription.
//!
//! | module | holds |
//! |---|---|
//! | `auth` | who a request is: credentials, tickets, permissions |
//! | `error` | the JSON error answer and the status of each failure |
//! | `envelope` | the JSON form of a message |
//! | `publish` | `POST /v1/publish[/{subject}]`, `POST /v1/request/{subject}` |
//! | `sse` | event streams: the index target, its bounded buffer, `GET /v1/subscribe/{pattern}` |
//! | `streams` | streams, consumers, stored messages and acks by sequence |
//! | `consume` | a stream's messages as events, resumable with `Last-Event-ID` |
//! | `groups` | named groups of topics |
//! | `listener` | the accept loop of the HTTP door, plain or over TLS (rustls) |
//! | `events` | event-stream connections written outside hyper; the rest handed to hyper |
//! | `metrics` | `/metrics`: Prometheus text from what a scrape gathers |
//! | `openapi` | `/v1/openapi.json`, made from the route table |
//! | `monitor` | `/healthz` and nats-server's `/varz`, `/connz`, `/subsz`, `/routez`, `/jsz` |

mod auth;
mod consume;
mod envelope;
mod error;
mod events;
mod groups;
mod listener;
mod metrics;
mod monitor;
mod openapi;
mod publish;
mod sse;
mod streams;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::routing::{MethodRouter, delete, get, post, put};
use bytes::Bytes;
use herald::Router;
use herald::streams::Streams;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::shared::Shared;
use error::ApiError;

/// What every HTTP handler reaches.
pub(crate) struct App {
    pub(crate) shared: Arc<Shared>,
    pub(crate) streams: Option<Streams>,
    /// In a cluster: the replicated streams this node holds a replica of.
    pub(crate) replication: Option<herald::jetstream::Replication>,
    pub(crate) tickets: auth::Tickets,
}

type AppState = axum::extract::State<Arc<App>>;

/// The routes whose answer is an event stream: a connection opened with one of them is
/// served outside hyper (see `events`).
pub(crate) const EVENT_STREAMS: [&str; 2] =
    ["/v1/subscribe/{pattern}", "/v1/streams/{name}/consume"];

/// Serves the HTTP API on `listener` until the server's shutdown signal; open event
/// streams end then too.
pub(crate) fn serve(listener: TcpListener, app: Arc<App>) -> JoinHandle<()> {
    let cors = cors(&app.shared.config.http_cors);
    let mut routes = axum::Router::new();
    for route in table() {
        routes = routes.route(route.path, route.handler);
    }
    let routes = routes
        .fallback(|| async { ApiError::no_route() })
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::authenticate,
        ))
        .with_state(app.clone());
    let routes = match cors {
        Some(cors) => routes.layer(cors),
        None => routes,
    };
    tokio::spawn(listener::serve(listener, app.shared.clone(), routes))
}

/// One route of the API: where, what it does (for the OpenAPI document), and its handler.
pub(crate) struct Route {
    pub(crate) method: Method,
    pub(crate) path: &'static str,
    pub(crate) summary: &'static str,
    handler: MethodRouter<Arc<App>>,
}

fn route(
    method: Method,
    path: &'static str,
    summary: &'static str,
    handler: MethodRouter<Arc<App>>,
) -> Route {
    Route {
        method,
        path,
        summary,
        handler,
    }
}

/// Every route, once: the router and the OpenAPI document are both made from this table,
/// so the document cannot list a route that does not exist or miss one that does.
pub(crate) fn table() -> Vec<Route> {
    use Method as M;
    vec![
        route(
            M::POST,
            "/v1/publish",
            "Publish a batch of message envelopes, checked whole first",
            post(publish::batch),
        ),
        route(
            M::POST,
            "/v1/publish/{subject}",
            "Publish the body on a subject (a stream that captures it answers with its sequence)",
            post(publish::single),
        ),
        route(
            M::POST,
            "/v1/request/{subject}",
            "Request/reply: the reply's payload is the answer",
            post(publish::request),
        ),
        route(
            M::GET,
            EVENT_STREAMS[0],
            "Messages matching a pattern as Server-Sent Events",
            get(sse::subscribe),
        ),
        route(
            M::GET,
            "/v1/streams",
            "List the streams",
            get(streams::list),
        ),
        route(
            M::GET,
            "/v1/streams/{name}",
            "A stream's configuration and state",
            get(streams::get),
        ),
        route(
            M::PUT,
            "/v1/streams/{name}",
            "Create or update a stream",
            put(streams::put),
        ),
        route(
            M::DELETE,
            "/v1/streams/{name}",
            "Delete a stream",
            delete(streams::delete),
        ),
        route(
            M::POST,
            "/v1/streams/{name}/purge",
            "Purge a stream (all, by subject, below a sequence, keeping some)",
            post(streams::purge),
        ),
        route(
            M::GET,
            "/v1/streams/{name}/messages/{seq}",
            "One stored message as an envelope",
            get(streams::message),
        ),
        route(
            M::GET,
            EVENT_STREAMS[1],
            "A stream's messages as Server-Sent Events, resumable with Last-Event-ID",
            get(consume::consume),
        ),
        route(
            M::GET,
            "/v1/streams/{name}/consumers",
            "List a stream's consumers",
            get(streams::consumers),
        ),
        route(
            M::GET,
            "/v1/streams/{name}/consumers/{consumer}",
            "A consumer's configuration and position",
            get(streams::get_consumer),
        ),
        route(
            M::PUT,
            "/v1/streams/{name}/consumers/{consumer}",
            "Create a durable consumer",
            put(streams::put_consumer),
        ),
        route(
            M::DELETE,
            "/v1/streams/{name}/consumers/{consumer}",
            "Delete a consumer",
            delete(streams::delete_consumer),
        ),
        route(
            M::POST,
            "/v1/streams/{name}/consumers/{consumer}/ack/{seq}",
            "Ack, nak, term or extend a delivered message",
            post(streams::ack_message),
        ),
        route(
            M::GET,
            "/v1/groups",
            "List the groups of topics",
            get(groups::list),
        ),
        route(
            M::GET,
            "/v1/groups/{name}",
            "A group's topics",
            get(groups::get),
        ),
        route(
            M::PUT,
            "/v1/groups/{name}",
            "Create a group",
            put(groups::create),
        ),
        route(
            M::DELETE,
            "/v1/groups/{name}",
            "Delete a group",
            delete(groups::delete),
        ),
        route(
            M::PUT,
            "/v1/groups/{name}/topics/{topic}",
            "Add a topic to a group",
            put(groups::add),
        ),
        route(
            M::DELETE,
            "/v1/groups/{name}/topics/{topic}",
            "Remove a topic from a group",
            delete(groups::remove),
        ),
        route(
            M::POST,
            "/v1/groups/{name}/broadcast",
            "Publish the body on every topic of a group",
            post(groups::broadcast),
        ),
        route(
            M::POST,
            "/v1/tickets",
            "A single-use ticket (60 s) for one event-stream URL (?ticket=)",
            post(auth::ticket),
        ),
        route(
            M::GET,
            "/v1/openapi.json",
            "This document",
            get(openapi::document),
        ),
        route(
            M::GET,
            "/healthz",
            "Health: 200 while serving",
            get(monitor::healthz),
        ),
        route(
            M::GET,
            "/metrics",
            "Prometheus metrics",
            get(metrics::metrics),
        ),
        route(
            M::GET,
            "/varz",
            "Server information and totals (nats-server's fields)",
            get(monitor::varz),
        ),
        route(
            M::GET,
            "/connz",
            "Open NATS connections (nats-server's fields)",
            get(monitor::connz),
        ),
        route(
            M::GET,
            "/subsz",
            "Subscription counts (nats-server's fields)",
            get(monitor::subsz),
        ),
        route(
            M::GET,
            "/routez",
            "Cluster routes (nats-server's fields)",
            get(monitor::routez),
        ),
        route(
            M::GET,
            "/jsz",
            "Streams totals (nats-server's fields)",
            get(monitor::jsz),
        ),
    ]
}

/// The CORS layer for the configured origins, if any.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            // Herald-Header-* names are open-ended: mirror what the preflight asks for.
            .allow_headers(tower_http::cors::AllowHeaders::mirror_request())
            .expose_headers([HeaderName::from_static("nats-msg-id")])
            .max_age(Duration::from_secs(600)),
    )
}

/// The router of a request's scope: the `Herald-Scope` header, else `?scope=`, else
/// `default`.
pub(crate) struct ScopeRouter(pub(crate) Router, pub(crate) String);

impl FromRequestParts<Arc<App>> for ScopeRouter {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        if let Some(auth::Authenticated(user)) = parts.extensions.get::<auth::Authenticated>() {
            // A user's requests live in its scope; naming another is refused, not ignored.
            let asked = parts
                .headers
                .get("herald-scope")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .or_else(|| query_value(parts.uri.query(), "scope"));
            if asked.as_ref().is_some_and(|s| *s != user.scope) {
                return Err(ApiError::new(
                    axum::http::StatusCode::FORBIDDEN,
                    "this user's requests are in its own scope",
                ));
            }
            let router = app.shared.router(&user.scope).map_err(scope_refused)?;
            return Ok(ScopeRouter(router, user.scope.clone()));
        }
        let from_header = match parts.headers.get("herald-scope") {
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| ApiError::bad_request("Herald-Scope is not text"))?
                    .to_owned(),
            ),
            None => None,
        };
        let scope = match from_header {
            Some(scope) => scope,
            None => query_value(parts.uri.query(), "scope").unwrap_or_else(|| "default".into()),
        };
        if !crate::auth::valid_scope(&scope) {
            return Err(ApiError::bad_request(format!("invalid scope {scope:?}")));
        }
        let router = app.shared.router(&scope).map_err(scope_refused)?;
        Ok(ScopeRouter(router, scope))
    }
}

/// A request for a new scope past `max_scopes`.
fn scope_refused(err: herald::Error) -> ApiError {
    ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, err.to_string())
}

/// One parameter of a query string, decoded.
pub(crate) fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    let query = query?;
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// A humantime duration from a query parameter.
pub(crate) fn duration(
    value: Option<&str>,
    name: &str,
    default: Duration,
) -> Result<Duration, ApiError> {
    match value {
        None => Ok(default),
        Some(text) => humantime::parse_duration(text)
            .map_err(|e| ApiError::bad_request(format!("{name}: not a duration ({e}): {text:?}"))),
    }
}

/// Reads a request body of at most `limit` bytes: one that says it is larger gets 413 before
/// a byte of it is read, one that turns out larger stops being read at the limit.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    if let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && length > limit as u64
    {
        return Err(ApiError::too_large(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|err| {
        let mut source: Option<&dyn std::error::Error> = Some(&err);
        while let Some(e) = source {
            if e.is::<http_body_util::LengthLimitError>() {
                return ApiError::too_large(limit);
            }
            source = e.source();
        }
        ApiError::bad_request(format!("cannot read the request body: {err}"))
    })
}
