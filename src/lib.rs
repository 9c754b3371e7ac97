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
