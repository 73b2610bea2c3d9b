//! Consumer configs and infos as JetStream writes them (JETSTREAM-WIRE 5), to and from the
//! typed ones.

use super::*;

/// A consumer's configuration (`ConsumerConfig`, JETSTREAM-WIRE 5.2 and 5.3).
///
/// Deserializing is lenient (nulls and unknown fields are fine, `""` strings are absent);
/// [`to_typed`](ConsumerConfig::to_typed) hands it to the store, and
/// [`from_typed`](ConsumerConfig::from_typed) gives the server's echo (5.4).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsumerConfig {
    /// Set for a durable consumer, which lives until deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "empty_none")]
    pub durable_name: Option<String>,
    /// The consumer's name; the durable name when that is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "empty_none")]
    pub name: Option<String>,
    /// Free text for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "empty_none")]
    pub description: Option<String>,
    /// Where in the stream delivery starts.
    pub deliver_policy: DeliverPolicy,
    /// First sequence, with [`DeliverPolicy::ByStartSequence`] only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "zero_none")]
    pub opt_start_seq: Option<u64>,
    /// First time (RFC 3339), with [`DeliverPolicy::ByStartTime`] only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "empty_none")]
    pub opt_start_time: Option<String>,
    /// How deliveries are acknowledged.
    pub ack_policy: AckPolicy,
    /// How long (ns) an unacked delivery waits before it is redelivered.
    pub ack_wait: u64,
    /// Most deliveries of one message; -1 = unlimited.
    pub max_deliver: i64,
    /// Successive redelivery delays (ns); the first one replaces `ack_wait`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backoff: Vec<u64>,
    /// The one subject pattern to deliver.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "empty_none")]
    pub filter_subject: Option<String>,
    /// Several subject patterns to deliver (exclusive with `filter_subject`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filter_subjects: Vec<String>,
    /// How fast stored messages are replayed.
    pub replay_policy: ReplayPolicy,
    /// Percentage of acks to sample for observability, e.g. `"100%"` (kept, not acted on).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "empty_none")]
    pub sample_freq: Option<String>,
    /// Most pull requests queued at once.
    pub max_waiting: i64,
    /// Most deliveries awaiting an ack; -1 = unlimited.
    pub max_ack_pending: i64,
    /// Deliver headers only, without payloads.
    #[serde(skip_serializing_if = "is_false")]
    pub headers_only: bool,
    /// Largest `batch` a pull request may ask for; 0 = no limit.
    #[serde(skip_serializing_if = "is_zero")]
    pub max_batch: i64,
    /// Largest `max_bytes` a pull request may ask for; 0 = no limit.
    #[serde(skip_serializing_if = "is_zero")]
    pub max_bytes: i64,
    /// Longest `expires` (ns) a pull request may ask for; 0 = no limit.
    #[serde(skip_serializing_if = "is_zero")]
    pub max_expires: u64,
    /// A push consumer's subject: messages are sent there as they come.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "empty_none")]
    pub deliver_subject: Option<String>,
    /// The queue group of a push consumer's subscribers.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "empty_none")]
    pub deliver_group: Option<String>,
    /// Push consumers: a heartbeat (ns) after this long without a delivery; 0 = none.
    #[serde(skip_serializing_if = "is_zero")]
    pub idle_heartbeat: u64,
    /// Push consumers: pause until the client answers a flow-control request.
    #[serde(skip_serializing_if = "is_false")]
    pub flow_control: bool,
    /// Push consumers: most bytes per second; 0 = no limit.
    #[serde(skip_serializing_if = "is_zero")]
    pub rate_limit_bps: u64,
    /// How long (ns) an ephemeral consumer may go without pulls before it is deleted.
    #[serde(skip_serializing_if = "is_zero")]
    pub inactive_threshold: u64,
    /// Copies kept in a cluster; 0 = the stream's.
    pub num_replicas: i64,
    /// Keep the consumer's state in memory even on a file stream.
    #[serde(skip_serializing_if = "is_false")]
    pub mem_storage: bool,
    /// Free key/value pairs for applications.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Fields herald does not implement that the request set (pausing, priority groups),
    /// refused by [`to_typed`](ConsumerConfig::to_typed). Never serialized.
    #[serde(
        flatten,
        skip_serializing,
        deserialize_with = "unsupported_consumer_fields"
    )]
    pub unsupported: Vec<&'static str>,
}

impl ConsumerConfig {
    /// The typed config a client's request asks for: push options need a deliver subject
    /// (10088 for heartbeats without one), start options must fit the deliver policy
    /// (10094). The store then normalizes it.
    pub fn to_typed(self) -> Result<streams::ConsumerConfig, ApiError> {
        if let Some(field) = self.unsupported.first() {
            return Err(ApiError::bad_request(format!("{field} is not supported")));
        }
        let push = self
            .deliver_subject
            .clone()
            .map(|deliver_subject| streams::Push {
                deliver_subject,
                deliver_group: self.deliver_group.clone(),
                idle_heartbeat: nanos(self.idle_heartbeat),
                flow_control: self.flow_control,
                rate_limit_bps: (self.rate_limit_bps > 0).then_some(self.rate_limit_bps),
            });
        if push.is_none() && self.deliver_group.is_some() {
            return Err(ApiError::bad_request(
                "consumer deliver group requires a deliver subject",
            ));
        }
        if push.is_none() && self.rate_limit_bps > 0 {
            return Err(ApiError::bad_request(
                "consumer rate limit requires a push based consumer",
            ));
        }
        if push.is_none() && self.idle_heartbeat > 0 {
            return Err(ApiError::new(
                400,
                10088,
                "consumer idle heartbeat requires a push based consumer",
            ));
        }
        if push.is_none() && self.flow_control {
            return Err(ApiError::bad_request(
                "consumer flow control requires a push based consumer",
            ));
        }
        if let (Some(name), Some(durable)) = (&self.name, &self.durable_name)
            && name != durable
        {
            return Err(ApiError::name_durable_mismatch());
        }
        let deliver = self.deliver()?;
        if self.filter_subject.is_some() && !self.filter_subjects.is_empty() {
            return Err(ApiError::new(
                400,
                10136,
                "consumer cannot have both filter_subject and filter_subjects specified",
            ));
        }
        for (value, what) in [
            (self.max_waiting, "max_waiting"),
            (self.max_batch, "max_batch"),
            (self.max_bytes, "max_bytes"),
            (self.num_replicas, "num_replicas"),
        ] {
            if value < 0 {
                return Err(ApiError::bad_request(format!("{what} can not be negative")));
            }
        }
        let ack_policy = match self.ack_policy {
            AckPolicy::None => streams::AckPolicy::None,
            AckPolicy::All => streams::AckPolicy::All,
            AckPolicy::Explicit => streams::AckPolicy::Explicit,
        };
        let positive = |n: i64| u64::try_from(n).ok().and_then(NonZeroU64::new);
        let max_ack_pending = match self.max_ack_pending {
            0 if ack_policy != streams::AckPolicy::None => {
                NonZeroU64::new(streams::DEFAULT_MAX_ACK_PENDING)
            }
            n => positive(n),
        };
        let durable = self.durable_name.is_some();
        Ok(streams::ConsumerConfig {
            name: self.name.or(self.durable_name),
            durable,
            description: self.description,
            deliver,
            ack_policy,
            ack_wait: nanos(self.ack_wait),
            max_deliver: positive(self.max_deliver),
            backoff: self.backoff.into_iter().map(Duration::from_nanos).collect(),
            filter_subjects: match self.filter_subject {
                Some(filter) => vec![filter],
                None => self.filter_subjects,
            },
            replay_policy: match self.replay_policy {
                ReplayPolicy::Instant => streams::ReplayPolicy::Instant,
                ReplayPolicy::Original => streams::ReplayPolicy::Original,
            },
            sample_frequency: self.sample_freq,
            max_waiting: match self.max_waiting {
                0 => streams::DEFAULT_MAX_WAITING,
                n => n as u64,
            },
            max_ack_pending,
            headers_only: self.headers_only,
            max_batch: positive(self.max_batch),
            max_bytes: positive(self.max_bytes),
            max_expires: nanos(self.max_expires),
            inactive_threshold: nanos(self.inactive_threshold),
            replicas: u8::try_from(self.num_replicas).unwrap_or(u8::MAX),
            memory_storage: self.mem_storage,
            metadata: self.metadata.unwrap_or_default(),
            push,
        })
    }

    /// The deliver policy with its start option, checked against each other (10094).
    fn deliver(&self) -> Result<streams::DeliverPolicy, ApiError> {
        let start_error = |text: &str| Err(ApiError::start_policy(text));
        Ok(match self.deliver_policy {
            DeliverPolicy::ByStartSequence => {
                if self.opt_start_time.is_some() {
                    return start_error(
                        "opt_start_time is not allowed with deliver policy by_start_sequence",
                    );
                }
                match self.opt_start_seq {
                    Some(seq) => streams::DeliverPolicy::ByStartSequence(seq),
                    None => {
                        return start_error(
                            "deliver policy by_start_sequence requires opt_start_seq",
                        );
                    }
                }
            }
            DeliverPolicy::ByStartTime => {
                if self.opt_start_seq.is_some() {
                    return start_error(
                        "opt_start_seq is not allowed with deliver policy by_start_time",
                    );
                }
                let Some(text) = &self.opt_start_time else {
                    return start_error("deliver policy by_start_time requires opt_start_time");
                };
                match time::parse(text) {
                    Ok(at) => {
                        streams::DeliverPolicy::ByStartTime(at.unwrap_or(std::time::UNIX_EPOCH))
                    }
                    Err(_) => return start_error("opt_start_time is not a valid RFC 3339 time"),
                }
            }
            policy => {
                if self.opt_start_seq.is_some() || self.opt_start_time.is_some() {
                    return start_error(
                        "opt_start_seq and opt_start_time need deliver policy by_start_sequence \
                         or by_start_time",
                    );
                }
                match policy {
                    DeliverPolicy::Last => streams::DeliverPolicy::Last,
                    DeliverPolicy::New => streams::DeliverPolicy::New,
                    DeliverPolicy::LastPerSubject => streams::DeliverPolicy::LastPerSubject,
                    _ => streams::DeliverPolicy::All,
                }
            }
        })
    }

    /// A typed (normalized) config as the server echoes it. One filter is written as
    /// `filter_subject`, several as `filter_subjects` (a consumer create that sent one filter
    /// as a list gets its list back: see the API's `consumer_create`).
    pub fn from_typed(config: &streams::ConsumerConfig) -> ConsumerConfig {
        let count =
            |n: Option<NonZeroU64>| n.map_or(0, |n| i64::try_from(n.get()).unwrap_or(i64::MAX));
        let (deliver_policy, opt_start_seq, opt_start_time) = match config.deliver {
            streams::DeliverPolicy::All => (DeliverPolicy::All, None, None),
            streams::DeliverPolicy::Last => (DeliverPolicy::Last, None, None),
            streams::DeliverPolicy::New => (DeliverPolicy::New, None, None),
            streams::DeliverPolicy::LastPerSubject => (DeliverPolicy::LastPerSubject, None, None),
            streams::DeliverPolicy::ByStartSequence(seq) => {
                (DeliverPolicy::ByStartSequence, Some(seq), None)
            }
            streams::DeliverPolicy::ByStartTime(at) => {
                // Go's zero time came in as the Unix epoch: it goes back out as it came.
                let at = (at != std::time::UNIX_EPOCH).then_some(at);
                (DeliverPolicy::ByStartTime, None, Some(rfc3339(at)))
            }
        };
        let push = config.push.as_ref();
        let (filter_subject, filter_subjects) = match config.filter_subjects.as_slice() {
            [one] => (Some(one.clone()), Vec::new()),
            many => (None, many.to_vec()),
        };
        ConsumerConfig {
            durable_name: config.name.clone().filter(|_| config.durable),
            name: config.name.clone(),
            description: config.description.clone(),
            deliver_policy,
            opt_start_seq,
            opt_start_time,
            ack_policy: match config.ack_policy {
                streams::AckPolicy::None => AckPolicy::None,
                streams::AckPolicy::All => AckPolicy::All,
                streams::AckPolicy::Explicit => AckPolicy::Explicit,
            },
            ack_wait: config.ack_wait.map_or(0, as_nanos),
            max_deliver: config.max_deliver.map_or(-1, |n| count(Some(n))),
            backoff: config.backoff.iter().copied().map(as_nanos).collect(),
            filter_subject,
            filter_subjects,
            replay_policy: match config.replay_policy {
                streams::ReplayPolicy::Instant => ReplayPolicy::Instant,
                streams::ReplayPolicy::Original => ReplayPolicy::Original,
            },
            sample_freq: config.sample_frequency.clone(),
            // Pull requests are a pull consumer's only.
            max_waiting: match config.push {
                Some(_) => 0,
                None => i64::try_from(config.max_waiting).unwrap_or(i64::MAX),
            },
            max_ack_pending: config.max_ack_pending.map_or(-1, |n| count(Some(n))),
            headers_only: config.headers_only,
            max_batch: count(config.max_batch),
            max_bytes: count(config.max_bytes),
            max_expires: config.max_expires.map_or(0, as_nanos),
            deliver_subject: push.map(|p| p.deliver_subject.clone()),
            deliver_group: push.and_then(|p| p.deliver_group.clone()),
            idle_heartbeat: push.and_then(|p| p.idle_heartbeat).map_or(0, as_nanos),
            flow_control: push.is_some_and(|p| p.flow_control),
            rate_limit_bps: push.and_then(|p| p.rate_limit_bps).unwrap_or(0),
            inactive_threshold: config.inactive_threshold.map_or(0, as_nanos),
            num_replicas: i64::from(config.replicas),
            mem_storage: config.memory_storage,
            metadata: (!config.metadata.is_empty()).then(|| config.metadata.clone()),
            unsupported: Vec::new(),
        }
    }
}

/// A consumer position: `delivered` and `ack_floor` in [`ConsumerInfo`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceInfo {
    /// Consumer sequence (counts deliveries, redeliveries included).
    pub consumer_seq: u64,
    /// Stream sequence of the message.
    pub stream_seq: u64,
    /// When this last moved (RFC 3339); left out when never.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_active: Option<String>,
}

/// The reply to consumer create and info, and the items of a consumer list (5.4).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsumerInfo {
    /// The consumer's stream.
    pub stream_name: String,
    /// The consumer's name.
    pub name: String,
    /// When it was created (RFC 3339).
    pub created: String,
    /// Its normalized configuration.
    pub config: ConsumerConfig,
    /// The last message handed out.
    pub delivered: SequenceInfo,
    /// Everything at or below this is acknowledged.
    pub ack_floor: SequenceInfo,
    /// Delivered and not yet acknowledged.
    pub num_ack_pending: usize,
    /// Delivered more than once and still pending.
    pub num_redelivered: usize,
    /// Queued pull requests.
    pub num_waiting: usize,
    /// Matching messages not delivered yet.
    pub num_pending: u64,
    /// When this reply was made (RFC 3339).
    #[serde(default)]
    pub ts: String,
}

impl ConsumerInfo {
    /// A typed consumer info as JetStream reports it.
    pub fn from_typed(info: &streams::ConsumerInfo) -> ConsumerInfo {
        let position = |p: streams::Position, last_active: Option<SystemTime>| SequenceInfo {
            consumer_seq: p.consumer_seq,
            stream_seq: p.stream_seq,
            last_active: last_active.map(|at| rfc3339(Some(at))),
        };
        ConsumerInfo {
            stream_name: info.stream.clone(),
            name: info.name.clone(),
            created: rfc3339(Some(info.created)),
            config: ConsumerConfig::from_typed(&info.config),
            delivered: position(info.delivered, info.last_active),
            ack_floor: position(info.ack_floor, None),
            num_ack_pending: info.num_ack_pending,
            num_redelivered: info.num_redelivered,
            num_waiting: info.num_waiting,
            num_pending: info.num_pending,
            ts: rfc3339(Some(SystemTime::now())),
        }
    }

    /// The typed info a server's reply stands for.
    pub fn to_typed(self) -> Result<streams::ConsumerInfo, ApiError> {
        let position = |p: &SequenceInfo| streams::Position {
            consumer_seq: p.consumer_seq,
            stream_seq: p.stream_seq,
        };
        let last_active = match &self.delivered.last_active {
            Some(at) => parse_time(at)?,
            None => None,
        };
        Ok(streams::ConsumerInfo {
            stream: self.stream_name,
            name: self.name,
            created: parse_time(&self.created)?.unwrap_or(std::time::UNIX_EPOCH),
            delivered: position(&self.delivered),
            ack_floor: position(&self.ack_floor),
            num_ack_pending: self.num_ack_pending,
            num_redelivered: self.num_redelivered,
            num_waiting: self.num_waiting,
            num_pending: self.num_pending,
            last_active,
            config: self.config.to_typed()?,
        })
    }
}
