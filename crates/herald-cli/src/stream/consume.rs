//! `herald consume`: pull a stream's messages through a durable or ephemeral consumer, print
//! and ack them.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::consumer::{self, PullConsumer, pull};
use futures::StreamExt;
use herald::time::{parse_rfc3339, rfc3339};

use super::{Result, check_name, connect};
use crate::client::{ClientArgs, parse_duration, round_trip};

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
pub(super) enum Ack {
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

/// Reads `--start`: a deliver policy.
pub(super) fn parse_start(text: &str) -> std::result::Result<consumer::DeliverPolicy, String> {
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
pub(super) enum Stop {
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
pub(super) async fn pull_and_print(
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
pub(super) fn print_message(
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
