//! [`RolloutStore`](crate::RolloutStore) for both SQL stores, written once (see `sql.rs` for
//! how): schedules, halt rules and webhooks, downgrade offers. Every write is the store's one
//! writer transaction, and a write that changes releases announces the app (`changed`) so other
//! instances rebuild their update views.

macro_rules! rollout_store_sql {
    ($store:ty, $row:ty) => {
        mod rollout_sql {
            use super::*;
            use crate::rollouts::{HealthSettingsRow, RolloutStore, ScheduleRow, ScheduleState};

            fn schedule_from_row(row: &$row) -> Result<ScheduleRow, StoreError> {
                let state: String = row.try_get("state")?;
                Ok(ScheduleRow {
                    app: row.try_get("app")?,
                    version: row.try_get("version")?,
                    schedule: row.try_get("schedule")?,
                    step: u32::try_from(u64_col(row, "step")?).map_err(|_| StoreError::Corrupt("schedule step".into()))?,
                    step_started_at: row.try_get("step_started_at")?,
                    state: ScheduleState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("schedule state {state:?}")))?,
                    evidence: row.try_get("evidence")?,
                    updated_at: row.try_get("updated_at")?,
                })
            }

            #[async_trait]
            impl RolloutStore for $store {
                async fn get_health_settings(&self, app: &str) -> Result<Option<HealthSettingsRow>, StoreError> {
                    let row = sqlx::query("SELECT * FROM health_settings WHERE app = $1").bind(app).fetch_optional(self.pool()).await?;
                    row.map(|r| {
                        Ok(HealthSettingsRow {
                            app: r.try_get("app")?,
                            rules: r.try_get("rules")?,
                            webhook_url: r.try_get("webhook_url")?,
                            webhook_format: r.try_get("webhook_format")?,
                            updated_at: r.try_get("updated_at")?,
                        })
                    })
                    .transpose()
                }

                async fn put_health_settings(&self, row: &HealthSettingsRow, audit: &AuditEntry) -> Result<(), StoreError> {
                    let (_w, mut tx) = self.begin_write().await?;
                    sqlx::query(
                        "INSERT INTO health_settings (app, rules, webhook_url, webhook_format, updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (app) DO UPDATE SET rules = excluded.rules, webhook_url = excluded.webhook_url,
               webhook_format = excluded.webhook_format, updated_at = excluded.updated_at",
                    )
                    .bind(&row.app)
                    .bind(&row.rules)
                    .bind(&row.webhook_url)
                    .bind(&row.webhook_format)
                    .bind(&row.updated_at)
                    .execute(&mut *tx)
                    .await?;
                    write_changes(&mut tx, &row.app, &Changeset { audit: Some(audit.clone()), ..Default::default() }).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn delete_schedule(&self, app: &str, version: &str, audit: &AuditEntry) -> Result<bool, StoreError> {
                    let (_w, mut tx) = self.begin_write().await?;
                    let gone = sqlx::query("DELETE FROM rollout_schedules WHERE app = $1 AND version = $2")
                        .bind(app)
                        .bind(version)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if gone == 0 {
                        return Ok(false);
                    }
                    write_changes(&mut tx, app, &Changeset { audit: Some(audit.clone()), ..Default::default() }).await?;
                    tx.commit().await?;
                    Ok(true)
                }

                async fn get_schedule(&self, app: &str, version: &str) -> Result<Option<ScheduleRow>, StoreError> {
                    let row = sqlx::query("SELECT * FROM rollout_schedules WHERE app = $1 AND version = $2")
                        .bind(app)
                        .bind(version)
                        .fetch_optional(self.pool())
                        .await?;
                    row.as_ref().map(schedule_from_row).transpose()
                }

                async fn list_schedules(&self, state: ScheduleState) -> Result<Vec<ScheduleRow>, StoreError> {
                    let rows = sqlx::query("SELECT * FROM rollout_schedules WHERE state = $1 ORDER BY updated_at, app, version")
                        .bind(state.as_str())
                        .fetch_all(self.pool())
                        .await?;
                    rows.iter().map(schedule_from_row).collect()
                }

                async fn apply_schedule(
                    &self,
                    app: &str,
                    changes: &Changeset,
                    s: &ScheduleRow,
                    expect: Option<(u32, ScheduleState)>,
                ) -> Result<(), StoreError> {
                    let (_w, mut tx) = self.begin_write().await?;
                    if let Some((step, state)) = expect {
                        let row = sqlx::query("SELECT * FROM rollout_schedules WHERE app = $1 AND version = $2")
                            .bind(app)
                            .bind(&s.version)
                            .fetch_optional(&mut *tx)
                            .await?;
                        let now = row.as_ref().map(schedule_from_row).transpose()?.map(|r| (r.step, r.state));
                        if now != Some((step, state)) {
                            return Err(StoreError::Conflict(format!("the schedule of {app} {} moved meanwhile", s.version)));
                        }
                    }
                    write_changes(&mut tx, app, changes).await?;
                    sqlx::query(
                        "INSERT INTO rollout_schedules (app, version, schedule, step, step_started_at, state, evidence, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (app, version) DO UPDATE SET schedule = excluded.schedule, step = excluded.step,
               step_started_at = excluded.step_started_at, state = excluded.state, evidence = excluded.evidence,
               updated_at = excluded.updated_at",
                    )
                    .bind(app)
                    .bind(&s.version)
                    .bind(&s.schedule)
                    .bind(i64::from(s.step))
                    .bind(&s.step_started_at)
                    .bind(s.state.as_str())
                    .bind(&s.evidence)
                    .bind(&s.updated_at)
                    .execute(&mut *tx)
                    .await?;
                    if !changes.releases.is_empty() || !changes.metadata.is_empty() {
                        self.changed(&mut tx, app).await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn list_downgrades(&self, app: &str) -> Result<Vec<String>, StoreError> {
                    Ok(sqlx::query_scalar("SELECT version FROM release_downgrades WHERE app = $1 ORDER BY version")
                        .bind(app)
                        .fetch_all(self.pool())
                        .await?)
                }

                async fn apply_with_downgrade(&self, app: &str, changes: &Changeset, version: &str) -> Result<(), StoreError> {
                    let (_w, mut tx) = self.begin_write().await?;
                    write_changes(&mut tx, app, changes).await?;
                    sqlx::query(
                        "INSERT INTO release_downgrades (app, version, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (app, version) DO NOTHING",
                    )
                    .bind(app)
                    .bind(version)
                    .bind(crate::now_rfc3339())
                    .execute(&mut *tx)
                    .await?;
                    self.changed(&mut tx, app).await?;
                    tx.commit().await?;
                    Ok(())
                }
            }
        }
    };
}

pub(crate) use rollout_store_sql;

/// Behaviour both stores must show, run against each (`sqlite.rs`, `postgres.rs` tests).
#[cfg(test)]
pub(crate) mod conformance {
    use crate::{
        AppRow, AuditEntry, Changeset, HealthSettingsRow, MetaStore, ReleaseRow, ReleaseState, ScheduleRow, ScheduleState, StoreError,
    };

    async fn with_app(s: &dyn MetaStore) {
        s.create_app(&AppRow { id: "r".into(), created_at: crate::now_rfc3339() }, &Changeset::default()).await.unwrap();
    }

    fn release(bp: u32) -> ReleaseRow {
        ReleaseRow {
            app: "r".into(),
            version: "2.0.0".into(),
            channel: "stable".into(),
            notes: None,
            state: ReleaseState::Published,
            rollout_bp: bp,
            salt: "s".into(),
            created_at: crate::now_rfc3339(),
            published_at: None,
            artifacts: vec![],
            compat: Default::default(),
        }
    }

    fn schedule(step: u32, state: ScheduleState) -> ScheduleRow {
        ScheduleRow {
            app: "r".into(),
            version: "2.0.0".into(),
            schedule: "1%:1h,100%".into(),
            step,
            step_started_at: "2030-01-01T00:00:00Z".into(),
            state,
            evidence: None,
            updated_at: "2030-01-01T00:00:00Z".into(),
        }
    }

    pub async fn a_schedule_moves_with_its_release_or_not_at_all(s: &dyn MetaStore) {
        with_app(s).await;
        let first = Changeset { releases: vec![release(100)], ..Default::default() };
        s.apply_schedule("r", &first, &schedule(0, ScheduleState::Active), None).await.unwrap();
        assert_eq!(s.list_schedules(ScheduleState::Active).await.unwrap(), vec![schedule(0, ScheduleState::Active)]);
        // Two instances advance from step 0: the first wins, the second writes nothing.
        let step1 = Changeset { releases: vec![release(10_000)], ..Default::default() };
        s.apply_schedule("r", &step1, &schedule(1, ScheduleState::Completed), Some((0, ScheduleState::Active))).await.unwrap();
        let late = Changeset { releases: vec![release(5_000)], ..Default::default() };
        let e = s.apply_schedule("r", &late, &schedule(1, ScheduleState::Active), Some((0, ScheduleState::Active))).await;
        assert!(matches!(e, Err(StoreError::Conflict(_))), "{e:?}");
        assert_eq!(s.list_releases("r").await.unwrap()[0].rollout_bp, 10_000);
        assert_eq!(s.get_schedule("r", "2.0.0").await.unwrap().unwrap().state, ScheduleState::Completed);
        assert!(s.list_schedules(ScheduleState::Active).await.unwrap().is_empty());
    }

    pub async fn settings_and_downgrades_round_trip(s: &dyn MetaStore) {
        with_app(s).await;
        assert_eq!(s.get_health_settings("r").await.unwrap(), None);
        let row = HealthSettingsRow {
            app: "r".into(),
            rules: Some("{}".into()),
            webhook_url: Some("http://127.0.0.1:1/hook".into()),
            webhook_format: "slack".into(),
            updated_at: crate::now_rfc3339(),
        };
        let audit =
            AuditEntry { actor: "t".into(), action: "x".into(), app: Some("r".into()), detail: serde_json::json!({}), request_id: None };
        s.put_health_settings(&row, &audit).await.unwrap();
        s.put_health_settings(&row, &audit).await.unwrap();
        assert_eq!(s.get_health_settings("r").await.unwrap(), Some(row));
        assert_eq!(s.list_audit(Some("r"), 0, 10).await.unwrap().len(), 2);
        let mut yanked = release(10_000);
        yanked.state = ReleaseState::Yanked;
        s.apply_with_downgrade("r", &Changeset { releases: vec![yanked.clone()], ..Default::default() }, "2.0.0").await.unwrap();
        s.apply_with_downgrade("r", &Changeset { releases: vec![yanked], ..Default::default() }, "2.0.0").await.unwrap();
        assert_eq!(s.list_downgrades("r").await.unwrap(), vec!["2.0.0".to_owned()]);
    }
}
