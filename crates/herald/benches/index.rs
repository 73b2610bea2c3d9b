//! Match cost of the subscription index with 100,000 subscriptions, cache cold and warm.

#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use herald::Target;
use herald::index::{Entry, Index};

struct Nop;
impl Target for Nop {
    fn deliver(&self, _: u64, _: &herald::Delivery<'_>) -> bool {
        true
    }
}

/// 100,000 subscriptions shaped like a busy application: mostly literal subjects spread over
/// services and entities, some `*` and `>` patterns.
fn fill(index: &Index) {
    let target: Arc<dyn Target> = Arc::new(Nop);
    for i in 0..100_000u64 {
        let k = i / 10;
        let pattern = match i % 10 {
            0 => format!("svc{}.*.k{}", k % 100, k),
            1 => format!("svc{}.k{}.>", k % 100, k),
            _ => format!("svc{}.{}.k{}", i % 100, i, i % 100),
        };
        index.insert(Arc::new(Entry::new(i, &pattern, target.clone())));
    }
}

fn match_cost(c: &mut Criterion) {
    let mut g = c.benchmark_group("match_100k_subs");
    let subject = "svc42.4342.k42"; // one literal and one `*` subscription match it

    let cold = Index::with_cache_capacity(0);
    fill(&cold);
    assert_eq!(cold.lookup(subject).unwrap().plain.len(), 2);
    g.bench_function("cold_cache", |b| {
        b.iter(|| black_box(cold.lookup(black_box(subject)).unwrap()))
    });

    let warm = Index::default();
    fill(&warm);
    warm.lookup(subject).unwrap();
    g.bench_function("warm_cache", |b| {
        b.iter(|| black_box(warm.lookup(black_box(subject)).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, match_cost);
criterion_main!(benches);
