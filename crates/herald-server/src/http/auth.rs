//! Authentication on the HTTP door: with users configured, every request but `/healthz`
//! carries `Authorization: Bearer <token>` or Basic user/password, or (for an EventSource,
//! which cannot send headers) `?ticket=` with a single-use ticket from `POST /v1/tickets`.
//! The request then lives in its user's scope, under its permissions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use serde_json::{Value, json};

use super::error::ApiError;
use super::{App, query_value};
use crate::auth::{Permissions, Presented, User, publish_violation};

/// How long a ticket is good for.
const TICKET_LIFE: Duration = Duration::from_secs(60);

/// Most tickets outstanding at once (expired ones are dropped first).
const MAX_TICKETS: usize = 100_000;

/// The user a request proved to be.
#[derive(Clone)]
pub(crate) struct Authenticated(pub(crate) Arc<User>);

/// Single-use tickets for event streams.
#[derive(Default)]
pub(crate) struct Tickets {
    open: Mutex<FxHashMap<String, (Arc<User>, Instant)>>,
}

impl Tickets {
    fn issue(&self, user: Arc<User>) -> Result<String, ApiError> {
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("no randomness: {e}"),
            )
        })?;
        let ticket = hex::encode(bytes);
        let now = Instant::now();
        let mut open = self.open.lock();
        if open.len() >= MAX_TICKETS {
            open.retain(|_, (_, expires)| *expires > now);
            if open.len() >= MAX_TICKETS {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many tickets outstanding",
                ));
            }
        }
        open.insert(ticket.clone(), (user, now + TICKET_LIFE));
        Ok(ticket)
    }

    fn redeem(&self, ticket: &str) -> Option<Arc<User>> {
        let (user, expires) = self.open.lock().remove(ticket)?;
        (expires > Instant::now()).then_some(user)
    }
}

fn unauthorized(message: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"herald\", Bearer"),
    );
    response
}

/// The credentials of a request's `Authorization` header.
fn presented(req: &Request) -> Option<Presented> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(Presented {
            token: Some(rest.trim().to_owned()),
            ..Presented::default()
        });
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        return Some(Presented {
            user: Some(user.to_owned()),
            password: Some(password.to_owned()),
            ..Presented::default()
        });
    }
    None
}

/// The middleware: lets a request through as its user, or answers 401.
pub(crate) async fn authenticate(
    State(app): State<Arc<App>>,
    mut req: Request,
    next: Next,
) -> Response {
    let users = app.shared.users.clone();
    if !users.required() || req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let user = if let Some(ticket) = query_value(req.uri().query(), "ticket") {
        match app.tickets.redeem(&ticket) {
            Some(user) => user,
            // Nothing about the ticket is logged.
            None => return unauthorized("unknown, used or expired ticket"),
        }
    } else {
        let Some(presented) = presented(&req) else {
            return unauthorized("authentication required: Bearer token or Basic user/password");
        };
        let check = tokio::task::spawn_blocking(move || users.authenticate_cached(&presented));
        match check.await {
            Ok(Some(user)) => Arc::new(user),
            _ => {
                tracing::debug!("HTTP authentication failed");
                return unauthorized("invalid credentials");
            }
        }
    };
    // Operations on streams, groups and the server are allowed as their NATS requests are:
    // a user whose permissions would refuse the request subject is refused here too.
    if let Some(perms) = &user.permissions
        && let Some(subject) = api_subject(req.method(), req.uri().path())
        && !perms.publish.allows_subject(&subject)
    {
        return ApiError::new(StatusCode::FORBIDDEN, publish_violation(&subject)).into_response();
    }
    req.extensions_mut().insert(Authenticated(user));
    next.run(req).await
}

/// The NATS request subject an HTTP operation on streams, consumers, groups or the server
/// stands for (the JetStream API's, `$HERALD.API.GROUPS.<OP>`, nats-server's `$SYS`
/// requests); `None` for publishing and subscribing, which are checked on their subjects.
fn api_subject(method: &axum::http::Method, path: &str) -> Option<String> {
    use axum::http::Method as M;
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let js = |rest: String| Some(format!("$JS.API.{rest}"));
    let groups = |op: &str| Some(format!("$HERALD.API.GROUPS.{op}"));
    match (method, parts.as_slice()) {
        (_, ["v1", "streams"]) => js("STREAM.LIST".into()),
        (&M::GET, ["v1", "streams", s]) => js(format!("STREAM.INFO.{s}")),
        (&M::PUT, ["v1", "streams", s]) => js(format!("STREAM.CREATE.{s}")),
        (&M::DELETE, ["v1", "streams", s]) => js(format!("STREAM.DELETE.{s}")),
        (_, ["v1", "streams", s, "purge"]) => js(format!("STREAM.PURGE.{s}")),
        (_, ["v1", "streams", s, "messages", _]) => js(format!("STREAM.MSG.GET.{s}")),
        (_, ["v1", "streams", s, "consume"]) => js(format!("CONSUMER.MSG.NEXT.{s}")),
        (_, ["v1", "streams", s, "consumers"]) => js(format!("CONSUMER.LIST.{s}")),
        (&M::GET, ["v1", "streams", s, "consumers", c]) => js(format!("CONSUMER.INFO.{s}.{c}")),
        (&M::PUT, ["v1", "streams", s, "consumers", c]) => js(format!("CONSUMER.CREATE.{s}.{c}")),
        (&M::DELETE, ["v1", "streams", s, "consumers", c]) => {
            js(format!("CONSUMER.DELETE.{s}.{c}"))
        }
        (_, ["v1", "streams", s, "consumers", c, "ack", _]) => Some(format!("$JS.ACK.{s}.{c}")),
        (_, ["v1", "groups"]) => groups("LIST"),
        (&M::GET, ["v1", "groups", _]) => groups("INFO"),
        (&M::PUT, ["v1", "groups", _]) => groups("CREATE"),
        (&M::DELETE, ["v1", "groups", _]) => groups("DELETE"),
        (&M::PUT, ["v1", "groups", _, "topics", _]) => groups("ADD"),
        (&M::DELETE, ["v1", "groups", _, "topics", _]) => groups("REMOVE"),
        (_, ["v1", "groups", _, "broadcast"]) => groups("BROADCAST"),
        (_, [monitor @ ("varz" | "connz" | "subsz" | "routez" | "jsz" | "metrics")]) => Some(
            format!("$SYS.REQ.SERVER.PING.{}", monitor.to_ascii_uppercase()),
        ),
        _ => None,
    }
}

/// `POST /v1/tickets`: a single-use ticket for one event-stream URL (`?ticket=`), good for
/// 60 s, for the user the request authenticated as.
pub(crate) async fn ticket(
    axum::extract::State(app): super::AppState,
    parts: Parts,
) -> Result<Json<Value>, ApiError> {
    let Some(Authenticated(user)) = parts.extensions.get::<Authenticated>().cloned() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "tickets are for servers with users: this one has none",
        ));
    };
    let ticket = app.tickets.issue(user)?;
    Ok(Json(
        json!({ "ticket": ticket, "expires_in": TICKET_LIFE.as_secs() }),
    ))
}

/// The permissions of a request's user (`None`: no users, or a user without limits).
pub(crate) struct Perms(pub(crate) Option<Arc<Permissions>>);

impl<S: Send + Sync> FromRequestParts<S> for Perms {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Perms(
            parts
                .extensions
                .get::<Authenticated>()
                .and_then(|a| a.0.permissions.clone().map(Arc::new)),
        ))
    }
}

impl Perms {
    /// Refuses a publish (or request) to `subject` the user may not make.
    pub(crate) fn publish(&self, subject: &str) -> Result<(), ApiError> {
        match &self.0 {
            Some(p) if !p.publish.allows_subject(subject) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                publish_violation(subject),
            )),
            _ => Ok(()),
        }
    }

    /// Refuses a subscription the user may not make; else the denied subjects to withhold
    /// from it.
    pub(crate) fn subscribe(
        &self,
        pattern: &str,
        queue: Option<&str>,
    ) -> Result<Vec<String>, ApiError> {
        match &self.0 {
            None => Ok(Vec::new()),
            Some(p) => p
                .subscription(pattern, queue)
                .map_err(|refusal| ApiError::new(StatusCode::FORBIDDEN, refusal)),
        }
    }
}
