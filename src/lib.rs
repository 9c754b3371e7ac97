//! latch: a self-hosted authentication and security daemon.
//!
//! Layers, lowest first (a layer imports only layers below or beside it,
//! never a feature):
//! - [`clock`]: wall-clock time as the API and the database write it.
//! - [`pause`]: named pauses and periods a test may set (debug builds only).
//! - [`config`]: the config file, validated whole, swapped on reload.
//! - [`state_dir`]: the state directory's files, its lock, private writes.
//! - [`store`]: SQLite with one writer (group commit) and a read pool.
//! - [`telemetry`]: logs and metrics.
//! - [`keys`]: the master key, sealing, random tokens.
//! - [`http`]: listeners, TLS, middleware, the problem catalogue, the route
//!   table and its OpenAPI document, ops routes.
//! - [`audit`]: one audit row per state change, in the change's transaction,
//!   each a link of an HMAC chain.
//! - [`email`]: the outbox and its delivery worker.
//! - [`auth`]: the caller, token signing, password hashing and policy, the
//!   second factor (TOTP, recovery codes), the login guard.
//!
//! Features, each importing layers and never each other:
//! [`accounts`], [`sessions`], [`mfa`], [`admin`], [`defense`] (rate limits,
//! IP blocks, login throttling, anomaly rules: met through `http::Gate` and
//! `auth::LoginGuard`), [`backup`], [`pages`].
//!
//! Wiring: [`daemon`] runs `latchd serve`; [`ctl`] is `latchctl`. See
//! ARCHITECTURE.md for the map and its invariants.

pub mod accounts;
pub mod admin;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod clock;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod defense;
pub mod email;
pub mod http;
pub mod keys;
pub mod mfa;
pub mod pages;
pub mod pause;
pub mod sessions;
pub mod state_dir;
pub mod store;
pub mod telemetry;

/// clap's answer to a command line it cannot parse, on one line: the
/// reason, then the usage of the command meant (clap's own is 4 to 7
/// lines), or for a word that is no subcommand, the subcommands there are
/// (the usage would only say `<COMMAND>`). None for help and version
/// output, which clap prints as is. `cli` is the command that was parsed.
pub fn usage_error(e: &clap::Error, cli: &clap::Command) -> Option<String> {
    use clap::error::ErrorKind::{DisplayHelp, DisplayHelpOnMissingArgumentOrSubcommand, DisplayVersion};
    if matches!(e.kind(), DisplayHelp | DisplayHelpOnMissingArgumentOrSubcommand | DisplayVersion) {
        return None;
    }
    let text = e.to_string();
    let mut lines = text.lines();
    let mut line = lines.next().unwrap_or_default().trim_start_matches("error: ").to_string();
    // A reason ending in ':' is followed by its list ("not provided:").
    let listing = line.ends_with(':');
    let (mut usage, mut tips) = (None, Vec::new());
    for next in lines.map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("For more information")) {
        if let Some(rest) = next.strip_prefix("Usage: ") {
            usage = Some(rest);
        } else if let Some(tip) = next.strip_prefix("tip: ") {
            tips.push(tip);
        } else if next.starts_with('[') {
            // "[possible values: jsonl, csv]" after an invalid value.
            line.push(' ');
            line.push_str(next);
        } else if listing {
            line.push_str(if line.ends_with(':') { " " } else { ", " });
            line.push_str(next);
        }
    }
    for tip in tips {
        line.push_str("; ");
        line.push_str(tip);
    }
    let offered = usage.filter(|_| e.kind() == clap::error::ErrorKind::InvalidSubcommand).and_then(|u| {
        let path: Vec<&str> = u.split(' ').take_while(|w| !w.starts_with(['[', '<'])).collect();
        subcommands_of(cli, &path[1..]).map(|names| format!(" ({} takes: {names})", path.join(" ")))
    });
    match (offered, usage) {
        (Some(offered), _) => line.push_str(&offered),
        (None, Some(usage)) => line.push_str(&format!(" (usage: {usage})")),
        (None, None) => {}
    }
    Some(line)
}

/// The subcommands of `cli`'s subcommand at `path`, comma-separated
/// (`help` and hidden ones left out); None if `path` names none.
fn subcommands_of(cli: &clap::Command, path: &[&str]) -> Option<String> {
    let mut cmd = cli;
    for word in path {
        cmd = cmd.find_subcommand(word)?;
    }
    let names: Vec<&str> = cmd
        .get_subcommands()
        .filter(|c| !c.is_hide_set() && c.get_name() != "help")
        .map(|c| c.get_name())
        .collect();
    (!names.is_empty()).then(|| names.join(", "))
}

/// An error and its causes on one line for a CLI, skipping a cause whose
/// text the line already holds (many messages embed their source).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        if out.contains(&msg) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&msg);
    }
    out
}
