//! Storage errors. Their text may hold paths and SQL detail: it is for the log, never a response.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("io error at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A unique key already exists (an app, a release version, a metadata version).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// An upload's bytes do not match what was declared.
    #[error("upload {id}: {reason}")]
    Upload { id: String, reason: UploadProblem },
    #[error("key file {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The object store (S3-compatible bucket) failed.
    #[error("object store: {0}")]
    Object(Box<object_store::Error>),
    /// An argument the caller passed is malformed (e.g. a timestamp).
    #[error("invalid input: {0}")]
    Invalid(String),
}

/// What is wrong with an upload; each maps to a stable API error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadProblem {
    /// The offset the client sent is not where the upload stands.
    OffsetMismatch { expected: u64 },
    /// More bytes than declared.
    TooLarge,
    /// Finished with fewer bytes than declared.
    Incomplete { received: u64, declared: u64 },
    /// Another request is appending to the same upload right now.
    Busy,
    /// The request body ended early or failed while streaming.
    Interrupted,
}

impl std::fmt::Display for UploadProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OffsetMismatch { expected } => write!(f, "offset mismatch: the upload is at byte {expected}"),
            Self::TooLarge => write!(f, "more bytes than the declared size"),
            Self::Incomplete { received, declared } => write!(f, "incomplete: {received} of {declared} bytes received"),
            Self::Busy => write!(f, "another request is writing this upload"),
            Self::Interrupted => write!(f, "the request body ended before its declared length"),
        }
    }
}

impl StoreError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }
}
