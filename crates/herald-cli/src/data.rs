//! `herald data inspect|dump|restore|migrate`: a stream's records read from disk without a
//! running server (inspect verifies checksums and changes nothing), written out as JSON lines,
//! and written back into another data directory with their sequences and timestamps; and the
//! configs of an older herald rewritten in the current format (`migrate`).

mod migrate;

use std::path::{Path, PathBuf};

use herald_log::inspect::{self, Item};

type Result = std::result::Result<(), Box<dyn std::error::Error>>;

/// `herald data ...`.
#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Print the records of a data directory's streams (or of one log directory) and verify
    /// every checksum. Exits with an error when a file is damaged.
    Inspect(InspectArgs),
    /// Write one stream's records to standard output as JSON lines (`seq`, `time_ns`,
    /// `subject`, base64 `headers` and `payload`), checksums verified.
    Dump(DumpArgs),
    /// Read JSON lines (as `dump` writes them) from standard input into a new stream.
    Restore(RestoreArgs),
    /// Rewrite the stream and consumer configs an older herald wrote (JetStream's JSON) in
    /// the current format, so that a server opens them again. Records are not touched.
    Migrate(migrate::MigrateArgs),
}

/// `herald data dump DIR --stream S`.
#[derive(Debug, clap::Args)]
pub struct DumpArgs {
    /// The data directory.
    dir: PathBuf,
    /// The stream to dump.
    #[arg(long)]
    stream: String,
}

/// `herald data restore DIR --stream S`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The data directory (created if missing).
    dir: PathBuf,
    /// The stream to create; it must not exist yet.
    #[arg(long)]
    stream: String,
}

/// One record as `dump` writes it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Line {
    seq: u64,
    time_ns: u64,
    subject: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    headers: String,
    payload: String,
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
        DataCommand::Dump(args) => dump(&args),
        DataCommand::Restore(args) => restore(&args),
        DataCommand::Migrate(args) => migrate::migrate(&args),
    }
}

fn dump(args: &DumpArgs) -> Result {
    use base64::Engine;
    use std::io::Write;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (_, dir) = logs(&args.dir, Some(&args.stream))?
        .into_iter()
        .next()
        .ok_or("no such stream")?;
    let kept_from = inspect::purge_mark(&dir)?.unwrap_or(0);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // The stream's config first, so a restore makes a stream a server opens.
    let file = dir.join("stream.json");
    match std::fs::read(&file) {
        Ok(bytes) => {
            let value: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
            serde_json::to_writer(&mut out, &serde_json::json!({ STREAM_FILE: value }))?;
            out.write_all(b"\n")?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", file.display()).into()),
    }
    let mut failed = None;
    inspect::scan(&dir, usize::MAX, |item| {
        if failed.is_some() {
            return;
        }
        match item {
            // Purged, though its segment still holds it.
            Item::Record(view) if view.seq < kept_from => {}
            Item::Record(view) => {
                let line = Line {
                    seq: view.seq,
                    time_ns: view.entry.timestamp,
                    subject: view.entry.subject.to_owned(),
                    headers: b64.encode(view.entry.headers),
                    payload: b64.encode(view.entry.payload),
                };
                let written = serde_json::to_writer(&mut out, &line)
                    .map_err(|e| e.to_string())
                    .and_then(|()| out.write_all(b"\n").map_err(|e| e.to_string()));
                if let Err(e) = written {
                    failed = Some(format!("writing the dump: {e}"));
                }
            }
            Item::Damage {
                path,
                offset,
                reason,
                ..
            } => {
                failed = Some(format!(
                    "{} is damaged at byte {offset} ({reason}); the dump stops before it",
                    path.display()
                ));
            }
            Item::Segment { .. } => {}
        }
    })?;
    out.flush()?;
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

fn restore(args: &RestoreArgs) -> Result {
    let dir = args.dir.join("streams").join(&args.stream);
    if dir.exists() {
        return Err(format!(
            "stream {:?} already exists in {}",
            args.stream,
            args.dir.display()
        )
        .into());
    }
    match restore_into(&dir, std::io::stdin().lock()) {
        Ok(count) => {
            eprintln!("restored {count} records into stream {:?}", args.stream);
            Ok(())
        }
        Err(err) => {
            // All or nothing: a half-restored stream would look like a real one.
            let _ = std::fs::remove_dir_all(&dir);
            Err(err)
        }
    }
}

/// Appends every dumped record read from `input` to a new log in `dir`, keeping sequences.
fn restore_into(
    dir: &Path,
    input: impl std::io::BufRead,
) -> std::result::Result<u64, Box<dyn std::error::Error>> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut log: Option<herald_log::Log> = None;
    let mut stream_file: Option<serde_json::Value> = None;
    let mut count = 0u64;
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: String| format!("line {}: {what}", n + 1);
        if line.starts_with(&format!("{{\"{STREAM_FILE}\"")) {
            let value: serde_json::Value =
                serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
            stream_file = Some(value[STREAM_FILE].clone());
            continue;
        }
        let rec: Line = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
        let headers = b64
            .decode(&rec.headers)
            .map_err(|e| bad(format!("headers: {e}")))?;
        let payload = b64
            .decode(&rec.payload)
            .map_err(|e| bad(format!("payload: {e}")))?;
        let log = match &mut log {
            Some(log) => log,
            None => log
                .insert(herald_log::Log::open_from(dir, herald_log::Config::default(), rec.seq)?.0),
        };
        if rec.seq != log.next_seq() {
            return Err(bad(format!(
                "sequence {} where {} was expected (the dump has a gap or is out of order)",
                rec.seq,
                log.next_seq()
            ))
            .into());
        }
        log.append(&herald_log::Entry {
            subject: &rec.subject,
            headers: &headers,
            payload: &payload,
            timestamp: rec.time_ns,
        })?;
        count += 1;
    }
    match &mut log {
        Some(log) => log.sync()?,
        None => return Err("nothing to restore: standard input holds no record".into()),
    }
    match stream_file {
        Some(mut file) => {
            // The stream takes the name it is restored under.
            let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            file["config"]["name"] = name.into();
            std::fs::write(dir.join("stream.json"), serde_json::to_vec(&file)?)?;
        }
        None => eprintln!(
            "note: the dump holds no stream config; a server opens the stream once {} exists",
            dir.join("stream.json").display()
        ),
    }
    Ok(count)
}

/// The key of a dump's first line, which holds the stream's `stream.json`.
const STREAM_FILE: &str = "stream_file";

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
