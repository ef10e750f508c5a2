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

/// Schema migrations, applied in order, each once. The same list will serve PostgreSQL.
pub(crate) const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (3, include_str!("../migrations/sqlite/0003_ingest.sql")),
    (4, include_str!("../migrations/sqlite/0004_rollouts.sql")),
];

pub struct SqliteStore {
    pool: SqlitePool,
    pub(crate) write: Mutex<()>,
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
}

pub(crate) fn u64_col(row: &SqliteRow, col: &str) -> Result<u64, StoreError> {
    let v: i64 = row.try_get(col)?;
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {col}")))
}

fn release_from_row(row: &SqliteRow) -> Result<ReleaseRow, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(ReleaseRow {
        app: row.try_get("app")?,
        version: row.try_get("version")?,
        channel: row.try_get("channel")?,
        notes: row.try_get("notes")?,
        state: ReleaseState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("release state {state:?}")))?,
        rollout_bp: u32::try_from(u64_col(row, "rollout_bp")?).map_err(|_| StoreError::Corrupt("rollout".into()))?,
        salt: row.try_get("salt")?,
        created_at: row.try_get("created_at")?,
        published_at: row.try_get("published_at")?,
        artifacts: Vec::new(),
    })
}

fn metadata_from_row(row: &SqliteRow) -> Result<MetadataRow, StoreError> {
    Ok(MetadataRow {
        role: row.try_get("role")?,
        version: u64_col(row, "version")?,
        body: row.try_get("body")?,
        expires: row.try_get("expires")?,
    })
}

fn token_from_row(row: &SqliteRow) -> Result<TokenRow, StoreError> {
    let apps: String = row.try_get("apps")?;
    Ok(TokenRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        hash: row.try_get("hash")?,
        role: row.try_get("role")?,
        apps: serde_json::from_str(&apps).map_err(|_| StoreError::Corrupt("token apps".into()))?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

pub(crate) type Tx<'a> = sqlx::Transaction<'a, sqlx::Sqlite>;

pub(crate) async fn append_audit_tx(tx: &mut Tx<'_>, e: &AuditEntry) -> Result<(), StoreError> {
    let prev: Option<String> = sqlx::query_scalar("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetch_optional(&mut **tx).await?;
    let prev = prev.unwrap_or_else(|| updraft_core::audit::GENESIS.to_owned());
    let at = crate::now_rfc3339();
    let detail = e.detail.to_string();
    let fields = updraft_core::audit::EventFields {
        at: &at,
        actor: &e.actor,
        action: &e.action,
        app: e.app.as_deref(),
        detail: &detail,
        request_id: e.request_id.as_deref(),
    };
    let hash = updraft_core::audit::chain_hash(&prev, &fields);
    sqlx::query("INSERT INTO audit (at, actor, action, app, detail, request_id, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        .bind(&at)
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.app)
        .bind(&detail)
        .bind(&e.request_id)
        .bind(&prev)
        .bind(&hash)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(crate) async fn write_changes(tx: &mut Tx<'_>, app: &str, changes: &Changeset) -> Result<(), StoreError> {
    for r in &changes.releases {
        sqlx::query(
            "INSERT INTO releases (app, version, channel, notes, state, rollout_bp, salt, created_at, published_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (app, version) DO UPDATE SET channel = excluded.channel, notes = excluded.notes,
               state = excluded.state, rollout_bp = excluded.rollout_bp, published_at = excluded.published_at",
        )
        .bind(app)
        .bind(&r.version)
        .bind(&r.channel)
        .bind(&r.notes)
        .bind(r.state.as_str())
        .bind(i64::from(r.rollout_bp))
        .bind(&r.salt)
        .bind(&r.created_at)
        .bind(&r.published_at)
        .execute(&mut **tx)
        .await?;
        for a in &r.artifacts {
            sqlx::query(
                "INSERT INTO artifacts (app, version, platform, filename, sha256, size) VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT (app, version, platform) DO UPDATE SET filename = excluded.filename,
                   sha256 = excluded.sha256, size = excluded.size",
            )
            .bind(app)
            .bind(&r.version)
            .bind(&a.platform)
            .bind(&a.filename)
            .bind(&a.sha256)
            .bind(i64::try_from(a.size).map_err(|_| StoreError::Corrupt("artifact size".into()))?)
            .execute(&mut **tx)
            .await?;
        }
    }
    let now = crate::now_rfc3339();
    for m in &changes.metadata {
        let res = sqlx::query("INSERT INTO tuf_metadata (app, role, version, body, expires, created_at) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(app)
            .bind(&m.role)
            .bind(i64::try_from(m.version).map_err(|_| StoreError::Corrupt("metadata version".into()))?)
            .bind(&m.body)
            .bind(&m.expires)
            .bind(&now)
            .execute(&mut **tx)
            .await;
        if let Err(e) = res {
            return Err(if is_unique_violation(&e) {
                StoreError::Conflict(format!("{app} {} version {} exists", m.role, m.version))
            } else {
                e.into()
            });
        }
    }
    if let Some(e) = &changes.audit {
        append_audit_tx(tx, e).await?;
    }
    Ok(())
}

#[async_trait]
impl MetaStore for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        let _w = self.write.lock().await;
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)")
            .execute(&self.pool)
            .await?;
        for (version, sql) in MIGRATIONS {
            let mut tx = self.pool.begin().await?;
            let done: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
            if done.is_none() {
                // One statement at a time: migration files hold no ';' inside literals.
                for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                    sqlx::query(stmt).execute(&mut *tx).await?;
                }
                sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)")
                    .bind(version)
                    .bind(crate::now_rfc3339())
                    .execute(&mut *tx)
                    .await?;
                tracing::info!(version, "applied schema migration");
            }
            tx.commit().await?;
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT value FROM settings WHERE key = ?").bind(key).fetch_optional(&self.pool).await?)
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        let _w = self.write.lock().await;
        let res = sqlx::query("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() == 1)
    }

    async fn create_app(&self, app: &AppRow, changes: &Changeset) -> Result<(), StoreError> {
        let _w = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        let res =
            sqlx::query("INSERT INTO apps (id, created_at) VALUES (?, ?)").bind(&app.id).bind(&app.created_at).execute(&mut *tx).await;
        if let Err(e) = res {
            return Err(if is_unique_violation(&e) { StoreError::Conflict(format!("app {} exists", app.id)) } else { e.into() });
        }
        write_changes(&mut tx, &app.id, changes).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_app(&self, id: &str) -> Result<Option<AppRow>, StoreError> {
        let row = sqlx::query("SELECT id, created_at FROM apps WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        row.map(|r| Ok(AppRow { id: r.try_get("id")?, created_at: r.try_get("created_at")? })).transpose()
    }

    async fn list_apps(&self) -> Result<Vec<AppRow>, StoreError> {
        let rows = sqlx::query("SELECT id, created_at FROM apps ORDER BY id").fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok(AppRow { id: r.try_get("id")?, created_at: r.try_get("created_at")? })).collect()
    }

    async fn list_releases(&self, app: &str) -> Result<Vec<ReleaseRow>, StoreError> {
        // One read transaction, so releases and artifacts are from the same moment.
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query("SELECT * FROM releases WHERE app = ? ORDER BY created_at, version").bind(app).fetch_all(&mut *tx).await?;
        let mut releases = rows.iter().map(release_from_row).collect::<Result<Vec<_>, _>>()?;
        let arts = sqlx::query("SELECT version, platform, filename, sha256, size FROM artifacts WHERE app = ? ORDER BY platform")
            .bind(app)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        // By version, so matching stays linear: a scan per artifact made loading 10,000
        // releases take a quarter of a second.
        let index: std::collections::HashMap<String, usize> = releases.iter().enumerate().map(|(i, r)| (r.version.clone(), i)).collect();
        for a in &arts {
            let version: String = a.try_get("version")?;
            let art = ArtifactRow {
                platform: a.try_get("platform")?,
                filename: a.try_get("filename")?,
                sha256: a.try_get("sha256")?,
                size: u64_col(a, "size")?,
            };
            if let Some(&i) = index.get(&version) {
                releases[i].artifacts.push(art);
            }
        }
        Ok(releases)
    }

    async fn apply(&self, app: &str, changes: &Changeset) -> Result<(), StoreError> {
        let _w = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        write_changes(&mut tx, app, changes).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn latest_metadata(&self, app: &str, role: &str) -> Result<Option<MetadataRow>, StoreError> {
        let row =
            sqlx::query("SELECT role, version, body, expires FROM tuf_metadata WHERE app = ? AND role = ? ORDER BY version DESC LIMIT 1")
                .bind(app)
                .bind(role)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(metadata_from_row).transpose()
    }

    async fn get_metadata(&self, app: &str, role: &str, version: u64) -> Result<Option<MetadataRow>, StoreError> {
        let Ok(version) = i64::try_from(version) else { return Ok(None) };
        let row = sqlx::query("SELECT role, version, body, expires FROM tuf_metadata WHERE app = ? AND role = ? AND version = ?")
            .bind(app)
            .bind(role)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(metadata_from_row).transpose()
    }

    async fn insert_token(&self, t: &TokenRow, audit: Option<&AuditEntry>) -> Result<(), StoreError> {
        let _w = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO tokens (id, name, hash, role, apps, created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
            .bind(&t.id)
            .bind(&t.name)
            .bind(&t.hash)
            .bind(&t.role)
            .bind(serde_json::to_string(&t.apps).unwrap_or_else(|_| "[]".into()))
            .bind(&t.created_at)
            .bind(&t.expires_at)
            .bind(&t.revoked_at)
            .execute(&mut *tx)
            .await?;
        if let Some(a) = audit {
            append_audit_tx(&mut tx, a).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM tokens WHERE hash = ?").bind(hash).fetch_optional(&self.pool).await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM tokens ORDER BY created_at, id").fetch_all(&self.pool).await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, id: &str, at: &str, audit: Option<&AuditEntry>) -> Result<bool, StoreError> {
        let _w = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        let res =
            sqlx::query("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL").bind(at).bind(id).execute(&mut *tx).await?;
        if res.rows_affected() == 1 {
            if let Some(a) = audit {
                append_audit_tx(&mut tx, a).await?;
            }
        }
        tx.commit().await?;
        Ok(res.rows_affected() == 1)
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let _w = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        append_audit_tx(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_audit(&self, app: Option<&str>, after: i64, limit: u32) -> Result<Vec<AuditRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM audit WHERE seq > ? AND (? IS NULL OR app = ?) ORDER BY seq LIMIT ?")
            .bind(after)
            .bind(app)
            .bind(app)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    seq: r.try_get("seq")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    app: r.try_get("app")?,
                    detail: r.try_get("detail")?,
                    request_id: r.try_get("request_id")?,
                    prev_hash: r.try_get("prev_hash")?,
                    hash: r.try_get("hash")?,
                })
            })
            .collect()
    }
}

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

    fn meta(role: &str, version: u64) -> MetadataRow {
        MetadataRow { role: role.into(), version, body: format!("{role}{version}").into_bytes(), expires: "2030-01-01T00:00:00Z".into() }
    }

    #[tokio::test]
    async fn changeset_is_all_or_nothing() {
        let (_d, s) = store().await;
        let app = AppRow { id: "a".into(), created_at: crate::now_rfc3339() };
        s.create_app(&app, &Changeset { metadata: vec![meta("targets", 1)], ..Default::default() }).await.unwrap();
        assert!(matches!(s.create_app(&app, &Changeset::default()).await, Err(StoreError::Conflict(_))));
        let release = ReleaseRow {
            app: "a".into(),
            version: "1.0.0".into(),
            channel: "stable".into(),
            notes: None,
            state: ReleaseState::Published,
            rollout_bp: 10000,
            salt: "s".into(),
            created_at: crate::now_rfc3339(),
            published_at: None,
            artifacts: vec![ArtifactRow { platform: "linux-x86_64".into(), filename: "f".into(), sha256: "00".into(), size: 1 }],
        };
        // Metadata version 1 exists: the whole changeset, release included, must be refused.
        let bad = Changeset { releases: vec![release.clone()], metadata: vec![meta("targets", 2), meta("targets", 1)], audit: None };
        assert!(matches!(s.apply("a", &bad).await, Err(StoreError::Conflict(_))));
        assert!(s.list_releases("a").await.unwrap().is_empty());
        assert_eq!(s.latest_metadata("a", "targets").await.unwrap().unwrap().version, 1);
        let good = Changeset { releases: vec![release.clone()], metadata: vec![meta("targets", 2)], audit: None };
        s.apply("a", &good).await.unwrap();
        assert_eq!(s.list_releases("a").await.unwrap(), vec![release]);
        assert_eq!(s.get_metadata("a", "targets", 2).await.unwrap().unwrap().body, b"targets2");
    }

    #[tokio::test]
    async fn audit_events_chain() {
        let (_d, s) = store().await;
        for i in 0..3 {
            s.append_audit(&AuditEntry {
                actor: "t".into(),
                action: format!("a{i}"),
                app: None,
                detail: serde_json::json!({"i": i}),
                request_id: None,
            })
            .await
            .unwrap();
        }
        let rows = s.list_audit(None, 0, 10).await.unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].prev_hash, rows[0].hash);
        let events = rows.iter().map(|r| (r.seq, r.prev_hash.as_str(), r.hash.as_str(), r.fields()));
        assert_eq!(updraft_core::audit::verify_chain(updraft_core::audit::GENESIS, events), Ok(rows[2].hash.clone()));
    }
}
