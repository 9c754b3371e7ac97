//! The second factor, checked one way wherever a code is asked for (login's
//! second step, confirming an enrolment, turning TOTP off): TOTP secrets
//! sealed under the master key, the rule that only a step later than the
//! last accepted one counts, and recovery codes kept as HMACs. Every check
//! takes a connection inside the caller's write transaction, so two
//! requests carrying one code cannot both pass: the writer runs them one
//! after the other and the second sees the first one's step.

use rusqlite::{Connection, OptionalExtension, params};
use totp_rs::{Algorithm, Builder, Totp};

use crate::keys::{KeyError, MasterKey};
use crate::store::{StoreError, exec};

/// Associated data of a sealed TOTP secret: it opens for nothing else.
const SECRET_PURPOSE: &[u8] = b"totp secret";
/// The HMAC purpose stored recovery codes are keyed with.
const RECOVERY_PURPOSE: &[u8] = b"recovery code";
/// 160 bits, RFC 4226's recommended secret length.
const SECRET_BYTES: usize = 20;
/// RFC 6238's defaults, the ones every authenticator app reads: SHA-1,
/// 6 digits, 30-second steps, and one step of skew either way.
const DIGITS: u8 = 6;
const STEP_SECS: u64 = 30;
const SKEW_STEPS: u16 = 1;
pub const RECOVERY_CODE_COUNT: usize = 10;
/// Crockford's base32 (no I, L, O, U): a code copied from paper or read
/// aloud survives, and the look-alikes are mapped back on input.
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// 12 symbols of 5 bits: 60 bits per code, shown as three groups of four.
const RECOVERY_SYMBOLS: usize = 12;
// API.md: at least 50 bits per recovery code.
const _: () = assert!(RECOVERY_SYMBOLS * 5 >= 50);

#[derive(Debug, thiserror::Error)]
pub enum SecondFactorError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot make a TOTP URI for this account: {0}")]
    Totp(#[from] totp_rs::TotpError),
}

/// What a caller offers as its second factor.
pub enum Proof {
    Code(String),
    RecoveryCode(String),
}

impl Proof {
    /// Exactly one of the two request fields; `None` for both or neither.
    pub fn from_fields(code: Option<String>, recovery_code: Option<String>) -> Option<Proof> {
        match (code, recovery_code) {
            (Some(code), None) => Some(Proof::Code(code)),
            (None, Some(code)) => Some(Proof::RecoveryCode(code)),
            _ => None,
        }
    }

    /// The method's name in audit rows and API.md's `methods`.
    pub fn method(&self) -> &'static str {
        match self {
            Proof::Code(_) => "totp",
            Proof::RecoveryCode(_) => "recovery_code",
        }
    }
}

/// Which enrolment a code is checked against.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Enrolment {
    /// Enrolled, not yet confirmed: TOTP is not required at login.
    Pending,
    Active,
}

/// What a check found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Checked {
    Accepted,
    /// A wrong, replayed or malformed code, or a spent recovery code.
    Wrong,
    /// The user has no enrolment in the state asked for.
    NotEnrolled,
}

/// A fresh secret: sealed for the database, and what the person sees.
pub struct NewSecret {
    pub sealed: Vec<u8>,
    pub base32: String,
    pub otpauth_uri: String,
}

fn totp(secret: Vec<u8>) -> Builder {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_step_duration(STEP_SECS)
        .with_skew(SKEW_STEPS)
        .with_secret(secret.into_boxed_slice())
}

/// A new 160-bit secret for `account` (the email) under `issuer` (the
/// product name), with its `otpauth://` URI.
pub fn new_secret(key: &MasterKey, issuer: &str, account: &str) -> Result<NewSecret, SecondFactorError> {
    let mut secret = vec![0u8; SECRET_BYTES];
    aws_lc_rs::rand::fill(&mut secret).map_err(|_| KeyError::Random)?;
    let sealed = key.seal(SECRET_PURPOSE, &secret)?;
    // A colon separates issuer and account in the URI's label; neither
    // may hold one.
    let totp: Totp = totp(secret)
        .with_issuer(Some(issuer.replace(':', " ")))
        .with_account_name(account.replace(':', "_"))
        .build()?;
    Ok(NewSecret { sealed, base32: totp.secret().to_base32(), otpauth_uri: totp.to_url()? })
}

/// The user's enrolment, if any.
pub fn enrolment(c: &Connection, user_id: &str) -> Result<Option<Enrolment>, StoreError> {
    let confirmed: Option<bool> = c
        .query_row(
            "SELECT confirmed_at IS NOT NULL FROM totp_credentials WHERE user_id = ?1",
            params![user_id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(confirmed.map(|c| if c { Enrolment::Active } else { Enrolment::Pending }))
}

/// Stores a pending enrolment, replacing an unconfirmed one; false (and
/// nothing changed) when TOTP is already active.
pub fn store_pending(c: &Connection, user_id: &str, sealed: &[u8], now: i64) -> Result<bool, StoreError> {
    let changed = exec(
        c,
        "INSERT INTO totp_credentials (user_id, secret_sealed, confirmed_at, last_step, created_at) \
         VALUES (?1, ?2, NULL, 0, ?3) \
         ON CONFLICT (user_id) DO UPDATE SET secret_sealed = excluded.secret_sealed, last_step = 0, \
         created_at = excluded.created_at WHERE totp_credentials.confirmed_at IS NULL",
        params![user_id, sealed, now],
    )?;
    Ok(changed == 1)
}

/// Makes a pending enrolment active.
pub fn activate(c: &Connection, user_id: &str, now: i64) -> Result<(), StoreError> {
    exec(c, "UPDATE totp_credentials SET confirmed_at = ?2 WHERE user_id = ?1", params![user_id, now])?;
    Ok(())
}

/// Removes the user's TOTP, recovery codes and pending second steps.
pub fn remove(c: &Connection, user_id: &str) -> Result<(), StoreError> {
    exec(c, "DELETE FROM totp_credentials WHERE user_id = ?1", params![user_id])?;
    exec(c, "DELETE FROM recovery_codes WHERE user_id = ?1", params![user_id])?;
    exec(c, "DELETE FROM mfa_tokens WHERE user_id = ?1", params![user_id])?;
    Ok(())
}

/// Checks `proof` against the user's active second factor (a code, or a
/// recovery code that is then spent).
pub fn accept(
    c: &Connection,
    key: &MasterKey,
    user_id: &str,
    proof: &Proof,
    now: i64,
) -> Result<Checked, StoreError> {
    match proof {
        Proof::Code(code) => accept_code(c, key, user_id, code, Enrolment::Active, now),
        Proof::RecoveryCode(code) => {
            if enrolment(c, user_id)? != Some(Enrolment::Active) {
                return Ok(Checked::NotEnrolled);
            }
            spend_recovery_code(c, key, user_id, code)
        }
    }
}

/// Checks a TOTP code against the user's enrolment in state `want`: it must
/// match a step within the skew that is later than the last accepted one,
/// which then becomes the last accepted one.
pub fn accept_code(
    c: &Connection,
    key: &MasterKey,
    user_id: &str,
    code: &str,
    want: Enrolment,
    now: i64,
) -> Result<Checked, StoreError> {
    let row: Option<(Vec<u8>, bool, i64)> = c
        .query_row(
            "SELECT secret_sealed, confirmed_at IS NOT NULL, last_step FROM totp_credentials WHERE user_id = ?1",
            params![user_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((sealed, active, last_step)) = row else { return Ok(Checked::NotEnrolled) };
    if active != (want == Enrolment::Active) {
        return Ok(Checked::NotEnrolled);
    }
    let Some(secret) = key.open(SECRET_PURPOSE, &sealed) else {
        tracing::error!(user_id, "a stored TOTP secret does not open under the master key");
        return Ok(Checked::NotEnrolled);
    };
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let Ok(now) = u64::try_from(now) else { return Ok(Checked::Wrong) };
    let step = totp(secret).build_noncompliant().check(&code, now).and_then(|s| i64::try_from(s).ok());
    match step {
        Some(step) if step > last_step => {
            exec(c, "UPDATE totp_credentials SET last_step = ?2 WHERE user_id = ?1", params![user_id, step])?;
            Ok(Checked::Accepted)
        }
        _ => Ok(Checked::Wrong),
    }
}

/// Ten fresh recovery codes, `XXXX-XXXX-XXXX`, to be shown once.
pub fn new_recovery_codes() -> Result<Vec<String>, KeyError> {
    let mut codes = Vec::with_capacity(RECOVERY_CODE_COUNT);
    for _ in 0..RECOVERY_CODE_COUNT {
        let mut bytes = [0u8; RECOVERY_SYMBOLS];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| KeyError::Random)?;
        // 256 is a multiple of 32, so taking the low five bits is unbiased.
        let symbols: Vec<char> =
            bytes.iter().map(|b| char::from(RECOVERY_ALPHABET[usize::from(b & 31)])).collect();
        let groups: Vec<String> = symbols.chunks(4).map(|g| g.iter().collect()).collect();
        codes.push(groups.join("-"));
    }
    Ok(codes)
}

/// A typed recovery code in its canonical form: upper case, without
/// separators, look-alikes mapped; `None` if it cannot be one.
fn canonical(code: &str) -> Option<String> {
    let out: String = code
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\t'))
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        })
        .collect();
    let valid = out.len() == RECOVERY_SYMBOLS && out.bytes().all(|b| RECOVERY_ALPHABET.contains(&b));
    valid.then_some(out)
}

fn recovery_mac(key: &MasterKey, user_id: &str, canonical: &str) -> Vec<u8> {
    // The user id is in the MAC so a code row copied to another user is
    // worthless.
    key.hmac(RECOVERY_PURPOSE, format!("{user_id}\n{canonical}").as_bytes()).to_vec()
}

/// Replaces the user's recovery codes with `codes`.
pub fn store_recovery_codes(
    c: &Connection,
    key: &MasterKey,
    user_id: &str,
    codes: &[String],
    now: i64,
) -> Result<(), StoreError> {
    exec(c, "DELETE FROM recovery_codes WHERE user_id = ?1", params![user_id])?;
    for code in codes {
        let Some(canonical) = canonical(code) else { continue };
        exec(
            c,
            "INSERT INTO recovery_codes (user_id, code_mac, created_at) VALUES (?1, ?2, ?3)",
            params![user_id, recovery_mac(key, user_id, &canonical), now],
        )?;
    }
    Ok(())
}

/// Spends one recovery code: accepted once, wrong ever after.
fn spend_recovery_code(
    c: &Connection,
    key: &MasterKey,
    user_id: &str,
    code: &str,
) -> Result<Checked, StoreError> {
    let Some(canonical) = canonical(code) else { return Ok(Checked::Wrong) };
    let mac = recovery_mac(key, user_id, &canonical);
    // The lookup is by the MAC itself (an index probe), so no comparison of
    // secret bytes happens in Rust where its timing could leak.
    let spent =
        exec(c, "DELETE FROM recovery_codes WHERE user_id = ?1 AND code_mac = ?2", params![user_id, mac])?;
    Ok(if spent == 1 { Checked::Accepted } else { Checked::Wrong })
}

/// How many unspent recovery codes the user has.
pub fn recovery_codes_left(c: &Connection, user_id: &str) -> Result<i64, StoreError> {
    Ok(c.query_row("SELECT COUNT(*) FROM recovery_codes WHERE user_id = ?1", params![user_id], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_carry_sixty_bits_and_read_back_despite_look_alikes() {
        let codes = new_recovery_codes().unwrap();
        assert_eq!(codes.len(), RECOVERY_CODE_COUNT);
        for code in &codes {
            assert_eq!(code.len(), 14, "{code}");
            assert_eq!(canonical(code).unwrap().len(), RECOVERY_SYMBOLS);
        }
        assert_eq!(canonical("abcd-efgh-jk01").as_deref(), Some("ABCDEFGHJK01"));
        assert_eq!(canonical("o0il 2345 6789").as_deref(), Some("001123456789"));
        assert_eq!(canonical("ABCD-EFGH-JK0U"), None, "U is not in the alphabet");
        assert_eq!(canonical("ABCD-EFGH-JK0"), None);
    }

    #[test]
    fn a_new_secret_is_160_bits_in_an_uri_apps_read() {
        let key = MasterKey::for_tests(7);
        let s = new_secret(&key, "latch", "ann@example.com").unwrap();
        assert_eq!(s.base32.len(), 32, "160 bits in base32 without padding");
        assert!(
            s.otpauth_uri.starts_with("otpauth://totp/latch:ann%40example.com?secret="),
            "{}",
            s.otpauth_uri
        );
        assert!(s.otpauth_uri.contains("&issuer=latch"), "{}", s.otpauth_uri);
        assert_eq!(key.open(SECRET_PURPOSE, &s.sealed).map(|b| b.len()), Some(SECRET_BYTES));
    }
}
