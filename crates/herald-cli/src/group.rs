//! `herald group ...`: named groups of topics in a scope, through `$HERALD.API.GROUPS.<OP>`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::client::ClientArgs;

type Result = std::result::Result<(), Box<dyn std::error::Error>>;

/// `herald group ...`.
#[derive(Debug, clap::Subcommand)]
pub enum GroupCommand {
    /// Create a group, with topics if given.
    Create {
        /// The group's name.
        name: String,
        /// Topics to put in it.
        topics: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a group.
    Rm {
        /// The group's name.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add a topic to a group.
    Add {
        /// The group's name.
        name: String,
        /// The topic (a literal subject).
        topic: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a topic from a group.
    Remove {
        /// The group's name.
        name: String,
        /// The topic.
        topic: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the groups of the scope with their topics.
    Ls {
        /// Print the server's JSON answer as is.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a group's topics, one per line.
    Topics {
        /// The group's name.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Publish a payload on every topic of a group.
    Broadcast {
        /// The group's name.
        name: String,
        /// The payload (text).
        data: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Runs a `herald group` command.
pub async fn run(command: GroupCommand) -> Result {
    match command {
        GroupCommand::Create {
            name,
            topics,
            client,
        } => {
            let group = call(&client, "CREATE", json!({ "name": name, "topics": topics })).await?;
            println!("created group {name} with {} topics", topic_count(&group));
        }
        GroupCommand::Rm { name, client } => {
            call(&client, "DELETE", json!({ "name": name })).await?;
            println!("deleted group {name}");
        }
        GroupCommand::Add {
            name,
            topic,
            client,
        } => {
            let group = call(&client, "ADD", json!({ "name": name, "topic": topic })).await?;
            let added = group.get("added").and_then(Value::as_bool).unwrap_or(false);
            let was = if added { "added" } else { "already in" };
            println!(
                "{topic} {was} group {name} ({} topics)",
                topic_count(&group)
            );
        }
        GroupCommand::Remove {
            name,
            topic,
            client,
        } => {
            let group = call(&client, "REMOVE", json!({ "name": name, "topic": topic })).await?;
            println!(
                "removed {topic} from group {name} ({} topics)",
                topic_count(&group)
            );
        }
        GroupCommand::Ls { json, client } => {
            let list = call(&client, "LIST", json!({})).await?;
            if json {
                println!("{list}");
                return Ok(());
            }
            let groups = list
                .get("groups")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if groups.is_empty() {
                println!("no groups");
            }
            for group in groups {
                let name = group.get("name").and_then(Value::as_str).unwrap_or("?");
                println!("{name}\t{} topics", topic_count(&group));
            }
        }
        GroupCommand::Topics { name, client } => {
            let group = call(&client, "INFO", json!({ "name": name })).await?;
            for topic in group
                .get("topics")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                println!("{}", topic.as_str().unwrap_or_default());
            }
        }
        GroupCommand::Broadcast { name, data, client } => {
            let sent = call(&client, "BROADCAST", json!({ "name": name, "data": data })).await?;
            println!(
                "broadcast to {} topics of {name}: {} deliveries",
                sent.get("topics").and_then(Value::as_u64).unwrap_or(0),
                sent.get("delivered").and_then(Value::as_u64).unwrap_or(0)
            );
        }
    }
    Ok(())
}

fn topic_count(group: &Value) -> usize {
    group
        .get("topics")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

/// One request to the groups service of the client's scope; its answer, or its error.
async fn call(
    client: &ClientArgs,
    op: &str,
    body: Value,
) -> std::result::Result<Value, Box<dyn std::error::Error>> {
    let client = client.connect("herald group").await?;
    let subject = format!("{}{op}", herald_server::GROUPS_SUBJECT_PREFIX);
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        client.request(subject.clone(), body.to_string().into()),
    )
    .await
    .map_err(|_| "the server did not answer within 5 s")?
    .map_err(|e| format!("{subject}: {e} (is this a herald server?)"))?;
    let answer: Value = serde_json::from_slice(&reply.payload)
        .map_err(|e| format!("the server's answer is not JSON: {e}"))?;
    if let Some(message) = answer
        .get("error")
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
    {
        return Err(message.into());
    }
    Ok(answer)
}
