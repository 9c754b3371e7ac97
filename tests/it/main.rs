//! Integration tests: every test starts the real `latchd` binary (see
//! `harness.rs`) and talks to it over TLS, HTTP or its Unix socket.

mod config;
mod harness;
mod lifecycle;
mod ops;
mod tidy;
mod tls;
