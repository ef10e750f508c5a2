//! The one error type of the HTTP API. Every failure, including extractor rejections, unknown
//! routes and wrong methods, becomes `{"error":{"code":…,"message":…}}` with a stable code. An
//! internal failure is logged in full and answered with a generic message: no SQL, paths or key
//! material ever reach a client.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use updraft_store::{StoreError, UploadProblem};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra headers such as `Upload-Offset`.
    pub offset: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}
#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), offset: None }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
    pub fn app_not_found(app: &str) -> Self {
        Self::not_found("app_not_found", format!("no app {app:?}"))
    }
    pub fn release_not_found(app: &str, version: &str) -> Self {
        Self::not_found("release_not_found", format!("app {app:?} has no release {version:?}"))
    }
    /// An internal failure: the detail goes to the log only.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal server error; the server log has the details (look up the X-Request-Id)",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Upload { reason, .. } => {
                let (status, code) = match reason {
                    UploadProblem::OffsetMismatch { .. } => (StatusCode::CONFLICT, "upload_offset_mismatch"),
                    UploadProblem::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "upload_too_large"),
                    UploadProblem::Incomplete { .. } => (StatusCode::CONFLICT, "upload_incomplete"),
                    UploadProblem::Busy => (StatusCode::CONFLICT, "upload_busy"),
                    UploadProblem::Interrupted => (StatusCode::BAD_REQUEST, "upload_interrupted"),
                };
                let mut err = ApiError::new(status, code, format!("upload: {reason}"));
                if let UploadProblem::OffsetMismatch { expected } = reason {
                    err.offset = Some(expected);
                }
                err
            }
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&Body { error: Inner { code: self.code, message: &self.message } }).unwrap_or_default();
        let mut resp =
            (self.status, [(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response();
        if let Some(off) = self.offset {
            resp.headers_mut().insert("upload-offset", HeaderValue::from(off));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
