//! The admin API under `/v1/admin/`: apps, uploads, releases, rollouts, tokens, audit. Every
//! handler authenticates (the [`Caller`] extractor), checks role and app scope, validates its
//! input into typed values, and calls one operation in [`crate::ops`]. Wire types live here,
//! apart from storage rows.

use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use updraft_core::{AppId, Channel, Percent, Platform, Version};
use updraft_store::{ReleaseRow, TokenRow, Upload};

use crate::auth::{hash_secret, new_secret, Caller, Role};
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse, Json, Path, Query};
use crate::ops::{self, NewArtifact, NewRelease, ReleaseChange};
use crate::state::AppState;

/// The request id the middleware assigned (`X-Request-Id`), for audit events.
pub struct RequestId(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestId(parts.headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned)))
    }
}

// ---- wire types ----

#[derive(Serialize)]
pub struct AppInfo {
    pub id: String,
    pub created_at: String,
    /// Where the app's trusted root lives: clients pin this file.
    pub trusted_root: String,
}

#[derive(Serialize)]
pub struct ArtifactInfo {
    pub platform: String,
    pub filename: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Serialize)]
pub struct ReleaseInfo {
    pub app: String,
    pub version: String,
    pub channel: String,
    pub notes: Option<String>,
    pub state: &'static str,
    pub rollout_percent: f64,
    pub created_at: String,
    pub published_at: Option<String>,
    pub artifacts: Vec<ArtifactInfo>,
}

impl From<&ReleaseRow> for ReleaseInfo {
    fn from(r: &ReleaseRow) -> Self {
        ReleaseInfo {
            app: r.app.clone(),
            version: r.version.clone(),
            channel: r.channel.clone(),
            notes: r.notes.clone(),
            state: r.state.as_str(),
            rollout_percent: f64::from(r.rollout_bp) / 100.0,
            created_at: r.created_at.clone(),
            published_at: r.published_at.clone(),
            artifacts: r
                .artifacts
                .iter()
                .map(|a| ArtifactInfo {
                    platform: a.platform.clone(),
                    filename: a.filename.clone(),
                    sha256: a.sha256.clone(),
                    size: a.size,
                })
                .collect(),
        }
    }
}

#[derive(Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub role: String,
    pub apps: Vec<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl From<&TokenRow> for TokenInfo {
    fn from(t: &TokenRow) -> Self {
        TokenInfo {
            id: t.id.clone(),
            name: t.name.clone(),
            role: t.role.clone(),
            apps: t.apps.clone(),
            created_at: t.created_at.clone(),
            expires_at: t.expires_at.clone(),
            revoked_at: t.revoked_at.clone(),
        }
    }
}

#[derive(Serialize)]
pub struct UploadInfo {
    pub id: String,
    pub size: u64,
    pub offset: u64,
}

impl From<&Upload> for UploadInfo {
    fn from(u: &Upload) -> Self {
        UploadInfo { id: u.id.clone(), size: u.size, offset: u.offset }
    }
}

// ---- apps ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    id: String,
}

fn app_info(state: &AppState, id: &str, created_at: &str) -> AppInfo {
    AppInfo {
        id: id.to_owned(),
        created_at: created_at.to_owned(),
        trusted_root: format!("{}/tuf/{id}/metadata/1.root.json", state.public_url),
    }
}

pub async fn create_app(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Json(body): Json<CreateApp>,
) -> ApiResult<Response> {
    caller.require(Role::Admin)?;
    let app: AppId = parse("invalid_app_id", &body.id)?;
    let row = ops::create_app(&state, &caller, &app, rid.as_deref()).await?;
    Ok((StatusCode::CREATED, axum::Json(app_info(&state, &row.id, &row.created_at))).into_response())
}

pub async fn list_apps(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Role::Viewer)?;
    let apps: Vec<AppInfo> = state
        .store
        .list_apps()
        .await?
        .iter()
        .filter(|a| caller.can_see_app(&a.id))
        .map(|a| app_info(&state, &a.id, &a.created_at))
        .collect();
    Ok(axum::Json(serde_json::json!({ "apps": apps })).into_response())
}

pub async fn get_app(State(state): State<AppState>, caller: Caller, Path(app): Path<String>) -> ApiResult<Response> {
    let app: AppId = parse("invalid_app_id", &app)?;
    caller.require_app(Role::Viewer, app.as_str())?;
    let row = state.store.get_app(app.as_str()).await?.ok_or_else(|| ApiError::app_not_found(app.as_str()))?;
    Ok(axum::Json(app_info(&state, &row.id, &row.created_at)).into_response())
}

// ---- uploads ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUpload {
    size: u64,
}

pub async fn create_upload(State(state): State<AppState>, caller: Caller, Json(body): Json<CreateUpload>) -> ApiResult<Response> {
    caller.require(Role::Publisher)?;
    if body.size == 0 {
        return Err(ApiError::bad_request("empty_upload", "an artifact must not be empty"));
    }
    if body.size > state.config.max_upload_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "upload_too_large",
            format!("{} bytes is over this server's limit of {} bytes", body.size, state.config.max_upload_bytes),
        ));
    }
    let up = state.blobs.create_upload(body.size, &caller.token_id).await?;
    Ok((StatusCode::CREATED, axum::Json(UploadInfo::from(&up))).into_response())
}

async fn own_upload(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Upload> {
    state
        .blobs
        .get_upload(id)
        .await?
        .filter(|u| u.owner == caller.token_id)
        .ok_or_else(|| ApiError::not_found("upload_not_found", format!("no upload {id:?} for this token")))
}

pub async fn get_upload(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    caller.require(Role::Publisher)?;
    let up = own_upload(&state, &caller, &id).await?;
    Ok(([("upload-offset", up.offset.to_string())], axum::Json(UploadInfo::from(&up))).into_response())
}

/// `PATCH /v1/admin/uploads/{id}` with `Upload-Offset: N`: appends the body at N.
pub async fn append_upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    caller.require(Role::Publisher)?;
    let up = own_upload(&state, &caller, &id).await?;
    let offset: u64 =
        headers.get("upload-offset").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok()).ok_or_else(|| {
            ApiError::bad_request("missing_upload_offset", "send the byte offset this body starts at as 'Upload-Offset: N'")
        })?;
    let declared = headers.get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| offset.saturating_add(n) > up.size) {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "upload_too_large", "the body would go past the upload's declared size"));
    }
    let new_offset = state.blobs.append(&up, offset, body.into_data_stream()).await?;
    Ok(([("upload-offset", new_offset.to_string())], axum::Json(UploadInfo { id: up.id, size: up.size, offset: new_offset }))
        .into_response())
}

// ---- releases ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateArtifact {
    platform: String,
    filename: String,
    upload_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRelease {
    version: String,
    channel: String,
    #[serde(default)]
    notes: Option<String>,
    artifacts: Vec<CreateArtifact>,
    /// Publish in the same transaction (default true). `false` leaves a draft.
    #[serde(default)]
    publish: Option<bool>,
    /// Rollout share in percent, two decimals (default 100).
    #[serde(default)]
    rollout_percent: Option<f64>,
}

fn percent(x: f64) -> ApiResult<Percent> {
    Percent::from_f64(x).map_err(|e| ApiError::bad_request("invalid_percent", e.to_string()))
}

pub async fn create_release(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(app): Path<String>,
    Json(body): Json<CreateRelease>,
) -> ApiResult<Response> {
    let app: AppId = parse("invalid_app_id", &app)?;
    ops::require_app(&state, &caller, &app, Role::Publisher).await?;
    if body.notes.as_ref().is_some_and(|n| n.len() > 64 * 1024) {
        return Err(ApiError::bad_request("notes_too_long", "release notes must be at most 64 KiB"));
    }
    let new = NewRelease {
        version: parse("invalid_version", &body.version)?,
        channel: parse::<Channel>("invalid_channel", &body.channel)?,
        notes: body.notes,
        artifacts: body
            .artifacts
            .into_iter()
            .map(|a| {
                Ok(NewArtifact {
                    platform: parse::<Platform>("invalid_platform", &a.platform)?,
                    filename: a.filename,
                    upload_id: a.upload_id,
                })
            })
            .collect::<ApiResult<_>>()?,
        publish: body.publish.unwrap_or(true),
        rollout: body.rollout_percent.map(percent).transpose()?.unwrap_or(Percent::FULL),
    };
    let row = ops::create_release(&state, &caller, &app, new, rid.as_deref()).await?;
    Ok((StatusCode::CREATED, axum::Json(ReleaseInfo::from(&row))).into_response())
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    state: Option<String>,
}

pub async fn list_releases(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let app: AppId = parse("invalid_app_id", &app)?;
    ops::require_app(&state, &caller, &app, Role::Viewer).await?;
    let mut releases = state.store.list_releases(app.as_str()).await?;
    releases.sort_by_key(|r| std::cmp::Reverse(r.version.parse::<Version>().ok()));
    let list: Vec<ReleaseInfo> =
        releases.iter().filter(|r| q.state.as_deref().is_none_or(|s| s == r.state.as_str())).map(ReleaseInfo::from).collect();
    Ok(axum::Json(serde_json::json!({ "releases": list })).into_response())
}

async fn find_release(state: &AppState, app: &AppId, version: &Version) -> ApiResult<ReleaseRow> {
    state
        .store
        .list_releases(app.as_str())
        .await?
        .into_iter()
        .find(|r| r.version.parse::<Version>().is_ok_and(|v| v == *version))
        .ok_or_else(|| ApiError::release_not_found(app.as_str(), &version.to_string()))
}

pub async fn get_release(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, version)): Path<(String, String)>,
) -> ApiResult<Response> {
    let app: AppId = parse("invalid_app_id", &app)?;
    let version: Version = parse("invalid_version", &version)?;
    ops::require_app(&state, &caller, &app, Role::Viewer).await?;
    Ok(axum::Json(ReleaseInfo::from(&find_release(&state, &app, &version).await?)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RolloutBody {
    #[serde(default)]
    percent: Option<f64>,
}

async fn change(
    state: AppState,
    caller: Caller,
    rid: Option<String>,
    app: String,
    version: String,
    make: impl FnOnce() -> ApiResult<ReleaseChange>,
) -> ApiResult<Response> {
    let app: AppId = parse("invalid_app_id", &app)?;
    let version: Version = parse("invalid_version", &version)?;
    ops::require_app(&state, &caller, &app, Role::Publisher).await?;
    let row = ops::change_release(&state, &caller, &app, &version, make()?, rid.as_deref()).await?;
    Ok(axum::Json(ReleaseInfo::from(&row)).into_response())
}

pub async fn publish_release(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path((app, version)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    // The body is optional: empty means "publish at the share set at creation".
    let body: RolloutBody = if body.iter().all(u8::is_ascii_whitespace) {
        RolloutBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_body", format!("invalid JSON body: {e}")))?
    };
    change(state, caller, rid, app, version, || Ok(ReleaseChange::Publish(body.percent.map(percent).transpose()?))).await
}

pub async fn set_rollout(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path((app, version)): Path<(String, String)>,
    Json(body): Json<RolloutBody>,
) -> ApiResult<Response> {
    change(state, caller, rid, app, version, || {
        let p = body.percent.ok_or_else(|| ApiError::bad_request("missing_percent", "send {\"percent\": N} with N from 0 to 100"))?;
        Ok(ReleaseChange::SetRollout(percent(p)?))
    })
    .await
}

pub async fn pause_rollout(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path((app, version)): Path<(String, String)>,
) -> ApiResult<Response> {
    change(state, caller, rid, app, version, || Ok(ReleaseChange::Pause)).await
}

pub async fn resume_rollout(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path((app, version)): Path<(String, String)>,
) -> ApiResult<Response> {
    change(state, caller, rid, app, version, || Ok(ReleaseChange::Resume)).await
}

pub async fn yank_release(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path((app, version)): Path<(String, String)>,
) -> ApiResult<Response> {
    change(state, caller, rid, app, version, || Ok(ReleaseChange::Yank)).await
}

// ---- tokens ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    role: String,
    #[serde(default)]
    apps: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    /// RFC 3339 UTC time after which the token stops working.
    #[serde(default)]
    expires_at: Option<String>,
}

pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Json(body): Json<CreateToken>,
) -> ApiResult<Response> {
    caller.require(Role::Admin)?;
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::bad_request("invalid_role", format!("unknown role {:?}: admin, publisher, viewer or ingest", body.role))
    })?;
    let apps = body.apps.iter().map(|a| parse::<AppId>("invalid_app_id", a).map(|a| a.to_string())).collect::<ApiResult<Vec<_>>>()?;
    let name = body.name.unwrap_or_else(|| format!("{}-token", role.as_str()));
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request("invalid_name", "a token name is 1 to 100 printable characters"));
    }
    if let Some(exp) = &body.expires_at {
        time::OffsetDateTime::parse(exp, &time::format_description::well_known::Rfc3339)
            .map_err(|_| ApiError::bad_request("invalid_expires_at", "expires_at must be an RFC 3339 time such as 2027-01-01T00:00:00Z"))?;
    }
    let secret = new_secret();
    let row = TokenRow {
        id: updraft_store::random_hex(8),
        name,
        hash: hash_secret(&secret),
        role: role.as_str().into(),
        apps,
        created_at: updraft_store::now_rfc3339(),
        expires_at: body.expires_at,
        revoked_at: None,
    };
    let event = ops::audit(
        &caller,
        "token.create",
        None,
        serde_json::json!({"id": row.id, "name": row.name, "role": row.role, "apps": row.apps}),
        rid.as_deref(),
    );
    state.store.insert_token(&row, Some(&event)).await?;
    let mut info = serde_json::to_value(TokenInfo::from(&row)).map_err(ApiError::internal)?;
    info["token"] = serde_json::Value::String(secret);
    Ok((StatusCode::CREATED, axum::Json(info)).into_response())
}

pub async fn list_tokens(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Role::Admin)?;
    let tokens: Vec<TokenInfo> = state.store.list_tokens().await?.iter().map(TokenInfo::from).collect();
    Ok(axum::Json(serde_json::json!({ "tokens": tokens })).into_response())
}

pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require(Role::Admin)?;
    let event = ops::audit(&caller, "token.revoke", None, serde_json::json!({"id": id}), rid.as_deref());
    if !state.store.revoke_token(&id, &updraft_store::now_rfc3339(), Some(&event)).await? {
        return Err(ApiError::not_found("token_not_found", "no active token with that id"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- audit ----

#[derive(Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    app: Option<String>,
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    limit: Option<u32>,
}

pub async fn list_audit(State(state): State<AppState>, caller: Caller, Query(q): Query<AuditQuery>) -> ApiResult<Response> {
    caller.require(Role::Viewer)?;
    let app = q.app.as_deref().map(|a| parse::<AppId>("invalid_app_id", a)).transpose()?;
    match &app {
        Some(a) => caller.require_app(Role::Viewer, a.as_str())?,
        // The whole log spans every app: only unscoped tokens may read it.
        None if !caller.apps.is_empty() => {
            return Err(ApiError::bad_request("app_required", "this token is scoped to apps: pass ?app=APP"))
        }
        None => {}
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = state.store.list_audit(app.as_ref().map(AppId::as_str), q.after.unwrap_or(0), limit).await?;
    let next = (rows.len() as u32 == limit).then(|| rows.last().map(|r| r.seq)).flatten();
    let events: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "seq": r.seq, "at": r.at, "actor": r.actor, "action": r.action, "app": r.app,
                "detail": serde_json::from_str::<serde_json::Value>(&r.detail).unwrap_or(serde_json::Value::Null),
                "request_id": r.request_id, "prev_hash": r.prev_hash, "hash": r.hash,
            })
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "events": events, "next_after": next })).into_response())
}
