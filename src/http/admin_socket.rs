//! The admin socket: a Unix-socket listener for `latchctl`, mode 0660 with
//! group `[admin].group`. Besides the file mode, every connection's peer is
//! checked with SO_PEERCRED: root, latchd's own user, or a member of the
//! admin group; anyone else gets 403 on every request.

use std::future::{Ready, ready};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::rc::Rc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::{App, HttpServer, web};
use futures_util::future::LocalBoxFuture;
use nix::unistd::{Gid, Group, Uid, User, getgrouplist};

use super::context::RequestContext;
use super::problem::{Kind, Problem};
use super::server::{BoundAdmin, HttpError, bind_unix, server_defaults};
use super::{AppState, ops};
use crate::config::Config;

/// Connections the admin socket serves at once; past them actix pauses its
/// accepts and the kernel queues the rest (holding none of latchd's file
/// descriptors). Operators' calls are one at a time, but a script looping
/// on `latchctl` without waiting, or a stuck monitor, would otherwise take
/// descriptors until the database and the HTTPS listeners had none.
pub(super) const ADMIN_CONNECTIONS: usize = 32;

/// The connecting process's credentials, recorded per connection of the
/// admin socket (and only there: its presence marks an admin-socket call).
#[derive(Clone, Copy, Debug)]
pub struct PeerCred {
    pub uid: u32,
    pub gid: u32,
}

/// Who may use the admin socket: root, latchd's own user, and members of
/// `[admin].group`. Membership is read from the group database at every
/// request (getgrouplist: /etc/group, LDAP…), so removing someone from the
/// group takes effect at once, without a restart.
#[derive(Clone, Debug)]
pub struct AdminAccess {
    own_uid: u32,
    group: String,
}

impl AdminAccess {
    fn for_group(name: &str) -> AdminAccess {
        AdminAccess { own_uid: Uid::effective().as_raw(), group: name.to_string() }
    }

    fn allows(&self, peer: PeerCred) -> bool {
        if peer.uid == 0 || peer.uid == self.own_uid {
            return true;
        }
        let Some(group) = Group::from_name(&self.group).ok().flatten() else { return false };
        // Running with the group as its own (newgrp, sg) counts too.
        if peer.gid == group.gid.as_raw() {
            return true;
        }
        let Some(user) = User::from_uid(Uid::from_raw(peer.uid)).ok().flatten() else { return false };
        let Ok(name) = std::ffi::CString::new(user.name) else { return false };
        getgrouplist(&name, user.gid).is_ok_and(|groups| groups.contains(&group.gid))
    }
}

/// Binds the admin socket and builds its server; `routes` are the admin API.
pub fn bind_admin(
    cfg: &Config,
    state: web::Data<AppState>,
    routes: super::ApiRoutes,
) -> Result<BoundAdmin, HttpError> {
    let path = cfg.admin_socket.clone();
    let bind_err = |source| HttpError::Bind { what: path.display().to_string(), source };
    let lst = bind_unix(&path).map_err(bind_err)?;
    restrict_to_group(&path, &cfg.admin_group).map_err(bind_err)?;
    let access = AdminAccess::for_group(&cfg.admin_group);
    let factory = move || {
        App::new()
            .app_data(state.clone())
            .wrap(PeerCheck { access: Rc::new(access.clone()) })
            .wrap(RequestContext { tls: false, check_host: false })
            .configure(|c| {
                let mut r = super::Routes::new();
                r.add(ops::__path_health, ops::health);
                r.register(c);
            })
            .configure(|c| routes(c))
    };
    let server = server_defaults!(HttpServer::new(factory), cfg)
        .workers(1)
        .max_connections(ADMIN_CONNECTIONS)
        .on_connect(|conn, ext| {
            if let Some(sock) = conn.downcast_ref::<actix_web::rt::net::UnixStream>()
                && let Ok(cred) = sock.peer_cred()
            {
                ext.insert(PeerCred { uid: cred.uid(), gid: cred.gid() });
            }
        })
        .listen_uds(lst)
        .map_err(bind_err)?
        .run();
    tracing::info!(path = %path.display(), group = %cfg.admin_group, "admin socket listening");
    Ok(BoundAdmin { path, handle: server.handle(), server })
}

/// Gives the socket to the admin group with mode 0660, or keeps it 0600
/// (owner and root only) when the group does not exist on this host or
/// none is configured.
fn restrict_to_group(path: &Path, group: &str) -> std::io::Result<()> {
    match Group::from_name(group).ok().flatten() {
        Some(g) => {
            std::os::unix::fs::chown(path, None, Some(Gid::as_raw(g.gid)))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        }
        None => {
            if group.is_empty() {
                tracing::info!("no admin group configured: admin socket is owner-only (0600)");
            } else {
                tracing::info!(group, "admin group not found: admin socket is owner-only (0600)");
            }
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        }
    }
}

struct PeerCheck {
    access: Rc<AdminAccess>,
}

impl<S, B> Transform<S, ServiceRequest> for PeerCheck
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = PeerCheckService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(PeerCheckService { service: Rc::new(service), access: Rc::clone(&self.access) }))
    }
}

struct PeerCheckService<S> {
    service: Rc<S>,
    access: Rc<AdminAccess>,
}

impl<S, B> Service<ServiceRequest> for PeerCheckService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let peer = req.conn_data::<PeerCred>().copied();
        // Security: no credentials means we cannot tell who this is: refuse.
        if !peer.is_some_and(|p| self.access.allows(p)) {
            tracing::warn!(?peer, "admin socket: peer refused");
            let p = Problem::new(Kind::Forbidden)
                .with_detail("Only root, latchd's user and members of the admin group may use this socket.");
            let (req, _) = req.into_parts();
            return Box::pin(async move {
                Ok(ServiceResponse::new(req, p.into_response()).map_into_right_body())
            });
        }
        let service = Rc::clone(&self.service);
        Box::pin(async move { Ok(service.call(req).await?.map_into_left_body()) })
    }
}
