//! The SQLite metadata store: one file in the data directory, WAL journal, full fsync on commit.
//! SQLite allows one writer at a time, so writes take an in-process lock and run as a single
//! transaction each; readers never wait for writers (WAL).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use tokio::sync::Mutex;

use crate::{AppRow, ArtifactRow, AuditEntry, AuditRow, Changeset, MetaStore, MetadataRow, ReleaseRow, ReleaseState, StoreError, TokenRow};

/// Schema migrations, applied in order, each once. `migrations/postgres/` mirrors each one
/// under the same number.
pub(crate) const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_release_compat.sql")),
    (3, include_str!("../migrations/sqlite/0003_ingest.sql")),
    (4, include_str!("../migrations/sqlite/0004_rollouts.sql")),
    (5, include_str!("../migrations/sqlite/0005_key_files.sql")),
];

pub struct SqliteStore {
    pool: SqlitePool,
    write: Mutex<()>,
}

impl SqliteStore {
    /// Opens (creating if absent) the database file.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(opts).await?;
        Ok(Self { pool, write: Mutex::new(()) })
    }

    /// The pool, for tests and tools that inspect the database directly.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The one writer: SQLite allows one at a time, so writes queue here rather than on
    /// `SQLITE_BUSY`.
    async fn begin_write(&self) -> Result<(tokio::sync::MutexGuard<'_, ()>, Tx<'static>), StoreError> {
        let guard = self.write.lock().await;
        Ok((guard, self.pool.begin().await?))
    }

    async fn begin_read(&self) -> Result<Tx<'static>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    /// One process owns a SQLite file: nobody else to tell.
    async fn changed(&self, _tx: &mut Tx<'_>, _app: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

crate::sql::meta_store_sql!(SqliteStore, sqlx::Sqlite, SqliteRow, {});
crate::sql_health::health_store_sql!(SqliteStore, SqliteRow);
crate::sql_rollouts::rollout_store_sql!(SqliteStore, SqliteRow);

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        s.migrate().await.unwrap();
        s.migrate().await.unwrap(); // idempotent
        (dir, s)
    }

    #[tokio::test]
    async fn changeset_is_all_or_nothing() {
        let (_d, s) = store().await;
        crate::sql::conformance::changeset_is_all_or_nothing(&s).await;
    }

    #[tokio::test]
    async fn audit_events_chain() {
        let (_d, s) = store().await;
        crate::sql::conformance::audit_events_chain(&s).await;
    }

    async fn with_app() -> (tempfile::TempDir, SqliteStore) {
        let (d, s) = store().await;
        s.create_app(&AppRow { id: "a".into(), created_at: crate::now_rfc3339() }, &Changeset::default()).await.unwrap();
        (d, s)
    }

    #[tokio::test]
    async fn projects_are_created_once() {
        crate::sql_health::conformance::projects_are_created_once(&with_app().await.1).await;
    }

    #[tokio::test]
    async fn release_health_counts_sessions_clients_and_installs() {
        crate::sql_health::conformance::release_health_counts_sessions_clients_and_installs(&with_app().await.1).await;
    }

    #[tokio::test]
    async fn events_group_into_issues_once_and_erase_by_client() {
        crate::sql_health::conformance::events_group_into_issues_once_and_erase_by_client(&with_app().await.1).await;
    }

    #[tokio::test]
    async fn a_schedule_moves_with_its_release_or_not_at_all() {
        crate::sql_rollouts::conformance::a_schedule_moves_with_its_release_or_not_at_all(&store().await.1).await;
    }

    #[tokio::test]
    async fn rollout_settings_and_downgrades_round_trip() {
        crate::sql_rollouts::conformance::settings_and_downgrades_round_trip(&store().await.1).await;
    }
}
