//! `herald data migrate DIR`: rewrites the files a herald before the typed streams API wrote
//! (configs in JetStream's JSON: `-1` for no limit, durations in nanoseconds) in the current
//! format, so that a server opens those streams and durable consumers again. Records are not
//! touched; files already current are left alone, so running it twice is harmless.

use std::path::Path;

use herald::jetstream::config as wire;
use herald::streams::StreamConfig;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Result;

/// `herald data migrate DIR`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The data directory (its `streams/`).
    dir: std::path::PathBuf,
}

/// Migrates every stream of the data directory; prints one line per stream.
pub(super) fn migrate(args: &MigrateArgs) -> Result {
    let root = args.dir.join("streams");
    let entries = std::fs::read_dir(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let mut dirs: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_owned();
        let (stream, migrated) = migrate_stream(&dir)?;
        let consumers = migrate_consumers(&dir, &stream)?;
        println!(
            "{name}: stream.json {}, {consumers} consumer file(s) migrated",
            if migrated {
                "migrated"
            } else {
                "already current"
            }
        );
    }
    Ok(())
}

/// Rewrites `stream.json` if it is in the old format; returns the stream's config either way.
fn migrate_stream(dir: &Path) -> std::result::Result<(StreamConfig, bool), String> {
    upgrade(&dir.join("stream.json"), |old: wire::StreamConfig| {
        let config = old.to_typed().map_err(|e| e.description)?;
        config.normalize().map_err(|e| e.to_string())
    })
}

/// Rewrites the durable consumers' state files that are in the old format; returns how many.
fn migrate_consumers(dir: &Path, stream: &StreamConfig) -> std::result::Result<usize, String> {
    let Ok(entries) = std::fs::read_dir(dir.join("consumers")) else {
        return Ok(0);
    };
    let mut migrated = 0;
    for path in entries.flatten().map(|e| e.path()) {
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let (_, rewritten) = upgrade(&path, |old: wire::ConsumerConfig| {
            let config = old.to_typed().map_err(|e| e.description)?;
            config.normalize(stream).map_err(|e| e.to_string())
        })?;
        migrated += usize::from(rewritten);
    }
    Ok(migrated)
}

/// The `config` of the JSON file at `path`, read as `Current`; a config in the old format
/// is turned into one by `convert` and written back. Says whether it was rewritten.
fn upgrade<Current, Old>(
    path: &Path,
    convert: impl FnOnce(Old) -> std::result::Result<Current, String>,
) -> std::result::Result<(Current, bool), String>
where
    Current: Serialize + DeserializeOwned,
    Old: DeserializeOwned,
{
    let mut file = read_json(path)?;
    if let Ok(current) = serde_json::from_value::<Current>(file["config"].clone()) {
        return Ok((current, false));
    }
    let old: Old = serde_json::from_value(file["config"].clone()).map_err(|e| {
        format!(
            "{}: neither the current nor the old format: {e}",
            path.display()
        )
    })?;
    let config = convert(old).map_err(|e| format!("{}: {e}", path.display()))?;
    file["config"] = serde_json::to_value(&config).map_err(|e| e.to_string())?;
    write_json(path, &file)?;
    Ok((config, true))
}

fn read_json(path: &Path) -> std::result::Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: not JSON: {e}", path.display()))
}

/// Writes through a temporary file, synced and renamed, so a crash leaves the old file or
/// the new one.
fn write_json(path: &Path, value: &Value) -> std::result::Result<(), String> {
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(value).map_err(|e| e.to_string())?).map_err(fail)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}
