//! `herald serve`: settings from flags, `HERALD_*` variables and a TOML file; a server until
//! SIGINT or SIGTERM, or until lame duck mode (SIGUSR2) has closed every client. SIGHUP reads
//! the `[tls]` certificate and key files again.

use std::io::IsTerminal;
use std::path::PathBuf;

use herald_server::{Config, Server};
use tracing_subscriber::filter::Targets;

/// Flags of `herald serve`. Every setting of the config file also has a `HERALD_*` variable
/// (`HERALD_MAX_PAYLOAD`); flags win over variables, which win over the file.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// TOML config file.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// NATS-protocol listener address (port 0 picks a free port) [default: 127.0.0.1:4222].
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// HTTP listener: web API, Server-Sent Events, monitoring and metrics (port 0 picks a free
    /// port; "" turns it off) [default: 127.0.0.1:8222].
    #[arg(long, value_name = "HOST:PORT")]
    http: Option<String>,
    /// Origins allowed to call the HTTP API from a browser (CORS), comma-separated; `*` for any.
    #[arg(long, value_name = "ORIGIN,..")]
    http_cors: Option<String>,
    /// Encoded events buffered per SSE client before it is dropped as a slow consumer
    /// [default: 8 MiB].
    #[arg(long, value_name = "BYTES")]
    sse_max_pending: Option<usize>,
    /// Server name, shown to clients and used as the cluster node name [default: herald- and
    /// 8 random hex digits, kept in the data directory when there is one].
    #[arg(long)]
    name: Option<String>,
    /// Address clients of other cluster members are told to reach this server at (INFO
    /// connect_urls) [default: the listen address].
    #[arg(long, value_name = "HOST:PORT")]
    client_advertise: Option<String>,
    /// How long lame duck mode (SIGUSR2) takes to close every client before the server stops
    /// [default: 2m].
    #[arg(long, value_name = "DURATION")]
    lame_duck_duration: Option<String>,
    /// How long lame duck mode waits after telling clients before it closes the first
    /// [default: 10s].
    #[arg(long, value_name = "DURATION")]
    lame_duck_grace_period: Option<String>,
    /// Log level or filter (error, warn, info, debug, trace; or `herald_server=debug,info`).
    #[arg(long, value_name = "LEVEL")]
    log: Option<String>,
    /// Largest payload a client may publish, in bytes [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    max_payload: Option<usize>,
    /// Longest protocol control line a client may send, in bytes [default: 4096].
    #[arg(long, value_name = "BYTES")]
    max_control_line: Option<usize>,
    /// Most subscriptions per connection; 0 means no limit [default: 0].
    #[arg(long, value_name = "N")]
    max_subscriptions: Option<usize>,
    /// Most scopes in use at once; clients naming a new one past it are refused (scopes
    /// nothing uses any more are forgotten) [default: 10000].
    #[arg(long, value_name = "N")]
    max_scopes: Option<usize>,
    /// Outbound bytes buffered per client before it is a slow consumer [default: 64 MiB].
    #[arg(long, value_name = "BYTES")]
    max_pending: Option<usize>,
    /// What to do with a slow consumer: disconnect or drop.
    #[arg(long, value_name = "POLICY")]
    slow_consumer: Option<String>,
    /// Most client connections at once [default: 65536].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// How often idle clients are pinged (e.g. 2m, 30s) [default: 2m].
    #[arg(long, value_name = "DURATION")]
    ping_interval: Option<String>,
    /// Join a cluster: accept routes (TCP) and gossip (UDP) on this address (port 0 picks one).
    #[arg(long, value_name = "HOST:PORT")]
    cluster_listen: Option<String>,
    /// Address other nodes reach this one at, if not the cluster listen address.
    #[arg(long, value_name = "HOST:PORT")]
    cluster_advertise: Option<String>,
    /// Route addresses of cluster members to join through, comma-separated (this node's own
    /// address may be among them).
    #[arg(long, value_name = "ADDR,..")]
    seeds: Option<String>,
    /// Cluster name; nodes of other clusters are refused [default: herald].
    #[arg(long, value_name = "NAME")]
    cluster_name: Option<String>,
    /// Secret shared by all members of the cluster.
    #[arg(long, value_name = "SECRET")]
    cluster_secret: Option<String>,
    /// Members a new cluster's meta group (servers with --data-dir) waits for before it forms
    /// [default: this server and its seeds].
    #[arg(long, value_name = "N")]
    bootstrap_expect: Option<usize>,
    /// How long a new client may take to authenticate when `[[users]]` are configured
    /// (users and their permissions are set in the config file) [default: 2s].
    #[arg(long, value_name = "DURATION")]
    auth_timeout: Option<String>,
    /// Longest a client may take for its TLS handshake (with `[tls]` in the config file)
    /// [default: 2s].
    #[arg(long, value_name = "DURATION")]
    tls_timeout: Option<String>,
    /// Keep streams in this directory (turns on the JetStream API).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<String>,
    /// When stored messages reach the disk: always, never, or an interval (200ms) [default: always].
    #[arg(long, value_name = "POLICY")]
    fsync: Option<String>,
}

impl Args {
    fn flags(&self) -> Vec<(&'static str, String)> {
        let mut flags = Vec::new();
        let mut put = |name, value: Option<String>| {
            if let Some(v) = value {
                flags.push((name, v));
            }
        };
        put("listen", self.listen.clone());
        put("http", self.http.clone());
        put("http-cors", self.http_cors.clone());
        put(
            "sse-max-pending",
            self.sse_max_pending.map(|v| v.to_string()),
        );
        put("name", self.name.clone());
        put("client-advertise", self.client_advertise.clone());
        put("lame-duck-duration", self.lame_duck_duration.clone());
        put(
            "lame-duck-grace-period",
            self.lame_duck_grace_period.clone(),
        );
        put("log", self.log.clone());
        put("max-payload", self.max_payload.map(|v| v.to_string()));
        put("max-pending", self.max_pending.map(|v| v.to_string()));
        put(
            "max-control-line",
            self.max_control_line.map(|v| v.to_string()),
        );
        put(
            "max-subscriptions",
            self.max_subscriptions.map(|v| v.to_string()),
        );
        put("max-scopes", self.max_scopes.map(|v| v.to_string()));
        put("tls-timeout", self.tls_timeout.clone());
        put("slow-consumer", self.slow_consumer.clone());
        put(
            "max-connections",
            self.max_connections.map(|v| v.to_string()),
        );
        put("ping-interval", self.ping_interval.clone());
        put("cluster-listen", self.cluster_listen.clone());
        put("cluster-advertise", self.cluster_advertise.clone());
        put("seeds", self.seeds.clone());
        put("cluster-name", self.cluster_name.clone());
        put("cluster-secret", self.cluster_secret.clone());
        put(
            "bootstrap-expect",
            self.bootstrap_expect.map(|v| v.to_string()),
        );
        put("auth-timeout", self.auth_timeout.clone());
        put("data-dir", self.data_dir.clone());
        put("fsync", self.fsync.clone());
        flags
    }
}

/// Runs the server until a signal asks it to stop.
pub async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::load(args.config.as_deref(), std::env::vars(), &args.flags())?;
    // chitchat warns on every gossip round about a peer of another cluster; herald says it
    // once itself. Its errors still show, and a filter that names chitchat wins. openraft
    // logs a peer it cannot reach yet (a node starting, a route coming up) as an error on
    // every retry; the meta group's own log says what matters (forming, members added,
    // writes that fail), so openraft is quiet unless the filter names it.
    let mut directives = config.log.clone();
    if !config.log.contains("chitchat") {
        directives.push_str(",chitchat=error");
    }
    if !config.log.contains("openraft") {
        directives.push_str(",openraft=off");
    }
    let filter: Targets = directives
        .parse()
        .map_err(|e| format!("invalid log filter {:?}: {e}", config.log))?;
    use tracing_subscriber::prelude::*;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .with(filter)
        .init();
    for var in Config::unknown_variables(std::env::vars()) {
        tracing::warn!(%var, "environment variable names no setting; ignored");
    }
    // Before the listening lines: a signal sent as soon as they are read must be handled, not
    // kill the process with the default action.
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut lame_duck = signal(SignalKind::user_defined2())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let node = match config.cluster()? {
        Some(builder) => builder.start().await?,
        None => herald::Node::local(),
    };
    let server = Server::start(config, node.clone())
        .await
        .map_err(|e| format!("cannot listen: {e}"))?;
    // Scripts and tests read these lines to find the ports.
    if let Some(info) = node.cluster_info() {
        println!("listening cluster {}", info.route_addr);
    }
    println!("listening nats {}", server.nats_addr());
    tracing::info!(addr = %server.nats_addr(), "serving the NATS protocol");
    if let Some(addr) = server.http_addr() {
        println!("listening http {addr}");
        tracing::info!(%addr, "serving HTTP");
    }
    let ldm = loop {
        tokio::select! {
            _ = interrupt.recv() => break false,
            _ = term.recv() => break false,
            _ = lame_duck.recv() => break true,
            () = server.lame_duck_requested() => break true,
            _ = hangup.recv() => match server.reload_tls() {
                Ok(true) => tracing::info!("SIGHUP: TLS certificates read again"),
                Ok(false) => tracing::info!("SIGHUP: no [tls] to read again"),
                Err(err) => tracing::error!(%err, "SIGHUP: TLS certificates not changed"),
            },
        }
    };
    if ldm {
        tracing::info!("lame duck mode: closing clients");
        // A second SIGINT or SIGTERM cuts it short.
        tokio::select! {
            () = server.lame_duck() => {}
            _ = interrupt.recv() => {}
            _ = term.recv() => {}
        }
    }
    tracing::info!("shutting down");
    server.shutdown().await;
    node.shutdown().await;
    Ok(())
}
