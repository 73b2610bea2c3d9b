//! The store's own files (a stream's `stream.json`, a durable consumer's state): JSON written
//! so that a crash leaves the old file or the new one, never a torn one.

use std::path::Path;

use serde::Serialize;

/// Writes `value` as JSON to `path` through a temporary file and a rename; with `sync`, the
/// file and its directory are synced so the change survives a crash.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T, sync: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    if sync {
        std::fs::File::open(&tmp)?.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if sync && let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
