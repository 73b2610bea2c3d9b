//! The errors of the multi-cluster client.

use std::time::Duration;

/// What went wrong; every error about a cluster names it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The builder was given no cluster.
    #[error("no cluster given: add at least one with .cluster(name, urls)")]
    NoClusters,
    /// Two clusters share a name (names decide where subjects live, so they must differ).
    #[error("cluster {0:?} is listed twice")]
    DuplicateCluster(String),
    /// A cluster's name is empty or holds whitespace, `=`, `,`, `*` or `>`.
    #[error(
        "invalid cluster name {0:?}: it must be non-empty, without whitespace, '=', ',', '*' or '>'"
    )]
    InvalidClusterName(String),
    /// A cluster was given no server URL.
    #[error("cluster {0:?} has no server URL")]
    NoUrls(String),
    /// A server URL does not parse.
    #[error("cluster {cluster:?}: bad server URL {url:?}: {reason}")]
    BadUrl {
        /// The cluster it was given for.
        cluster: String,
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `partition_tokens(0)`: at least one token must be hashed.
    #[error("partition_tokens must be at least 1")]
    InvalidPartition,
    /// A subject or pattern herald would refuse (checked before anything is sent).
    #[error("invalid subject {subject:?}: {reason}")]
    InvalidSubject {
        /// The subject as given.
        subject: String,
        /// The rule it broke.
        reason: &'static str,
    },
    /// The subject's cluster stayed unreachable until the deadline.
    #[error("cluster {cluster:?} unreachable for {waited:?}; gave up")]
    Unavailable {
        /// The cluster.
        cluster: String,
        /// How long the client kept trying.
        waited: Duration,
    },
    /// The cluster's connection failed an operation.
    #[error("cluster {cluster:?}: {reason}")]
    Cluster {
        /// The cluster.
        cluster: String,
        /// What async-nats reported.
        reason: String,
    },
}

/// The result type of the client.
pub type Result<T> = std::result::Result<T, Error>;
