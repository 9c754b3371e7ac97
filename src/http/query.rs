//! `ApiQuery<T>`: the query-string extractor for API calls. actix's own
//! answers a parameter of the wrong type (`?page=abc`) with a bare 400
//! that names nothing; this one names the parameter and what it must be,
//! as `ApiJson` does for bodies. A query type that denies unknown fields
//! gets a misspelt parameter (`?stauts=disabled`) named with the ones it
//! takes, rather than an answer that quietly ignored the filter.

use std::future::{Ready, ready};
use std::ops::Deref;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use serde::de::DeserializeOwned;

use super::problem::{ApiError, Problem};
use super::serde_text::{duplicate_key, unknown_key};

pub struct ApiQuery<T>(pub T);

impl<T> Deref for ApiQuery<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned> FromRequest for ApiQuery<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse(req.query_string()).map(ApiQuery))
    }
}

/// The refusal of a query sent to a call that takes no parameters (see
/// `Routes::refusing_parameters`), naming the first parameter given.
pub fn parameters_refused(req: &HttpRequest) -> ApiError {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NoParameters {}
    match parse::<NoParameters>(req.query_string()) {
        Err(refused) => refused,
        Ok(NoParameters {}) => Problem::invalid_field("query", "this call takes no parameters").into(),
    }
}

/// Deserializes a query string, naming the failing parameter.
fn parse<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let text = e.into_inner().to_string();
        let (field, message) = match (duplicate_key(&text), unknown_key(&text)) {
            (Some(key), _) => (key.to_string(), "is given twice".into()),
            (_, Some(unknown)) => (unknown.key.clone(), unknown.message("parameter")),
            _ => (field, plain(&text)),
        };
        let field = if field.is_empty() || field == "." { "query".to_string() } else { field };
        Problem::invalid_field(field, message).into()
    })
}

/// serde speaks of Rust's number parsing; a caller sent text.
fn plain(message: &str) -> String {
    let number = ["invalid digit", "number too large", "number too small", "empty string"];
    match number.iter().any(|m| message.contains(m)) {
        true => "must be a whole number".to_string(),
        false => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct List {
        query: Option<String>,
        page: Option<i64>,
    }

    fn refused(query: &str) -> (String, String) {
        match parse::<List>(query) {
            Err(e) => (e.problem().errors[0].field.clone(), e.problem().errors[0].message.clone()),
            Ok(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_parameter_of_the_wrong_kind_is_named() {
        assert_eq!(refused("page=abc"), ("page".into(), "must be a whole number".into()));
        assert_eq!(
            refused("query=x&page=99999999999999999999"),
            ("page".into(), "must be a whole number".into())
        );
        assert_eq!(refused("page=1&page=2"), ("page".into(), "is given twice".into()));
        let fine = parse::<List>("query=a%40b&page=2&other=1").unwrap();
        assert_eq!((fine.query.as_deref(), fine.page), (Some("a@b"), Some(2)));
        assert!(parse::<List>("").is_ok());
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Strict {
        status: Option<String>,
        page: Option<i64>,
    }

    #[test]
    fn a_parameter_a_strict_query_does_not_take_is_named_with_those_it_does() {
        let refused = |query: &str| match parse::<Strict>(query) {
            Err(e) => (e.problem().errors[0].field.clone(), e.problem().errors[0].message.clone()),
            Ok(other) => panic!("{other:?}"),
        };
        let expected = "is not a parameter here (the parameters are status, page)".to_string();
        assert_eq!(refused("stauts=disabled"), ("stauts".into(), expected.clone()));
        assert_eq!(refused("page=1&%1b%5B31m=x"), ("query".into(), expected));
        assert!(parse::<Strict>("status=active&page=2").is_ok());
    }
}
