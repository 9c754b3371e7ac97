//! Integration tests: every test starts the real `latchd` binary (see
//! `harness.rs`) and talks to it over TLS, HTTP or its Unix socket.

// A panic here is a failed test or bench run, with its message: what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod address;
mod admin_api;
mod admin_cli;
mod anomalies;
mod apps;
mod archive_gaps;
mod audit;
mod backups;
mod certs;
mod cli_help;
mod clocks;
mod config;
mod conn_limits;
mod connections;
mod crash;
mod ctl_input;
mod ctl_stdout;
mod damage;
mod defense;
mod disk;
mod flows;
mod harness;
mod import;
mod jwt_attacks;
mod keys;
mod lifecycle;
mod lifetimes;
mod live_view;
mod mail;
mod malformed;
mod mfa;
mod openapi;
mod ops;
mod origins;
mod pages;
mod probes;
mod races;
mod relay_tls;
mod reliability;
mod reload;
mod reload_load;
mod secrets;
mod slow_clients;
mod stream_flood;
mod tidy;
mod tls;
mod tokens;
