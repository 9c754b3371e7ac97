//! `latchctl blocked-ips list|add|remove`: the IP blocks in force, through
//! the admin API on the admin socket.

use clap::Subcommand;
use serde_json::{Value, json};

use super::{AdminClient, print};

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

fn row(b: &Value) -> String {
    let text = |k: &str| b[k].as_str().unwrap_or("-").to_string();
    let expires = b["expires_at"].as_str().unwrap_or("until removed");
    format!(
        "{:<38} {:<20} {:<6} {:<22} {}",
        text("id"),
        text("cidr"),
        text("source"),
        expires,
        text("reason")
    )
}

pub fn run(client: &AdminClient, cmd: &BlockedIpsCmd, json: bool) -> anyhow::Result<bool> {
    match cmd {
        BlockedIpsCmd::List => {
            let answer = client.get("/v1/admin/blocked-ips")?;
            print(json, &answer, |a| {
                let items = a["items"].as_array().cloned().unwrap_or_default();
                let head = format!("{:<38} {:<20} {:<6} {:<22} REASON", "ID", "CIDR", "SOURCE", "EXPIRES");
                std::iter::once(head).chain(items.iter().map(row)).collect::<Vec<_>>().join("\n")
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
