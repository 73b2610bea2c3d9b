//! The operations on named groups of topics that both doors offer (`/v1/groups` over HTTP,
//! `$HERALD.API.GROUPS.<OP>` over NATS), with one answer shape: the group as
//! `{"name", "topics"}`, or an error with the HTTP status it maps to.

use bytes::Bytes;
use herald::{Router, Subject};
use serde_json::{Value, json};

/// The subjects of the groups service: `$HERALD.API.GROUPS.<OP>`, with a JSON body.
pub const GROUPS_SUBJECT_PREFIX: &str = "$HERALD.API.GROUPS.";

/// One operation on the groups of a scope.
pub(crate) enum Op {
    List,
    Create { name: String, topics: Vec<String> },
    Get { name: String },
    Delete { name: String },
    Add { name: String, topic: String },
    Remove { name: String, topic: String },
    Broadcast { name: String, payload: Bytes },
}

/// Why an operation failed: the HTTP status it maps to, and what to say.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: u16,
    pub(crate) message: String,
}

impl From<herald::Error> for Failure {
    fn from(err: herald::Error) -> Failure {
        let status = match &err {
            herald::Error::AlreadyExists(_) => 409,
            herald::Error::NotFound(_) => 404,
            _ => 400,
        };
        Failure {
            status,
            message: err.to_string(),
        }
    }
}

fn group(router: &Router, name: &str) -> Result<Value, Failure> {
    let topics = router.groups().topics(name)?;
    Ok(json!({ "name": name, "topics": topics }))
}

/// Runs `op` on the groups of `router`'s scope.
pub(crate) fn run(router: &Router, op: Op) -> Result<Value, Failure> {
    let groups = router.groups();
    match op {
        Op::List => {
            let all: Vec<Value> = groups
                .list()
                .iter()
                // A group deleted between the list and its topics is left out.
                .filter_map(|name| group(router, name).ok())
                .collect();
            Ok(json!({ "groups": all }))
        }
        Op::Create { name, topics } => {
            // Topics are checked first, so that a bad one leaves no group behind.
            for topic in &topics {
                Subject::new(topic)?;
            }
            groups.create(&name)?;
            for topic in &topics {
                groups.add(&name, topic)?;
            }
            group(router, &name)
        }
        Op::Get { name } => group(router, &name),
        Op::Delete { name } => {
            groups.delete(&name)?;
            Ok(json!({ "deleted": name }))
        }
        Op::Add { name, topic } => {
            let added = groups.add(&name, &topic)?;
            let mut answer = group(router, &name)?;
            answer["added"] = Value::Bool(added);
            Ok(answer)
        }
        Op::Remove { name, topic } => {
            if !groups.remove(&name, &topic)? {
                return Err(Failure {
                    status: 404,
                    message: format!("topic {topic:?} is not in group {name:?}"),
                });
            }
            group(router, &name)
        }
        Op::Broadcast { name, payload } => {
            let topics = groups.topics(&name)?.len();
            let delivered = groups.broadcast(&name, payload)?;
            Ok(json!({ "group": name, "topics": topics, "delivered": delivered }))
        }
    }
}

/// The operation a `$HERALD.API.GROUPS.<OP>` request asks for: `LIST`, `CREATE`, `INFO`,
/// `DELETE`, `ADD`, `REMOVE`, `BROADCAST`, with `{"name", "topic"?, "topics"?, "data"?}`.
pub(crate) fn parse_request(op: &str, body: &[u8]) -> Result<Op, Failure> {
    #[derive(serde::Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Body {
        name: Option<String>,
        topic: Option<String>,
        #[serde(default)]
        topics: Vec<String>,
        data: Option<String>,
    }
    let bad = |message: String| Failure {
        status: 400,
        message,
    };
    let body: Body = if body.trim_ascii().is_empty() {
        Body::default()
    } else {
        serde_json::from_slice(body).map_err(|e| bad(format!("bad request: {e}")))?
    };
    let name = || {
        body.name
            .clone()
            .ok_or_else(|| bad("\"name\" is missing".into()))
    };
    let topic = || {
        body.topic
            .clone()
            .ok_or_else(|| bad("\"topic\" is missing".into()))
    };
    Ok(match op {
        "LIST" => Op::List,
        "CREATE" => Op::Create {
            name: name()?,
            topics: body.topics.clone(),
        },
        "INFO" => Op::Get { name: name()? },
        "DELETE" => Op::Delete { name: name()? },
        "ADD" => Op::Add {
            name: name()?,
            topic: topic()?,
        },
        "REMOVE" => Op::Remove {
            name: name()?,
            topic: topic()?,
        },
        "BROADCAST" => Op::Broadcast {
            name: name()?,
            payload: Bytes::from(body.data.clone().unwrap_or_default()),
        },
        other => {
            return Err(bad(format!(
                "unknown groups operation {other:?} (LIST, CREATE, INFO, DELETE, ADD, REMOVE, BROADCAST)"
            )));
        }
    })
}

/// A broadcast publishes on every topic of its group, so a user with publish permissions may
/// broadcast only to a group whose topics it may all publish to: the first topic of group
/// `name` that `allows` refuses, if any (none for a group that does not exist: the operation
/// says so itself).
pub(crate) fn denied_topic(
    router: &Router,
    name: &str,
    allows: impl Fn(&str) -> bool,
) -> Option<String> {
    let topics = router.groups().topics(name).ok()?;
    topics.into_iter().find(|t| !allows(t))
}

/// The group named by the body of a `$HERALD.API.GROUPS.BROADCAST` request, if it parses.
pub(crate) fn broadcast_group(body: &[u8]) -> Option<String> {
    match parse_request("BROADCAST", body) {
        Ok(Op::Broadcast { name, .. }) => Some(name),
        _ => None,
    }
}

/// The JSON answer of a NATS request: the result, or `{"error": {"code", "message"}}`.
pub(crate) fn answer(result: Result<Value, Failure>) -> String {
    match result {
        Ok(value) => value.to_string(),
        Err(f) => json!({ "error": { "code": f.status, "message": f.message } }).to_string(),
    }
}
