//! Refresh tokens name their row: base64url of the row id (8 bytes,
//! big-endian) and 32 random bytes, 54 characters. The row is found by its
//! integer key and the SHA-256 of the random part compared in constant
//! time, so issuing a token appends to the table's last page. Found by the
//! hash instead, every rotation inserted into an index at a random place:
//! one more 4 KiB page written per refresh to the log, the checkpoint and
//! the WAL archive. Tokens issued before migration 0011 (43 characters, 32
//! random bytes) are still found by the SHA-256 of the whole token, in a
//! partial index that holds only them.

use aws_lc_rs::constant_time;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::keys::{KeyError, token_hash};

const ID: usize = 8;
const SECRET: usize = 32;

/// The random part of a token about to be issued.
pub struct Secret([u8; SECRET]);

impl Secret {
    pub fn new() -> Result<Secret, KeyError> {
        let mut bytes = [0u8; SECRET];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| KeyError::Random)?;
        Ok(Secret(bytes))
    }

    /// Rebuilds a secret kept sealed (a successor within the reuse grace).
    pub fn from_bytes(bytes: &[u8]) -> Option<Secret> {
        Some(Secret(bytes.try_into().ok()?))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// What the row stores.
    pub fn hash(&self) -> Vec<u8> {
        sha256(&self.0)
    }

    /// The token for the row `id`.
    pub fn token(&self, id: i64) -> String {
        let mut raw = [0u8; ID + SECRET];
        raw[..ID].copy_from_slice(&id.to_be_bytes());
        raw[ID..].copy_from_slice(&self.0);
        URL_SAFE_NO_PAD.encode(raw)
    }
}

/// A token as a caller presented it.
pub enum Presented {
    /// Names its row; `hash` must match the row's.
    Row { id: i64, hash: Vec<u8> },
    /// Issued before rows were named (or not a token at all): found by the
    /// hash of the whole string, or not found.
    Legacy { hash: Vec<u8> },
}

impl Presented {
    pub fn parse(token: &str) -> Presented {
        match URL_SAFE_NO_PAD.decode(token) {
            Ok(raw) if raw.len() == ID + SECRET => {
                let id = i64::from_be_bytes(raw[..ID].try_into().unwrap_or_default());
                Presented::Row { id, hash: sha256(&raw[ID..]) }
            }
            _ => Presented::Legacy { hash: token_hash(token) },
        }
    }

    /// Whether the row found for this token (its stored hash, and whether
    /// it is a legacy row) is really this token's.
    pub fn matches(&self, stored: &[u8], legacy: bool) -> bool {
        match self {
            Presented::Row { hash, .. } => {
                !legacy && constant_time::verify_slices_are_equal(hash, stored).is_ok()
            }
            // Found by this very hash, in the index of legacy rows.
            Presented::Legacy { .. } => legacy,
        }
    }
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_row_and_only_its_secret_matches() {
        let secret = Secret::new().unwrap();
        let token = secret.token(42);
        assert_eq!(token.len(), 54);
        let presented = Presented::parse(&token);
        let Presented::Row { id, .. } = &presented else { panic!("a row token") };
        assert_eq!(*id, 42);
        assert!(presented.matches(&secret.hash(), false));
        assert!(!presented.matches(&secret.hash(), true), "never a legacy row");
        assert!(!presented.matches(&Secret::new().unwrap().hash(), false), "another secret");
        let forged = Secret::from_bytes(secret.bytes()).unwrap().token(43);
        assert!(matches!(Presented::parse(&forged), Presented::Row { id: 43, .. }));
    }

    #[test]
    fn anything_else_is_looked_up_as_a_legacy_token() {
        let old = crate::keys::random_token().unwrap();
        let Presented::Legacy { hash } = Presented::parse(&old) else { panic!("legacy") };
        assert_eq!(hash, token_hash(&old));
        assert!(matches!(Presented::parse("not a token"), Presented::Legacy { .. }));
    }
}
