//! Access-token signing and validation. EdDSA (Ed25519) by default: the key
//! is generated on first start, kept in `signing_keys` with its private half
//! sealed under the master key, and published in the JWKS by its RFC 7638
//! thumbprint. HS256 uses the bytes of `[tokens].secret_file` instead.
//! Validation is strict: signature, `typ`, `iss`, `aud`, `exp`, `iat`, with
//! `[tokens].leeway` — never the library's default 60 s.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;

use aws_lc_rs::signature::Ed25519KeyPair;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::signing_keys::{self, KeyRow, KeyState, Ring, RingKey, SEAL_PURPOSE, states};
use super::verified::{VerifiedTokens, digest_of};
use crate::config::{Commit, Config, Preparing, Reloadable, TokenAlgorithm};
use crate::http::problem::{Kind, ToProblem};
use crate::keys::MasterKey;
use crate::store::{Store, StoreError};

pub const ACCESS_TYP: &str = "at+jwt";

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("tokens.secret_file {path}: {reason}")]
    Secret { path: String, reason: String },
    #[error("signing key {kid} cannot be decrypted with this master key")]
    Sealed { kid: String },
    #[error("signing key {kid} decrypts but is not a valid Ed25519 key")]
    Corrupt { kid: String },
    #[error("key generation failed")]
    Generate,
    #[error("no signing key is active")]
    NoKey,
    #[error("sealing: {0}")]
    Key(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("jwt: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
}

impl ToProblem for SigningError {
    fn kind(&self) -> Kind {
        Kind::Internal
    }
}

/// The claims of a latch access token (API.md "Login and tokens").
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub sid: String,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    pub roles: Vec<String>,
    pub amr: Vec<String>,
}

/// Signs and validates access tokens with the keys of one config.
pub struct TokenSigner {
    algorithm: Algorithm,
    keys: Keys,
    /// Tokens this signer already verified; a new ring starts empty.
    verified: VerifiedTokens,
}

enum Keys {
    /// Parsed once, each with its token header already encoded.
    /// Performance: `jsonwebtoken::encode` re-parses the PKCS#8 key on
    /// every call, and aws-lc then derives the public key again: a second
    /// scalar multiplication per token, as costly as the signature itself.
    Ed25519(Ring),
    Hs256 {
        encoding: EncodingKey,
        decoding: DecodingKey,
    },
}

/// Reads `[tokens].secret_file` as a start would (HS256 only), for
/// `latchd check-config`.
pub fn check_secret_file(cfg: &Config) -> Result<(), SigningError> {
    match cfg.tokens.algorithm {
        TokenAlgorithm::HS256 => TokenSigner::hs256(cfg.tokens.secret_file.as_deref()).map(drop),
        TokenAlgorithm::EdDSA => Ok(()),
    }
}

impl TokenSigner {
    /// Loads the signing keys (creating the first one) or the HS256 secret.
    pub async fn load(store: &Store, key: &MasterKey, cfg: &Config) -> Result<TokenSigner, SigningError> {
        match cfg.tokens.algorithm {
            TokenAlgorithm::HS256 => Self::hs256(cfg.tokens.secret_file.as_deref()),
            TokenAlgorithm::EdDSA => {
                let retain = (cfg.tokens.access_ttl.0 + cfg.tokens.leeway.0).as_secs() as i64;
                Ok(TokenSigner {
                    algorithm: Algorithm::EdDSA,
                    keys: Keys::Ed25519(ring(store, key, retain).await?),
                    verified: VerifiedTokens::default(),
                })
            }
        }
    }

    fn hs256(path: Option<&Path>) -> Result<TokenSigner, SigningError> {
        let shown = path.map_or_else(String::new, |p| p.display().to_string());
        let err = |reason: String| SigningError::Secret { path: shown.clone(), reason };
        let path = path.ok_or_else(|| err("not set".into()))?;
        let mut secret = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            secret.pop();
        }
        if secret.len() < 32 {
            return Err(err(format!("holds {} bytes; HS256 needs at least 32", secret.len())));
        }
        Ok(TokenSigner {
            algorithm: Algorithm::HS256,
            keys: Keys::Hs256 {
                encoding: EncodingKey::from_secret(&secret),
                decoding: DecodingKey::from_secret(&secret),
            },
            verified: VerifiedTokens::default(),
        })
    }

    /// A compact JWS: base64url(header) "." base64url(claims) "." signature.
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, SigningError> {
        match &self.keys {
            Keys::Ed25519(ring) => {
                let signing = ring.signing(crate::clock::now_unix()).and_then(|k| k.signing.as_ref());
                let (pair, header_b64) = signing.ok_or(SigningError::NoKey)?;
                let claims = serde_json::to_vec(claims).map_err(jsonwebtoken::errors::Error::from)?;
                let mut token = String::with_capacity(header_b64.len() + claims.len() * 4 / 3 + 92);
                token.push_str(header_b64);
                token.push('.');
                B64.encode_string(&claims, &mut token);
                let signature = pair.sign(token.as_bytes());
                token.push('.');
                B64.encode_string(signature.as_ref(), &mut token);
                Ok(token)
            }
            Keys::Hs256 { encoding, .. } => {
                let mut header = Header::new(self.algorithm);
                header.typ = Some(ACCESS_TYP.into());
                Ok(jsonwebtoken::encode(&header, claims, encoding)?)
            }
        }
    }

    /// Validates `token` per API.md; `None` for anything not a live,
    /// well-formed latch access token.
    pub fn validate(&self, token: &str, cfg: &Config) -> Option<AccessClaims> {
        // Security: a huge bearer is refused before any decoding work.
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let now = crate::clock::now_unix();
        let digest = digest_of(token);
        let published = |kid: &str| match &self.keys {
            Keys::Ed25519(ring) => ring.published(now).any(|k| k.kid == kid),
            Keys::Hs256 { .. } => false,
        };
        if let Some(claims) = self.verified.get(&digest, cfg, now, published) {
            return Some(claims);
        }
        let (claims, kid) = self.verify(token, cfg)?;
        self.verified.put(digest, claims.clone(), kid, now);
        Some(claims)
    }

    /// The full check: header, key, signature and every claim; the claims
    /// with the key id that verified them.
    fn verify(&self, token: &str, cfg: &Config) -> Option<(AccessClaims, Option<String>)> {
        if has_crit_header(token) {
            return None;
        }
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != self.algorithm || header.typ.as_deref() != Some(ACCESS_TYP) {
            return None;
        }
        let key = match &self.keys {
            Keys::Ed25519(ring) => {
                let kid = header.kid.as_deref()?;
                &ring.published(crate::clock::now_unix()).find(|k| k.kid == kid)?.decoding
            }
            Keys::Hs256 { decoding, .. } => decoding,
        };
        let mut v = Validation::new(self.algorithm);
        v.leeway = cfg.tokens.leeway.0.as_secs();
        v.validate_nbf = true;
        v.set_issuer(&[issuer(cfg)]);
        v.set_audience(&[&cfg.tokens.audience]);
        v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<AccessClaims>(token, key, &v).ok()?.claims;
        // Security: a token "issued" in the future is forged or from a broken clock.
        let leeway = i64::try_from(v.leeway).unwrap_or(0);
        (claims.iat <= crate::clock::now_unix() + leeway).then_some((claims, header.kid))
    }

    /// The JWKS document: every key that may still have signed a live token.
    pub fn jwks(&self) -> Value {
        let keys: Vec<&Value> = match &self.keys {
            Keys::Ed25519(ring) => ring.published(crate::clock::now_unix()).map(|k| &k.jwk).collect(),
            Keys::Hs256 { .. } => Vec::new(),
        };
        json!({ "keys": keys })
    }

    pub fn algorithm_name(&self) -> &'static str {
        match self.algorithm {
            Algorithm::HS256 => "HS256",
            _ => "EdDSA",
        }
    }
}

/// The EdDSA ring from the database: keys that sign now or will are
/// decrypted; if none signs now (first start, or every key revoked
/// offline), a new key is made that signs at once.
async fn ring(store: &Store, master: &MasterKey, retain: i64) -> Result<Ring, SigningError> {
    let now = crate::clock::now_unix();
    let mut rows = store.read(signing_keys::live_rows).await?;
    let activations: Vec<i64> = rows.iter().map(|r| r.activates_at).collect();
    if !states(&activations, now, retain).contains(&KeyState::Signing) {
        let fresh = signing_keys::generate(master, now)?;
        let kid = fresh.kid.clone();
        store.write(move |c| signing_keys::insert(c, &fresh)).await?;
        tracing::info!(kid = %kid, "generated an EdDSA signing key");
        rows = store.read(signing_keys::live_rows).await?;
    }
    let activations: Vec<i64> = rows.iter().map(|r| r.activates_at).collect();
    let mut keys = Vec::new();
    for (row, state) in rows.into_iter().zip(states(&activations, now, retain)) {
        let signing = match state {
            KeyState::Pending | KeyState::Signing => Some(open_pair(master, &row)?),
            KeyState::Retired { .. } => None,
            KeyState::Expired => continue,
        };
        keys.push(RingKey {
            jwk: signing_keys::jwk(&row.kid, &row.public),
            decoding: DecodingKey::from_ed_der(&row.public),
            activates_at: row.activates_at,
            kid: row.kid,
            signing,
        });
    }
    Ok(Ring { keys, retain })
}

fn open_pair(master: &MasterKey, row: &KeyRow) -> Result<(Ed25519KeyPair, String), SigningError> {
    let kid = || row.kid.clone();
    let pkcs8 = master.open(SEAL_PURPOSE, &row.sealed).ok_or_else(|| SigningError::Sealed { kid: kid() })?;
    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| SigningError::Corrupt { kid: kid() })?;
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some(ACCESS_TYP.into());
    header.kid = Some(row.kid.clone());
    let header_b64 = B64.encode(serde_json::to_vec(&header).map_err(jsonwebtoken::errors::Error::from)?);
    Ok((pair, header_b64))
}

/// The signer in force: built at start and rebuilt by a reload (a new
/// algorithm, or a rotated HS256 secret file), so the change applies to the
/// next request instead of silently waiting for a restart.
pub struct Signer {
    current: ArcSwap<TokenSigner>,
    store: Store,
    key: MasterKey,
}

impl Signer {
    pub async fn load(store: &Store, key: &MasterKey, cfg: &Config) -> Result<Signer, SigningError> {
        let current = ArcSwap::from_pointee(TokenSigner::load(store, key, cfg).await?);
        Ok(Signer { current, store: store.clone(), key: key.clone() })
    }

    /// Builds the signer `cfg` asks for without putting it in force.
    pub async fn build(&self, cfg: &Config) -> Result<Arc<TokenSigner>, SigningError> {
        Ok(Arc::new(TokenSigner::load(&self.store, &self.key, cfg).await?))
    }

    pub fn replace(&self, next: Arc<TokenSigner>) {
        self.current.store(next);
    }

    /// Rebuilds the ring from the database now: after a rotation or a
    /// revocation, so it applies to the next request.
    pub async fn refresh(&self, cfg: &Config) -> Result<(), SigningError> {
        self.replace(self.build(cfg).await?);
        Ok(())
    }

    pub fn sign(&self, claims: &AccessClaims) -> Result<String, SigningError> {
        self.current.load().sign(claims)
    }

    pub fn validate(&self, token: &str, cfg: &Config) -> Option<AccessClaims> {
        self.current.load().validate(token, cfg)
    }

    pub fn jwks(&self) -> Value {
        self.current.load().jwks()
    }

    pub fn algorithm_name(&self) -> &'static str {
        self.current.load().algorithm_name()
    }
}

/// A reload rebuilds the signer: `tokens.algorithm` and a rotated
/// `tokens.secret_file` apply to the next token signed or checked.
impl Reloadable for Arc<Signer> {
    fn prepare<'a>(&'a self, next: &'a Config) -> Preparing<'a> {
        Box::pin(async move {
            let built = self.build(next).await.map_err(|e| e.to_string())?;
            let signer = Arc::clone(self);
            Ok(Box::new(move || signer.replace(built)) as Commit)
        })
    }
}

/// Bearer tokens longer than this are refused unparsed (API.md): latch's
/// own are under 1 KiB.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// RFC 7515 §4.1.11: a `crit` header names extensions the verifier must
/// understand; latch understands none, so any `crit` refuses the token.
/// (jsonwebtoken's `Header` drops unknown fields, so it is read here.)
fn has_crit_header(token: &str) -> bool {
    let Some(segment) = token.split('.').next() else { return true };
    let Ok(bytes) = B64.decode(segment) else { return true };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(header)) => header.contains_key("crit"),
        _ => true,
    }
}

/// The `iss` claim: `[tokens].issuer`, else `public_url`.
pub fn issuer(cfg: &Config) -> String {
    if cfg.tokens.issuer.trim().is_empty() { cfg.public_url.clone() } else { cfg.tokens.issuer.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_and_crit_tokens_are_refused_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("s");
        std::fs::write(&secret, "0123456789abcdef0123456789abcdef").unwrap();
        let signer = TokenSigner::hs256(Some(&secret)).unwrap();
        let cfg = Config::load(None).unwrap();
        let now = crate::clock::now_unix();
        let claims = AccessClaims {
            iss: issuer(&cfg),
            aud: cfg.tokens.audience.clone(),
            sub: "u".into(),
            sid: "s".into(),
            jti: "j".into(),
            iat: now,
            exp: now + 60,
            roles: vec!["x".repeat(MAX_TOKEN_BYTES)],
            amr: vec![],
        };
        let huge = signer.sign(&claims).unwrap();
        assert!(huge.len() > MAX_TOKEN_BYTES);
        assert!(signer.validate(&huge, &cfg).is_none());
        let small = signer.sign(&AccessClaims { roles: vec![], ..claims }).unwrap();
        assert!(signer.validate(&small, &cfg).is_some());
        let crit = format!(
            "{}.{}",
            B64.encode(r#"{"alg":"HS256","typ":"at+jwt","crit":["x"]}"#),
            small.split_once('.').unwrap().1
        );
        assert!(has_crit_header(&crit) && signer.validate(&crit, &cfg).is_none());
    }
}
