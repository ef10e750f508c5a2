//! `ClientError`: why a check, download or install did not happen, with stable codes and the
//! CLI's exit codes.

use std::path::PathBuf;

use updraft_core::tuf::TufError;

/// Why the client could not do what was asked. "No update available" is not an error
/// ([`crate::Client::check`] returns `Ok(None)`).
///
/// URLs in errors never carry credentials: [`crate::Client::new`] refuses a server URL
/// with a user name or password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The configuration cannot work (bad server URL, bad client id, ...).
    #[error("invalid configuration: {reason}")]
    Config { reason: String },

    /// TUF metadata was refused: bad signatures, rollback, expiry, sizes, ... (a security
    /// refusal: the repository or something between it and us is not trustworthy right now).
    #[error("update metadata refused: {0}")]
    Tuf(#[from] TufError),

    /// A downloaded file does not have the SHA-256 signed in targets metadata.
    #[error("download of {target} refused: sha256 is {found}, signed metadata says {expected}")]
    HashMismatch { target: String, expected: String, found: String },

    /// The server sent more bytes than targets metadata signs for (endless-data defence).
    #[error("download of {target} refused: server sent more than the signed length of {length} bytes")]
    TargetTooLarge { target: String, length: u64 },

    /// The update asked for is not (or no longer) in the verified targets metadata.
    #[error("target {target} is not in the verified targets metadata")]
    UnknownTarget { target: String },

    /// The server has no such file.
    #[error("{url}: not found (HTTP 404)")]
    NotFound { url: String },

    /// The server answered with an unexpected HTTP status.
    #[error("{url}: server answered HTTP {status}")]
    Status { url: String, status: u16 },

    /// Could not reach the server, or the connection broke.
    #[error("{url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },

    /// The server did not answer in time.
    #[error("{url}: timed out")]
    Timeout { url: String },

    /// The transfer was slower than the configured minimum rate (slow-retrieval defence).
    #[error("{url}: transfer too slow ({rate} bytes/s, minimum {min} bytes/s)")]
    SlowRetrieval { url: String, rate: u64, min: u64 },

    /// The connection ended before the whole file arrived; the partial file is kept so the
    /// next attempt resumes.
    #[error("{url}: download incomplete ({got} of {expected} bytes); it will resume")]
    Incomplete { url: String, got: u64, expected: u64 },

    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// `rollback` found no previous version to restore.
    #[error("no previous version to roll back to ({} does not exist)", path.display())]
    NoPrevious { path: PathBuf },
}

impl ClientError {
    /// A stable snake_case name for this kind of error (TUF refusals use the TUF code).
    pub fn code(&self) -> &'static str {
        match self {
            ClientError::Config { .. } => "invalid_config",
            ClientError::Tuf(e) => e.code(),
            ClientError::HashMismatch { .. } => "hash_mismatch",
            ClientError::TargetTooLarge { .. } => "target_too_large",
            ClientError::UnknownTarget { .. } => "unknown_target",
            ClientError::NotFound { .. } => "not_found",
            ClientError::Status { .. } => "server_error",
            ClientError::Http { .. } => "network_error",
            ClientError::Timeout { .. } => "timeout",
            ClientError::SlowRetrieval { .. } => "slow_retrieval",
            ClientError::Incomplete { .. } => "incomplete_download",
            ClientError::Io { .. } => "io_error",
            ClientError::NoPrevious { .. } => "no_previous_version",
        }
    }

    /// The process exit code the CLI uses: 4 for a verification or security refusal, 5 when
    /// the server is unreachable, misbehaving or slow, 1 for anything else. (3, "no update
    /// available", is not an error.)
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Tuf(_)
            | ClientError::HashMismatch { .. }
            | ClientError::TargetTooLarge { .. }
            | ClientError::UnknownTarget { .. } => 4,
            ClientError::NotFound { .. }
            | ClientError::Status { .. }
            | ClientError::Http { .. }
            | ClientError::Timeout { .. }
            | ClientError::SlowRetrieval { .. }
            | ClientError::Incomplete { .. } => 5,
            ClientError::Config { .. } | ClientError::Io { .. } | ClientError::NoPrevious { .. } => 1,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ClientError {
        let path = path.into();
        move |source| ClientError::Io { path, source }
    }

    pub(crate) fn http(url: &str, e: reqwest::Error) -> ClientError {
        if e.is_timeout() {
            return ClientError::Timeout { url: url.to_owned() };
        }
        // The URL is already in our message; keep reqwest's text free of it.
        ClientError::Http { url: url.to_owned(), source: e.without_url() }
    }
}
