//! What every client command shares: the servers to connect to, the scope, and the
//! connection itself (the `async-nats` client, so the commands work against nats-server too).

use std::time::Duration;

use async_nats::{Client, ConnectOptions, HeaderMap};

/// Connection flags of every client command.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Server URL; repeat it (or separate with commas) to list several.
    #[arg(
        long = "server",
        short = 's',
        env = "HERALD_SERVER",
        value_delimiter = ',',
        default_value = "nats://127.0.0.1:4222"
    )]
    pub servers: Vec<String>,
    /// Scope to publish and subscribe in (herald sends it as the CONNECT user name; a server
    /// without authentication takes that as the scope) [default: the server's `default`].
    #[arg(long, env = "HERALD_SCOPE")]
    pub scope: Option<String>,
    /// User name, with --password (a server with users binds the connection to the user's
    /// scope; --scope is then ignored).
    #[arg(long, env = "HERALD_USER", requires = "password")]
    pub user: Option<String>,
    /// Password of --user.
    #[arg(long, env = "HERALD_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Token, for a user configured with a token.
    #[arg(
        long,
        env = "HERALD_TOKEN",
        hide_env_values = true,
        conflicts_with = "user"
    )]
    pub token: Option<String>,
    /// File holding an nkey seed (`SU...`), for a user configured with its public nkey.
    #[arg(long, env = "HERALD_NKEY_SEED", value_name = "FILE", conflicts_with_all = ["user", "token"])]
    pub nkey_seed: Option<std::path::PathBuf>,
    /// CA certificate (PEM) to trust for the server's TLS certificate; turns TLS on.
    #[arg(long, env = "HERALD_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM), for a server that verifies clients; with --tls-key.
    #[arg(
        long,
        env = "HERALD_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long,
        env = "HERALD_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<std::path::PathBuf>,
    /// How long to wait for the server to answer when connecting.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
}

impl ClientArgs {
    /// Connection options with the scope and a client name.
    pub fn options(&self, name: &str) -> ConnectOptions {
        let mut options = ConnectOptions::new()
            .name(name)
            .connection_timeout(self.connect_timeout);
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            options = options.user_and_password(user.clone(), password.clone());
        } else if let Some(token) = &self.token {
            options = options.token(token.clone());
        } else if let Some(scope) = &self.scope {
            options = options.user_and_password(scope.clone(), String::new());
        }
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            options = options
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true);
        }
        options
    }

    /// [`options`](ClientArgs::options) with the nkey seed read, if one is given.
    pub fn full_options(&self, name: &str) -> Result<ConnectOptions, Box<dyn std::error::Error>> {
        let mut options = self.options(name);
        if let Some(path) = &self.nkey_seed {
            let seed = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the nkey seed {}: {e}", path.display()))?;
            options = options.nkey(seed.trim().to_owned());
        }
        Ok(options)
    }

    /// Connects with [`full_options`](ClientArgs::full_options).
    pub async fn connect(&self, name: &str) -> Result<Client, Box<dyn std::error::Error>> {
        let options = self.full_options(name)?;
        self.connect_with(options).await
    }

    /// Connects with the given options.
    pub async fn connect_with(
        &self,
        options: ConnectOptions,
    ) -> Result<Client, Box<dyn std::error::Error>> {
        options
            .connect(self.servers.as_slice())
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.servers.join(",")).into())
    }
}

/// Waits until the server has handled everything `client` sent so far, so that a subscription
/// made before is in place for other clients' publishes.
///
/// async-nats's `flush` only empties the client's own buffer, and a request on a fresh inbox
/// is no barrier either: any subscriber to `>` (or `_INBOX.>`) answers it, or swallows it
/// until the request times out. Instead the client subscribes a fresh inbox, publishes to it
/// and waits for its own message: the server handles a connection's operations in order, so
/// the message comes back only after everything sent before it. Other subscribers may see
/// the empty message too, but nothing can keep it from its sender (echo is on, as it is by
/// default). Works against nats-server as well.
///
/// Returns the subject of that message, for a caller whose own subscription (`>`) may have
/// seen it too and should not show it.
pub async fn round_trip(client: &Client) -> Result<String, String> {
    const WAIT: Duration = Duration::from_secs(10);
    let failed = |e: &dyn std::fmt::Display| format!("round trip to the server failed: {e}");
    let inbox = client.new_inbox();
    let mut echo = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| failed(&e))?;
    client
        .publish(inbox.clone(), bytes::Bytes::new())
        .await
        .map_err(|e| failed(&e))?;
    use futures::StreamExt as _;
    match tokio::time::timeout(WAIT, echo.next()).await {
        Ok(Some(_)) => Ok(inbox),
        Ok(None) => Err(failed(&"the connection closed")),
        Err(_) => Err(failed(&format!("no answer within {WAIT:?}"))),
    }
}

/// Parses a duration such as `5s`, `250ms` or `2m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// Parses `Name: value` header flags into a header map.
pub fn parse_headers(pairs: &[String]) -> Result<Option<HeaderMap>, String> {
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut headers = HeaderMap::new();
    for pair in pairs {
        let (name, value) = pair
            .split_once(':')
            .ok_or_else(|| format!("header {pair:?} is not Name:value"))?;
        let name = name.trim();
        if name.is_empty()
            || name
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(format!("header name {name:?} is empty or holds whitespace"));
        }
        headers.append(name, value.trim());
    }
    Ok(Some(headers))
}
