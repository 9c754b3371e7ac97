//! `latchctl keys list|rotate [--now]|revoke KID|export-master`. The signing
//! keys go through the admin API (the running daemon must see a change at
//! once); the master key is read from its file.

use clap::Subcommand;
use serde_json::{Value, json};

use super::{AdminClient, Target, offline, print, table};

#[derive(Subcommand)]
pub enum KeysCmd {
    /// The access-token signing keys and their states.
    List,
    /// Publish a new signing key now; it signs after the JWKS max-age
    /// (300 s), once apps have fetched it.
    Rotate {
        /// Sign with it at once (apps with a cached JWKS refetch on the
        /// unknown kid).
        #[arg(long)]
        now: bool,
    },
    /// Drop a key at once: its tokens stop verifying.
    Revoke {
        /// A kid is a base64url thumbprint, so about one in 64 starts with
        /// `-`: it must still be read as the kid, not as an option.
        #[arg(allow_hyphen_values = true, value_parser = super::named)]
        kid: String,
    },
    /// Print the master key (hex) for safekeeping; it is not in backups.
    ExportMaster,
}

fn cells(k: &Value) -> Vec<String> {
    let s = |f: &str| k[f].as_str().unwrap_or("-").to_string();
    let when = match k["state"].as_str() {
        Some("pending") => format!("signs from {}", s("activates_at")),
        Some("retired") => format!("published until {}", s("leaves_jwks_at")),
        Some("revoked") => format!("revoked {}", s("revoked_at")),
        _ => format!("since {}", s("activates_at")),
    };
    vec![s("kid"), s("algorithm"), s("state"), when]
}

pub fn run(client: &AdminClient, target: &Target, cmd: &KeysCmd, json: bool) -> anyhow::Result<bool> {
    match cmd {
        KeysCmd::List => {
            let list = client.get("/v1/admin/signing-keys")?;
            print(json, &list, |l| {
                let rows: Vec<Vec<String>> = l["items"].as_array().into_iter().flatten().map(cells).collect();
                let none =
                    format!("{} signs with tokens.secret_file; there are no keys to list", l["algorithm"]);
                table(&["KID", "ALG", "STATE", "WHEN"], &rows, &none)
            });
        }
        KeysCmd::Rotate { now } => {
            let key = client.post("/v1/admin/signing-keys", Some(&json!({ "now": now })))?;
            print(json, &key, |k| match k["state"].as_str() {
                Some("signing") => format!("{} signs from now on", k["kid"].as_str().unwrap_or("?")),
                _ => format!(
                    "{} published; signs from {}",
                    k["kid"].as_str().unwrap_or("?"),
                    k["activates_at"].as_str().unwrap_or("?")
                ),
            });
        }
        KeysCmd::Revoke { kid } => {
            client.delete(&format!("/v1/admin/signing-keys/{}", super::client::encode(kid)))?;
            print(json, &json!({ "revoked": kid }), |_| format!("revoked {kid}"));
        }
        KeysCmd::ExportMaster => return offline::export_master(target),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::Cli;

    #[test]
    fn a_kid_that_starts_with_a_dash_is_a_kid() {
        let cli = Cli::try_parse_from(["latchctl", "keys", "revoke", "-kX9_thumbprint"]);
        assert!(cli.is_ok(), "{:?}", cli.err().map(|e| e.to_string()));
    }
}
