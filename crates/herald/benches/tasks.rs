//! Fan-out as applications run it: a multi-thread tokio runtime (2 workers), subscriber tasks
//! each looping on `recv().await` and touching the payload, publisher tasks publishing as fast
//! as they can; `tokio::sync::broadcast` doing the same work in the same run.
//!
//! Two shapes, both timed from the first publish until every subscriber has received every
//! message of the round; capacities exceed the messages of one round, so nothing is dropped
//! (checked):
//! - `cold`: each round starts from a fresh router (or channel) and fresh subscriber tasks, as
//!   a short program would; the first lap of a ring allocates a message per publish. Tearing
//!   the router (channel) down after the round is not timed, for either.
//! - `warm`: the subscriptions and their tasks live across rounds, as in a server; after the
//!   first lap a ring refills the messages its readers are done with in place.
//!
//! Payloads are 16-byte `Bytes` for both, so a delivery costs a reference count in both.
//!
//! ```sh
//! cargo bench -p herald --bench tasks
//! ```

#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use herald::{Bytes, Router};
use tokio::runtime::Runtime;
use tokio::sync::{Barrier, broadcast};

/// Deliveries per iteration, about: messages × subscribers.
const DELIVERIES: usize = 2_000_000;

/// The rows: (publisher tasks, subscriber tasks).
const SHAPES: [(usize, usize); 4] = [(1, 1), (1, 10), (1, 1000), (4, 10)];

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Messages each publisher sends in one iteration of a shape.
fn per_publisher(pubs: usize, subs: usize) -> usize {
    (DELIVERIES / subs / pubs).clamp(500, 200_000)
}

/// One herald iteration: returns the time from the first publish to the last delivery.
async fn herald_round(pubs: usize, subs: usize, msgs: usize) -> Duration {
    let total = pubs * msgs;
    let router = Router::new(total + 16, "bench");
    let ready = Arc::new(Barrier::new(subs + 1));
    let mut readers = Vec::with_capacity(subs);
    for _ in 0..subs {
        let mut sub = router.subscribe("fan.out").unwrap();
        let ready = ready.clone();
        readers.push(tokio::spawn(async move {
            ready.wait().await;
            let (mut n, mut bytes) = (0, 0);
            while n < total {
                let Some(msg) = sub.recv().await else { break };
                bytes += msg.payload().len();
                n += 1;
            }
            assert_eq!(sub.dropped(), 0);
            // Handed back, so that tearing the ring down is not timed.
            (n, bytes, sub)
        }));
    }
    ready.wait().await;
    let payload = Bytes::from(vec![7u8; 16]);
    let started = Instant::now();
    if pubs == 1 {
        // One publisher: the program's own task (`#[tokio::main]`'s body), as the issue's
        // program has it.
        for _ in 0..msgs {
            router.publish("fan.out", payload.clone()).unwrap();
        }
    }
    let publishers: Vec<_> = (0..pubs)
        .filter(|_| pubs > 1)
        .map(|_| {
            let router = router.clone();
            let payload = payload.clone();
            tokio::spawn(async move {
                for _ in 0..msgs {
                    router.publish("fan.out", payload.clone()).unwrap();
                }
            })
        })
        .collect();
    for p in publishers {
        p.await.unwrap();
    }
    let mut subs = Vec::with_capacity(subs);
    for r in readers {
        let (n, bytes, sub) = r.await.unwrap();
        assert_eq!((n, bytes), (total, total * 16));
        subs.push(sub);
    }
    let elapsed = started.elapsed();
    drop(subs);
    elapsed
}

/// The same with `tokio::sync::broadcast`.
async fn broadcast_round(pubs: usize, subs: usize, msgs: usize) -> Duration {
    let total = pubs * msgs;
    let (tx, _) = broadcast::channel::<Bytes>(total + 16);
    let ready = Arc::new(Barrier::new(subs + 1));
    let mut readers = Vec::with_capacity(subs);
    for _ in 0..subs {
        let mut rx = tx.subscribe();
        let ready = ready.clone();
        readers.push(tokio::spawn(async move {
            ready.wait().await;
            let (mut n, mut bytes) = (0, 0);
            while n < total {
                match rx.recv().await {
                    Ok(msg) => {
                        bytes += msg.len();
                        n += 1;
                    }
                    Err(e) => panic!("broadcast receiver: {e}"),
                }
            }
            (n, bytes, rx)
        }));
    }
    ready.wait().await;
    let payload = Bytes::from(vec![7u8; 16]);
    let started = Instant::now();
    if pubs == 1 {
        for _ in 0..msgs {
            tx.send(payload.clone()).unwrap();
        }
    }
    let publishers: Vec<_> = (0..pubs)
        .filter(|_| pubs > 1)
        .map(|_| {
            let tx = tx.clone();
            let payload = payload.clone();
            tokio::spawn(async move {
                for _ in 0..msgs {
                    tx.send(payload.clone()).unwrap();
                }
            })
        })
        .collect();
    for p in publishers {
        p.await.unwrap();
    }
    let mut receivers = Vec::with_capacity(subs);
    for r in readers {
        let (n, bytes, rx) = r.await.unwrap();
        assert_eq!((n, bytes), (total, total * 16));
        receivers.push(rx);
    }
    let elapsed = started.elapsed();
    drop((receivers, tx));
    elapsed
}

/// Long-lived subscriber tasks for the warm shape: each reads `per_round` messages, then
/// waits at the round's barrier with the timer.
struct Warm {
    publish: Box<dyn Fn() + Send + Sync>,
    done: Arc<Barrier>,
}

impl Warm {
    fn herald(rt: &Runtime, pubs: usize, subs: usize, msgs: usize) -> Warm {
        let total = pubs * msgs;
        let router = Router::new(total + 16, "bench");
        let done = Arc::new(Barrier::new(subs + 1));
        for _ in 0..subs {
            let mut sub = router.subscribe("fan.out").unwrap();
            let done = done.clone();
            rt.spawn(async move {
                loop {
                    let mut bytes = 0;
                    for _ in 0..total {
                        let Some(msg) = sub.recv().await else { return };
                        bytes += msg.payload().len();
                    }
                    assert_eq!((bytes, sub.dropped()), (total * 16, 0));
                    done.wait().await;
                }
            });
        }
        let payload = Bytes::from(vec![7u8; 16]);
        let handle = rt.handle().clone();
        Warm {
            publish: Box::new(move || {
                for _ in 0..pubs {
                    let router = router.clone();
                    let payload = payload.clone();
                    handle.spawn(async move {
                        for _ in 0..msgs {
                            router.publish("fan.out", payload.clone()).unwrap();
                        }
                    });
                }
            }),
            done,
        }
    }

    fn broadcast(rt: &Runtime, pubs: usize, subs: usize, msgs: usize) -> Warm {
        let total = pubs * msgs;
        let (tx, _) = broadcast::channel::<Bytes>(total + 16);
        let done = Arc::new(Barrier::new(subs + 1));
        for _ in 0..subs {
            let mut rx = tx.subscribe();
            let done = done.clone();
            rt.spawn(async move {
                loop {
                    let mut bytes = 0;
                    for _ in 0..total {
                        match rx.recv().await {
                            Ok(msg) => bytes += msg.len(),
                            Err(broadcast::error::RecvError::Closed) => return,
                            Err(e) => panic!("broadcast receiver: {e}"),
                        }
                    }
                    assert_eq!(bytes, total * 16);
                    done.wait().await;
                }
            });
        }
        let payload = Bytes::from(vec![7u8; 16]);
        let handle = rt.handle().clone();
        Warm {
            publish: Box::new(move || {
                for _ in 0..pubs {
                    let tx = tx.clone();
                    let payload = payload.clone();
                    handle.spawn(async move {
                        for _ in 0..msgs {
                            tx.send(payload.clone()).unwrap();
                        }
                    });
                }
            }),
            done,
        }
    }

    /// One round: publish, and wait until every subscriber has read it.
    fn round(&self, rt: &Runtime) -> Duration {
        let started = Instant::now();
        (self.publish)();
        rt.block_on(self.done.wait());
        started.elapsed()
    }
}

fn tasks(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("tasks_warm");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    for (pubs, subs) in SHAPES {
        let msgs = per_publisher(pubs, subs);
        g.throughput(Throughput::Elements((pubs * msgs * subs) as u64));
        let id = format!("{pubs}x{subs}");
        let herald = Warm::herald(&rt, pubs, subs, msgs);
        g.bench_with_input(BenchmarkId::new("herald", &id), &id, |b, _| {
            b.iter_custom(|iters| (0..iters).map(|_| herald.round(&rt)).sum())
        });
        let tokio = Warm::broadcast(&rt, pubs, subs, msgs);
        g.bench_with_input(BenchmarkId::new("tokio_broadcast", &id), &id, |b, _| {
            b.iter_custom(|iters| (0..iters).map(|_| tokio.round(&rt)).sum())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("tasks_cold");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    for (pubs, subs) in SHAPES {
        let msgs = per_publisher(pubs, subs);
        g.throughput(Throughput::Elements((pubs * msgs * subs) as u64));
        let id = format!("{pubs}x{subs}");
        g.bench_with_input(BenchmarkId::new("herald", &id), &id, |b, _| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| rt.block_on(herald_round(pubs, subs, msgs)))
                    .sum()
            })
        });
        g.bench_with_input(BenchmarkId::new("tokio_broadcast", &id), &id, |b, _| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| rt.block_on(broadcast_round(pubs, subs, msgs)))
                    .sum()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, tasks);
criterion_main!(benches);
