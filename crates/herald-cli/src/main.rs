//! The `herald` command.

mod bench;
mod client;
mod cluster;
mod clusters;
mod data;
mod group;
mod messaging;
mod passwd;
mod serve;
mod stream;

use clap::{Parser, Subcommand};

/// herald: publish/subscribe that speaks NATS.
#[derive(Debug, Parser)]
#[command(name = "herald", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a server (NATS protocol on 127.0.0.1:4222 by default).
    Serve(serve::Args),
    /// Publish a message.
    Pub(messaging::PubArgs),
    /// Subscribe and print subject, headers and payload of each message.
    Sub(messaging::SubArgs),
    /// Send a request and print the reply.
    Req(messaging::ReqArgs),
    /// Answer requests with a fixed response.
    Reply(messaging::ReplyArgs),
    /// Inspect the cluster a server belongs to.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Create, change, list and broadcast to named groups of topics.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Create, list, inspect, purge and delete streams (needs `herald serve --data-dir`).
    #[command(subcommand)]
    Stream(stream::StreamCommand),
    /// Pull a stream's messages through a consumer, print and acknowledge them.
    Consume(stream::ConsumeArgs),
    /// Offline tools for data directories (no server needed).
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Print an argon2id hash of a password or token (read from the terminal or stdin) for
    /// the `[[users]]` of the config file.
    Passwd(passwd::PasswdArgs),
    /// Measure publish/subscribe or request/reply throughput and latency.
    Bench(bench::BenchArgs),
    /// Print the cluster each subject lives on, among the clusters given (connects to none).
    ClusterOf(clusters::ClusterOfArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("herald: cannot start the runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Pub(args) => messaging::publish(args).await,
            Command::Sub(args) => messaging::subscribe(args).await,
            Command::Req(args) => messaging::request(args).await,
            Command::Reply(args) => messaging::reply(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Passwd(args) => passwd::run(args),
            Command::Cluster(command) => cluster::run(command).await,
            Command::Group(command) => group::run(command).await,
            Command::Stream(command) => stream::run(command).await,
            Command::Consume(args) => stream::consume(args).await,
            Command::Data(command) => data::run(command),
            Command::ClusterOf(args) => clusters::cluster_of(args),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("herald: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
