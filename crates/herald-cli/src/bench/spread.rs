//! Publish/subscribe over several clusters through herald-client (`--cluster`): publishers
//! publish to the run's subjects in turn (`--subjects N`: `SUBJECT.0` .. `SUBJECT.<N-1>`, spread
//! over the clusters by their names); subscribers take the run's pattern (SUBJECT.>: every
//! cluster). With one `--cluster`, the same load as the async-nats run with the same
//! `--subjects` on that server, plus the client's hashing and routing: side by side, its cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_client::Client;

use super::measure::{split, stamp};
use super::pubsub::{Run, finish_pubsub, read_stamped};
use super::{BenchArgs, Result};

async fn connect(args: &BenchArgs, name: &str) -> Result<Client> {
    let options = args
        .client
        .full_options(name)
        .map_err(|e| e.to_string())?
        .subscription_capacity(1 << 20);
    let client = args
        .clusters
        .connect(options, name, Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())?;
    client.wait_connected(Duration::from_secs(10)).await?;
    Ok(client)
}

/// Publish (and subscribe) over the clusters of `--cluster`.
pub(super) async fn pubsub_spread(args: &BenchArgs) -> Result<super::report::Report> {
    let run = Run::new(args);
    let subjects: Arc<Vec<String>> = Arc::new(run.subjects.clone());
    let mut subscribers = Vec::new();
    for _ in 0..args.subs {
        let client = connect(args, "herald bench sub").await?;
        let sub = client.subscribe(&run.pattern).await?;
        client.flush().await?;
        let run = run.clone();
        subscribers.push(tokio::spawn(async move {
            let result = read_stamped(&run, sub, false).await;
            drop(client);
            result
        }));
    }
    let mut clients = Vec::new();
    for _ in 0..args.pubs {
        clients.push(connect(args, "herald bench pub").await?);
    }
    let start = Instant::now();
    let publishers: Vec<_> = clients
        .into_iter()
        .zip(split(args.msgs, args.pubs))
        .map(|(client, count)| {
            let (run, subjects) = (run.clone(), subjects.clone());
            tokio::spawn(async move {
                let mut payload = vec![0u8; run.size];
                for i in 0..count {
                    if i % 256 == 0 {
                        run.flow.admit(256.min(count - i), run.idle).await?;
                    }
                    stamp(&mut payload, run.base_time);
                    let subject = &subjects[i as usize % subjects.len()];
                    client
                        .publish(subject, Bytes::copy_from_slice(&payload))
                        .await?;
                    if i % 4096 == 0 {
                        run.show_progress(i);
                    }
                }
                client.flush().await?;
                Result::Ok(())
            })
        })
        .collect();
    for p in publishers {
        p.await??;
    }
    let published = start.elapsed();
    let mut report = finish_pubsub(args, start, published, subscribers, &run.bar).await?;
    report.mode = "spread";
    report.client = "herald-client";
    Ok(report)
}
