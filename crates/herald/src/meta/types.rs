//! The meta group's Raft types: what its log carries (commands on a map of definitions),
//! what applying one answers, and how nodes are numbered.

use std::collections::BTreeMap;
use std::io::Cursor;

use serde::{Deserialize, Serialize};
use serde_json::Value;

openraft::declare_raft_types!(
    /// The meta group's Raft configuration.
    pub TypeConfig:
        D = Command,
        R = Outcome,
        NodeId = u64,
        Node = Member,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A member of the meta group: the cluster node of that name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The node's name (unique in its cluster).
    pub name: String,
}

/// The Raft id of the node named `name`: stable across restarts, the same on every node.
pub fn node_id(name: &str) -> u64 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    // 0 is openraft's default id: never a real node's.
    u64::from_be_bytes(id).max(1)
}

/// A change to the definitions, as the log carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Sets `key` to `value`. With `if_absent`, only when `key` has no value or this very
    /// value (a retried create succeeds; a different one conflicts).
    Put {
        /// The definition's key (a stream: `streams/<scope>/<name>`).
        key: String,
        /// Its new value.
        value: Value,
        /// Create only.
        if_absent: bool,
    },
    /// Removes `key`.
    Delete {
        /// The definition's key.
        key: String,
    },
}

/// What applying one entry answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// Done (or nothing to do: entries that are not commands).
    #[default]
    Done,
    /// A create found another value under its key: that value.
    Conflict(Value),
    /// A delete found no value.
    Missing,
}

/// The definitions every member agrees on, by key.
pub type Definitions = BTreeMap<String, Value>;

/// Applies `command` to `definitions`.
pub(crate) fn apply(definitions: &mut Definitions, command: &Command) -> Outcome {
    match command {
        Command::Put {
            key,
            value,
            if_absent,
        } => match definitions.get(key) {
            Some(held) if *if_absent && held != value => Outcome::Conflict(held.clone()),
            _ => {
                definitions.insert(key.clone(), value.clone());
                Outcome::Done
            }
        },
        Command::Delete { key } => match definitions.remove(key) {
            Some(_) => Outcome::Done,
            None => Outcome::Missing,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_create_conflicts_only_with_another_value() {
        let mut defs = Definitions::new();
        let put = |v: i32, if_absent| Command::Put {
            key: "k".into(),
            value: v.into(),
            if_absent,
        };
        assert_eq!(apply(&mut defs, &put(1, true)), Outcome::Done);
        assert_eq!(apply(&mut defs, &put(1, true)), Outcome::Done, "a retry");
        assert_eq!(apply(&mut defs, &put(2, true)), Outcome::Conflict(1.into()));
        assert_eq!(apply(&mut defs, &put(2, false)), Outcome::Done);
        assert_eq!(defs["k"], Value::from(2));
        let delete = Command::Delete { key: "k".into() };
        assert_eq!(apply(&mut defs, &delete), Outcome::Done);
        assert_eq!(apply(&mut defs, &delete), Outcome::Missing);
        assert_ne!(node_id("a"), node_id("b"));
        assert_eq!(node_id("a"), node_id("a"));
    }
}
