//! Forged and altered access tokens through `GET /v1/auth/me`: every known
//! JWT attack gets 401, also after the genuine token was answered (and
//! remembered by the verified-token cache). The EdDSA attacks alter a real
//! token or sign with a key latch never issued; the claim attacks run in
//! HS256 mode, where the test knows the secret, so each token carries a
//! valid signature and only the claim is wrong.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

use crate::harness::{Latchd, base_config, hs256_tokens, secret_file, write_config};
use crate::reliability::Table;

const PASSWORD: &str = "correct horse battery staple";
const SECRET: &str = "0123456789abcdef0123456789abcdef-attacks";

fn part(jwt: &str, i: usize) -> Value {
    serde_json::from_slice(&B64.decode(jwt.split('.').nth(i).unwrap()).unwrap()).unwrap()
}

fn input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()))
}

fn hs256(key: &[u8], header: &Value, claims: &Value) -> String {
    let input = input(header, claims);
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    format!("{input}.{}", B64.encode(aws_lc_rs::hmac::sign(&key, input.as_bytes())))
}

/// Signed with an Ed25519 key latch never issued.
fn eddsa_foreign(header: &Value, claims: &Value) -> String {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let input = input(header, claims);
    format!("{input}.{}", B64.encode(pair.sign(input.as_bytes()).as_ref()))
}

/// A daemon with one user, logged in: (daemon, access token).
async fn signed_in(extra: &str) -> (Latchd, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!("\n[accounts]\nrequire_verified_email = false\n{extra}");
    write_config(dir.path(), &base_config(&cfg));
    let d = Latchd::start_in(dir).await;
    let body = json!({"email": "target@example.test", "password": PASSWORD});
    assert_eq!(d.post("/v1/auth/register", body.clone()).await.status(), 202);
    let tokens: Value = d.post("/v1/auth/login", body).await.json().await.unwrap();
    let token = tokens["access_token"].as_str().unwrap().to_string();
    assert_eq!(d.get_auth("/v1/auth/me", &token).await.status(), 200, "the genuine token works");
    (d, token)
}

/// Sends every attack; returns the table rows and the ones not refused.
async fn try_all(d: &Latchd, attacks: Vec<(&str, String)>, table: &mut Table) -> Vec<String> {
    let mut let_in = Vec::new();
    for (name, token) in attacks {
        let status = d.get_auth("/v1/auth/me", &token).await.status().as_u16();
        table.row(&[name, &status.to_string()]);
        if status != 401 {
            let_in.push(format!("{name}: {status}"));
        }
    }
    let_in
}

#[tokio::test]
async fn signature_and_header_attacks_on_eddsa_tokens_are_refused() {
    let (d, real) = signed_in("").await;
    let (header, claims) = (part(&real, 0), part(&real, 1));
    let kid = header["kid"].as_str().unwrap().to_string();
    let jwks: Value = d.get("/.well-known/jwks.json").await.json().await.unwrap();
    let x = jwks["keys"][0]["x"].as_str().unwrap().to_string();
    let public = B64.decode(&x).unwrap();
    let (head_b64, body_b64, sig) = {
        let mut parts = real.split('.');
        (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap())
    };
    let with = |changes: Value| {
        let mut h = header.clone();
        h.as_object_mut().unwrap().extend(changes.as_object().unwrap().clone());
        h
    };
    let mut admin = claims.clone();
    admin["roles"] = json!(["admin"]);
    let mut other = claims.clone();
    other["sub"] = json!("01900000-0000-7000-8000-000000000000");
    let mut padded = claims.clone();
    padded["pad"] = json!("x".repeat(4 * 1024));
    let foreign_jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": x});
    let attacks = vec![
        ("alg none, no signature", format!("{}.", input(&with(json!({"alg": "none"})), &claims))),
        ("alg None", format!("{}.", input(&with(json!({"alg": "None"})), &claims))),
        ("alg empty", format!("{}.", input(&with(json!({"alg": ""})), &claims))),
        ("alg none, original signature", format!("{}.{sig}", input(&with(json!({"alg": "none"})), &claims))),
        ("HS256 keyed with the public key bytes", hs256(&public, &with(json!({"alg": "HS256"})), &claims)),
        ("HS256 keyed with the JWKS x string", hs256(x.as_bytes(), &with(json!({"alg": "HS256"})), &claims)),
        ("zero signature", format!("{head_b64}.{body_b64}.{}", B64.encode([0u8; 64]))),
        ("truncated signature", format!("{head_b64}.{body_b64}.{}", &sig[..sig.len() - 8])),
        ("empty signature", format!("{head_b64}.{body_b64}.")),
        ("roles changed under the signature", format!("{head_b64}.{}.{sig}", B64.encode(admin.to_string()))),
        ("sub changed under the signature", format!("{head_b64}.{}.{sig}", B64.encode(other.to_string()))),
        ("unknown kid, foreign key", eddsa_foreign(&with(json!({"kid": "not-a-latch-key"})), &claims)),
        ("latch's kid, foreign key", eddsa_foreign(&header, &admin)),
        ("jku header, foreign key", eddsa_foreign(&with(json!({"jku": "https://evil.test/jwks"})), &admin)),
        ("x5u header, foreign key", eddsa_foreign(&with(json!({"x5u": "https://evil.test/cert"})), &admin)),
        ("jwk header, foreign key", eddsa_foreign(&with(json!({"jwk": foreign_jwk})), &admin)),
        ("kid path traversal", eddsa_foreign(&with(json!({"kid": "../../keys/master.key"})), &claims)),
        ("two segments", format!("{head_b64}.{body_b64}")),
        ("5 KiB token, foreign key", eddsa_foreign(&header, &padded)),
    ];
    assert!(!kid.is_empty());
    let mut table = Table::new("JWT attacks on EdDSA tokens (GET /v1/auth/me)", &["attack", "status"]);
    let let_in = try_all(&d, attacks, &mut table).await;
    table.publish("jwt-eddsa");
    assert!(let_in.is_empty(), "attacks not refused with 401: {let_in:?}");
    assert_eq!(d.get_auth("/v1/auth/me", &real).await.status(), 200, "the genuine token still works");
}

#[tokio::test]
async fn claim_attacks_with_valid_signatures_are_refused() {
    let (_dir, secret) = secret_file("hs256.key", SECRET);
    let extra = hs256_tokens(&secret);
    let (d, real) = signed_in(&extra).await;
    let (header, claims) = (part(&real, 0), part(&real, 1));
    let sign = |h: &Value, c: &Value| hs256(SECRET.as_bytes(), h, c);
    // The forger's tooling works: the same claims, signed here, are accepted.
    assert_eq!(d.get_auth("/v1/auth/me", &sign(&header, &claims)).await.status(), 200);
    let now = latch::clock::now_unix();
    let changed = |key: &str, value: Value| {
        let mut c = claims.clone();
        c[key] = value;
        c
    };
    let mut no_exp = claims.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut no_sub = claims.clone();
    no_sub.as_object_mut().unwrap().remove("sub");
    let typ = |t: Value| json!({"alg": "HS256", "typ": t});
    let attacks = vec![
        ("expired an hour ago", sign(&header, &changed("exp", json!(now - 3600)))),
        ("nbf an hour ahead", sign(&header, &changed("nbf", json!(now + 3600)))),
        ("iat an hour ahead", sign(&header, &changed("iat", json!(now + 3600)))),
        ("no exp", sign(&header, &no_exp)),
        ("no sub", sign(&header, &no_sub)),
        ("exp as a string", sign(&header, &changed("exp", json!((now + 600).to_string())))),
        ("wrong iss", sign(&header, &changed("iss", json!("https://evil.test")))),
        ("wrong aud", sign(&header, &changed("aud", json!("another-app")))),
        ("another user's sub", sign(&header, &changed("sub", json!("01900000-0000-7000-8000-000000000000")))),
        ("unknown sid", sign(&header, &changed("sid", json!("01900000-0000-7000-8000-000000000001")))),
        ("typ JWT", sign(&typ(json!("JWT")), &claims)),
        ("no typ", sign(&json!({"alg": "HS256"}), &claims)),
        (
            "crit unknown",
            sign(&json!({"alg": "HS256", "typ": "at+jwt", "crit": ["x-ext"], "x-ext": 1}), &claims),
        ),
        ("alg none", format!("{}.", input(&json!({"alg": "none", "typ": "at+jwt"}), &claims))),
        ("alg HS512, same secret", {
            let input = input(&json!({"alg": "HS512", "typ": "at+jwt"}), &claims);
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA512, SECRET.as_bytes());
            format!("{input}.{}", B64.encode(aws_lc_rs::hmac::sign(&key, input.as_bytes())))
        }),
    ];
    let mut table = Table::new("JWT claim attacks, validly signed (HS256 mode)", &["attack", "status"]);
    let let_in = try_all(&d, attacks, &mut table).await;
    table.publish("jwt-claims");
    assert!(let_in.is_empty(), "attacks not refused with 401: {let_in:?}");
}
