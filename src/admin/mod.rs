//! Administration over the admin socket (and later, for admins, over the
//! API): daemon status and config reload for `latchctl`.

mod handlers;
mod queries;

use actix_web::web;

/// Routes served on the admin socket.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/admin/status").route(web::get().to(handlers::status)))
        .service(web::resource("/v1/admin/config/reload").route(web::post().to(handlers::reload)));
}
