//! Generates the packaged manual pages `latchd(8)` and `latchctl(8)` and the
//! bash, zsh and fish completions from the same clap definitions the binaries
//! parse, so they cannot drift from the real command line.
//!
//! Usage: `cargo run --example package_assets -- OUT_DIR`
//! writes `OUT_DIR/man/{latchd,latchctl}.8` and `OUT_DIR/completions/*`.
//! The page date comes from `SOURCE_DATE_EPOCH` (reproducible builds), else
//! today. `latch.toml(5)` is hand-written: see `man/latch.toml.5`.

// A panic here is a failed test or bench run, with its message: what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

/// Hand-written sections appended after the generated ones.
struct Extra {
    name: &'static str,
    sections: &'static str,
}

const LATCHD_EXTRA: &str = r#".SH SIGNALS
.TP
.B SIGHUP
Reload the config file and the TLS certificate. An invalid file is rejected
whole and the running config stays; restart-only keys are logged as
"needs restart".
.TP
.BR SIGTERM ", " SIGINT
Stop accepting connections, finish requests in flight (up to 10 seconds),
then exit 0.
.SH FILES
.TP
.I /etc/latch/latch.toml
The config file, see
.BR latch.toml (5).
.TP
.I /var/lib/latch
The state directory: the database
.IR latch.db ,
the master key
.IR keys/master.key ,
the generated certificate in
.IR tls/ ,
.IR ready.json ,
.I backups/
and
.IR mail/ .
.TP
.I /run/latch/admin.sock
The admin socket
.BR latchctl (8)
talks to; members of the group
.B latch\-admin
and root may use it.
.SH ENVIRONMENT
.TP
.B LATCH_CONFIG
The config file when
.B \-\-config
is not given.
.SH EXIT STATUS
0 after a clean stop or a valid config; 1 with a one-line reason on stderr
otherwise.
.SH SEE ALSO
.BR latchctl (8),
.BR latch.toml (5),
.BR systemctl (1)
"#;

const LATCHCTL_EXTRA: &str = r#".SH FILES
.TP
.I /run/latch/admin.sock
The admin socket of the packaged daemon, found through
.IR /etc/latch/latch.toml .
Only root and members of the group
.B latch\-admin
may use it.
.SH EXIT STATUS
0 on success; non-zero with a one-line reason on stderr: 2 for a command
line latchctl cannot parse,
.B status
3 when no daemon answers (as an init script's status),
1 otherwise.
.SH SEE ALSO
.BR latchd (8),
.BR latch.toml (5)
"#;

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(
        std::env::args().nth(1).ok_or_else(|| anyhow::anyhow!("usage: package_assets OUT_DIR"))?,
    );
    let date = page_date()?;
    let pages = [
        (latch::daemon::cli::Cli::command(), Extra { name: "latchd", sections: LATCHD_EXTRA }),
        (latch::ctl::Cli::command(), Extra { name: "latchctl", sections: LATCHCTL_EXTRA }),
    ];
    std::fs::create_dir_all(out.join("man"))?;
    std::fs::create_dir_all(out.join("completions"))?;
    for (cmd, extra) in pages {
        write_man_page(cmd.clone(), &extra, &date, &out.join("man"))?;
        write_completions(cmd, extra.name, &out.join("completions"))?;
    }
    Ok(())
}

/// `YYYY-MM-DD` of `SOURCE_DATE_EPOCH`, else of now.
fn page_date() -> anyhow::Result<String> {
    let now = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(secs) => time::OffsetDateTime::from_unix_timestamp(secs.trim().parse()?)?,
        Err(_) => time::OffsetDateTime::now_utc(),
    };
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Ok(now.format(&format)?)
}

fn write_man_page(cmd: clap::Command, extra: &Extra, date: &str, dir: &Path) -> anyhow::Result<()> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone())
        .title(extra.name.to_uppercase())
        .section("8")
        .date(date)
        .source(format!("latch {}", env!("CARGO_PKG_VERSION")))
        .manual("System Manager's Manual");
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    let mut text = String::from_utf8(page)?;
    text.push_str(".SH COMMANDS\n");
    commands_section(&cmd, &mut text);
    text.push_str(extra.sections);
    std::fs::write(dir.join(format!("{}.8", extra.name)), wrap_text_lines(&text, 78))?;
    Ok(())
}

/// Every leaf command on one page (instead of a page per subcommand): its
/// usage line, what it does and its own arguments.
fn commands_section(cmd: &clap::Command, out: &mut String) {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.has_subcommands() {
            commands_section(sub, out);
            continue;
        }
        let mut sub = sub.clone();
        let usage = sub.render_usage().to_string();
        let usage = usage.trim_start_matches("Usage: ").replace(" [OPTIONS]", "");
        let _ = writeln!(out, ".TP\n.B {}", roff_escape(&usage));
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            let _ = writeln!(out, "{}", roff_escape(&about.to_string()));
        }
        for arg in sub.get_arguments().filter(|a| !a.is_hide_set() && !a.is_global_set()) {
            let value = arg.get_value_names().map(|v| v.join(" "));
            let name = match (arg.get_long(), value) {
                (Some(long), Some(value)) if arg.get_action().takes_values() => format!("--{long} {value}"),
                (Some(long), _) => format!("--{long}"),
                (None, value) => value.unwrap_or_else(|| arg.get_id().to_string()),
            };
            if name == "--help" {
                continue;
            }
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let _ = writeln!(out, ".RS\n.TP\n.B {}\n{}\n.RE", roff_escape(&name), roff_escape(&help));
        }
    }
}

/// Text safe inside roff: backslashes and hyphens escaped, no line starting
/// with a control character.
fn roff_escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    let escaped =
        if escaped.starts_with('.') || escaped.starts_with('\'') { format!("\\&{escaped}") } else { escaped };
    if escaped.is_empty() { "\\&".into() } else { escaped }
}

/// Breaks text lines (not requests) longer than `width` at spaces, as man
/// page style asks; a piece that would start with a control character gets
/// the zero-width `\&` in front.
fn wrap_text_lines(page: &str, width: usize) -> String {
    let mut out = String::with_capacity(page.len());
    for line in page.lines() {
        if line.starts_with('.') || line.len() <= width {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let mut current = String::new();
        for word in line.split(' ') {
            if !current.is_empty() && current.len() + 1 + word.len() > width {
                out.push_str(&current);
                out.push('\n');
                current.clear();
            }
            if current.is_empty() && (word.starts_with('.') || word.starts_with('\'')) {
                current.push_str("\\&");
            } else if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(word);
        }
        out.push_str(&current);
        out.push('\n');
    }
    out
}

fn write_completions(mut cmd: clap::Command, name: &str, dir: &Path) -> anyhow::Result<()> {
    for (shell, file) in [
        (Shell::Bash, name.to_string()),
        (Shell::Zsh, format!("_{name}")),
        (Shell::Fish, format!("{name}.fish")),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, name, &mut buf);
        std::fs::write(dir.join(file), buf)?;
    }
    Ok(())
}
