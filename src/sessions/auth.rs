//! `Authenticated`: a bearer access token that is valid *and* whose session
//! is live and user active, with roles read from the database — never from
//! the token — so logout, revocation and disabling take effect at once.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, web};

use super::queries;
use super::signing::TokenSigner;
use crate::http::{ApiError, AppState};

#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user_id: String,
    pub session_id: String,
    pub roles: Vec<String>,
    pub amr: Vec<String>,
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
}

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let signer = req.app_data::<web::Data<TokenSigner>>().cloned();
        Box::pin(async move {
            let unauthorized = || ApiError::from(super::AuthError::Unauthorized);
            let (Some(token), Some(state), Some(signer)) = (token, state, signer) else {
                return Err(unauthorized());
            };
            let cfg = state.config.load();
            let claims = signer.validate(&token, &cfg).ok_or_else(unauthorized)?;
            let sid = claims.sid.clone();
            let found = state
                .store
                .read(move |c| {
                    let Some(user) = queries::live_session_user(c, &sid, crate::clock::now_unix())? else {
                        return Ok(None);
                    };
                    let roles = queries::roles_of(c, &user)?;
                    Ok(Some((user, roles)))
                })
                .await?;
            match found {
                Some((user_id, roles)) if user_id == claims.sub => {
                    Ok(Authenticated { user_id, session_id: claims.sid, roles, amr: claims.amr })
                }
                _ => Err(unauthorized()),
            }
        })
    }
}
