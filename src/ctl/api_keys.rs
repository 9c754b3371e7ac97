//! `latchctl api-keys create|list|revoke`, through the admin API.

use clap::Subcommand;
use serde_json::{Value, json};

use super::{AdminClient, cell, print, table};
use crate::config::HumanDuration;

#[derive(Subcommand)]
pub enum ApiKeysCmd {
    /// Make a key; it is printed once and never again.
    Create {
        /// What the key is for, as `list` shows it (e.g. the app's name).
        #[arg(long, value_parser = super::named)]
        name: String,
        /// A scope (repeatable): admin, introspect, or your app's own.
        #[arg(long = "scope", value_name = "SCOPE", required = true)]
        scopes: Vec<String>,
        /// When it stops working (RFC 3339, or a date: its 00:00 UTC),
        /// default never.
        #[arg(long, value_name = "TIME", value_parser = super::when::deadline)]
        expires_at: Option<String>,
        /// How long it works from now, like "90d" or "12h" (instead of
        /// --expires-at).
        #[arg(long = "for", value_name = "DURATION", conflicts_with = "expires_at", value_parser = lifetime)]
        lifetime: Option<i64>,
        /// The user it acts for (id or email); it works only while they do,
        /// and scope admin only while they hold role admin.
        #[arg(long, value_name = "USER", value_parser = super::named)]
        owner: Option<String>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id: refused from the next request on.
    Revoke {
        /// The key's id (see `list`), not its secret.
        #[arg(value_parser = super::named)]
        id: String,
    },
}

/// `--for`: whole seconds from now, at least one (a key dead on arrival
/// is a typo), at most ten years as every duration latch reads.
fn lifetime(arg: &str) -> Result<i64, String> {
    let secs = arg.parse::<HumanDuration>()?.0.as_secs();
    if secs == 0 {
        return Err("a key must work for 1s or more".into());
    }
    i64::try_from(secs).map_err(|e| e.to_string())
}

fn cells(k: &Value) -> Vec<String> {
    let scopes: Vec<&str> = k["scopes"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let idle: Vec<&str> =
        k["idle_scopes"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let state = match (k["revoked_at"].is_string(), k["suspended"] == true) {
        (true, _) => "revoked".to_string(),
        (false, true) => "suspended (owner disabled)".to_string(),
        (false, false) if idle.is_empty() => "active".to_string(),
        (false, false) => format!("active; {} idle (owner lacks the role)", idle.join(",")),
    };
    vec![
        cell(k, "id", "?"),
        cell(k, "name", "?"),
        state,
        scopes.join(","),
        cell(k, "expires_at", "never"),
        cell(k, "last_used_at", "never"),
    ]
}

pub fn run(client: &AdminClient, cmd: &ApiKeysCmd, json: bool) -> anyhow::Result<bool> {
    match cmd {
        ApiKeysCmd::Create { name, scopes, expires_at, lifetime, owner } => {
            let owner_id = owner.as_deref().map(|o| super::users::user_id(client, o)).transpose()?;
            let expires_at = expires_at.clone().or_else(|| {
                lifetime.map(|secs| crate::clock::rfc3339(crate::clock::now_unix().saturating_add(secs)))
            });
            let body =
                json!({ "name": name, "scopes": scopes, "expires_at": expires_at, "owner_id": owner_id });
            let named = [
                ("name", "--name"),
                ("scopes", "--scope"),
                ("expires_at", "--expires-at"),
                ("owner_id", "--owner"),
            ];
            let key = client.post("/v1/admin/api-keys", Some(&body)).map_err(|e| e.as_typed(&named))?;
            print(json, &key, |k| {
                format!(
                    "{}\n(id {}; this is the only time the key is shown)",
                    k["key"].as_str().unwrap_or("?"),
                    k["id"].as_str().unwrap_or("?")
                )
            });
        }
        ApiKeysCmd::List => {
            let list = client.get("/v1/admin/api-keys")?;
            print(json, &list, |l| {
                let rows: Vec<Vec<String>> = l["items"].as_array().into_iter().flatten().map(cells).collect();
                table(&["ID", "NAME", "STATE", "SCOPES", "EXPIRES", "LAST USED"], &rows, "no API keys")
            });
        }
        ApiKeysCmd::Revoke { id } => {
            client.delete(&format!("/v1/admin/api-keys/{}", super::client::encode(id)))?;
            print(json, &json!({ "revoked": id }), |_| format!("revoked {id}"));
        }
    }
    Ok(true)
}
