//! What the admin feature does with IP blocks: list, add, remove.

use std::time::Duration;

use super::blocks::{Block, Source};
use super::{Defense, queries};
use crate::audit::{self, Entry};
use crate::http::ClientInfo;
use crate::http::problem::{FieldError, Kind, ToProblem};
use crate::store::StoreError;

/// `POST /v1/admin/blocked-ips`.
pub struct BlockRequest {
    pub cidr: String,
    pub reason: String,
    /// `None`: until removed.
    pub duration: Option<Duration>,
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
    Store(#[from] StoreError),
}

impl ToProblem for BlockError {
    fn kind(&self) -> Kind {
        match self {
            BlockError::InvalidCidr(_) | BlockError::InvalidDuration(_) => Kind::InvalidRequest,
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
    pub async fn block(
        &self,
        req: BlockRequest,
        by: &ClientInfo,
        actor: Option<&str>,
    ) -> Result<Block, BlockError> {
        let cidr: crate::config::Cidr = req.cidr.parse().map_err(BlockError::InvalidCidr)?;
        let now = crate::clock::now_unix();
        let block = Block {
            id: uuid::Uuid::now_v7().to_string(),
            cidr: cidr.0,
            reason: req.reason,
            source: Source::Admin,
            created_at: now,
            expires_at: req.duration.map(|d| now + i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2)),
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

fn audited<'a>(action: &'a str, b: &Block, by: &'a ClientInfo, actor: Option<&'a str>) -> Entry<'a> {
    let details =
        serde_json::json!({"cidr": b.cidr.to_string(), "reason": b.reason, "expires_at": b.expires_at});
    Entry { action, actor_id: actor, subject_id: None, client: Some(by), details }
}
