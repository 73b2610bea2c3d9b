//! The shape of `benches/tasks.rs`, herald and `tokio::sync::broadcast` alternating round by
//! round, so that both see the same machine: prints each row's median deliveries per second
//! and herald's ratio to broadcast. Criterion runs one side's samples, then the other's; on a
//! shared 2-core machine the two can see different neighbours.
//!
//! ```sh
//! cargo run --release -p herald --example tasks_ab -- 15           # every row, 15 rounds each
//! cargo run --release -p herald --example tasks_ab -- 15 cold 1x1  # rows whose name has both
//! ```

#![allow(clippy::unwrap_used)]

use std::time::Duration;

#[path = "../benches/support/tasks.rs"]
mod shapes;

use shapes::{SHAPES, Warm, broadcast_round, herald_round, per_publisher, runtime};

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(9);
    let filters: Vec<String> = args.collect();
    let rt = runtime();
    println!("row                     herald M/s  broadcast M/s  ratio  (median of {rounds})");
    for warm in [false, true] {
        for (pubs, subs) in SHAPES {
            let name = format!("{} {pubs}x{subs}", if warm { "warm" } else { "cold" });
            if !filters.iter().all(|f| name.split(' ').any(|w| w == f)) {
                continue;
            }
            let msgs = per_publisher(pubs, subs);
            let deliveries = (pubs * msgs * subs) as f64;
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            let warm_pair = warm.then(|| {
                (
                    Warm::herald(&rt, pubs, subs, msgs),
                    Warm::broadcast(&rt, pubs, subs, msgs),
                )
            });
            // One round of each untimed first: a warm ring's first lap allocates.
            for round in 0..=rounds {
                let (h, b) = match &warm_pair {
                    Some((h, b)) => (h.round(&rt), b.round(&rt)),
                    None => (
                        rt.block_on(herald_round(pubs, subs, msgs)),
                        rt.block_on(broadcast_round(pubs, subs, msgs)),
                    ),
                };
                if round > 0 {
                    ours.push(rate(deliveries, h));
                    theirs.push(rate(deliveries, b));
                }
            }
            let (h, b) = (median(&mut ours), median(&mut theirs));
            println!("{name:<24}{h:>10.1}{b:>15.1}{:>7.2}", h / b);
        }
    }
}

/// Millions of deliveries per second.
fn rate(deliveries: f64, took: Duration) -> f64 {
    deliveries / took.as_secs_f64() / 1e6
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
