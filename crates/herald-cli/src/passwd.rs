//! `herald passwd`: an argon2id hash of a password or token, for `[[users]]` in the config.

use std::io::{BufRead, IsTerminal, Write};

/// Flags of `herald passwd`.
#[derive(Debug, clap::Args)]
pub struct PasswdArgs {}

/// Reads the secret (from the terminal without echo, or the first line of stdin) and prints
/// its hash.
pub fn run(_: PasswdArgs) -> Result<(), Box<dyn std::error::Error>> {
    let secret = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("password: ")?;
        let again = rpassword::prompt_password("again: ")?;
        if first != again {
            return Err("the two entries differ".into());
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if secret.is_empty() {
        return Err("an empty password is no password".into());
    }
    let hash = herald_server::hash_secret(&secret)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{hash}")?;
    Ok(())
}
