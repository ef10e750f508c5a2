//! Updraft's storage edge: the metadata store (one trait; SQLite or PostgreSQL), the
//! content-addressed blob store, and signing-key files. Everything that touches the disk or a
//! database lives here; the server above it holds no persistent state of its own.
//!
//! ```no_run
//! # async fn demo() -> Result<(), updraft_store::StoreError> {
//! use updraft_store::{MetaStore, SqliteStore};
//! let store = SqliteStore::open(std::path::Path::new("updraft-data/updraft.db")).await?;
//! store.migrate().await?;
//! let apps = store.list_apps().await?;
//! # let _ = apps; Ok(()) }
//! ```

mod blob_store;
mod blobs;
pub mod copy;
mod error;
pub mod health;
pub mod keys;
mod meta;
mod model;
mod postgres;
mod rollouts;
mod s3;
mod sql;
mod sql_health;
mod sql_rollouts;
mod sqlite;

pub use blob_store::{BlobReader, BlobStore, BlobUrl};
pub use blobs::{is_sha256_hex, FileBlobs, FinishedUpload, Upload};
pub use error::{StoreError, UploadProblem};
pub use health::HealthStore;
pub use meta::{AppLock, MetaStore};
pub use model::*;
pub use postgres::{create_test_database, PgStore};
pub use rollouts::{HealthSettingsRow, RolloutStore, ScheduleRow, ScheduleState};
pub use s3::{S3Blobs, S3Object};
pub use sqlite::SqliteStore;

/// Where the metadata lives, from a `--database` URL.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://PATH`: one file, one instance (the default, `sqlite://DATA/updraft.db`).
    Sqlite(std::path::PathBuf),
    /// `postgres://…` or `postgresql://…`: shared by any number of instances.
    Postgres(String),
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl DatabaseUrl {
    /// Parses a database URL by its scheme. The error names the accepted forms and never
    /// echoes the URL (it may hold a password).
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path, like sqlite://updraft-data/updraft.db".into());
            }
            Ok(Self::Sqlite(path.into()))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(url.to_owned()))
        } else {
            Err("the database URL must start with sqlite:// or postgres://".into())
        }
    }

    /// The URL without its password, for logs.
    pub fn redacted(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite://{}", path.display()),
            Self::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(s), Some(at)) if at > s => {
                    let user = &url[s + 3..at];
                    let user = user.split_once(':').map_or(user, |(u, _)| u);
                    format!("{}{user}:***{}", &url[..s + 3], &url[at..])
                }
                _ => url.clone(),
            },
        }
    }

    /// Opens the store (creating a SQLite file and its directory if absent); does not migrate.
    pub async fn open(&self) -> Result<std::sync::Arc<dyn MetaStore>, StoreError> {
        Ok(match self {
            Self::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(StoreError::io(dir))?;
                }
                std::sync::Arc::new(SqliteStore::open(path).await?)
            }
            Self::Postgres(url) => std::sync::Arc::new(PgStore::open(url).await?),
        })
    }
}

/// The current time as RFC 3339 UTC with whole seconds, the one timestamp format stored.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Random bytes from the operating system, hex-encoded.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    getrandom::getrandom(&mut buf).expect("the operating system's random source failed");
    hex::encode(buf)
}
