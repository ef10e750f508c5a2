//! [`HealthStore`] for both SQL stores, written once (see `sql.rs` for how): ingest batches
//! are one transaction each call, however many envelopes they hold (the server's writer task
//! batches them), so a write costs one fsync. Sums are cast to `BIGINT` and upserts name their
//! table, so the same SQL runs on SQLite and PostgreSQL.

macro_rules! health_store_sql {
    ($store:ty, $row:ty) => {
mod health_sql {
use super::*;
use crate::health::{
    normalize_since, Erased, EventRow, HealthBucket, HealthCounts, HealthStore, IngestBatch, IngestOutcome, IngestProject, IssueRow,
};
fn project_from_row(r: &$row) -> Result<IngestProject, StoreError> {
    Ok(IngestProject {
        project_id: r.try_get("project_id")?,
        app: r.try_get("app")?,
        public_key: r.try_get("public_key")?,
        salt: r.try_get("salt")?,
        retention_days: u32::try_from(u64_col(r, "retention_days")?).map_err(|_| StoreError::Corrupt("retention".into()))?,
        created_at: r.try_get("created_at")?,
    })
}

fn issue_from_row(r: &$row) -> Result<IssueRow, StoreError> {
    Ok(IssueRow {
        id: r.try_get("id")?,
        fingerprint: r.try_get("fingerprint")?,
        title: r.try_get("title")?,
        exc_type: r.try_get("exc_type")?,
        level: r.try_get("level")?,
        first_seen: r.try_get("first_seen")?,
        last_seen: r.try_get("last_seen")?,
        events: u64_col(r, "events")?,
    })
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

async fn write_batch(tx: &mut Tx<'_>, app: &str, b: &IngestBatch) -> Result<IngestOutcome, StoreError> {
    let mut out = IngestOutcome::default();
    for e in &b.events {
        let exists: Option<i64> = sqlx::query_scalar("SELECT CAST(1 AS BIGINT) FROM events WHERE app = $1 AND event_id = $2")
            .bind(app)
            .bind(&e.event_id)
            .fetch_optional(&mut **tx)
            .await?;
        if exists.is_some() {
            out.events_duplicate += 1;
            continue;
        }
        let issue_id: i64 = sqlx::query_scalar(
            "INSERT INTO issues (app, fingerprint, title, exc_type, level, first_seen, last_seen, events) VALUES ($1, $2, $3, $4, $5, $6, $7, 1)
             ON CONFLICT (app, fingerprint) DO UPDATE SET last_seen = excluded.last_seen, events = issues.events + 1,
               level = excluded.level
             RETURNING id",
        )
        .bind(app)
        .bind(&e.fingerprint)
        .bind(&e.title)
        .bind(&e.exc_type)
        .bind(&e.level)
        .bind(&e.received_at)
        .bind(&e.received_at)
        .fetch_one(&mut **tx)
        .await?;
        sqlx::query(
            "INSERT INTO events (app, event_id, issue_id, received_at, timestamp, release, version, environment, platform, level,
               exc_type, message, client_hash, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(app)
        .bind(&e.event_id)
        .bind(issue_id)
        .bind(&e.received_at)
        .bind(&e.timestamp)
        .bind(&e.release)
        .bind(&e.version)
        .bind(&e.environment)
        .bind(&e.platform)
        .bind(&e.level)
        .bind(&e.exc_type)
        .bind(&e.message)
        .bind(&e.client_hash)
        .bind(&e.body)
        .execute(&mut **tx)
        .await?;
        out.events_stored += 1;
    }
    for s in &b.sessions {
        let (mut started, mut crashed, mut abnormal) = (s.started, s.crashed, s.abnormal);
        if let Some(sid) = &s.sid {
            // 0 = seen, 1 = crashed/abnormal. Repeats of a start or a crash count once.
            let prev: Option<i64> = sqlx::query_scalar("SELECT crashed FROM session_ids WHERE app = $1 AND sid = $2")
                .bind(app)
                .bind(sid)
                .fetch_optional(&mut **tx)
                .await?;
            if prev.is_some() {
                started = 0;
            }
            if prev == Some(1) {
                crashed = 0;
                abnormal = 0;
            }
            let now_crashed = prev == Some(1) || crashed + abnormal > 0;
            sqlx::query(
                "INSERT INTO session_ids (app, sid, client_hash, crashed, updated_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (app, sid) DO UPDATE SET crashed = excluded.crashed, updated_at = excluded.updated_at",
            )
            .bind(app)
            .bind(sid)
            .bind(&s.client_hash)
            .bind(i64::from(now_crashed))
            .bind(&s.at)
            .execute(&mut **tx)
            .await?;
        }
        if started + crashed + abnormal + s.errored > 0 {
            sqlx::query(
                "INSERT INTO session_buckets (app, version, platform, environment, hour, started, crashed, abnormal, errored)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (app, version, platform, environment, hour) DO UPDATE SET
                   started = session_buckets.started + excluded.started, crashed = session_buckets.crashed + excluded.crashed,
                   abnormal = session_buckets.abnormal + excluded.abnormal, errored = session_buckets.errored + excluded.errored",
            )
            .bind(app)
            .bind(&s.version)
            .bind(&s.platform)
            .bind(&s.environment)
            .bind(&s.hour)
            .bind(i64_of(started))
            .bind(i64_of(crashed))
            .bind(i64_of(abnormal))
            .bind(i64_of(s.errored))
            .execute(&mut **tx)
            .await?;
        }
        if let Some(client) = &s.client_hash {
            let crashed_at = (crashed + abnormal > 0).then_some(s.at.as_str());
            sqlx::query(
                "INSERT INTO session_clients (app, version, platform, client_hash, first_seen, last_seen, crashed_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (app, version, platform, client_hash) DO UPDATE SET last_seen = excluded.last_seen,
                   crashed_at = COALESCE(excluded.crashed_at, session_clients.crashed_at)",
            )
            .bind(app)
            .bind(&s.version)
            .bind(&s.platform)
            .bind(client)
            .bind(&s.at)
            .bind(&s.at)
            .bind(crashed_at)
            .execute(&mut **tx)
            .await?;
        }
        out.sessions += 1;
    }
    for r in &b.installs {
        sqlx::query(
            "INSERT INTO install_reports (app, version, from_version, platform, outcome, client_hash, error, received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(app)
        .bind(&r.version)
        .bind(&r.from_version)
        .bind(&r.platform)
        .bind(r.outcome.as_str())
        .bind(&r.client_hash)
        .bind(&r.error)
        .bind(&r.received_at)
        .execute(&mut **tx)
        .await?;
        out.installs += 1;
    }
    Ok(out)
}

/// Issues whose events were all deleted go too; the others keep a true count.
async fn recount_issues(tx: &mut Tx<'_>, app: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE issues SET events = (SELECT COUNT(*) FROM events WHERE events.issue_id = issues.id) WHERE app = $1")
        .bind(app)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM issues WHERE app = $1 AND events = 0").bind(app).execute(&mut **tx).await?;
    Ok(())
}

#[async_trait]
impl HealthStore for $store {
    async fn ingest_project(&self, app: &str) -> Result<Option<IngestProject>, StoreError> {
        let row = sqlx::query("SELECT * FROM ingest_projects WHERE app = $1").bind(app).fetch_optional(self.pool()).await?;
        row.as_ref().map(project_from_row).transpose()
    }

    async fn ingest_project_by_id(&self, project_id: i64) -> Result<Option<IngestProject>, StoreError> {
        let row = sqlx::query("SELECT * FROM ingest_projects WHERE project_id = $1").bind(project_id).fetch_optional(self.pool()).await?;
        row.as_ref().map(project_from_row).transpose()
    }

    async fn ensure_ingest_project(
        &self,
        app: &str,
        public_key: &str,
        salt: &str,
        retention_days: u32,
    ) -> Result<IngestProject, StoreError> {
        let (_w, mut tx) = self.begin_write().await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM apps WHERE id = $1").bind(app).fetch_optional(&mut *tx).await?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!("app {app}")));
        }
        sqlx::query(
            "INSERT INTO ingest_projects (app, public_key, salt, retention_days, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (app) DO NOTHING",
        )
        .bind(app)
        .bind(public_key)
        .bind(salt)
        .bind(i64::from(retention_days))
        .bind(crate::now_rfc3339())
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT * FROM ingest_projects WHERE app = $1").bind(app).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        project_from_row(&row)
    }

    async fn set_retention(&self, app: &str, days: u32) -> Result<bool, StoreError> {
        let (_w, mut tx) = self.begin_write().await?;
        let res = sqlx::query("UPDATE ingest_projects SET retention_days = $1 WHERE app = $2")
            .bind(i64::from(days))
            .bind(app)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(res.rows_affected() == 1)
    }

    async fn list_ingest_projects(&self) -> Result<Vec<IngestProject>, StoreError> {
        let rows = sqlx::query("SELECT * FROM ingest_projects ORDER BY project_id").fetch_all(self.pool()).await?;
        rows.iter().map(project_from_row).collect()
    }

    async fn write_ingest(&self, batches: &[(String, IngestBatch)]) -> Result<Vec<IngestOutcome>, StoreError> {
        let (_w, mut tx) = self.begin_write().await?;
        let mut out = Vec::with_capacity(batches.len());
        for (app, b) in batches {
            out.push(write_batch(&mut tx, app, b).await?);
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn release_health(&self, app: &str, version: &str, platform: Option<&str>, since: &str) -> Result<HealthCounts, StoreError> {
        let (since, hour) = normalize_since(since)?;
        let mut tx = self.begin_read().await?;
        let s = sqlx::query(
            "SELECT CAST(COALESCE(SUM(started), 0) AS BIGINT) AS started, CAST(COALESCE(SUM(crashed + abnormal), 0) AS BIGINT) AS crashed FROM session_buckets
             WHERE app = $1 AND version = $2 AND hour >= $3 AND (CAST($4 AS TEXT) IS NULL OR platform = $5 OR platform = '')",
        )
        .bind(app)
        .bind(version)
        .bind(&hour)
        .bind(platform)
        .bind(platform)
        .fetch_one(&mut *tx)
        .await?;
        let c = sqlx::query(
            "SELECT COUNT(DISTINCT client_hash) AS clients,
               COUNT(DISTINCT CASE WHEN crashed_at >= $1 THEN client_hash END) AS crashed
             FROM session_clients WHERE app = $2 AND version = $3 AND last_seen >= $4 AND (CAST($5 AS TEXT) IS NULL OR platform = $6 OR platform = '')",
        )
        .bind(&since)
        .bind(app)
        .bind(version)
        .bind(&since)
        .bind(platform)
        .bind(platform)
        .fetch_one(&mut *tx)
        .await?;
        let i = sqlx::query(
            "SELECT COUNT(*) AS installs, CAST(COALESCE(SUM(CASE WHEN outcome <> 'success' THEN 1 ELSE 0 END), 0) AS BIGINT) AS failed FROM install_reports
             WHERE app = $1 AND version = $2 AND received_at >= $3 AND (CAST($4 AS TEXT) IS NULL OR platform = $5 OR platform = '')",
        )
        .bind(app)
        .bind(version)
        .bind(&since)
        .bind(platform)
        .bind(platform)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(HealthCounts {
            sessions: u64_col(&s, "started")?,
            crashed_sessions: u64_col(&s, "crashed")?,
            clients: u64_col(&c, "clients")?,
            crashed_clients: u64_col(&c, "crashed")?,
            installs: u64_col(&i, "installs")?,
            failed_installs: u64_col(&i, "failed")?,
        })
    }

    async fn health_buckets(&self, app: &str, version: &str, since: &str) -> Result<Vec<HealthBucket>, StoreError> {
        let (_, hour) = normalize_since(since)?;
        let rows = sqlx::query(
            "SELECT hour, CAST(SUM(started) AS BIGINT) AS started, CAST(SUM(crashed) AS BIGINT) AS crashed,
               CAST(SUM(abnormal) AS BIGINT) AS abnormal, CAST(SUM(errored) AS BIGINT) AS errored
             FROM session_buckets WHERE app = $1 AND version = $2 AND hour >= $3 GROUP BY hour ORDER BY hour",
        )
        .bind(app)
        .bind(version)
        .bind(&hour)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HealthBucket {
                    hour: r.try_get("hour")?,
                    started: u64_col(r, "started")?,
                    crashed: u64_col(r, "crashed")?,
                    abnormal: u64_col(r, "abnormal")?,
                    errored: u64_col(r, "errored")?,
                })
            })
            .collect()
    }

    async fn health_versions(&self, app: &str) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT version FROM session_buckets WHERE app = $1 UNION SELECT version FROM install_reports WHERE app = $2 ORDER BY 1",
        )
        .bind(app)
        .bind(app)
        .fetch_all(self.pool())
        .await?)
    }

    async fn list_issues(&self, app: &str, limit: u32) -> Result<Vec<IssueRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM issues WHERE app = $1 ORDER BY last_seen DESC, id DESC LIMIT $2")
            .bind(app)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(issue_from_row).collect()
    }

    async fn get_issue(&self, app: &str, id: i64) -> Result<Option<IssueRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM issues WHERE app = $1 AND id = $2").bind(app).bind(id).fetch_optional(self.pool()).await?;
        row.as_ref().map(issue_from_row).transpose()
    }

    async fn list_events(&self, app: &str, issue_id: i64, limit: u32) -> Result<Vec<EventRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM events WHERE app = $1 AND issue_id = $2 ORDER BY received_at DESC, event_id LIMIT $3")
            .bind(app)
            .bind(issue_id)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(EventRow {
                    event_id: r.try_get("event_id")?,
                    issue_id: r.try_get("issue_id")?,
                    received_at: r.try_get("received_at")?,
                    timestamp: r.try_get("timestamp")?,
                    release: r.try_get("release")?,
                    version: r.try_get("version")?,
                    environment: r.try_get("environment")?,
                    platform: r.try_get("platform")?,
                    level: r.try_get("level")?,
                    exc_type: r.try_get("exc_type")?,
                    message: r.try_get("message")?,
                    body: r.try_get("body")?,
                })
            })
            .collect()
    }

    async fn erase_client(&self, app: &str, client_hash: &str, audit: &AuditEntry) -> Result<Erased, StoreError> {
        let (_w, mut tx) = self.begin_write().await?;
        let del = |table: &'static str| format!("DELETE FROM {table} WHERE app = $1 AND client_hash = $2");
        let events = sqlx::query(&del("events")).bind(app).bind(client_hash).execute(&mut *tx).await?.rows_affected();
        let sessions = sqlx::query(&del("session_ids")).bind(app).bind(client_hash).execute(&mut *tx).await?.rows_affected();
        let clients = sqlx::query(&del("session_clients")).bind(app).bind(client_hash).execute(&mut *tx).await?.rows_affected();
        let installs = sqlx::query(&del("install_reports")).bind(app).bind(client_hash).execute(&mut *tx).await?.rows_affected();
        let n = Erased { events, sessions, clients, installs, buckets: 0 };
        recount_issues(&mut tx, app).await?;
        let mut audit = audit.clone();
        if let serde_json::Value::Object(m) = &mut audit.detail {
            m.insert(
                "erased".into(),
                serde_json::json!({"events": n.events, "sessions": n.sessions, "clients": n.clients, "installs": n.installs}),
            );
        }
        append_audit_tx(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn apply_retention(&self, app: &str, before: &str) -> Result<Erased, StoreError> {
        let (before, hour) = normalize_since(before)?;
        let (_w, mut tx) = self.begin_write().await?;
        // (table, time column, cutoff): one statement shape for every kept kind of data.
        let mut deleted = [0u64; 5];
        for (n, (table, column, cutoff)) in [
            ("events", "received_at", &before),
            ("session_ids", "updated_at", &before),
            ("session_clients", "last_seen", &before),
            ("install_reports", "received_at", &before),
            ("session_buckets", "hour", &hour),
        ]
        .into_iter()
        .enumerate()
        {
            let sql = format!("DELETE FROM {table} WHERE app = $1 AND {column} < $2");
            deleted[n] = sqlx::query(&sql).bind(app).bind(cutoff).execute(&mut *tx).await?.rows_affected();
        }
        let [events, sessions, clients, installs, buckets] = deleted;
        let n = Erased { events, sessions, clients, installs, buckets };
        if n.events > 0 {
            recount_issues(&mut tx, app).await?;
        }
        tx.commit().await?;
        Ok(n)
    }
}

}
    };
}

pub(crate) use health_store_sql;

/// The health behaviour both stores must show; each store's tests run these on a store that
/// holds one app, `a`.
#[cfg(test)]
pub(crate) mod conformance {
    use crate::health::*;
    use crate::{AuditEntry, MetaStore, StoreError};

    fn session(sid: Option<&str>, client: Option<&str>, hour: &str, at: &str, started: u64, crashed: u64) -> SessionWrite {
        SessionWrite {
            version: "2.0.0".into(),
            platform: String::new(),
            environment: "production".into(),
            hour: hour.into(),
            sid: sid.map(Into::into),
            client_hash: client.map(Into::into),
            started,
            crashed,
            abnormal: 0,
            errored: 0,
            at: at.into(),
        }
    }

    fn install(outcome: InstallOutcome, platform: &str, client: &str, at: &str) -> InstallReport {
        InstallReport {
            version: "2.0.0".into(),
            from_version: Some("1.0.0".into()),
            platform: platform.into(),
            outcome,
            client_hash: client.into(),
            error: None,
            received_at: at.into(),
        }
    }

    pub async fn projects_are_created_once(s: &dyn MetaStore) {
        let p = s.ensure_ingest_project("a", "k1", "s1", 90).await.unwrap();
        let again = s.ensure_ingest_project("a", "k2", "s2", 30).await.unwrap();
        assert_eq!(p, again);
        assert_eq!(s.ingest_project_by_id(p.project_id).await.unwrap().unwrap().public_key, "k1");
        assert!(matches!(s.ensure_ingest_project("nope", "k", "s", 90).await, Err(StoreError::NotFound(_))));
    }

    pub async fn release_health_counts_sessions_clients_and_installs(s: &dyn MetaStore) {
        let h10 = "2026-01-01T10:00:00Z";
        let h11 = "2026-01-01T11:00:00Z";
        let batch = IngestBatch {
            events: vec![],
            sessions: vec![
                // Client c1: a session that starts, then crashes; the crash is sent twice.
                session(Some("s1"), Some("c1"), h10, "2026-01-01T10:05:00Z", 1, 0),
                session(Some("s1"), Some("c1"), h10, "2026-01-01T10:06:00Z", 0, 1),
                session(Some("s1"), Some("c1"), h10, "2026-01-01T10:06:00Z", 0, 1),
                // Client c2: two healthy sessions, the start of one repeated.
                session(Some("s2"), Some("c2"), h10, "2026-01-01T10:10:00Z", 1, 0),
                session(Some("s2"), Some("c2"), h10, "2026-01-01T10:10:00Z", 1, 0),
                session(Some("s3"), Some("c2"), h11, "2026-01-01T11:10:00Z", 1, 0),
                // An aggregate bucket without ids: 10 sessions, 2 crashed, in the 11:00 hour.
                session(None, None, h11, "2026-01-01T11:30:00Z", 10, 2),
            ],
            installs: vec![
                install(InstallOutcome::Success, "linux-x86_64", "c1", "2026-01-01T10:01:00Z"),
                install(InstallOutcome::Failure, "linux-x86_64", "c3", "2026-01-01T10:02:00Z"),
                install(InstallOutcome::Rollback, "windows-x86_64", "c4", "2026-01-01T11:02:00Z"),
            ],
        };
        s.write_ingest(&[("a".into(), batch)]).await.unwrap();
        let all = s.release_health("a", "2.0.0", None, "2026-01-01T00:00:00Z").await.unwrap();
        assert_eq!(
            all,
            HealthCounts { sessions: 13, crashed_sessions: 3, clients: 2, crashed_clients: 1, installs: 3, failed_installs: 2 }
        );
        // Since 10:30: the 10:00 bucket still overlaps; c1 was last seen before, c2 after.
        let later = s.release_health("a", "2.0.0", None, "2026-01-01T10:30:00+00:00").await.unwrap();
        assert_eq!(
            later,
            HealthCounts { sessions: 13, crashed_sessions: 3, clients: 1, crashed_clients: 0, installs: 1, failed_installs: 1 }
        );
        let h = s.release_health("a", "2.0.0", None, "2026-01-01T11:00:00Z").await.unwrap();
        assert_eq!((h.sessions, h.crashed_sessions), (11, 2));
        // Platform: sessions without one count for every platform; installs are per platform.
        let linux = s.release_health("a", "2.0.0", Some("linux-x86_64"), "2026-01-01T00:00:00Z").await.unwrap();
        assert_eq!((linux.sessions, linux.clients, linux.installs, linux.failed_installs), (13, 2, 2, 1));
        assert_eq!(s.release_health("a", "1.0.0", None, "2026-01-01T00:00:00Z").await.unwrap(), HealthCounts::default());
        assert!(matches!(s.release_health("a", "2.0.0", None, "yesterday").await, Err(StoreError::Invalid(_))));
        let buckets = s.health_buckets("a", "2.0.0", "2026-01-01T00:00:00Z").await.unwrap();
        assert_eq!(buckets.iter().map(|b| (b.hour.as_str(), b.started, b.crashed)).collect::<Vec<_>>(), vec![(h10, 2, 1), (h11, 11, 2)]);
    }

    pub async fn events_group_into_issues_once_and_erase_by_client(s: &dyn MetaStore) {
        let ev = |id: &str, fp: &str, client: &str| EventWrite {
            event_id: id.into(),
            fingerprint: fp.into(),
            title: format!("ValueError {fp}"),
            received_at: "2026-01-01T10:00:00Z".into(),
            timestamp: "2026-01-01T10:00:00Z".into(),
            release: Some("a@2.0.0".into()),
            version: Some("2.0.0".into()),
            environment: None,
            platform: Some("python".into()),
            level: "error".into(),
            exc_type: Some("ValueError".into()),
            message: None,
            client_hash: Some(client.into()),
            body: "{}".into(),
        };
        let b = IngestBatch { events: vec![ev("e1", "f1", "c1"), ev("e2", "f1", "c2"), ev("e3", "f2", "c1")], ..Default::default() };
        let out = s.write_ingest(&[("a".into(), b.clone())]).await.unwrap();
        assert_eq!((out[0].events_stored, out[0].events_duplicate), (3, 0));
        let again = s.write_ingest(&[("a".into(), b)]).await.unwrap();
        assert_eq!((again[0].events_stored, again[0].events_duplicate), (0, 3));
        let issues = s.list_issues("a", 10).await.unwrap();
        assert_eq!(issues.iter().map(|i| (i.fingerprint.as_str(), i.events)).collect::<Vec<_>>().len(), 2);
        let f1 = issues.iter().find(|i| i.fingerprint == "f1").unwrap();
        assert_eq!(f1.events, 2);
        assert_eq!(s.list_events("a", f1.id, 10).await.unwrap().len(), 2);
        let audit = AuditEntry {
            actor: "t".into(),
            action: "privacy.erase".into(),
            app: Some("a".into()),
            detail: serde_json::json!({}),
            request_id: None,
        };
        let n = s.erase_client("a", "c1", &audit).await.unwrap();
        assert_eq!(n.events, 2);
        let issues = s.list_issues("a", 10).await.unwrap();
        assert_eq!(issues.len(), 1, "the issue whose only event was erased is gone");
        assert_eq!(issues[0].events, 1);
        let log = s.list_audit(Some("a"), 0, 10).await.unwrap();
        assert!(log.last().unwrap().detail.contains("\"events\":2"));
        let kept = s.apply_retention("a", "2026-01-01T09:00:00Z").await.unwrap();
        assert_eq!(kept.events, 0);
        let gone = s.apply_retention("a", "2026-02-01T00:00:00Z").await.unwrap();
        assert_eq!(gone.events, 1);
        assert!(s.list_issues("a", 10).await.unwrap().is_empty());
    }
}
