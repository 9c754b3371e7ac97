//! `latchctl status`: the running daemon's own account of itself, in a
//! table; or, when no daemon answers, what can be told without it.

use serde_json::{Value, json};

use super::client::ClientError;
use super::{AdminClient, Target, cell, fields, print};
use crate::store::{archive_layout, backup};

/// "unknown" when the daemon did not say (an older latchd, or a failed read).
fn human_mail(mail: &Value) -> String {
    let counts = match (mail["queued"].as_i64(), mail["dead"].as_i64()) {
        (Some(queued), Some(0)) => format!("{queued} queued, 0 dead"),
        (Some(queued), Some(dead)) => {
            format!("{queued} queued, {dead} dead (latchctl outbox list --status dead)")
        }
        _ => return "unknown".to_string(),
    };
    let counts = match human_delivery(&mail["delivery"]) {
        Some(how) => format!("{counts}; {how}"),
        None => counts,
    };
    match mail["failing"].as_str() {
        Some(error) => format!("{counts}; failing: {error} (latchctl outbox list)"),
        None => counts,
    }
}

/// Where mail goes, from `mail.delivery` of `/v1/admin/status`.
fn human_delivery(delivery: &Value) -> Option<String> {
    match delivery["via"].as_str()? {
        "smtp" => {
            let (host, port) = (delivery["host"].as_str()?, &delivery["port"]);
            let over = match delivery["security"].as_str() {
                Some("starttls") => " (STARTTLS)",
                Some("tls") => " (TLS)",
                Some("none") => " (in clear)",
                _ => "",
            };
            Some(format!("sent by SMTP to {host}:{port}{over}"))
        }
        _ => Some(format!("written as files to {} (no [smtp])", delivery["dir"].as_str()?)),
    }
}

fn human_backups(b: &Value) -> String {
    if let Some(error) = b["error"].as_str() {
        return format!("cannot list: {error}");
    }
    match (b["dir"].as_str(), b["newest"].as_str()) {
        (Some(dir), Some(at)) => format!("newest {at} in {dir}"),
        (Some(dir), None) => format!("none yet in {dir}"),
        _ => "unknown".to_string(),
    }
}

/// Where a point-in-time restore can reach, beside the backup files: with
/// the archive on, "no backups yet" does not mean nothing can be restored.
fn human_archive(a: &Value) -> String {
    let dir = cell(a, "dir", "?");
    match a["enabled"].as_bool() {
        None => return "unknown".to_string(),
        Some(false) => return "off ([backup].wal_archive): no restore to a chosen moment".to_string(),
        Some(true) => {}
    }
    if let Some(error) = a["error"].as_str() {
        return format!("cannot list {dir}: {error}");
    }
    let Some(from) = a["restorable_from"].as_str() else {
        return format!("on, first snapshot not written yet, in {dir}");
    };
    let lag = a["lag_seconds"].as_f64().unwrap_or(0.0);
    // A segment is written at most every 100 ms: under a second is current.
    let through = match a["restorable_until"].as_str() {
        Some(until) => until_damage(until),
        None if lag >= 1.0 => format!("{lag:.0} s behind the last commit"),
        None => "the last commit".into(),
    };
    let gaps =
        a["gaps"].as_array().into_iter().flatten().map(|g| (cell(g, "from", "?"), cell(g, "until", "?")));
    format!("restorable from {from} to {through}{}, in {dir}", except_gaps(gaps))
}

/// The last moment a restore reaches when the archive's newest generation
/// copied a damaged database, and why it ends there.
pub(super) fn until_damage(until: &str) -> String {
    format!("{until} (the newest generation copied a damaged database)")
}

/// The stretches a restore cannot reach, as a clause: ", except from A
/// until B" (`--to-time` A is refused, B works).
pub(super) fn except_gaps<T: std::fmt::Display>(gaps: impl IntoIterator<Item = (T, T)>) -> String {
    let each: Vec<String> =
        gaps.into_iter().map(|(from, until)| format!("from {from} until {until}")).collect();
    if each.is_empty() { String::new() } else { format!(", except {}", each.join(" and ")) }
}

/// The served certificate's expiry, days left first: a certificate of
/// one's own that nobody renews stops every client at once.
fn human_certificate(tls: &Value) -> String {
    let Some(expires) = tls["expires"].as_str() else { return "none (no HTTPS listener)".into() };
    let days = tls["days_left"].as_i64();
    let made = if tls["generated"].as_bool() == Some(true) { "; self-signed, renewed by latch" } else { "" };
    match days {
        Some(d) if d < 0 => format!("EXPIRED {expires}{made}"),
        Some(d) => format!("expires {expires} (in {d} days){made}"),
        None => format!("expires {expires}{made}"),
    }
}

fn human_audit(ok: &Value) -> String {
    match ok.as_bool() {
        Some(true) => "intact at the last check (every 10 minutes)".into(),
        Some(false) => "BROKEN: run `latchctl audit verify` to find the first altered row".into(),
        None => "not checked yet (first check within 10 minutes of start)".into(),
    }
}

/// No daemon answered `status`: latchctl exits 3, as an init script's
/// `status` does for "not running" (LSB), so a check can tell a stopped
/// daemon from a refused or failed call (exit 1).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct NotRunning(ClientError);

/// `status`: the daemon's own account of itself, or, when none answers,
/// what can be told without it and `NotRunning` with the reason.
pub(super) fn run(client: &AdminClient, target: &Target, json: bool) -> anyhow::Result<bool> {
    let answer = match client.get("/v1/admin/status") {
        Ok(answer) => answer,
        Err(e @ ClientError::Connect { .. }) => {
            print(json, &without_daemon(target), human_without_daemon);
            return Err(NotRunning(e).into());
        }
        Err(e) => return Err(e.into()),
    };
    print(json, &answer, human_status);
    Ok(true)
}

pub(super) fn human_status(s: &Value) -> String {
    let listeners: Vec<String> = s["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let at = l["addr"].as_str().or_else(|| l["path"].as_str()).unwrap_or("?");
            format!("{} {at}", l["kind"].as_str().unwrap_or("?"))
        })
        .collect();
    let db = &s["database"];
    let db_state = match (db["ok"].as_bool() == Some(true), db["damaged"].as_bool() == Some(true)) {
        (_, true) => "DAMAGED: requests that read its damaged pages fail; stop latchd, then `latchctl db \
                      check` shows where (README: \"A damaged database\")"
            .to_string(),
        (true, false) => format!("ok (schema {})", db["schema_version"]),
        (false, false) => "NOT ANSWERING".to_string(),
    };
    let mut backups = human_backups(&s["backups"]);
    if db["damaged"].as_bool() == Some(true) {
        // Why the newest stops moving (`backup::held_for_damage`).
        backups.push_str("; scheduled ones are held while the database is damaged");
    }
    let rows = [
        (
            "daemon",
            format!(
                "latchd {} (pid {}), up {}s",
                s["version"].as_str().unwrap_or("?"),
                s["pid"],
                s["uptime_seconds"]
            ),
        ),
        ("state dir", s["state_dir"].as_str().unwrap_or("?").to_string()),
        ("database", db_state),
        ("listeners", listeners.join("; ")),
        ("admin socket", s["admin_socket"].as_str().unwrap_or("?").to_string()),
        ("mail", human_mail(&s["mail"])),
        ("backups", backups),
        ("WAL archive", human_archive(&s["archive"])),
        ("certificate", human_certificate(&s["tls"])),
        ("audit chain", human_audit(&s["audit"]["chain_ok"])),
    ];
    fields(&rows)
}

/// What `status` can tell when no daemon answers: that none does, and
/// from the state directory what a restore could reach — on-call's next
/// question.
pub(super) fn without_daemon(t: &Target) -> Value {
    let backups = match backup::list(&t.backup_dir) {
        Ok(listed) => {
            let newest = listed.iter().map(|l| l.written_at).max().map(crate::clock::rfc3339);
            json!({ "dir": t.backup_dir, "newest": newest })
        }
        Err(e) => json!({ "dir": t.backup_dir, "error": e.to_string() }),
    };
    let mut archive = match archive_layout::reach(&t.archive_dir) {
        Ok(Some(reach)) => {
            let gaps: Vec<Value> = (reach.gaps.iter())
                .map(|(from, until)| {
                    json!({ "from": crate::clock::rfc3339(*from), "until": crate::clock::rfc3339(*until) })
                })
                .collect();
            let (from, until) = (crate::clock::rfc3339(reach.from), reach.until.map(crate::clock::rfc3339));
            json!({ "dir": t.archive_dir, "restorable_from": from, "gaps": gaps, "restorable_until": until })
        }
        Ok(None) => json!({ "dir": t.archive_dir }),
        Err(e) => json!({ "dir": t.archive_dir, "error": e.to_string() }),
    };
    archive["enabled"] = t.wal_archive.into();
    json!({
        "running": false,
        "admin_socket": t.socket,
        "state_dir": t.state.root(),
        "backups": backups,
        "archive": archive,
    })
}

pub(super) fn human_without_daemon(s: &Value) -> String {
    let archive = &s["archive"];
    let dir = cell(archive, "dir", "?");
    let gaps = (archive["gaps"].as_array().into_iter().flatten())
        .map(|g| (cell(g, "from", "?"), cell(g, "until", "?")));
    let reach = match (archive["error"].as_str(), archive["restorable_from"].as_str()) {
        (Some(error), _) => format!("cannot list {dir}: {error}"),
        (None, Some(from)) => {
            let through = match archive["restorable_until"].as_str() {
                Some(until) => until_damage(until),
                None => "its newest segment".into(),
            };
            format!("restorable from {from} to {through}{}, in {dir}", except_gaps(gaps))
        }
        (None, None) => format!("none in {dir}"),
    };
    // Segments left from when it was on still restore; say it is off.
    let reach = match archive["enabled"].as_bool() {
        Some(false) => format!("off ([backup].wal_archive = false); {reach}"),
        _ => reach,
    };
    let rows = [
        ("daemon", format!("NOT RUNNING: nothing answers at {}", cell(s, "admin_socket", "?"))),
        ("state dir", cell(s, "state_dir", "?")),
        ("backups", human_backups(&s["backups"])),
        ("WAL archive", reach),
    ];
    fields(&rows)
}
