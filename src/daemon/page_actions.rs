//! The pages' `Actions`, wired to the features' services: each page does
//! exactly what the API call it mirrors does (limits, throttling, audit
//! rows), and the pages feature imports no other feature.

use std::sync::Arc;

use actix_web::web;

use crate::auth::UserSession;
use crate::auth::second_factor::{self, Proof};
use crate::config::Config;
use crate::http::{ApiError, ClientInfo};
use crate::pages::{
    AccountView, Actions, Answer, ConfirmationLink, Confirmed, Enrolment, PasswordLink, ResetLink,
    SessionRow, SignIn,
};
use crate::sessions::second_step::SecondStepRequest;
use crate::sessions::service::{LoginAnswer, LoginRequest};
use crate::{accounts, mfa, sessions};

pub struct FeatureActions {
    pub accounts: web::Data<accounts::Deps>,
    pub sessions: web::Data<sessions::Deps>,
    pub mfa: web::Data<mfa::Deps>,
}

fn sign_in(answer: LoginAnswer) -> SignIn {
    match answer {
        LoginAnswer::Tokens(t) => SignIn::Session { session_id: t.session_id, user_id: t.user.id },
        LoginAnswer::SecondStep(c) => SignIn::SecondStep { mfa_token: c.mfa_token },
    }
}

/// A typed-in code: six digits (spaces allowed) is a TOTP code, anything
/// else a recovery code.
fn proof_fields(code: String) -> (Option<String>, Option<String>) {
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()) {
        (Some(digits), None)
    } else {
        (None, Some(code))
    }
}

/// `2026-12-02T05:24:37Z` as a person reads it: `2026-12-02 05:24 UTC`.
fn minutes(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..16)) {
        (Some(day), Some(time)) => format!("{day} {time} UTC"),
        _ => rfc3339.to_string(),
    }
}

fn api<T, E: Into<ApiError>>(r: Result<T, E>) -> Result<T, ApiError> {
    r.map_err(Into::into)
}

impl Actions for FeatureActions {
    fn confirmation_link<'a>(&'a self, token: &'a str) -> Answer<'a, ConfirmationLink> {
        use accounts::service::ConfirmationLink as Found;
        Box::pin(async move {
            Ok(match api(accounts::service::confirmation_link(&self.accounts.store, token).await)? {
                Found::Live => ConfirmationLink::Live,
                Found::AlreadyConfirmed => ConfirmationLink::AlreadyConfirmed,
                Found::Dead => ConfirmationLink::Dead,
            })
        })
    }

    fn verify_email<'a>(&'a self, token: &'a str, client: &'a ClientInfo) -> Answer<'a, Confirmed> {
        Box::pin(async move {
            let confirmed = api(accounts::service::verify_email(&self.accounts.store, token, client).await)?;
            Ok(match confirmed {
                accounts::service::Confirmed::Address => Confirmed::Address,
                accounts::service::Confirmed::NewAddress => Confirmed::NewAddress,
            })
        })
    }

    fn resend_verification<'a>(
        &'a self,
        cfg: &'a Arc<Config>,
        email: &'a str,
        client: &'a ClientInfo,
    ) -> Answer<'a, ()> {
        Box::pin(async move {
            api(accounts::service::by_email(
                &self.accounts,
                cfg,
                email,
                accounts::ByEmail::ResendVerification,
                client,
            ))
        })
    }

    fn forgot_password<'a>(
        &'a self,
        cfg: &'a Arc<Config>,
        email: &'a str,
        client: &'a ClientInfo,
    ) -> Answer<'a, ()> {
        Box::pin(async move {
            api(accounts::service::by_email(
                &self.accounts,
                cfg,
                email,
                accounts::ByEmail::PasswordReset,
                client,
            ))
        })
    }

    fn reset_link<'a>(&'a self, token: &'a str) -> Answer<'a, PasswordLink> {
        use accounts::passwords::PasswordLink as Found;
        let kind = |invitation: bool| if invitation { ResetLink::Invitation } else { ResetLink::Reset };
        Box::pin(async move {
            Ok(match api(accounts::passwords::password_link(&self.accounts, token).await)? {
                Found::Live { invitation, email } => PasswordLink::Live(kind(invitation), email),
                Found::Used { invitation } => PasswordLink::Used(kind(invitation)),
                Found::Dead => PasswordLink::Dead,
            })
        })
    }

    fn reset_password<'a>(
        &'a self,
        cfg: &'a Config,
        token: &'a str,
        new_password: String,
        client: &'a ClientInfo,
    ) -> Answer<'a, ()> {
        Box::pin(async move {
            api(accounts::passwords::reset_password(&self.accounts, cfg, token, new_password, client).await)
        })
    }

    fn sign_in<'a>(
        &'a self,
        cfg: &'a Config,
        email: String,
        password: String,
        client: &'a ClientInfo,
    ) -> Answer<'a, SignIn> {
        Box::pin(async move {
            let req = LoginRequest { email, password, device_name: None };
            api(sessions::service::login(&self.sessions, cfg, req, client).await).map(sign_in)
        })
    }

    fn second_step<'a>(
        &'a self,
        cfg: &'a Config,
        mfa_token: String,
        code: String,
        client: &'a ClientInfo,
    ) -> Answer<'a, SignIn> {
        Box::pin(async move {
            let (code, recovery_code) = proof_fields(code);
            let req = SecondStepRequest { mfa_token, code, recovery_code };
            let tokens = api(sessions::second_step::login_mfa(&self.sessions, cfg, req, client).await)?;
            Ok(SignIn::Session { session_id: tokens.session_id, user_id: tokens.user.id })
        })
    }

    fn account<'a>(&'a self, user: &'a UserSession) -> Answer<'a, AccountView> {
        Box::pin(async move {
            let me = accounts::service::me(user);
            let (uid, totp) = (user.user_id.clone(), me.mfa.totp);
            let (recovery_codes_left, pending_email) = api(self
                .accounts
                .store
                .read(move |c| {
                    let left = if totp { second_factor::recovery_codes_left(c, &uid)? } else { 0 };
                    let pending =
                        crate::auth::queries::pending_email_change(c, &uid, crate::clock::now_unix())?;
                    Ok((left, pending.map(|p| p.new_email)))
                })
                .await)?;
            Ok(AccountView {
                name: me.name,
                email: me.email,
                email_verified: me.email_verified,
                pending_email,
                totp,
                recovery_codes_left,
            })
        })
    }

    fn sessions<'a>(&'a self, user: &'a UserSession) -> Answer<'a, Vec<SessionRow>> {
        Box::pin(async move {
            let list = api(sessions::service::list(&self.sessions.store, user).await)?;
            Ok(list
                .into_iter()
                .map(|s| SessionRow {
                    device: s
                        .device_name
                        .or_else(|| s.user_agent.as_deref().map(crate::http::device::describe))
                        .unwrap_or_else(|| "Unknown device".into()),
                    ip: s.ip.unwrap_or_default(),
                    last_seen_at: minutes(&s.last_seen_at),
                    current: s.current,
                    id: s.id,
                })
                .collect())
        })
    }

    fn revoke_session<'a>(
        &'a self,
        user: &'a UserSession,
        id: String,
        client: &'a ClientInfo,
    ) -> Answer<'a, ()> {
        Box::pin(
            async move { api(sessions::service::revoke_own(&self.sessions.store, user, id, client).await) },
        )
    }

    fn sign_out<'a>(
        &'a self,
        user: &'a UserSession,
        everywhere: bool,
        client: &'a ClientInfo,
    ) -> Answer<'a, ()> {
        Box::pin(async move {
            api(sessions::service::logout(&self.sessions.store, user, everywhere, client).await)
        })
    }

    fn change_password<'a>(
        &'a self,
        cfg: &'a Config,
        user: &'a UserSession,
        current: String,
        new_password: String,
        client: &'a ClientInfo,
    ) -> Answer<'a, ()> {
        Box::pin(async move {
            api(accounts::passwords::change_password(
                &self.accounts,
                cfg,
                user,
                current,
                new_password,
                client,
            )
            .await)
        })
    }

    fn rename<'a>(
        &'a self,
        user: &'a UserSession,
        name: Option<String>,
        client: &'a ClientInfo,
    ) -> Answer<'a, ()> {
        Box::pin(async move {
            api(accounts::service::rename(&self.accounts.store, user, name, client).await).map(drop)
        })
    }

    fn delete_account<'a>(
        &'a self,
        cfg: &'a Config,
        user: &'a UserSession,
        password: String,
        client: &'a ClientInfo,
    ) -> Answer<'a, ()> {
        Box::pin(async move {
            api(accounts::service::delete_me(&self.accounts, cfg, user, password, client).await)
        })
    }

    fn change_email<'a>(
        &'a self,
        cfg: &'a Config,
        user: &'a UserSession,
        password: String,
        new_email: &'a str,
        client: &'a ClientInfo,
    ) -> Answer<'a, ()> {
        Box::pin(async move {
            api(accounts::address::request_change(&self.accounts, cfg, user, password, new_email, client)
                .await)
        })
    }

    fn enrol_totp<'a>(
        &'a self,
        cfg: &'a Config,
        user: &'a UserSession,
        client: &'a ClientInfo,
    ) -> Answer<'a, Enrolment> {
        Box::pin(async move {
            let e = api(mfa::service::enrol(&self.mfa, cfg, user, client).await)?;
            Ok(Enrolment { secret: e.secret, otpauth_uri: e.otpauth_uri, qr_svg: e.qr_svg })
        })
    }

    fn confirm_totp<'a>(
        &'a self,
        cfg: &'a Config,
        user: &'a UserSession,
        code: String,
        client: &'a ClientInfo,
    ) -> Answer<'a, Vec<String>> {
        Box::pin(async move {
            api(mfa::service::confirm(&self.mfa, cfg, user, code, client).await).map(|c| c.recovery_codes)
        })
    }

    fn new_recovery_codes<'a>(
        &'a self,
        cfg: &'a Config,
        user: &'a UserSession,
        password: String,
        client: &'a ClientInfo,
    ) -> Answer<'a, Vec<String>> {
        Box::pin(async move {
            api(mfa::service::regenerate(&self.mfa, cfg, user, password, client).await)
                .map(|c| c.recovery_codes)
        })
    }

    fn turn_off_totp<'a>(
        &'a self,
        cfg: &'a Config,
        user: &'a UserSession,
        password: String,
        code: String,
        client: &'a ClientInfo,
    ) -> Answer<'a, ()> {
        Box::pin(async move {
            let (code, recovery_code) = proof_fields(code);
            let proof = api(Proof::from_fields(code, recovery_code).ok_or(mfa::MfaError::OneProof))?;
            api(mfa::service::disable(&self.mfa, cfg, user, password, proof, client).await)
        })
    }
}
