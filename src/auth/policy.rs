//! Input rules shared by every feature that takes credentials: email syntax
//! and normalization, the form a password is hashed in, the password length
//! policy (no composition rules), the optional breached-password list, and
//! the 1 KiB cap checked before any hashing.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::Path;

use arc_swap::ArcSwap;
use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use unicode_normalization::UnicodeNormalization;

use crate::config::{Commit, Config, Preparing, Reloadable};
use crate::http::problem::{self, FieldError, Kind, ToProblem};

/// An input that breaks the rules, named by its field.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{field}: {reason}")]
    WeakPassword { field: &'static str, reason: String },
    #[error("email: not a valid address")]
    InvalidEmail,
    #[error("email: {NON_ASCII_LOCAL}")]
    NonAsciiLocalPart,
    #[error("{field}: longer than 1 KiB")]
    TooLong { field: &'static str },
    #[error("{field}: {LONG_TEXT}")]
    TooManyCharacters { field: &'static str },
    #[error("{field}: {UNSHOWABLE}")]
    Unshowable { field: &'static str },
    /// Several fields of one form refused, told in one answer so that a
    /// person mends them all before sending it again.
    #[error("{}", problem::joined(.0))]
    Several(Vec<PolicyError>),
}

/// The most characters a name, device name or description may have.
const MAX_DISPLAY_CHARS: usize = 128;
const LONG_TEXT: &str = "longer than 128 characters";
const UNSHOWABLE: &str = "must not contain control characters or bidirectional overrides";
const NON_ASCII_LOCAL: &str =
    "letters beyond ASCII before the @ are not supported (many mail servers cannot deliver to them)";

impl PolicyError {
    /// The refusals among a form's fields, as one error: `Several` when
    /// more than one (call it with at least one).
    pub fn of_fields(found: impl IntoIterator<Item = Option<PolicyError>>) -> PolicyError {
        problem::of_fields(found, PolicyError::Several)
    }

    /// Why an address was refused, for a form whose field has another name.
    pub fn email_reason(&self) -> &'static str {
        match self {
            PolicyError::NonAsciiLocalPart => NON_ASCII_LOCAL,
            _ => "not a valid address",
        }
    }
}

impl ToProblem for PolicyError {
    fn kind(&self) -> Kind {
        match self {
            PolicyError::WeakPassword { .. } => Kind::WeakPassword,
            // 422 is for a password alone at fault; with others, the
            // request as a whole is invalid.
            PolicyError::Several(_)
            | PolicyError::InvalidEmail
            | PolicyError::NonAsciiLocalPart
            | PolicyError::TooLong { .. }
            | PolicyError::TooManyCharacters { .. }
            | PolicyError::Unshowable { .. } => Kind::InvalidRequest,
        }
    }

    fn detail(&self) -> Option<String> {
        Some(self.to_string())
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            PolicyError::WeakPassword { field, reason } => FieldError::one(field, reason),
            PolicyError::InvalidEmail | PolicyError::NonAsciiLocalPart => {
                FieldError::one("email", self.email_reason())
            }
            PolicyError::TooLong { field } => FieldError::one(field, "longer than 1 KiB"),
            PolicyError::TooManyCharacters { field } => FieldError::one(field, LONG_TEXT),
            PolicyError::Unshowable { field } => FieldError::one(field, UNSHOWABLE),
            PolicyError::Several(all) => all.iter().flat_map(PolicyError::field_errors).collect(),
        }
    }
}

/// Free text a person or an app gives about itself (a name, a device
/// name), cleaned the one way: trimmed, empty as none. Longer than 128
/// characters is refused, not cut: a cut name is one its owner never typed.
/// Control characters and bidirectional overrides are refused too: the
/// text is shown in latchctl's tables and on pages, where an escape
/// sequence in a self-chosen name would run in an administrator's terminal.
pub fn display_text(field: &'static str, text: Option<String>) -> Result<Option<String>, PolicyError> {
    let Some(text) = text else { return Ok(None) };
    let text = text.trim();
    if text.chars().any(is_unshowable) {
        return Err(PolicyError::Unshowable { field });
    }
    if text.chars().count() > MAX_DISPLAY_CHARS {
        return Err(PolicyError::TooManyCharacters { field });
    }
    Ok(Some(text.to_string()).filter(|t| !t.is_empty()))
}

/// C0 and C1 controls (ESC starts a terminal's escape sequences), and the
/// bidirectional embeddings, overrides and isolates that reorder what
/// follows them on screen.
pub fn is_unshowable(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Any password field longer than this is refused before hashing.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The one key for an address everywhere: lookup, uniqueness, the mail cap
/// and the limits. Trimmed, an internationalized domain in its ASCII form
/// (`ascii_address`), ASCII letters lower-cased, nothing else changed.
///
/// Security: Unicode case folding maps other characters onto ASCII ones
/// (KELVIN SIGN lower-cases to `k`), so two different addresses would share
/// one account key while mail went to whichever was typed. So the key is
/// always the very address mail goes to: stored addresses are ASCII
/// (`validate_email`), and a lookup with anything else finds nothing.
pub fn normalize_email(email: &str) -> String {
    let email = email.trim();
    ascii_address(email).unwrap_or_else(|| email.to_string()).to_ascii_lowercase()
}

/// `email` with a domain of non-ASCII letters turned into its ASCII form
/// by UTS #46 (`ana@Bücher.example` → `ana@xn--bcher-kva.example`), which
/// also maps its look-alike spellings (upper case, decomposed accents,
/// full-width letters) onto one; an ASCII domain is left as it is. `None`
/// when there is no `@`, the part before it is not ASCII, or the domain is
/// no valid host name.
fn ascii_address(email: &str) -> Option<String> {
    let (local, domain) = email.rsplit_once('@')?;
    if !local.is_ascii() {
        return None;
    }
    if domain.is_ascii() {
        return Some(email.to_string());
    }
    let domain = idna::domain_to_ascii_strict(domain).ok()?;
    Some(format!("{local}@{domain}"))
}

/// The form a password is measured and hashed in: Unicode NFKC, as NIST SP
/// 800-63B asks of a verifier that takes Unicode. One password typed on two
/// systems — `é` as one code point or as `e` and a combining accent, a
/// full-width letter from an East Asian input method — is then one
/// password. Borrowed when the text is already in that form (all ASCII is).
pub fn password_form(password: &str) -> Cow<'_, str> {
    if unicode_normalization::is_nfkc(password) {
        Cow::Borrowed(password)
    } else {
        Cow::Owned(password.nfkc().collect())
    }
}

/// A syntactically valid address as the mailer will accept it, trimmed, in
/// ASCII: an internationalized domain becomes its ASCII form, and letters
/// beyond ASCII before the @ (which need SMTPUTF8 of every mail server on
/// the way) are refused. See `normalize_email`.
pub fn validate_email(email: &str) -> Result<String, PolicyError> {
    let email = email.trim();
    if email.rsplit_once('@').is_some_and(|(local, _)| !local.is_ascii()) {
        return Err(PolicyError::NonAsciiLocalPart);
    }
    let email = ascii_address(email).ok_or(PolicyError::InvalidEmail)?;
    // Both of lettre's parsers: a bare address (no `Name <…>`) that a
    // message can also be addressed to — the mailbox parser refuses some
    // the address parser takes (`a@[127.0.0.1]`), and mail is built later.
    let mailable =
        email.parse::<lettre::Address>().is_ok() && email.parse::<lettre::message::Mailbox>().is_ok();
    if email.len() > 254 || !email.is_ascii() || !mailable {
        return Err(PolicyError::InvalidEmail);
    }
    Ok(email)
}

pub fn reject_oversized(field: &'static str, value: &str) -> Result<(), PolicyError> {
    if value.len() > MAX_PASSWORD_BYTES {
        return Err(PolicyError::TooLong { field });
    }
    Ok(())
}

/// SHA-1 digests of known-breached passwords (`[passwords].breached_list`:
/// one password or 40-hex SHA-1 per line). A reload swaps in a fresh read
/// of the file.
#[derive(Default)]
pub struct BreachedList {
    sha1: ArcSwap<HashSet<[u8; 20]>>,
}

/// The digests of one read of a breached-password file.
pub type BreachedEntries = HashSet<[u8; 20]>;

impl BreachedList {
    /// Reads `[passwords].breached_list`; empty when none is configured.
    pub fn load(path: Option<&Path>) -> std::io::Result<BreachedList> {
        Ok(BreachedList { sha1: ArcSwap::from_pointee(Self::read(path)?) })
    }

    /// Reads the file without putting it in force.
    pub fn read(path: Option<&Path>) -> std::io::Result<BreachedEntries> {
        let Some(path) = path else { return Ok(HashSet::new()) };
        let text = std::fs::read_to_string(path)?;
        let mut sha1 = HashSet::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(hashed) = (line.len() == 40).then(|| hex::decode(line).ok()).flatten() {
                sha1.extend(<[u8; 20]>::try_from(hashed.as_slice()));
                continue;
            }
            // A password listed as text is refused in the form it is
            // written in and in the form a password is checked in.
            sha1.insert(sha1_of(line));
            sha1.insert(sha1_of(&password_form(line)));
        }
        tracing::info!(path = %path.display(), entries = sha1.len(), "breached-password list loaded");
        Ok(sha1)
    }

    pub fn replace(&self, entries: BreachedEntries) {
        self.sha1.store(std::sync::Arc::new(entries));
    }

    fn contains(&self, password: &str) -> bool {
        self.sha1.load().contains(&sha1_of(password))
    }
}

fn sha1_of(text: &str) -> [u8; 20] {
    let mut out = [0u8; 20];
    out.copy_from_slice(digest(&SHA1_FOR_LEGACY_USE_ONLY, text.as_bytes()).as_ref());
    out
}

/// A reload re-reads `[passwords].breached_list`.
impl Reloadable for std::sync::Arc<BreachedList> {
    fn prepare<'a>(&'a self, next: &'a Config) -> Preparing<'a> {
        Box::pin(async move {
            let path = next.passwords.breached_list.as_deref();
            let entries = BreachedList::read(path).map_err(|e| {
                let shown = path.map_or_else(String::new, |p| p.display().to_string());
                format!("passwords.breached_list {shown}: {e}")
            })?;
            let list = std::sync::Arc::clone(self);
            Ok(Box::new(move || list.replace(entries)) as Commit)
        })
    }
}

/// Length in characters (of `password_form`) within `[passwords]` bounds,
/// and not breached in either form.
pub fn check_password(
    cfg: &Config,
    breached: &BreachedList,
    field: &'static str,
    password: &str,
) -> Result<(), PolicyError> {
    reject_oversized(field, password)?;
    let form = password_form(password);
    let chars = form.chars().count();
    let (min, max) = (cfg.passwords.min_length as usize, cfg.passwords.max_length as usize);
    if chars < min {
        return Err(PolicyError::WeakPassword {
            field,
            reason: format!("must be at least {min} characters"),
        });
    }
    if chars > max {
        return Err(PolicyError::WeakPassword { field, reason: format!("must be at most {max} characters") });
    }
    if breached.contains(password) || breached.contains(&form) {
        return Err(PolicyError::WeakPassword {
            field,
            reason: "appears in a list of breached passwords; choose another".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_normalize_and_validate() {
        assert_eq!(normalize_email("  Alice@Example.TEST "), "alice@example.test");
        assert!(validate_email("alice@example.test").is_ok());
        assert!(validate_email("not an email").is_err());
        assert!(validate_email(&format!("{}@x.test", "a".repeat(250))).is_err());
        assert!(validate_email("\u{212A}ate@example.test").is_err(), "KELVIN SIGN is not k");
        assert_eq!(normalize_email("\u{212A}ATE@x.test"), "\u{212A}ate@x.test", "never folded onto ASCII");
    }

    #[test]
    fn an_internationalized_domain_is_kept_in_its_ascii_form() {
        let ascii = "Ana@xn--bcher-kva.example";
        assert_eq!(validate_email(" Ana@Bücher.example ").unwrap(), ascii);
        assert_eq!(validate_email(ascii).unwrap(), ascii, "already ASCII: as typed");
        // Decomposed ü, full-width letters and upper case are one domain.
        for typed in ["ana@bu\u{308}cher.example", "ana@ＢÜＣＨＥＲ.example", "ANA@xn--bcher-kva.EXAMPLE"]
        {
            assert_eq!(normalize_email(typed), "ana@xn--bcher-kva.example", "{typed}");
        }
        assert!(matches!(validate_email("jos\u{e9}@example.test"), Err(PolicyError::NonAsciiLocalPart)));
        assert!(matches!(validate_email("ana@b\u{fc}cher_x.example"), Err(PolicyError::InvalidEmail)));
        assert!(matches!(validate_email("ana@\u{202E}cher.example"), Err(PolicyError::InvalidEmail)));
    }

    #[test]
    fn passwords_follow_length_and_breach_rules() {
        let cfg = Config::load(None).unwrap();
        let list = BreachedList::default();
        list.replace(HashSet::from([<[u8; 20]>::try_from(
            digest(&SHA1_FOR_LEGACY_USE_ONLY, b"password1234").as_ref(),
        )
        .unwrap()]));
        assert!(check_password(&cfg, &list, "password", "correct horse battery").is_ok());
        assert!(matches!(
            check_password(&cfg, &list, "password", "short"),
            Err(PolicyError::WeakPassword { .. })
        ));
        assert!(matches!(
            check_password(&cfg, &list, "password", "password1234"),
            Err(PolicyError::WeakPassword { .. })
        ));
        let huge = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(matches!(check_password(&cfg, &list, "password", &huge), Err(PolicyError::TooLong { .. })));
    }

    #[test]
    fn display_text_is_trimmed_bounded_and_free_of_controls() {
        let shown = |t: &str| display_text("name", Some(t.into()));
        assert_eq!(shown("  Ann Lee \n").unwrap().as_deref(), Some("Ann Lee"));
        assert_eq!(shown("   ").unwrap(), None);
        assert_eq!(display_text("name", None).unwrap(), None);
        assert_eq!(shown(&format!(" {} ", "é".repeat(128))).unwrap().unwrap().chars().count(), 128);
        assert!(matches!(shown(&"é".repeat(129)), Err(PolicyError::TooManyCharacters { field: "name" })));
        for bad in ["a\u{1b}[2J", "a\tb", "a\u{85}b", "a\u{202e}b", "a\u{2066}b"] {
            assert!(matches!(shown(bad), Err(PolicyError::Unshowable { field: "name" })), "{bad:?}");
        }
        assert!(shown("Zoë \u{200f}عربي").is_ok(), "letters of any script, and marks, are fine");
    }

    /// Lengths count the normal form's characters, and a breached password
    /// listed as text is refused however its accents were typed.
    #[test]
    fn passwords_are_measured_and_matched_in_their_normal_form() {
        let cfg = Config::load(None).unwrap();
        let list = BreachedList::default();
        assert_eq!(password_form("cafe\u{301}"), "caf\u{e9}");
        assert!(matches!(password_form("plain ascii"), Cow::Borrowed(_)));
        // Eleven code points, twelve characters once the ligature is two.
        let ligature = "\u{fb01}nal answer";
        assert_eq!(ligature.chars().count(), 11);
        assert!(check_password(&cfg, &list, "password", ligature).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("breached.txt");
        std::fs::write(&path, "cre\u{300}me bru\u{302}le\u{301}e\n").unwrap();
        list.replace(BreachedList::read(Some(&path)).unwrap());
        for typed in ["cr\u{e8}me br\u{fb}l\u{e9}e", "cre\u{300}me bru\u{302}le\u{301}e"] {
            let refused = check_password(&cfg, &list, "password", typed).unwrap_err().to_string();
            assert!(refused.contains("breached"), "{typed:?}: {refused}");
        }
    }
}
