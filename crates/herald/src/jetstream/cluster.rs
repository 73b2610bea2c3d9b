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
//! A stream with more than one replica is placed on that many members and replicated
//! through its own Raft group (`replicas`): its requests go to whichever replica leads.
//!
//! Not yet: moving a stream, and consumers' requests by a node that is cut off from the
//! meta group (they are answered from the last definitions it applied).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::api::{self, Api};
use super::config::StreamConfig;
use super::error::ApiError;
use super::replicas::{self, Replicas};
use super::requests;
use crate::Router;
use crate::message::Message;
use crate::meta::{MetaGroup, Outcome};
use crate::replica::Change;

/// Forwarded API calls: `$HERALD.JSAPI.<node>`, the call in [`CALL_HEADER`].
const FORWARD_PREFIX: &str = "$HERALD.JSAPI.";

/// The header naming a forwarded call (the subject after `$JS.API.`).
const CALL_HEADER: &str = "Herald-JS-Call";

/// How long a create waits for a new replicated stream's first leader.
const LEADER_WAIT: Duration = Duration::from_secs(10);

/// How long a replicated stream's call waits for a leader while the leadership moves.
const LEADER_MOVE_WAIT: Duration = Duration::from_secs(3);

/// Set on a call handed on by a replica that does not lead to the one that does (or is
/// about to).
const HOP_HEADER: &str = "Herald-JS-Hop";

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
    /// This node's replicas of replicated streams.
    pub(crate) replicas: Arc<Replicas>,
}

/// Where a stream's requests are answered.
enum Destination {
    /// Here: this node holds the stream, or leads its replicas.
    Here,
    /// Forwarded: `$HERALD.JSAPI.<target>` (a node's name, or a replicated stream's leader).
    There(String),
}

/// The subject forwarded calls for `node` arrive on.
pub(crate) fn forwarded_subject(node: &str) -> String {
    format!("{FORWARD_PREFIX}{node}")
}

impl Front {
    fn key(&self, stream: &str) -> String {
        format!("streams/{}/{stream}", self.router.scope())
    }

    /// The definition of `stream`.
    fn definition(&self, stream: &str) -> Option<Value> {
        let defs = self.meta.definitions();
        let defs = defs.borrow();
        defs.get(&self.key(stream)).cloned()
    }

    /// Where the requests about `stream`, defined by `definition`, are answered.
    fn destination(&self, stream: &str, definition: &Value) -> Destination {
        if let Some(group) = replicas::group_of(definition) {
            return match self.replicas.leads(stream) {
                true => Destination::Here,
                false => Destination::There(replicas::leader_target(group)),
            };
        }
        match definition.get("node").and_then(Value::as_str) {
            Some(node) if node != self.me => Destination::There(node.to_owned()),
            _ => Destination::Here,
        }
    }

    /// Answers `call` here, or forwards it to where `stream` is answered.
    fn route(self: &Arc<Self>, msg: &Message, stream: &str, definition: &Value, call: &str) {
        match self.destination(stream, definition) {
            Destination::Here => answer_here(self, msg, call),
            Destination::There(target) => self.forward(msg, &target, call),
        }
    }

    /// The streams of this scope, by name, with their definitions.
    fn defined(&self) -> BTreeMap<String, Value> {
        let defs = self.meta.definitions();
        let defs = defs.borrow();
        self.defined_in(&defs)
    }

    /// The streams of this scope in `defs`, by name, with their definitions.
    fn defined_in(&self, defs: &crate::meta::Definitions) -> BTreeMap<String, Value> {
        let prefix = self.key("");
        defs.range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k[prefix.len()..].to_owned(), v.clone()))
            .collect()
    }

    /// Hands `call` to `target` (a node, or a replicated stream's leader) with the client's
    /// reply subject. When nothing takes it (a stream between leaders, a node that is down),
    /// the client is told at once to retry.
    fn forward(&self, msg: &Message, target: &str, call: &str) {
        self.send_forward(msg, target, call, false);
    }

    /// [`forward`](Front::forward), marked as forwarded a second time with `hop`.
    fn send_forward(&self, msg: &Message, target: &str, call: &str, hop: bool) {
        let Some(reply) = msg.reply() else { return };
        let mut headers = msg.headers().cloned().unwrap_or_default();
        if hop {
            let _ = headers.insert(HOP_HEADER, "1");
        }
        let sent = headers.insert(CALL_HEADER, call).and_then(|()| {
            self.api.scope.send(
                &forwarded_subject(target),
                Some(reply),
                Some(headers),
                msg.payload().clone(),
                crate::dispatch::Reach::All,
            )
        });
        match sent {
            Ok(0) => self.answer(msg, unavailable(call, "the stream has no leader now")),
            Ok(_) => {}
            Err(err) => {
                tracing::debug!(%err, target, call, "cannot forward a JetStream request");
                self.answer(msg, unavailable(call, &err.to_string()));
            }
        }
    }

    fn answer(&self, msg: &Message, body: Vec<u8>) {
        if let Err(err) = msg.respond(body) {
            tracing::debug!(%err, "cannot answer a JetStream API request");
        }
    }
}

/// The retryable answer to `call` while the cluster cannot answer it (as nats-server's
/// "JetStream system temporarily unavailable").
fn unavailable(call: &str, why: &str) -> Vec<u8> {
    let kind: Vec<String> = call
        .split('.')
        .take(2)
        .map(str::to_ascii_lowercase)
        .collect();
    let err = ApiError::new(
        503,
        10008,
        format!("JetStream system temporarily unavailable: {why}"),
    );
    requests::error_response(&kind.join("_"), &err)
}

/// The stream a call is about, if any.
fn stream_of<'a>(tokens: &[&'a str]) -> Option<&'a str> {
    match tokens {
        ["STREAM", "UPDATE" | "INFO" | "PURGE", name]
        | ["STREAM", "MSG", "GET" | "DELETE", name]
        | ["STREAM", "LEADER", "STEPDOWN", name]
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
        ["SERVER", "REMOVE"] => {
            let front = front.clone();
            front
                .clone()
                .runtime
                .spawn(async move { remove_server(&front, &msg).await });
        }
        ["STREAM", "UPDATE", name]
            if front
                .definition(name)
                .is_some_and(|d| replicas::group_of(&d).is_some()) =>
        {
            let (front, name) = (front.clone(), (*name).to_owned());
            front.clone().runtime.spawn(async move {
                update(&front, &msg, &name, &call).await;
            });
        }
        ["STREAM", "NAMES"] => {
            let front = front.clone();
            front
                .clone()
                .runtime
                .spawn(async move { names(&front, &msg).await });
        }
        ["STREAM", "LIST"] => {
            let front = front.clone();
            front
                .clone()
                .runtime
                .spawn(async move { list(&front, &msg).await });
        }
        ["INFO"] => api::handle_call(&front.api, &msg, &call),
        _ => match stream_of(&tokens).and_then(|s| Some((s, front.definition(s)?))) {
            Some((stream, definition)) => front.route(&msg, stream, &definition, &call),
            None => answer_here(front, &msg, &call),
        },
    }
}

/// Answers a call forwarded to this node by another. A replicated stream's call that
/// reaches a replica that does not lead it (the leadership is moving) waits for a leader:
/// this replica, or another, to which it is handed on (once).
pub(crate) fn on_forwarded(front: &Arc<Front>, msg: Message) {
    let headers = msg.headers();
    let Some(call) = headers.and_then(|h| h.get(CALL_HEADER)).map(str::to_owned) else {
        return;
    };
    let handed_on = headers.is_some_and(|h| h.get(HOP_HEADER).is_some());
    let tokens: Vec<&str> = call.split('.').collect();
    let waiting = stream_of(&tokens)
        .filter(|stream| {
            front
                .definition(stream)
                .is_some_and(|d| replicas::group_of(&d).is_some())
        })
        .filter(|stream| !front.replicas.leads(stream))
        .map(str::to_owned);
    let Some(stream) = waiting else {
        return answer_here(front, &msg, &call);
    };
    let front = front.clone();
    front.clone().runtime.spawn(async move {
        let deadline = tokio::time::Instant::now() + LEADER_MOVE_WAIT;
        let mut poll = tokio::time::interval(Duration::from_millis(10));
        loop {
            if front.replicas.leads(&stream) {
                return answer_here(&front, &msg, &call);
            }
            if !handed_on
                && let Some(leader) = front.replicas.leader_of(&stream)
                && leader != front.me
            {
                return front.send_forward(&msg, &leader, &call, true);
            }
            if tokio::time::Instant::now() >= deadline {
                let why = "the stream's leadership is moving";
                return front.answer(&msg, unavailable(&call, why));
            }
            poll.tick().await;
        }
    });
}

/// Answers `call` on this node: the node that holds the stream, or leads its replicas.
fn answer_here(front: &Arc<Front>, msg: &Message, call: &str) {
    if let Some((change, stream)) = replicated_change(front, msg, call) {
        let (front, msg) = (front.clone(), msg.clone());
        front.clone().runtime.spawn(async move {
            let outcome = match change {
                Ok((kind, change)) => {
                    let made = front.replicas.change(&stream, &change).await;
                    api::change_response(kind, made.map_err(ApiError::from))
                }
                Err((kind, err)) => api::change_response(kind, Err(err)),
            };
            front.answer(&msg, outcome);
        });
        return;
    }
    let Some(stream) = call.strip_prefix("STREAM.LEADER.STEPDOWN.") else {
        return api::handle_call(&front.api, msg, call);
    };
    let (front, msg, stream) = (front.clone(), msg.clone(), stream.to_owned());
    front.clone().runtime.spawn(async move {
        let body = match front.replicas.step_down(&stream).await {
            Ok(()) => requests::response("stream_leader_stepdown", &json!({"success": true})),
            Err(err) => requests::error_response("stream_leader_stepdown", &err),
        };
        front.answer(&msg, body);
    });
}

/// What a purge or message delete of a replicated stream held here asks for, as a change
/// for its group (or why the request is refused), with its kind of response.
#[allow(clippy::type_complexity)]
fn replicated_change(
    front: &Front,
    msg: &Message,
    call: &str,
) -> Option<(
    Result<(api::ChangeKind, Change), (api::ChangeKind, ApiError)>,
    String,
)> {
    let tokens: Vec<&str> = call.split('.').collect();
    let (kind, stream) = match tokens.as_slice() {
        ["STREAM", "PURGE", stream] => (api::ChangeKind::Purge, *stream),
        ["STREAM", "MSG", "DELETE", stream] => (api::ChangeKind::Delete, *stream),
        _ => return None,
    };
    if !front.replicas.holds(stream) {
        return None;
    }
    let change = match kind {
        api::ChangeKind::Purge => requests::parse_request::<requests::PurgeRequest>(msg.payload())
            .map(|req| Change::Purge {
                filter: req.filter,
                below: req.seq,
                keep: req.keep,
            }),
        api::ChangeKind::Delete => {
            requests::parse_request::<requests::MsgDeleteRequest>(msg.payload()).map(|req| {
                Change::DeleteMessage {
                    seq: req.seq,
                    erase: !req.no_erase,
                }
            })
        }
    };
    Some((
        change.map(|c| (kind, c)).map_err(|e| (kind, e)),
        stream.to_owned(),
    ))
}

/// Defines the stream in the meta group, placed on the members holding the fewest streams,
/// and hands the create to the node that holds it (a replicated stream: to its first
/// leader). A create of a name already defined goes where that stream is answered, which
/// answers as a second create does on one server.
async fn create(front: &Arc<Front>, msg: &Message, name: &str, call: &str) {
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
    if replicas > 5 {
        let err = ApiError::new(400, 10074, "replicas > 5 not supported");
        return front.answer(msg, requests::error_response("stream_create", &err));
    }
    if replicas > front.meta.members().len() as i64 {
        // As nats-server answers more replicas than servers.
        let err = ApiError::new(503, 10023, "insufficient resources");
        return front.answer(msg, requests::error_response("stream_create", &err));
    }
    if let Some(definition) = front.definition(name) {
        return front.route(msg, name, &definition, call);
    }
    let placed = least_loaded(front, replicas.max(1) as usize);
    let definition = if replicas > 1 {
        let group = format!("{:016x}", fastrand::u64(..));
        json!({ "config": config, "node": placed[0], "replicas": placed, "group": group })
    } else {
        json!({ "config": config, "node": placed[0] })
    };
    match front
        .meta
        .put(&front.key(name), definition.clone(), true)
        .await
    {
        Ok(Outcome::Conflict(held)) => front.route(msg, name, &held, call),
        Ok(_) if replicas > 1 => {
            // The replicas start as each member applies the definition; the create goes to
            // the first leader they elect.
            let target = replicas::leader_target(replicas::group_of(&definition).unwrap_or(""));
            let subject = forwarded_subject(&target);
            let deadline = tokio::time::Instant::now() + LEADER_WAIT;
            let mut poll = tokio::time::interval(Duration::from_millis(20));
            while !front.replicas.leads(name)
                && !front.api.scope.has_interest(&subject)
                && tokio::time::Instant::now() < deadline
            {
                poll.tick().await;
            }
            front.route(msg, name, &definition, call);
        }
        Ok(_) => front.route(msg, name, &definition, call),
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

/// The `count` live members of the meta group holding the fewest streams (this node first
/// on a tie; members gossip does not see now are passed over). Fewer when fewer are live.
fn least_loaded(front: &Front, count: usize) -> Vec<String> {
    let live = front.router.node().live_members();
    let mut load: BTreeMap<String, usize> = front
        .meta
        .members()
        .into_values()
        .filter(|name| *name == front.me || live.contains(name))
        .map(|name| (name, 0))
        .collect();
    load.entry(front.me.clone()).or_default();
    for definition in front.meta.definitions().borrow().values() {
        let mut holders = replicas::replicas_of(definition);
        if holders.is_empty()
            && let Some(node) = definition.get("node").and_then(Value::as_str)
        {
            holders.push(node.to_owned());
        }
        for node in holders {
            if let Some(count) = load.get_mut(&node) {
                *count += 1;
            }
        }
    }
    let mut ranked: Vec<(usize, bool, String)> = load
        .into_iter()
        .map(|(name, count)| (count, name != front.me, name))
        .collect();
    ranked.sort();
    ranked
        .into_iter()
        .take(count)
        .map(|(_, _, name)| name)
        .collect()
}

/// `$JS.API.SERVER.REMOVE` (`{"peer": "<server name>"}`): a server gone for good leaves
/// the meta group, and each replicated stream it held is placed on another live member
/// instead (the least loaded), so the stream keeps its replica count: its leader adds the
/// new replica, which catches up from the group's log, then drops the old one. A server
/// still online is refused (stop it first: it would be added back as soon as it is seen).
async fn remove_server(front: &Front, msg: &Message) {
    const KIND: &str = "meta_server_remove";
    let fail = |err: ApiError| front.answer(msg, requests::error_response(KIND, &err));
    let asked: Value = match serde_json::from_slice(msg.payload()) {
        Ok(asked) => asked,
        Err(err) => return fail(ApiError::invalid_json(err)),
    };
    let Some(peer) = asked.get("peer").and_then(Value::as_str).map(str::to_owned) else {
        return fail(ApiError::new(400, 10003, "bad request: peer is required"));
    };
    if !front.meta.members().values().any(|name| *name == peer) {
        return fail(ApiError::new(
            400,
            10044,
            "server is not a member of the cluster",
        ));
    }
    if peer == front.me || front.router.node().live_members().contains(&peer) {
        let why = format!("server {peer} is online: stop it before removing it");
        return fail(ApiError::new(400, 10003, why));
    }
    // Its replicas move first, then it leaves the meta group: a removal that fails half way
    // (no meta leader for a moment) is retried whole, and moves what is left.
    for (stream, definition) in front.defined() {
        let mut held = replicas::replicas_of(&definition);
        let Some(at) = held.iter().position(|name| *name == peer) else {
            continue;
        };
        let spare = least_loaded(front, usize::MAX)
            .into_iter()
            .find(|name| *name != peer && !held.contains(name));
        let Some(spare) = spare else {
            tracing::warn!(
                stream,
                peer,
                "no spare server: the stream keeps its dead replica"
            );
            continue;
        };
        held[at] = spare.clone();
        let mut placed = definition.clone();
        placed["replicas"] = json!(held);
        placed["node"] = json!(held[0]);
        let mut joined = replicas::joined_of(&definition);
        joined.push(spare.clone());
        placed["joined"] = json!(joined);
        match front.meta.put(&front.key(&stream), placed, false).await {
            Ok(_) => tracing::info!(stream, from = peer, to = spare, "replica moved"),
            Err(err) => {
                let why = format!("JetStream system temporarily unavailable: {err}");
                return fail(ApiError::new(503, 10008, why));
            }
        }
    }
    if let Err(err) = front.meta.remove_member(&peer).await {
        let why = format!("JetStream system temporarily unavailable: {err}");
        return fail(ApiError::new(503, 10008, why));
    }
    tracing::info!(peer, "server removed from the meta group");
    front.answer(msg, requests::response(KIND, &json!({"success": true})));
}

/// Updates a replicated stream: the new config, once checked against the defined one, goes
/// into the definition (every replica takes it from there, as it applies the change), then
/// the call goes to the leader, which answers with the stream's info.
async fn update(front: &Arc<Front>, msg: &Message, name: &str, call: &str) {
    const KIND: &str = "stream_update";
    let fail = |err: ApiError| front.answer(msg, requests::error_response(KIND, &err));
    let Some(definition) = front.definition(name) else {
        return fail(ApiError::from(crate::streams::Error::stream_not_found()));
    };
    let asked: Value = match serde_json::from_slice(msg.payload()) {
        Ok(asked) => asked,
        Err(err) => return fail(ApiError::invalid_json(err)),
    };
    let checked = api::stream_config(name, msg.payload()).and_then(|config| {
        let old = typed_config(&definition)
            .and_then(|c| c.normalize_replicated().map_err(|e| e.to_string()))
            .map_err(|why| ApiError::new(500, 10052, why))?;
        Ok(crate::streams::store::checked_update(&old, config)?)
    });
    let wanted = match checked {
        Ok(config) => usize::from(config.replicas),
        Err(err) => return fail(err),
    };
    let mut updated = definition.clone();
    updated["config"] = asked;
    if let Err(err) = replace_replicas(front, name, &mut updated, wanted) {
        return fail(err);
    }
    if let Err(err) = front
        .meta
        .put(&front.key(name), updated.clone(), false)
        .await
    {
        let why = format!("JetStream system temporarily unavailable: {err}");
        return fail(ApiError::new(503, 10008, why));
    }
    front.route(msg, name, &updated, call);
}

/// Places a replicated stream on `wanted` replicas in `definition`: more are the least
/// loaded live servers that do not hold it yet (they join the group and catch up from its
/// log); fewer drop the replicas that are offline first, never the leader (the leader makes
/// the group's voters the replicas listed, and a dropped replica deletes itself).
fn replace_replicas(
    front: &Front,
    stream: &str,
    definition: &mut Value,
    wanted: usize,
) -> Result<(), ApiError> {
    let mut held = replicas::replicas_of(definition);
    if held.len() == wanted {
        return Ok(());
    }
    if wanted > 5 {
        return Err(ApiError::new(400, 10074, "replicas > 5 not supported"));
    }
    if wanted > held.len() {
        let spares: Vec<String> = least_loaded(front, usize::MAX)
            .into_iter()
            .filter(|name| !held.contains(name))
            .take(wanted - held.len())
            .collect();
        if held.len() + spares.len() < wanted {
            // As nats-server answers more replicas than servers.
            return Err(ApiError::new(503, 10023, "insufficient resources"));
        }
        let mut joined = replicas::joined_of(definition);
        joined.extend(spares.iter().cloned());
        held.extend(spares);
        definition["joined"] = json!(joined);
    } else {
        let leader = front.replicas.leader_of(stream);
        let live = front.router.node().live_members();
        let up = |name: &String| *name == front.me || live.contains(name);
        while held.len() > wanted {
            let drop = held
                .iter()
                .rposition(|name| Some(name) != leader.as_ref() && !up(name))
                .or_else(|| held.iter().rposition(|name| Some(name) != leader.as_ref()));
            match drop {
                Some(at) => {
                    held.remove(at);
                }
                None => break,
            }
        }
    }
    tracing::info!(stream, replicas = ?held, "replicas changed");
    definition["node"] = json!(held[0]);
    definition["replicas"] = json!(held);
    Ok(())
}

/// Removes the definition, then hands the delete to the stream's node.
async fn delete(front: &Front, msg: &Message, name: &str, call: &str) {
    let Some(definition) = front.definition(name) else {
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
    if replicas::group_of(&definition).is_some() {
        // Each replica stops and deletes itself as it applies the removal.
        let body = requests::response("stream_delete", &json!({"success": true}));
        return front.answer(msg, body);
    }
    let node = definition
        .get("node")
        .and_then(Value::as_str)
        .unwrap_or(&front.me);
    front.forward(msg, node, call);
}

/// Stream names from the definitions (with a `subject` filter, those whose subjects match).
async fn names(front: &Front, msg: &Message) {
    let paging: requests::PagingRequest = requests::decode(msg.payload()).unwrap_or_default();
    // Confirmed with the meta group's leader: a stream just deleted (or created) through
    // another server is listed as it is now, never as this member last applied it.
    let defs = match front.meta.read().await {
        Ok(defs) => defs,
        Err(err) => return front.answer(msg, unavailable("STREAM.NAMES", &err.to_string())),
    };
    let wanted = |subjects: &[String]| match paging.subject.as_deref() {
        Some(filter) if !filter.is_empty() => {
            subjects.iter().any(|s| crate::subject::overlaps(s, filter))
        }
        _ => true,
    };
    let mut names: Vec<String> = front
        .defined_in(&defs)
        .into_iter()
        .filter(|(_, definition)| {
            let subjects: Vec<String> = definition["config"]["subjects"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            wanted(&subjects)
        })
        .map(|(name, _)| name)
        .collect();
    // Streams of this node that no definition names (none once adopted). A replica of a
    // deleted stream is on its way out, not a stream.
    for info in front.api.streams.list() {
        let local = info.config.name;
        if !names.contains(&local)
            && !front.replicas.holds(&local)
            && !defs.contains_key(&front.key(&local))
            && wanted(&info.config.subjects)
        {
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
        let defined = front.defined();
        replicas::reconcile(&front, &defined).await;
        let placed: Vec<(String, Value)> = defined
            .into_iter()
            .filter(|(_, d)| replicas::group_of(d).is_none())
            .filter(|(_, d)| d.get("node").and_then(Value::as_str) == Some(&front.me))
            .collect();
        let local = front.api.streams.names();
        for (name, definition) in placed {
            if local.contains(&name) {
                continue;
            }
            match typed_config(&definition)
                .and_then(|c| front.api.streams.create(c).map_err(|e| e.to_string()))
            {
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

/// The stream config a definition holds, as a create request gave it (its `null`s as
/// absent fields).
pub(crate) fn typed_config(definition: &Value) -> Result<crate::streams::StreamConfig, String> {
    let body = serde_json::to_vec(&definition["config"]).map_err(|e| e.to_string())?;
    requests::decode::<StreamConfig>(&body)
        .and_then(|c| c.to_typed())
        .map_err(|e| e.description)
}

/// Defines the streams this node holds that no definition names, as placed here. True once
/// done (every write answered).
async fn adopt(front: &Front) -> bool {
    let defined = front.defined();
    for info in front.api.streams.list() {
        let name = info.config.name.clone();
        // A replica whose stream is no longer defined is not adopted: it is deleted.
        if defined.contains_key(&name) || info.config.replicas > 1 {
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
