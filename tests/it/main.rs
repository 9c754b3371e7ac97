//! Integration tests: every test starts the real `latchd` binary (see
//! `harness.rs`) and talks to it over TLS, HTTP or its Unix socket.

mod accounts;
mod admin_cli;
mod config;
mod flows;
mod harness;
mod lifecycle;
mod lifetimes;
mod mail;
mod ops;
mod origins;
mod tidy;
mod tls;
mod tokens;
