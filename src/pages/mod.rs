//! Pages for people: the links in latch's emails (confirm an address, set
//! a new password) and a person's own account in a browser (sign in with
//! the second step, sessions, password, TOTP). Server-rendered with askama
//! templates checked at compile time, no JavaScript, one stylesheet served
//! by latchd, a strict CSP. Every form carries a CSRF token; the browser's
//! session is a `__Host-` cookie bound to a latch session.
//!
//! The pages do what the API calls they mirror do — same limits, throttling
//! and audit rows — through `Actions`, which the daemon implements over the
//! other features' services (a feature never imports another).

mod account;
mod browser;
mod csrf;
mod links;
mod page;
mod render;
mod text;
mod totp;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::auth::UserSession;
use crate::config::Config;
use crate::http::{ApiError, ClientInfo, Routes};
use crate::keys::MasterKey;
use crate::store::Store;

use page::Page;

/// A boxed answer of an action: `Actions` is used as a trait object.
pub type Answer<'a, T> = Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send + 'a>>;

/// What a correct password got.
pub enum SignIn {
    /// A new latch session.
    Session { session_id: String, user_id: String },
    /// TOTP is on: the second step's token.
    SecondStep { mfa_token: String },
}

/// The account as its page shows it.
pub struct AccountView {
    pub name: Option<String>,
    pub email: String,
    pub email_verified: bool,
    /// The address a change asked for waits to be confirmed at.
    pub pending_email: Option<String>,
    pub totp: bool,
    /// Unused recovery codes, while TOTP is on: each sign-in with one
    /// spends it, and the person should make new ones before none is left.
    pub recovery_codes_left: i64,
}

/// One live session on the account page.
pub struct SessionRow {
    pub id: String,
    pub device: String,
    pub ip: String,
    pub last_seen_at: String,
    pub current: bool,
}

/// A TOTP enrolment to show.
pub struct Enrolment {
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

/// What a confirmation link is when it is opened.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ConfirmationLink {
    /// It works: the Confirm button.
    Live,
    /// It was used (or expired) and the address is confirmed: say so.
    AlreadyConfirmed,
    /// It does not work: ask for a new one.
    Dead,
}

/// What pressing Confirm on a confirmation link did.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Confirmed {
    /// The account's address is confirmed.
    Address,
    /// The account moved to the address the link was mailed to.
    NewAddress,
}

/// What a password link was mailed as.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ResetLink {
    /// "Forgot password": the person has a password and chooses a new one.
    Reset,
    /// An administrator's invitation: the account's first password.
    Invitation,
}

/// What a password link is when it is opened or its form is sent.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordLink {
    /// It works: the new-password form, for the account at this address.
    Live(ResetLink, String),
    /// Its own use set a password (opened again, or the form sent twice):
    /// say so, and to sign in.
    Used(ResetLink),
    /// It does not work: ask for a new one.
    Dead,
}

/// The API calls the pages mirror, as the daemon wires them to the
/// features' services.
pub trait Actions: Send + Sync {
    /// What the confirmation link `token` is now. Spends nothing.
    fn confirmation_link<'a>(&'a self, token: &'a str) -> Answer<'a, ConfirmationLink>;
    fn verify_email<'a>(&'a self, token: &'a str, client: &'a ClientInfo) -> Answer<'a, Confirmed>;
    fn resend_verification<'a>(
        &'a self,
        cfg: &'a Arc<Config>,
        email: &'a str,
        client: &'a ClientInfo,
    ) -> Answer<'a, ()>;
    fn forgot_password<'a>(
        &'a self,
        cfg: &'a Arc<Config>,
        email: &'a str,
        client: &'a ClientInfo,
    ) -> Answer<'a, ()>;
    /// What the password link `token` is now. Spends nothing.
    fn reset_link<'a>(&'a self, token: &'a str) -> Answer<'a, PasswordLink>;
    fn reset_password<'a>(
        &'a self,
        cfg: &'a Config,
        token: &'a str,
        new_password: String,
        client: &'a ClientInfo,
    ) -> Answer<'a, ()>;
    fn sign_in<'a>(
        &'a self,
        cfg: &'a Config,
        email: String,
        password: String,
        client: &'a ClientInfo,
    ) -> Answer<'a, SignIn>;
    fn second_step<'a>(
        &'a self,
        cfg: &'a Config,
        mfa_token: String,
        code: String,
        client: &'a ClientInfo,
    ) -> Answer<'a, SignIn>;
    fn account<'a>(&'a self, user: &'a UserSession) -> Answer<'a, AccountView>;
    fn sessions<'a>(&'a self, user: &'a UserSession) -> Answer<'a, Vec<SessionRow>>;
    fn revoke_session<'a>(
        &'a self,
        user: &'a UserSession,
        id: String,
        client: &'a ClientInfo,
    ) -> Answer<'a, ()>;
    fn sign_out<'a>(
        &'a self,
        user: &'a UserSession,
        everywhere: bool,
        client: &'a ClientInfo,
    ) -> Answer<'a, ()>;
    fn change_password<'a>(
        &'a self,
        cfg: &'a Config,
        user: &'a UserSession,
        current: String,
        new_password: String,
        client: &'a ClientInfo,
    ) -> Answer<'a, ()>;
    /// Gives the account another display name (`None`: none).
    fn rename<'a>(
        &'a self,
        user: &'a UserSession,
        name: Option<String>,
        client: &'a ClientInfo,
    ) -> Answer<'a, ()>;
    /// Deletes the account, as `DELETE /v1/auth/me`.
    fn delete_account<'a>(
        &'a self,
        cfg: &'a Config,
        user: &'a UserSession,
        password: String,
        client: &'a ClientInfo,
    ) -> Answer<'a, ()>;
    /// Mails `new_email` the link that moves the account there.
    fn change_email<'a>(
        &'a self,
        cfg: &'a Config,
        user: &'a UserSession,
        password: String,
        new_email: &'a str,
        client: &'a ClientInfo,
    ) -> Answer<'a, ()>;
    fn enrol_totp<'a>(
        &'a self,
        cfg: &'a Config,
        user: &'a UserSession,
        client: &'a ClientInfo,
    ) -> Answer<'a, Enrolment>;
    fn confirm_totp<'a>(
        &'a self,
        cfg: &'a Config,
        user: &'a UserSession,
        code: String,
        client: &'a ClientInfo,
    ) -> Answer<'a, Vec<String>>;
    fn new_recovery_codes<'a>(
        &'a self,
        cfg: &'a Config,
        user: &'a UserSession,
        password: String,
        client: &'a ClientInfo,
    ) -> Answer<'a, Vec<String>>;
    /// Turns TOTP off with the password and a code (or a recovery code).
    fn turn_off_totp<'a>(
        &'a self,
        cfg: &'a Config,
        user: &'a UserSession,
        password: String,
        code: String,
        client: &'a ClientInfo,
    ) -> Answer<'a, ()>;
}

/// What the page handlers use, built once at start.
pub struct Deps {
    pub store: Store,
    pub key: MasterKey,
    pub actions: Arc<dyn Actions>,
}

pub fn routes(r: &mut Routes) {
    links::routes(r);
    account::routes(r);
    totp::routes(r);
    r.add(render::__path_stylesheet, render::stylesheet);
}
