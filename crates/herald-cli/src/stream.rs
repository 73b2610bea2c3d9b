//! `herald stream add|ls|info|rm|purge` and `herald consume`: streams and pull consumers through
//! async-nats's JetStream API, so they work against nats-server too.
//!
//! Every failure becomes one line that says what to do: a server without a data directory does
//! not answer the JetStream API at all (no responders), which reads "no JetStream here"; an API
//! error reads as the server's description, and a missing stream as "stream NAME not found".

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{self, PullConsumer, pull};
use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind, RequestErrorKind};
use async_nats::jetstream::response::Response;
use async_nats::jetstream::stream::{self, ConsumerErrorKind, PurgeErrorKind};
use async_nats::jetstream::{self, Context, ErrorCode};
use futures::StreamExt;
use herald::time::{parse_rfc3339, rfc3339};
use serde_json::Value;

use crate::client::{ClientArgs, parse_duration, round_trip};

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

/// `herald consume STREAM`.
#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    /// Stream to read.
    stream: String,
    /// Read through this durable consumer, created if missing: it remembers what was acked,
    /// so the next run goes on from there [default: a consumer of this run only].
    #[arg(long, value_name = "NAME")]
    durable: Option<String>,
    /// Where a new consumer starts: all, new, last, a sequence, an RFC 3339 time, or a duration
    /// ago such as 10m [default: all].
    #[arg(long, value_name = "WHERE", value_parser = parse_start)]
    start: Option<consumer::DeliverPolicy>,
    /// How messages are acknowledged: each one (explicit), each one and all before it (all),
    /// or not at all (none) [default: explicit].
    #[arg(long, value_enum)]
    ack: Option<Ack>,
    /// Only messages whose subject matches this pattern.
    #[arg(long, value_name = "SUBJECT")]
    filter: Option<String>,
    /// Exit after this many messages.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Most messages asked for in one pull request.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch: u32,
    /// Exit once nothing arrived for this long (0s: never).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// Print each message's headers too.
    #[arg(long)]
    headers: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// A consumer's ack policy.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Ack {
    /// Each message is acknowledged.
    Explicit,
    /// An ack covers the message and all before it.
    All,
    /// Nothing is acknowledged: a delivery is final.
    None,
}

impl From<Ack> for consumer::AckPolicy {
    fn from(ack: Ack) -> Self {
        match ack {
            Ack::Explicit => consumer::AckPolicy::Explicit,
            Ack::All => consumer::AckPolicy::All,
            Ack::None => consumer::AckPolicy::None,
        }
    }
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
        num_replicas: 1,
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

/// Reads `--start`: a deliver policy.
fn parse_start(text: &str) -> std::result::Result<consumer::DeliverPolicy, String> {
    match text {
        "all" => return Ok(consumer::DeliverPolicy::All),
        "new" => return Ok(consumer::DeliverPolicy::New),
        "last" => return Ok(consumer::DeliverPolicy::Last),
        _ => {}
    }
    if let Ok(seq) = text.parse::<u64>() {
        if seq == 0 {
            return Err("sequences start at 1".into());
        }
        return Ok(consumer::DeliverPolicy::ByStartSequence {
            start_sequence: seq,
        });
    }
    let at = match parse_rfc3339(text) {
        Some(at) => at,
        None => {
            let ago = humantime::parse_duration(text).map_err(|_| {
                format!(
                    "{text:?} is not all, new, last, a sequence, an RFC 3339 time \
                     or a duration such as 10m"
                )
            })?;
            std::time::SystemTime::now()
                .checked_sub(ago)
                .filter(|then| *then >= std::time::UNIX_EPOCH)
                .ok_or_else(|| format!("{text} ago is before 1970"))?
        }
    };
    // async-nats reads the time the way it reads it from the server.
    serde_json::from_value(serde_json::json!({
        "deliver_policy": "by_start_time",
        "opt_start_time": rfc3339(at),
    }))
    .map_err(|e| format!("{text:?}: {e}"))
}

/// Why `herald consume` stopped pulling.
enum Stop {
    /// `--count` messages arrived.
    Count,
    /// Nothing arrived for `--timeout`.
    Idle,
    /// Ctrl-C.
    Interrupted,
}

/// Pulls from a stream and prints each message, acking it unless `--ack none`.
pub async fn consume(args: ConsumeArgs) -> Result {
    check_name("stream", &args.stream)?;
    if let Some(durable) = &args.durable {
        check_name("consumer", durable)?;
    }
    let (js, hint) = connect(&args.client, "herald consume").await?;
    let stream = js
        .get_stream_no_info(&args.stream)
        .await
        .map_err(|e| hint.explain(e, &format!("cannot consume {}", args.stream), &args.stream))?;
    let ack = args.ack.unwrap_or(Ack::Explicit);
    let config = pull::Config {
        durable_name: args.durable.clone(),
        deliver_policy: args.start.unwrap_or_default(),
        ack_policy: ack.into(),
        filter_subject: args.filter.clone().unwrap_or_default(),
        ..Default::default()
    };
    let set_explicitly = args.start.is_some() || args.ack.is_some() || args.filter.is_some();
    let created: std::result::Result<PullConsumer, _> = match &args.durable {
        // An existing durable goes on where it stopped, whatever it was created with.
        Some(durable) if !set_explicitly => stream.get_or_create_consumer(durable, config).await,
        // Created, or updated if the server allows it (it refuses another start, for one).
        _ => stream.create_consumer(config).await,
    };
    let consumer = created.map_err(|e| {
        let what = match &args.durable {
            Some(d) => format!("cannot open consumer {d} on {}", args.stream),
            None => format!("cannot create a consumer on {}", args.stream),
        };
        hint.explain(e, &what, &args.stream)
    })?;
    let name = consumer.cached_info().name.clone();
    match &args.durable {
        Some(d) => eprintln!("consuming {} through durable {d}", args.stream),
        None => eprintln!("consuming {}", args.stream),
    }
    let started = Instant::now();
    let outcome = pull_and_print(&consumer, &args, !matches!(ack, Ack::None)).await;
    // Acks are plain publishes: make sure the server has them before this process goes.
    let synced = round_trip(&js.client()).await;
    if args.durable.is_none() {
        // The server would drop it once idle; tidier to go now. Failing to is harmless.
        let _ = stream.delete_consumer(&name).await;
    }
    let (seen, stop) = outcome?;
    synced?;
    let noun = if seen == 1 { "message" } else { "messages" };
    let why = match stop {
        Stop::Count => String::new(),
        Stop::Idle => format!(
            "; nothing more within {}",
            humantime::format_duration(args.timeout)
        ),
        Stop::Interrupted => "; interrupted".to_owned(),
    };
    eprintln!(
        "{seen} {noun} in {:.1}s{why}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The pull loop: each request asks for at most what `--count` still allows, so nothing is
/// delivered that this run would not print and ack; it expires when `--timeout` has passed
/// since the last message.
async fn pull_and_print(
    consumer: &PullConsumer,
    args: &ConsumeArgs,
    acks: bool,
) -> Result<(u64, Stop)> {
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut seen = 0u64;
    let mut last = Instant::now();
    loop {
        let want = match args.count {
            Some(count) if seen >= count => return Ok((seen, Stop::Count)),
            Some(count) => (count - seen).min(u64::from(args.batch)),
            None => u64::from(args.batch),
        };
        let expires = if args.timeout.is_zero() {
            Duration::from_secs(30)
        } else {
            let left = args.timeout.saturating_sub(last.elapsed());
            if left < Duration::from_millis(1) {
                return Ok((seen, Stop::Idle));
            }
            left
        };
        let request = consumer
            .fetch()
            .max_messages(usize::try_from(want).unwrap_or(usize::MAX))
            .expires(expires)
            .messages();
        let mut batch = tokio::select! {
            batch = request => batch.map_err(|e| format!("cannot pull from {}: {e}", args.stream))?,
            _ = &mut interrupted => return Ok((seen, Stop::Interrupted)),
        };
        loop {
            let next = tokio::select! {
                next = batch.next() => next,
                _ = &mut interrupted => return Ok((seen, Stop::Interrupted)),
            };
            let msg = match next {
                None => break,
                Some(Ok(msg)) => msg,
                Some(Err(e)) => return Err(format!("pulling from {}: {e}", args.stream).into()),
            };
            print_message(&mut std::io::stdout().lock(), &msg, args.headers)?;
            if acks {
                msg.ack()
                    .await
                    .map_err(|e| format!("cannot ack a message: {e}"))?;
            }
            seen += 1;
            last = Instant::now();
        }
    }
}

/// `herald sub`'s format with the stream sequence: `[#SEQ] SUBJECT`, the headers (with
/// `--headers`), the payload, a blank line. A redelivery says which delivery it is.
fn print_message(
    out: &mut impl std::io::Write,
    msg: &jetstream::Message,
    headers: bool,
) -> std::io::Result<()> {
    match msg.info() {
        Ok(info) if info.delivered > 1 => writeln!(
            out,
            "[#{}] {} (delivery {})",
            info.stream_sequence, msg.subject, info.delivered
        )?,
        Ok(info) => writeln!(out, "[#{}] {}", info.stream_sequence, msg.subject)?,
        Err(_) => writeln!(out, "[#?] {}", msg.subject)?,
    }
    let shown = if headers { msg.headers.as_ref() } else { None };
    crate::messaging::print_body(out, shown, &msg.payload)
}

/// The configuration part of `stream add` and `stream info`.
fn describe_config(text: &mut String, info: &stream::Info) {
    let config = &info.config;
    let _ = writeln!(
        text,
        "stream {} (created {})",
        config.name,
        timestamp(info.created)
    );
    let limit = |n: i64, show: &dyn Fn(i64) -> String| match n {
        n if n <= 0 => "unlimited".to_owned(),
        n => show(n),
    };
    let as_bytes = |n: i64| match bytes(n.unsigned_abs()) {
        short if n < 1024 => short,
        short => format!("{short} ({n} B)"),
    };
    let duration = |d: Duration| match d.is_zero() {
        true => "unlimited".to_owned(),
        false => humantime::format_duration(d).to_string(),
    };
    let discard = match config.discard {
        stream::DiscardPolicy::Old => "old",
        stream::DiscardPolicy::New => "new",
    };
    let storage = match config.storage {
        stream::StorageType::File => "file",
        stream::StorageType::Memory => "memory",
    };
    let rows = [
        ("subjects", config.subjects.join(", ")),
        ("max msgs", limit(config.max_messages, &|n| n.to_string())),
        ("max bytes", limit(config.max_bytes, &as_bytes)),
        ("max age", duration(config.max_age)),
        (
            "max msg size",
            limit(i64::from(config.max_message_size), &as_bytes),
        ),
        ("dupe window", duration(config.duplicate_window)),
        ("discard", discard.to_owned()),
        ("storage", storage.to_owned()),
    ];
    for (key, value) in rows {
        let _ = writeln!(text, "  {key:<14}{value}");
    }
}

/// A time as RFC 3339 in UTC; `-` for the zero time (never).
fn timestamp(time: async_nats::datetime::DateTime) -> String {
    match u64::try_from(time.unix_timestamp_nanos()) {
        Ok(ns) if ns > 0 => rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns)),
        _ => "-".to_owned(),
    }
}

/// Bytes for people: `512 B`, `1.5 KiB`, `20.0 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Rows as left-aligned columns two spaces apart.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(text, "{}", line.join("  ").trim_end());
    }
    text
}

/// Writes to stdout; a closed pipe is an error, not a panic.
fn print(text: &str) -> Result {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// What a failed JetStream call comes down to.
enum Failure {
    /// Nothing answers the JetStream API.
    Unavailable,
    /// The server answered with an error.
    Api(jetstream::Error),
    /// No answer in time.
    TimedOut,
    /// Anything else, in async-nats's words.
    Other(String),
}

/// Reads the kind of an async-nats error; `None` sends the search on to its source.
trait Classify {
    fn classify(&self) -> Option<Failure>;
}

impl Classify for CreateStreamErrorKind {
    fn classify(&self) -> Option<Failure> {
        match self {
            Self::JetStreamUnavailable => Some(Failure::Unavailable),
            Self::JetStream(e) => Some(Failure::Api(e.clone())),
            Self::TimedOut => Some(Failure::TimedOut),
            _ => None,
        }
    }
}

impl Classify for GetStreamErrorKind {
    fn classify(&self) -> Option<Failure> {
        match self {
            Self::JetStream(e) => Some(Failure::Api(e.clone())),
            _ => None,
        }
    }
}

impl Classify for RequestErrorKind {
    fn classify(&self) -> Option<Failure> {
        match self {
            Self::NoResponders => Some(Failure::Unavailable),
            Self::TimedOut => Some(Failure::TimedOut),
            _ => None,
        }
    }
}

impl Classify for PurgeErrorKind {
    fn classify(&self) -> Option<Failure> {
        match self {
            Self::JetStream(e) => Some(Failure::Api(e.clone())),
            Self::TimedOut => Some(Failure::TimedOut),
            Self::Request => None,
        }
    }
}

impl Classify for ConsumerErrorKind {
    fn classify(&self) -> Option<Failure> {
        match self {
            Self::JetStream(e) => Some(Failure::Api(e.clone())),
            Self::TimedOut => Some(Failure::TimedOut),
            _ => None,
        }
    }
}

impl<K> From<async_nats::error::Error<K>> for Failure
where
    K: Classify + Clone + std::fmt::Debug + std::fmt::Display + PartialEq,
{
    fn from(err: async_nats::error::Error<K>) -> Failure {
        if let Some(failure) = err.kind().classify() {
            return failure;
        }
        // A request error wrapped as the source: no responders, a timeout, an API error.
        let mut source = std::error::Error::source(&err);
        while let Some(e) = source {
            if let Some(request) = e.downcast_ref::<async_nats::jetstream::context::RequestError>()
                && let Some(failure) = request.kind().classify()
            {
                return failure;
            }
            if let Some(request) = e.downcast_ref::<async_nats::RequestError>() {
                match request.kind() {
                    async_nats::RequestErrorKind::NoResponders => return Failure::Unavailable,
                    async_nats::RequestErrorKind::TimedOut => return Failure::TimedOut,
                    _ => {}
                }
            }
            if let Some(api) = e.downcast_ref::<jetstream::Error>() {
                return Failure::Api(api.clone());
            }
            source = e.source();
        }
        Failure::Other(err.to_string())
    }
}

/// What the one-line messages need to know about the connection.
struct Hint {
    /// The scope the client works in, when not the default one.
    scope: Option<String>,
}

impl Hint {
    /// One line for a failed call: `doing` (such as "cannot create stream") is the prefix of
    /// errors that need one; `stream` names the stream for "not found".
    fn explain(&self, err: impl Into<Failure>, doing: &str, stream: &str) -> String {
        self.explain_failure(err.into(), doing, stream)
    }

    fn explain_failure(&self, failure: Failure, doing: &str, stream: &str) -> String {
        match failure {
            Failure::Unavailable => match &self.scope {
                Some(scope) => format!(
                    "no JetStream in scope {scope}: herald answers the JetStream API in the \
                     default scope, when started with --data-dir"
                ),
                None => "no JetStream here: start herald serve with --data-dir".to_owned(),
            },
            Failure::TimedOut => format!("{doing}: the server did not answer in time"),
            Failure::Api(error) => match error.error_code() {
                ErrorCode::STREAM_NOT_FOUND => format!("stream {stream} not found"),
                ErrorCode::JETSTREAM_NOT_ENABLED | ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT => {
                    "no JetStream here: start herald serve with --data-dir".to_owned()
                }
                _ => format!("{doing}: {}", api_description(&error)),
            },
            Failure::Other(text) => format!("{doing}: {text}"),
        }
    }
}

/// The `description` the server gave (async-nats keeps it private; its JSON form has it).
fn api_description(error: &jetstream::Error) -> String {
    serde_json::to_value(error)
        .ok()
        .and_then(|v| v.get("description")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| error.to_string())
}
