//! `herald stream add|ls|info|rm|purge` and `herald consume`: streams and pull consumers through
//! async-nats's JetStream API, so they work against nats-server too.
//!
//! Every failure becomes one line that says what to do: a server without a data directory does
//! not answer the JetStream API at all (no responders), which reads "no JetStream here"; an API
//! error reads as the server's description, and a missing stream as "stream NAME not found".

mod consume;
mod failure;
mod show;

use std::fmt::Write as _;
use std::time::Duration;

use async_nats::jetstream::response::Response;
use async_nats::jetstream::stream;
use async_nats::jetstream::{self, Context};
use futures::StreamExt;
use serde_json::Value;

use crate::client::{ClientArgs, parse_duration};
pub use consume::{ConsumeArgs, consume};
use failure::{Failure, Hint};
use show::{bytes, describe_config, print, table, timestamp};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// `herald stream ...`.
#[derive(Debug, clap::Subcommand)]
pub enum StreamCommand {
    /// Create a stream (a stream of that name with the same configuration is left as is).
    Add(AddArgs),
    /// List the streams: subjects, messages, bytes, sequences, consumers.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show a stream's configuration and state.
    Info(InfoArgs),
    /// Delete a stream with its messages and consumers.
    #[command(alias = "delete")]
    Rm(NameArgs),
    /// Delete a stream's messages: all, all but the newest (--keep), or below a sequence (--seq).
    Purge(PurgeArgs),
}

/// `herald stream add NAME`.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// Stream name (no dots, wildcards or spaces).
    name: String,
    /// Subjects or patterns to store, comma-separated or repeated [default: the stream's name].
    #[arg(long, value_delimiter = ',', value_name = "SUBJECT,..")]
    subjects: Vec<String>,
    /// Most messages kept [default: unlimited].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..))]
    max_msgs: Option<i64>,
    /// Most bytes kept [default: unlimited].
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(i64).range(1..))]
    max_bytes: Option<i64>,
    /// Oldest message kept, e.g. 1h or 7days [default: unlimited].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    max_age: Option<Duration>,
    /// Largest message accepted, in bytes [default: unlimited].
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(i32).range(1..))]
    max_msg_size: Option<i32>,
    /// How long a `Nats-Msg-Id` is remembered to drop duplicates [default: 2m, or max age].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    dupe_window: Option<Duration>,
    /// At a limit: drop the oldest messages, or refuse new ones.
    #[arg(long, value_enum, default_value_t = Discard::Old)]
    discard: Discard,
    /// Where messages are kept.
    #[arg(long, value_enum, default_value_t = Storage::File)]
    storage: Storage,
    /// Copies kept, on that many servers of a cluster (1 to 5; more than one needs a
    /// cluster with data directories).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    replicas: u8,
    #[command(flatten)]
    client: ClientArgs,
}

/// What a stream does when a limit is reached.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Discard {
    /// Drop the oldest messages.
    Old,
    /// Refuse new messages.
    New,
}

/// Where a stream keeps its messages.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Storage {
    /// In the data directory's files.
    File,
    /// In memory.
    Memory,
}

/// `herald stream ls`.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Print a JSON array of the server's stream infos instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// `herald stream info NAME`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Stream name.
    name: String,
    /// Print the server's stream info JSON as is.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// `herald stream rm NAME`.
#[derive(Debug, clap::Args)]
pub struct NameArgs {
    /// Stream name.
    name: String,
    #[command(flatten)]
    client: ClientArgs,
}

/// `herald stream purge NAME`.
#[derive(Debug, clap::Args)]
pub struct PurgeArgs {
    /// Stream name.
    name: String,
    /// Keep the newest N messages.
    #[arg(long, value_name = "N", conflicts_with = "seq")]
    keep: Option<u64>,
    /// Delete the messages below this sequence (it and later ones stay).
    #[arg(long, value_name = "SEQ", value_parser = clap::value_parser!(u64).range(1..))]
    seq: Option<u64>,
    #[command(flatten)]
    client: ClientArgs,
}

/// Runs a `herald stream` command.
pub async fn run(command: StreamCommand) -> Result {
    match command {
        StreamCommand::Add(args) => add(args).await,
        StreamCommand::Ls(args) => list(args).await,
        StreamCommand::Info(args) => info(args).await,
        StreamCommand::Rm(args) => remove(args).await,
        StreamCommand::Purge(args) => purge(args).await,
    }
}

/// Connects and wraps the connection in a JetStream context.
async fn connect(args: &ClientArgs, name: &str) -> Result<(Context, Hint)> {
    let client = args.connect(name).await?;
    let hint = Hint {
        scope: args.scope.clone().filter(|s| s != "default"),
    };
    Ok((jetstream::new(client), hint))
}

/// Refuses a name that cannot be an API subject token, before it reaches the server.
fn check_name(kind: &str, name: &str) -> Result {
    let bad = name.is_empty()
        || name
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b".*>".contains(&b));
    if bad {
        return Err(format!("invalid {kind} name {name:?}: no dots, wildcards or spaces").into());
    }
    Ok(())
}

async fn add(args: AddArgs) -> Result {
    check_name("stream", &args.name)?;
    let config = stream::Config {
        name: args.name.clone(),
        subjects: args.subjects.clone(),
        max_messages: args.max_msgs.unwrap_or(-1),
        max_bytes: args.max_bytes.unwrap_or(-1),
        max_age: args.max_age.unwrap_or_default(),
        max_message_size: args.max_msg_size.unwrap_or(-1),
        duplicate_window: args.dupe_window.unwrap_or_default(),
        discard: match args.discard {
            Discard::Old => stream::DiscardPolicy::Old,
            Discard::New => stream::DiscardPolicy::New,
        },
        storage: match args.storage {
            Storage::File => stream::StorageType::File,
            Storage::Memory => stream::StorageType::Memory,
        },
        num_replicas: args.replicas.into(),
        ..Default::default()
    };
    let (js, hint) = connect(&args.client, "herald stream add").await?;
    let created = js.create_stream(config).await.map_err(|e| {
        hint.explain(
            e,
            &format!("cannot create stream {}", args.name),
            &args.name,
        )
    })?;
    let mut text = String::new();
    describe_config(&mut text, created.cached_info());
    print(&text)
}

/// A stream's info as the server sent it (`STREAM.INFO`), for `--json` and the typed view alike.
async fn info_json(js: &Context, hint: &Hint, name: &str) -> Result<Value> {
    check_name("stream", name)?;
    let response: Response<Value> = js
        .request(format!("STREAM.INFO.{name}"), &())
        .await
        .map_err(|e| hint.explain(e, &format!("cannot read stream {name}"), name))?;
    match response {
        Response::Ok(info) => Ok(info),
        Response::Err { error } => Err(hint
            .explain_failure(
                Failure::Api(error),
                &format!("cannot read stream {name}"),
                name,
            )
            .into()),
    }
}

fn typed(name: &str, json: &Value) -> Result<stream::Info> {
    serde_json::from_value(json.clone())
        .map_err(|e| format!("stream {name}: unexpected answer from the server: {e}").into())
}

async fn list(args: LsArgs) -> Result {
    let (js, hint) = connect(&args.client, "herald stream ls").await?;
    let mut names = Vec::new();
    let mut pages = js.stream_names();
    while let Some(name) = pages.next().await {
        names.push(name.map_err(|e| hint.explain(e, "cannot list streams", ""))?);
    }
    names.sort();
    let mut infos = Vec::with_capacity(names.len());
    for name in &names {
        match info_json(&js, &hint, name).await {
            Ok(json) => infos.push((name.clone(), json)),
            // Deleted since it was listed.
            Err(e) if e.to_string().ends_with("not found") => {}
            Err(e) => return Err(e),
        }
    }
    if args.json {
        let all: Vec<Value> = infos.into_iter().map(|(_, json)| json).collect();
        return print(&format!("{}\n", Value::Array(all)));
    }
    if infos.is_empty() {
        return print("no streams\n");
    }
    let mut rows = vec![
        [
            "NAME",
            "SUBJECTS",
            "MESSAGES",
            "BYTES",
            "FIRST",
            "LAST",
            "CONSUMERS",
        ]
        .map(String::from),
    ];
    for (name, json) in &infos {
        let info = typed(name, json)?;
        let state = &info.state;
        let (first, last) = match state.messages {
            0 => ("-".to_owned(), "-".to_owned()),
            _ => (
                state.first_sequence.to_string(),
                state.last_sequence.to_string(),
            ),
        };
        rows.push([
            info.config.name.clone(),
            info.config.subjects.join(","),
            state.messages.to_string(),
            bytes(state.bytes),
            first,
            last,
            state.consumer_count.to_string(),
        ]);
    }
    print(&table(&rows))
}

async fn info(args: InfoArgs) -> Result {
    let (js, hint) = connect(&args.client, "herald stream info").await?;
    let json = info_json(&js, &hint, &args.name).await?;
    if args.json {
        return print(&format!("{json}\n"));
    }
    let info = typed(&args.name, &json)?;
    let mut text = String::new();
    describe_config(&mut text, &info);
    let state = &info.state;
    let at = |seq: u64, time: async_nats::datetime::DateTime| match state.messages {
        0 => "-".to_owned(),
        _ => format!("#{seq} at {}", timestamp(time)),
    };
    let _ = writeln!(text, "state");
    let rows = [
        ("messages", state.messages.to_string()),
        ("bytes", bytes(state.bytes)),
        ("first", at(state.first_sequence, state.first_timestamp)),
        ("last", at(state.last_sequence, state.last_timestamp)),
        ("consumers", state.consumer_count.to_string()),
    ];
    for (key, value) in rows {
        let _ = writeln!(text, "  {key:<14}{value}");
    }
    if let Some(deleted) = state.deleted_count.filter(|&n| n > 0) {
        let _ = writeln!(text, "  {:<14}{deleted}", "deleted");
    }
    print(&text)
}

async fn remove(args: NameArgs) -> Result {
    check_name("stream", &args.name)?;
    let (js, hint) = connect(&args.client, "herald stream rm").await?;
    js.delete_stream(&args.name).await.map_err(|e| {
        hint.explain(
            e,
            &format!("cannot delete stream {}", args.name),
            &args.name,
        )
    })?;
    print(&format!("deleted stream {}\n", args.name))
}

async fn purge(args: PurgeArgs) -> Result {
    check_name("stream", &args.name)?;
    let (js, hint) = connect(&args.client, "herald stream purge").await?;
    let doing = format!("cannot purge stream {}", args.name);
    let stream = js
        .get_stream_no_info(&args.name)
        .await
        .map_err(|e| hint.explain(e, &doing, &args.name))?;
    let request = stream.purge();
    let purged = match (args.keep, args.seq) {
        (Some(keep), _) => request.keep(keep).await,
        (None, Some(seq)) => request.sequence(seq).await,
        (None, None) => request.await,
    }
    .map_err(|e| hint.explain(e, &doing, &args.name))?
    .purged;
    let noun = if purged == 1 { "message" } else { "messages" };
    print(&format!("purged {purged} {noun} from {}\n", args.name))
}
