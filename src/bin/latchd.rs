//! `latchd`: the daemon. Parses argv, resolves and validates the config,
//! sets up logging and metrics, then hands over to `latch::daemon::run`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use latch::config::Config;
use latch::daemon::cli::{Cli, Command};

fn main() -> ExitCode {
    latch::telemetry::memory::cap_heaps();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return misused(e),
    };
    match cli.command {
        Command::CheckConfig { path, config } => check_config(path.or(config)),
        Command::Serve { config, daemon: _, pid_file } => serve(config, pid_file),
    }
}

/// A line clap cannot parse, on one line (help and version as clap prints
/// them); `latchd --config PATH` (how many daemons start) is told the
/// command meant.
fn misused(e: clap::Error) -> ExitCode {
    // args_os: a word that is not UTF-8 is clap's to report, not a panic.
    let first = std::env::args_os().nth(1).unwrap_or_default();
    let first = first.to_string_lossy();
    let option = first.split('=').next().unwrap_or_default();
    if e.kind() == clap::error::ErrorKind::UnknownArgument && SERVE_OPTIONS.contains(&option) {
        eprintln!(
            "latchd: {option} belongs to a command: `latchd serve {option} …` runs the daemon \
             (`latchd check-config PATH` checks a config file)"
        );
        return ExitCode::from(2);
    }
    match latch::usage_error(&e, &Cli::command()) {
        Some(line) => {
            eprintln!("latchd: {line}");
            ExitCode::from(2)
        }
        None => e.exit(),
    }
}

/// `serve`'s options, as someone might give them without the command.
const SERVE_OPTIONS: [&str; 3] = ["--config", "--daemon", "--pid-file"];

fn check_config(path: Option<PathBuf>) -> ExitCode {
    let path = Config::locate(path);
    match latch::daemon::preflight::check(path.as_deref()) {
        Ok(cfg) => {
            for caution in cfg.cautions() {
                eprintln!("warning: {caution}");
            }
            let shown = path.map_or_else(|| "built-in defaults".into(), |p| p.display().to_string());
            // As latchctl's output: a reader that has gone is no failure.
            let _ = writeln!(std::io::stdout(), "{shown}: ok");
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for problem in problems {
                eprintln!("{problem}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Forks into the background (SysV/OpenRC hosts): the parent exits 0 once
/// the pid file is written and locked; the child carries on.
fn detach(pid_file: &std::path::Path, cfg: &Config) -> Result<(), String> {
    if cfg.log.file.is_none() {
        eprintln!("latchd: --daemon without [log].file: log output is discarded");
    }
    daemonize::Daemonize::new()
        .pid_file(pid_file)
        .working_directory("/")
        .umask(0o077)
        .start()
        .map_err(|e| format!("latchd: cannot daemonize ({}): {e}", pid_file.display()))
}

fn serve(config: Option<PathBuf>, pid_file: Option<PathBuf>) -> ExitCode {
    // Security: every file latchd creates (database, WAL, keys, backups) is
    // private to its user unless a step widens it on purpose.
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe { libc::umask(0o077) };
    let path = Config::locate(config);
    let cfg = match latch::daemon::preflight::load_checked(path.as_deref()) {
        Ok(cfg) => cfg,
        Err(problems) => {
            for problem in problems {
                eprintln!("{problem}");
            }
            return ExitCode::FAILURE;
        }
    };
    let pid_file = pid_file.map(|p| std::path::absolute(&p).unwrap_or(p));
    if let Some(pid_file) = &pid_file
        && let Err(e) = detach(pid_file, &cfg)
    {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = latch::telemetry::init_logging(&cfg.log) {
        let file = cfg.log.file.as_deref().unwrap_or(std::path::Path::new("")).display();
        eprintln!("latchd: log.file {file}: {e}");
        return ExitCode::FAILURE;
    }
    // The absolute path, as reloads name it: a relative one means nothing
    // to whoever reads the journal.
    match &cfg.source {
        Some(p) => tracing::info!(config = %p.display(), "config loaded"),
        None => tracing::info!("no config file: using built-in defaults"),
    }
    let metrics = match latch::telemetry::init_metrics() {
        Ok(m) => m,
        Err(e) => {
            latch::telemetry::flush_logs();
            eprintln!("metrics: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = actix_web::rt::System::new().block_on(latch::daemon::run(cfg, metrics));
    if let Some(pid_file) = pid_file {
        let _ = std::fs::remove_file(pid_file);
    }
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let reason = latch::one_line(&e);
            tracing::error!(error = reason, "latchd stopped with an error");
            eprintln!("latchd: {reason}");
            ExitCode::FAILURE
        }
    };
    // Log lines wait briefly to share a write; none may be left behind.
    latch::telemetry::flush_logs();
    code
}
