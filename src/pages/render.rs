//! The templates (askama, checked at compile time, HTML-escaped), the
//! one stylesheet, and the answer every page goes out as: HTML with a CSP
//! that allows only that stylesheet, data-URI images (the QR code) and
//! forms posting back here — no script at all.

use std::borrow::Cow;

use actix_web::HttpResponse;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use askama::Template;

use super::{AccountView, SessionRow};
use actix_web::ResponseError;

use crate::http::problem::FieldError;
use crate::http::{ApiError, Kind, html_page};

/// No script, no frames, styles and images only from here (and the QR
/// code's data URI), forms only back to latch.
pub const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLESHEET: &str = include_str!("latch.css");

/// What a message page offers to do next.
pub enum Ask {
    NewVerification,
    NewReset,
}

#[derive(Template)]
#[template(path = "pages/message.html")]
pub struct Message {
    pub product: String,
    pub title: &'static str,
    pub notice: Option<String>,
    pub lines: Vec<String>,
    pub ask: Option<Ask>,
    /// Where the page sends the person next, and the link's words.
    pub link: Option<(Cow<'static, str>, &'static str)>,
    pub csrf: String,
}

#[derive(Template)]
#[template(path = "pages/verify_email.html")]
pub struct VerifyEmail {
    pub product: String,
    pub title: &'static str,
    pub notice: Option<String>,
    pub token: String,
    pub csrf: String,
}

#[derive(Template)]
#[template(path = "pages/reset_password.html")]
pub struct ResetPassword {
    pub product: String,
    pub title: &'static str,
    pub notice: Option<String>,
    /// An invitation's link: the account's first password.
    pub first: bool,
    /// The account's address, for password managers (and the person).
    pub email: String,
    pub token: String,
    pub csrf: String,
    pub min_length: u32,
    pub max_length: u32,
}

#[derive(Template)]
#[template(path = "pages/email_form.html")]
pub struct EmailForm {
    pub product: String,
    pub title: &'static str,
    pub notice: Option<String>,
    pub intro: &'static str,
    pub action: &'static str,
    pub csrf: String,
}

#[derive(Template)]
#[template(path = "pages/login.html")]
pub struct Login {
    pub product: String,
    pub title: &'static str,
    pub notice: Option<String>,
    pub email: String,
    pub csrf: String,
    /// The password was right but the address is not confirmed yet: offer
    /// a new confirmation link for it, the one way forward.
    pub offer_new_link: bool,
}

#[derive(Template)]
#[template(path = "pages/second_step.html")]
pub struct SecondStep {
    pub product: String,
    pub title: &'static str,
    pub notice: Option<String>,
    pub mfa_token: String,
    pub csrf: String,
}

#[derive(Template)]
#[template(path = "pages/account.html")]
pub struct Account {
    pub product: String,
    pub title: &'static str,
    pub notice: Option<String>,
    pub account: AccountView,
    pub sessions: Vec<SessionRow>,
    pub csrf: String,
    pub min_length: u32,
    pub max_length: u32,
}

#[derive(Template)]
#[template(path = "pages/totp_setup.html")]
pub struct TotpSetup {
    pub product: String,
    pub title: &'static str,
    pub notice: Option<String>,
    pub qr_base64: String,
    pub secret: String,
    pub csrf: String,
}

#[derive(Template)]
#[template(path = "pages/recovery_codes.html")]
pub struct RecoveryCodes {
    pub product: String,
    pub title: &'static str,
    pub notice: Option<String>,
    pub codes: Vec<String>,
}

/// Renders `page` as the answer: 200, or the status of `refused` (the
/// kind of problem the page explains).
pub fn html(refused: Option<Kind>, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(body) => html_page(refused, PAGE_CSP, body),
        Err(e) => {
            tracing::error!(error = %e, "a page template failed to render");
            ApiError::from(crate::http::Problem::new(Kind::Internal)).error_response()
        }
    }
}

/// The kind and the sentence a page shows for a refused action: the
/// problem's own detail (written for people), each field it names called
/// by the form's label instead of the API's name (`new_password:`).
pub fn refusal(e: &ApiError) -> (Option<Kind>, String) {
    let p = e.problem();
    let mut text = labelled(&p.detail, &p.errors);
    if let Some(secs) = p.retry_after {
        text.push_str(&format!(" Try again in {secs} seconds."));
    }
    (Some(p.kind), text)
}

/// `detail` with each "field: " that begins one of its parts (joined by
/// "; ", as `problem::joined` writes them) and that `errors` names read
/// as that field's label on the forms.
fn labelled(detail: &str, errors: &[FieldError]) -> String {
    let part = |part: &str| {
        errors
            .iter()
            .find_map(|e| {
                let rest = part.strip_prefix(e.field.as_str())?.strip_prefix(": ")?;
                Some(format!("{}: {rest}", super::text::field_label(&e.field)))
            })
            .unwrap_or_else(|| part.to_string())
    };
    detail.split("; ").map(part).collect::<Vec<_>>().join("; ")
}

/// A 303 to `to`: after a POST, the browser GETs the next page.
pub fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header(("location", to)).finish()
}

/// `GET /assets/latch.css`.
#[utoipa::path(get, path = "/assets/latch.css", tag = "pages",
    responses((status = 200, description = "The pages' stylesheet", content_type = "text/css")))]
pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/css; charset=utf-8"))
        .insert_header((CACHE_CONTROL, "public, max-age=3600"))
        .body(STYLESHEET)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_fields_by_the_forms_labels() {
        let errors = [FieldError::one("new_password", "x"), FieldError::one("name", "y")].concat();
        let detail = "new_password: shorter than 12 characters; name: longer than 128 characters";
        assert_eq!(
            labelled(detail, &errors),
            "New password: shorter than 12 characters; Your name: longer than 128 characters"
        );
        // Only a part's beginning, and only a field the errors name.
        let said = "the name: is taken; email: not a valid address";
        assert_eq!(labelled(said, &errors), said);
        assert_eq!(labelled("named: x", &errors), "named: x");
    }
}
