//! What herald gives `openraft` for each of its Raft groups (the meta group, and the group of
//! each replicated stream): a log and vote on disk, and RPCs over the cluster's routes. Each
//! group brings its own state machine.
//!
//! | module | holds |
//! |---|---|
//! | `log_store` | the log and vote files |
//! | `network` | RPCs to the other members, and answering theirs |

pub(crate) mod log_store;
pub(crate) mod network;
