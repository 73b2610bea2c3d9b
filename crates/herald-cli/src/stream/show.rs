//! How streams are shown to people: a config described line by line, tables, times, sizes.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use async_nats::jetstream::stream;
use herald::time::rfc3339;

use super::Result;

/// The configuration part of `stream add` and `stream info`.
pub(super) fn describe_config(text: &mut String, info: &stream::Info) {
    let config = &info.config;
    let _ = writeln!(
        text,
        "stream {} (created {})",
        config.name,
        timestamp(info.created)
    );
    let limit = |n: i64, show: &dyn Fn(i64) -> String| match n {
        n if n <= 0 => "unlimited".to_owned(),
        n => show(n),
    };
    let as_bytes = |n: i64| match bytes(n.unsigned_abs()) {
        short if n < 1024 => short,
        short => format!("{short} ({n} B)"),
    };
    let duration = |d: Duration| match d.is_zero() {
        true => "unlimited".to_owned(),
        false => humantime::format_duration(d).to_string(),
    };
    let discard = match config.discard {
        stream::DiscardPolicy::Old => "old",
        stream::DiscardPolicy::New => "new",
    };
    let storage = match config.storage {
        stream::StorageType::File => "file",
        stream::StorageType::Memory => "memory",
    };
    let rows = [
        ("subjects", config.subjects.join(", ")),
        ("max msgs", limit(config.max_messages, &|n| n.to_string())),
        ("max bytes", limit(config.max_bytes, &as_bytes)),
        ("max age", duration(config.max_age)),
        (
            "max msg size",
            limit(i64::from(config.max_message_size), &as_bytes),
        ),
        ("dupe window", duration(config.duplicate_window)),
        ("discard", discard.to_owned()),
        ("storage", storage.to_owned()),
    ];
    for (key, value) in rows {
        let _ = writeln!(text, "  {key:<14}{value}");
    }
    // In a cluster: where it lives.
    if let Some(cluster) = &info.cluster
        && let Some(leader) = &cluster.leader
    {
        let replicas = config.num_replicas.max(1);
        let _ = writeln!(
            text,
            "  {:<14}{leader} (cluster {}, {replicas} replica{})",
            "server",
            cluster.name.as_deref().unwrap_or("-"),
            if replicas == 1 { "" } else { "s" }
        );
        for replica in &cluster.replicas {
            let state = match (replica.offline, replica.current) {
                (true, _) => "offline",
                (false, true) => "current",
                (false, false) => "behind",
            };
            let seen = match replica.active {
                active if active.is_zero() => String::new(),
                active => format!(", seen {} ms ago", active.as_millis()),
            };
            let _ = writeln!(
                text,
                "  {:<14}{} ({state}, lag {}{seen})",
                "replica",
                replica.name,
                replica.lag.unwrap_or(0)
            );
        }
    }
}

/// A time as RFC 3339 in UTC; `-` for the zero time (never).
pub(super) fn timestamp(time: async_nats::datetime::DateTime) -> String {
    match u64::try_from(time.unix_timestamp_nanos()) {
        Ok(ns) if ns > 0 => rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns)),
        _ => "-".to_owned(),
    }
}

/// Bytes for people: `512 B`, `1.5 KiB`, `20.0 MiB`.
pub(super) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Rows as left-aligned columns two spaces apart.
pub(super) fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(text, "{}", line.join("  ").trim_end());
    }
    text
}

/// Writes to stdout; a closed pipe is an error, not a panic.
pub(super) fn print(text: &str) -> Result {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
