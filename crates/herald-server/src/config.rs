//! Server settings: defaults, then a TOML file, then `HERALD_*` environment variables, then
//! command-line flags, each layer overriding the one before.
//!
//! Every layer is turned into the same TOML table before it is read, so a setting has one name
//! everywhere: `max_payload` in the file, `HERALD_MAX_PAYLOAD` in the environment,
//! `--max-payload` on the command line. Unknown names are errors, not silently ignored.
//!
//! ```toml
//! listen = "127.0.0.1:4222"
//! http = "127.0.0.1:8222"   # HTTP + SSE API, monitoring and metrics; "" turns it off
//! http_cors = ["https://app.example"]   # origins allowed by CORS ("*": any)
//! sse_max_pending = 8388608   # encoded events buffered per SSE client before it is dropped
//! name = "herald-1"
//! log = "info"
//! max_payload = 1048576
//! max_pending = 67108864
//! ping_interval = "2m"
//! # clustering: a route/gossip address, or seeds, make the server a cluster member
//! cluster_listen = "127.0.0.1:6222"
//! seeds = ["127.0.0.1:6223", "127.0.0.1:6224"]   # or "a:1,b:2" in HERALD_SEEDS / --seeds
//! cluster_name = "herald"
//! cluster_secret = "s3cret"
//! # persistence: a data directory turns on streams (the JetStream API)
//! data_dir = "/var/lib/herald"
//! fsync = "always"        # or "never", or an interval such as "200ms"
//! raft_snapshot_entries = 20000  # a replicated stream's Raft log between snapshots (0: never)
//! ```

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a server does with a client whose outbound buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlowConsumerPolicy {
    /// Send `-ERR 'Slow Consumer'` (best effort) and close the connection, as nats-server does.
    Disconnect,
    /// Keep the connection and drop the messages that do not fit, counting them.
    Drop,
}

/// Settings of `herald serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the NATS-protocol listener; port 0 picks a free port.
    pub listen: String,
    /// Address of the HTTP listener (web API, SSE, monitoring, metrics); port 0 picks a free
    /// port, an empty string turns it off.
    pub http: String,
    /// Origins whose browsers may call the HTTP API (CORS); `*` allows any. Empty: no CORS
    /// headers (same-origin pages and non-browser clients only).
    #[serde(with = "list")]
    pub http_cors: Vec<String>,
    /// Encoded events buffered for one SSE client before it is dropped as a slow consumer.
    pub sse_max_pending: usize,
    /// This server's name, shown to clients in INFO and used as its cluster node name. Empty
    /// (the default): `herald-` and 8 random hex digits, kept in the data directory when
    /// there is one, so that a restart keeps it.
    pub name: String,
    /// The address clients of the other cluster members are told to reach this server at
    /// (INFO `connect_urls`); empty: the `listen` address (with the cluster's advertised host
    /// when listening on every interface).
    pub client_advertise: String,
    /// How long lame duck mode (SIGUSR2, or `$HERALD.API.SERVER.LAMEDUCK`) takes to close
    /// every client, after its grace period: no new clients are accepted, the connected ones
    /// are told (INFO `ldm`) and closed a few at a time, then the server stops.
    #[serde(with = "duration")]
    pub lame_duck_duration: Duration,
    /// How long lame duck mode waits, after telling clients, before it closes the first.
    #[serde(with = "duration")]
    pub lame_duck_grace_period: Duration,
    /// Log filter: a level (`info`) or per-target directives (`herald_server=debug,info`).
    pub log: String,
    /// Largest payload a client may publish, in bytes (advertised in INFO).
    pub max_payload: usize,
    /// Longest protocol control line, in bytes.
    pub max_control_line: usize,
    /// Outbound bytes buffered for one client before it is a slow consumer.
    pub max_pending: usize,
    /// What happens to a slow consumer.
    pub slow_consumer: SlowConsumerPolicy,
    /// Longest a write to one client may block before it is a slow consumer.
    #[serde(with = "duration")]
    pub write_deadline: Duration,
    /// Most client connections at once; more are refused with an -ERR.
    pub max_connections: usize,
    /// Most subscriptions per connection; 0 means no limit.
    pub max_subscriptions: usize,
    /// Most scopes in use at once on this node; a client naming a new scope past it is
    /// refused. Scopes nothing uses any more are forgotten, so this bounds live tenants, not
    /// those seen over time. Other nodes' subscriptions are let in regardless.
    pub max_scopes: usize,
    /// How often the server pings an idle client.
    #[serde(with = "duration")]
    pub ping_interval: Duration,
    /// Unanswered pings after which a client is a stale connection and is closed.
    pub max_pings_out: u32,
    /// Messages each in-process subscription of the server's own services buffers.
    pub capacity: usize,
    /// Address for routes (TCP) and gossip (UDP, same port) with other nodes; empty means
    /// this server joins no cluster (unless `seeds` are given, then it listens on
    /// 127.0.0.1 with any free port).
    pub cluster_listen: String,
    /// Address other nodes reach this one at, when not `cluster_listen` (empty: the same).
    pub cluster_advertise: String,
    /// Route addresses of nodes to join through; this node's own may be among them.
    #[serde(with = "list")]
    pub seeds: Vec<String>,
    /// The cluster's name: nodes of other clusters are refused.
    pub cluster_name: String,
    /// The secret all members share; routes prove it in their handshake.
    pub cluster_secret: String,
    /// Members a new cluster's meta group (clustered servers with a data directory) waits for
    /// before it forms, the first time only; 0: this server and its seeds.
    pub bootstrap_expect: usize,
    /// How long a new connection may take to authenticate (send CONNECT) when users are
    /// configured.
    #[serde(with = "duration")]
    pub auth_timeout: Duration,
    /// Users (`[[users]]` tables of the file only): with any, every connection and HTTP
    /// request must authenticate, and each user is bound to its scope and permissions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<crate::auth::UserConfig>,
    /// TLS for client connections (`[tls]` in the file): `tls_required` in INFO, plaintext
    /// clients refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::TlsConfig>,
    /// The `[cluster]` table of the file: `[cluster.tls]` for mutual TLS on routes.
    #[serde(default, skip_serializing_if = "ClusterTable::is_empty")]
    pub cluster: ClusterTable,
    /// Longest a client may take to finish its TLS handshake.
    #[serde(with = "duration")]
    pub tls_timeout: Duration,
    /// Directory of the streams' data; empty means no streams (the JetStream API is absent,
    /// as on a nats-server without `-js`).
    pub data_dir: String,
    /// When stored messages reach the disk: `always` (an acknowledged publish is on disk;
    /// concurrent publishers share each fsync), `never` (left to the OS), or an interval such
    /// as `200ms` (a machine crash loses at most that window; a process crash loses nothing).
    pub fsync: String,
    /// Entries of a replicated stream's Raft log between two snapshots, after which the log
    /// before a snapshot is dropped (but for its last 1,000 entries); 0 keeps the log whole.
    pub raft_snapshot_entries: u64,
}

/// `[cluster]`: settings of the cluster that only the file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTable {
    /// `[cluster.tls]`: mutual TLS on routes; a node without a certificate from `ca` is
    /// refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RouteTlsConfig>,
}

impl ClusterTable {
    fn is_empty(&self) -> bool {
        self.tls.is_none()
    }
}

/// `[cluster.tls]`: this node's certificate and key, and the cluster's CA (all PEM files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTlsConfig {
    /// This node's certificate chain.
    pub cert: String,
    /// Its private key.
    pub key: String,
    /// The CA every node's certificate must chain to.
    pub ca: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:4222".into(),
            http: "127.0.0.1:8222".into(),
            http_cors: Vec::new(),
            sse_max_pending: 8 * 1024 * 1024,
            name: String::new(),
            client_advertise: String::new(),
            lame_duck_duration: Duration::from_secs(120),
            lame_duck_grace_period: Duration::from_secs(10),
            log: "info".into(),
            max_payload: 1024 * 1024,
            max_control_line: 4096,
            max_pending: 64 * 1024 * 1024,
            slow_consumer: SlowConsumerPolicy::Disconnect,
            write_deadline: Duration::from_secs(10),
            max_connections: 64 * 1024,
            max_subscriptions: 0,
            max_scopes: 10_000,
            ping_interval: Duration::from_secs(120),
            max_pings_out: 2,
            capacity: 1024,
            cluster_listen: String::new(),
            cluster_advertise: String::new(),
            seeds: Vec::new(),
            cluster_name: "herald".into(),
            cluster_secret: String::new(),
            bootstrap_expect: 0,
            auth_timeout: Duration::from_secs(2),
            users: Vec::new(),
            tls: None,
            cluster: ClusterTable::default(),
            tls_timeout: Duration::from_secs(2),
            data_dir: String::new(),
            fsync: "always".into(),
            raft_snapshot_entries: herald::streams::DEFAULT_RAFT_SNAPSHOT_ENTRIES,
        }
    }
}

/// The file of the data directory that keeps a generated server name.
const NAME_FILE: &str = "server-name";

/// A setting that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// What the TOML parser says.
        message: String,
    },
    /// A name that is not a setting.
    #[error("{origin}: unknown setting {name:?} (known: {known})")]
    Unknown {
        /// Where it came from (file, environment, flag).
        origin: String,
        /// The name as given.
        name: String,
        /// The settings that exist.
        known: String,
    },
    /// A value of the wrong type or out of range.
    #[error("invalid settings: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads the layers in order: defaults, `file` (if any), the `HERALD_*` variables among
    /// `env`, then `flags` as (setting name, value) pairs.
    ///
    /// Values from the environment and flags are strings; one that reads as a TOML number or
    /// boolean is taken as such (`HERALD_MAX_PAYLOAD=2048`).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[(&str, String)],
    ) -> Result<Config, ConfigError> {
        let known = Self::known_names();
        let mut table = toml::Table::new();
        if let Some(path) = file {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: shown.clone(),
                source,
            })?;
            let parsed: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Syntax {
                        path: shown.clone(),
                        message: e.message().to_owned(),
                    })?;
            for (name, value) in parsed {
                check_known(&known, &shown, &name)?;
                table.insert(name, value);
            }
        }
        for (var, value) in env {
            // Only the variables of settings are read: a shell may hold other `HERALD_*`
            // variables (the client commands', a script's own), which
            // [`unknown_variables`](Config::unknown_variables) lists for a warning.
            if let Some(name) = setting_of_variable(&known, &var) {
                table.insert(name, loose_value(&value));
            }
        }
        for (flag, value) in flags {
            let name = flag.replace('-', "_");
            check_known(&known, &format!("flag --{flag}"), &name)?;
            table.insert(name, loose_value(value));
        }
        // Read each setting alone first, so an error names the setting it is about.
        for (name, value) in &table {
            let alone = toml::Table::from_iter([(name.clone(), value.clone())]);
            if let Err(e) = toml::Value::Table(alone).try_into::<Config>() {
                return Err(ConfigError::Invalid(format!("{name}: {}", e.message())));
            }
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_owned()))?;
        config.validate()?;
        let name = config.resolved_name()?;
        Ok(Config { name, ..config })
    }

    /// The server's name: `name` when set; else the one kept in the data directory (made and
    /// written there on the first start), or a new random one without a data directory.
    pub fn resolved_name(&self) -> Result<String, ConfigError> {
        if !self.name.is_empty() {
            return Ok(self.name.clone());
        }
        let fresh = || format!("herald-{:08x}", fastrand::u32(..));
        if self.data_dir.is_empty() {
            return Ok(fresh());
        }
        let path = Path::new(&self.data_dir).join(NAME_FILE);
        let cannot = |e: std::io::Error| {
            ConfigError::Invalid(format!("name: cannot keep it in {}: {e}", path.display()))
        };
        match std::fs::read_to_string(&path) {
            Ok(kept) => {
                let kept = kept.trim();
                if kept.is_empty() || kept.len() > 128 || kept.chars().any(char::is_whitespace) {
                    return Err(ConfigError::Invalid(format!(
                        "name: {} holds no usable name; remove it or set name",
                        path.display()
                    )));
                }
                Ok(kept.to_owned())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let name = fresh();
                std::fs::create_dir_all(&self.data_dir).map_err(cannot)?;
                // Written whole under another name first: a crash never leaves half a name.
                let partial = path.with_extension("partial");
                std::fs::write(&partial, format!("{name}\n")).map_err(cannot)?;
                std::fs::rename(&partial, &path).map_err(cannot)?;
                Ok(name)
            }
            Err(e) => Err(cannot(e)),
        }
    }

    /// The `HERALD_*` variables among `env` that name no setting (nor a client command's
    /// `HERALD_SERVER` / `HERALD_SCOPE`): [`load`](Config::load) leaves them alone, and a
    /// server warns about them, since one may be a misspelt setting.
    pub fn unknown_variables(env: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
        let known = Self::known_names();
        env.into_iter()
            .map(|(var, _)| var)
            .filter(|var| {
                var.strip_prefix("HERALD_")
                    .is_some_and(|rest| !CLIENT_VARIABLES.contains(&rest))
                    && setting_of_variable(&known, var).is_none()
            })
            .collect()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let fail = |what: &str| Err(ConfigError::Invalid(what.to_owned()));
        if self.max_payload == 0 || self.max_payload > 64 * 1024 * 1024 {
            return fail("max_payload must be between 1 byte and 64 MiB");
        }
        if self.max_control_line < 64 {
            return fail("max_control_line must be at least 64 bytes");
        }
        if self.max_pending < self.max_payload {
            return fail("max_pending must be at least max_payload");
        }
        if self.sse_max_pending < self.max_payload {
            return fail("sse_max_pending must be at least max_payload");
        }
        if self.ping_interval.is_zero() || self.write_deadline.is_zero() {
            return fail("ping_interval and write_deadline must be more than zero");
        }
        if self.max_pings_out == 0
            || self.max_connections == 0
            || self.capacity == 0
            || self.max_scopes == 0
        {
            return fail(
                "max_pings_out, max_connections, max_scopes and capacity must be at least 1",
            );
        }
        if self.auth_timeout.is_zero() {
            return fail("auth_timeout must be more than zero");
        }
        if self.lame_duck_grace_period >= self.lame_duck_duration {
            return fail("lame_duck_grace_period must be shorter than lame_duck_duration");
        }
        if self
            .name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
            || self.name.len() > 128
        {
            return fail("name must be at most 128 characters, without spaces");
        }
        crate::auth::Users::from_config(&self.users).map_err(ConfigError::Invalid)?;
        if let Some(tls) = &self.tls {
            crate::tls::Certificates::load(tls).map_err(ConfigError::Invalid)?;
        }
        self.route_tls()?;
        self.fsync_policy()?;
        Ok(())
    }

    /// The `fsync` setting, read.
    pub fn fsync_policy(&self) -> Result<herald::streams::Fsync, ConfigError> {
        use herald::streams::Fsync;
        match self.fsync.as_str() {
            "always" => Ok(Fsync::Always),
            "never" => Ok(Fsync::Never),
            other => match humantime::parse_duration(other) {
                Ok(d) if !d.is_zero() => Ok(Fsync::Interval(d)),
                _ => Err(ConfigError::Invalid(format!(
                    "fsync must be always, never or an interval such as 200ms, not {other:?}"
                ))),
            },
        }
    }

    /// Where and how streams keep their data, or `None` when `data_dir` is empty.
    pub fn streams(&self) -> Option<herald::streams::StreamsOptions> {
        if self.data_dir.is_empty() {
            return None;
        }
        let fsync = self
            .fsync_policy()
            .unwrap_or(herald::streams::Fsync::Always);
        Some(
            herald::streams::StreamsOptions::new(&self.data_dir)
                .fsync(fsync)
                .raft_snapshot_entries(self.raft_snapshot_entries),
        )
    }

    /// The routes' certificates of `[cluster.tls]`, read, if set.
    fn route_tls(&self) -> Result<Option<herald::RouteTls>, ConfigError> {
        let Some(tls) = &self.cluster.tls else {
            return Ok(None);
        };
        herald::RouteTls::from_pem_files(&tls.cert, &tls.key, &tls.ca)
            .map(Some)
            .map_err(|e| ConfigError::Invalid(format!("cluster.tls: {e}")))
    }

    /// How this server's node joins its cluster, or `None` when it joins none. The node is
    /// named after the server. Fails when the files of `[cluster.tls]` cannot be read.
    pub fn cluster(&self) -> Result<Option<herald::NodeBuilder>, ConfigError> {
        if self.cluster_listen.is_empty() && self.seeds.is_empty() {
            return Ok(None);
        }
        let mut builder = herald::Node::builder()
            .name(&self.name)
            .seeds(self.seeds.iter().cloned())
            .cluster_name(&self.cluster_name)
            .cluster_secret(&self.cluster_secret);
        if !self.cluster_listen.is_empty() {
            builder = builder.listen(&self.cluster_listen);
        }
        if !self.cluster_advertise.is_empty() {
            builder = builder.advertise(&self.cluster_advertise);
        }
        if let Some(tls) = self.route_tls()? {
            builder = builder.route_tls(tls);
        }
        Ok(Some(builder))
    }

    fn known_names() -> Vec<String> {
        let mut names: Vec<String> = match toml::Table::try_from(Config::default()) {
            Ok(table) => table.keys().cloned().collect(),
            Err(_) => Vec::new(),
        };
        // Empty by default, so not in the table above.
        names.push("users".into());
        names.push("tls".into());
        names.push("cluster".into());
        names
    }
}

fn check_known(known: &[String], origin: &str, name: &str) -> Result<(), ConfigError> {
    if known.iter().any(|k| k == name) {
        return Ok(());
    }
    Err(ConfigError::Unknown {
        origin: origin.to_owned(),
        name: name.to_owned(),
        known: known.join(", "),
    })
}

/// The setting a `HERALD_*` variable sets (`HERALD_MAX_PAYLOAD` → `max_payload`), if any.
fn setting_of_variable(known: &[String], var: &str) -> Option<String> {
    let name = var.strip_prefix("HERALD_")?.to_ascii_lowercase();
    known.contains(&name).then_some(name)
}

/// `HERALD_*` variables of the client commands (`herald pub --server`, `--scope`), not server
/// settings: a shell that sets them can still run `herald serve`.
const CLIENT_VARIABLES: &[&str] = &[
    "SERVER",
    "SCOPE",
    "USER",
    "PASSWORD",
    "TOKEN",
    "NKEY_SEED",
    "TLS_CA",
    "TLS_CERT",
    "TLS_KEY",
];

/// A string from the environment or a flag as a TOML value: an integer or a boolean when it
/// reads as one, else the string itself.
fn loose_value(text: &str) -> toml::Value {
    if let Ok(n) = text.parse::<i64>() {
        return toml::Value::Integer(n);
    }
    if let Ok(b) = text.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    toml::Value::String(text.to_owned())
}

/// Lists as TOML arrays or as one comma-separated string (how the environment and flags give
/// them).
mod list {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Ok(match Raw::deserialize(d)? {
            Raw::List(v) => v,
            Raw::Text(t) => t
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }
}

/// Durations as human-readable strings (`"2m"`, `"500ms"`) or whole seconds.
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Seconds(s) => Ok(Duration::from_secs(s)),
            Raw::Text(t) => humantime::parse_duration(&t)
                .map_err(|e| D::Error::custom(format!("invalid duration {t:?}: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn layers_override_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("herald.toml");
        std::fs::write(
            &file,
            "name = \"from-file\"\nmax_payload = 1000\nping_interval = \"30s\"\nlog = \"debug\"\n",
        )
        .unwrap();
        let config = Config::load(
            Some(&file),
            env(&[
                ("HERALD_NAME", "from-env"),
                ("HERALD_MAX_PAYLOAD", "2000"),
                ("PATH", "/bin"),
                ("HERALD_SERVER", "nats://elsewhere:4222"),
            ]),
            &[
                ("name", "from-flag".into()),
                ("listen", "127.0.0.1:0".into()),
            ],
        )
        .unwrap();
        assert_eq!(config.name, "from-flag");
        assert_eq!(config.max_payload, 2000);
        assert_eq!(config.ping_interval, Duration::from_secs(30));
        assert_eq!(config.log, "debug");
        assert_eq!(config.listen, "127.0.0.1:0");
        assert_eq!(config.max_control_line, 4096);
        assert!(config.cluster().unwrap().is_none());
        let config = Config::load(
            None,
            env(&[("HERALD_SEEDS", "127.0.0.1:1, 127.0.0.1:2")]),
            &[("cluster-secret", "s".into())],
        )
        .unwrap();
        assert_eq!(config.seeds, ["127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!(config.cluster_secret, "s");
        assert!(config.cluster().unwrap().is_some());
    }

    #[test]
    fn only_the_variables_of_settings_are_read() {
        let vars = env(&[
            ("HERALD_MAX_PAYLAOD", "1"),
            ("HERALD_BUILD_ID", "abc"),
            ("HERALD_SCOPE", "shop"),
            ("HERALD_NAME", "n1"),
            ("HOME", "/root"),
        ]);
        let config = Config::load(None, vars.clone(), &[]).unwrap();
        assert_eq!(config.name, "n1");
        assert_eq!(config.max_payload, Config::default().max_payload);
        assert_eq!(
            Config::unknown_variables(vars),
            ["HERALD_MAX_PAYLAOD", "HERALD_BUILD_ID"]
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let err = Config::load(None, [], &[("max-payload", "lots".into())]).unwrap_err();
        assert!(err.to_string().contains("max_payload"), "{err}");
        let err = Config::load(None, [], &[("ping-interval", "soon".into())]).unwrap_err();
        assert!(err.to_string().contains("soon"), "{err}");
        let err = Config::load(None, [], &[("max-pending", "10".into())]).unwrap_err();
        assert!(err.to_string().contains("max_pending"), "{err}");
        let err = Config::load(Some(Path::new("/nonexistent/herald.toml")), [], &[]).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/herald.toml"),
            "{err}"
        );
    }
}
