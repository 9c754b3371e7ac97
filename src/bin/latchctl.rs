//! `latchctl`: the admin CLI (see `latch::ctl`).

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

fn main() -> ExitCode {
    // Security: files latchctl creates (a pre-migration backup, the WAL
    // and lock files, a restored database) are private to their owner,
    // whatever umask the calling shell has, as with latchd.
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe { libc::umask(0o077) };
    let cli = match latch::ctl::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match latch::usage_error(&e, &latch::ctl::Cli::command()) {
            Some(line) => {
                eprintln!("latchctl: {line}");
                return ExitCode::from(2);
            }
            None => e.exit(),
        },
    };
    match latch::ctl::run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            // Several faults (a config file's) are one line each.
            for line in latch::one_line(&e).lines() {
                eprintln!("latchctl: {line}");
            }
            match e.downcast_ref::<latch::ctl::NotRunning>() {
                Some(_) => ExitCode::from(3),
                None => ExitCode::FAILURE,
            }
        }
    }
}
