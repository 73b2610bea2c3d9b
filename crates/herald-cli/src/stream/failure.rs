//! Failures as one line that says what to do: no JetStream on the server, a missing stream or
//! consumer, the server's own description of an API error.

use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind, RequestErrorKind};
use async_nats::jetstream::stream::{ConsumerErrorKind, PurgeErrorKind};
use async_nats::jetstream::{self, ErrorCode};

/// What a failed JetStream call comes down to.
pub(super) enum Failure {
    /// Nothing answers the JetStream API.
    Unavailable,
    /// The server answered with an error.
    Api(jetstream::Error),
    /// No answer in time.
    TimedOut,
    /// Anything else, in async-nats's words.
    Other(String),
}

/// Reads the kind of an async-nats error; `None` sends the search on to its source.
pub(super) trait Classify {
    fn classify(&self) -> Option<Failure>;
}

impl Classify for CreateStreamErrorKind {
    fn classify(&self) -> Option<Failure> {
        match self {
            Self::JetStreamUnavailable => Some(Failure::Unavailable),
            Self::JetStream(e) => Some(Failure::Api(e.clone())),
            Self::TimedOut => Some(Failure::TimedOut),
            _ => None,
        }
    }
}

impl Classify for GetStreamErrorKind {
    fn classify(&self) -> Option<Failure> {
        match self {
            Self::JetStream(e) => Some(Failure::Api(e.clone())),
            _ => None,
        }
    }
}

impl Classify for RequestErrorKind {
    fn classify(&self) -> Option<Failure> {
        match self {
            Self::NoResponders => Some(Failure::Unavailable),
            Self::TimedOut => Some(Failure::TimedOut),
            _ => None,
        }
    }
}

impl Classify for PurgeErrorKind {
    fn classify(&self) -> Option<Failure> {
        match self {
            Self::JetStream(e) => Some(Failure::Api(e.clone())),
            Self::TimedOut => Some(Failure::TimedOut),
            Self::Request => None,
        }
    }
}

impl Classify for ConsumerErrorKind {
    fn classify(&self) -> Option<Failure> {
        match self {
            Self::JetStream(e) => Some(Failure::Api(e.clone())),
            Self::TimedOut => Some(Failure::TimedOut),
            _ => None,
        }
    }
}

impl<K> From<async_nats::error::Error<K>> for Failure
where
    K: Classify + Clone + std::fmt::Debug + std::fmt::Display + PartialEq,
{
    fn from(err: async_nats::error::Error<K>) -> Failure {
        if let Some(failure) = err.kind().classify() {
            return failure;
        }
        // A request error wrapped as the source: no responders, a timeout, an API error.
        let mut source = std::error::Error::source(&err);
        while let Some(e) = source {
            if let Some(request) = e.downcast_ref::<async_nats::jetstream::context::RequestError>()
                && let Some(failure) = request.kind().classify()
            {
                return failure;
            }
            if let Some(request) = e.downcast_ref::<async_nats::RequestError>() {
                match request.kind() {
                    async_nats::RequestErrorKind::NoResponders => return Failure::Unavailable,
                    async_nats::RequestErrorKind::TimedOut => return Failure::TimedOut,
                    _ => {}
                }
            }
            if let Some(api) = e.downcast_ref::<jetstream::Error>() {
                return Failure::Api(api.clone());
            }
            source = e.source();
        }
        Failure::Other(err.to_string())
    }
}

/// What the one-line messages need to know about the connection.
pub(super) struct Hint {
    /// The scope the client works in, when not the default one.
    pub(super) scope: Option<String>,
}

impl Hint {
    /// One line for a failed call: `doing` (such as "cannot create stream") is the prefix of
    /// errors that need one; `stream` names the stream for "not found".
    pub(super) fn explain(&self, err: impl Into<Failure>, doing: &str, stream: &str) -> String {
        self.explain_failure(err.into(), doing, stream)
    }

    pub(super) fn explain_failure(&self, failure: Failure, doing: &str, stream: &str) -> String {
        match failure {
            Failure::Unavailable => match &self.scope {
                Some(scope) => format!(
                    "no JetStream in scope {scope}: herald answers the JetStream API in the \
                     default scope, when started with --data-dir"
                ),
                None => "no JetStream here: start herald serve with --data-dir".to_owned(),
            },
            Failure::TimedOut => format!("{doing}: the server did not answer in time"),
            Failure::Api(error) => match error.error_code() {
                ErrorCode::STREAM_NOT_FOUND => format!("stream {stream} not found"),
                ErrorCode::JETSTREAM_NOT_ENABLED | ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT => {
                    "no JetStream here: start herald serve with --data-dir".to_owned()
                }
                _ => format!("{doing}: {}", api_description(&error)),
            },
            Failure::Other(text) => format!("{doing}: {text}"),
        }
    }
}

/// The `description` the server gave (async-nats keeps it private; its JSON form has it).
pub(super) fn api_description(error: &jetstream::Error) -> String {
    serde_json::to_value(error)
        .ok()
        .and_then(|v| v.get("description")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| error.to_string())
}
