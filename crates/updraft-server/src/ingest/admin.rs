//! Admin API over what ingest keeps: an app's DSN, per-release health (crash-free sessions and
//! clients, install failures, hourly buckets), issues and their events, retention, and erasing
//! everything tied to one install.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use updraft_core::AppId;
use updraft_store::health::IngestProject;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse, Json, Path, Query};
use crate::routes::admin::RequestId;
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AppPath {
    /// App id.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    app: String,
}

/// The app's ingest project, created (random public key and salt) on first use.
pub async fn project_for(state: &AppState, app: &AppId) -> ApiResult<IngestProject> {
    if let Some(p) = state.store.ingest_project(app.as_str()).await? {
        return Ok(p);
    }
    let key = updraft_store::random_hex(16);
    let salt = updraft_store::random_hex(32);
    match state.store.ensure_ingest_project(app.as_str(), &key, &salt, state.ingest.limits.retention_days).await {
        Ok(p) => Ok(p),
        Err(updraft_store::StoreError::NotFound(_)) => Err(ApiError::app_not_found(app.as_str())),
        Err(e) => Err(e.into()),
    }
}

/// `http(s)://KEY@HOST/PROJECT_ID` from the server's public URL.
pub fn dsn_of(public_url: &str, p: &IngestProject) -> String {
    let (scheme, rest) = public_url.split_once("://").unwrap_or(("http", public_url));
    format!("{scheme}://{}@{}/{}", p.public_key, rest.trim_end_matches('/'), p.project_id)
}

#[derive(Serialize, ToSchema)]
pub struct DsnInfo {
    app: String,
    project_id: i64,
    /// The DSN public key (not a secret: it ships inside apps).
    public_key: String,
    /// Give this to the Sentry SDK.
    dsn: String,
    retention_days: u32,
}

fn dsn_info(state: &AppState, p: &IngestProject) -> DsnInfo {
    DsnInfo {
        app: p.app.clone(),
        project_id: p.project_id,
        public_key: p.public_key.clone(),
        dsn: dsn_of(&state.public_url, p),
        retention_days: p.retention_days,
    }
}

/// The app's Sentry DSN (its ingest project is created on first request).
#[utoipa::path(get, path = "/v1/admin/apps/{app}/dsn", operation_id = "get_dsn", tag = "health", params(AppPath),
    responses((status = 200, description = "The DSN", body = DsnInfo)), security(("bearer" = [])))]
pub async fn get_dsn(State(state): State<AppState>, caller: Caller, Path(p): Path<AppPath>) -> ApiResult<Response> {
    let app: AppId = parse("invalid_app_id", &p.app)?;
    caller.require_app(Role::Viewer, app.as_str())?;
    let project = project_for(&state, &app).await?;
    Ok(axum::Json(dsn_info(&state, &project)).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRetention {
    /// Days crash, session and install data is kept (1–3650).
    #[schema(minimum = 1, maximum = 3650)]
    days: u32,
}

/// Sets how long the app's crash, session and install data is kept.
#[utoipa::path(put, path = "/v1/admin/apps/{app}/retention", operation_id = "set_retention", tag = "health", params(AppPath),
    request_body = SetRetention, responses((status = 200, description = "Updated", body = DsnInfo)), security(("bearer" = [])))]
pub async fn set_retention(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(p): Path<AppPath>,
    Json(body): Json<SetRetention>,
) -> ApiResult<Response> {
    let app: AppId = parse("invalid_app_id", &p.app)?;
    caller.require_app(Role::Admin, app.as_str())?;
    if !(1..=3650).contains(&body.days) {
        return Err(ApiError::bad_request("invalid_retention", "days must be from 1 to 3650"));
    }
    project_for(&state, &app).await?;
    state.store.set_retention(app.as_str(), body.days).await?;
    let event = crate::ops::audit(&caller, "privacy.retention", Some(&app), serde_json::json!({"days": body.days}), rid.as_deref());
    state.store.append_audit(&event).await?;
    let project = project_for(&state, &app).await?;
    Ok(axum::Json(dsn_info(&state, &project)).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HealthQuery {
    /// Only this release version.
    version: Option<String>,
    /// RFC 3339; default: 24 hours ago.
    since: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct HealthBucketInfo {
    /// Start of the hour, RFC 3339 UTC.
    hour: String,
    started: u64,
    crashed: u64,
    abnormal: u64,
    errored: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ReleaseHealthInfo {
    version: String,
    sessions: u64,
    crashed_sessions: u64,
    /// Share of sessions that did not crash (nor end abnormally); null without sessions.
    crash_free_sessions: Option<f64>,
    clients: u64,
    crashed_clients: u64,
    /// Share of clients without a crashed session; null without clients.
    crash_free_clients: Option<f64>,
    installs: u64,
    failed_installs: u64,
    buckets: Vec<HealthBucketInfo>,
}

#[derive(Serialize, ToSchema)]
pub struct HealthInfo {
    app: String,
    since: String,
    releases: Vec<ReleaseHealthInfo>,
}

fn ratio(good: u64, total: u64) -> Option<f64> {
    (total > 0).then(|| (total - good.min(total)) as f64 / total as f64)
}

/// Release health: crash-free sessions and clients, install failures and hourly buckets.
#[utoipa::path(get, path = "/v1/admin/apps/{app}/health", operation_id = "get_health", tag = "health", params(AppPath, HealthQuery),
    responses((status = 200, description = "Per-release health", body = HealthInfo)), security(("bearer" = [])))]
pub async fn get_health(
    State(state): State<AppState>,
    caller: Caller,
    Path(p): Path<AppPath>,
    Query(q): Query<HealthQuery>,
) -> ApiResult<Response> {
    let app: AppId = parse("invalid_app_id", &p.app)?;
    caller.require_app(Role::Viewer, app.as_str())?;
    state.store.get_app(app.as_str()).await?.ok_or_else(|| ApiError::app_not_found(app.as_str()))?;
    let since = match q.since {
        Some(s) => {
            updraft_store::health::normalize_since(&s)
                .map_err(|_| ApiError::bad_request("invalid_query", "since must be an RFC 3339 time"))?
                .0
        }
        None => {
            let t = time::OffsetDateTime::now_utc() - time::Duration::days(1);
            updraft_store::health::normalize_since(&t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default())?.0
        }
    };
    let versions = match q.version {
        Some(v) => vec![v],
        None => state.store.health_versions(app.as_str()).await?,
    };
    let mut releases = Vec::with_capacity(versions.len());
    for version in versions {
        let c = state.store.release_health(app.as_str(), &version, None, &since).await?;
        let buckets = state.store.health_buckets(app.as_str(), &version, &since).await?;
        releases.push(ReleaseHealthInfo {
            crash_free_sessions: ratio(c.crashed_sessions, c.sessions),
            crash_free_clients: ratio(c.crashed_clients, c.clients),
            version,
            sessions: c.sessions,
            crashed_sessions: c.crashed_sessions,
            clients: c.clients,
            crashed_clients: c.crashed_clients,
            installs: c.installs,
            failed_installs: c.failed_installs,
            buckets: buckets
                .into_iter()
                .map(|b| HealthBucketInfo {
                    hour: b.hour,
                    started: b.started,
                    crashed: b.crashed,
                    abnormal: b.abnormal,
                    errored: b.errored,
                })
                .collect(),
        });
    }
    Ok(axum::Json(HealthInfo { app: app.to_string(), since, releases }).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// At most this many (1–1000, default 100).
    limit: Option<u32>,
}

fn limit_of(q: &LimitQuery) -> ApiResult<u32> {
    let l = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&l) {
        return Err(ApiError::bad_request("invalid_query", "limit must be from 1 to 1000"));
    }
    Ok(l)
}

#[derive(Serialize, ToSchema)]
pub struct IssueInfo {
    id: i64,
    /// Grouping key (hash of the fingerprint or of exception type and top frames).
    fingerprint: String,
    title: String,
    exc_type: Option<String>,
    level: String,
    first_seen: String,
    last_seen: String,
    events: u64,
}

#[derive(Serialize, ToSchema)]
pub struct IssueList {
    issues: Vec<IssueInfo>,
}

fn issue_info(i: updraft_store::health::IssueRow) -> IssueInfo {
    IssueInfo {
        id: i.id,
        fingerprint: i.fingerprint,
        title: i.title,
        exc_type: i.exc_type,
        level: i.level,
        first_seen: i.first_seen,
        last_seen: i.last_seen,
        events: i.events,
    }
}

/// Error events grouped into issues, most recently seen first.
#[utoipa::path(get, path = "/v1/admin/apps/{app}/issues", operation_id = "list_issues", tag = "health", params(AppPath, LimitQuery),
    responses((status = 200, description = "Issues", body = IssueList)), security(("bearer" = [])))]
pub async fn list_issues(
    State(state): State<AppState>,
    caller: Caller,
    Path(p): Path<AppPath>,
    Query(q): Query<LimitQuery>,
) -> ApiResult<Response> {
    let app: AppId = parse("invalid_app_id", &p.app)?;
    caller.require_app(Role::Viewer, app.as_str())?;
    let limit = limit_of(&q)?;
    state.store.get_app(app.as_str()).await?.ok_or_else(|| ApiError::app_not_found(app.as_str()))?;
    let issues = state.store.list_issues(app.as_str(), limit).await?.into_iter().map(issue_info).collect();
    Ok(axum::Json(IssueList { issues }).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IssuePath {
    /// App id.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    app: String,
    /// Issue id.
    id: i64,
}

#[derive(Serialize, ToSchema)]
pub struct EventInfo {
    event_id: String,
    received_at: String,
    timestamp: String,
    release: Option<String>,
    version: Option<String>,
    environment: Option<String>,
    platform: Option<String>,
    level: String,
    exc_type: Option<String>,
    message: Option<String>,
    /// The event as stored: scrubbed, ids hashed, IP addresses removed.
    #[schema(value_type = Object)]
    event: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct EventList {
    issue: IssueInfo,
    events: Vec<EventInfo>,
}

/// The events of one issue, newest first.
#[utoipa::path(get, path = "/v1/admin/apps/{app}/issues/{id}/events", operation_id = "list_issue_events", tag = "health",
    params(IssuePath, LimitQuery), responses((status = 200, description = "Events", body = EventList)), security(("bearer" = [])))]
pub async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(p): Path<IssuePath>,
    Query(q): Query<LimitQuery>,
) -> ApiResult<Response> {
    let app: AppId = parse("invalid_app_id", &p.app)?;
    caller.require_app(Role::Viewer, app.as_str())?;
    let limit = limit_of(&q)?;
    let issue = state.store.get_issue(app.as_str(), p.id).await?.ok_or_else(|| ApiError::not_found("issue_not_found", "no such issue"))?;
    let events = state
        .store
        .list_events(app.as_str(), p.id, limit)
        .await?
        .into_iter()
        .map(|e| EventInfo {
            event: serde_json::from_str(&e.body).unwrap_or(serde_json::Value::Null),
            event_id: e.event_id,
            received_at: e.received_at,
            timestamp: e.timestamp,
            release: e.release,
            version: e.version,
            environment: e.environment,
            platform: e.platform,
            level: e.level,
            exc_type: e.exc_type,
            message: e.message,
        })
        .collect();
    Ok(axum::Json(EventList { issue: issue_info(issue), events }).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseRequest {
    /// The device or install id as the SDK sent it (`user.id`, session `did`, our client's
    /// install id); the server hashes it with the app's salt to find the data.
    #[schema(min_length = 1, max_length = 512)]
    client_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct EraseResult {
    events: u64,
    sessions: u64,
    clients: u64,
    installs: u64,
}

/// Deletes everything tied to one install (events, session ids, client records, install
/// reports), audited. Aggregate hourly counts hold no ids and stay.
#[utoipa::path(post, path = "/v1/admin/apps/{app}/privacy/erase", operation_id = "privacy_erase", tag = "health", params(AppPath),
    request_body = EraseRequest, responses((status = 200, description = "Erased", body = EraseResult)), security(("bearer" = [])))]
pub async fn erase(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(p): Path<AppPath>,
    Json(body): Json<EraseRequest>,
) -> ApiResult<Response> {
    let app: AppId = parse("invalid_app_id", &p.app)?;
    caller.require_app(Role::Admin, app.as_str())?;
    if body.client_id.is_empty() || body.client_id.len() > 512 {
        return Err(ApiError::bad_request("invalid_client_id", "client_id must be 1 to 512 characters"));
    }
    let project = project_for(&state, &app).await?;
    let hash = updraft_core::ingest::payload::hash_id(&project.salt, &body.client_id);
    // The audit event names the hash, never the id itself.
    let event = crate::ops::audit(&caller, "privacy.erase", Some(&app), serde_json::json!({"client_hash": hash}), rid.as_deref());
    let n = state.store.erase_client(app.as_str(), &hash, &event).await?;
    Ok(axum::Json(EraseResult { events: n.events, sessions: n.sessions, clients: n.clients, installs: n.installs }).into_response())
}

/// The retention pass (maintenance loop): per app, deletes data older than its retention.
pub async fn apply_retention(state: &AppState, now: time::OffsetDateTime) -> Result<u64, updraft_store::StoreError> {
    let mut total = 0;
    for p in state.store.list_ingest_projects().await? {
        let before = now - time::Duration::days(i64::from(p.retention_days));
        let before = before.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let n = state.store.apply_retention(&p.app, &before).await?;
        total += n.events + n.sessions + n.clients + n.installs + n.buckets;
    }
    Ok(total)
}
