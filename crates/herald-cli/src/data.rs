//! `herald data inspect`: a stream's records and their checksums, read from disk without a
//! running server and without changing a byte.

use std::path::{Path, PathBuf};

use herald_log::inspect::{self, Item};

type Result = std::result::Result<(), Box<dyn std::error::Error>>;

/// `herald data ...`.
#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Print the records of a data directory's streams (or of one log directory) and verify
    /// every checksum. Exits with an error when a file is damaged.
    Inspect(InspectArgs),
}

/// `herald data inspect DIR`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// A data directory (its `streams/` are inspected) or one stream's log directory.
    dir: PathBuf,
    /// Only this stream.
    #[arg(long)]
    stream: Option<String>,
    /// Print only the summary, not every record.
    #[arg(long)]
    summary: bool,
}

/// Runs a `herald data` command.
pub fn run(command: DataCommand) -> Result {
    match command {
        DataCommand::Inspect(args) => inspect_dir(&args),
    }
}

/// The log directories under `dir`: itself if it holds segments, else `dir/streams/*`.
fn logs(dir: &Path, stream: Option<&str>) -> std::result::Result<Vec<(String, PathBuf)>, String> {
    let read = |d: &Path| std::fs::read_dir(d).map_err(|e| format!("{}: {e}", d.display()));
    let is_log = |d: &Path| -> std::result::Result<bool, String> {
        Ok(read(d)?
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().ends_with(".log")))
    };
    if is_log(dir)? {
        let name = dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        return Ok(vec![(name, dir.to_owned())]);
    }
    let streams = dir.join("streams");
    let mut out = Vec::new();
    if streams.is_dir() {
        for entry in read(&streams)?.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && stream.is_none_or(|s| s == name) {
                out.push((name, entry.path()));
            }
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(match stream {
            Some(s) => format!("no stream {s:?} in {}", dir.display()),
            None => format!("no log found in {} (nor in its streams/)", dir.display()),
        });
    }
    Ok(out)
}

fn inspect_dir(args: &InspectArgs) -> Result {
    let mut damaged = 0;
    for (name, dir) in logs(&args.dir, args.stream.as_deref())? {
        let (mut records, mut segments, mut bytes) = (0u64, 0u64, 0u64);
        let (mut first, mut last) = (None, None);
        let mut damages = Vec::new();
        println!("stream {name} ({})", dir.display());
        inspect::scan(&dir, usize::MAX, |item| {
            match item {
            Item::Segment { bytes: b, .. } => {
                segments += 1;
                bytes += b;
            }
            Item::Record(view) => {
                records += 1;
                first = first.or(Some(view.seq));
                last = Some(view.seq);
                if !args.summary {
                    let at = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(view.entry.timestamp);
                    println!(
                        "  #{:<8} {}  {}  {} B{}  {}",
                        view.seq,
                        humantime::format_rfc3339_millis(at),
                        view.entry.subject,
                        view.entry.payload.len(),
                        if view.entry.headers.is_empty() { "" } else { " +headers" },
                        preview(view.entry.payload)
                    );
                }
            }
            Item::Damage {
                path,
                offset,
                remaining,
                reason,
            } => damages.push(format!(
                "  DAMAGED {} at byte {offset}: {reason} ({remaining} bytes from there would be cut on recovery)",
                path.display()
            )),
        }
        })?;
        let range = match (first, last) {
            (Some(f), Some(l)) => format!(", seq {f}..={l}"),
            _ => String::new(),
        };
        println!(
            "  {records} records{range} in {segments} segment(s), {bytes} bytes; checksums verified"
        );
        for d in &damages {
            println!("{d}");
        }
        damaged += damages.len();
    }
    if damaged > 0 {
        return Err(format!("{damaged} damaged segment(s)").into());
    }
    Ok(())
}

/// Up to 48 bytes of a payload, printable ASCII as is and the rest escaped.
fn preview(payload: &[u8]) -> String {
    let mut out: String = payload
        .iter()
        .take(48)
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    if payload.len() > 48 {
        out.push('…');
    }
    out
}
