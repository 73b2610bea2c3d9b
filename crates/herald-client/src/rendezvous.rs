//! Which cluster a subject lives on: rendezvous (highest random weight) hashing over cluster
//! **names**, so the mapping depends on nothing but the names and the subject.
//!
//! The hash is XXH3-64 (seed 0), a specified algorithm whose output is the same in every
//! process, platform and version (unlike `std`'s `DefaultHasher`, which promises nothing):
//!
//! ```text
//! score(cluster, key) = XXH3-64( LE64(XXH3-64(cluster name)) ‖ LE64(XXH3-64(key)) )
//! ```
//!
//! The key is the whole subject, or its first `k` tokens with
//! [`partition_tokens(k)`](crate::ClientBuilder::partition_tokens). The cluster with the
//! highest score wins (a tie, which needs a 64-bit collision, goes to the greater name).
//! Listing clusters in another order changes nothing; adding one moves to it the keys it now
//! wins, about 1/(n+1) of them, taken from every other cluster alike; removing one moves only
//! the keys it held. The key is hashed once and each cluster's name once per client, so
//! choosing costs one short hash per cluster.

use xxhash_rust::xxh3::xxh3_64;

/// The clusters a client spreads subjects over, ready to choose among.
#[derive(Debug, Clone)]
pub struct Ring {
    /// The names, and the hash of each.
    names: Vec<(String, u64)>,
    /// Tokens of a subject that are hashed (`None`: all).
    partition: Option<usize>,
}

/// Where a subscription to a pattern must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The hashed tokens are literal: every subject the pattern matches lives on this one
    /// cluster (its index).
    One(usize),
    /// A wildcard among the hashed tokens: matching subjects live anywhere.
    All,
}

impl Ring {
    /// A ring over `names` (assumed distinct), hashing the first `partition` tokens of each
    /// subject (`None`: the whole subject).
    pub fn new<I, S>(names: I, partition: Option<usize>) -> Ring
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names = names
            .into_iter()
            .map(|n| {
                let n = n.into();
                let h = xxh3_64(n.as_bytes());
                (n, h)
            })
            .collect();
        Ring { names, partition }
    }

    /// The names, in the order given.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|(n, _)| n.as_str())
    }

    /// The part of `subject` that is hashed.
    pub fn key<'a>(&self, subject: &'a str) -> &'a str {
        match self.partition {
            None => subject,
            Some(k) => match subject.match_indices('.').nth(k.saturating_sub(1)) {
                Some((at, _)) if k > 0 => &subject[..at],
                _ => subject,
            },
        }
    }

    /// The index of the cluster that `subject` lives on; `None` only when there is no cluster.
    pub fn pick(&self, subject: &str) -> Option<usize> {
        let key = xxh3_64(self.key(subject).as_bytes());
        self.names
            .iter()
            .enumerate()
            .max_by(|(_, (a, ha)), (_, (b, hb))| {
                (score(*ha, key), a.as_str()).cmp(&(score(*hb, key), b.as_str()))
            })
            .map(|(i, _)| i)
    }

    /// The name of the cluster that `subject` lives on; `None` only when there is no cluster.
    pub fn cluster_of(&self, subject: &str) -> Option<&str> {
        self.pick(subject).map(|i| self.names[i].0.as_str())
    }

    /// Where a subscription to `pattern` (a valid subject or pattern) must go.
    pub fn reach(&self, pattern: &str) -> Option<Reach> {
        let key = self.key(pattern);
        if key.split('.').any(|t| t == "*" || t == ">") {
            return (!self.names.is_empty()).then_some(Reach::All);
        }
        // A `>` just past the hashed tokens matches only subjects that share them.
        self.pick(key).map(Reach::One)
    }
}

/// The weight of a cluster (by its name's hash) for a key (by its hash).
fn score(name: u64, key: u64) -> u64 {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&name.to_le_bytes());
    bytes[8..].copy_from_slice(&key.to_le_bytes());
    xxh3_64(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_first_tokens() {
        let whole = Ring::new(["a"], None);
        assert_eq!(whole.key("orders.eu.42"), "orders.eu.42");
        let two = Ring::new(["a"], Some(2));
        assert_eq!(two.key("orders.eu.42"), "orders.eu");
        assert_eq!(two.key("orders.eu"), "orders.eu");
        assert_eq!(two.key("orders"), "orders");
        assert_eq!(two.key("orders.eu.>"), "orders.eu");
        let one = Ring::new(["a"], Some(1));
        assert_eq!(one.key("orders.eu.42"), "orders");
    }

    #[test]
    fn patterns_reach_one_cluster_only_when_the_hashed_tokens_are_literal() {
        let names = ["eu", "us", "ap"];
        let whole = Ring::new(names, None);
        assert_eq!(whole.reach("orders.>"), Some(Reach::All));
        assert_eq!(whole.reach("orders.*.x"), Some(Reach::All));
        assert_eq!(
            whole.reach("orders.42"),
            Some(Reach::One(whole.pick("orders.42").unwrap()))
        );
        let two = Ring::new(names, Some(2));
        let home = two.pick("orders.eu.1").unwrap();
        assert_eq!(two.reach("orders.eu.>"), Some(Reach::One(home)));
        assert_eq!(two.reach("orders.eu.*"), Some(Reach::One(home)));
        assert_eq!(two.reach("orders.*.1"), Some(Reach::All));
        assert_eq!(two.reach("orders.>"), Some(Reach::All));
        for i in 0..100 {
            assert_eq!(two.pick(&format!("orders.eu.{i}")), Some(home));
        }
        assert_eq!(Ring::new(Vec::<String>::new(), None).reach("a.>"), None);
    }
}
