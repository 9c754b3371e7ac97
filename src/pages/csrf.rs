//! CSRF tokens for every form. A browser gets a random `__Host-latch-csrf`
//! cookie (Secure, HttpOnly, SameSite=Strict) the first time a page with a
//! form is shown; each form carries the HMAC of that cookie under the
//! master key, and a POST is refused unless the two agree. A cross-site
//! page can neither read the cookie nor compute the HMAC, and SameSite
//! keeps the cookie off its requests anyway.

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite};

use crate::keys::{MasterKey, random_token};

const COOKIE: &str = "__Host-latch-csrf";
const PURPOSE: &[u8] = b"page csrf";

/// The browser's CSRF cookie for this answer: the one it sent, or a new
/// one (`Some` when the answer must set it).
pub struct Seed {
    value: String,
    new: bool,
}

impl Seed {
    pub fn of(req: &HttpRequest) -> Seed {
        match req.cookie(COOKIE) {
            Some(c) if c.value().len() >= 32 => Seed { value: c.value().to_string(), new: false },
            // A missing or odd cookie is replaced; a failing RNG leaves the
            // form unsubmittable rather than guessable.
            _ => Seed { value: random_token().unwrap_or_default(), new: true },
        }
    }

    /// The token the forms of this page carry.
    pub fn token(&self, key: &MasterKey) -> String {
        token_for(key, &self.value)
    }

    /// The cookie to set with the answer, when the browser had none.
    pub fn cookie(&self) -> Option<Cookie<'static>> {
        self.new.then(|| {
            Cookie::build(COOKIE, self.value.clone())
                .path("/")
                .secure(true)
                .http_only(true)
                .same_site(SameSite::Strict)
                .finish()
        })
    }
}

fn token_for(key: &MasterKey, cookie: &str) -> String {
    hex::encode(key.hmac(PURPOSE, cookie.as_bytes()))
}

/// Whether a POST's `csrf` field matches the browser's cookie.
pub fn valid(req: &HttpRequest, key: &MasterKey, field: &str) -> bool {
    let Some(cookie) = req.cookie(COOKIE) else { return false };
    let expected = token_for(key, cookie.value());
    aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), field.as_bytes()).is_ok()
}
