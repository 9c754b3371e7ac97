//! `/v1/admin/backups`: take a backup now (`latchctl backup now`) and list
//! the ones in the backup folder. Admins only.

use actix_web::{HttpResponse, web};

use super::Deps;
use crate::auth::Principal;
use crate::http::{ApiError, Items, Kind, LiveConfig, ToProblem};
use crate::store::StoreError;
use crate::store::backup::{self, Listed, Taken};

type D = web::Data<Deps>;

#[utoipa::path(post, path = "/v1/admin/backups", tag = "admin", security(("bearer" = [])),
    responses((status = 201, description = "Taken, checked and written; its path", body = TakenBody)))]
pub async fn now(d: D, who: Principal, cfg: LiveConfig) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    let taken = d.take(&cfg).await.map_err(BackupFailed)?;
    Ok(HttpResponse::Created().json(TakenBody::from(taken)))
}

/// A backup an admin asked for did not complete: they are told why (a
/// full disk, a folder latchd may not write, a damaged database), as the
/// log says, rather than "something went wrong".
#[derive(Debug, thiserror::Error)]
#[error("the backup failed: {0}")]
struct BackupFailed(StoreError);

impl ToProblem for BackupFailed {
    fn kind(&self) -> Kind {
        self.0.kind()
    }

    fn detail(&self) -> Option<String> {
        Some(self.to_string())
    }
}

#[utoipa::path(get, path = "/v1/admin/backups", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "The backups in the folder, oldest first", body = Items<ListedBody>)))]
pub async fn list(who: Principal, cfg: LiveConfig) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    let dir = cfg.backup_dir();
    let listed = tokio::task::spawn_blocking(move || backup::list(&dir)).await.map_err(StoreError::from)?;
    let items: Vec<ListedBody> = listed.map_err(StoreError::from)?.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(Items { items }))
}

/// A backup just taken.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TakenBody {
    path: String,
    size_bytes: u64,
    /// RFC 3339: the moment of the database the backup holds.
    taken_at: String,
}

impl From<Taken> for TakenBody {
    fn from(t: Taken) -> TakenBody {
        TakenBody {
            path: t.path.display().to_string(),
            size_bytes: t.size_bytes,
            taken_at: crate::clock::rfc3339(t.taken_at),
        }
    }
}

/// One backup file.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ListedBody {
    path: String,
    size_bytes: u64,
    /// RFC 3339: when the file was written.
    written_at: String,
}

impl From<Listed> for ListedBody {
    fn from(l: Listed) -> ListedBody {
        ListedBody {
            path: l.path.display().to_string(),
            size_bytes: l.size_bytes,
            written_at: crate::clock::rfc3339(l.written_at),
        }
    }
}
