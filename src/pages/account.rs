//! Signing in (with the second step when TOTP is on) and the account page:
//! sessions with revoke and sign out everywhere, the name, the password
//! and the address, and deleting the account.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::browser;
use super::render::{Account, Login, Message, SecondStep, refusal, see_other};
use super::{Deps, Page, SignIn, text};
use crate::auth::UserSession;
use crate::config::Config;
use crate::http::{ApiError, ClientInfo, Kind, LiveConfig, Routes};

type D = web::Data<Deps>;

pub fn routes(r: &mut Routes) {
    r.add(__path_login_page, login_page)
        .add(__path_login, login)
        .add(__path_second_step, second_step)
        .add(__path_account, account)
        .add(__path_revoke, revoke)
        .add(__path_logout, logout)
        .add(__path_logout_all, logout_all)
        .add(__path_change_password, change_password)
        .add(__path_change_email, change_email)
        .add(__path_delete_account, delete_account)
        .add(__path_rename, rename);
}

fn login_view(page: &Page, email: String, notice: Option<String>) -> Login {
    Login {
        product: page.product(),
        title: text::SIGN_IN,
        notice,
        email,
        csrf: page.csrf(),
        offer_new_link: false,
    }
}

/// `GET /account/login`.
#[utoipa::path(get, path = "/account/login", tag = "pages",
    responses((status = 200, description = "The sign-in form", content_type = "text/html")))]
pub async fn login_page(d: D, cfg: LiveConfig, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let page = Page::open(&d, &cfg, &req)?;
    if browser::current(&d.store, &req).await?.is_some() {
        return Ok(see_other("/account"));
    }
    Ok(page.answer(None, &login_view(&page, String::new(), None)))
}

/// Where a sign-in leads: the account page with a new browser session, or
/// the second step.
async fn signed_in(d: &Deps, page: &Page, outcome: SignIn) -> Result<HttpResponse, ApiError> {
    match outcome {
        SignIn::Session { session_id, .. } => {
            let Some(cookie) = browser::start(&d.store, session_id).await? else {
                return Ok(see_other("/account/login"));
            };
            let mut resp = see_other("/account");
            resp.add_cookie(&cookie)
                .map_err(|_| ApiError::from(crate::http::Problem::new(Kind::Internal)))?;
            Ok(page.with_cookie(resp))
        }
        SignIn::SecondStep { mfa_token } => {
            let view = SecondStep {
                product: page.product(),
                title: text::ENTER_CODE,
                notice: None,
                mfa_token,
                csrf: page.csrf(),
            };
            Ok(page.answer(None, &view))
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginForm {
    csrf: String,
    email: String,
    password: String,
}

/// `POST /account/login`: the same checks, limits and audit rows as
/// `POST /v1/auth/login`.
#[utoipa::path(post, path = "/account/login", tag = "pages",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Signed in: on to /account"),
        (status = 200, description = "The second step, or the form again with the reason", content_type = "text/html")))]
pub async fn login(
    d: D,
    cfg: LiveConfig,
    req: HttpRequest,
    client: ClientInfo,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, ApiError> {
    let page = Page::posted(&d, &cfg, &req, &form.csrf)?;
    let LoginForm { email, password, .. } = form.into_inner();
    match d.actions.sign_in(&cfg, email.clone(), password, &client).await {
        Ok(outcome) => signed_in(&d, &page, outcome).await,
        Err(e) => {
            let (status, text) = refusal(&e);
            let mut view = login_view(&page, email, Some(text));
            // Only a correct password gets this far: it tells nothing.
            view.offer_new_link = status == Some(Kind::EmailNotVerified);
            Ok(page.answer(status, &view))
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct SecondStepForm {
    csrf: String,
    mfa_token: String,
    /// A TOTP code or a recovery code.
    code: String,
}

/// `POST /account/login/mfa`: as `POST /v1/auth/login/mfa`.
#[utoipa::path(post, path = "/account/login/mfa", tag = "pages",
    request_body(content = SecondStepForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Signed in: on to /account"),
        (status = 401, description = "The code was wrong; sign in again", content_type = "text/html")))]
pub async fn second_step(
    d: D,
    cfg: LiveConfig,
    req: HttpRequest,
    client: ClientInfo,
    form: web::Form<SecondStepForm>,
) -> Result<HttpResponse, ApiError> {
    let page = Page::posted(&d, &cfg, &req, &form.csrf)?;
    let SecondStepForm { mfa_token, code, .. } = form.into_inner();
    match d.actions.second_step(&cfg, mfa_token.clone(), code, &client).await {
        Ok(outcome) => signed_in(&d, &page, outcome).await,
        Err(e) => {
            let (status, text) = refusal(&e);
            let view = SecondStep {
                product: page.product(),
                title: text::ENTER_CODE,
                notice: Some(text),
                mfa_token,
                csrf: page.csrf(),
            };
            Ok(page.answer(status, &view))
        }
    }
}

/// The signed-in user, or the answer that sends the browser to sign in.
pub async fn user_or_login(
    d: &Deps,
    req: &HttpRequest,
) -> Result<Result<UserSession, HttpResponse>, ApiError> {
    Ok(browser::current(&d.store, req).await?.ok_or_else(|| see_other("/account/login")))
}

/// The account page, with `notice` on top.
pub async fn account_page(
    d: &Deps,
    cfg: &Config,
    page: &Page,
    user: &UserSession,
    status: Option<Kind>,
    notice: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let view = Account {
        product: page.product(),
        title: text::YOUR_ACCOUNT,
        notice,
        account: d.actions.account(user).await?,
        sessions: d.actions.sessions(user).await?,
        csrf: page.csrf(),
        min_length: cfg.passwords.min_length,
        max_length: cfg.passwords.max_length,
    };
    Ok(page.answer(status, &view))
}

/// `GET /account`.
#[utoipa::path(get, path = "/account", tag = "pages",
    responses((status = 200, description = "The account page", content_type = "text/html"),
        (status = 303, description = "Not signed in: on to /account/login")))]
pub async fn account(d: D, cfg: LiveConfig, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let page = Page::open(&d, &cfg, &req)?;
    let user = match user_or_login(&d, &req).await? {
        Ok(user) => user,
        Err(to_login) => return Ok(to_login),
    };
    account_page(&d, &cfg, &page, &user, None, None).await
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CsrfForm {
    pub csrf: String,
}

/// `POST /account/sessions/{id}/revoke`.
#[utoipa::path(post, path = "/account/sessions/{id}/revoke", tag = "pages",
    params(("id" = String, Path, description = "A session of the signed-in user")),
    request_body(content = CsrfForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Back to /account")))]
pub async fn revoke(
    d: D,
    cfg: LiveConfig,
    req: HttpRequest,
    client: ClientInfo,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, ApiError> {
    Page::posted(&d, &cfg, &req, &form.csrf)?;
    let user = match user_or_login(&d, &req).await? {
        Ok(user) => user,
        Err(to_login) => return Ok(to_login),
    };
    d.actions.revoke_session(&user, id.into_inner(), &client).await?;
    Ok(see_other("/account"))
}

async fn sign_out(
    d: D,
    cfg: LiveConfig,
    req: HttpRequest,
    client: ClientInfo,
    csrf: &str,
    everywhere: bool,
) -> Result<HttpResponse, ApiError> {
    Page::posted(&d, &cfg, &req, csrf)?;
    if let Ok(user) = user_or_login(&d, &req).await? {
        d.actions.sign_out(&user, everywhere, &client).await?;
    }
    let mut resp = see_other("/account/login");
    resp.add_cookie(&browser::ended())
        .map_err(|_| ApiError::from(crate::http::Problem::new(Kind::Internal)))?;
    Ok(resp)
}

/// `POST /account/logout`: ends this session.
#[utoipa::path(post, path = "/account/logout", tag = "pages",
    request_body(content = CsrfForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Signed out: on to /account/login")))]
pub async fn logout(
    d: D,
    cfg: LiveConfig,
    req: HttpRequest,
    client: ClientInfo,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, ApiError> {
    sign_out(d, cfg, req, client, &form.csrf, false).await
}

/// `POST /account/logout-all`: ends every session of the user.
#[utoipa::path(post, path = "/account/logout-all", tag = "pages",
    request_body(content = CsrfForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Signed out everywhere: on to /account/login")))]
pub async fn logout_all(
    d: D,
    cfg: LiveConfig,
    req: HttpRequest,
    client: ClientInfo,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, ApiError> {
    sign_out(d, cfg, req, client, &form.csrf, true).await
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PasswordForm {
    csrf: String,
    current_password: String,
    new_password: String,
    confirm_password: String,
}

/// `POST /account/password`: as `POST /v1/auth/password/change`.
#[utoipa::path(post, path = "/account/password", tag = "pages",
    request_body(content = PasswordForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The account page, saying what happened", content_type = "text/html")))]
pub async fn change_password(
    d: D,
    cfg: LiveConfig,
    req: HttpRequest,
    client: ClientInfo,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, ApiError> {
    let page = Page::posted(&d, &cfg, &req, &form.csrf)?;
    let user = match user_or_login(&d, &req).await? {
        Ok(user) => user,
        Err(to_login) => return Ok(to_login),
    };
    let PasswordForm { current_password, new_password, confirm_password, .. } = form.into_inner();
    let (status, notice) = if new_password != confirm_password {
        (Some(Kind::InvalidRequest), text::NEW_PASSWORDS_DIFFER.to_string())
    } else {
        match d.actions.change_password(&cfg, &user, current_password, new_password, &client).await {
            Ok(()) => (None, text::PASSWORD_CHANGED_LINE.to_string()),
            Err(e) => refusal(&e),
        }
    };
    account_page(&d, &cfg, &page, &user, status, Some(notice)).await
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct EmailForm {
    csrf: String,
    new_email: String,
    password: String,
}

/// `POST /account/email`: as `POST /v1/auth/email/change`.
#[utoipa::path(post, path = "/account/email", tag = "pages",
    request_body(content = EmailForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The account page, saying what happened", content_type = "text/html")))]
pub async fn change_email(
    d: D,
    cfg: LiveConfig,
    req: HttpRequest,
    client: ClientInfo,
    form: web::Form<EmailForm>,
) -> Result<HttpResponse, ApiError> {
    let page = Page::posted(&d, &cfg, &req, &form.csrf)?;
    let user = match user_or_login(&d, &req).await? {
        Ok(user) => user,
        Err(to_login) => return Ok(to_login),
    };
    let EmailForm { new_email, password, .. } = form.into_inner();
    let (status, notice) = match d.actions.change_email(&cfg, &user, password, &new_email, &client).await {
        Ok(()) => (None, text::address_change_sent(new_email.trim())),
        Err(e) => refusal(&e),
    };
    account_page(&d, &cfg, &page, &user, status, Some(notice)).await
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct DeleteForm {
    csrf: String,
    password: String,
    /// The box saying the person means it; absent when not ticked.
    confirm: Option<String>,
}

/// `POST /account/delete`: as `DELETE /v1/auth/me`; the browser session
/// ends with the account.
#[utoipa::path(post, path = "/account/delete", tag = "pages",
    request_body(content = DeleteForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Deleted, or the account page saying why not", content_type = "text/html")))]
pub async fn delete_account(
    d: D,
    cfg: LiveConfig,
    req: HttpRequest,
    client: ClientInfo,
    form: web::Form<DeleteForm>,
) -> Result<HttpResponse, ApiError> {
    let page = Page::posted(&d, &cfg, &req, &form.csrf)?;
    let user = match user_or_login(&d, &req).await? {
        Ok(user) => user,
        Err(to_login) => return Ok(to_login),
    };
    let DeleteForm { password, confirm, .. } = form.into_inner();
    let refused = match confirm.as_deref() {
        Some("yes") => {
            d.actions.delete_account(&cfg, &user, password, &client).await.err().map(|e| refusal(&e))
        }
        _ => Some((Some(Kind::InvalidRequest), text::CONFIRM_DELETE.to_string())),
    };
    if let Some((status, notice)) = refused {
        return account_page(&d, &cfg, &page, &user, status, Some(notice)).await;
    }
    let lines = vec![text::ACCOUNT_DELETED_LINE.to_string()];
    let view = Message {
        product: page.product(),
        title: text::ACCOUNT_DELETED,
        notice: None,
        lines,
        ask: None,
        link: None,
        csrf: page.csrf(),
    };
    let mut resp = page.answer(None, &view);
    resp.add_cookie(&browser::ended())
        .map_err(|_| ApiError::from(crate::http::Problem::new(Kind::Internal)))?;
    Ok(resp)
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NameForm {
    csrf: String,
    name: String,
}

/// `POST /account/name`: as `PATCH /v1/auth/me`.
#[utoipa::path(post, path = "/account/name", tag = "pages",
    request_body(content = NameForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The account page, saying what happened", content_type = "text/html")))]
pub async fn rename(
    d: D,
    cfg: LiveConfig,
    req: HttpRequest,
    client: ClientInfo,
    form: web::Form<NameForm>,
) -> Result<HttpResponse, ApiError> {
    let page = Page::posted(&d, &cfg, &req, &form.csrf)?;
    let user = match user_or_login(&d, &req).await? {
        Ok(user) => user,
        Err(to_login) => return Ok(to_login),
    };
    let (status, notice) = match d.actions.rename(&user, Some(form.into_inner().name), &client).await {
        Ok(()) => (None, text::NAME_SAVED.to_string()),
        Err(e) => refusal(&e),
    };
    // Read again: the page shows the name as stored now.
    let user = match user_or_login(&d, &req).await? {
        Ok(user) => user,
        Err(to_login) => return Ok(to_login),
    };
    account_page(&d, &cfg, &page, &user, status, Some(notice)).await
}
