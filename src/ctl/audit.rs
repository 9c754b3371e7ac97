//! `latchctl audit export|verify`. Export streams the log from the daemon
//! over the admin socket; verify reads the database and the master key
//! itself (root or latchd's user), so it also works with latchd stopped,
//! and exits 1 naming the first row that breaks the chain.

use std::io::Write;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;

use super::client::encode;
use super::stdout::{Failure, Stream};
use super::{AdminClient, Target, offline, print};

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Write the audit log, oldest first, to stdout.
    Export {
        /// One JSON object per line, or CSV with a header row.
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "csv"])]
        format: String,
        /// Only this action (e.g. login_failed).
        #[arg(long)]
        action: Option<String>,
        /// Only rows of what this user did (id or email; an email also
        /// finds the rows of accounts that had it and were deleted or moved
        /// to another address since).
        #[arg(long, value_name = "USER", value_parser = super::named)]
        actor_id: Option<String>,
        /// Only rows about this user (what was done to the account; id or
        /// email, as for --actor-id).
        #[arg(long, value_name = "USER", value_parser = super::named)]
        subject_id: Option<String>,
        /// Only rows from this client address.
        #[arg(long)]
        ip: Option<String>,
        /// From this time on: RFC 3339, a date (from its 00:00 UTC), Unix
        /// seconds, or a while ago (like "24h" or "7d").
        #[arg(long, value_name = "TIME", value_parser = super::when::moment)]
        since: Option<i64>,
        /// Up to this time, written as for --since.
        #[arg(long, value_name = "TIME", value_parser = super::when::moment)]
        until: Option<i64>,
    },
    /// Check the HMAC chain of every row; exit 1 at the first broken one.
    Verify,
}

pub fn run(client: &AdminClient, target: &Target, cmd: &AuditCmd, json: bool) -> anyhow::Result<bool> {
    match cmd {
        AuditCmd::Export { format, action, actor_id, subject_id, ip, since, until } => {
            let mut path = format!("/v1/admin/audit-logs?format={format}");
            // Rows name users by id; the daemon reads an address as the
            // ids of every account that had it (live, deleted or moved
            // since) and refuses one that none had rather than export
            // nothing.
            let filters = [
                ("action", action),
                ("actor_id", actor_id),
                ("subject_id", subject_id),
                ("ip", ip),
                ("since", &since.map(|at| at.to_string())),
                ("until", &until.map(|at| at.to_string())),
            ];
            for (name, value) in filters {
                if let Some(v) = value {
                    path.push_str(&format!("&{name}={}", encode(v)));
                }
            }
            let mut out = Stream::new();
            let downloaded = client.download(&path, &mut out).map_err(anyhow::Error::from);
            let done = downloaded.and_then(|()| Ok(out.flush()?));
            match (done, out.failure()) {
                (_, Some(Failure::ReaderGone)) => Ok(true),
                (_, Some(Failure::Write(e))) => Err(e).context("writing the export"),
                (done, None) => done.map(|()| true),
            }
        }
        AuditCmd::Verify => verify(target, json),
    }
}

fn verify(target: &Target, json: bool) -> anyhow::Result<bool> {
    let conn = offline::open_read_only(target)?;
    let master = crate::keys::load_existing(&conn, target.state.key_file())?;
    let key = crate::audit::ChainKey::new(&master);
    let (checked, verdict) = crate::audit::Walk::run(&conn, &key)?;
    let report = match &verdict {
        Ok(()) => json!({ "ok": true, "checked": checked }),
        Err(b) => json!({ "ok": false, "checked": checked, "broken": b }),
    };
    print(json, &report, |_| match &verdict {
        Ok(()) => format!("audit chain intact: {checked} rows"),
        Err(b) => {
            format!("audit chain broken at row {}: {} ({checked} rows before it intact)", b.id, b.reason)
        }
    });
    Ok(verdict.is_ok())
}
