//! `latchctl users import FILE`: accounts brought over from another system,
//! one JSON object a line (`POST /v1/admin/users` each), so a team moving
//! to latch keeps its people and their passwords: a line's
//! `password_hash` (bcrypt, PBKDF2-SHA256 or scrypt as Django or Werkzeug
//! write them, argon2) is kept until that person's first sign-in replaces
//! it with latch's own. A line without one invites its person by mail, as
//! `users add` does. An address already registered is counted, not
//! refused, so an import that stopped half-way can be run again.

use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::{Value, json};

use super::client::{AdminClient, ClientError};
use super::print;

/// What became of the lines.
#[derive(Default)]
struct Tally {
    imported: u64,
    already_there: u64,
    refused: u64,
}

/// Imports every line of `file` (`-`: standard input); false when any
/// line was refused (each told on stderr as `FILE:LINE: reason`).
pub fn run(client: &AdminClient, file: &Path, json: bool) -> anyhow::Result<bool> {
    let shown = file.display().to_string();
    let input: Box<dyn BufRead> = if shown == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let opened = std::fs::File::open(file).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
        Box::new(BufReader::new(opened))
    };
    let mut tally = Tally::default();
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(|e| anyhow::anyhow!("{shown}:{}: {e}", i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        match import_line(client, &line) {
            Ok(()) => tally.imported += 1,
            Err(LineError::AlreadyThere) => tally.already_there += 1,
            Err(LineError::Refused(why)) => {
                tally.refused += 1;
                eprintln!("latchctl: {shown}:{}: {why}", i + 1);
            }
            // The daemon went away (or the socket was never there): every
            // line after this one would say the same.
            Err(LineError::Unreachable(e)) => return Err(anyhow::anyhow!("{shown}:{}: {e}", i + 1)),
        }
    }
    let answer = json!({
        "imported": tally.imported,
        "already_there": tally.already_there,
        "refused": tally.refused,
    });
    print(json, &answer, |_| {
        format!(
            "imported {} account(s); {} already there; {} refused",
            tally.imported, tally.already_there, tally.refused
        )
    });
    Ok(tally.refused == 0)
}

enum LineError {
    AlreadyThere,
    Refused(String),
    Unreachable(ClientError),
}

fn import_line(client: &AdminClient, line: &str) -> Result<(), LineError> {
    let body: Value =
        serde_json::from_str(line).map_err(|e| LineError::Refused(format!("not a JSON object: {e}")))?;
    if !body.get("email").is_some_and(Value::is_string) {
        return Err(LineError::Refused("a line needs \"email\" (a string)".into()));
    }
    match client.post("/v1/admin/users", Some(&body)) {
        Ok(_) => Ok(()),
        Err(ClientError::Problem { status: 409, .. }) => Err(LineError::AlreadyThere),
        Err(ClientError::Problem { detail, .. }) => Err(LineError::Refused(detail)),
        Err(e) => Err(LineError::Unreachable(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_that_is_no_account_is_refused_before_it_is_sent() {
        // A socket nobody listens on: a line sent would come back Unreachable.
        let client = AdminClient { socket: "/nonexistent/latch.sock".into() };
        let refused = |line: &str| matches!(import_line(&client, line), Err(LineError::Refused(_)));
        assert!(refused("not json"));
        assert!(refused("[1, 2]"));
        assert!(refused(r#"{"password_hash": "$2b$10$x"}"#));
        assert!(matches!(
            import_line(&client, r#"{"email": "a@b.example"}"#),
            Err(LineError::Unreachable(_))
        ));
    }
}
