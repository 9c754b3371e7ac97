//! Administration over the admin socket (and, for admins, later over the
//! API): daemon status, the config in force, and config reload for
//! `latchctl`.

mod blocks;
mod handlers;
mod queries;

use std::sync::Arc;

use actix_web::web;

use crate::defense::Defense;
use crate::http::problem::{FieldError, Kind, ToProblem};

/// What the admin API works with besides `AppState`.
pub struct Deps {
    pub defense: Arc<Defense>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("the daemon is not taking reload requests (stopping?)")]
    DaemonBusy,
    #[error("{0}; the running config stays")]
    ConfigRejected(String),
    #[error("duration: {0}")]
    BadDuration(String),
}

impl ToProblem for AdminError {
    fn kind(&self) -> Kind {
        match self {
            AdminError::DaemonBusy => Kind::Unavailable,
            AdminError::ConfigRejected(_) => Kind::ConfigInvalid,
            AdminError::BadDuration(_) => Kind::InvalidRequest,
        }
    }

    fn detail(&self) -> Option<String> {
        (!matches!(self, AdminError::DaemonBusy)).then(|| self.to_string())
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            AdminError::BadDuration(reason) => FieldError::one("duration", reason),
            _ => Vec::new(),
        }
    }
}

/// Routes served on the admin socket.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/admin/status").route(web::get().to(handlers::status)))
        .service(web::resource("/v1/admin/config").route(web::get().to(handlers::config)))
        .service(web::resource("/v1/admin/config/reload").route(web::post().to(handlers::reload)))
        .service(
            web::resource("/v1/admin/blocked-ips")
                .route(web::get().to(blocks::list))
                .route(web::post().to(blocks::add)),
        )
        .service(web::resource("/v1/admin/blocked-ips/{id}").route(web::delete().to(blocks::remove)));
}
