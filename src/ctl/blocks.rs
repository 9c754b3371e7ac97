//! `latchctl blocked-ips list|add|remove`: the IP blocks in force, through
//! the admin API on the admin socket.

use clap::Subcommand;
use serde_json::{Value, json};

use super::{AdminClient, ClientError, cell, print, table};
use crate::config::Cidr;

#[derive(Subcommand)]
pub enum BlockedIpsCmd {
    /// List the blocks in force (automatic and by an admin).
    List,
    /// Block an address or network.
    Add {
        /// An address or a network in CIDR notation.
        #[arg(value_parser = super::named)]
        cidr: String,
        /// How long, like "1h" or "7d" (default: until removed).
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
        /// Why, for the list and the audit log.
        #[arg(long, default_value = "blocked by an admin")]
        reason: String,
    },
    /// Lift a block by its id (see `list`), or every block on exactly
    /// that address or network.
    Remove {
        /// The block's id, or the address or network it blocks.
        #[arg(value_parser = super::named)]
        target: String,
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
            let named = [("duration", "--for"), ("reason", "--reason")];
            let block = client.post("/v1/admin/blocked-ips", Some(&body)).map_err(|e| e.as_typed(&named))?;
            print(json, &block, |b| {
                format!("blocked {} ({})", b["cidr"].as_str().unwrap_or("?"), b["id"].as_str().unwrap_or("?"))
            });
        }
        BlockedIpsCmd::Remove { target } => match target.parse::<Cidr>() {
            Ok(net) => remove_all_on(client, net, json)?,
            Err(_) => {
                client.delete(&format!("/v1/admin/blocked-ips/{}", super::client::encode(target)))?;
                print(json, &json!({ "removed": [target] }), |_| format!("removed {target}"));
            }
        },
    }
    Ok(true)
}

/// Lifts every block on exactly `net`. A block that ends between the list
/// and its delete answers 404: it is gone either way, so the others are
/// still lifted and the output says which had already ended.
fn remove_all_on(client: &AdminClient, net: Cidr, json: bool) -> anyhow::Result<()> {
    let ids = ids_blocking(client, net)?;
    crate::pause::blocking("ctl_block_delete");
    let (mut removed, mut ended) = (Vec::new(), Vec::new());
    for id in ids {
        match client.delete(&format!("/v1/admin/blocked-ips/{}", super::client::encode(&id))) {
            Ok(_) => removed.push(id),
            Err(ClientError::Problem { status: 404, .. }) => ended.push(id),
            Err(e) => return Err(e.into()),
        }
    }
    print(json, &json!({ "removed": removed, "already_ended": ended }), |_| {
        let mut said =
            if removed.is_empty() { String::new() } else { format!("removed {}", removed.join(", ")) };
        if !ended.is_empty() {
            let sep = if said.is_empty() { "" } else { "; " };
            said += &format!("{sep}already ended: {}", ended.join(", "));
        }
        said
    });
    Ok(())
}

/// The ids of the blocks on exactly `net`; when there are none, an error
/// that names the blocks whose networks hold it (lifting one of those is
/// the operator's call, not ours).
fn ids_blocking(client: &AdminClient, net: Cidr) -> anyhow::Result<Vec<String>> {
    let answer = client.get("/v1/admin/blocked-ips")?;
    let blocks = answer["items"].as_array().cloned().unwrap_or_default();
    let network_of = |b: &Value| b["cidr"].as_str().and_then(|c| c.parse::<Cidr>().ok());
    let exact: Vec<String> = blocks
        .iter()
        .filter(|b| network_of(b) == Some(net))
        .filter_map(|b| b["id"].as_str().map(str::to_string))
        .collect();
    if !exact.is_empty() {
        return Ok(exact);
    }
    let holding: Vec<String> = blocks
        .iter()
        .filter(|b| network_of(b).is_some_and(|n| n.0.contains(&net.0)))
        .map(|b| format!("{} ({})", cell(b, "cidr", "?"), cell(b, "id", "?")))
        .collect();
    let host = net.0.prefix_len() == net.0.max_prefix_len();
    let shown = if host { net.0.addr().to_string() } else { net.0.to_string() };
    if holding.is_empty() {
        anyhow::bail!("no block on {shown}");
    }
    anyhow::bail!("no block on {shown} itself; it lies inside {}", holding.join(", "))
}
