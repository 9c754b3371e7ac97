//! `latchctl`, the admin CLI. Online commands talk HTTP to the daemon over
//! the admin socket; offline commands (`db *`, `backup restore`) open the database directly
//! and refuse while a daemon holds the state directory. Every failure is one
//! line on stderr and a non-zero exit.

mod api_keys;
mod audit;
mod backup;
mod blocks;
mod client;
mod import;
mod keys;
mod offline;
mod outbox;
mod status;
mod stdout;
mod users;
mod when;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::auth::is_unshowable;
use crate::config::Config;
use crate::state_dir::StateDir;
pub use client::{AdminClient, ClientError};
pub use status::NotRunning;
use stdout::say;

/// Where `--help` lists the options every command takes, apart from the
/// command's own (clap otherwise interleaves the two lists).
const GLOBAL: &str = "Global options";

#[derive(Parser)]
#[command(
    name = "latchctl",
    version,
    about = "Administer a running latchd",
    long_about = "latchctl administers latch. Online commands talk to the running latchd over its admin \
                  socket (root and members of the admin group only); offline commands open the database \
                  directly and refuse while a daemon holds the state directory."
)]
pub struct Cli {
    /// Admin socket of the daemon (default: from the config). Given alone,
    /// commands that read the state directory ask that daemon where it is.
    #[arg(long, global = true, value_name = "PATH", help_heading = GLOBAL)]
    socket: Option<PathBuf>,
    /// Config file to find the socket and state dir in (default as latchd).
    #[arg(long, global = true, value_name = "PATH", help_heading = GLOBAL)]
    config: Option<PathBuf>,
    /// State directory (its admin.sock, database and keys).
    #[arg(long, global = true, value_name = "DIR", help_heading = GLOBAL)]
    state_dir: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true, help_heading = GLOBAL)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the running daemon's version, listeners and database state.
    Status,
    /// Check or reload the config.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Offline database commands (the daemon must be stopped).
    #[command(subcommand)]
    Db(DbCmd),
    /// Signing keys: list, rotate, revoke; the master key: export-master.
    #[command(subcommand)]
    Keys(keys::KeysCmd),
    /// IP blocks: list, add, remove.
    #[command(subcommand, name = "blocked-ips")]
    BlockedIps(blocks::BlockedIpsCmd),
    /// Accounts: add, import, list, show, disable, enable, unlock, reset-mfa, set-email, set-name, add-role, remove-role, delete.
    #[command(subcommand)]
    Users(users::UsersCmd),
    /// Roles: list, add, remove.
    #[command(subcommand)]
    Roles(users::RolesCmd),
    /// Sessions: list, revoke.
    #[command(subcommand)]
    Sessions(users::SessionsCmd),
    /// Outgoing mail: list.
    #[command(subcommand)]
    Outbox(outbox::OutboxCmd),
    /// API keys: create, list, revoke.
    #[command(subcommand, name = "api-keys")]
    ApiKeys(api_keys::ApiKeysCmd),
    /// The audit log: export, verify.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Backups: now, list, verify, restore.
    #[command(subcommand)]
    Backup(backup::BackupCmd),
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Validate a config file and open the files it names, as `latchd
    /// check-config` does (default: the one latchd would use).
    Check {
        /// The file to check (default: the one latchd would read).
        path: Option<PathBuf>,
    },
    /// Ask the running daemon to reload its config and certificate.
    Reload,
    /// Print the config the running daemon uses, every default and path
    /// resolved (JSON, shaped like the file).
    Show,
}

#[derive(Subcommand)]
enum DbCmd {
    /// Integrity, foreign keys and migration checksums (read-only).
    Check,
    /// Apply pending migrations, after a backup.
    Migrate,
}

/// Paths resolved from the global flags.
pub struct Target {
    pub socket: PathBuf,
    pub state: StateDir,
    pub backup_dir: PathBuf,
    pub archive_dir: PathBuf,
    /// `[backup].wal_archive` in the config read.
    pub wal_archive: bool,
}

impl Cli {
    fn target(&self) -> anyhow::Result<Target> {
        let cfg = self.config_read()?;
        let mut t = Target {
            socket: cfg.admin_socket.clone(),
            backup_dir: cfg.backup_dir(),
            archive_dir: cfg.archive_dir(),
            state: cfg.state.clone(),
            wal_archive: cfg.backup.wal_archive,
        };
        if let Some(dir) = &self.state_dir {
            let state = StateDir::new(std::path::absolute(dir)?, None);
            t = Target {
                socket: state.admin_socket(),
                backup_dir: state.backups(),
                archive_dir: state.archive(),
                state,
                ..t
            };
        }
        if let Some(socket) = &self.socket {
            t.socket = socket.clone();
        }
        Ok(t)
    }

    /// The config the flags point at. With `--socket` or `--state-dir` and
    /// no file named, the system file only lends defaults: one this user
    /// may not read (0640 for latchd's group) or with a fault (an edit
    /// under way, which the running daemon refused) is passed over with a
    /// warning instead of stopping a command the flags already aim; without
    /// them, the refusal says they exist.
    fn config_read(&self) -> anyhow::Result<Config> {
        let located = Config::locate(self.config.clone());
        match Config::load(located.as_deref()) {
            Ok(cfg) => Ok(cfg),
            Err(e) if Config::named(self.config.clone()).is_none() => {
                let flag = match (&self.socket, &self.state_dir) {
                    (Some(_), _) => "--socket",
                    (None, Some(_)) => "--state-dir",
                    (None, None) => {
                        return Err(anyhow::anyhow!("{e}; give --socket or --state-dir to go without it"));
                    }
                };
                let first = e.to_string().lines().next().unwrap_or_default().to_string();
                eprintln!("latchctl: warning: {first}; going by {flag}");
                Ok(Config::load(None)?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the command reads the state directory itself (its database,
    /// keys, backups) rather than asking the daemon.
    fn reads_state(&self) -> bool {
        match &self.command {
            Command::Db(_) => true,
            Command::Audit(cmd) => matches!(cmd, audit::AuditCmd::Verify),
            Command::Backup(cmd) => {
                matches!(cmd, backup::BackupCmd::List | backup::BackupCmd::Restore { .. })
            }
            Command::Keys(cmd) => matches!(cmd, keys::KeysCmd::ExportMaster),
            _ => false,
        }
    }

    /// With `--socket` alone and no config file named, the state directory
    /// is the daemon's on that socket, not `./latch-data`, nor the one
    /// `/etc/latch/latch.toml` names (that file is another daemon's when the
    /// socket is not its own): ask it which config (or, if that file is
    /// closed to us, which folder) it uses. Without that, `backup list` said
    /// "no backups" of a folder that was never the daemon's.
    fn state_from_daemon(&self, t: &mut Target, client: &AdminClient) -> anyhow::Result<()> {
        let named = Config::named(self.config.clone());
        if self.socket.is_none() || self.state_dir.is_some() || named.is_some() || !self.reads_state() {
            return Ok(());
        }
        let status = client.get("/v1/admin/status").map_err(|e| {
            anyhow::anyhow!(
                "with --socket alone the state directory is the daemon's, and none answered ({e}): \
                 give --config or --state-dir"
            )
        })?;
        if let Some(cfg) = status["config"].as_str().and_then(|p| Config::load(Some(p.as_ref())).ok()) {
            (t.state, t.backup_dir, t.archive_dir) = (cfg.state.clone(), cfg.backup_dir(), cfg.archive_dir());
            return Ok(());
        }
        let Some(dir) = status["state_dir"].as_str() else {
            anyhow::bail!("the daemon did not name its state")
        };
        t.state = StateDir::new(dir.into(), None);
        t.backup_dir = status["backups"]["dir"].as_str().map_or_else(|| t.state.backups(), PathBuf::from);
        t.archive_dir = status["archive"]["dir"].as_str().map_or_else(|| t.state.archive(), PathBuf::from);
        Ok(())
    }
}

/// Runs one command; `Ok(false)` means "ran, but the answer is a failure"
/// (exit 1 without an extra message), or what it printed could not be
/// written (said on stderr).
pub fn run(cli: Cli) -> anyhow::Result<bool> {
    let ran = run_command(cli)?;
    Ok(ran && stdout::all_written())
}

fn run_command(cli: Cli) -> anyhow::Result<bool> {
    if let Command::Config(ConfigCmd::Check { path }) = &cli.command {
        return Ok(check_config(path.clone().or_else(|| cli.config.clone())));
    }
    let mut target = cli.target()?;
    let client = AdminClient { socket: target.socket.clone() };
    cli.state_from_daemon(&mut target, &client)?;
    match &cli.command {
        Command::Status => status::run(&client, &target, cli.json),
        Command::Config(ConfigCmd::Reload) => {
            let answer = client.post("/v1/admin/config/reload", None)?;
            print(cli.json, &answer, |a| {
                let restart: Vec<&str> =
                    a["needs_restart"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                match restart.is_empty() {
                    true => "reloaded".to_string(),
                    false => format!("reloaded; needs restart for: {}", restart.join(", ")),
                }
            });
            Ok(true)
        }
        Command::Config(ConfigCmd::Show) => {
            say!("{}", serde_json::to_string_pretty(&client.get("/v1/admin/config")?)?);
            Ok(true)
        }
        Command::BlockedIps(cmd) => blocks::run(&client, cmd, cli.json),
        Command::Users(cmd) => users::users(&client, cmd, cli.json),
        Command::Roles(cmd) => users::roles(&client, cmd, cli.json),
        Command::Sessions(cmd) => users::sessions(&client, cmd, cli.json),
        Command::ApiKeys(cmd) => api_keys::run(&client, cmd, cli.json),
        Command::Outbox(cmd) => outbox::run(&client, cmd, cli.json),
        Command::Audit(cmd) => audit::run(&client, &target, cmd, cli.json),
        Command::Backup(cmd) => backup::run(&client, &target, cmd, cli.json),
        Command::Db(DbCmd::Check) => offline::db_check(&target, cli.json),
        Command::Db(DbCmd::Migrate) => offline::db_migrate(&target, cli.json),
        Command::Keys(cmd) => keys::run(&client, &target, cmd, cli.json),
        Command::Config(ConfigCmd::Check { .. }) => Ok(true),
    }
}

/// `config check`: the file latchd would read (or `path`), checked as a
/// start would check it, every fault told; whether it passed.
fn check_config(path: Option<PathBuf>) -> bool {
    let path = Config::locate(path);
    match crate::daemon::preflight::check(path.as_deref()) {
        Ok(cfg) => cfg.cautions().iter().for_each(|caution| eprintln!("latchctl: warning: {caution}")),
        Err(problems) => {
            for problem in problems {
                eprintln!("latchctl: {problem}");
            }
            return false;
        }
    }
    let shown = path.map_or_else(|| "built-in defaults".into(), |p| p.display().to_string());
    say!("{shown}: ok");
    true
}

/// Clap's parser for an argument that names one thing (an account, a
/// key, a role, a block): a blank one names nothing, and sent as it is it
/// would reach another route (`users/` is the list) and come back as "No
/// such resource." rather than what is wrong with the command.
fn named(arg: &str) -> Result<String, String> {
    if arg.trim().is_empty() { Err("must not be empty".into()) } else { Ok(arg.to_string()) }
}

/// A human table: a header row in capitals, each column as wide as its
/// widest cell (the last one unpadded), or `empty` when there are no rows,
/// so an empty list says so instead of printing a blank line.
fn table(head: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    if rows.is_empty() {
        return empty.to_string();
    }
    let widths: Vec<usize> = (0..head.len())
        .map(|i| rows.iter().map(|r| r.get(i).map_or(0, |c| c.chars().count())).chain([head[i].len()]).max())
        .map(|w| w.unwrap_or(0))
        .collect();
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let padded = cells.iter().enumerate().map(|(i, c)| match i == last {
            true => c.to_string(),
            false => format!("{c:<w$}", w = widths[i]),
        });
        padded.collect::<Vec<_>>().join("  ")
    };
    let rows: Vec<Vec<String>> =
        rows.iter().map(|r| r.iter().map(|c| printable(c, false)).collect()).collect();
    let mut out = vec![line(head.to_vec())];
    out.extend(rows.iter().map(|r| line(r.iter().map(String::as_str).collect())));
    out.join("\n")
}

/// An answer a field a line, the names in one column: each value is
/// escaped as a table's cell is, so none can run onto a line of its own.
fn fields(rows: &[(&str, String)]) -> String {
    let line = |(name, value): &(&str, String)| format!("{name:<13}{}", printable(value, false));
    rows.iter().map(line).collect::<Vec<_>>().join("\n")
}

/// Text from the daemon as a terminal may be given it: control characters
/// and bidirectional overrides written out as `\u{1b}`, never sent, so a
/// name chosen by whoever registered (before latch refused such names, or
/// written behind its back) cannot run an escape sequence in an
/// administrator's terminal or forge a line of a table. `lines` keeps line
/// breaks (a whole answer), else they are escaped too (one cell).
fn printable(text: &str, lines: bool) -> String {
    let escape = |c: char| is_unshowable(c) && !(lines && c == '\n');
    text.chars().fold(String::with_capacity(text.len()), |mut out, c| {
        if escape(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
        out
    })
}

/// A table the daemon cut short (it lists at most 1,000), with a last line
/// saying so: an operator must not take the newest thousand for all.
fn with_total(shown: String, listed: usize, total: &Value, what: &str) -> String {
    match total.as_u64() {
        Some(total) if total > listed as u64 => format!("{shown}\n(the newest {listed} of {total} {what})"),
        _ => shown,
    }
}

/// The string at `key` of a JSON row, or `missing`.
fn cell(row: &Value, key: &str, missing: &str) -> String {
    printable(row[key].as_str().unwrap_or(missing), false)
}

fn print(json: bool, value: &Value, human: impl Fn(&Value) -> String) {
    if json {
        say!("{value}");
    } else {
        say!("{}", printable(&human(value), true));
    }
}

/// Where a message just queued will end up, for a line after a command
/// that sent one ("queued" when the daemon does not say).
fn mail_destination(client: &AdminClient) -> String {
    let status = client.get("/v1/admin/status").unwrap_or_default();
    match status["mail"]["delivery"]["via"].as_str() {
        Some("smtp") => "queued for SMTP delivery".to_string(),
        Some(_) => format!("written to {} (no [smtp])", cell(&status["mail"]["delivery"], "dir", "mail/")),
        None => "queued".to_string(),
    }
}
