//! Extractors that turn axum's rejections into [`ApiError`]s, so malformed JSON, bad query
//! strings and wrong content types get the same error shape as everything else.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        use axum::extract::rejection::JsonRejection as R;
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(R::MissingJsonContentType(_)) => {
                Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "send the body as application/json"))
            }
            Err(R::JsonSyntaxError(e)) => {
                Err(ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {}", e.body_text())))
            }
            Err(R::JsonDataError(e)) => Err(ApiError::bad_request("invalid_body", e.body_text())),
            Err(R::BytesRejection(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the request body is larger than this endpoint accepts"))
            }
            Err(e) => Err(ApiError::bad_request("invalid_body", e.body_text())),
        }
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
