//! `latchctl blocked-ips list|add|remove`: the IP blocks in force, through
//! the admin API on the admin socket.

use clap::Subcommand;
use serde_json::{Value, json};

use super::{AdminClient, cell, print, table};

#[derive(Subcommand)]
pub enum BlockedIpsCmd {
    /// List the blocks in force (automatic and by an admin).
    List,
    /// Block an address or network.
    Add {
        /// An address or a network in CIDR notation.
        cidr: String,
        /// How long, like "1h" or "7d" (default: until removed).
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
        /// Why, for the list and the audit log.
        #[arg(long, default_value = "blocked by an admin")]
        reason: String,
    },
    /// Lift a block by its id (see `list`).
    Remove {
        /// The block's id.
        id: String,
    },
}

fn cells(b: &Value) -> Vec<String> {
    let expires = cell(b, "expires_at", "until removed");
    vec![cell(b, "id", "-"), cell(b, "cidr", "-"), cell(b, "source", "-"), expires, cell(b, "reason", "-")]
}

pub fn run(client: &AdminClient, cmd: &BlockedIpsCmd, json: bool) -> anyhow::Result<bool> {
    match cmd {
        BlockedIpsCmd::List => {
            let answer = client.get("/v1/admin/blocked-ips")?;
            print(json, &answer, |a| {
                let rows: Vec<Vec<String>> = a["items"].as_array().into_iter().flatten().map(cells).collect();
                table(&["ID", "CIDR", "SOURCE", "EXPIRES", "REASON"], &rows, "no blocked addresses")
            });
        }
        BlockedIpsCmd::Add { cidr, duration, reason } => {
            let body = json!({ "cidr": cidr, "reason": reason, "duration": duration });
            let block = client.post("/v1/admin/blocked-ips", Some(&body))?;
            print(json, &block, |b| {
                format!("blocked {} ({})", b["cidr"].as_str().unwrap_or("?"), b["id"].as_str().unwrap_or("?"))
            });
        }
        BlockedIpsCmd::Remove { id } => {
            client.delete(&format!("/v1/admin/blocked-ips/{id}"))?;
            print(json, &json!({ "removed": id }), |_| format!("removed {id}"));
        }
    }
    Ok(true)
}
