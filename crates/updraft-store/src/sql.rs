//! The SQL both metadata stores share. SQLite and PostgreSQL differ in a few column types,
//! in how a writer is serialized and in how other instances learn of a change; the queries,
//! the row mapping and the changeset logic are the same, so they are written once here as a
//! macro that each store expands over its own `sqlx` database type.
//!
//! A store that expands it provides, as inherent methods:
//! `begin_write()` (a transaction that is the only writer: an in-process lock for SQLite, an
//! advisory transaction lock for PostgreSQL, returned with its guard), `begin_read()` (one
//! consistent snapshot for several statements) and `changed(tx, app)` (tells other instances
//! at commit; nothing for SQLite). Placeholders are `$N`, which both engines accept.

macro_rules! meta_store_sql {
    ($store:ty, $db:ty, $row:ty, { $($extra:tt)* }) => {
fn u64_col(row: &$row, col: &str) -> Result<u64, StoreError> {
    let v: i64 = row.try_get(col)?;
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {col}")))
}

fn release_from_row(row: &$row) -> Result<ReleaseRow, StoreError> {
    let state: String = row.try_get("state")?;
    let compat: String = row.try_get("compat")?;
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
        compat: serde_json::from_str(&compat).map_err(|_| StoreError::Corrupt("release compat metadata".into()))?,
    })
}

fn metadata_from_row(row: &$row) -> Result<MetadataRow, StoreError> {
    Ok(MetadataRow {
        role: row.try_get("role")?,
        version: u64_col(row, "version")?,
        body: row.try_get("body")?,
        expires: row.try_get("expires")?,
    })
}

fn token_from_row(row: &$row) -> Result<TokenRow, StoreError> {
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

type Tx<'a> = sqlx::Transaction<'a, $db>;

async fn append_audit_tx(tx: &mut Tx<'_>, e: &AuditEntry) -> Result<(), StoreError> {
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
    sqlx::query("INSERT INTO audit (at, actor, action, app, detail, request_id, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
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

async fn write_changes(tx: &mut Tx<'_>, app: &str, changes: &Changeset) -> Result<(), StoreError> {
    for r in &changes.releases {
        sqlx::query(
            "INSERT INTO releases (app, version, channel, notes, state, rollout_bp, salt, created_at, published_at, compat)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (app, version) DO UPDATE SET channel = excluded.channel, notes = excluded.notes,
               state = excluded.state, rollout_bp = excluded.rollout_bp, published_at = excluded.published_at,
               compat = excluded.compat",
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
        .bind(serde_json::to_string(&r.compat).map_err(|_| StoreError::Corrupt("release compat metadata".into()))?)
        .execute(&mut **tx)
        .await?;
        for a in &r.artifacts {
            sqlx::query(
                "INSERT INTO artifacts (app, version, platform, filename, sha256, size) VALUES ($1, $2, $3, $4, $5, $6)
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
        let res = sqlx::query("INSERT INTO tuf_metadata (app, role, version, body, expires, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
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
impl MetaStore for $store {
    async fn migrate_to(&self, last: u64) -> Result<(), StoreError> {
        {
            let (_w, mut tx) = self.begin_write().await?;
            sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)")
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v as u64 <= last) {
            let (_w, mut tx) = self.begin_write().await?;
            let done: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
            if done.is_none() {
                // One statement at a time: migration files hold no ';' inside literals.
                for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                    sqlx::query(stmt).execute(&mut *tx).await?;
                }
                sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
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
        Ok(sqlx::query_scalar("SELECT value FROM settings WHERE key = $1").bind(key).fetch_optional(&self.pool).await?)
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        let (_w, mut tx) = self.begin_write().await?;
        let res = sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(res.rows_affected() == 1)
    }

    async fn delete_setting(&self, key: &str) -> Result<(), StoreError> {
        let (_w, mut tx) = self.begin_write().await?;
        sqlx::query("DELETE FROM settings WHERE key = $1").bind(key).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_app(&self, app: &AppRow, changes: &Changeset) -> Result<(), StoreError> {
        let (_w, mut tx) = self.begin_write().await?;
        let res =
            sqlx::query("INSERT INTO apps (id, created_at) VALUES ($1, $2)").bind(&app.id).bind(&app.created_at).execute(&mut *tx).await;
        if let Err(e) = res {
            return Err(if is_unique_violation(&e) { StoreError::Conflict(format!("app {} exists", app.id)) } else { e.into() });
        }
        write_changes(&mut tx, &app.id, changes).await?;
        self.changed(&mut tx, &app.id).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_app(&self, id: &str) -> Result<Option<AppRow>, StoreError> {
        let row = sqlx::query("SELECT id, created_at FROM apps WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.map(|r| Ok(AppRow { id: r.try_get("id")?, created_at: r.try_get("created_at")? })).transpose()
    }

    async fn list_apps(&self) -> Result<Vec<AppRow>, StoreError> {
        let rows = sqlx::query("SELECT id, created_at FROM apps ORDER BY id").fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok(AppRow { id: r.try_get("id")?, created_at: r.try_get("created_at")? })).collect()
    }

    async fn list_releases(&self, app: &str) -> Result<Vec<ReleaseRow>, StoreError> {
        // One read transaction, so releases and artifacts are from the same moment.
        let mut tx = self.begin_read().await?;
        let rows = sqlx::query("SELECT * FROM releases WHERE app = $1 ORDER BY created_at, version").bind(app).fetch_all(&mut *tx).await?;
        let mut releases = rows.iter().map(release_from_row).collect::<Result<Vec<_>, _>>()?;
        let arts = sqlx::query("SELECT version, platform, filename, sha256, size FROM artifacts WHERE app = $1 ORDER BY platform")
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
        let (_w, mut tx) = self.begin_write().await?;
        write_changes(&mut tx, app, changes).await?;
        self.changed(&mut tx, app).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn latest_metadata(&self, app: &str, role: &str) -> Result<Option<MetadataRow>, StoreError> {
        let row =
            sqlx::query("SELECT role, version, body, expires FROM tuf_metadata WHERE app = $1 AND role = $2 ORDER BY version DESC LIMIT 1")
                .bind(app)
                .bind(role)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(metadata_from_row).transpose()
    }

    async fn get_metadata(&self, app: &str, role: &str, version: u64) -> Result<Option<MetadataRow>, StoreError> {
        let Ok(version) = i64::try_from(version) else { return Ok(None) };
        let row = sqlx::query("SELECT role, version, body, expires FROM tuf_metadata WHERE app = $1 AND role = $2 AND version = $3")
            .bind(app)
            .bind(role)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(metadata_from_row).transpose()
    }

    async fn insert_token(&self, t: &TokenRow, audit: Option<&AuditEntry>) -> Result<(), StoreError> {
        let (_w, mut tx) = self.begin_write().await?;
        sqlx::query("INSERT INTO tokens (id, name, hash, role, apps, created_at, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
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
        let row = sqlx::query("SELECT * FROM tokens WHERE hash = $1").bind(hash).fetch_optional(&self.pool).await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM tokens ORDER BY created_at, id").fetch_all(&self.pool).await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, id: &str, at: &str, audit: Option<&AuditEntry>) -> Result<bool, StoreError> {
        let (_w, mut tx) = self.begin_write().await?;
        let res =
            sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL").bind(at).bind(id).execute(&mut *tx).await?;
        if res.rows_affected() == 1 {
            if let Some(a) = audit {
                append_audit_tx(&mut tx, a).await?;
            }
        }
        tx.commit().await?;
        Ok(res.rows_affected() == 1)
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let (_w, mut tx) = self.begin_write().await?;
        append_audit_tx(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_audit(&self, app: Option<&str>, after: i64, limit: u32) -> Result<Vec<AuditRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM audit WHERE seq > $1 AND (CAST($2 AS TEXT) IS NULL OR app = $2) ORDER BY seq LIMIT $3")
            .bind(after)
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


    async fn key_files(&self, app: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let rows = sqlx::query("SELECT name, body FROM key_files WHERE app = $1 ORDER BY name").bind(app).fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok((r.try_get("name")?, r.try_get("body")?))).collect()
    }

    async fn set_key_files(&self, app: &str, files: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        let (_w, mut tx) = self.begin_write().await?;
        sqlx::query("DELETE FROM key_files WHERE app = $1").bind(app).execute(&mut *tx).await?;
        for (name, body) in files {
            sqlx::query("INSERT INTO key_files (app, name, body) VALUES ($1, $2, $3)")
                .bind(app)
                .bind(name)
                .bind(body)
                .execute(&mut *tx)
                .await?;
        }
        self.changed(&mut tx, app).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn app_heads(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query("SELECT app, MAX(version) AS version FROM tuf_metadata WHERE role = 'timestamp' GROUP BY app ORDER BY app")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get("app")?, u64_col(r, "version")?))).collect()
    }

    $($extra)*
}

    };
}

pub(crate) use meta_store_sql;

/// The behaviour both stores must show, run by each store's tests.
#[cfg(test)]
pub(crate) mod conformance {
    use crate::*;

    fn meta(role: &str, version: u64) -> MetadataRow {
        MetadataRow { role: role.into(), version, body: format!("{role}{version}").into_bytes(), expires: "2030-01-01T00:00:00Z".into() }
    }

    pub async fn changeset_is_all_or_nothing(s: &dyn MetaStore) {
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
            compat: crate::ReleaseCompat { critical: true, min_system_version: Some("11.0".into()), ..Default::default() },
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

    pub async fn audit_events_chain(s: &dyn MetaStore) {
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
