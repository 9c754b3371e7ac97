//! The pages behind the links in latch's emails: confirm an address (a
//! button; the POST confirms, because mail scanners open links), set a new
//! password, and ask for a new link when one is used or expired.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::render::{Ask, EmailForm, Message, ResetPassword, VerifyEmail, refusal};
use super::{ConfirmationLink, Confirmed, Deps, Page, PasswordLink, ResetLink, text};
use crate::http::{ApiError, ClientInfo, Kind, LiveConfig, Problem, Routes};

type D = web::Data<Deps>;

pub fn routes(r: &mut Routes) {
    r.add(__path_verify_page, verify_page)
        .add(__path_verify, verify)
        .add(__path_resend, resend)
        .add(__path_reset_page, reset_page)
        .add(__path_reset, reset)
        .add(__path_forgot_page, forgot_page)
        .add(__path_forgot, forgot);
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct TokenQuery {
    /// The one-time token from the email.
    token: Option<String>,
}

fn message(page: &Page, title: &'static str, lines: Vec<String>, ask: Option<Ask>) -> Message {
    let link = ask.is_none().then_some(("/account/login".into(), text::SIGN_IN));
    Message { product: page.product(), title, notice: None, lines, ask, link, csrf: page.csrf() }
}

/// A link without its token (cut off in a mail client): the page that asks
/// for a new one.
fn incomplete(page: &Page, ask: Ask) -> HttpResponse {
    let lines = vec![text::LINK_INCOMPLETE_LINE.into()];
    page.answer(Some(Kind::InvalidToken), &message(page, text::LINK_INCOMPLETE, lines, Some(ask)))
}

/// A link that no longer works, its rule (how long such links live), and
/// the form that asks for a new one.
fn dead_link(page: &Page, e: &ApiError, rule: &str, ask: Ask) -> HttpResponse {
    let (status, text) = refusal(e);
    let lines = vec![text, rule.into()];
    page.answer(status, &message(page, text::LINK_DEAD, lines, Some(ask)))
}

/// A link the lookup found spent, expired or unknown (nothing was tried).
fn link_not_live(page: &Page, rule: &str, ask: Ask) -> HttpResponse {
    dead_link(page, &Problem::new(Kind::InvalidToken).into(), rule, ask)
}

/// A password link whose own use set a password: opened again, or its
/// form sent twice (the person's password is set; "does not work" would
/// send them for a new link).
fn password_link_used(page: &Page, link: ResetLink) -> HttpResponse {
    let line = match link {
        ResetLink::Invitation => text::INVITATION_USED_LINE,
        ResetLink::Reset => text::RESET_LINK_USED_LINE,
    };
    page.answer(None, &message(page, text::LINK_USED, vec![line.into()], None))
}

/// A confirmation link whose address is confirmed already: opened again,
/// or its Confirm pressed twice.
fn already_confirmed(page: &Page) -> HttpResponse {
    let lines = vec![text::ALREADY_CONFIRMED_LINE.into()];
    page.answer(None, &message(page, text::ADDRESS_CONFIRMED, lines, None))
}

/// `GET /verify-email?token=`: a page with a Confirm button (the POST
/// confirms, because mail scanners open links) — or, when the link no
/// longer works, says so instead of offering a button that cannot work.
#[utoipa::path(get, path = "/verify-email", tag = "pages", params(TokenQuery),
    responses((status = 200, description = "A page with a Confirm button, or: already confirmed", content_type = "text/html"),
        (status = 400, description = "The link has no token, or no longer works: a page to ask for a new one", content_type = "text/html")))]
pub async fn verify_page(
    d: D,
    cfg: LiveConfig,
    req: HttpRequest,
    q: web::Query<TokenQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = Page::open(&d, &cfg, &req)?;
    let Some(token) = q.into_inner().token.filter(|t| !t.is_empty()) else {
        return Ok(incomplete(&page, Ask::NewVerification));
    };
    match d.actions.confirmation_link(&token).await? {
        ConfirmationLink::Live => {}
        ConfirmationLink::AlreadyConfirmed => return Ok(already_confirmed(&page)),
        ConfirmationLink::Dead => {
            return Ok(link_not_live(&page, text::VERIFY_LINK_RULE, Ask::NewVerification));
        }
    }
    let view = VerifyEmail {
        product: page.product(),
        title: text::CONFIRM_ADDRESS,
        notice: None,
        token,
        csrf: page.csrf(),
    };
    Ok(page.answer(None, &view))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenForm {
    csrf: String,
    token: String,
}

/// `POST /verify-email`: confirms the address.
#[utoipa::path(post, path = "/verify-email", tag = "pages",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Confirmed, or why not", content_type = "text/html")))]
pub async fn verify(
    d: D,
    cfg: LiveConfig,
    req: HttpRequest,
    client: ClientInfo,
    form: web::Form<TokenForm>,
) -> Result<HttpResponse, ApiError> {
    let page = Page::posted_from(&d, &cfg, &req, &form.csrf, Some(("/verify-email", &form.token)))?;
    match d.actions.verify_email(&form.token, &client).await {
        Ok(confirmed) => {
            let (title, line) = match confirmed {
                Confirmed::Address => (text::ADDRESS_CONFIRMED, text::ADDRESS_CONFIRMED_LINE),
                Confirmed::NewAddress => (text::ADDRESS_CHANGED, text::ADDRESS_CHANGED_LINE),
            };
            Ok(page.answer(None, &message(&page, title, vec![line.into()], None)))
        }
        Err(e) => {
            let confirmed = e.problem().kind == Kind::InvalidToken
                && d.actions.confirmation_link(&form.token).await? == ConfirmationLink::AlreadyConfirmed;
            match confirmed {
                true => Ok(already_confirmed(&page)),
                false => Ok(dead_link(&page, &e, text::VERIFY_LINK_RULE, Ask::NewVerification)),
            }
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct EmailFormBody {
    csrf: String,
    email: String,
}

/// The answer to "send me a link", the same whether or not the address
/// has an account.
fn link_sent(page: &Page, sent: Result<(), ApiError>, email: &str) -> HttpResponse {
    match sent {
        Ok(()) => {
            let lines = vec![text::link_on_its_way(email)];
            page.answer(None, &message(page, text::CHECK_EMAIL, lines, None))
        }
        Err(e) => {
            let (status, text) = refusal(&e);
            page.answer(status, &message(page, text::NO_LINK_SENT, vec![text], None))
        }
    }
}

/// `POST /verify-email/resend`: a new confirmation link.
#[utoipa::path(post, path = "/verify-email/resend", tag = "pages",
    request_body(content = EmailFormBody, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "A link is on its way, if the address has an account", content_type = "text/html")))]
pub async fn resend(
    d: D,
    cfg: LiveConfig,
    req: HttpRequest,
    client: ClientInfo,
    form: web::Form<EmailFormBody>,
) -> Result<HttpResponse, ApiError> {
    let page = Page::posted(&d, &cfg, &req, &form.csrf)?;
    let sent = d.actions.resend_verification(&cfg.0, &form.email, &client).await;
    Ok(link_sent(&page, sent, &form.email))
}

/// A live link's form: what it was mailed as, and for which address.
struct LiveLink {
    link: ResetLink,
    email: String,
    token: String,
}

fn reset_view(page: &Page, cfg: &LiveConfig, live: LiveLink, notice: Option<String>) -> ResetPassword {
    let first = live.link == ResetLink::Invitation;
    ResetPassword {
        product: page.product(),
        title: if first { text::CHOOSE_FIRST_PASSWORD } else { text::CHOOSE_PASSWORD },
        notice,
        first,
        email: live.email,
        token: live.token,
        csrf: page.csrf(),
        min_length: cfg.passwords.min_length,
        max_length: cfg.passwords.max_length,
    }
}

/// `GET /reset-password?token=`: the new-password form — or, when the link
/// no longer works, says so (or that it set the password already) before
/// the person types a password twice.
#[utoipa::path(get, path = "/reset-password", tag = "pages", params(TokenQuery),
    responses((status = 200, description = "The new-password form (an invitation's: the first password), or: this link already set the password", content_type = "text/html"),
        (status = 400, description = "The link has no token, or no longer works: a page to ask for a new one", content_type = "text/html")))]
pub async fn reset_page(
    d: D,
    cfg: LiveConfig,
    req: HttpRequest,
    q: web::Query<TokenQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = Page::open(&d, &cfg, &req)?;
    let Some(token) = q.into_inner().token.filter(|t| !t.is_empty()) else {
        return Ok(incomplete(&page, Ask::NewReset));
    };
    match d.actions.reset_link(&token).await? {
        PasswordLink::Live(link, email) => {
            Ok(page.answer(None, &reset_view(&page, &cfg, LiveLink { link, email, token }, None)))
        }
        PasswordLink::Used(link) => Ok(password_link_used(&page, link)),
        PasswordLink::Dead => Ok(link_not_live(&page, text::RESET_LINK_RULE, Ask::NewReset)),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ResetForm {
    csrf: String,
    token: String,
    new_password: String,
    confirm_password: String,
}

/// `POST /reset-password`: sets the password; every session ends.
#[utoipa::path(post, path = "/reset-password", tag = "pages",
    request_body(content = ResetForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Password set, or why not", content_type = "text/html")))]
pub async fn reset(
    d: D,
    cfg: LiveConfig,
    req: HttpRequest,
    client: ClientInfo,
    form: web::Form<ResetForm>,
) -> Result<HttpResponse, ApiError> {
    let page = Page::posted_from(&d, &cfg, &req, &form.csrf, Some(("/reset-password", &form.token)))?;
    let ResetForm { token, new_password, confirm_password, .. } = form.into_inner();
    // What the link is decides the words; the reset below spends it.
    let (link, email) = match d.actions.reset_link(&token).await? {
        PasswordLink::Live(link, email) => (link, email),
        PasswordLink::Used(link) => return Ok(password_link_used(&page, link)),
        PasswordLink::Dead => return Ok(link_not_live(&page, text::RESET_LINK_RULE, Ask::NewReset)),
    };
    if new_password != confirm_password {
        let view =
            reset_view(&page, &cfg, LiveLink { link, email, token }, Some(text::PASSWORDS_DIFFER.into()));
        return Ok(page.answer(Some(Kind::InvalidRequest), &view));
    }
    match d.actions.reset_password(&cfg, &token, new_password, &client).await {
        Ok(()) if link == ResetLink::Invitation => {
            let lines = vec![text::FIRST_PASSWORD_SET.into()];
            Ok(page.answer(None, &message(&page, text::PASSWORD_SET, lines, None)))
        }
        Ok(()) => {
            let lines = vec![text::NEW_PASSWORD_SET.into(), text::ALL_SIGNED_OUT.into()];
            Ok(page.answer(None, &message(&page, text::PASSWORD_CHANGED, lines, None)))
        }
        // The same form sent twice at once: the other one spent the link.
        Err(e) if e.problem().kind == Kind::InvalidToken => match d.actions.reset_link(&token).await? {
            PasswordLink::Used(link) => Ok(password_link_used(&page, link)),
            _ => Ok(dead_link(&page, &e, text::RESET_LINK_RULE, Ask::NewReset)),
        },
        Err(e) => {
            let (status, text) = refusal(&e);
            Ok(page.answer(status, &reset_view(&page, &cfg, LiveLink { link, email, token }, Some(text))))
        }
    }
}

/// `GET /account/forgot`: ask for a password-reset link.
#[utoipa::path(get, path = "/account/forgot", tag = "pages",
    responses((status = 200, description = "The forgot-password form", content_type = "text/html")))]
pub async fn forgot_page(d: D, cfg: LiveConfig, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let page = Page::open(&d, &cfg, &req)?;
    let view = EmailForm {
        product: page.product(),
        title: text::FORGOT,
        notice: None,
        intro: text::FORGOT_INTRO,
        action: "/account/forgot",
        csrf: page.csrf(),
    };
    Ok(page.answer(None, &view))
}

/// `POST /account/forgot`: sends the link (if the address has an account).
#[utoipa::path(post, path = "/account/forgot", tag = "pages",
    request_body(content = EmailFormBody, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "A link is on its way, if the address has an account", content_type = "text/html")))]
pub async fn forgot(
    d: D,
    cfg: LiveConfig,
    req: HttpRequest,
    client: ClientInfo,
    form: web::Form<EmailFormBody>,
) -> Result<HttpResponse, ApiError> {
    let page = Page::posted(&d, &cfg, &req, &form.csrf)?;
    let sent = d.actions.forgot_password(&cfg.0, &form.email, &client).await;
    Ok(link_sent(&page, sent, &form.email))
}
