//! `herald pub`, `sub`, `req` and `reply`.

use std::io::Write;
use std::time::Duration;

use async_nats::{HeaderMap, Message};
use bytes::Bytes;
use futures::StreamExt;

use crate::client::{ClientArgs, parse_duration, parse_headers, round_trip};
use crate::clusters::ClustersArgs;

type Result = std::result::Result<(), Box<dyn std::error::Error>>;

/// `herald pub SUBJECT DATA`.
#[derive(Debug, clap::Args)]
pub struct PubArgs {
    /// Subject to publish on.
    subject: String,
    /// Payload (use `-` to read it from standard input).
    data: String,
    /// A header, `Name: value`; repeat for several.
    #[arg(long = "header", short = 'H', value_name = "NAME:VALUE")]
    headers: Vec<String>,
    /// Reply subject to publish with.
    #[arg(long)]
    reply: Option<String>,
    /// Publish this many times.
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// With --cluster: how long a publish waits for its cluster before giving up.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    clusters: ClustersArgs,
}

/// `herald sub PATTERN`.
#[derive(Debug, clap::Args)]
pub struct SubArgs {
    /// Subject or pattern (`*` matches one token, `>` the rest).
    pattern: String,
    /// Join this queue group: each message goes to one member.
    #[arg(long, short = 'q')]
    queue: Option<String>,
    /// Exit after this many messages.
    #[arg(long)]
    count: Option<u64>,
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    clusters: ClustersArgs,
}

/// `herald req SUBJECT DATA`.
#[derive(Debug, clap::Args)]
pub struct ReqArgs {
    /// Subject to send the request to.
    subject: String,
    /// Payload (use `-` to read it from standard input).
    data: String,
    /// A header, `Name: value`; repeat for several.
    #[arg(long = "header", short = 'H', value_name = "NAME:VALUE")]
    headers: Vec<String>,
    /// How long to wait for the reply.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    clusters: ClustersArgs,
}

/// `herald reply SUBJECT RESPONSE`.
#[derive(Debug, clap::Args)]
pub struct ReplyArgs {
    /// Subject or pattern to answer requests on.
    subject: String,
    /// The response sent to every request.
    response: String,
    /// Join this queue group (so several responders share the requests).
    #[arg(long, short = 'q')]
    queue: Option<String>,
    /// Exit after answering this many requests.
    #[arg(long)]
    count: Option<u64>,
    #[command(flatten)]
    client: ClientArgs,
}

fn payload(data: &str) -> std::result::Result<Bytes, std::io::Error> {
    if data == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        Ok(buf.into())
    } else {
        Ok(Bytes::copy_from_slice(data.as_bytes()))
    }
}

/// Publishes and waits until the server has everything.
pub async fn publish(args: PubArgs) -> Result {
    let headers = parse_headers(&args.headers)?;
    let data = payload(&args.data)?;
    if args.clusters.any() {
        return publish_spread(&args, headers, data).await;
    }
    let client = args.client.connect("herald pub").await?;
    for _ in 0..args.count {
        let subject = args.subject.clone();
        match (&args.reply, &headers) {
            (None, None) => client.publish(subject, data.clone()).await?,
            (None, Some(h)) => {
                client
                    .publish_with_headers(subject, h.clone(), data.clone())
                    .await?
            }
            (Some(r), None) => {
                client
                    .publish_with_reply(subject, r.clone(), data.clone())
                    .await?
            }
            (Some(r), Some(h)) => {
                client
                    .publish_with_reply_and_headers(subject, r.clone(), h.clone(), data.clone())
                    .await?
            }
        }
    }
    client.flush().await?;
    Ok(())
}

/// `herald pub` over several clusters: each publish goes to the subject's cluster, and a
/// cluster that stays unreachable past `--timeout` fails the command, named.
async fn publish_spread(args: &PubArgs, headers: Option<HeaderMap>, data: Bytes) -> Result {
    let options = args.client.full_options("herald pub")?;
    let client = args
        .clusters
        .connect(options, "herald pub", args.timeout)
        .await?;
    for _ in 0..args.count {
        match (&args.reply, &headers) {
            (None, None) => client.publish(&args.subject, data.clone()).await?,
            (None, Some(h)) => {
                client
                    .publish_with_headers(&args.subject, h.clone(), data.clone())
                    .await?
            }
            (Some(r), None) => {
                client
                    .publish_with_reply(&args.subject, r, data.clone())
                    .await?
            }
            (Some(_), Some(_)) => {
                return Err("--reply with --header is not supported with --cluster".into());
            }
        }
    }
    // Confirmed by the one cluster published to (the others may be down: not our business).
    client
        .flush_cluster(client.cluster_of(&args.subject))
        .await?;
    Ok(())
}

/// A client subscribed to a pattern, and the subject of the readiness round trip (which the
/// subscription itself may have caught, if its pattern is wide, and is no message of the user's).
struct Subscribed {
    client: async_nats::Client,
    sub: async_nats::Subscriber,
    echo: String,
}

impl Subscribed {
    /// The next message of the user's.
    async fn next(&mut self) -> Option<Message> {
        loop {
            let msg = self.sub.next().await?;
            if msg.subject.as_str() != self.echo {
                return Some(msg);
            }
        }
    }
}

/// Connects and subscribes (in a queue group if given); returns once the server has the
/// subscription.
async fn subscribed(
    args: &ClientArgs,
    name: &str,
    pattern: &str,
    queue: Option<&str>,
) -> std::result::Result<Subscribed, Box<dyn std::error::Error>> {
    let client = args.connect(name).await?;
    let sub = match queue {
        Some(q) => {
            client
                .queue_subscribe(pattern.to_owned(), q.to_owned())
                .await?
        }
        None => client.subscribe(pattern.to_owned()).await?,
    };
    let echo = round_trip(&client).await?;
    Ok(Subscribed { client, sub, echo })
}

/// Prints every message received until interrupted (or `--count`).
pub async fn subscribe(args: SubArgs) -> Result {
    if args.clusters.any() {
        return subscribe_spread(args).await;
    }
    let mut sub = subscribed(
        &args.client,
        "herald sub",
        &args.pattern,
        args.queue.as_deref(),
    )
    .await?;
    eprintln!("subscribed to {}", args.pattern);
    print_messages(args.count, async || sub.next().await).await
}

/// Prints messages from `next` until it ends or `count` have been printed.
async fn print_messages(
    count: Option<u64>,
    mut next: impl AsyncFnMut() -> Option<Message>,
) -> Result {
    let mut seen = 0u64;
    let mut out = std::io::stdout().lock();
    while count.is_none_or(|c| seen < c) {
        let Some(msg) = next().await else { break };
        seen += 1;
        print_message(&mut out, seen, &msg)?;
    }
    Ok(())
}

/// `herald sub` over several clusters: on the pattern's cluster, or on all of them when the
/// pattern has a wildcard among the hashed tokens.
async fn subscribe_spread(args: SubArgs) -> Result {
    let options = args.client.full_options("herald sub")?;
    let client = args
        .clusters
        .connect(options, "herald sub", Duration::from_secs(10))
        .await?;
    let mut sub = match &args.queue {
        Some(q) => client.queue_subscribe(&args.pattern, q).await?,
        None => client.subscribe(&args.pattern).await?,
    };
    // Confirmed on the clusters that are up within --connect-timeout; the others get the
    // subscription when they come up.
    let _ = client.wait_connected(args.client.connect_timeout).await;
    let mut waiting = Vec::new();
    for cluster in sub.clusters() {
        if client.is_connected(cluster) {
            client.flush_cluster(cluster).await?;
        } else {
            waiting.push(cluster.as_str());
        }
    }
    eprintln!(
        "subscribed to {} on {}",
        args.pattern,
        sub.clusters().join(", ")
    );
    if !waiting.is_empty() {
        eprintln!(
            "not connected yet: {} (subscribed when up)",
            waiting.join(", ")
        );
    }
    print_messages(args.count, async || sub.next().await).await
}

/// The format of `herald sub`: a header line, the headers, the payload, a blank line.
fn print_message(out: &mut impl Write, n: u64, msg: &Message) -> std::io::Result<()> {
    match &msg.reply {
        Some(reply) => writeln!(out, "[#{n}] {} (reply: {reply})", msg.subject)?,
        None => writeln!(out, "[#{n}] {}", msg.subject)?,
    }
    print_body(out, msg.headers.as_ref(), &msg.payload)
}

/// The rest of a printed message: its headers (if given), the payload, a blank line.
pub(crate) fn print_body(
    out: &mut impl Write,
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> std::io::Result<()> {
    if let Some(headers) = headers {
        for (name, values) in headers.iter() {
            for value in values {
                writeln!(out, "{name}: {value}")?;
            }
        }
    }
    out.write_all(payload)?;
    writeln!(out)?;
    writeln!(out)?;
    out.flush()
}

/// Sends one request and prints the reply.
pub async fn request(args: ReqArgs) -> Result {
    let headers = parse_headers(&args.headers)?;
    let data = payload(&args.data)?;
    let options = args
        .client
        .full_options("herald req")?
        .request_timeout(Some(args.timeout));
    if args.clusters.any() {
        let client = args
            .clusters
            .connect(options, "herald req", args.timeout)
            .await?;
        let reply = match headers {
            Some(h) => client.request_with_headers(&args.subject, h, data).await,
            None => client.request(&args.subject, data).await,
        }?;
        let mut out = std::io::stdout().lock();
        out.write_all(&reply.payload)?;
        writeln!(out)?;
        return Ok(());
    }
    let client = args.client.connect_with(options).await?;
    let reply = match headers {
        Some(h) => {
            client
                .request_with_headers(args.subject.clone(), h, data)
                .await
        }
        None => client.request(args.subject.clone(), data).await,
    }
    .map_err(|e| format!("request to {}: {e}", args.subject))?;
    let mut out = std::io::stdout().lock();
    out.write_all(&reply.payload)?;
    writeln!(out)?;
    Ok(())
}

/// Answers every request on a subject with a fixed response.
pub async fn reply(args: ReplyArgs) -> Result {
    let mut sub = subscribed(
        &args.client,
        "herald reply",
        &args.subject,
        args.queue.as_deref(),
    )
    .await?;
    eprintln!("answering requests on {}", args.subject);
    let response = Bytes::from(args.response.clone());
    let mut answered = 0u64;
    while args.count.is_none_or(|c| answered < c) {
        let Some(msg) = sub.next().await else { break };
        let Some(reply) = msg.reply else { continue };
        sub.client.publish(reply, response.clone()).await?;
        answered += 1;
        eprintln!("[#{answered}] answered a request on {}", msg.subject);
    }
    sub.client.flush().await?;
    Ok(())
}
