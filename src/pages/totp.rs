//! TOTP on the account page: enrol (QR code and key), confirm with a first
//! code (which shows the recovery codes once), new recovery codes, and
//! turning it off (a new phone is set up after that).

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use serde::Deserialize;

use super::account::{CsrfForm, account_page, user_or_login};
use super::render::{Message, RecoveryCodes, TotpSetup, refusal};
use super::{Deps, Page, text};
use crate::http::{ApiError, ClientInfo, Kind, LiveConfig, Routes};

type D = web::Data<Deps>;

pub fn routes(r: &mut Routes) {
    r.add(__path_enrol, enrol)
        .add(__path_confirm, confirm)
        .add(__path_recovery_codes, recovery_codes)
        .add(__path_turn_off, turn_off);
}

fn codes_page(page: &Page, codes: Vec<String>) -> HttpResponse {
    let view = RecoveryCodes { product: page.product(), title: text::RECOVERY_CODES, notice: None, codes };
    page.answer(None, &view)
}

/// A message page whose way on is back to the account page.
fn to_account(page: &Page, title: &'static str, lines: Vec<String>) -> Message {
    let link = Some(("/account".into(), text::BACK_TO_ACCOUNT));
    Message { product: page.product(), title, notice: None, lines, ask: None, link, csrf: page.csrf() }
}

/// `POST /account/totp`: a new secret, shown as a QR code and a key.
#[utoipa::path(post, path = "/account/totp", tag = "pages",
    request_body(content = CsrfForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The QR code and the confirm form", content_type = "text/html")))]
pub async fn enrol(
    d: D,
    cfg: LiveConfig,
    req: HttpRequest,
    client: ClientInfo,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, ApiError> {
    let page = Page::posted(&d, &cfg, &req, &form.0.csrf)?;
    let user = match user_or_login(&d, &req).await? {
        Ok(user) => user,
        Err(to_login) => return Ok(to_login),
    };
    match d.actions.enrol_totp(&cfg, &user, &client).await {
        Ok(e) => {
            let view = TotpSetup {
                product: page.product(),
                title: text::SET_UP_APP,
                notice: None,
                qr_base64: base64::engine::general_purpose::STANDARD.encode(e.qr_svg),
                secret: in_fours(&e.secret),
                csrf: page.csrf(),
            };
            Ok(page.answer(None, &view))
        }
        Err(e) => {
            let (status, text) = refusal(&e);
            account_page(&d, &cfg, &page, &user, status, Some(text)).await
        }
    }
}

/// The key in groups of four ("ABCD EFGH …"), as authenticator apps show
/// and take it: 32 letters in one run are easy to lose one's place in when
/// typed by hand.
fn in_fours(secret: &str) -> String {
    let mut spaced = String::with_capacity(secret.len() + secret.len() / 4);
    for (at, letter) in secret.chars().enumerate() {
        if at > 0 && at % 4 == 0 {
            spaced.push(' ');
        }
        spaced.push(letter);
    }
    spaced
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CodeForm {
    csrf: String,
    code: String,
}

/// `POST /account/totp/confirm`: turns TOTP on; the recovery codes, once.
#[utoipa::path(post, path = "/account/totp/confirm", tag = "pages",
    request_body(content = CodeForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The recovery codes", content_type = "text/html")))]
pub async fn confirm(
    d: D,
    cfg: LiveConfig,
    req: HttpRequest,
    client: ClientInfo,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, ApiError> {
    let page = Page::posted(&d, &cfg, &req, &form.csrf)?;
    let user = match user_or_login(&d, &req).await? {
        Ok(user) => user,
        Err(to_login) => return Ok(to_login),
    };
    match d.actions.confirm_totp(&cfg, &user, form.into_inner().code, &client).await {
        Ok(codes) => Ok(codes_page(&page, codes)),
        // Confirm pressed twice: the first press turned it on and showed
        // the codes; "that code did not match" would be false and alarming.
        Err(e) if e.problem().kind == Kind::MfaAlreadyEnabled => {
            let view = to_account(&page, text::TOTP_ALREADY_ON, vec![text::TOTP_ALREADY_ON_LINE.into()]);
            Ok(page.answer(None, &view))
        }
        Err(e) => {
            let (status, text) = refusal(&e);
            let view = to_account(&page, text::CODE_MISMATCH, vec![text, text::CODE_MISMATCH_LINE.into()]);
            Ok(page.answer(status, &view))
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PasswordOnlyForm {
    csrf: String,
    password: String,
}

/// `POST /account/recovery-codes`: new codes; the old ones stop working.
#[utoipa::path(post, path = "/account/recovery-codes", tag = "pages",
    request_body(content = PasswordOnlyForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The new recovery codes", content_type = "text/html")))]
pub async fn recovery_codes(
    d: D,
    cfg: LiveConfig,
    req: HttpRequest,
    client: ClientInfo,
    form: web::Form<PasswordOnlyForm>,
) -> Result<HttpResponse, ApiError> {
    let page = Page::posted(&d, &cfg, &req, &form.csrf)?;
    let user = match user_or_login(&d, &req).await? {
        Ok(user) => user,
        Err(to_login) => return Ok(to_login),
    };
    match d.actions.new_recovery_codes(&cfg, &user, form.into_inner().password, &client).await {
        Ok(codes) => Ok(codes_page(&page, codes)),
        Err(e) => {
            let (status, text) = refusal(&e);
            account_page(&d, &cfg, &page, &user, status, Some(text)).await
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct TurnOffForm {
    csrf: String,
    password: String,
    /// A code from the app, or a recovery code.
    code: String,
}

/// `POST /account/totp/off`: turns TOTP off (password and a code, as
/// `DELETE /v1/auth/mfa/totp`), so a person with a new phone can set the
/// app up again; the other sessions end and the person is mailed.
#[utoipa::path(post, path = "/account/totp/off", tag = "pages",
    request_body(content = TurnOffForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Turned off, or the account page with the reason", content_type = "text/html")))]
pub async fn turn_off(
    d: D,
    cfg: LiveConfig,
    req: HttpRequest,
    client: ClientInfo,
    form: web::Form<TurnOffForm>,
) -> Result<HttpResponse, ApiError> {
    let page = Page::posted(&d, &cfg, &req, &form.csrf)?;
    let user = match user_or_login(&d, &req).await? {
        Ok(user) => user,
        Err(to_login) => return Ok(to_login),
    };
    let TurnOffForm { password, code, .. } = form.into_inner();
    match d.actions.turn_off_totp(&cfg, &user, password, code, &client).await {
        Ok(()) => {}
        // Already off: the form sent twice (a double click), whose first
        // send turned it off. Say it is off, not "TOTP is not enabled".
        Err(e) if e.problem().kind == Kind::Conflict => {}
        Err(e) => {
            let (status, text) = refusal(&e);
            return account_page(&d, &cfg, &page, &user, status, Some(text)).await;
        }
    }
    Ok(page.answer(None, &to_account(&page, text::TOTP_OFF, vec![text::TOTP_OFF_LINE.into()])))
}
