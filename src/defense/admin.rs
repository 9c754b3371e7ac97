//! What the admin feature does with IP blocks: list, add, remove.

use std::time::Duration;

use super::blocks::{Block, Source};
use super::{Defense, queries};
use crate::audit::{self, Entry};
use crate::auth::{PolicyError, display_text};
use crate::config::{Cidr, HumanDuration};
use crate::http::ClientInfo;
use crate::http::problem::{self, FieldError, Kind, ToProblem};
use crate::store::StoreError;

/// `POST /v1/admin/blocked-ips`.
pub struct BlockRequest {
    pub cidr: String,
    pub reason: String,
    /// Like "7d"; `None`: until removed.
    pub duration: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("cidr: {0}")]
    InvalidCidr(String),
    #[error("no block with that id")]
    NotFound,
    #[error("duration: {0}")]
    InvalidDuration(String),
    #[error(transparent)]
    Reason(#[from] PolicyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Several fields refused, told in one answer.
    #[error("{}", problem::joined(.0))]
    Several(Vec<BlockError>),
}

impl ToProblem for BlockError {
    fn kind(&self) -> Kind {
        match self {
            BlockError::InvalidCidr(_)
            | BlockError::InvalidDuration(_)
            | BlockError::Reason(_)
            | BlockError::Several(_) => Kind::InvalidRequest,
            BlockError::NotFound => Kind::NotFound,
            BlockError::Store(e) => e.kind(),
        }
    }

    fn detail(&self) -> Option<String> {
        (!matches!(self, BlockError::Store(_))).then(|| self.to_string())
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            BlockError::InvalidCidr(e) => FieldError::one("cidr", e),
            BlockError::InvalidDuration(e) => FieldError::one("duration", e),
            BlockError::Reason(e) => e.field_errors(),
            BlockError::Several(all) => all.iter().flat_map(ToProblem::field_errors).collect(),
            _ => Vec::new(),
        }
    }
}

impl Defense {
    /// The blocks in force, oldest first.
    pub fn blocked_ips(&self) -> Vec<Block> {
        self.blocks.list(crate::clock::now_unix())
    }

    /// Blocks a network on an admin's word: in force at once, written (with
    /// its audit row, `by` being the admin's request) before the answer.
    /// A network wholly inside `allowlist` is refused: blocks never apply
    /// there, so it would be listed and change nothing.
    pub async fn block(
        &self,
        req: BlockRequest,
        allowlist: &[Cidr],
        by: &ClientInfo,
        actor: Option<&str>,
    ) -> Result<Block, BlockError> {
        let checked = (
            blockable(&req.cidr, allowlist, by),
            lasting(req.duration.as_deref()),
            display_text("reason", Some(req.reason)).map_err(BlockError::from),
        );
        let (cidr, duration, reason) = match checked {
            (Ok(cidr), Ok(duration), Ok(reason)) => (cidr, duration, reason.unwrap_or_default()),
            (cidr, duration, reason) => {
                return Err(problem::of_fields(
                    [cidr.err(), duration.err(), reason.err()],
                    BlockError::Several,
                ));
            }
        };
        let now = crate::clock::now_unix();
        let block = Block {
            id: uuid::Uuid::now_v7().to_string(),
            cidr,
            reason,
            source: Source::Admin,
            created_at: now,
            expires_at: duration.map(|d| now + i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2)),
        };
        let (row, by, actor) = (block.clone(), by.clone(), actor.map(str::to_string));
        self.store
            .write(move |c| {
                queries::insert_block(c, &row)?;
                audit::record(c, &audited("ip_block_added", &row, &by, actor.as_deref()))
            })
            .await?;
        self.blocks.insert(block.clone());
        metrics::gauge!("latch_blocked_ips").set(self.blocks.list(now).len() as f64);
        Ok(block)
    }

    /// Lifts block `id`, with its audit row.
    pub async fn unblock(&self, id: &str, by: &ClientInfo, actor: Option<&str>) -> Result<Block, BlockError> {
        let now = crate::clock::now_unix();
        let block = self.blocks.list(now).into_iter().find(|b| b.id == id).ok_or(BlockError::NotFound)?;
        let (row, by, actor) = (block.clone(), by.clone(), actor.map(str::to_string));
        self.store
            .write(move |c| {
                queries::delete_block(c, &row.id)?;
                audit::record(c, &audited("ip_block_removed", &row, &by, actor.as_deref()))
            })
            .await?;
        self.blocks.remove(id);
        metrics::gauge!("latch_blocked_ips").set(self.blocks.list(now).len() as f64);
        Ok(block)
    }
}

/// The network an admin asked to block, if blocking it would do what they
/// mean: not everything, not their own address, not one blocks skip.
fn blockable(cidr: &str, allowlist: &[Cidr], by: &ClientInfo) -> Result<ipnet::IpNet, BlockError> {
    let cidr: Cidr = cidr.parse().map_err(BlockError::InvalidCidr)?;
    refuse_self_lockout(cidr.0, by)?;
    if let Some(allowed) = allowlist.iter().find(|a| a.0.contains(&cidr.0)) {
        return Err(BlockError::InvalidCidr(format!(
            "{} is inside [defense].allowlist entry {}, which blocks never apply to; \
             take it out of the allowlist first",
            cidr.0, allowed.0
        )));
    }
    Ok(cidr.0)
}

/// How long a block lasts (`None`: until removed), at least a second.
fn lasting(duration: Option<&str>) -> Result<Option<Duration>, BlockError> {
    let Some(text) = duration else { return Ok(None) };
    let lasts = text.parse::<HumanDuration>().map_err(BlockError::InvalidDuration)?.0;
    if lasts.is_zero() {
        return Err(BlockError::InvalidDuration(
            "must be at least 1s; leave it out to block until removed".into(),
        ));
    }
    Ok(Some(lasts))
}

/// A block the caller would regret at once: one on every address (`/0`
/// shuts out every app and person, the admin API over HTTPS included), or
/// one holding the address this very call comes from. The admin socket has
/// no address, so `latchctl` can still block the admin's own network on
/// purpose.
fn refuse_self_lockout(net: ipnet::IpNet, by: &ClientInfo) -> Result<(), BlockError> {
    if net.prefix_len() == 0 {
        let why = format!(
            "{net} blocks every address; to take latch off a network, change its [[listener]] addresses"
        );
        return Err(BlockError::InvalidCidr(why));
    }
    match by.ip.parse::<std::net::IpAddr>() {
        Ok(own) if net.contains(&own) => Err(BlockError::InvalidCidr(format!(
            "{net} holds {own}, the address this request comes from: it would shut you out; \
             block it with latchctl on the admin socket if you mean it"
        ))),
        _ => Ok(()),
    }
}

fn audited<'a>(action: &'a str, b: &Block, by: &'a ClientInfo, actor: Option<&'a str>) -> Entry<'a> {
    let details =
        serde_json::json!({"cidr": b.cidr.to_string(), "reason": b.reason, "expires_at": b.expires_at});
    Entry { action, actor_id: actor, subject_id: None, client: Some(by), details }
}
