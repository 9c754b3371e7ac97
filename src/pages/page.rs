//! What every page handler starts with: the pages are on and this is an
//! HTTPS listener (else 404), the
//! product name, and the browser's CSRF seed — checked against the form's
//! token on a POST before anything else happens.

use std::borrow::Cow;

use actix_web::{HttpRequest, HttpResponse};
use askama::Template;

use super::csrf::{self, Seed};
use super::render::{Message, PAGE_CSP, html};
use super::{Deps, text};
use crate::config::Config;
use crate::http::{ApiError, Kind, Problem};

pub struct Page {
    product: String,
    seed: Seed,
    csrf: String,
}

impl Page {
    /// A page shown with GET.
    pub fn open(d: &Deps, cfg: &Config, req: &HttpRequest) -> Result<Page, ApiError> {
        // A plain-HTTP or Unix listener would take a password in clear, and
        // the browser would drop the page's `Secure` cookies anyway.
        if !cfg.pages.enabled || !crate::http::over_tls(req) {
            return Err(Problem::new(Kind::NotFound).into());
        }
        let seed = Seed::of(req);
        let csrf = seed.token(&d.key);
        Ok(Page { product: cfg.pages.product_name.clone(), seed, csrf })
    }

    /// A form posted back: refused unless its CSRF token matches the
    /// browser's cookie.
    pub fn posted(d: &Deps, cfg: &Config, req: &HttpRequest, form_csrf: &str) -> Result<Page, ApiError> {
        Page::posted_from(d, cfg, req, form_csrf, None)
    }

    /// As `posted`, for a form an email's link opened: `link` is that
    /// page's path and the link's token, so a refusal can offer the form
    /// again (the account page would ask a person who forgot their
    /// password to sign in).
    pub fn posted_from(
        d: &Deps,
        cfg: &Config,
        req: &HttpRequest,
        form_csrf: &str,
        link: Option<(&str, &str)>,
    ) -> Result<Page, ApiError> {
        let page = Page::open(d, cfg, req)?;
        if !csrf::valid(req, &d.key, form_csrf) {
            let again = link.map(|(path, link_token)| {
                let query: String = form_urlencoded::byte_serialize(link_token.as_bytes()).collect();
                (format!("{path}?token={query}").into(), text::OPEN_FORM_AGAIN)
            });
            return Err(page.form_expired(again.unwrap_or(("/account".into(), text::YOUR_ACCOUNT))));
        }
        Ok(page)
    }

    /// A form whose token does not match its browser's cookie (the cookie
    /// went with a browser restart, or the form came from elsewhere): 403,
    /// as a page that says what to do, where problem JSON would show a
    /// person raw text. Opening the form again sets a new cookie.
    fn form_expired(&self, link: (Cow<'static, str>, &'static str)) -> ApiError {
        let problem = Problem::new(Kind::Forbidden).with_detail(text::FORM_EXPIRED);
        let view = Message {
            product: self.product(),
            title: text::FORM_EXPIRED_TITLE,
            notice: None,
            lines: vec![text::FORM_EXPIRED.into()],
            ask: None,
            link: Some(link),
            csrf: self.csrf(),
        };
        match view.render() {
            Ok(body) => ApiError::page(problem, PAGE_CSP, body),
            Err(e) => {
                tracing::error!(error = %e, "a page template failed to render");
                problem.into()
            }
        }
    }

    pub fn product(&self) -> String {
        self.product.clone()
    }

    pub fn csrf(&self) -> String {
        self.csrf.clone()
    }

    /// `view` rendered with `status`, setting the CSRF cookie if new.
    pub fn answer(&self, status: Option<Kind>, view: &impl Template) -> HttpResponse {
        self.with_cookie(html(status, view))
    }

    pub fn with_cookie(&self, mut resp: HttpResponse) -> HttpResponse {
        if let Some(cookie) = self.seed.cookie()
            && let Err(e) = resp.add_cookie(&cookie)
        {
            tracing::warn!(error = %e, "could not set the CSRF cookie");
        }
        resp
    }
}
