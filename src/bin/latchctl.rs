//! `latchctl`: the admin CLI (see `latch::ctl`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = latch::ctl::Cli::parse();
    match latch::ctl::run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("latchctl: {}", latch::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
