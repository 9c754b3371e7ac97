//! Input rules for accounts: email syntax and normalization, the password
//! length policy (no composition rules), the optional breached-password
//! list, and the 1 KiB cap checked before any hashing.

use std::collections::HashSet;

use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};

use super::AccountError;
use crate::config::Config;

/// Any password field longer than this is refused before hashing.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Lookup key for accounts and limits: trimmed and lower-cased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A syntactically valid address (as the mailer will accept it), trimmed.
pub fn validate_email(email: &str) -> Result<String, AccountError> {
    let email = email.trim();
    if email.len() > 254 || email.parse::<lettre::Address>().is_err() {
        return Err(AccountError::InvalidEmail);
    }
    Ok(email.to_string())
}

pub fn reject_oversized(field: &'static str, value: &str) -> Result<(), AccountError> {
    if value.len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::TooLong { field });
    }
    Ok(())
}

/// SHA-1 digests of known-breached passwords (`[passwords].breached_list`:
/// one password or 40-hex SHA-1 per line).
#[derive(Default)]
pub struct BreachedList {
    sha1: HashSet<[u8; 20]>,
}

impl BreachedList {
    pub fn load(cfg: &Config) -> std::io::Result<BreachedList> {
        let path = cfg.passwords.breached_list.trim();
        if path.is_empty() {
            return Ok(BreachedList::default());
        }
        let text = std::fs::read_to_string(path)?;
        let mut sha1 = HashSet::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let hashed = (line.len() == 40).then(|| hex::decode(line).ok()).flatten();
            let entry = hashed
                .unwrap_or_else(|| digest(&SHA1_FOR_LEGACY_USE_ONLY, line.as_bytes()).as_ref().to_vec());
            if let Ok(arr) = <[u8; 20]>::try_from(entry.as_slice()) {
                sha1.insert(arr);
            }
        }
        tracing::info!(path, entries = sha1.len(), "breached-password list loaded");
        Ok(BreachedList { sha1 })
    }

    fn contains(&self, password: &str) -> bool {
        let d = digest(&SHA1_FOR_LEGACY_USE_ONLY, password.as_bytes());
        <[u8; 20]>::try_from(d.as_ref()).is_ok_and(|k| self.sha1.contains(&k))
    }
}

/// Length in characters within `[passwords]` bounds and not breached.
pub fn check_password(
    cfg: &Config,
    breached: &BreachedList,
    field: &'static str,
    password: &str,
) -> Result<(), AccountError> {
    reject_oversized(field, password)?;
    let chars = password.chars().count();
    let (min, max) = (cfg.passwords.min_length as usize, cfg.passwords.max_length as usize);
    if chars < min {
        return Err(AccountError::WeakPassword {
            field,
            reason: format!("must be at least {min} characters"),
        });
    }
    if chars > max {
        return Err(AccountError::WeakPassword {
            field,
            reason: format!("must be at most {max} characters"),
        });
    }
    if breached.contains(password) {
        return Err(AccountError::WeakPassword {
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
    }

    #[test]
    fn passwords_follow_length_and_breach_rules() {
        let cfg = Config::load(None).unwrap();
        let mut list = BreachedList::default();
        list.sha1.insert(
            <[u8; 20]>::try_from(digest(&SHA1_FOR_LEGACY_USE_ONLY, b"password1234").as_ref()).unwrap(),
        );
        assert!(check_password(&cfg, &list, "password", "correct horse battery").is_ok());
        assert!(matches!(
            check_password(&cfg, &list, "password", "short"),
            Err(AccountError::WeakPassword { .. })
        ));
        assert!(matches!(
            check_password(&cfg, &list, "password", "password1234"),
            Err(AccountError::WeakPassword { .. })
        ));
        let huge = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(matches!(check_password(&cfg, &list, "password", &huge), Err(AccountError::TooLong { .. })));
    }
}
