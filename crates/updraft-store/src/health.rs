//! What crash and session ingest keeps, and the release-health numbers rollouts are gated on.
//! [`HealthStore`] is a supertrait of [`MetaStore`](crate::MetaStore), so every metadata store
//! implements it. Nothing here ever sees a raw device id or an IP address: the server scrubs
//! and hashes (per-app salt) before calling in.

use async_trait::async_trait;

use crate::StoreError;

/// An app's ingest identity: the numeric Sentry project id and DSN public key, the salt its
/// client ids are hashed with, and how long its crash and session data is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestProject {
    pub project_id: i64,
    pub app: String,
    pub public_key: String,
    pub salt: String,
    pub retention_days: u32,
    pub created_at: String,
}

/// Counts for one release since a moment, the input to health rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HealthCounts {
    /// Sessions started.
    pub sessions: u64,
    /// Sessions that ended crashed or abnormal (the complement is "crash-free").
    pub crashed_sessions: u64,
    /// Distinct (hashed) clients that reported a session.
    pub clients: u64,
    /// Of those, clients with at least one crashed or abnormal session.
    pub crashed_clients: u64,
    /// Install reports from our client.
    pub installs: u64,
    /// Install reports that failed or rolled back.
    pub failed_installs: u64,
}

/// Session counts for one hour (`hour` is RFC 3339, the start of the hour, UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthBucket {
    pub hour: String,
    pub started: u64,
    pub crashed: u64,
    pub abnormal: u64,
    pub errored: u64,
}

/// A change to session counts: one Sentry `session` update or one bucket of an aggregated
/// `sessions` item. `sid` (single sessions only) makes repeats idempotent: a session is counted
/// as started once and as crashed once, however often it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionWrite {
    pub version: String,
    /// Updraft platform (`linux-x86_64`), empty when the SDK did not say.
    pub platform: String,
    pub environment: String,
    /// Start of the hour the session started in, RFC 3339 UTC.
    pub hour: String,
    pub sid: Option<String>,
    /// Hashed client id (per-app salt).
    pub client_hash: Option<String>,
    pub started: u64,
    pub crashed: u64,
    pub abnormal: u64,
    pub errored: u64,
    /// When the server received it, RFC 3339 UTC.
    pub at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallOutcome {
    Success,
    Failure,
    Rollback,
}

impl InstallOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Rollback => "rollback",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "success" => Self::Success,
            "failure" => Self::Failure,
            "rollback" => Self::Rollback,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    pub version: String,
    pub from_version: Option<String>,
    pub platform: String,
    pub outcome: InstallOutcome,
    pub client_hash: String,
    /// Scrubbed error text, for failures.
    pub error: Option<String>,
    pub received_at: String,
}

/// A scrubbed error event. `fingerprint` is the grouping key (already hashed to hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventWrite {
    pub event_id: String,
    pub fingerprint: String,
    pub title: String,
    pub received_at: String,
    pub timestamp: String,
    pub release: Option<String>,
    pub version: Option<String>,
    pub environment: Option<String>,
    pub platform: Option<String>,
    pub level: String,
    pub exc_type: Option<String>,
    pub message: Option<String>,
    pub client_hash: Option<String>,
    /// The scrubbed event as JSON.
    pub body: String,
}

/// Everything one or more envelopes for one app keep, written in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestBatch {
    pub events: Vec<EventWrite>,
    pub sessions: Vec<SessionWrite>,
    pub installs: Vec<InstallReport>,
}

/// What a batch changed: events already stored (same `event_id`) are not stored twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    pub events_stored: u64,
    pub events_duplicate: u64,
    pub sessions: u64,
    pub installs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRow {
    pub id: i64,
    pub fingerprint: String,
    pub title: String,
    pub exc_type: Option<String>,
    pub level: String,
    pub first_seen: String,
    pub last_seen: String,
    pub events: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub event_id: String,
    pub issue_id: i64,
    pub received_at: String,
    pub timestamp: String,
    pub release: Option<String>,
    pub version: Option<String>,
    pub environment: Option<String>,
    pub platform: Option<String>,
    pub level: String,
    pub exc_type: Option<String>,
    pub message: Option<String>,
    pub body: String,
}

/// Rows removed by an erasure or a retention pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    pub events: u64,
    pub sessions: u64,
    pub clients: u64,
    pub installs: u64,
    pub buckets: u64,
}

#[async_trait]
pub trait HealthStore: Send + Sync + 'static {
    async fn ingest_project(&self, app: &str) -> Result<Option<IngestProject>, StoreError>;
    async fn ingest_project_by_id(&self, project_id: i64) -> Result<Option<IngestProject>, StoreError>;
    /// Returns the app's project, creating it with `public_key` and `salt` when it has none.
    /// `NotFound` when the app does not exist.
    async fn ensure_ingest_project(
        &self,
        app: &str,
        public_key: &str,
        salt: &str,
        retention_days: u32,
    ) -> Result<IngestProject, StoreError>;
    async fn set_retention(&self, app: &str, days: u32) -> Result<bool, StoreError>;
    async fn list_ingest_projects(&self) -> Result<Vec<IngestProject>, StoreError>;

    /// Writes batches in one transaction (one per app, all or nothing).
    async fn write_ingest(&self, batches: &[(String, IngestBatch)]) -> Result<Vec<IngestOutcome>, StoreError>;

    /// Counts for one release since `since` (RFC 3339). Session counts come from hourly
    /// buckets: a bucket counts when its hour contains or follows `since`. Client counts are
    /// clients seen at or after `since`; a client is crashed when its last crash is at or after
    /// it. Install counts are reports received at or after it. With `platform`, rows of that
    /// platform and rows whose platform is unknown (Sentry SDKs do not send one) count.
    async fn release_health(&self, app: &str, version: &str, platform: Option<&str>, since: &str) -> Result<HealthCounts, StoreError>;
    /// Hourly session buckets of one release since `since`, oldest first.
    async fn health_buckets(&self, app: &str, version: &str, since: &str) -> Result<Vec<HealthBucket>, StoreError>;
    /// Versions with any session or install data, for overviews.
    async fn health_versions(&self, app: &str) -> Result<Vec<String>, StoreError>;

    /// Issues of an app, most recently seen first.
    async fn list_issues(&self, app: &str, limit: u32) -> Result<Vec<IssueRow>, StoreError>;
    async fn get_issue(&self, app: &str, id: i64) -> Result<Option<IssueRow>, StoreError>;
    /// Events of one issue, newest first.
    async fn list_events(&self, app: &str, issue_id: i64, limit: u32) -> Result<Vec<EventRow>, StoreError>;

    /// Deletes everything tied to one hashed client id, with the audit event, in one transaction.
    async fn erase_client(&self, app: &str, client_hash: &str, audit: &crate::AuditEntry) -> Result<Erased, StoreError>;
    /// Deletes the app's crash, session and install data older than `before` (RFC 3339).
    async fn apply_retention(&self, app: &str, before: &str) -> Result<Erased, StoreError>;
}

/// `since` as stored timestamps compare: RFC 3339 UTC, whole seconds. Also the start of its hour.
pub fn normalize_since(since: &str) -> Result<(String, String), StoreError> {
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(since, &Rfc3339)
        .map_err(|_| StoreError::Invalid(format!("not an RFC 3339 time: {since:?}")))?
        .to_offset(time::UtcOffset::UTC);
    let exact = t.replace_nanosecond(0).unwrap_or(t);
    let hour = exact.replace_minute(0).and_then(|t| t.replace_second(0)).unwrap_or(exact);
    let f = |t: time::OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
    Ok((f(exact), f(hour)))
}

/// The start of the hour a Unix time falls in, RFC 3339 UTC.
pub fn hour_of(unix: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::from_unix_timestamp(unix - unix.rem_euclid(3600)).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&Rfc3339).unwrap_or_default()
}
