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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::{Value, json};

use super::client::{AdminClient, ClientError};
use super::print;

/// Lines sent at once. The daemon's writer commits the accounts of
/// concurrent requests together (group commit), so a few in flight
/// multiply the rate over one at a time, each waiting for its own fsync.
const IN_FLIGHT: usize = 8;
/// Tries of a line answered 503 `overloaded`, a second apart.
const OVERLOADED_TRIES: u32 = 10;

/// What became of the lines.
#[derive(Default)]
struct Tally {
    imported: u64,
    already_there: u64,
    refused: u64,
}

/// Imports every line of `file` (`-`: standard input); false when any
/// line was refused (each told on stderr as `FILE:LINE: reason`, in the
/// file's order).
pub fn run(client: &AdminClient, file: &Path, json: bool) -> anyhow::Result<bool> {
    let shown = file.display().to_string();
    let lines = read_lines(file, &shown)?;
    let mut outcomes = send_all(client, &lines);
    outcomes.sort_by_key(|(number, _)| *number);
    let mut tally = Tally::default();
    for (number, outcome) in outcomes {
        match outcome {
            Ok(()) => tally.imported += 1,
            Err(LineError::AlreadyThere) => tally.already_there += 1,
            Err(LineError::Refused(why)) => {
                tally.refused += 1;
                eprintln!("latchctl: {shown}:{number}: {why}");
            }
            // The daemon went away (or the socket was never there): every
            // line after this one would say the same. Lines sent before it
            // were imported; running the import again counts them.
            Err(LineError::Unreachable(e)) => return Err(anyhow::anyhow!("{shown}:{number}: {e}")),
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

/// The file's lines that are not blank, with their numbers (from 1), all
/// read before any is sent: a file that cannot be read imports nothing.
fn read_lines(file: &Path, shown: &str) -> anyhow::Result<Vec<(usize, String)>> {
    let input: Box<dyn BufRead> = if shown == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let opened = std::fs::File::open(file).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
        Box::new(BufReader::new(opened))
    };
    let mut lines = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(|e| anyhow::anyhow!("{shown}:{}: {e}", i + 1))?;
        // A byte-order mark, as spreadsheet programs and PowerShell write.
        let line = if i == 0 { line.trim_start_matches('\u{feff}').to_string() } else { line };
        if !line.trim().is_empty() {
            lines.push((i + 1, line));
        }
    }
    Ok(lines)
}

type Outcome = (usize, Result<(), LineError>);

/// Sends every line, `IN_FLIGHT` at a time; stops taking new lines once
/// the daemon cannot be reached.
fn send_all(client: &AdminClient, lines: &[(usize, String)]) -> Vec<Outcome> {
    let (next, gone) = (AtomicUsize::new(0), AtomicBool::new(false));
    let worker = || {
        let mut mine = Vec::new();
        while !gone.load(Ordering::Relaxed) {
            let Some((number, line)) = lines.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
            let outcome = import_line(client, line);
            if matches!(outcome, Err(LineError::Unreachable(_))) {
                gone.store(true, Ordering::Relaxed);
            }
            mine.push((*number, outcome));
        }
        mine
    };
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..IN_FLIGHT.min(lines.len())).map(|_| scope.spawn(worker)).collect();
        // A worker that panicked takes latchctl down with it rather than
        // leave its lines out of the tally unsaid.
        workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    })
}

enum LineError {
    AlreadyThere,
    Refused(String),
    Unreachable(ClientError),
}

/// Why a line is no JSON, placed by its column: serde's own "at line 1"
/// would contradict the file's line number told beside it.
fn not_json(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let reason = text.rfind(" at line ").map_or(text.as_str(), |at| &text[..at]);
    format!("not a JSON object: {reason} (column {})", e.column())
}

fn import_line(client: &AdminClient, line: &str) -> Result<(), LineError> {
    let body: Value = serde_json::from_str(line).map_err(|e| LineError::Refused(not_json(&e)))?;
    if !body.get("email").is_some_and(Value::is_string) {
        return Err(LineError::Refused("a line needs \"email\" (a string)".into()));
    }
    let mut tries = 0;
    loop {
        tries += 1;
        match client.post("/v1/admin/users", Some(&body)) {
            Ok(_) => return Ok(()),
            Err(ClientError::Problem { status: 409, .. }) => return Err(LineError::AlreadyThere),
            // A line with a password in clear waits for a hashing thread:
            // with lines in flight the pool may be full for a moment.
            Err(ClientError::Problem { slug, .. }) if slug == "overloaded" && tries < OVERLOADED_TRIES => {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            Err(ClientError::Problem { detail, .. }) => return Err(LineError::Refused(detail)),
            Err(e) => return Err(LineError::Unreachable(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_lines_and_a_byte_order_mark_are_passed_over_and_numbers_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("accounts.jsonl");
        std::fs::write(&file, "\u{feff}{\"email\": \"a@b.example\"}\r\n\r\n  \n{\"email\": \"c@d.example\"}")
            .unwrap();
        let lines = read_lines(&file, "accounts.jsonl").unwrap();
        let numbers: Vec<usize> = lines.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [1, 4]);
        assert!(lines.iter().all(|(_, l)| serde_json::from_str::<Value>(l).is_ok()), "{lines:?}");
    }

    #[test]
    fn a_line_that_is_no_account_is_refused_before_it_is_sent() {
        // A socket nobody listens on: a line sent would come back Unreachable.
        let client = AdminClient { socket: "/nonexistent/latch.sock".into() };
        let refused = |line: &str| matches!(import_line(&client, line), Err(LineError::Refused(_)));
        assert!(refused("not json"));
        let Err(LineError::Refused(why)) = import_line(&client, r#"{"email": "a@b.example",}"#) else {
            panic!("a trailing comma is no JSON")
        };
        assert_eq!(why, "not a JSON object: trailing comma (column 25)");
        assert!(refused("[1, 2]"));
        assert!(refused(r#"{"password_hash": "$2b$10$x"}"#));
        assert!(matches!(
            import_line(&client, r#"{"email": "a@b.example"}"#),
            Err(LineError::Unreachable(_))
        ));
    }
}
