//! Password hashes made elsewhere, taken in by `latchctl users import` (or
//! `POST /v1/admin/users` with `password_hash`), so that a team moving its
//! accounts to latch does not make every person choose a new password:
//! bcrypt (`$2a$`, `$2b$`, `$2y$`: Rails, Laravel, Node, Go; and Django's
//! `bcrypt$…` and `bcrypt_sha256$…`), PBKDF2-SHA256 as Django
//! (`pbkdf2_sha256$…`) and Werkzeug/Flask (`pbkdf2:sha256:…`) write it,
//! Werkzeug's scrypt (`scrypt:…`, its default since 3.0), and argon2 PHC
//! strings (Django's `argon2$…` too). Such a hash is checked against the
//! password as typed (the systems that made it did not normalize) and,
//! once it matches, replaced by latch's own argon2id hash in the same
//! write as the login (`needs_rehash`).
//!
//! Every cost is bounded when the hash is taken in, not when it is
//! checked: a hash is verified by any login for its address, so one with
//! a cost of hours (or gigabytes) would be a way to stall the hashing pool.

use std::num::NonZeroU32;

use aws_lc_rs::{constant_time, digest, pbkdf2};
use base64::Engine as _;

/// The highest bcrypt cost taken in: 2^15 rounds, about 2 s of one core
/// here (the common costs are 10 to 12).
const BCRYPT_MAX_COST: u32 = 15;
/// The most PBKDF2 iterations taken in (Django 5.2 uses 1,000,000).
const PBKDF2_MAX_ITERATIONS: u32 = 5_000_000;
/// The fewest taken in: below this the hash is hardly one.
const PBKDF2_MIN_ITERATIONS: u32 = 1_000;
/// The most memory one check may take: 128 MiB (Werkzeug's scrypt takes
/// 32 MiB, Django's argon2 100 MiB, OWASP asks 19 to 46 MiB for argon2).
const MAX_MEMORY_KIB: u64 = 131_072;
const ARGON2_MAX_PASSES: u32 = 10;
const ARGON2_MAX_LANES: u32 = 8;
/// scrypt's parallelism runs one block after another here: each costs as
/// much again.
const SCRYPT_MAX_P: u32 = 4;

/// A hash of another system's, as recognised from its form.
enum Foreign<'a> {
    Bcrypt(&'a str),
    /// Django's `bcrypt_sha256`: bcrypt over the hex SHA-256 of the password.
    BcryptSha256(&'a str),
    /// Iterations, salt (its text's bytes), derived key.
    Pbkdf2Sha256 {
        iterations: NonZeroU32,
        salt: &'a str,
        key: Vec<u8>,
    },
    Scrypt {
        params: scrypt::Params,
        salt: &'a str,
        key: Vec<u8>,
    },
}

fn bcrypt_of(hash: &str) -> Result<&str, &'static str> {
    let parts: bcrypt::HashParts =
        hash.parse().map_err(|_| "a bcrypt hash is $2b$ (or $2a$, $2y$), a cost, then 53 characters")?;
    if !(hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$")) {
        return Err("only bcrypt versions 2a, 2b and 2y are taken ($2x$ hashes were made by a buggy crypt)");
    }
    if parts.get_cost() > BCRYPT_MAX_COST {
        return Err("a bcrypt cost above 15 would stall logins (each check takes seconds)");
    }
    Ok(hash)
}

fn iterations(text: &str) -> Result<NonZeroU32, &'static str> {
    let n: u32 = text.parse().map_err(|_| "the PBKDF2 iteration count is not a number")?;
    if !(PBKDF2_MIN_ITERATIONS..=PBKDF2_MAX_ITERATIONS).contains(&n) {
        return Err("PBKDF2 iterations must be 1,000 to 5,000,000");
    }
    NonZeroU32::new(n).ok_or("PBKDF2 iterations must be 1,000 to 5,000,000")
}

fn key_of(key: Vec<u8>) -> Result<Vec<u8>, &'static str> {
    if (16..=64).contains(&key.len()) { Ok(key) } else { Err("the derived key must be 16 to 64 bytes") }
}

/// `<cost>$<salt>$<key>`, as Django and Werkzeug end their hashes.
fn three<'a>(rest: &'a str, form: &'static str) -> Result<(&'a str, &'a str, &'a str), &'static str> {
    let mut parts = rest.split('$');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(cost), Some(salt), Some(key), None) if !salt.is_empty() => Ok((cost, salt, key)),
        _ => Err(form),
    }
}

/// Django: `pbkdf2_sha256$<iterations>$<salt>$<base64 key>`.
fn django_of(rest: &str) -> Result<Foreign<'_>, &'static str> {
    let (n, salt, key) = three(rest, "a Django hash is pbkdf2_sha256$<iterations>$<salt>$<base64 key>")?;
    let key = base64::engine::general_purpose::STANDARD.decode(key).map_err(|_| "the key is not base64")?;
    Ok(Foreign::Pbkdf2Sha256 { iterations: iterations(n)?, salt, key: key_of(key)? })
}

/// Werkzeug: `pbkdf2:sha256:<iterations>$<salt>$<hex key>`.
fn werkzeug_of(rest: &str) -> Result<Foreign<'_>, &'static str> {
    let (n, salt, key) = three(rest, "a Werkzeug hash is pbkdf2:sha256:<iterations>$<salt>$<hex key>")?;
    let key = hex::decode(key).map_err(|_| "the key is not hexadecimal")?;
    Ok(Foreign::Pbkdf2Sha256 { iterations: iterations(n)?, salt, key: key_of(key)? })
}

/// Werkzeug: `scrypt:<N>:<r>:<p>$<salt>$<hex key>`.
fn scrypt_of(rest: &str) -> Result<Foreign<'_>, &'static str> {
    const FORM: &str = "a Werkzeug scrypt hash is scrypt:<N>:<r>:<p>$<salt>$<hex key>";
    let (cost, salt, key) = three(rest, FORM)?;
    let numbers: Vec<u64> = cost.split(':').map(str::parse).collect::<Result<_, _>>().map_err(|_| FORM)?;
    let [n, r, p] = numbers[..] else { return Err(FORM) };
    let memory_kib = n.saturating_mul(r).saturating_mul(128) / 1024;
    if !n.is_power_of_two() || n < 2 || r == 0 || p == 0 || p > u64::from(SCRYPT_MAX_P) {
        return Err("scrypt needs N a power of two, r ≥ 1 and p of 1 to 4");
    }
    if memory_kib > MAX_MEMORY_KIB {
        return Err("scrypt parameters needing over 128 MiB a check would stall logins");
    }
    let log_n = u8::try_from(n.trailing_zeros()).map_err(|_| FORM)?;
    let (r, p) = (u32::try_from(r).map_err(|_| FORM)?, u32::try_from(p).map_err(|_| FORM)?);
    let params = scrypt::Params::new(log_n, r, p).map_err(|_| FORM)?;
    let key = hex::decode(key).map_err(|_| "the key is not hexadecimal")?;
    Ok(Foreign::Scrypt { params, salt, key: key_of(key)? })
}

fn foreign(hash: &str) -> Option<Result<Foreign<'_>, &'static str>> {
    if hash.starts_with("$2") {
        return Some(bcrypt_of(hash).map(Foreign::Bcrypt));
    }
    if let Some(rest) = hash.strip_prefix("bcrypt$") {
        return Some(bcrypt_of(rest).map(Foreign::Bcrypt));
    }
    if let Some(rest) = hash.strip_prefix("bcrypt_sha256$") {
        return Some(bcrypt_of(rest).map(Foreign::BcryptSha256));
    }
    if let Some(rest) = hash.strip_prefix("pbkdf2_sha256$") {
        return Some(django_of(rest));
    }
    if let Some(rest) = hash.strip_prefix("scrypt:") {
        return Some(scrypt_of(rest));
    }
    hash.strip_prefix("pbkdf2:sha256:").map(werkzeug_of)
}

/// The form of `hash` to store as an account's password hash, or why it
/// cannot be taken in. `peppered`: latch mixes a pepper into its own
/// hashes, which an argon2 hash from elsewhere was made without.
pub fn check(hash: &str, peppered: bool) -> Result<String, &'static str> {
    if let Some(found) = foreign(hash) {
        return found.map(|_| hash.to_string());
    }
    // Django writes its argon2 hashes as "argon2" and the PHC string.
    let phc = hash.strip_prefix("argon2").filter(|rest| rest.starts_with("$argon2")).unwrap_or(hash);
    if !phc.starts_with("$argon2") {
        return Err(
            "not a hash latch takes in: bcrypt ($2b$…), PBKDF2-SHA256 or scrypt as Django or Werkzeug \
             write them, or argon2 ($argon2id$…)",
        );
    }
    let stored = argon2_rust::decode_phc(phc).map_err(|_| "not a well-formed argon2 PHC string")?;
    let p = stored.params;
    if u64::from(p.memory_kib()) > MAX_MEMORY_KIB
        || p.passes() > ARGON2_MAX_PASSES
        || p.lanes() > ARGON2_MAX_LANES
    {
        return Err("argon2 parameters above m=131072, t=10, p=8 would stall logins");
    }
    if peppered {
        return Err("[passwords].pepper_file is set, and an argon2 hash made elsewhere has no pepper in it");
    }
    Ok(phc.to_string())
}

/// Checks `password` as typed against a foreign hash; `None` when `hash`
/// is not one (it is latch's own argon2 form, or nothing).
pub fn verify(password: &str, hash: &str) -> Option<bool> {
    let found = foreign(hash)?;
    Some(match found {
        Ok(Foreign::Bcrypt(h)) => bcrypt::verify(password.as_bytes(), h).unwrap_or(false),
        Ok(Foreign::BcryptSha256(h)) => {
            let sha = hex::encode(digest::digest(&digest::SHA256, password.as_bytes()));
            bcrypt::verify(sha.as_bytes(), h).unwrap_or(false)
        }
        Ok(Foreign::Pbkdf2Sha256 { iterations, salt, key }) => {
            let algorithm = pbkdf2::PBKDF2_HMAC_SHA256;
            // Constant-time comparison inside aws-lc-rs.
            pbkdf2::verify(algorithm, iterations, salt.as_bytes(), password.as_bytes(), &key).is_ok()
        }
        Ok(Foreign::Scrypt { params, salt, key }) => {
            let mut derived = vec![0u8; key.len()];
            let made = scrypt::scrypt(password.as_bytes(), salt.as_bytes(), &params, &mut derived).is_ok();
            made && constant_time::verify_slices_are_equal(&derived, &key).is_ok()
        }
        Err(_) => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Django's form, made here (the integration test takes hashes made
    /// by Python's hashlib and libxcrypt instead).
    fn django(password: &str, salt: &str, n: u32) -> String {
        let mut out = [0u8; 32];
        let n = NonZeroU32::new(n).unwrap();
        pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, n, salt.as_bytes(), password.as_bytes(), &mut out);
        format!("pbkdf2_sha256${n}${salt}${}", base64::engine::general_purpose::STANDARD.encode(out))
    }

    #[test]
    fn each_form_checks_the_password_as_typed() {
        let d = django("lètmein", "seasalt", 1000);
        assert_eq!(verify("lètmein", &d), Some(true));
        assert_eq!(verify("letmein", &d), Some(false));
        // Openwall's crypt_blowfish test vectors: the second is cut at 72
        // bytes, as every bcrypt does.
        let b = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
        assert_eq!(verify("U*U", b), Some(true));
        assert_eq!(verify("U*U*", b), Some(false));
        let long = "$2a$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui";
        let typed = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789chars after 72 are ignored";
        assert_eq!(verify(typed, long), Some(true));
        assert_eq!(verify("x", "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA"), None);
    }

    #[test]
    fn werkzeug_scrypt_and_django_bcrypt_sha256_check_out() {
        // Made by Python's hashlib.scrypt (as Werkzeug calls it, N lowered
        // to 2^14 for a quick test) and by libxcrypt over hashlib's SHA-256
        // hex (as Django's BCryptSHA256PasswordHasher does).
        let scrypt = "scrypt:16384:8:1$Zq3salt9$1db75c8ff3408a52fb25cfa6e5a24d567ce3af35b746f5a6722afb856ff07364\
                      97813dc9d9771e995b634d384fd8e596255c6f760fe2169c664e10f4cb626a46";
        assert_eq!(check(scrypt, false).as_deref(), Ok(scrypt));
        assert_eq!(verify("Flask-scrypt-77", scrypt), Some(true));
        assert_eq!(verify("Flask-scrypt-78", scrypt), Some(false));
        let django = "bcrypt_sha256$$2b$05$abcdefghijklmnopqrstuuAvq7nm0nbqX9yDz2vPblSjUwt09cSQ6";
        assert_eq!(verify("Django-bcrypt-5", django), Some(true));
        assert_eq!(verify("Django-bcrypt-6", django), Some(false));
        let big = "scrypt:1048576:8:1$salt$00112233445566778899aabbccddeeff";
        assert!(check(big, false).unwrap_err().contains("128 MiB"));
    }

    #[test]
    fn djangos_argon2_is_stored_as_its_phc_string() {
        let phc = "$argon2id$v=19$m=102400,t=2,p=8$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        assert_eq!(check(&format!("argon2{phc}"), false).as_deref(), Ok(phc));
    }

    #[test]
    fn costs_beyond_the_bounds_are_refused_when_taken_in() {
        assert!(check(&django("p", "s", 1000), false).is_ok());
        assert!(check(&django("p", "s", 999), false).unwrap_err().contains("1,000 to 5,000,000"));
        assert!(check("$2b$16$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", false).is_err());
        assert!(check("$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", false).is_ok());
        assert!(check("$2x$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", false).is_err());
        assert!(check("md5$abc$def", false).unwrap_err().contains("not a hash latch takes in"));
        let big = "$argon2id$v=19$m=262144,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        assert!(check(big, false).unwrap_err().contains("stall"));
        let fine = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        assert!(check(fine, false).is_ok());
        assert!(check(fine, true).unwrap_err().contains("pepper"));
    }
}
