//! The PostgreSQL metadata store, for any number of `updraft serve` instances sharing one
//! database. The queries are the SQLite store's (`sql.rs`); what differs is here:
//!
//! - writers are serialized across instances by an advisory transaction lock, so the audit
//!   chain (which reads the previous hash) can never fork;
//! - the app lock is a session advisory lock held on its own connection for the length of a
//!   change (read releases, sign, commit), so TUF versions stay gap-free between instances;
//! - every commit that changes an app sends `NOTIFY updraft_changes, 'APP'`, which the other
//!   instances `LISTEN` to (see [`MetaStore::watch`]).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions, PgRow};
use sqlx::{PgPool, Row};

use crate::{
    AppLock, AppRow, ArtifactRow, AuditEntry, AuditRow, Changeset, MetaStore, MetadataRow, ReleaseRow, ReleaseState, StoreError, TokenRow,
};

/// Schema migrations, each the twin of `migrations/sqlite/` under the same number.
pub(crate) const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (2, include_str!("../migrations/postgres/0002_release_compat.sql")),
    (3, include_str!("../migrations/postgres/0003_ingest.sql")),
    (4, include_str!("../migrations/postgres/0004_rollouts.sql")),
    (5, include_str!("../migrations/postgres/0005_key_files.sql")),
];

/// Advisory lock classes (the first key of PostgreSQL's two-key advisory locks).
const WRITE_LOCK: i32 = 0x5550_0001;
const APP_LOCK: i32 = 0x5550_0002;
/// The notification channel.
const CHANNEL: &str = "updraft_changes";

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `postgres://…` (the database must exist).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let opts = PgConnectOptions::from_str(url)?.application_name("updraft");
        // One plain connection first: an unreachable server or a refused login fails at once,
        // where the pool would retry until its acquire timeout.
        let probe = <sqlx::PgConnection as sqlx::Connection>::connect_with(&opts).await?;
        sqlx::Connection::close(probe).await?;
        let pool = PgPoolOptions::new().max_connections(10).acquire_timeout(Duration::from_secs(30)).connect_with(opts).await?;
        Ok(Self { pool })
    }

    /// The pool, for tests and tools that inspect the database directly.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A transaction that is the only writer in the whole database.
    async fn begin_write(&self) -> Result<((), Tx<'static>), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, 0)").bind(WRITE_LOCK).execute(&mut *tx).await?;
        Ok(((), tx))
    }

    /// Several statements from one snapshot (PostgreSQL's default isolation takes a new
    /// snapshot per statement).
    async fn begin_read(&self) -> Result<Tx<'static>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
        Ok(tx)
    }

    /// Queues the change notification; PostgreSQL delivers it when (and only if) `tx` commits.
    async fn changed(&self, tx: &mut Tx<'_>, app: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(app).execute(&mut **tx).await?;
        Ok(())
    }
}

/// A session advisory lock on a connection taken out of the pool; released on drop.
struct HeldAppLock {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
    app: String,
}

impl Drop for HeldAppLock {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else { return };
        let app = std::mem::take(&mut self.app);
        // Unlocking needs a round trip; a connection whose unlock fails is closed, which
        // releases every session lock it held.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let res = sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))").bind(APP_LOCK).bind(&app).execute(&mut *conn).await;
                if res.is_err() {
                    conn.close_on_drop();
                }
            });
        } else {
            conn.close_on_drop();
        }
    }
}

crate::sql::meta_store_sql!(PgStore, sqlx::Postgres, PgRow, {
    fn shared(&self) -> bool {
        true
    }

    async fn lock_app(&self, app: &str) -> Result<AppLock, StoreError> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1, hashtext($2))").bind(APP_LOCK).bind(app).execute(&mut *conn).await?;
        Ok(AppLock(Some(Box::new(HeldAppLock { conn: Some(conn), app: app.to_owned() }))))
    }

    async fn watch(&self) -> Result<Option<tokio::sync::mpsc::UnboundedReceiver<String>>, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(n) => {
                        if tx.send(n.payload().to_owned()).is_err() {
                            return; // nobody listens any more
                        }
                    }
                    Err(e) => {
                        // `recv` reconnects on the next call; what was sent meanwhile is
                        // caught by the poll.
                        tracing::warn!(error = %e, "change notifications interrupted");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Ok(Some(rx))
    }
});
crate::sql_health::health_store_sql!(PgStore, PgRow);
crate::sql_rollouts::rollout_store_sql!(PgStore, PgRow);

/// A fresh, empty database on the PostgreSQL server named by `UPDRAFT_TEST_POSTGRES` (default
/// `postgres://postgres@127.0.0.1:5432/postgres`, which `scripts/services.sh` makes reachable),
/// for tests. Returns its URL. Fails loudly when the server cannot be reached: a PostgreSQL
/// test never skips itself.
pub async fn create_test_database(prefix: &str) -> Result<String, StoreError> {
    let admin = std::env::var("UPDRAFT_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("{prefix}_{}", crate::random_hex(6));
    let opts = PgConnectOptions::from_str(&admin)?;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect_with(&opts).await?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await?;
    sqlx::Connection::close(conn).await?;
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    Ok(format!("{base}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> PgStore {
        let url = create_test_database("updraft_unit").await.expect("PostgreSQL must be reachable (scripts/services.sh)");
        let s = PgStore::open(&url).await.unwrap();
        s.migrate().await.unwrap();
        s.migrate().await.unwrap(); // idempotent
        s
    }

    #[tokio::test]
    async fn changeset_is_all_or_nothing() {
        crate::sql::conformance::changeset_is_all_or_nothing(&store().await).await;
    }

    #[tokio::test]
    async fn audit_events_chain() {
        crate::sql::conformance::audit_events_chain(&store().await).await;
    }

    async fn with_app() -> PgStore {
        let s = store().await;
        s.create_app(&AppRow { id: "a".into(), created_at: crate::now_rfc3339() }, &Changeset::default()).await.unwrap();
        s
    }

    #[tokio::test]
    async fn projects_are_created_once() {
        crate::sql_health::conformance::projects_are_created_once(&with_app().await).await;
    }

    #[tokio::test]
    async fn release_health_counts_sessions_clients_and_installs() {
        crate::sql_health::conformance::release_health_counts_sessions_clients_and_installs(&with_app().await).await;
    }

    #[tokio::test]
    async fn events_group_into_issues_once_and_erase_by_client() {
        crate::sql_health::conformance::events_group_into_issues_once_and_erase_by_client(&with_app().await).await;
    }

    #[tokio::test]
    async fn a_schedule_moves_with_its_release_or_not_at_all() {
        crate::sql_rollouts::conformance::a_schedule_moves_with_its_release_or_not_at_all(&store().await).await;
    }

    #[tokio::test]
    async fn rollout_settings_and_downgrades_round_trip() {
        crate::sql_rollouts::conformance::settings_and_downgrades_round_trip(&store().await).await;
    }

    #[tokio::test]
    async fn app_lock_excludes_other_holders_and_commits_are_announced() {
        let s = std::sync::Arc::new(store().await);
        let mut changes = s.watch().await.unwrap().expect("PostgreSQL announces changes");
        let held = s.lock_app("a").await.unwrap();
        let s2 = s.clone();
        let waiter = tokio::spawn(async move { s2.lock_app("a").await.map(|_| std::time::Instant::now()) });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiter.is_finished(), "a second holder got the app lock while it was held");
        let other = tokio::time::timeout(Duration::from_secs(5), s.lock_app("b")).await.expect("another app's lock is free");
        drop(other);
        let released = std::time::Instant::now();
        drop(held);
        let got = tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("released lock is taken").unwrap().unwrap();
        assert!(got >= released);

        let app = AppRow { id: "a".into(), created_at: crate::now_rfc3339() };
        s.create_app(&app, &Changeset::default()).await.unwrap();
        let note = tokio::time::timeout(Duration::from_secs(5), changes.recv()).await.expect("notified within 5 s").unwrap();
        assert_eq!(note, "a");
        // A refused change announces nothing.
        assert!(s.create_app(&app, &Changeset::default()).await.is_err());
        s.set_key_files("a", &[("k.key".into(), vec![1, 2, 3])]).await.unwrap();
        assert_eq!(changes.recv().await.unwrap(), "a");
        assert_eq!(s.key_files("a").await.unwrap(), vec![("k.key".to_owned(), vec![1, 2, 3])]);
        s.set_key_files("a", &[]).await.unwrap();
        assert!(s.key_files("a").await.unwrap().is_empty());
    }
}
