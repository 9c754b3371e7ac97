//! latchctl's help, and both binaries' refusal of a command line they
//! cannot parse: what an operator reads before any daemon is involved.

use std::process::{Command, Output};

use crate::admin_cli::LATCHCTL;
use crate::harness::{base_config, run_latchd, write_config};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The subcommand names under "Commands:" in a `--help` text, `help` aside.
fn commands_in(help: &str) -> Vec<(String, String)> {
    let listed = help.split("Commands:").nth(1).unwrap_or("").split("\n\n").next().unwrap_or("");
    listed
        .lines()
        .filter_map(|l| {
            let (name, about) = l.trim().split_once(' ').unwrap_or((l.trim(), ""));
            (!name.is_empty()).then(|| (name.to_string(), about.trim().to_string()))
        })
        .filter(|(name, _)| name != "help")
        .collect()
}

/// Argument and option lines of a `-h` text that carry no description.
fn unexplained_arguments(help: &str) -> Vec<String> {
    help.lines()
        .map(str::trim)
        .filter(|l| l.starts_with(['<', '[', '-']))
        .filter(|l| !l.contains("  "))
        .map(str::to_string)
        .collect()
}

/// `latchctl --help` summarises each group as "What: a, b, c"; a command
/// added to a group without its summary leaves operators reading the
/// overview unaware of it (set-email once did), and every command says
/// what it does (the roles commands once said nothing) with its own
/// options apart from the four every command takes (once interleaved).
#[test]
fn group_summaries_name_every_subcommand() {
    let top = Command::new(LATCHCTL).arg("help").output().expect("run latchctl");
    let groups = commands_in(&stdout(&top));
    assert!(groups.len() >= 10, "{groups:?}");
    for (group, about) in &groups {
        let out = Command::new(LATCHCTL).args([group.as_str(), "--help"]).output().expect("run latchctl");
        let commands = commands_in(&stdout(&out));
        let silent: Vec<&String> =
            commands.iter().filter(|(_, about)| about.is_empty()).map(|(n, _)| n).collect();
        assert!(silent.is_empty(), "`latchctl {group} --help` leaves {silent:?} unexplained");
        for (command, _) in &commands {
            let out = Command::new(LATCHCTL).args([group, command, "-h"]).output().expect("run latchctl");
            let help = stdout(&out);
            let bare = unexplained_arguments(&help);
            assert!(bare.is_empty(), "`latchctl {group} {command} -h` leaves {bare:?} unexplained");
            let (own, global) = help.split_once("\nGlobal options:\n").unwrap_or_default();
            assert!(
                !own.contains("--socket") && global.contains("--socket") && global.contains("--json"),
                "`latchctl {group} {command} -h` mixes its own options with the global ones"
            );
        }
        if !about.contains(':') {
            continue;
        }
        let mut summarised: Vec<String> = about
            .split(';')
            .filter_map(|part| part.split_once(':'))
            .flat_map(|(_, names)| names.split(',').map(|n| n.trim().to_string()))
            .collect();
        let mut actual: Vec<String> = commands.into_iter().map(|(name, _)| name).collect();
        summarised.sort();
        actual.sort();
        assert_eq!(summarised, actual, "`latchctl help` line for {group}: {about}");
    }
}

/// A command line latchctl cannot parse is told on one line (the reason,
/// clap's tip, the usage of the command meant or the subcommands it
/// takes), exit 2; help still prints whole, exit 0.
#[test]
fn a_mistyped_command_line_is_told_in_one_line() {
    let cases = [
        (
            "users add",
            "the following required arguments were not provided: <EMAIL> (usage: latchctl users add <EMAIL>)",
        ),
        (
            "users lst",
            "unrecognized subcommand 'lst'; a similar subcommand exists: 'list' (latchctl users takes: add, \
             import, list, show, disable, enable, unlock, reset-mfa, set-email, set-name, add-role, \
             remove-role, delete)",
        ),
        // No similar word: the words there are, not a bare `<COMMAND>`.
        ("audit list", "unrecognized subcommand 'list' (latchctl audit takes: export, verify)"),
        ("keys list --for 1h", "unexpected argument '--for' found (usage: latchctl keys list [OPTIONS])"),
        (
            "audit export --format xml",
            "invalid value 'xml' for '--format <FORMAT>' [possible values: jsonl, csv]",
        ),
        (
            "backup list --json --json",
            "the argument '--json' cannot be used multiple times (usage: latchctl backup list [OPTIONS])",
        ),
    ];
    for (args, said) in cases {
        let out = Command::new(LATCHCTL).args(args.split(' ')).output().expect("run latchctl");
        assert_eq!(out.status.code(), Some(2), "{args}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), format!("latchctl: {said}\n"), "{args}");
    }
    let help = Command::new(LATCHCTL).args(["users", "add", "--help"]).output().expect("run latchctl");
    assert_eq!(help.status.code(), Some(0));
    assert!(stdout(&help).lines().count() > 5 && stdout(&help).contains("Usage: latchctl users add"));
}

/// `latchd --config PATH`, as many daemons start, names no command: the
/// answer says which command was meant instead of clap's bare "unexpected
/// argument", and starts nothing.
#[test]
fn serve_options_without_the_command_say_which_command_was_meant() {
    let dir = tempfile::tempdir().unwrap();
    let shown = write_config(dir.path(), &base_config("")).display().to_string();
    let joined = format!("--config={shown}");
    for args in [vec!["--config", shown.as_str()], vec![joined.as_str()], vec!["--daemon"]] {
        let out = run_latchd(&args, dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let option = args[0].split('=').next().unwrap();
        let meant =
            format!("latchd: {option} belongs to a command: `latchd serve {option} …` runs the daemon");
        assert!(stderr.starts_with(&meant), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    }
    // Any other mistake: clap's reason, on one line.
    let out = run_latchd(&["--frobnicate"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let said = "latchd: unexpected argument '--frobnicate' found (usage: latchd <COMMAND>)\n";
    assert_eq!(stderr, said);
    assert!(!dir.path().join("state").exists(), "nothing started");
}
