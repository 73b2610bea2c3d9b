//! `herald cluster status`: a server's view of its cluster, from `$HERALD.API.CLUSTER.INFO`;
//! `herald cluster remove`: a server gone for good leaves the cluster's JetStream
//! (`$JS.API.SERVER.REMOVE`).

use std::time::Duration;

use serde_json::Value;

use crate::client::ClientArgs;

type Result = std::result::Result<(), Box<dyn std::error::Error>>;

/// `herald cluster ...`.
#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// List the members the server knows, with their state, route and interest counts.
    Status(StatusArgs),
    /// Take a server that is gone for good out of the cluster's JetStream: it leaves the meta
    /// group, and each replicated stream it held gets a replica on another server instead
    /// (refused while the server is still online).
    Remove(RemoveArgs),
}

/// `herald cluster remove NAME`.
#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// The server's name (as `herald cluster status` lists it).
    name: String,
    #[command(flatten)]
    client: ClientArgs,
}

/// `herald cluster status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print the server's JSON answer as is.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// Runs a `herald cluster` command.
pub async fn run(command: ClusterCommand) -> Result {
    match command {
        ClusterCommand::Status(args) => status(args).await,
        ClusterCommand::Remove(args) => remove(args).await,
    }
}

async fn remove(args: RemoveArgs) -> Result {
    let mut client_args = args.client.clone();
    client_args.scope = None;
    let client = client_args.connect("herald cluster").await?;
    let body = serde_json::json!({ "peer": args.name }).to_string();
    let reply = tokio::time::timeout(
        Duration::from_secs(15),
        client.request("$JS.API.SERVER.REMOVE", body.into()),
    )
    .await
    .map_err(|_| "the server did not answer within 15 s")?
    .map_err(|e| format!("$JS.API.SERVER.REMOVE: {e} (is JetStream clustered here?)"))?;
    let answer: Value = serde_json::from_slice(&reply.payload)
        .map_err(|e| format!("the server's answer is not JSON: {e}"))?;
    if let Some(err) = answer.get("error") {
        let text = err
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("refused");
        return Err(format!("{} not removed: {text}", args.name).into());
    }
    println!("{} removed; its replicas move to other servers", args.name);
    Ok(())
}

async fn status(args: StatusArgs) -> Result {
    // The service lives in the server's default scope, whatever scope the user works in.
    let mut client_args = args.client.clone();
    client_args.scope = None;
    let client = client_args.connect("herald cluster").await?;
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        client.request(herald_server::CLUSTER_INFO_SUBJECT, bytes::Bytes::new()),
    )
    .await
    .map_err(|_| "the server did not answer within 5 s")?
    .map_err(|e| {
        format!(
            "{}: {e} (is this a herald server?)",
            herald_server::CLUSTER_INFO_SUBJECT
        )
    })?;
    let info: Value = serde_json::from_slice(&reply.payload)
        .map_err(|e| format!("the server's answer is not JSON: {e}"))?;
    if args.json {
        println!("{info}");
        return Ok(());
    }
    if let Some(err) = info.get("error").and_then(Value::as_str) {
        return Err(err.into());
    }
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    println!(
        "cluster {} · node {} at {} · {} local interests",
        text(&info, "cluster"),
        text(&info, "name"),
        text(&info, "route_addr"),
        num(&info, "interest"),
    );
    let members = info
        .get("members")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut rows = vec![
        [
            "NAME", "STATE", "ADDRESS", "ROUTE", "INTEREST", "MSGS OUT", "MSGS IN",
        ]
        .map(String::from),
    ];
    for m in &members {
        let route = m.get("route").filter(|r| !r.is_null());
        let (dir, interest, out, inn) = match route {
            Some(r) => (
                text(r, "direction"),
                num(r, "interest").to_string(),
                num(r, "msgs_out").to_string(),
                num(r, "msgs_in").to_string(),
            ),
            None => ("none".into(), "-".into(), "-".into(), "-".into()),
        };
        rows.push([
            text(m, "name"),
            text(m, "state"),
            text(m, "route_addr"),
            dir,
            interest,
            out,
            inn,
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    if members.is_empty() {
        println!("(no other members)");
    }
    if let Some(meta) = info.get("meta") {
        let voters: Vec<&str> = meta
            .get("members")
            .and_then(Value::as_array)
            .map(|m| m.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        println!(
            "meta group: leader {} · members {}",
            text(meta, "leader"),
            voters.join(", ")
        );
    }
    Ok(())
}
