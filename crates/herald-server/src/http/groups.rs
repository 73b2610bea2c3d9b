//! Named groups of topics over HTTP (SPEC 2): create, list, change, delete, broadcast, through
//! the operations both doors share.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::error::ApiError;
use super::{AppState, ScopeRouter, read_body};
use crate::groups::{Failure, Op, run};

impl From<Failure> for ApiError {
    fn from(f: Failure) -> ApiError {
        ApiError::new(
            StatusCode::from_u16(f.status).unwrap_or(StatusCode::BAD_REQUEST),
            f.message,
        )
    }
}

fn done(router: &herald::Router, op: Op) -> Result<Json<Value>, ApiError> {
    Ok(Json(run(router, op)?))
}

/// `GET /v1/groups`: every group of the scope with its topics.
pub(crate) async fn list(ScopeRouter(router, _): ScopeRouter) -> Result<Json<Value>, ApiError> {
    done(&router, Op::List)
}

/// `PUT /v1/groups/{name}`: creates the group (409 when it exists), with the topics of an
/// optional `{"topics": [..]}` body.
pub(crate) async fn create(
    State(app): AppState,
    ScopeRouter(router, _): ScopeRouter,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = read_body(&headers, body, app.shared.config.max_payload).await?;
    #[derive(serde::Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Create {
        #[serde(default)]
        topics: Vec<String>,
    }
    let wanted: Create = if body.iter().all(u8::is_ascii_whitespace) {
        Create::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("not a group: {e}")))?
    };
    done(
        &router,
        Op::Create {
            name,
            topics: wanted.topics,
        },
    )
}

/// `GET /v1/groups/{name}`.
pub(crate) async fn get(
    ScopeRouter(router, _): ScopeRouter,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    done(&router, Op::Get { name })
}

/// `DELETE /v1/groups/{name}`.
pub(crate) async fn delete(
    ScopeRouter(router, _): ScopeRouter,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    done(&router, Op::Delete { name })
}

/// `PUT /v1/groups/{name}/topics/{topic}`.
pub(crate) async fn add(
    ScopeRouter(router, _): ScopeRouter,
    Path((name, topic)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    done(&router, Op::Add { name, topic })
}

/// `DELETE /v1/groups/{name}/topics/{topic}`.
pub(crate) async fn remove(
    ScopeRouter(router, _): ScopeRouter,
    Path((name, topic)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    done(&router, Op::Remove { name, topic })
}

/// `POST /v1/groups/{name}/broadcast`: the body is the payload, published on every topic
/// (each of which the user must be allowed to publish to).
pub(crate) async fn broadcast(
    State(app): AppState,
    ScopeRouter(router, _): ScopeRouter,
    perms: super::auth::Perms,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    if let Some(p) = &perms.0
        && let Some(topic) =
            crate::groups::denied_topic(&router, &name, |t| p.publish.allows_subject(t))
    {
        perms.publish(&topic)?;
    }
    let payload = read_body(&headers, body, app.shared.config.max_payload).await?;
    done(&router, Op::Broadcast { name, payload })
}
