//! The `herald` command.

mod serve;

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
