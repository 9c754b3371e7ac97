//! Integration tests: every test starts the real `latchd` binary (see
//! `harness.rs`) and talks to it over TLS, HTTP or its Unix socket.

mod admin_cli;
mod config;
mod harness;
mod lifecycle;
mod ops;
mod tidy;
mod tls;
