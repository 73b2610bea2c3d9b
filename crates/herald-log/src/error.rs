//! Errors of the log: I/O, refused appends, and what recovery found wrong with a file.

use std::path::PathBuf;

/// Why bytes on disk are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    /// The file ends inside a record (a write cut short by a crash).
    #[error("torn record (the file ends inside it)")]
    Torn,
    /// The length field is impossible.
    #[error("impossible record length {0}")]
    BadLength(u64),
    /// The checksum does not match the bytes.
    #[error("checksum mismatch")]
    Checksum,
    /// The subject is not UTF-8.
    #[error("subject is not UTF-8")]
    BadSubject,
    /// The sequence does not follow the previous record's.
    #[error("sequence {found} where {expected} was expected")]
    Sequence {
        /// What the record says.
        found: u64,
        /// What it should say.
        expected: u64,
    },
}

/// What went wrong in a log operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A message larger than the log's `max_msg_size`.
    #[error("message of {size} bytes is larger than the maximum of {max}")]
    TooLarge {
        /// Its encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A subject longer than 65,535 bytes or headers over 4 GiB.
    #[error("subject or headers too long for a record")]
    FieldTooLong,
    /// The log is at a limit and [`Config::discard_new`](crate::Config::discard_new) refuses
    /// new messages rather than deleting old ones; says which limit.
    #[error("{0}")]
    Full(&'static str),
    /// An [`Expect`](crate::Expect)ed last sequence (of the log, or of the message's
    /// subject) was not the one found there, which is given.
    #[error("wrong last sequence: {0}")]
    WrongLastSequence(u64),
    /// [`Expect::last_header`](crate::Expect::last_header) did not hold; the value the last
    /// record has (empty: none).
    #[error("wrong last msg ID: {0}")]
    WrongLastHeader(String),
}

/// A log result.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}
