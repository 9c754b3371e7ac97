//! Administration over the admin socket (and, for admins, later over the
//! API): daemon status, the config in force, and config reload for
//! `latchctl`.

mod handlers;
mod queries;

use actix_web::web;

use crate::http::problem::{Kind, ToProblem};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("the daemon is not taking reload requests (stopping?)")]
    DaemonBusy,
    #[error("{0}; the running config stays")]
    ConfigRejected(String),
}

impl ToProblem for AdminError {
    fn kind(&self) -> Kind {
        match self {
            AdminError::DaemonBusy => Kind::Unavailable,
            AdminError::ConfigRejected(_) => Kind::ConfigInvalid,
        }
    }

    fn detail(&self) -> Option<String> {
        matches!(self, AdminError::ConfigRejected(_)).then(|| self.to_string())
    }
}

/// Routes served on the admin socket.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/admin/status").route(web::get().to(handlers::status)))
        .service(web::resource("/v1/admin/config").route(web::get().to(handlers::config)))
        .service(web::resource("/v1/admin/config/reload").route(web::post().to(handlers::reload)));
}
