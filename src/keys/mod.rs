//! The master key: 256 random bits in `state_dir/keys/master.key` (or
//! `[server].key_file`), created on first start. It encrypts and keys the
//! secrets other features keep. The database stores a check value (an HMAC of
//! a fixed label), so a database opened with the wrong key stops the start
//! instead of silently failing to decrypt later.

use std::fs;
use std::path::{Path, PathBuf};

use aws_lc_rs::{aead, constant_time, hmac, rand};
use rusqlite::{OptionalExtension, params};

use crate::store::{Store, StoreError};

const CHECK_LABEL: &[u8] = b"latch master key check v1";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("master key {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("master key {path}: expected 64 hex characters (256 bits)")]
    Malformed { path: PathBuf },
    #[error(
        "master key {path} does not match this database (check value differs); \
         restore the right key file or point [server].key_file at it"
    )]
    Mismatch { path: PathBuf },
    #[error(
        "master key {path} is missing but the database was created with a master key; \
         restore it (latchctl keys export-master printed it) instead of starting with a new one"
    )]
    Missing { path: PathBuf },
    #[error("could not generate random bytes")]
    Random,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The 256-bit master key. `Debug` never prints the bytes.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl MasterKey {
    /// HMAC-SHA-256 of `data` under a key derived from the master key for
    /// `purpose`, so each use has its own key.
    pub fn hmac(&self, purpose: &[u8], data: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(hmac::sign(&self.hmac_key(purpose), data).as_ref());
        out
    }

    /// The derived HMAC key of `purpose`, for callers that sign many
    /// messages (deriving costs two HMACs each time).
    pub fn hmac_key(&self, purpose: &[u8]) -> hmac::Key {
        let base = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        let derived = hmac::sign(&base, purpose);
        hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
    }

    fn check_value(&self) -> String {
        hex::encode(self.hmac(b"check", CHECK_LABEL))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

fn read_key(path: &Path) -> Result<Option<MasterKey>, KeyError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(KeyError::Io { path: path.into(), source }),
    };
    let bytes = hex::decode(text.trim()).map_err(|_| KeyError::Malformed { path: path.into() })?;
    let key: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Malformed { path: path.into() })?;
    Ok(Some(MasterKey(key)))
}

fn create_key(path: &Path) -> Result<MasterKey, KeyError> {
    let mut key = [0u8; 32];
    rand::fill(&mut key).map_err(|_| KeyError::Random)?;
    // Security: written 0600 from the first byte, and never over an
    // existing file: a key in use is never replaced by a new one.
    crate::state_dir::create_private(path, format!("{}\n", hex::encode(key)).as_bytes())
        .map_err(|source| KeyError::Io { path: path.into(), source })?;
    Ok(MasterKey(key))
}

/// Loads (or on a fresh database creates) the master key and checks it
/// against the database's check value.
pub async fn load_or_create(store: &Store, path: &Path) -> Result<MasterKey, KeyError> {
    let stored: Option<String> = store
        .read(|c| {
            Ok(c.query_row("SELECT value FROM meta WHERE key = 'master_key_check'", [], |r| r.get(0))
                .optional()?)
        })
        .await?;
    let key = match (read_key(path)?, &stored) {
        (Some(key), _) => key,
        (None, Some(_)) => return Err(KeyError::Missing { path: path.into() }),
        (None, None) => create_key(path)?,
    };
    let check = key.check_value();
    match stored {
        // Security: constant-time compare, as for every secret-derived value.
        Some(s) if constant_time::verify_slices_are_equal(s.as_bytes(), check.as_bytes()).is_ok() => {}
        Some(_) => return Err(KeyError::Mismatch { path: path.into() }),
        None => {
            store
                .write(move |c| {
                    c.execute(
                        "INSERT INTO meta (key, value) VALUES ('master_key_check', ?1)",
                        params![check],
                    )?;
                    Ok(())
                })
                .await?;
        }
    }
    Ok(key)
}

/// Reads an existing master key for an offline command and checks it
/// against the database `c`; never creates one.
pub fn load_existing(c: &rusqlite::Connection, path: &Path) -> Result<MasterKey, KeyError> {
    let stored: Option<String> = c
        .query_row("SELECT value FROM meta WHERE key = 'master_key_check'", [], |r| r.get(0))
        .optional()
        .map_err(StoreError::from)?;
    let key = read_key(path)?.ok_or_else(|| KeyError::Missing { path: path.into() })?;
    match stored {
        Some(s)
            if constant_time::verify_slices_are_equal(s.as_bytes(), key.check_value().as_bytes()).is_ok() =>
        {
            Ok(key)
        }
        _ => Err(KeyError::Mismatch { path: path.into() }),
    }
}

/// AES-256-GCM under a per-purpose key derived from the master key. The
/// purpose is also the associated data, so a ciphertext made for one use
/// cannot be replayed into another column.
impl MasterKey {
    fn aead_key(&self, purpose: &[u8]) -> Result<aead::LessSafeKey, KeyError> {
        let derived = self.hmac(b"aead", purpose);
        let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, &derived).map_err(|_| KeyError::Random)?;
        Ok(aead::LessSafeKey::new(unbound))
    }

    /// Encrypts `plain`; the result is `nonce ‖ ciphertext ‖ tag`.
    pub fn seal(&self, purpose: &[u8], plain: &[u8]) -> Result<Vec<u8>, KeyError> {
        let key = self.aead_key(purpose)?;
        let mut nonce = [0u8; aead::NONCE_LEN];
        rand::fill(&mut nonce).map_err(|_| KeyError::Random)?;
        let mut buf = plain.to_vec();
        key.seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(purpose),
            &mut buf,
        )
        .map_err(|_| KeyError::Random)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Decrypts what `seal` made for the same purpose; `None` if it was
    /// tampered with or sealed under another key or purpose.
    pub fn open(&self, purpose: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < aead::NONCE_LEN {
            return None;
        }
        let (nonce, rest) = sealed.split_at(aead::NONCE_LEN);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let key = self.aead_key(purpose).ok()?;
        let mut buf = rest.to_vec();
        let plain = key.open_in_place(nonce, aead::Aad::from(purpose), &mut buf).ok()?;
        Some(plain.to_vec())
    }

    #[cfg(test)]
    pub fn for_tests(byte: u8) -> MasterKey {
        MasterKey([byte; 32])
    }
}

/// A fresh 256-bit random token, base64url without padding (43 chars).
pub fn random_token() -> Result<String, KeyError> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes).map_err(|_| KeyError::Random)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// SHA-256 of a token, as stored in the database instead of the token.
pub fn token_hash(token: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref().to_vec()
}

#[cfg(test)]
mod tests {
    use super::MasterKey;

    #[test]
    fn sealed_data_opens_only_with_the_same_key_and_purpose() {
        let k = MasterKey::for_tests(1);
        let sealed = k.seal(b"email", b"hello").unwrap();
        assert_eq!(k.open(b"email", &sealed).as_deref(), Some(&b"hello"[..]));
        assert_eq!(k.open(b"signing", &sealed), None);
        assert_eq!(MasterKey::for_tests(2).open(b"email", &sealed), None);
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert_eq!(k.open(b"email", &bad), None);
        assert_ne!(k.seal(b"email", b"hello").unwrap(), sealed, "fresh nonce each time");
    }
}
