//! The shape applications run, shared by `benches/tasks.rs` (criterion) and
//! `examples/tasks_ab.rs` (herald and broadcast alternating, medians): a multi-thread tokio
//! runtime (2 workers), subscriber tasks each looping on `recv().await` and touching the
//! payload, publisher tasks publishing 16-byte `Bytes` as fast as they can.

#![allow(missing_docs, clippy::unwrap_used, dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::{Bytes, Router};
use tokio::runtime::Runtime;
use tokio::sync::{Barrier, broadcast};

/// Deliveries per iteration, about: messages × subscribers.
pub const DELIVERIES: usize = 2_000_000;

/// The rows: (publisher tasks, subscriber tasks).
pub const SHAPES: [(usize, usize); 4] = [(1, 1), (1, 10), (1, 1000), (4, 10)];

pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Messages each publisher sends in one iteration of a shape.
pub fn per_publisher(pubs: usize, subs: usize) -> usize {
    (DELIVERIES / subs / pubs).clamp(500, 200_000)
}

/// One herald iteration: returns the time from the first publish to the last delivery.
pub async fn herald_round(pubs: usize, subs: usize, msgs: usize) -> Duration {
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
pub async fn broadcast_round(pubs: usize, subs: usize, msgs: usize) -> Duration {
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
pub struct Warm {
    publish: Box<dyn Fn() + Send + Sync>,
    done: Arc<Barrier>,
}

impl Warm {
    pub fn herald(rt: &Runtime, pubs: usize, subs: usize, msgs: usize) -> Warm {
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

    pub fn broadcast(rt: &Runtime, pubs: usize, subs: usize, msgs: usize) -> Warm {
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
    pub fn round(&self, rt: &Runtime) -> Duration {
        let started = Instant::now();
        (self.publish)();
        rt.block_on(self.done.wait());
        started.elapsed()
    }
}
