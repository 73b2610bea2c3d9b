//! The adapter's JSON against what clients send and what a real server answers: client
//! bodies in, the server's echo out, the error codes, envelopes and request decoding.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use super::config::*;
use super::error::ApiError;
use super::requests::*;
use super::time::rfc3339;
use crate::streams;

/// One second in nanoseconds.
const SEC: u64 = 1_000_000_000;

const ASYNC_NATS_STREAM: &str = r#"{"name":"ORDERS","max_bytes":0,"max_msgs":0,
    "max_msgs_per_subject":0,"discard":"old","subjects":["orders.>"],"retention":"limits",
    "max_consumers":0,"max_age":0,"storage":"file","num_replicas":0,"consumer_limits":null}"#;

const NATS_PY_STREAM: &str = r#"{"name":"ORDERS","subjects":["orders.>"],"discard":"old",
    "discard_new_per_subject":false,"max_msgs_per_subject":-1,"max_msg_size":-1,
    "no_ack":false,"duplicate_window":0,"sealed":false,"deny_delete":false,
    "deny_purge":false,"allow_rollup_hdrs":false,"max_age":0}"#;

/// The `config` of the STREAM.CREATE reply in 3.4.
fn stream_echo() -> Value {
    json!({"name":"ORDERS","subjects":["orders.>"],"retention":"limits","max_consumers":-1,
        "max_msgs":-1,"max_bytes":-1,"max_age":0,"max_msgs_per_subject":-1,"max_msg_size":-1,
        "discard":"old","storage":"file","num_replicas":1,"duplicate_window":120000000000u64,
        "compression":"none","allow_direct":false,"mirror_direct":false,"sealed":false,
        "deny_delete":false,"deny_purge":false,"allow_rollup_hdrs":false,
        "consumer_limits":{},"allow_msg_ttl":false})
}

const ASYNC_NATS_CONSUMER: &str = r#"{"action":"","config":{"ack_policy":"explicit",
    "deliver_policy":"all","durable_name":"processor","filter_subject":"orders.new",
    "replay_policy":"instant"},"stream_name":"ORDERS"}"#;

const NATS_PY_CONSUMER: &str = r#"{"stream_name":"ORDERS","config":{"name":"processor",
    "durable_name":"processor","deliver_policy":"all","ack_policy":"explicit",
    "filter_subject":"orders.new","replay_policy":"instant","ack_wait":0,
    "idle_heartbeat":0,"inactive_threshold":0}}"#;

/// The `config` of the CONSUMER.CREATE reply in 5.4.
fn consumer_echo() -> Value {
    json!({"durable_name":"processor","name":"processor","deliver_policy":"all",
        "ack_policy":"explicit","ack_wait":30000000000u64,"max_deliver":-1,
        "filter_subject":"orders.new","replay_policy":"instant","max_waiting":512,
        "max_ack_pending":1000,"num_replicas":0})
}

/// What a stream create does with `body`: JSON to typed, normalized by the store, echoed.
fn stream(body: &str) -> Result<StreamConfig, ApiError> {
    let typed = parse_request::<StreamConfig>(body.as_bytes())?
        .to_typed()?
        .normalize()?;
    Ok(StreamConfig::from_typed(&typed))
}

fn orders() -> streams::StreamConfig {
    parse_request::<StreamConfig>(ASYNC_NATS_STREAM.as_bytes())
        .unwrap()
        .to_typed()
        .unwrap()
        .normalize()
        .unwrap()
}

fn stream_err(body: Value) -> ApiError {
    stream(&body.to_string()).unwrap_err()
}

/// The typed config a consumer create makes of `config`, normalized against ORDERS.
fn typed_consumer(config: Value) -> Result<streams::ConsumerConfig, ApiError> {
    Ok(serde_json::from_value::<ConsumerConfig>(config)
        .map_err(ApiError::invalid_json)?
        .to_typed()?
        .normalize(&orders())?)
}

/// What a consumer create echoes for `config`.
fn consumer(config: Value) -> Result<ConsumerConfig, ApiError> {
    typed_consumer(config).map(|c| ConsumerConfig::from_typed(&c))
}

fn consumer_err(config: Value) -> ApiError {
    consumer(config).unwrap_err()
}

fn to_json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap()
}

// --- streams ---

#[test]
fn client_stream_bodies_normalize_to_the_server_echo() {
    for body in [ASYNC_NATS_STREAM, NATS_PY_STREAM] {
        let got = to_json(&stream(body).unwrap());
        let want = stream_echo();
        for (key, value) in want.as_object().unwrap() {
            assert_eq!(got.get(key), Some(value), "field {key} for {body}");
        }
        assert_eq!(got, want, "whole echo for {body}");
    }
}

#[test]
fn the_echo_normalizes_to_itself() {
    let echo = stream(ASYNC_NATS_STREAM).unwrap();
    assert_eq!(stream(&to_json(&echo).to_string()).unwrap(), echo);
    let echo = consumer(json!({"name":"eph","ack_policy":"explicit"})).unwrap();
    assert_eq!(consumer(to_json(&echo)).unwrap(), echo);
    let echo =
        consumer(serde_json::from_str::<Value>(ASYNC_NATS_CONSUMER).unwrap()["config"].clone())
            .unwrap();
    assert_eq!(consumer(to_json(&echo)).unwrap(), echo);
}

#[test]
fn stream_defaults() {
    let config = stream(r#"{"name":"EVENTS"}"#).unwrap();
    assert_eq!(config.subjects, ["EVENTS"]);
    assert_eq!(config.num_replicas, 1);
    assert_eq!(config.compression, "none");
    assert_eq!(
        (config.max_msgs, config.max_bytes, config.max_consumers),
        (-1, -1, -1)
    );
    let config = stream(r#"{"name":"E","max_msgs":-7,"max_bytes":1024}"#).unwrap();
    assert_eq!((config.max_msgs, config.max_bytes), (-1, 1024));
    // A max_age below two minutes is also the duplicate window.
    let config = stream(r#"{"name":"E","max_age":60000000000}"#).unwrap();
    assert_eq!(config.duplicate_window, 60 * SEC);
    let config = stream(r#"{"name":"E","max_age":600000000000}"#).unwrap();
    assert_eq!(config.duplicate_window, 120 * SEC);
    // Empty optional values are the same as none.
    let config = stream(
        r#"{"name":"E","description":"","metadata":{},"first_seq":0,
            "consumer_limits":{"inactive_threshold":0,"max_ack_pending":0}}"#,
    )
    .unwrap();
    assert_eq!(config, stream(r#"{"name":"E"}"#).unwrap());
    assert_eq!(to_json(&config)["consumer_limits"], json!({}));
    // Memory storage and the kept options are accepted as they are.
    let config = stream(
        r#"{"name":"E","storage":"memory","allow_direct":true,"deny_delete":true,
            "consumer_limits":{"inactive_threshold":1000000000,"max_ack_pending":10},
            "metadata":{"k":"v"},"description":"d","first_seq":5}"#,
    )
    .unwrap();
    assert_eq!(config.storage, Storage::Memory);
    assert!(config.allow_direct && config.deny_delete);
    assert_eq!(config.consumer_limits.inactive_threshold, Some(SEC));
    assert_eq!(config.consumer_limits.max_ack_pending, Some(10));
    assert_eq!(config.first_seq, Some(5));
    let echo = to_json(&config);
    assert_eq!(echo["metadata"], json!({"k":"v"}));
    assert_eq!(echo["description"], "d");
    assert_eq!(echo["first_seq"], 5);
}

#[test]
fn stream_names_are_checked() {
    let long = "N".repeat(256);
    for name in [
        "", "a.b", "a*", "a>", "a b", "a\tb", "a/b", "a\\b", "a\u{1}b", &long,
    ] {
        let err = stream_err(json!({ "name": name }));
        assert_eq!(
            err,
            ApiError::invalid_stream_config("invalid stream name"),
            "{name:?}"
        );
    }
    assert!(stream(&json!({ "name": "N".repeat(255) }).to_string()).is_ok());
    assert!(stream(r#"{"name":"KV_my-bucket_1"}"#).is_ok());
}

#[test]
fn stream_subjects_are_checked() {
    let err = stream_err(json!({"name":"S","subjects":["a..b"]}));
    assert_eq!((err.code, err.err_code), (500, 10052));
    assert_eq!(err.description, "invalid subject a..b");
    for subjects in [
        json!([">"]),
        json!(["$JS.>"]),
        json!(["$JS.API.STREAM.INFO.X"]),
    ] {
        let err = stream_err(json!({"name":"S","subjects":subjects}));
        assert_eq!(err.description, "subjects overlap with the JetStream API");
    }
    let err = stream_err(json!({"name":"S","subjects":["a.*","a.*"]}));
    assert_eq!(err.err_code, 10052);
    assert!(stream(r#"{"name":"S","subjects":["a.*","b.>","$KV.x.>"]}"#).is_ok());
}

#[test]
fn stream_durations_are_checked() {
    let err = stream_err(json!({"name":"S","max_age":50_000_000}));
    assert_eq!((err.code, err.err_code), (500, 10052));
    let err = stream_err(json!({"name":"S","duplicate_window":50_000_000}));
    assert_eq!(err.err_code, 10052);
    let err = stream_err(json!({"name":"S","max_age":SEC,"duplicate_window":2 * SEC}));
    assert_eq!(err.err_code, 10052);
    let ok = stream(&json!({"name":"S","max_age":2 * SEC,"duplicate_window":SEC}).to_string());
    assert_eq!(ok.unwrap().duplicate_window, SEC);
}

#[test]
fn stream_unsupported_features_are_refused() {
    let err = stream_err(json!({"name":"S","num_replicas":3}));
    assert_eq!((err.code, err.err_code), (500, 10074));
    assert_eq!(
        err.description,
        "replicas > 1 not supported in non-clustered mode"
    );
    let cases = [
        (json!({"compression":"s2"}), "compression is not supported"),
        (
            json!({"discard_new_per_subject":true}),
            "discard new per subject requires discard new policy to be set and max msgs per subject",
        ),
        (
            json!({"mirror":{"name":"O","external":{"api":"$JS.x.API"}}}),
            "external stream sources are not supported",
        ),
        (
            json!({"sources":[{"name":"O","subject_transforms":[{"src":"a","dest":"b"}]}]}),
            "subject transforms of sources are not supported",
        ),
        (
            json!({"placement":{"cluster":"c"}}),
            "placement is not supported",
        ),
        (
            json!({"subject_transform":{"src":"a","dest":"b"}}),
            "subject_transform is not supported",
        ),
    ];
    for (mut body, want) in cases {
        body["name"] = json!("S");
        let err = stream_err(body);
        assert_eq!(err, ApiError::invalid_stream_config(want));
    }
    let config: StreamConfig =
        serde_json::from_str(r#"{"name":"S","placement":{"cluster":"c"},"sources":null}"#).unwrap();
    assert_eq!(config.unsupported, ["placement"]);
    assert!(to_json(&config).get("unsupported").is_none());
    // Unset values of unsupported fields are fine.
    let body = r#"{"name":"S","mirror":null,"sources":[],"placement":{"cluster":"","tags":[]},
        "republish":null,"subject_transform":null,"allow_atomic":false,"persist_mode":"default",
        "compression":"none","max_msgs_per_subject":-1}"#;
    let config = parse_request::<StreamConfig>(body.as_bytes()).unwrap();
    assert!(config.unsupported.is_empty());
    assert!(stream(body).is_ok());
}

// --- consumers ---

#[test]
fn client_consumer_bodies_normalize_to_the_server_echo() {
    for body in [ASYNC_NATS_CONSUMER, NATS_PY_CONSUMER] {
        let request = parse_request::<CreateConsumerRequest>(body.as_bytes()).unwrap();
        assert_eq!(request.stream_name, "ORDERS");
        assert_eq!(request.action, "");
        let typed = request
            .config
            .to_typed()
            .unwrap()
            .normalize(&orders())
            .unwrap();
        assert!(typed.durable);
        assert_eq!(typed.filter_subjects, ["orders.new"]);
        let got = to_json(&ConsumerConfig::from_typed(&typed));
        let want = consumer_echo();
        for (key, value) in want.as_object().unwrap() {
            assert_eq!(got.get(key), Some(value), "field {key} for {body}");
        }
        assert_eq!(got, want, "whole echo for {body}");
    }
}

#[test]
fn consumer_defaults() {
    // A named ephemeral (nats-py pull_subscribe without durable).
    let config = consumer(json!({"name":"eph","ack_policy":"explicit"})).unwrap();
    assert_eq!(config.durable_name, None);
    assert_eq!(config.inactive_threshold, 5 * SEC);
    assert_eq!(to_json(&config)["inactive_threshold"], json!(5 * SEC));
    assert!(config.filter_subject.is_none() && config.filter_subjects.is_empty());
    // No ack policy means none (Go's zero value): no ack wait, unlimited ack pending.
    let config = consumer(json!({})).unwrap();
    assert_eq!(config.ack_policy, AckPolicy::None);
    assert_eq!((config.ack_wait, config.max_ack_pending), (0, -1));
    assert_eq!(config.name, None);
    assert_eq!(to_json(&config)["ack_policy"], "none");
    // The stream's consumer limits.
    let mut stream = orders();
    stream.consumer_limits = streams::ConsumerLimits {
        inactive_threshold: Some(Duration::from_secs(7)),
        max_ack_pending: std::num::NonZeroU64::new(100),
    };
    let wire: ConsumerConfig = serde_json::from_value(json!({"ack_policy":"all"})).unwrap();
    let config = ConsumerConfig::from_typed(&wire.to_typed().unwrap().normalize(&stream).unwrap());
    assert_eq!(
        (config.inactive_threshold, config.max_ack_pending),
        (7 * SEC, 100)
    );
    let wire: ConsumerConfig =
        serde_json::from_value(json!({"ack_policy":"all","max_ack_pending":50})).unwrap();
    let typed = wire.to_typed().unwrap().normalize(&stream).unwrap();
    assert_eq!(ConsumerConfig::from_typed(&typed).max_ack_pending, 50);
    // Explicit values stay.
    let config = consumer(json!({"durable_name":"d","ack_policy":"explicit",
        "ack_wait":SEC,"max_deliver":5,"max_waiting":10,"max_ack_pending":20,
        "deliver_policy":"new","max_batch":10,"max_expires":SEC,"headers_only":true}))
    .unwrap();
    assert_eq!(config.ack_wait, SEC);
    assert_eq!(
        (
            config.max_deliver,
            config.max_waiting,
            config.max_ack_pending
        ),
        (5, 10, 20)
    );
    assert_eq!(config.inactive_threshold, 0);
    let echo = to_json(&config);
    assert_eq!(echo["deliver_policy"], "new");
    assert_eq!(echo["max_batch"], 10);
    assert_eq!(echo["headers_only"], true);
}

#[test]
fn consumer_start_policies() {
    let config = consumer(json!({"deliver_policy":"by_start_sequence","opt_start_seq":4}));
    assert_eq!(config.unwrap().opt_start_seq, Some(4));
    let config = consumer(json!({"deliver_policy":"by_start_time",
        "opt_start_time":"2025-03-01T10:16:00.5+01:00"}))
    .unwrap();
    assert_eq!(
        config.opt_start_time.as_deref(),
        Some("2025-03-01T09:16:00.5Z")
    );
    for body in [
        json!({"deliver_policy":"by_start_sequence"}),
        json!({"deliver_policy":"by_start_sequence","opt_start_seq":0}),
        json!({"deliver_policy":"by_start_time"}),
        json!({"deliver_policy":"by_start_time","opt_start_time":"yesterday"}),
        json!({"deliver_policy":"all","opt_start_seq":3}),
        json!({"deliver_policy":"last","opt_start_time":"2025-03-01T09:16:00Z"}),
    ] {
        let err = consumer_err(body.clone());
        assert_eq!((err.code, err.err_code), (400, 10094), "{body}");
    }
    assert_eq!(
        to_json(&consumer(json!({"deliver_policy":"last_per_subject"})).unwrap())["deliver_policy"],
        json!("last_per_subject")
    );
    let err = consumer_err(json!({"replay_policy":"original"}));
    assert_eq!((err.code, err.err_code), (400, 10003));
    assert!(err.description.ends_with("is not supported"));
}

#[test]
fn consumer_unsupported_fields_are_refused() {
    for (body, field) in [
        (json!({"pause_until":"2030-01-01T00:00:00Z"}), "pause_until"),
        (json!({"priority_groups":["a"]}), "priority_groups"),
        (
            json!({"priority_policy":"pinned_client"}),
            "priority_policy",
        ),
    ] {
        let err = consumer_err(body);
        assert_eq!((err.code, err.err_code), (400, 10003));
        assert_eq!(err.description, format!("{field} is not supported"));
    }
    // Unset as clients send them.
    assert!(
        consumer(json!({"priority_policy":"none","priority_groups":[],"pause_until":null})).is_ok()
    );
}

#[test]
fn consumer_push_options_need_a_deliver_subject() {
    let push = consumer(
        json!({"deliver_subject":"push.here","deliver_group":"workers",
        "idle_heartbeat":SEC,"flow_control":true,"rate_limit_bps":1000}),
    )
    .unwrap();
    let echo = to_json(&push);
    assert_eq!(echo["deliver_subject"], json!("push.here"));
    assert_eq!(echo["deliver_group"], json!("workers"));
    assert_eq!(echo["idle_heartbeat"], json!(SEC));
    assert_eq!(echo["flow_control"], json!(true));
    assert_eq!(echo["rate_limit_bps"], json!(1000));
    assert_eq!(
        echo["max_waiting"],
        json!(0),
        "pull requests are for pull consumers"
    );
    let err = consumer_err(json!({"deliver_subject":"push.here","flow_control":true}));
    assert_eq!(
        err.description,
        "consumer with flow control also needs heartbeats"
    );
    let err = consumer_err(json!({"deliver_subject":"push.*"}));
    assert_eq!((err.code, err.err_code), (400, 10003));
    let err = consumer_err(json!({"deliver_subject":"push.here","max_batch":10}));
    assert_eq!((err.code, err.err_code), (400, 10003));
    let err = consumer_err(json!({"deliver_group":"workers"}));
    assert_eq!((err.code, err.err_code), (400, 10003));
    let err = consumer_err(json!({"rate_limit_bps":10}));
    assert_eq!((err.code, err.err_code), (400, 10003));
    let err = consumer_err(json!({"idle_heartbeat":SEC}));
    assert_eq!((err.code, err.err_code), (400, 10088));
    let err = consumer_err(json!({"flow_control":true}));
    assert_eq!((err.code, err.err_code), (400, 10003));
    // nats-py's zeros are not push options.
    assert!(
        consumer(json!({"idle_heartbeat":0,"flow_control":false,"deliver_subject":""})).is_ok()
    );
}

#[test]
fn consumer_backoff() {
    let config = consumer(json!({"ack_policy":"explicit","backoff":[SEC, 2 * SEC],
        "max_deliver":3}))
    .unwrap();
    assert_eq!(config.ack_wait, SEC);
    assert_eq!(to_json(&config)["backoff"], json!([SEC, 2 * SEC]));
    assert_eq!(consumer(json!({"backoff":[SEC]})).unwrap().max_deliver, -1);
    let err = consumer_err(json!({"backoff":[SEC, 2 * SEC],"max_deliver":2}));
    assert_eq!((err.code, err.err_code), (400, 10116));
}

#[test]
fn consumer_names() {
    let err = consumer_err(json!({"name":"a","durable_name":"b"}));
    assert_eq!(err, ApiError::name_durable_mismatch());
    for name in ["a.b", "a*", "a b", "a/b"] {
        let err = consumer_err(json!({ "durable_name": name }));
        assert_eq!((err.code, err.err_code), (400, 10103), "{name}");
        let err = consumer_err(json!({ "name": name }));
        assert_eq!(err.code, 400, "{name}");
    }
    let config = consumer(json!({"durable_name":"d"})).unwrap();
    assert_eq!(config.name.as_deref(), Some("d"));
}

#[test]
fn consumer_filters() {
    let err = consumer_err(json!({"filter_subject":"orders.a","filter_subjects":["orders.b"]}));
    assert_eq!((err.code, err.err_code), (400, 10136));
    let err = consumer_err(json!({"filter_subject":"orders..a"}));
    assert_eq!((err.code, err.err_code), (400, 10003));
    let err = consumer_err(json!({"filter_subject":"payments.a"}));
    assert_eq!((err.code, err.err_code), (400, 10093));
    let err = consumer_err(json!({"filter_subjects":["orders.*","orders.a"]}));
    assert_eq!((err.code, err.err_code), (400, 10138));
    let config = consumer(json!({"filter_subjects":["orders.a","orders.b.>"]})).unwrap();
    assert_eq!(config.filter_subjects, ["orders.a", "orders.b.>"]);
    // Stored, one filter is one filter, however it was sent (the create reply gives a list
    // back as a list; tests/jetstream.rs).
    let config = consumer(json!({"filter_subjects":["orders.a"]})).unwrap();
    assert_eq!(config.filter_subject.as_deref(), Some("orders.a"));
    // A wider filter still overlaps the stream; "" is no filter.
    assert!(consumer(json!({"filter_subject":">"})).is_ok());
    assert_eq!(
        consumer(json!({"filter_subject":""}))
            .unwrap()
            .filter_subject,
        None
    );
    let err = consumer_err(json!({"num_replicas":3}));
    assert_eq!((err.code, err.err_code), (500, 10074));
}

#[test]
fn consumer_updates() {
    let base = typed_consumer(json!({"durable_name":"d","ack_policy":"explicit"})).unwrap();
    let same = typed_consumer(json!({"durable_name":"d","ack_policy":"explicit"})).unwrap();
    assert_eq!(base.check_update(&same), Ok(()));
    // Mutable fields may change.
    let more = typed_consumer(json!({"durable_name":"d","ack_policy":"explicit",
        "max_ack_pending":5,"description":"x","filter_subject":"orders.x","max_deliver":9}))
    .unwrap();
    assert_eq!(base.check_update(&more), Ok(()));
    let cases = [
        (
            json!({"deliver_policy":"new"}),
            "deliver policy can not be updated",
        ),
        (json!({"ack_policy":"all"}), "ack policy can not be updated"),
        (json!({"max_waiting":3}), "max waiting can not be updated"),
        (
            json!({"mem_storage":true}),
            "storage type can not be updated",
        ),
        (
            json!({"deliver_policy":"by_start_sequence","opt_start_seq":2}),
            "deliver policy can not be updated",
        ),
    ];
    for (change, want) in cases {
        let mut body = json!({"durable_name":"d","ack_policy":"explicit"});
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let new = typed_consumer(body).unwrap();
        let err = ApiError::from(base.check_update(&new).unwrap_err());
        assert_eq!(
            (err.code, err.err_code, err.description.as_str()),
            (500, 10012, want)
        );
    }
    let a =
        typed_consumer(json!({"deliver_policy":"by_start_sequence","opt_start_seq":2})).unwrap();
    let b =
        typed_consumer(json!({"deliver_policy":"by_start_sequence","opt_start_seq":3})).unwrap();
    let err = ApiError::from(a.check_update(&b).unwrap_err());
    assert_eq!((err.code, err.err_code), (500, 10012));
    assert_eq!(err.description, "start sequence can not be updated");
}

// --- envelopes and requests ---

#[test]
fn error_json_has_exactly_three_keys() {
    let err = ApiError::from(&streams::Error::consumer_not_found());
    let value = to_json(&err);
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["code", "description", "err_code"]);
    assert_eq!(
        value,
        json!({"code":404,"err_code":10014,"description":"consumer not found"})
    );
    let reply: Value = serde_json::from_slice(&error_response("consumer_info", &err)).unwrap();
    assert_eq!(
        reply,
        json!({"type":"io.nats.jetstream.api.v1.consumer_info_response",
            "error":{"code":404,"err_code":10014,"description":"consumer not found"}})
    );
    assert_eq!(
        err.to_string(),
        "consumer not found (code 404, err_code 10014)"
    );
    assert_eq!(ApiError::bad_request("").description, "bad request");
    assert_eq!(
        (
            ApiError::from(&streams::Error::stream_not_found()).code,
            ApiError::from(&streams::Error::stream_not_found()).err_code
        ),
        (404, 10059)
    );
    assert_eq!(
        ApiError::from(streams::Error::store_failed("maximum messages exceeded")).code,
        503
    );
}

#[test]
fn response_puts_type_first() {
    #[derive(Serialize)]
    struct Delete {
        success: bool,
    }
    let bytes = response("stream_delete", &Delete { success: true });
    assert_eq!(
        std::str::from_utf8(&bytes).unwrap(),
        r#"{"type":"io.nats.jetstream.api.v1.stream_delete_response","success":true}"#
    );
    #[derive(Serialize)]
    struct Empty {}
    assert_eq!(
        std::str::from_utf8(&response("system", &Empty {})).unwrap(),
        r#"{"type":"io.nats.jetstream.api.v1.system_response"}"#
    );
    // A whole StreamInfo reply as in 3.4.
    let info = StreamInfo {
        config: StreamConfig::from_typed(&orders()),
        created: rfc3339(Some(crate::time::from_unix_nanos(
            1_740_820_502_482_113_000,
        ))),
        state: StreamState::default(),
        cluster: None,
        mirror: None,
        sources: Vec::new(),
        ts: rfc3339(Some(crate::time::from_unix_nanos(
            1_740_820_502_482_200_000,
        ))),
        did_create: Some(true),
    };
    let reply: Value = serde_json::from_slice(&response("stream_create", &info)).unwrap();
    assert_eq!(
        reply,
        json!({"type":"io.nats.jetstream.api.v1.stream_create_response",
            "config":stream_echo(),
            "created":"2025-03-01T09:15:02.482113Z",
            "state":{"messages":0,"bytes":0,"first_seq":0,"first_ts":"0001-01-01T00:00:00Z",
                "last_seq":0,"last_ts":"0001-01-01T00:00:00Z","consumer_count":0},
            "ts":"2025-03-01T09:15:02.4822Z","did_create":true})
    );
}

#[test]
fn consumer_info_and_pub_ack_shapes() {
    let typed = parse_request::<CreateConsumerRequest>(ASYNC_NATS_CONSUMER.as_bytes())
        .unwrap()
        .config
        .to_typed()
        .unwrap()
        .normalize(&orders())
        .unwrap();
    let config = ConsumerConfig::from_typed(&typed);
    let info = ConsumerInfo {
        stream_name: "ORDERS".into(),
        name: "processor".into(),
        created: "2025-03-01T09:20:11.004Z".into(),
        config,
        delivered: SequenceInfo::default(),
        ack_floor: SequenceInfo::default(),
        num_ack_pending: 0,
        num_redelivered: 0,
        num_waiting: 0,
        num_pending: 3,
        ts: "2025-03-01T09:20:11.004Z".into(),
    };
    let got = to_json(&info);
    assert_eq!(
        got,
        json!({"stream_name":"ORDERS","name":"processor","created":"2025-03-01T09:20:11.004Z",
            "config":consumer_echo(),
            "delivered":{"consumer_seq":0,"stream_seq":0},"ack_floor":{"consumer_seq":0,"stream_seq":0},
            "num_ack_pending":0,"num_redelivered":0,"num_waiting":0,"num_pending":3,
            "ts":"2025-03-01T09:20:11.004Z"})
    );
    let ack = PubAck {
        stream: "ORDERS".into(),
        seq: 7,
        duplicate: false,
    };
    assert_eq!(
        serde_json::to_string(&ack).unwrap(),
        r#"{"stream":"ORDERS","seq":7}"#
    );
    let dup = PubAck {
        duplicate: true,
        ..ack
    };
    assert_eq!(
        serde_json::to_string(&dup).unwrap(),
        r#"{"stream":"ORDERS","seq":7,"duplicate":true}"#
    );
}

#[test]
fn parse_request_is_lenient() {
    for body in ["", "  ", "null", "[]", "{}", " { } "] {
        assert_eq!(
            parse_request::<StreamConfig>(body.as_bytes()).unwrap(),
            StreamConfig::default(),
            "{body:?}"
        );
        assert_eq!(
            parse_request::<PagingRequest>(body.as_bytes()).unwrap(),
            PagingRequest::default()
        );
    }
    let config: StreamConfig = parse_request(
        br#"{"name":"S","consumer_limits":null,"subjects":null,"metadata":null,
            "max_age":null,"retention":null,"future_field":{"x":1},"description":null}"#,
    )
    .unwrap();
    assert_eq!(
        config,
        StreamConfig {
            name: "S".into(),
            ..StreamConfig::default()
        }
    );
    // Nested nulls too, and through `decode` (stream create and update bodies).
    let nested: StreamConfig = decode(
        br#"{"name":"S","consumer_limits":{"inactive_threshold":null,"max_ack_pending":null},
            "max_msgs":null,"storage":null}"#,
    )
    .unwrap();
    assert_eq!(nested, config);
    assert_eq!(
        decode::<StreamConfig>(br#"{"name":"S","subjects":[null]}"#)
            .unwrap_err()
            .err_code,
        10025,
        "a null inside a list is no list of subjects"
    );
    let paging: PagingRequest = parse_request(br#"{"offset":2,"subject":null}"#).unwrap();
    assert_eq!(
        paging,
        PagingRequest {
            offset: 2,
            subject: None
        }
    );
    let get: MsgGetRequest = parse_request(br#"{"seq":null,"last_by_subj":"a.b"}"#).unwrap();
    assert_eq!(
        get,
        MsgGetRequest {
            seq: None,
            last_by_subj: Some("a.b".into()),
            next_by_subj: None
        }
    );
    let purge: PurgeRequest = parse_request(br#"{"filter":"a.>","keep":5}"#).unwrap();
    assert_eq!(
        purge,
        PurgeRequest {
            filter: Some("a.>".into()),
            seq: None,
            keep: Some(5)
        }
    );
    let create: CreateConsumerRequest =
        parse_request(br#"{"stream_name":"S","config":null,"action":null}"#).unwrap();
    assert_eq!(create.config, ConsumerConfig::default());
    let info: StreamState = serde_json::from_str(r#"{"messages":1}"#).unwrap();
    assert_eq!(info.messages, 1);
}

#[test]
fn parse_request_rejects_bad_json() {
    for body in [
        r#"{"name":"S","max_age":-1}"#,
        r#"{"name":"S","duplicate_window":-5}"#,
        r#"{"name":"S","retention":"forever"}"#,
        r#"{"name":"S""#,
        "not json",
    ] {
        let err = parse_request::<StreamConfig>(body.as_bytes()).unwrap_err();
        assert_eq!((err.code, err.err_code), (400, 10025), "{body}");
        assert!(
            err.description.starts_with("invalid JSON: "),
            "{}",
            err.description
        );
    }
    let err = parse_request::<CreateConsumerRequest>(br#"{"config":{"ack_wait":-1}}"#).unwrap_err();
    assert_eq!(err.err_code, 10025);
    let err = parse_pull(br#"{"batch":1,"expires":-1}"#).unwrap_err();
    assert_eq!(err.err_code, 10025);
}

#[test]
fn expect_empty_accepts_what_clients_send() {
    for body in ["", "{}", "null", "[]", " {} ", "garbage", "[1]"] {
        assert_eq!(expect_empty(body.as_bytes()), Ok(()), "{body:?}");
    }
    assert_eq!(expect_empty(br#"{"a":1}"#), Err(ApiError::not_empty()));
}

#[test]
fn parse_pull_shapes() {
    assert_eq!(
        parse_pull(b"").unwrap(),
        PullRequest {
            batch: 1,
            ..PullRequest::default()
        }
    );
    assert_eq!(
        parse_pull(b"5").unwrap(),
        PullRequest {
            batch: 5,
            ..PullRequest::default()
        }
    );
    assert_eq!(parse_pull(b" 0 ").unwrap().batch, 1);
    let req = parse_pull(
        br#"{"batch":200,"no_wait":true,"max_bytes":0,"min_pending":null,
            "min_ack_pending":null,"group":null,"priority":null,"expires":30000000000,
            "idle_heartbeat":15000000000}"#,
    )
    .unwrap();
    assert_eq!(
        req,
        PullRequest {
            batch: 200,
            expires: 30 * SEC,
            no_wait: true,
            max_bytes: 0,
            idle_heartbeat: 15 * SEC
        }
    );
    let req = parse_pull(br#"{"batch":1,"expires":null}"#).unwrap();
    assert_eq!((req.batch, req.expires), (1, 0));
    assert_eq!(parse_pull(b"{}").unwrap().batch, 1);
}

#[test]
fn storage_failures_keep_their_create_and_delete_codes() {
    use crate::streams::Reason;
    let code = |reason| {
        let err = ApiError::from(&streams::Error::new(reason, "disk full"));
        (err.code, err.err_code)
    };
    assert_eq!(code(Reason::StreamCreateIo), (500, 10049));
    assert_eq!(code(Reason::StreamDeleteIo), (500, 10050));
    assert_eq!(code(Reason::Io), (500, 0));
}

#[test]
fn copies_are_reported_as_nats_server_reports_them() {
    let copy = |name: &str, active| crate::streams::SourceInfo {
        name: name.into(),
        filter_subject: (name == "F").then(|| "f.>".to_owned()),
        lag: 3,
        active,
    };
    let mut typed = crate::streams::StreamInfo {
        config: orders(),
        created: std::time::UNIX_EPOCH,
        state: crate::streams::StreamState::default(),
        mirror: Some(copy("O", None)),
        sources: vec![copy("F", Some(std::time::Duration::from_millis(2)))],
    };
    let value = serde_json::to_value(StreamInfo::from_typed(&typed, None)).unwrap();
    assert_eq!(value["mirror"], json!({"name":"O","lag":3,"active":-1}));
    assert_eq!(
        value["sources"],
        json!([{"name":"F","filter_subject":"f.>","lag":3,"active":2_000_000}])
    );
    // Read back as the typed API over another node reads it.
    let back: StreamInfo = serde_json::from_value(value).unwrap();
    let back = back.to_typed().unwrap();
    assert_eq!(
        (&back.mirror, &back.sources),
        (&typed.mirror, &typed.sources)
    );
    // A stream that copies nothing says nothing of copies.
    typed.mirror = None;
    typed.sources.clear();
    let value = serde_json::to_value(StreamInfo::from_typed(&typed, None)).unwrap();
    assert!(value.get("mirror").is_none() && value.get("sources").is_none());
}
