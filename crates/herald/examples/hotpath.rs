//! A fixed amount of publish work, for instruction and cycle counting without machine noise:
//!
//! ```sh
//! cargo build --release -p herald --example hotpath
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/hotpath 1 1000000
//! perf stat -e cycles:u target/release/examples/hotpath 10 1000000 tokio
//! ```
//! Arguments: subscribers, messages, and `tokio` to do the same work with
//! `tokio::sync::broadcast` instead (the reference the benchmarks compare with), `floor` to do
//! only what herald's design cannot avoid (one ring whose slots are spin locks around a
//! position and a shared message body; a publish claims a position and refills its slot's
//! body in place once no reader holds it; each subscriber reads at its own cursor, cloning the
//! body under the slot's lock: no router, no lookup, no lapping, no wake-ups), or `thread` to
//! publish to one subscriber read by another thread
//! (then the publishing rate is printed), or `tasks` / `tokio-tasks` for the shape of
//! `benches/tasks.rs` (cold): a 2-worker multi-thread runtime, the subscribers tasks awaiting
//! `recv()`, the publisher the program's own task, capacity above the message count. Prints what it did; divide the instruction or cycle
//! count by the messages published. Receivers in every mode read each message's payload
//! length, as an application touches what it receives. Each mode is a function of its own that
//! is never inlined: how `main` is written must not change the code that is measured.

use herald::{Bytes, Router};

const BATCH: usize = 1024;

fn main() -> Result<(), herald::Error> {
    let mut args = std::env::args().skip(1);
    let mut number = || args.next().and_then(|a| a.parse::<usize>().ok());
    let subscribers = number().unwrap_or(1).max(1);
    let messages = number().unwrap_or(1_000_000);
    let mode = std::env::args().nth(3).unwrap_or_else(|| "herald".into());
    let payload = Bytes::from(vec![7u8; 16]);
    let received = match mode.as_str() {
        "herald" => with_herald(subscribers, messages, &payload)?,
        "tokio" => with_tokio(subscribers, messages, &payload),
        "floor" => floor(subscribers, messages, &payload),
        "thread" => return with_reader_thread(messages, &payload),
        "tasks" => with_herald_tasks(subscribers, messages, &payload),
        "tokio-tasks" => with_tokio_tasks(subscribers, messages, &payload),
        other => {
            eprintln!(
                "unknown mode {other:?}: use herald, tokio, floor, thread, tasks or tokio-tasks"
            );
            std::process::exit(2);
        }
    };
    println!(
        "{} subscribers={subscribers} published={} delivered={received}",
        mode,
        messages / BATCH * BATCH
    );
    Ok(())
}

#[inline(never)]
fn with_herald(subscribers: usize, messages: usize, payload: &Bytes) -> herald::Result<usize> {
    let router = Router::new(BATCH, "hotpath");
    let mut subs: Vec<_> = (0..subscribers)
        .map(|_| router.subscribe("hot.path"))
        .collect::<Result<_, _>>()?;
    let mut received = 0usize;
    for _ in 0..messages / BATCH {
        for _ in 0..BATCH {
            router.publish("hot.path", payload.clone())?;
        }
        for sub in &mut subs {
            while let Ok(msg) = sub.try_recv() {
                received += msg.payload().len();
            }
        }
    }
    Ok(received / payload.len())
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("a tokio runtime")
}

#[inline(never)]
fn with_herald_tasks(subscribers: usize, messages: usize, payload: &Bytes) -> usize {
    multi_thread().block_on(async {
        let router = Router::new(messages + 16, "hotpath");
        let readers: Vec<_> = (0..subscribers)
            .map(|_| {
                let mut sub = router.subscribe("hot.path").expect("a valid pattern");
                tokio::spawn(async move {
                    let mut bytes = 0;
                    for _ in 0..messages {
                        let Some(msg) = sub.recv().await else { break };
                        bytes += msg.payload().len();
                    }
                    bytes
                })
            })
            .collect();
        for _ in 0..messages {
            let _ = router.publish("hot.path", payload.clone());
        }
        let mut received = 0;
        for r in readers {
            received += r.await.unwrap_or(0);
        }
        received / payload.len()
    })
}

#[inline(never)]
fn with_tokio_tasks(subscribers: usize, messages: usize, payload: &Bytes) -> usize {
    multi_thread().block_on(async {
        let (tx, _) = tokio::sync::broadcast::channel::<Bytes>(messages + 16);
        let readers: Vec<_> = (0..subscribers)
            .map(|_| {
                let mut rx = tx.subscribe();
                tokio::spawn(async move {
                    let mut bytes = 0;
                    for _ in 0..messages {
                        let Ok(msg) = rx.recv().await else { break };
                        bytes += msg.len();
                    }
                    bytes
                })
            })
            .collect();
        for _ in 0..messages {
            let _ = tx.send(payload.clone());
        }
        let mut received = 0;
        for r in readers {
            received += r.await.unwrap_or(0);
        }
        received / payload.len()
    })
}

#[inline(never)]
fn with_reader_thread(messages: usize, payload: &Bytes) -> herald::Result<()> {
    let router = Router::new(BATCH * 64, "hotpath");
    let mut sub = router.subscribe("hot.path")?;
    let reader = std::thread::spawn(move || {
        let mut n = 0u64;
        while sub.recv_blocking().is_some() {
            n += 1;
        }
        (n, sub.dropped())
    });
    let start = std::time::Instant::now();
    for _ in 0..messages {
        router.publish("hot.path", payload.clone())?;
    }
    let rate = messages as f64 / start.elapsed().as_secs_f64();
    drop(router);
    let (received, dropped) = reader.join().unwrap_or_default();
    println!("thread published={messages} rate={rate:.0}/s received={received} dropped={dropped}");
    Ok(())
}

#[inline(never)]
fn with_tokio(subscribers: usize, messages: usize, payload: &Bytes) -> usize {
    let (tx, _) = tokio::sync::broadcast::channel::<Bytes>(BATCH);
    let mut subs: Vec<_> = (0..subscribers).map(|_| tx.subscribe()).collect();
    let mut received = 0usize;
    for _ in 0..messages / BATCH {
        for _ in 0..BATCH {
            let _ = tx.send(payload.clone());
        }
        for sub in &mut subs {
            while let Ok(msg) = sub.try_recv() {
                received += msg.len();
            }
        }
    }
    received / payload.len()
}

/// A message body as big as herald's (subject, reply, headers, payload, responder).
struct Body {
    subject: std::sync::Arc<str>,
    _reply: Option<std::sync::Arc<str>>,
    _headers: Option<Box<[u8]>>,
    payload: Bytes,
    _responder: Option<std::sync::Weak<str>>,
}

/// One slot of the floor's ring: the position it holds plus one, and the message.
type Slot = spin::mutex::SpinMutex<(u64, Option<std::sync::Arc<Body>>)>;

#[inline(never)]
fn floor(subscribers: usize, messages: usize, payload: &Bytes) -> usize {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let subject: Arc<str> = Arc::from("hot.path");
    let slots: Vec<Slot> = (0..BATCH).map(|_| Slot::default()).collect();
    let tail = AtomicU64::new(0);
    let mut cursors = vec![0u64; subscribers];
    let mut received = 0usize;
    for _ in 0..messages / BATCH {
        for _ in 0..BATCH {
            let at = tail.fetch_add(1, Ordering::AcqRel);
            let replaced = {
                let mut slot = slots[at as usize % BATCH].lock();
                slot.0 = at + 1;
                // Refill the message in place when no reader holds it any more.
                match slot.1.as_mut().and_then(Arc::get_mut) {
                    Some(body) => {
                        body.payload = payload.clone();
                        None
                    }
                    None => slot.1.replace(Arc::new(Body {
                        subject: subject.clone(),
                        _reply: None,
                        _headers: None,
                        payload: payload.clone(),
                        _responder: None,
                    })),
                }
            };
            drop(replaced);
        }
        for next in &mut cursors {
            loop {
                let body = {
                    let slot = slots[*next as usize % BATCH].lock();
                    match &slot.1 {
                        Some(body) if slot.0 == *next + 1 => body.clone(),
                        _ => break,
                    }
                };
                *next += 1;
                received += body.payload.len() + usize::from(body.subject.is_empty());
            }
        }
    }
    received / payload.len()
}
