//! Extractors that turn axum's rejections into [`ApiError`]s, so malformed JSON, bad query
//! strings and wrong content types get the same error shape as everything else.

use std::marker::PhantomData;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::{self, DeserializeOwned, IgnoredAny, MapAccess, SeqAccess, Unexpected, Visitor};
use serde::{Deserialize, Deserializer};

use crate::error::ApiError;

/// A JSON body whose top level is an object, as every documented body type is: serde's derived
/// `Deserialize` for a struct also takes an array of its field values, which this refuses.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        axum::Json::<Object<T>>::from_request(req, state).await.map(|axum::Json(Object(v))| Json(v)).map_err(json_rejection)
    }
}

/// Any JSON value as the body, for a route that judges its shape itself (a signed root).
pub struct JsonValue(pub serde_json::Value);

impl<S: Send + Sync> FromRequest<S> for JsonValue {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        axum::Json::from_request(req, state).await.map(|axum::Json(v)| JsonValue(v)).map_err(json_rejection)
    }
}

/// `T` read from a JSON object only; any other value is "invalid type: …, expected a JSON object".
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
            // Read to the end first, so a broken array is still malformed JSON.
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Err(de::Error::invalid_type(Unexpected::Seq, &self))
            }
        }
        d.deserialize_any(ObjectVisitor(PhantomData)).map(Object)
    }
}

fn json_rejection(e: JsonRejection) -> ApiError {
    use JsonRejection as R;
    match e {
        R::MissingJsonContentType(_) => {
            ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "send the body as application/json")
        }
        R::JsonSyntaxError(e) => ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {}", e.body_text())),
        R::JsonDataError(e) => ApiError::bad_request("invalid_body", e.body_text()),
        R::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the request body is larger than this endpoint accepts")
        }
        e => ApiError::bad_request("invalid_body", e.body_text()),
    }
}

/// A query string.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(q).map(Query).map_err(|e| ApiError::bad_request("invalid_query", format!("invalid query string: {e}")))
    }
}

/// Path parameters.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
    }
}

/// Parses an outside value into a validated type, or a 400 with `code`.
pub fn parse<T: std::str::FromStr>(code: &'static str, s: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e: T::Err| ApiError::bad_request(code, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Body {
        a: u32,
        #[serde(default)]
        b: Option<String>,
    }

    /// The code the extractor answers for these bytes, or the value.
    fn parse(body: &str) -> Result<Body, &'static str> {
        axum::Json::<Object<Body>>::from_bytes(body.as_bytes()).map(|axum::Json(Object(v))| v).map_err(|e| json_rejection(e).code)
    }

    #[test]
    fn bodies_are_objects() {
        assert_eq!(parse(r#" {"a": 1, "b": "x"} "#), Ok(Body { a: 1, b: Some("x".into()) }));
        assert_eq!(parse(r#"{"a": 1}"#), Ok(Body { a: 1, b: None }));
        // serde alone takes a struct's fields as an array; never as the body.
        for body in [r#"[1, "x"]"#, "[1]", "[]", "1", r#""a""#, "null", "true", r#"{"a": 1, "a": 2}"#, r#"{"a": 1, "c": 2}"#] {
            assert_eq!(parse(body), Err("invalid_body"), "{body}");
        }
        for body in ["", "[1,", "[1, 2", r#"{"a":"#, r#"{"a": 1} x"#, "nul"] {
            assert_eq!(parse(body), Err("malformed_json"), "{body}");
        }
    }
}
