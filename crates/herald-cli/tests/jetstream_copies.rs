//! Mirrors and sources, driven by the official `async-nats` client against `herald serve`:
//! what they copy, under which sequences, what their stream info reports, what an update
//! may change, and that each copy goes on where it stood after a restart.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use async_nats::jetstream::stream;
use common::HeraldProcess;
use common::js::{data_dir, jetstream, payloads_of, publish, wait_messages};

/// Every wait in these tests ends within this.
const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn mirrors_and_sources_copy_streams_of_the_server() {
    let dir = data_dir();
    let dir_arg = dir.path().to_str().unwrap();
    let server = HeraldProcess::start(&["--data-dir", dir_arg]);
    let js = jetstream(&server).await;
    js.create_stream(stream::Config {
        name: "ORIGIN".into(),
        subjects: vec!["origin.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    for i in 1..=4 {
        let subject = if i % 2 == 0 {
            "origin.even"
        } else {
            "origin.odd"
        };
        publish(&js, subject, &format!("o{i}")).await;
    }
    let mirror = js
        .create_stream(stream::Config {
            name: "MIRROR".into(),
            mirror: Some(stream::Source {
                name: "ORIGIN".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    // A source that does not exist yet is waited for.
    let agg = js
        .create_stream(stream::Config {
            name: "AGG".into(),
            subjects: vec!["agg.>".into()],
            sources: Some(vec![
                stream::Source {
                    name: "ORIGIN".into(),
                    filter_subject: Some("origin.even".into()),
                    ..Default::default()
                },
                stream::Source {
                    name: "LATER".into(),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        })
        .await
        .unwrap();
    wait_messages(&mirror, 4).await;
    assert_eq!(payloads_of(&mirror).await, ["o1", "o2", "o3", "o4"]);
    // A mirror's copies are the origin's messages as they are: no header added.
    let copy = mirror.get_raw_message(2).await.unwrap();
    assert!(copy.headers.get("Nats-Stream-Source").is_none(), "{copy:?}");
    wait_messages(&agg, 2).await;
    publish(&js, "agg.own", "a1").await;
    js.create_stream(stream::Config {
        name: "LATER".into(),
        subjects: vec!["later.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    publish(&js, "later.x", "l1").await;
    publish(&js, "origin.even", "o6").await;
    wait_messages(&agg, 5).await;
    let mut got = payloads_of(&agg).await;
    got.sort();
    assert_eq!(got, ["a1", "l1", "o2", "o4", "o6"]);
    let copy = agg.get_raw_message(1).await.unwrap();
    assert_eq!(
        copy.headers.get("Nats-Stream-Source").unwrap().as_str(),
        "ORIGIN 2"
    );
    wait_messages(&mirror, 5).await;

    // After a restart each copy goes on where it stood: nothing twice, nothing skipped.
    assert!(server.terminate().success());
    let server = HeraldProcess::start(&["--data-dir", dir_arg]);
    let js = jetstream(&server).await;
    publish(&js, "origin.even", "o7").await;
    let mirror = js.get_stream("MIRROR").await.unwrap();
    let agg = js.get_stream("AGG").await.unwrap();
    wait_messages(&mirror, 6).await;
    wait_messages(&agg, 6).await;
    assert_eq!(
        payloads_of(&mirror).await,
        ["o1", "o2", "o3", "o4", "o6", "o7"]
    );

    // A mirror has no subjects of its own, and copies from somewhere else than itself.
    let err = js
        .create_stream(stream::Config {
            name: "BADMIRROR".into(),
            subjects: vec!["bm.>".into()],
            mirror: Some(stream::Source {
                name: "ORIGIN".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("stream mirrors can not contain subjects"),
        "{err}"
    );
    let err = js
        .create_stream(stream::Config {
            name: "SELF".into(),
            sources: Some(vec![stream::Source {
                name: "SELF".into(),
                ..Default::default()
            }]),
            ..Default::default()
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("can not source itself"), "{err}");
}

/// Waits until `stream`'s info says its `name` copy (the mirror's if `name` is `None`) has
/// read its source and is `lag` behind.
async fn wait_copy(stream: &mut stream::Stream, name: &str, lag: u64) -> stream::SourceInfo {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let info = stream.info().await.unwrap().clone();
        let copy = info
            .mirror
            .iter()
            .chain(&info.sources)
            .find(|s| s.name == name)
            .cloned();
        if let Some(copy) = copy
            && copy.active.is_some()
            && copy.lag == lag
        {
            return copy;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the copy of {name} stands at {:?} / {:?}",
            info.mirror,
            info.sources
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_mirror_keeps_the_origin_sequences_across_gaps_and_restarts() {
    let dir = data_dir();
    let dir_arg = dir.path().to_str().unwrap();
    let server = HeraldProcess::start(&["--data-dir", dir_arg]);
    let js = jetstream(&server).await;
    let origin = js
        .create_stream(stream::Config {
            name: "ORIGIN".into(),
            subjects: vec!["o.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 1..=10 {
        publish(&js, "o.x", &format!("o{i}")).await;
    }
    // The origin keeps 4..=10 without 6 when the mirror is made.
    origin.purge().sequence(4).await.unwrap();
    assert!(origin.delete_message(6).await.unwrap());
    let config = stream::Config {
        name: "MIRROR".into(),
        mirror: Some(stream::Source {
            name: "ORIGIN".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut mirror = js.create_stream(config.clone()).await.unwrap();
    wait_messages(&mirror, 6).await;
    let state = mirror.info().await.unwrap().state.clone();
    assert_eq!((state.first_sequence, state.last_sequence), (4, 10));
    for seq in [4, 5, 7, 10] {
        let copy = mirror.get_raw_message(seq).await.unwrap();
        assert_eq!(copy.payload, format!("o{seq}").as_bytes());
    }
    let gap = mirror.get_raw_message(6).await.unwrap_err().to_string();
    assert!(gap.contains("no message found"), "{gap}");
    let copy = wait_copy(&mut mirror, "ORIGIN", 0).await;
    assert!(copy.active.unwrap() < WAIT, "{copy:?}");

    // A gap made later, then a restart: the copy goes on under the origin's numbers.
    assert!(origin.delete_message(10).await.unwrap());
    assert_eq!(publish(&js, "o.x", "o11").await, 11);
    wait_messages(&mirror, 7).await;
    assert!(server.terminate().success());
    let server = HeraldProcess::start(&["--data-dir", dir_arg]);
    let js = jetstream(&server).await;
    assert_eq!(publish(&js, "o.x", "o12").await, 12);
    let mut mirror = js.get_stream("MIRROR").await.unwrap();
    wait_messages(&mirror, 8).await;
    assert_eq!(
        payloads_of(&mirror).await,
        ["o4", "o5", "o7", "o8", "o9", "o10", "o11", "o12"]
    );
    assert_eq!(mirror.get_raw_message(12).await.unwrap().payload, "o12");
    wait_copy(&mut mirror, "ORIGIN", 0).await;

    // What it mirrors cannot change; a mirror of a stream that is not there reports that it
    // never read it.
    let err = js
        .update_stream(stream::Config {
            mirror: Some(stream::Source {
                name: "ELSEWHERE".into(),
                ..Default::default()
            }),
            ..config
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("stream mirror configuration can not be updated"),
        "{err}"
    );
    let mut waiting = js
        .create_stream(stream::Config {
            name: "WAITING".into(),
            mirror: Some(stream::Source {
                name: "NOWHERE".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let info = waiting.info().await.unwrap().clone();
    let copy = info.mirror.expect("a mirror's info");
    assert_eq!((copy.name.as_str(), copy.active), ("NOWHERE", None));
}

#[tokio::test]
async fn sources_are_added_and_removed_by_an_update() {
    let dir = data_dir();
    let server = HeraldProcess::start(&["--data-dir", dir.path().to_str().unwrap()]);
    let js = jetstream(&server).await;
    for name in ["A", "B"] {
        js.create_stream(stream::Config {
            name: name.into(),
            subjects: vec![format!("{}.>", name.to_lowercase())],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let source = |name: &str| stream::Source {
        name: name.into(),
        ..Default::default()
    };
    let config = stream::Config {
        name: "AGG".into(),
        subjects: vec!["agg.>".into()],
        sources: Some(vec![source("A")]),
        ..Default::default()
    };
    let mut agg = js.create_stream(config.clone()).await.unwrap();
    publish(&js, "a.x", "a1").await;
    publish(&js, "b.x", "b1").await;
    wait_messages(&agg, 1).await;

    // B added: copied from its start.
    js.update_stream(stream::Config {
        sources: Some(vec![source("A"), source("B")]),
        ..config.clone()
    })
    .await
    .unwrap();
    wait_messages(&agg, 2).await;
    wait_copy(&mut agg, "A", 0).await;
    wait_copy(&mut agg, "B", 0).await;

    // A removed: nothing more of it, what it copied stays.
    let info = js
        .update_stream(stream::Config {
            sources: Some(vec![source("B")]),
            ..config.clone()
        })
        .await
        .unwrap();
    assert_eq!(info.sources.len(), 1, "{:?}", info.sources);
    publish(&js, "a.x", "a2").await;
    publish(&js, "b.x", "b2").await;
    wait_messages(&agg, 3).await;
    let mut got = payloads_of(&agg).await;
    got.sort();
    assert_eq!(got, ["a1", "b1", "b2"]);

    // A again: it goes on after the last message it copied.
    js.update_stream(stream::Config {
        sources: Some(vec![source("B"), source("A")]),
        ..config
    })
    .await
    .unwrap();
    wait_messages(&agg, 4).await;
    let mut got = payloads_of(&agg).await;
    got.sort();
    assert_eq!(got, ["a1", "a2", "b1", "b2"]);
}
