//! Updraft's storage edge: the metadata store (one trait; SQLite now, PostgreSQL to join), the
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

mod blobs;
mod error;
pub mod health;
mod rollouts;
pub mod keys;
mod meta;
mod model;
mod sqlite;
mod sqlite_health;
mod sqlite_rollouts;

pub use blobs::{is_sha256_hex, BlobStore, FinishedUpload, Upload};
pub use error::{StoreError, UploadProblem};
pub use health::HealthStore;
pub use rollouts::{HealthSettingsRow, RolloutStore, ScheduleRow, ScheduleState};
pub use meta::MetaStore;
pub use model::*;
pub use sqlite::SqliteStore;

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
