//! `latchctl outbox list [--status queued|dead]`: the mail latch still has
//! to deliver, or gave up on, with the last error — where an operator
//! looks first when someone says their reset link never came.

use clap::Subcommand;
use serde_json::Value;

use super::{AdminClient, cell, print, table, with_total};

#[derive(Subcommand)]
pub enum OutboxCmd {
    /// Messages waiting for delivery (or given up on), newest first, with
    /// the last delivery error; never their bodies.
    List {
        /// queued: still being tried; dead: not delivered (given up after
        /// smtp.max_attempts, refused by the relay, or its link stopped
        /// working while it waited).
        #[arg(long, default_value = "queued", value_parser = ["queued", "dead"])]
        status: String,
    },
}

fn cells(m: &Value) -> Vec<String> {
    vec![
        cell(m, "created_at", "?"),
        cell(m, "recipient", "?"),
        cell(m, "kind", "?"),
        m["attempts"].to_string(),
        cell(m, "last_error", "-"),
    ]
}

pub fn run(client: &AdminClient, cmd: &OutboxCmd, json: bool) -> anyhow::Result<bool> {
    let OutboxCmd::List { status } = cmd;
    let list = client.get(&format!("/v1/admin/outbox?status={status}"))?;
    print(json, &list, |l| {
        let rows: Vec<Vec<String>> = l["items"].as_array().into_iter().flatten().map(cells).collect();
        let shown = table(
            &["QUEUED AT", "TO", "KIND", "ATTEMPTS", "LAST ERROR"],
            &rows,
            &format!("no {status} mail"),
        );
        with_total(shown, rows.len(), &l["total"], &format!("{status} messages"))
    });
    Ok(true)
}
