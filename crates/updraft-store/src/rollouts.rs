//! Storage for health-gated rollouts: a release's rollout schedule and where it stands, an
//! app's halt rules and webhook, and the yanked releases whose clients are offered a downgrade.
//! [`RolloutStore`] is a supertrait of [`crate::MetaStore`], so every metadata store has it.

use async_trait::async_trait;

use crate::{AuditEntry, Changeset, StoreError};

/// Where a scheduled rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleState {
    /// The background job moves it along.
    Active,
    /// The last step is reached.
    Completed,
    /// A rule tripped and the release was halted; `evidence` says why.
    Halted,
}

impl ScheduleState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Completed => "completed",
            Self::Halted => "halted",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "completed" => Self::Completed,
            "halted" => Self::Halted,
            _ => return None,
        })
    }
}

/// A release's rollout schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRow {
    pub app: String,
    pub version: String,
    /// The schedule in its canonical text form (`1%:1h,10%:6h,100%`).
    pub schedule: String,
    /// Index of the step the release is at.
    pub step: u32,
    /// When that step was reached (RFC 3339): its soak time counts from here.
    pub step_started_at: String,
    pub state: ScheduleState,
    /// JSON: the health report behind the last halt.
    pub evidence: Option<String>,
    pub updated_at: String,
}

/// An app's halt rules (JSON, `None` = the defaults) and webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettingsRow {
    pub app: String,
    pub rules: Option<String>,
    pub webhook_url: Option<String>,
    /// `json` (generic) or `slack` (`{"text": …}`).
    pub webhook_format: String,
    pub updated_at: String,
}

#[async_trait]
pub trait RolloutStore {
    async fn get_health_settings(&self, app: &str) -> Result<Option<HealthSettingsRow>, StoreError>;
    /// Inserts or replaces an app's settings, with the audit event, in one transaction.
    async fn put_health_settings(&self, row: &HealthSettingsRow, audit: &AuditEntry) -> Result<(), StoreError>;

    async fn get_schedule(&self, app: &str, version: &str) -> Result<Option<ScheduleRow>, StoreError>;
    /// Removes a release's schedule with its audit event, in one transaction; `false` (nothing
    /// written) when there is none. A job that read the row before fails its own `expect`.
    async fn delete_schedule(&self, app: &str, version: &str, audit: &AuditEntry) -> Result<bool, StoreError>;
    /// Schedules in one state (all apps), oldest first.
    async fn list_schedules(&self, state: ScheduleState) -> Result<Vec<ScheduleRow>, StoreError>;
    /// Writes `changes` and the schedule row in one transaction. With `expect`, the stored row
    /// must still be at that step and state, or nothing is written and the answer is
    /// `Conflict` (another server instance moved it first).
    async fn apply_schedule(
        &self,
        app: &str,
        changes: &Changeset,
        schedule: &ScheduleRow,
        expect: Option<(u32, ScheduleState)>,
    ) -> Result<(), StoreError>;

    /// Yanked releases (versions) of an app whose clients are offered a downgrade.
    async fn list_downgrades(&self, app: &str) -> Result<Vec<String>, StoreError>;
    /// Writes `changes` (the yank) and marks the version for downgrades, in one transaction.
    async fn apply_with_downgrade(&self, app: &str, changes: &Changeset, version: &str) -> Result<(), StoreError>;
}
