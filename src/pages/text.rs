//! Every sentence the page handlers put on a page, in one place so it can
//! be translated later (the templates in `templates/pages/` hold the rest).

pub const SIGN_IN: &str = "Sign in";
pub const LINK_INCOMPLETE: &str = "Link incomplete";
pub const LINK_INCOMPLETE_LINE: &str = "This link is incomplete. Ask for a new one below.";
pub const CONFIRM_ADDRESS: &str = "Confirm your email address";
pub const ADDRESS_CONFIRMED: &str = "Address confirmed";
pub const ADDRESS_CONFIRMED_LINE: &str = "Your email address is confirmed. You can sign in now.";
pub const ADDRESS_CHANGED: &str = "Address changed";
pub const ADDRESS_CHANGED_LINE: &str = "Your account uses this address now: sign in with it from now on.";
pub const ALREADY_CONFIRMED_LINE: &str = "Your email address is already confirmed. You can sign in.";
pub const LINK_DEAD: &str = "This link does not work";
pub const VERIFY_LINK_RULE: &str = "A link works once, for 24 hours. Ask for a new one below.";
pub const RESET_LINK_RULE: &str =
    "A link works once, for 30 minutes (an invitation's for 24 hours). Ask for a new one below.";
pub const LINK_USED: &str = "This link was already used";
pub const RESET_LINK_USED_LINE: &str = "It already set a new password for your account: sign in with that \
     password. If it was not you who chose it, ask for a new link with \"Forgot your password?\".";
pub const INVITATION_USED_LINE: &str = "It already set the password for your account: sign in with it.";
pub const CHECK_EMAIL: &str = "Check your email";
pub const NO_LINK_SENT: &str = "Could not send a link";
pub const CHOOSE_PASSWORD: &str = "Choose a new password";
pub const CHOOSE_FIRST_PASSWORD: &str = "Choose a password for your account";
pub const PASSWORD_SET: &str = "Password set";
pub const FIRST_PASSWORD_SET: &str = "Your password is set. You can sign in now.";
pub const PASSWORDS_DIFFER: &str = "The two passwords differ.";
pub const NEW_PASSWORD_SET: &str = "Your new password is set.";
pub const ALL_SIGNED_OUT: &str = "Every place you were signed in has been signed out.";
pub const PASSWORD_CHANGED: &str = "Password changed";
pub const FORGOT: &str = "Forgot your password?";
pub const FORGOT_INTRO: &str = "Enter your address and we will send a link to choose a new password.";
pub const RECOVERY_CODES: &str = "Your recovery codes";
pub const SET_UP_APP: &str = "Set up your authenticator app";
pub const CODE_MISMATCH: &str = "That code did not match";
pub const CODE_MISMATCH_LINE: &str = "Check that your phone's clock is right, then set the app up again.";
pub const BACK_TO_ACCOUNT: &str = "Back to your account";
pub const FORM_EXPIRED_TITLE: &str = "This form has expired";
pub const OPEN_FORM_AGAIN: &str = "Open the form again";
pub const FORM_EXPIRED: &str = "This form has expired or did not come from this site. Open the page again and \
                                send the form from there.";
pub const ENTER_CODE: &str = "Enter your code";
pub const TOTP_ALREADY_ON: &str = "Two-step verification is on";
pub const TOTP_ALREADY_ON_LINE: &str = "It was already turned on (the form was sent twice). If you did not \
     keep your recovery codes, make new ones on your account page.";
pub const TOTP_OFF: &str = "Two-step verification is off";
pub const TOTP_OFF_LINE: &str = "Signing in asks only for your password now, and your other sessions were signed out. \
     To use a new phone, set up the authenticator app again from your account page.";
pub const YOUR_ACCOUNT: &str = "Your account";
pub const NEW_PASSWORDS_DIFFER: &str = "The two new passwords differ.";
pub const PASSWORD_CHANGED_LINE: &str = "Password changed. Your other sessions were signed out.";
pub const NAME_SAVED: &str = "Your name is saved.";
pub const CONFIRM_DELETE: &str = "Tick the box to say you want the account deleted.";
pub const ACCOUNT_DELETED: &str = "Your account was deleted";
pub const ACCOUNT_DELETED_LINE: &str = "It can no longer sign in, and every place it was signed in has been \
     signed out. We sent a note to its address.";

/// The answer to a change of address: nothing changes until the link.
pub fn address_change_sent(email: &str) -> String {
    format!(
        "We sent a link to {email}. Your account moves to that address when you open it (within 24 hours); \
         until then it keeps this one."
    )
}

/// The answer to "send me a link", whether or not the address has an account.
pub fn link_on_its_way(email: &str) -> String {
    format!("If {email} has an account, a message with a new link is on its way. It may take a minute.")
}

/// What the forms call a field the API names (their `<label>`s), for a
/// refusal shown on a page; a field no form has keeps its name.
pub fn field_label(field: &str) -> &str {
    match field {
        "name" => "Your name",
        "email" => "Email address",
        "new_email" => "New email address",
        "password" => "Password",
        "current_password" => "Current password",
        "new_password" => "New password",
        "code" => "Code",
        other => other,
    }
}
