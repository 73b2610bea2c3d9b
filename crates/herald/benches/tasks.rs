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

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

#[path = "support/tasks.rs"]
mod shapes;

use shapes::{SHAPES, Warm, broadcast_round, herald_round, per_publisher, runtime};

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
