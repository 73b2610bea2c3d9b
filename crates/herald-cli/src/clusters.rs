//! Several clusters from one client command (`--cluster NAME=URL[,URL]`, or a `[clusters]`
//! table in a client config file), through herald-client; and `herald cluster-of`.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use herald_client::rendezvous::Reach;
use herald_client::{Client, ClientBuilder};

/// The clusters of a command that spreads subjects over several.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClustersArgs {
    /// A cluster of subjects spread by name: NAME=URL[,URL..]; repeat for each cluster (every
    /// subject then lives on one of them; `--server` is not used).
    #[arg(long = "cluster", value_name = "NAME=URL[,URL]")]
    pub clusters: Vec<String>,
    /// Client config file with a `[clusters]` table (`name = ["nats://..", ..]`) and optionally
    /// `partition_tokens = K`.
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Hash only the first K tokens of each subject to choose its cluster.
    #[arg(long, value_name = "K")]
    pub partition_tokens: Option<usize>,
}

/// `[clusters]` and `partition_tokens` of a client config file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    clusters: toml::Table,
    partition_tokens: Option<usize>,
}

type Error = Box<dyn std::error::Error>;

impl ClustersArgs {
    /// Whether any cluster was given (else the command uses `--server`).
    pub fn any(&self) -> bool {
        !self.clusters.is_empty() || self.config.is_some()
    }

    /// The clusters as a client builder, checked for what can be checked without connecting
    /// (names, duplicates, URLs).
    pub fn builder(&self) -> Result<ClientBuilder, Error> {
        let mut builder = Client::builder();
        let mut partition = self.partition_tokens;
        if let Some(path) = &self.config {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let file: File = toml::from_str(&text)
                .map_err(|e| format!("{}: {}", path.display(), e.message()))?;
            for (name, urls) in file.clusters {
                let urls: Vec<String> = match urls {
                    toml::Value::String(s) => s.split(',').map(str::to_owned).collect(),
                    toml::Value::Array(list) => list
                        .into_iter()
                        .map(|v| match v {
                            toml::Value::String(s) => Ok(s),
                            other => Err(format!(
                                "{}: cluster {name:?}: a URL must be a string, not a {}",
                                path.display(),
                                other.type_str()
                            )),
                        })
                        .collect::<Result<_, _>>()?,
                    other => {
                        return Err(format!(
                            "{}: cluster {name:?}: expected a list of URLs, not a {}",
                            path.display(),
                            other.type_str()
                        )
                        .into());
                    }
                };
                builder = builder.cluster(name, urls);
            }
            partition = partition.or(file.partition_tokens);
        }
        for spec in &self.clusters {
            let (name, urls) = spec
                .split_once('=')
                .ok_or_else(|| format!("--cluster {spec:?}: expected NAME=URL[,URL]"))?;
            let urls: Vec<&str> = urls.split(',').filter(|u| !u.is_empty()).collect();
            builder = builder.cluster(name, urls);
        }
        if let Some(k) = partition {
            builder = builder.partition_tokens(k);
        }
        builder.ring()?;
        Ok(builder)
    }

    /// Connects to every cluster with `base` options (the command's credentials and TLS, from
    /// `ClientArgs::full_options`) and `timeout` as the publish deadline.
    pub async fn connect(
        &self,
        base: async_nats::ConnectOptions,
        name: &str,
        timeout: Duration,
    ) -> Result<Client, Error> {
        let builder = self
            .builder()?
            .name(name)
            .publish_timeout(timeout)
            .connect_options(move |_| base.clone());
        Ok(builder.connect().await?)
    }
}

/// `herald cluster-of SUBJECT... --cluster ..`.
#[derive(Debug, clap::Args)]
pub struct ClusterOfArgs {
    /// Subjects (or `-` to read them from standard input, one per line).
    #[arg(required = true)]
    subjects: Vec<String>,
    #[command(flatten)]
    clusters: ClustersArgs,
}

/// Prints `SUBJECT NAME` for each subject, connecting to nothing. A pattern with a wildcard
/// among its hashed tokens lives on every cluster: its line says `*`.
pub fn cluster_of(args: ClusterOfArgs) -> Result<(), Error> {
    if !args.clusters.any() {
        return Err(
            "name the clusters: --cluster NAME=URL[,URL] (repeated) or --config FILE".into(),
        );
    }
    let ring = args.clusters.builder()?.ring()?;
    let mut out = std::io::stdout().lock();
    let mut one = |subject: &str| -> Result<(), Error> {
        herald_proto::subject::validate(subject)
            .map_err(|reason| format!("invalid subject {subject:?}: {reason}"))?;
        match ring.reach(subject) {
            Some(Reach::One(_)) => {
                let name = ring.cluster_of(subject).unwrap_or("*");
                writeln!(out, "{subject} {name}")?;
            }
            _ => writeln!(out, "{subject} *")?,
        }
        Ok(())
    };
    for subject in &args.subjects {
        if subject == "-" {
            for line in std::io::stdin().lock().lines() {
                let line = line?;
                let line = line.trim();
                if !line.is_empty() {
                    one(line)?;
                }
            }
        } else {
            one(subject)?;
        }
    }
    Ok(())
}
