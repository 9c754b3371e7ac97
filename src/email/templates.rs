//! The messages latch sends. Links are built from `[email].verify_url` and
//! `[email].reset_url`; the one-time token is the `{token}` placeholder.

use crate::config::Config;

pub enum Template {
    /// Confirms a new account's address.
    VerifyEmail { token: String },
    /// Someone tried to register an address that already has an account.
    AlreadyRegistered,
    /// A password-reset link.
    PasswordReset { token: String },
    /// An administrator made the account without a password: a reset link
    /// (living `hours`) to choose the first one.
    Invitation { token: String, hours: i64 },
    /// Someone signed in from a network this account was not used from.
    NewSignIn { ip: String, device: String, at: String },
    /// An administrator turned off the account's second factor.
    SecondFactorRemoved,
    /// The password was changed or reset: if the owner did not, they learn
    /// it and can take the account back.
    PasswordChanged { ip: String, at: String },
    /// The person changed their second factor themselves.
    SecondFactorChanged { change: SecondFactorChange, ip: String, at: String },
    /// To the old address: an administrator moved the account to another.
    AddressChanged { new_address: String },
    /// To the new address an administrator gave an account: confirm it.
    ConfirmNewAddress { token: String },
    /// To the address a person asked to move their account to: the link
    /// that makes the change.
    ConfirmAddressChange { token: String },
    /// To the account's address: someone signed in asked to move it.
    AddressChangeAsked { new_address: String, ip: String, at: String },
    /// The account was deleted (by its owner's password): if the owner did
    /// not, they learn it while the audit rows can still tell who did.
    AccountDeleted { ip: String, at: String },
    /// A recovery code signed in: the person without their phone, or
    /// someone holding their codes. `left` unused codes remain.
    RecoveryCodeUsed { ip: String, at: String, left: i64 },
}

/// What a person did to their second factor.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SecondFactorChange {
    TurnedOn,
    TurnedOff,
    /// New recovery codes; the old ones stopped working.
    NewRecoveryCodes,
}

impl SecondFactorChange {
    fn kind(self) -> &'static str {
        match self {
            SecondFactorChange::TurnedOn => "second_factor_on",
            SecondFactorChange::TurnedOff => "second_factor_off",
            SecondFactorChange::NewRecoveryCodes => "recovery_codes_renewed",
        }
    }

    fn subject(self) -> &'static str {
        match self {
            SecondFactorChange::TurnedOn => "Two-step verification was turned on",
            SecondFactorChange::TurnedOff => "Two-step verification was turned off",
            SecondFactorChange::NewRecoveryCodes => "New recovery codes were made",
        }
    }

    fn what_happened(self) -> &'static str {
        match self {
            SecondFactorChange::TurnedOn => "Two-step verification was just turned on for your account",
            SecondFactorChange::TurnedOff => "Two-step verification was just turned off for your account",
            SecondFactorChange::NewRecoveryCodes => {
                "New recovery codes were just made for your account (the old ones no longer work)"
            }
        }
    }
}

impl Template {
    /// Whether anyone may make latch send this (by naming the address;
    /// any account holder may name a new address), rather than a change to
    /// the account itself.
    pub fn anyone_can_ask(&self) -> bool {
        matches!(
            self,
            Template::VerifyEmail { .. }
                | Template::AlreadyRegistered
                | Template::PasswordReset { .. }
                | Template::ConfirmAddressChange { .. }
        )
    }

    /// The token of the link this message carries, if it carries one.
    pub fn link_token(&self) -> Option<&str> {
        match self {
            Template::VerifyEmail { token }
            | Template::PasswordReset { token }
            | Template::Invitation { token, .. }
            | Template::ConfirmNewAddress { token }
            | Template::ConfirmAddressChange { token } => Some(token),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Template::VerifyEmail { .. } => "verify_email",
            Template::AlreadyRegistered => "already_registered",
            Template::PasswordReset { .. } => "password_reset",
            Template::Invitation { .. } => "invitation",
            Template::NewSignIn { .. } => "new_sign_in",
            Template::SecondFactorRemoved => "second_factor_removed",
            Template::PasswordChanged { .. } => "password_changed",
            Template::SecondFactorChanged { change, .. } => change.kind(),
            Template::AddressChanged { .. } => "address_changed",
            Template::ConfirmNewAddress { .. } => "confirm_new_address",
            Template::ConfirmAddressChange { .. } => "confirm_address_change",
            Template::AddressChangeAsked { .. } => "address_change_asked",
            Template::RecoveryCodeUsed { .. } => "recovery_code_used",
            Template::AccountDeleted { .. } => "account_deleted",
        }
    }

    pub fn subject(&self) -> &'static str {
        match self {
            Template::VerifyEmail { .. } => "Confirm your email address",
            Template::AlreadyRegistered => "Someone tried to sign up with your address",
            Template::PasswordReset { .. } => "Reset your password",
            Template::Invitation { .. } => "Choose a password for your new account",
            Template::NewSignIn { .. } => "New sign-in to your account",
            Template::SecondFactorRemoved => "Two-step verification was turned off",
            Template::PasswordChanged { .. } => "Your password was changed",
            Template::SecondFactorChanged { change, .. } => change.subject(),
            Template::AddressChanged { .. } => "Your account has a new email address",
            Template::ConfirmNewAddress { .. } => "Confirm your new email address",
            Template::ConfirmAddressChange { .. } => "Confirm your new email address",
            Template::AddressChangeAsked { .. } => "A change of your account's email address was asked for",
            Template::RecoveryCodeUsed { .. } => "A recovery code was used to sign in",
            Template::AccountDeleted { .. } => "Your account was deleted",
        }
    }

    /// The text, signed with `[pages].product_name` so the person knows
    /// which service wrote.
    pub fn body(&self, cfg: &Config) -> String {
        format!("{}\n-- \n{}\n", self.text(cfg), cfg.pages.product_name)
    }

    fn text(&self, cfg: &Config) -> String {
        match self {
            Template::VerifyEmail { token } => format!(
                "Welcome!\n\nConfirm your email address by opening this link within 24 hours:\n\n{}\n\n\
                 If you did not sign up, ignore this message.\n",
                cfg.email.verify_url.replace("{token}", token)
            ),
            Template::AlreadyRegistered => "Someone (perhaps you) tried to create an account with this address, \
                 or to move another account to it, but it already has one.\n\nIf you forgot your password, use \
                 \"Forgot password\" to reset it. If this was not you, you can ignore this message.\n"
                .to_string(),
            Template::PasswordReset { token } => format!(
                "A password reset was requested for your account.\n\nOpen this link within 30 minutes to \
                 choose a new password:\n\n{}\n\nIf you did not ask for this, ignore this message; your \
                 password stays as it is.\n",
                cfg.email.reset_url.replace("{token}", token)
            ),
            Template::Invitation { token, hours } => format!(
                "An administrator made an account for you with this address.\n\nOpen this link within \
                 {hours} hours to choose your password:\n\n{}\n\nIf it has stopped working, ask for a new \
                 one with \"Forgot password\" at sign-in. If you did not expect this, ignore this message: \
                 nobody can sign in to the account until a password is chosen.\n",
                cfg.email.reset_url.replace("{token}", token)
            ),
            Template::NewSignIn { ip, device, at } => format!(
                "Your account was just signed in to from an address it has not been used from before:\n\n\
                 address: {ip}\ndevice: {device}\ntime: {at}\n\nIf this was you, nothing needs doing. If not, \
                 change your password now: every other session is signed out when you do.\n"
            ),
            Template::SecondFactorRemoved => "An administrator turned off two-step verification for your \
                 account: its authenticator app and recovery codes no longer work, and every session was \
                 signed out. Signing in now needs only your password; you can set up two-step verification \
                 again from your account.\n\nIf you did not ask for this, tell your administrator and change \
                 your password now.\n"
                .to_string(),
            Template::PasswordChanged { ip, at } => format!(
                "The password of your account was just changed:\n\naddress: {ip}\ntime: {at}\n\nEvery \
                 other session was signed out. If this was you, nothing needs doing. If not, choose a new \
                 password now with \"Forgot password\" (that signs everyone out again) and tell your \
                 administrator.\n"
            ),
            Template::SecondFactorChanged { change, ip, at } => format!(
                "{}:\n\naddress: {ip}\ntime: {at}\n\nIf this was you, nothing needs doing. If not, someone \
                 else is signed in to your account: choose a new password now with \"Forgot password\" (that \
                 signs everyone out) and tell your administrator.\n",
                change.what_happened()
            ),
            Template::AddressChanged { new_address } => format!(
                "An administrator changed the address your account signs in with from this one to \
                 {new_address}. Messages about the account go there from now on, and links mailed here \
                 earlier no longer work.\n\nIf you did not ask for this, tell your administrator.\n"
            ),
            Template::ConfirmNewAddress { token } => format!(
                "An administrator gave your account this address. Confirm it by opening this link within \
                 24 hours:\n\n{}\n\nIf you do not know this account, ignore this message.\n",
                cfg.email.verify_url.replace("{token}", token)
            ),
            Template::ConfirmAddressChange { token } => format!(
                "You asked to move your account to this address. Confirm it by opening this link within 24 \
                 hours:\n\n{}\n\nUntil then your account keeps its old address. If you did not ask for this, \
                 ignore this message: nothing changes.\n",
                cfg.email.verify_url.replace("{token}", token)
            ),
            Template::AddressChangeAsked { new_address, ip, at } => format!(
                "Someone signed in to your account asked to change its email address from this one to \
                 {new_address}:\n\naddress: {ip}\ntime: {at}\n\nThe change happens only when the link \
                 mailed to {new_address} is opened. If this was you, nothing needs doing. If not, change your \
                 password now (\"Forgot password\" works from here): that cancels the change and signs \
                 everyone else out; then tell your administrator.\n"
            ),
            Template::AccountDeleted { ip, at } => format!(
                "Your account was just deleted, with its password:\n\naddress: {ip}\ntime: {at}\n\nIts \
                 sessions ended and it can no longer sign in. If this was you, nothing needs doing. If not, \
                 tell your administrator now: the record of who did it is kept.\n"
            ),
            Template::RecoveryCodeUsed { ip, at, left } => format!(
                "Your account was just signed in to with one of its recovery codes, instead of a code from \
                 your authenticator app:\n\naddress: {ip}\ntime: {at}\nrecovery codes left: {left}\n\nIf this \
                 was you, make new recovery codes on your account page when few are left. If not, someone has \
                 your password and your codes: choose a new password now with \"Forgot password\" (that signs \
                 everyone out), make new recovery codes, and tell your administrator.\n"
            ),
        }
    }
}
