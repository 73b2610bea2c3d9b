//! Publish and fan-out throughput of the local router, with `tokio::sync::broadcast` measured
//! in the same run as the 1-to-N reference.
//!
//! Each iteration publishes a batch and then drains every subscriber, so the numbers cover the
//! whole path a message takes (match, enqueue, wake, dequeue), not only the publisher's half.
//! Receivers read each message the way an application does (`while let Ok(m) = try_recv()`,
//! touching the payload); every iteration checks that all of them arrived. An earlier shape,
//! `black_box(try_recv().unwrap())`, made tokio's receive loop half again as slow and showed
//! herald ahead of broadcast where it is behind (BENCHMARKS.md, session 8).

#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use herald::{Bytes, Router, SubscribeOptions};

const BATCH: usize = 1024;

fn publish_one_subscriber(c: &mut Criterion) {
    let mut g = c.benchmark_group("publish_1_sub");
    g.throughput(Throughput::Elements(BATCH as u64));
    let payload = Bytes::from(vec![7u8; 16]);

    // The whole path on one thread: publish a batch, then receive it.
    let router = Router::new(BATCH, "bench");
    let mut sub = router.subscribe("events").unwrap();
    g.bench_function("publish_then_receive_same_thread", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                router.publish("events", payload.clone()).unwrap();
            }
            let mut bytes = 0;
            while let Ok(msg) = sub.try_recv() {
                bytes += msg.payload().len();
            }
            assert_eq!(bytes, BATCH * payload.len());
        })
    });

    // The publisher's rate while a reader on the other core drains the subscription.
    let router = Router::new(BATCH * 64, "bench");
    let mut sub = router.subscribe("events").unwrap();
    let reader = std::thread::spawn(move || {
        let mut n = 0u64;
        while sub.recv_blocking().is_some() {
            n += 1;
        }
        (n, sub.dropped())
    });
    g.bench_function("publish_with_reader_thread", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                router.publish("events", payload.clone()).unwrap();
            }
        })
    });
    drop(router); // ends the reader
    let (received, dropped) = reader.join().unwrap();
    eprintln!("publish_with_reader_thread: reader received {received}, dropped {dropped}");

    // The same with tokio's broadcast channel, its reader blocking on a thread of its own.
    let (tx, mut rx) = tokio::sync::broadcast::channel::<Bytes>(BATCH * 64);
    let reader = std::thread::spawn(move || {
        let (mut n, mut lagged) = (0u64, 0u64);
        loop {
            match rx.blocking_recv() {
                Ok(_) => n += 1,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => lagged += k,
                Err(_) => break,
            }
        }
        (n, lagged)
    });
    g.bench_function("tokio_broadcast_with_reader_thread", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                tx.send(payload.clone()).unwrap();
            }
        })
    });
    drop(tx);
    let (received, lagged) = reader.join().unwrap();
    eprintln!("tokio_broadcast_with_reader_thread: reader received {received}, lagged {lagged}");
    g.finish();
}

fn fan_out(c: &mut Criterion) {
    let mut g = c.benchmark_group("fan_out");
    for subs in [1usize, 10, 1000] {
        // Keep the total work per iteration similar across fan-out widths.
        let batch = (BATCH * 10 / subs).clamp(16, BATCH);
        g.throughput(Throughput::Elements((batch * subs) as u64));
        // A shared (heap) payload: clones cost a reference count, as with real payloads.
        let payload = Bytes::from(vec![7u8; 16]);

        let router = Router::new(batch, "bench");
        let mut receivers: Vec<_> = (0..subs)
            .map(|_| router.subscribe("fan.out").unwrap())
            .collect();
        g.bench_with_input(BenchmarkId::new("herald", subs), &subs, |b, _| {
            b.iter(|| {
                for _ in 0..batch {
                    router.publish("fan.out", payload.clone()).unwrap();
                }
                let mut bytes = 0;
                for r in &mut receivers {
                    while let Ok(msg) = r.try_recv() {
                        bytes += msg.payload().len();
                    }
                }
                assert_eq!(bytes, batch * subs * payload.len());
            })
        });

        let (tx, _) = tokio::sync::broadcast::channel::<Bytes>(batch);
        let mut receivers: Vec<_> = (0..subs).map(|_| tx.subscribe()).collect();
        g.bench_with_input(BenchmarkId::new("tokio_broadcast", subs), &subs, |b, _| {
            b.iter(|| {
                for _ in 0..batch {
                    tx.send(payload.clone()).unwrap();
                }
                let mut bytes = 0;
                for r in &mut receivers {
                    while let Ok(msg) = r.try_recv() {
                        bytes += msg.len();
                    }
                }
                assert_eq!(bytes, batch * subs * payload.len());
            })
        });
    }
    g.finish();
}

fn many_subjects_with_wildcards(c: &mut Criterion) {
    let mut g = c.benchmark_group("subjects_10k_wildcards");
    let subjects: Vec<String> = (0..10_000)
        .map(|i| format!("metrics.host{i}.cpu"))
        .collect();
    let router = Router::new(16, "bench");
    let opts = || SubscribeOptions::new().capacity(subjects.len());
    let mut subs = vec![
        router.subscribe_with("metrics.*.cpu", opts()).unwrap(),
        router.subscribe_with("metrics.>", opts()).unwrap(),
        router.subscribe_with(">", opts()).unwrap(),
    ];
    // Plus a literal subscriber on every 10th subject, as dashboards would have.
    for s in subjects.iter().step_by(10) {
        subs.push(router.subscribe(s).unwrap());
    }
    g.throughput(Throughput::Elements(subjects.len() as u64));
    let payload = Bytes::from_static(b"42");
    g.bench_function("herald_publish_round_robin", |b| {
        b.iter(|| {
            for s in &subjects {
                router.publish(s, payload.clone()).unwrap();
            }
            for sub in &mut subs {
                while sub.try_recv().is_ok() {}
            }
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    publish_one_subscriber,
    fan_out,
    many_subjects_with_wildcards
);
criterion_main!(benches);
