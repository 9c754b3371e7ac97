//! `ApiJson<T>`: the JSON body extractor for every API call. Unlike actix's
//! own, its failures are our problem documents: 415 without a JSON content
//! type, 413 past `[http].max_body`, and 400 `invalid-request` naming the
//! field that is missing or of the wrong type.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use utoipa::ToSchema;
use utoipa::openapi::{RefOr, Schema};

use super::config_of;
use super::problem::{ApiError, FieldError, Kind, Problem, echoable};
use super::serde_text::{duplicate_key, unknown_key};

pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + ToSchema + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                let m = m.trim().to_ascii_lowercase();
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            });
        let limit =
            config_of(req).map_or(64 * 1024, |c| usize::try_from(c.http.max_body.0).unwrap_or(usize::MAX));
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if !is_json {
                return Err(Problem::new(Kind::UnsupportedMediaType).into());
            }
            let too_large = || ApiError::from(Problem::new(Kind::PayloadTooLarge));
            if declared.is_some_and(|n| n > limit) {
                return Err(too_large());
            }
            // Read against the limit of the config in force now, chunk by
            // chunk, so a reload that raises or lowers max_body applies to
            // the next request and an oversized body is never held whole.
            let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| match e {
                    PayloadError::Overflow => too_large(),
                    _ => Problem::new(Kind::InvalidRequest).into(),
                })?;
                if body.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            parse(&body).map(ApiJson)
        })
    }
}

/// Deserializes `bytes`, naming the failing field in `errors` (every
/// required field missing, not only the first serde met). Every body is a
/// JSON object: serde would also read an array as a struct's fields in
/// order, so `["a@b.example", "pw", null]` registered an account.
pub fn parse<T: DeserializeOwned + ToSchema>(bytes: &[u8]) -> Result<T, ApiError> {
    // A byte-order mark, which Windows PowerShell 5.1 and .NET writers
    // put before UTF-8 text; RFC 8259 §8.1 lets a parser pass over it.
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(Problem::invalid_field("body", "must be a JSON object").into());
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| -> ApiError {
        let path = e.path().to_string();
        let segments: Vec<&Segment> = e.path().iter().collect();
        let parent = dotted(&segments[..segments.len().saturating_sub(1)]);
        let inner = e.into_inner();
        let text = inner.to_string();
        let (field, message) = match (missing_field(&text), unknown_key(&text)) {
            (Some(f), _) if path == "." => return missing::<T>(bytes, f).into(),
            // The path ends with the unknown key; one that may not be told
            // back leaves the object holding it named instead.
            (_, Some(unknown)) => {
                let field = if unknown.key.is_empty() { parent } else { path.trim_start_matches('.').into() };
                (field, unknown.message("field"))
            }
            // A key twice in one object: which value was meant is unknown.
            _ if duplicate_key(&text).is_some() => {
                let key = duplicate_key(&text).unwrap_or_default();
                let at = path.trim_start_matches('.').trim_end_matches(key).trim_end_matches('.');
                let field = if at.is_empty() { key.to_string() } else { format!("{at}.{key}") };
                (field, "is given twice".to_string())
            }
            _ if inner.is_syntax() || inner.is_eof() => ("body".into(), not_json(&inner)),
            _ => (path.trim_start_matches('.').to_string(), plain(&strip_position(&inner.to_string()))),
        };
        let field = if field.is_empty() { "body".to_string() } else { field };
        Problem::invalid_field(field, message).into()
    })
}

/// A body without `first`, a required field: every required field it
/// lacks is told, so a client sending `{}` learns them all in one answer,
/// and so is every key it has that is no field, the likeliest reason
/// (`emial`; bodies that do not refuse unknown keys would pass over it in
/// silence). The fields come from the body's schema (the one
/// `/v1/openapi.json` shows), in its order, which is serde's.
fn missing<T: ToSchema>(bytes: &[u8], first: &str) -> Problem {
    let given =
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes).unwrap_or_default();
    let (required, fields) = match T::schema() {
        RefOr::T(Schema::Object(object)) => (object.required, object.properties.into_keys().collect()),
        _ => (Vec::new(), Vec::new()),
    };
    let mut absent: Vec<String> = required.into_iter().filter(|f| !given.contains_key(f)).collect();
    // Should the schema ever disagree with serde, serde's word stands.
    if !absent.iter().any(|f| f == first) {
        absent = vec![first.to_string()];
    }
    let required = absent.into_iter().map(|field| FieldError { field, message: "is required".into() });
    let errors: Vec<FieldError> = required.chain(strays(&given, &fields)).collect();
    let detail = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
    Problem::new(Kind::InvalidRequest).with_detail(detail).with_errors(errors)
}

/// The keys of `given` that are none of `fields` (at most five, each told
/// back only if `echoable`).
fn strays(given: &serde_json::Map<String, serde_json::Value>, fields: &[String]) -> Vec<FieldError> {
    if fields.is_empty() {
        return Vec::new();
    }
    let message = format!("is not a field here (the fields are {})", fields.join(", "));
    given
        .keys()
        .filter(|k| !fields.contains(k) && echoable(k))
        .take(5)
        .map(|k| FieldError { field: k.clone(), message: message.clone() })
        .collect()
}

/// Where the body stops being JSON, and why in serde_json's words (which
/// never quote the body): a raw newline from a shell's quoting or a
/// trailing comma is then found at once, not by bisecting the request.
fn not_json(e: &serde_json::Error) -> String {
    let why = strip_position(&e.to_string());
    format!("is not valid JSON at line {}, column {}: {why}", e.line(), e.column())
}

fn missing_field(msg: &str) -> Option<&str> {
    msg.strip_prefix("missing field `")?.split('`').next()
}

/// Segments of a path written as serde_path_to_error writes a whole one
/// (`items[0].name`).
fn dotted(segments: &[&Segment]) -> String {
    segments.iter().enumerate().fold(String::new(), |mut out, (i, segment)| {
        if i > 0 && !matches!(segment, Segment::Seq { .. }) {
            out.push('.');
        }
        out.push_str(&segment.to_string());
        out
    })
}

/// serde names our Rust types ("expected struct Mfa"); a caller knows
/// JSON, not them.
fn plain(msg: &str) -> String {
    match msg.split_once("expected struct ") {
        Some((before, _)) => format!("{before}expected an object"),
        None => msg.to_string(),
    }
}

/// serde_json appends " at line L column C"; the field name says more.
fn strip_position(msg: &str) -> String {
    msg.split(" at line ").next().unwrap_or(msg).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, utoipa::ToSchema)]
    #[allow(dead_code)]
    struct Login {
        email: String,
        password: String,
    }

    fn field_of(body: &str) -> String {
        match parse::<Login>(body.as_bytes()) {
            Err(e) => e.problem().errors[0].field.clone(),
            Ok(other) => panic!("{other:?}"),
        }
    }

    #[derive(serde::Deserialize, Debug, utoipa::ToSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Patch {
        status: Option<String>,
        mfa: Option<Mfa>,
        items: Option<Vec<Mfa>>,
    }

    #[derive(serde::Deserialize, Debug, utoipa::ToSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Mfa {
        totp: bool,
    }

    #[test]
    fn a_misspelt_field_is_named_with_what_was_expected() {
        let problem = |body: &str| match parse::<Patch>(body.as_bytes()) {
            Err(e) => e.problem().errors[0].clone(),
            Ok(other) => panic!("{other:?}"),
        };
        let top = problem(r#"{"statuss":"disabled"}"#);
        assert_eq!(top.field, "statuss");
        assert_eq!(top.message, "is not a field here (the fields are status, mfa, items)");
        assert_eq!(problem(r#"{"mfa":{"totp":false,"topt":1}}"#).field, "mfa.topt");
        // A key that may not be told back (a control character, a page of
        // text) leaves the object holding it named.
        let hidden = problem("{\"mfa\":{\"totp\":false,\"\\u001b[2J\":1}}");
        assert_eq!(
            (hidden.field.as_str(), hidden.message.as_str()),
            ("mfa", "is not a field here (the fields are totp)")
        );
        assert_eq!(problem("{\"items\":[{\"totp\":true,\"\\u0007\":1}]}").field, "items[0]");
        assert_eq!(problem(r#"{"items":[{"totp":true},{"topt":1}]}"#).field, "items[1].topt");
        let long = format!(r#"{{"{}":1}}"#, "k".repeat(300));
        assert_eq!(problem(&long).field, "body");
        assert!(parse::<Patch>(br#"{"mfa":{"totp":false}}"#).is_ok());
    }

    #[test]
    fn a_key_given_twice_is_named() {
        let problem = |body: &str| match parse::<Patch>(body.as_bytes()) {
            Err(e) => e.problem().errors[0].clone(),
            Ok(other) => panic!("{other:?}"),
        };
        let top = problem(r#"{"status":"active","status":"disabled"}"#);
        assert_eq!((top.field.as_str(), top.message.as_str()), ("status", "is given twice"));
        assert_eq!(problem(r#"{"mfa":{"totp":false,"totp":true}}"#).field, "mfa.totp");
    }

    #[test]
    fn every_required_field_missing_is_named_at_once() {
        let missing = |body: &str| match parse::<Login>(body.as_bytes()) {
            Err(e) => {
                let p = e.problem();
                (p.errors.iter().map(|e| e.field.clone()).collect::<Vec<_>>(), p.detail.clone())
            }
            Ok(other) => panic!("{other:?}"),
        };
        let (fields, detail) = missing("{}");
        assert_eq!(fields, ["email", "password"]);
        assert_eq!(detail, "email: is required; password: is required");
        assert_eq!(missing(r#"{"password":"x"}"#).0, ["email"]);
        // A misspelt key is the likeliest reason, so it is named too.
        let (fields, detail) = missing(r#"{"emial":"a@b","password":"x"}"#);
        assert_eq!(fields, ["email", "emial"]);
        assert_eq!(detail, "email: is required; emial: is not a field here (the fields are email, password)");
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field_of(r#"{"email":"a@b"}"#), "password");
        assert_eq!(field_of(r#"{"email":5,"password":"x"}"#), "email");
        assert_eq!(field_of(r#"{"email":"#), "body");
        assert!(parse::<Login>(br#"{"email":"a","password":"b"}"#).is_ok());
        assert!(parse::<Login>(b"\xef\xbb\xbf{\"email\":\"a\",\"password\":\"b\"}").is_ok(), "after a BOM");
        assert_eq!(field_of("\u{feff}\u{feff}{}"), "body", "one BOM, not any number");
    }

    #[test]
    fn a_body_is_an_object_and_messages_name_no_rust_type() {
        let problem = |body: &str| match parse::<Patch>(body.as_bytes()) {
            Err(e) => e.problem().errors[0].clone(),
            Ok(other) => panic!("{other:?}"),
        };
        for body in [r#"["disabled", null]"#, "null", " 5", r#""x""#, "[1,", ""] {
            let p = problem(body);
            assert_eq!((p.field.as_str(), p.message.as_str()), ("body", "must be a JSON object"), "{body}");
        }
        assert_eq!(
            problem(r#"{"status":"#).message,
            "is not valid JSON at line 1, column 10: EOF while parsing a value"
        );
        let carriage_return = problem("{\"status\":\"disabled\r\"}");
        assert_eq!(
            carriage_return.message,
            "is not valid JSON at line 1, column 20: control character (\\u0000-\\u001F) found while parsing a string"
        );
        assert_eq!(
            problem("{\"status\":\"disabled\",}").message,
            "is not valid JSON at line 1, column 22: trailing comma"
        );
        let nested = problem(r#"{"mfa":"off"}"#);
        assert_eq!(
            (nested.field.as_str(), nested.message.as_str()),
            ("mfa", "invalid type: string \"off\", expected an object")
        );
        assert!(parse::<Patch>(b" \n{}").is_ok());
    }
}
