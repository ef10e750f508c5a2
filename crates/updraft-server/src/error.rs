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
    /// Extra headers: `Upload-Offset`, `Retry-After` (seconds).
    pub offset: Option<u64>,
    pub retry_after: Option<u64>,
}

tokio::task_local! {
    /// The request id of the request being handled (set by middleware), for error messages.
    pub static REQUEST_ID: String;
}

/// The current request's id, if there is one.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// The error shape every failure uses: `{"error":{"code":…,"message":…}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case; branch on this.
    pub code: String,
    /// A sentence for people; may change.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), offset: None, retry_after: None }
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
        let id = current_request_id().unwrap_or_else(|| "none".into());
        tracing::error!(error = %detail, request_id = %id, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            format!("internal server error (request id {id}); the server log has the details"),
        )
    }
    pub fn too_many_requests(wait: std::time::Duration) -> Self {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", format!("too many requests; retry in {secs} s"));
        e.retry_after = Some(secs);
        e
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
            // A unique key refused a write that raced another instance's: nothing was written.
            StoreError::Conflict(_) => ApiError::conflict(
                "concurrent_change",
                "another change to this app was committed at the same moment; nothing was written, retry",
            ),
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            serde_json::to_vec(&ErrorBody { error: ErrorDetail { code: self.code.to_owned(), message: self.message } }).unwrap_or_default();
        let mut resp =
            (self.status, [(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response();
        if let Some(off) = self.offset {
            resp.headers_mut().insert("upload-offset", HeaderValue::from(off));
        }
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
