//! latch: a self-hosted authentication and security daemon.
//!
//! Layers (features build on these, never the reverse):
//! - [`config`]: the config file, validated whole, swapped on reload.
//! - [`store`]: SQLite with one writer (group commit) and a read pool.
//! - [`http`]: listeners, TLS, middleware, problem+json, ops routes.
//! - [`telemetry`]: logs and metrics.
//!
//! [`daemon`] wires them together for `latchd serve`; [`keys`] holds the
//! master key. See ARCHITECTURE.md for the map.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod accounts;
pub mod admin;
pub mod audit;
pub mod clock;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod email;
pub mod http;
pub mod keys;
pub mod sessions;
pub mod store;
pub mod telemetry;

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
