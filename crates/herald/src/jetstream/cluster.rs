//! One JetStream across a cluster: the meta group decides where each stream lives, and any
//! node answers the API by handing a stream's requests to the node that holds it.
//!
//! A stream created through any node is defined in the meta group (`streams/<scope>/<name>`:
//! the request's config and the node it is placed on, the live member holding the fewest streams)
//! and the create request itself is forwarded to that node, which creates the stream and
//! answers the client. Requests about a stream (info, purge, messages, consumers, pulls)
//! are forwarded the same way, to `$HERALD.JSAPI.<node>` with the call in a
//! `Herald-JS-Call` header (a call may end in a wildcard filter, which no subject may) and
//! the client's reply subject, so the answer goes straight back to the client through the
//! routes. Publishes
//! need nothing of this: only the stream's node captures its subjects, and interest crosses
//! the cluster. Stream names and the account's counts come from the definitions; stream
//! lists are gathered from every member.
//!
//! Each node also keeps its streams in step with the definitions: a stream placed on it
//! that it lacks is created (a forwarded create that was lost, a node that comes back
//! empty), and streams it held before it joined are defined as placed on it.
//!
//! Not yet: replicas (a stream lives on one node and is lost with it; `num_replicas` above 1
//! is refused), moving a stream, and consumers' requests by a node that is cut off from the
//! meta group (they are answered from the last definitions it applied).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::api::{self, Api};
use super::config::StreamConfig;
use super::error::ApiError;
use super::requests;
use crate::Router;
use crate::message::Message;
use crate::meta::{MetaGroup, Outcome};

/// Forwarded API calls: `$HERALD.JSAPI.<node>`, the call in [`CALL_HEADER`].
const FORWARD_PREFIX: &str = "$HERALD.JSAPI.";

/// The header naming a forwarded call (the subject after `$JS.API.`).
const CALL_HEADER: &str = "Herald-JS-Call";

/// How long a gathered list waits for each member.
const GATHER_WAIT: Duration = Duration::from_secs(2);

/// What the clustered front works with.
pub(crate) struct Front {
    pub(crate) api: Arc<Api>,
    pub(crate) meta: Arc<MetaGroup>,
    /// This node's name.
    pub(crate) me: String,
    pub(crate) router: Router,
    pub(crate) runtime: tokio::runtime::Handle,
}

/// The subject forwarded calls for `node` arrive on.
pub(crate) fn forwarded_subject(node: &str) -> String {
    format!("{FORWARD_PREFIX}{node}")
}

impl Front {
    fn key(&self, stream: &str) -> String {
        format!("streams/{}/{stream}", self.router.scope())
    }

    /// The node the definitions place `stream` on.
    fn placed(&self, stream: &str) -> Option<String> {
        let defs = self.meta.definitions();
        let defs = defs.borrow();
        defs.get(&self.key(stream))?
            .get("node")?
            .as_str()
            .map(str::to_owned)
    }

    /// The streams of this scope, by name, with their definitions.
    fn defined(&self) -> BTreeMap<String, Value> {
        let prefix = self.key("");
        let defs = self.meta.definitions();
        let defs = defs.borrow();
        defs.range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k[prefix.len()..].to_owned(), v.clone()))
            .collect()
    }

    /// Hands `call` to `node` with the client's reply subject.
    fn forward(&self, msg: &Message, node: &str, call: &str) {
        let Some(reply) = msg.reply() else { return };
        let mut headers = msg.headers().cloned().unwrap_or_default();
        let sent = headers.insert(CALL_HEADER, call).and_then(|()| {
            self.api.scope.send(
                &forwarded_subject(node),
                Some(reply),
                Some(headers),
                msg.payload().clone(),
                crate::dispatch::Reach::All,
            )
        });
        if let Err(err) = sent {
            tracing::debug!(%err, node, call, "cannot forward a JetStream request");
        }
    }

    fn answer(&self, msg: &Message, body: Vec<u8>) {
        if let Err(err) = msg.respond(body) {
            tracing::debug!(%err, "cannot answer a JetStream API request");
        }
    }
}

/// The stream a call is about, if any.
fn stream_of<'a>(tokens: &[&'a str]) -> Option<&'a str> {
    match tokens {
        ["STREAM", "UPDATE" | "INFO" | "PURGE", name]
        | ["STREAM", "MSG", "GET" | "DELETE", name]
        | ["DIRECT", "GET", name, ..]
        | [
            "CONSUMER",
            "CREATE" | "NAMES" | "LIST" | "INFO" | "DELETE",
            name,
            ..,
        ]
        | ["CONSUMER", "DURABLE", "CREATE", name, ..]
        | ["CONSUMER", "MSG", "NEXT", name, ..] => Some(name),
        _ => None,
    }
}

/// Answers (or forwards) one request made to `$JS.API.>` on this node.
pub(crate) fn on_request(front: &Arc<Front>, msg: Message) {
    let Some(call) = msg.subject().strip_prefix("$JS.API.").map(str::to_owned) else {
        return;
    };
    let tokens: Vec<&str> = call.split('.').collect();
    match tokens.as_slice() {
        ["STREAM", "CREATE", name] => {
            let (front, name) = (front.clone(), (*name).to_owned());
            front.clone().runtime.spawn(async move {
                create(&front, &msg, &name, &call).await;
            });
        }
        ["STREAM", "DELETE", name] => {
            let (front, name) = (front.clone(), (*name).to_owned());
            front.clone().runtime.spawn(async move {
                delete(&front, &msg, &name, &call).await;
            });
        }
        ["STREAM", "NAMES"] => names(front, &msg),
        ["STREAM", "LIST"] => {
            let front = front.clone();
            front
                .clone()
                .runtime
                .spawn(async move { list(&front, &msg).await });
        }
        ["INFO"] => api::handle_call(&front.api, &msg, &call),
        _ => match stream_of(&tokens).and_then(|stream| front.placed(stream)) {
            Some(node) if node != front.me => front.forward(&msg, &node, &call),
            _ => api::handle_call(&front.api, &msg, &call),
        },
    }
}

/// Answers a call forwarded to this node by another.
pub(crate) fn on_forwarded(front: &Arc<Front>, msg: Message) {
    let call = msg
        .headers()
        .and_then(|h| h.get(CALL_HEADER))
        .map(str::to_owned);
    if let Some(call) = call {
        api::handle_call(&front.api, &msg, &call);
    }
}

/// Defines the stream in the meta group, placed on the member holding the fewest streams,
/// and hands the create to that node. A create of a name already defined goes to the node
/// that holds it, which answers as a second create does on one server.
async fn create(front: &Front, msg: &Message, name: &str, call: &str) {
    let config: Value = match serde_json::from_slice(msg.payload()) {
        Ok(config) => config,
        Err(err) => {
            let body = requests::error_response("stream_create", &ApiError::invalid_json(err));
            return front.answer(msg, body);
        }
    };
    let replicas = config
        .get("num_replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    if replicas > front.meta.members().len() as i64 {
        // As nats-server answers more replicas than servers.
        let err = ApiError::new(503, 10023, "insufficient resources");
        return front.answer(msg, requests::error_response("stream_create", &err));
    }
    if replicas > 1 {
        // Replicated streams are not built yet: refused before anything is defined.
        return api::handle_call(&front.api, msg, call);
    }
    if let Some(node) = front.placed(name) {
        return front.forward(msg, &node, call);
    }
    let node = least_loaded(front);
    let definition = json!({ "config": config, "node": node });
    match front.meta.put(&front.key(name), definition, true).await {
        Ok(Outcome::Conflict(held)) => {
            let held = held
                .get("node")
                .and_then(Value::as_str)
                .unwrap_or(&front.me);
            front.forward(msg, held, call);
        }
        Ok(_) => front.forward(msg, &node, call),
        Err(err) => {
            let err = ApiError::new(
                503,
                10008,
                format!("JetStream system temporarily unavailable: {err}"),
            );
            front.answer(msg, requests::error_response("stream_create", &err));
        }
    }
}

/// The live member of the meta group holding the fewest streams (this node on a tie): a
/// member gossip does not see now is passed over.
fn least_loaded(front: &Front) -> String {
    let live: Vec<String> = front
        .router
        .node()
        .cluster_info()
        .map(|info| {
            info.members
                .into_iter()
                .filter(|m| m.state == "live")
                .map(|m| m.name)
                .collect()
        })
        .unwrap_or_default();
    let mut load: BTreeMap<String, usize> = front
        .meta
        .members()
        .into_values()
        .filter(|name| *name == front.me || live.contains(name))
        .map(|name| (name, 0))
        .collect();
    for definition in front.meta.definitions().borrow().values() {
        if let Some(node) = definition.get("node").and_then(Value::as_str)
            && let Some(count) = load.get_mut(node)
        {
            *count += 1;
        }
    }
    let mine = load.get(&front.me).copied().unwrap_or(usize::MAX);
    load.into_iter()
        .min_by_key(|(name, count)| (*count, *name != front.me))
        .filter(|(_, count)| *count < mine)
        .map(|(name, _)| name)
        .unwrap_or_else(|| front.me.clone())
}

/// Removes the definition, then hands the delete to the stream's node.
async fn delete(front: &Front, msg: &Message, name: &str, call: &str) {
    let Some(node) = front.placed(name) else {
        return api::handle_call(&front.api, msg, call);
    };
    if let Err(err) = front.meta.delete(&front.key(name)).await {
        let err = ApiError::new(
            503,
            10008,
            format!("JetStream system temporarily unavailable: {err}"),
        );
        return front.answer(msg, requests::error_response("stream_delete", &err));
    }
    front.forward(msg, &node, call);
}

/// Stream names from the definitions (with a `subject` filter, those whose subjects match).
fn names(front: &Front, msg: &Message) {
    let paging: requests::PagingRequest = requests::decode(msg.payload()).unwrap_or_default();
    let mut names: Vec<String> = front
        .defined()
        .into_iter()
        .filter(|(_, definition)| match paging.subject.as_deref() {
            Some(filter) if !filter.is_empty() => definition["config"]["subjects"]
                .as_array()
                .is_some_and(|s| {
                    s.iter()
                        .filter_map(Value::as_str)
                        .any(|s| crate::subject::overlaps(s, filter))
                }),
            _ => true,
        })
        .map(|(name, _)| name)
        .collect();
    // Streams of this node that no definition names (none once adopted).
    for local in front.api.streams.names() {
        if !names.contains(&local) {
            names.push(local);
        }
    }
    names.sort();
    let total = names.len();
    let offset = paging.offset.min(total);
    let body = json!({
        "total": total, "offset": offset, "limit": 1024,
        "streams": names[offset..].iter().take(1024).collect::<Vec<_>>(),
    });
    front.answer(msg, requests::response("stream_names", &body));
}

/// Stream infos gathered from every member of the meta group.
async fn list(front: &Front, msg: &Message) {
    let mut streams: Vec<Value> = Vec::new();
    for name in front.meta.members().into_values() {
        let mut headers = crate::HeaderMap::new();
        let _ = headers.insert(CALL_HEADER, "STREAM.LIST");
        let subject = forwarded_subject(&name);
        let asked = front
            .router
            .request_with_headers(&subject, headers, "", GATHER_WAIT);
        let Ok(reply) = asked.await else {
            tracing::debug!(node = name, "no stream list from a member");
            continue;
        };
        if let Ok(page) = serde_json::from_slice::<Value>(reply.payload())
            && let Some(items) = page.get("streams").and_then(Value::as_array)
        {
            streams.extend(items.iter().cloned());
        }
    }
    streams.sort_by(|a, b| {
        let name = |v: &Value| v["config"]["name"].as_str().unwrap_or_default().to_owned();
        name(a).cmp(&name(b))
    });
    let total = streams.len();
    let body = json!({"total": total, "offset": 0, "limit": total, "streams": streams});
    front.answer(msg, requests::response("stream_list", &body));
}

/// Keeps this node's streams in step with the definitions until the meta group stops:
/// streams it held before are defined as placed on it, and streams placed on it that it
/// lacks are created from their definitions.
pub(crate) async fn reconcile(front: Arc<Front>) {
    let mut defs = front.meta.definitions();
    let mut adopted = false;
    loop {
        if !adopted && front.meta.leader().is_some() {
            adopted = adopt(&front).await;
        }
        let placed: Vec<(String, Value)> = front
            .defined()
            .into_iter()
            .filter(|(_, d)| d.get("node").and_then(Value::as_str) == Some(&front.me))
            .collect();
        let local = front.api.streams.names();
        for (name, definition) in placed {
            if local.contains(&name) {
                continue;
            }
            let typed = serde_json::from_value::<StreamConfig>(definition["config"].clone())
                .map_err(|e| e.to_string())
                .and_then(|c| c.to_typed().map_err(|e| e.description));
            match typed.and_then(|c| front.api.streams.create(c).map_err(|e| e.to_string())) {
                Ok(_) => tracing::info!(stream = name, "created as the meta group placed it"),
                Err(err) => tracing::warn!(stream = name, %err, "cannot create a placed stream"),
            }
        }
        let wait = tokio::time::sleep(Duration::from_secs(1));
        tokio::select! {
            changed = defs.changed() => if changed.is_err() { return },
            // Until its streams are adopted, a node looks again for a leader now and then.
            () = wait, if !adopted => {}
        }
    }
}

/// Defines the streams this node holds that no definition names, as placed here. True once
/// done (every write answered).
async fn adopt(front: &Front) -> bool {
    let defined = front.defined();
    for info in front.api.streams.list() {
        let name = info.config.name.clone();
        if defined.contains_key(&name) {
            continue;
        }
        let config =
            serde_json::to_value(StreamConfig::from_typed(&info.config)).unwrap_or_default();
        let definition = json!({ "config": config, "node": front.me });
        if let Err(err) = front.meta.put(&front.key(&name), definition, true).await {
            tracing::debug!(stream = name, %err, "stream not adopted yet");
            return false;
        }
    }
    true
}
