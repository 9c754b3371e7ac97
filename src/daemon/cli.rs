//! The `latchd` command line. It lives in the library, not the binary, so
//! the man page and shell completion generator (`examples/package_assets.rs`)
//! renders exactly what the binary parses.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "latchd",
    version,
    about = "latch authentication daemon",
    long_about = "latchd serves latch's HTTPS, HTTP and Unix-socket API and its admin socket. \
                  It keeps all state in one SQLite file under the state directory and reloads \
                  its config on SIGHUP, on `latchctl config reload` or when the file changes.",
    after_long_help = "Environment:\n  \
                       LATCH_CONFIG  the config file when --config is not given\n  \
                       RUST_LOG      log filter, e.g. `debug` or `info,latch::access=warn` \
                       (default `info`, with actix-server at `warn` and actix-http's HTTP/1 reader, \
                       which reports clients' malformed requests as errors, off); restart to change"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (systemd Type=notify).
    Serve {
        /// Config file; else $LATCH_CONFIG, else /etc/latch/latch.toml if it exists, else built-in defaults.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Detach from the terminal (hosts without systemd); needs --pid-file.
        #[arg(long, requires = "pid_file")]
        daemon: bool,
        /// With --daemon: where to write (and lock) the daemon's pid.
        #[arg(long, value_name = "PATH", requires = "daemon")]
        pid_file: Option<PathBuf>,
    },
    /// Validate a config file and open the files it names (as the state
    /// directory's owner when run as root); exit 0, or 1 with a
    /// `PATH:LINE: key: reason` line per problem.
    CheckConfig {
        /// The file to check (default: the one `serve` would read).
        #[arg(value_name = "PATH")]
        path: Option<PathBuf>,
        /// The file to check, named as `serve` takes it.
        #[arg(long, value_name = "PATH", conflicts_with = "path")]
        config: Option<PathBuf>,
    },
}
