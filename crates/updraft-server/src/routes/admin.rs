//! The admin API under `/v1/admin/`: apps, uploads, releases, rollouts, tokens, audit. Every
//! handler authenticates (the [`Caller`] extractor), checks role and app scope, validates its
//! input into typed values, and calls one operation in [`crate::ops`]. Wire types live here,
//! apart from storage rows; each handler is described for the OpenAPI document by its
//! `#[utoipa::path]` (error responses are added to every operation in `openapi.rs`).

use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use updraft_core::{AppId, Channel, Percent, Platform, Version};
use updraft_store::{ReleaseRow, TokenRow, Upload};
use utoipa::{IntoParams, ToSchema};

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

// ---- path and query parameters ----

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AppPath {
    /// App id.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub(crate) app: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ReleasePath {
    /// App id.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub(crate) app: String,
    /// SemVer 2.0 version.
    pub(crate) version: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdPath {
    /// The id the server gave when it was created.
    id: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListReleasesQuery {
    /// Only releases in this state.
    #[param(inline)]
    state: Option<StateFilter>,
}

#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum StateFilter {
    Draft,
    Published,
    Halted,
    Yanked,
}

impl StateFilter {
    fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Published => "published",
            Self::Halted => "halted",
            Self::Yanked => "yanked",
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only events about this app (required for tokens scoped to apps).
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    app: Option<String>,
    /// Events after this sequence number (the previous page's `next_after`).
    #[param(minimum = 0)]
    after: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

// ---- wire types ----

#[derive(Serialize, ToSchema)]
pub struct AppInfo {
    pub id: String,
    pub created_at: String,
    /// Where the app's trusted root is served: clients pin this file.
    pub trusted_root: String,
}

#[derive(Serialize, ToSchema)]
pub struct AppList {
    pub apps: Vec<AppInfo>,
}

#[derive(Serialize, ToSchema)]
pub struct ArtifactInfo {
    pub platform: String,
    pub filename: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ReleaseInfo {
    pub app: String,
    pub version: String,
    pub channel: String,
    pub notes: Option<String>,
    /// draft, published, halted or yanked.
    pub state: &'static str,
    pub rollout_percent: f64,
    pub created_at: String,
    pub published_at: Option<String>,
    pub artifacts: Vec<ArtifactInfo>,
    /// Extra files served next to an artifact (electron `.blockmap`s).
    pub files: Vec<ArtifactInfo>,
    /// Sparkle's `minimumSystemVersion`.
    pub min_system_version: Option<String>,
    /// Sparkle's `criticalUpdate`.
    pub critical: bool,
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
            files: r
                .compat
                .files
                .iter()
                .map(|f| ArtifactInfo {
                    platform: f.platform.clone(),
                    filename: f.filename.clone(),
                    sha256: f.sha256.clone(),
                    size: f.size,
                })
                .collect(),
            min_system_version: r.compat.min_system_version.clone(),
            critical: r.compat.critical,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ReleaseList {
    pub releases: Vec<ReleaseInfo>,
}

#[derive(Serialize, ToSchema)]
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

#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The secret, shown this once; only its hash is stored.
    pub token: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

#[derive(Serialize, ToSchema)]
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

#[derive(Serialize, ToSchema)]
pub struct AuditEvent {
    pub seq: i64,
    pub at: String,
    /// Who: `token:ID:NAME` or `system`.
    pub actor: String,
    pub action: String,
    pub app: Option<String>,
    /// What changed, per action.
    pub detail: serde_json::Value,
    pub request_id: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    /// Pass as `after` for the next page; null on the last page.
    pub next_after: Option<i64>,
}

// ---- apps ----

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    id: String,
}

fn app_info(state: &AppState, id: &str, created_at: &str) -> AppInfo {
    AppInfo {
        id: id.to_owned(),
        created_at: created_at.to_owned(),
        trusted_root: format!("{}/tuf/{id}/metadata/1.root.json", state.public_url),
    }
}

/// Create an app and its TUF repository.
#[utoipa::path(post, path = "/v1/admin/apps", operation_id = "create_app", tag = "apps", request_body = CreateApp,
    responses((status = 201, description = "Created", body = AppInfo)), security(("bearer" = [])))]
pub async fn create_app(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Json(body): Json<CreateApp>,
) -> ApiResult<Response> {
    caller.require_global(Role::Admin)?;
    let app: AppId = parse("invalid_app_id", &body.id)?;
    let row = ops::create_app(&state, &caller, &app, rid.as_deref()).await?;
    Ok((StatusCode::CREATED, axum::Json(app_info(&state, &row.id, &row.created_at))).into_response())
}

/// List the apps this token may see.
#[utoipa::path(get, path = "/v1/admin/apps", operation_id = "list_apps", tag = "apps",
    responses((status = 200, description = "Apps", body = AppList)), security(("bearer" = [])))]
pub async fn list_apps(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Role::Viewer)?;
    let apps = state
        .store
        .list_apps()
        .await?
        .iter()
        .filter(|a| caller.can_see_app(&a.id))
        .map(|a| app_info(&state, &a.id, &a.created_at))
        .collect();
    Ok(axum::Json(AppList { apps }).into_response())
}

/// One app.
#[utoipa::path(get, path = "/v1/admin/apps/{app}", operation_id = "get_app", tag = "apps", params(AppPath),
    responses((status = 200, description = "The app", body = AppInfo)), security(("bearer" = [])))]
pub async fn get_app(State(state): State<AppState>, caller: Caller, Path(p): Path<AppPath>) -> ApiResult<Response> {
    let app: AppId = parse("invalid_app_id", &p.app)?;
    caller.require_app(Role::Viewer, app.as_str())?;
    let row = state.store.get_app(app.as_str()).await?.ok_or_else(|| ApiError::app_not_found(app.as_str()))?;
    Ok(axum::Json(app_info(&state, &row.id, &row.created_at)).into_response())
}

// ---- uploads ----

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUpload {
    /// Total size in bytes (at most the server's upload limit).
    #[schema(minimum = 1)]
    size: u64,
}

/// Start a resumable upload of one artifact.
#[utoipa::path(post, path = "/v1/admin/uploads", operation_id = "create_upload", tag = "uploads", request_body = CreateUpload,
    responses((status = 201, description = "Created", body = UploadInfo)), security(("bearer" = [])))]
pub async fn create_upload(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Json(body): Json<CreateUpload>,
) -> ApiResult<Response> {
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
    state
        .store
        .append_audit(&ops::audit(&caller, "upload.create", None, serde_json::json!({"id": up.id, "size": up.size}), rid.as_deref()))
        .await?;
    Ok((StatusCode::CREATED, axum::Json(UploadInfo::from(&up))).into_response())
}

async fn own_upload(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Upload> {
    state
        .blobs
        .get_upload(id)
        .await?
        .filter(|u| u.owner == caller.token_id)
        .ok_or_else(|| ApiError::not_found("upload_not_found", "no such upload for this token"))
}

/// Where an upload stands.
#[utoipa::path(get, path = "/v1/admin/uploads/{id}", operation_id = "get_upload", tag = "uploads", params(IdPath),
    responses((status = 200, description = "The upload; `offset` is where to continue", body = UploadInfo)), security(("bearer" = [])))]
pub async fn get_upload(State(state): State<AppState>, caller: Caller, Path(p): Path<IdPath>) -> ApiResult<Response> {
    caller.require(Role::Publisher)?;
    let up = own_upload(&state, &caller, &p.id).await?;
    Ok(([("upload-offset", up.offset.to_string())], axum::Json(UploadInfo::from(&up))).into_response())
}

/// Append bytes to an upload at `Upload-Offset`.
#[utoipa::path(patch, path = "/v1/admin/uploads/{id}", operation_id = "append_upload", tag = "uploads",
    params(IdPath, ("Upload-Offset" = u64, Header, description = "The byte offset this body starts at")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, description = "Appended; `offset` is the new end", body = UploadInfo)), security(("bearer" = [])))]
pub async fn append_upload(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(p): Path<IdPath>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    caller.require(Role::Publisher)?;
    let up = own_upload(&state, &caller, &p.id).await?;
    let offset: u64 =
        headers.get("upload-offset").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok()).ok_or_else(|| {
            ApiError::bad_request("missing_upload_offset", "send the byte offset this body starts at as 'Upload-Offset: N'")
        })?;
    let declared = headers.get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let chunked = headers.get(axum::http::header::TRANSFER_ENCODING).is_some();
    if declared == Some(0) || (declared.is_none() && !chunked) {
        return Err(ApiError::bad_request("empty_body", "send the bytes to append as the request body"));
    }
    if declared.is_some_and(|n| offset.saturating_add(n) > up.size) {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "upload_too_large", "the body would go past the upload's declared size"));
    }
    let result = state.blobs.append(&up, offset, body.into_data_stream()).await;
    // Recorded whether or not the body arrived whole: the bytes that did are kept.
    let received_to = match &result {
        Ok(n) => *n,
        Err(_) => state.blobs.get_upload(&up.id).await?.map_or(offset, |u| u.offset),
    };
    let detail = serde_json::json!({"id": up.id, "from": offset, "to": received_to, "complete": result.is_ok()});
    state.store.append_audit(&ops::audit(&caller, "upload.append", None, detail, rid.as_deref())).await?;
    let new_offset = result?;
    Ok(([("upload-offset", new_offset.to_string())], axum::Json(UploadInfo { id: up.id, size: up.size, offset: new_offset }))
        .into_response())
}

// ---- releases ----

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateArtifact {
    /// `{os}-{arch}[-{flavor}]`, e.g. `linux-x86_64`.
    platform: String,
    /// The file name clients see.
    filename: String,
    /// A finished upload made with the same token.
    upload_id: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRelease {
    /// SemVer 2.0.
    version: String,
    channel: String,
    #[serde(default)]
    notes: Option<String>,
    #[schema(min_items = 1)]
    artifacts: Vec<CreateArtifact>,
    /// Publish in the same transaction (default true). `false` leaves a draft.
    #[serde(default)]
    publish: Option<bool>,
    /// Rollout share in percent, at most two decimals (default 100).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    rollout_percent: Option<f64>,
    /// Oldest OS version the release runs on (Sparkle's `minimumSystemVersion`), e.g. `11.0`.
    #[serde(default)]
    min_system_version: Option<String>,
    /// A critical update (Sparkle's `criticalUpdate`).
    #[serde(default)]
    critical: Option<bool>,
    /// Extra files served next to the artifact of the same platform, such as electron
    /// `.blockmap` files (named `{artifact filename}.blockmap`).
    #[serde(default)]
    files: Vec<CreateArtifact>,
}

fn percent(x: f64) -> ApiResult<Percent> {
    Percent::from_f64(x).map_err(|e| ApiError::bad_request("invalid_percent", e.to_string()))
}

/// Create a release from finished uploads, and publish it in the same transaction.
#[utoipa::path(post, path = "/v1/admin/apps/{app}/releases", operation_id = "create_release", tag = "releases", params(AppPath),
    request_body = CreateRelease, responses((status = 201, description = "Created", body = ReleaseInfo)), security(("bearer" = [])))]
pub async fn create_release(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(p): Path<AppPath>,
    Json(body): Json<CreateRelease>,
) -> ApiResult<Response> {
    let app: AppId = parse("invalid_app_id", &p.app)?;
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
        min_system_version: body.min_system_version.map(|v| crate::compat::check_min_system_version(&v).map(|_| v)).transpose()?,
        critical: body.critical.unwrap_or(false),
        files: body
            .files
            .into_iter()
            .map(|a| {
                Ok(NewArtifact {
                    platform: parse::<Platform>("invalid_platform", &a.platform)?,
                    filename: a.filename,
                    upload_id: a.upload_id,
                })
            })
            .collect::<ApiResult<_>>()?,
    };
    let row = ops::create_release(&state, &caller, &app, new, rid.as_deref()).await?;
    Ok((StatusCode::CREATED, axum::Json(ReleaseInfo::from(&row))).into_response())
}

/// An app's releases, newest version first.
#[utoipa::path(get, path = "/v1/admin/apps/{app}/releases", operation_id = "list_releases", tag = "releases",
    params(AppPath, ListReleasesQuery), responses((status = 200, description = "Releases", body = ReleaseList)), security(("bearer" = [])))]
pub async fn list_releases(
    State(state): State<AppState>,
    caller: Caller,
    Path(p): Path<AppPath>,
    Query(q): Query<ListReleasesQuery>,
) -> ApiResult<Response> {
    let app: AppId = parse("invalid_app_id", &p.app)?;
    ops::require_app(&state, &caller, &app, Role::Viewer).await?;
    let mut releases = state.store.list_releases(app.as_str()).await?;
    releases.sort_by_key(|r| std::cmp::Reverse(r.version.parse::<Version>().ok()));
    let releases = releases.iter().filter(|r| q.state.is_none_or(|s| s.as_str() == r.state.as_str())).map(ReleaseInfo::from).collect();
    Ok(axum::Json(ReleaseList { releases }).into_response())
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

/// One release.
#[utoipa::path(get, path = "/v1/admin/apps/{app}/releases/{version}", operation_id = "get_release", tag = "releases", params(ReleasePath),
    responses((status = 200, description = "The release", body = ReleaseInfo)), security(("bearer" = [])))]
pub async fn get_release(State(state): State<AppState>, caller: Caller, Path(p): Path<ReleasePath>) -> ApiResult<Response> {
    let app: AppId = parse("invalid_app_id", &p.app)?;
    let version: Version = parse("invalid_version", &p.version)?;
    ops::require_app(&state, &caller, &app, Role::Viewer).await?;
    Ok(axum::Json(ReleaseInfo::from(&find_release(&state, &app, &version).await?)).into_response())
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutBody {
    /// Share of clients offered the release, 0 to 100, at most two decimals.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    percent: Option<f64>,
}

async fn change(
    state: AppState,
    caller: Caller,
    rid: Option<String>,
    p: ReleasePath,
    make: impl FnOnce() -> ApiResult<ReleaseChange>,
) -> ApiResult<Response> {
    let app: AppId = parse("invalid_app_id", &p.app)?;
    let version: Version = parse("invalid_version", &p.version)?;
    ops::require_app(&state, &caller, &app, Role::Publisher).await?;
    let row = ops::change_release(&state, &caller, &app, &version, make()?, rid.as_deref()).await?;
    Ok(axum::Json(ReleaseInfo::from(&row)).into_response())
}

/// Publish a draft release (optionally setting its rollout share).
#[utoipa::path(post, path = "/v1/admin/apps/{app}/releases/{version}/publish", operation_id = "publish_release", tag = "releases",
    params(ReleasePath), request_body(content = Option<RolloutBody>, description = "Optional; empty keeps the share set at creation"),
    responses((status = 200, description = "Published", body = ReleaseInfo)), security(("bearer" = [])))]
pub async fn publish_release(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(p): Path<ReleasePath>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let body: RolloutBody = if body.iter().all(u8::is_ascii_whitespace) {
        RolloutBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_body", format!("invalid JSON body: {e}")))?
    };
    change(state, caller, rid, p, || Ok(ReleaseChange::Publish(body.percent.map(percent).transpose()?))).await
}

/// Set the share of clients offered a release. Raising it never withdraws an offer.
#[utoipa::path(put, path = "/v1/admin/apps/{app}/releases/{version}/rollout", operation_id = "set_rollout", tag = "rollouts",
    params(ReleasePath), request_body = RolloutBody, responses((status = 200, description = "Changed", body = ReleaseInfo)), security(("bearer" = [])))]
pub async fn set_rollout(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(p): Path<ReleasePath>,
    Json(body): Json<RolloutBody>,
) -> ApiResult<Response> {
    change(state, caller, rid, p, || {
        let pct = body.percent.ok_or_else(|| ApiError::bad_request("missing_percent", "send {\"percent\": N} with N from 0 to 100"))?;
        Ok(ReleaseChange::SetRollout(percent(pct)?))
    })
    .await
}

/// Stop offering a release to clients that do not have it (resumable).
#[utoipa::path(post, path = "/v1/admin/apps/{app}/releases/{version}/pause", operation_id = "pause_rollout", tag = "rollouts",
    params(ReleasePath), responses((status = 200, description = "Paused (state halted)", body = ReleaseInfo)), security(("bearer" = [])))]
pub async fn pause_rollout(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(p): Path<ReleasePath>,
) -> ApiResult<Response> {
    change(state, caller, rid, p, || Ok(ReleaseChange::Pause)).await
}

/// An optional JSON body: empty means the defaults.
fn optional_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request("invalid_body", format!("invalid JSON body: {e}")))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeBody {
    /// Resume even though a health rule still trips.
    #[serde(default)]
    force: bool,
}

/// Offer a paused or halted release again. While one of the app's health rules still trips
/// against the baseline, this is refused (`409 health_rule_trips`) unless `force` is set.
#[utoipa::path(post, path = "/v1/admin/apps/{app}/releases/{version}/resume", operation_id = "resume_rollout", tag = "rollouts",
    params(ReleasePath), request_body(content = Option<ResumeBody>, description = "Optional"),
    responses((status = 200, description = "Resumed", body = ReleaseInfo)), security(("bearer" = [])))]
pub async fn resume_rollout(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(p): Path<ReleasePath>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let app: AppId = parse("invalid_app_id", &p.app)?;
    let version: Version = parse("invalid_version", &p.version)?;
    let body: ResumeBody = optional_body(&body)?;
    ops::require_app(&state, &caller, &app, Role::Publisher).await?;
    let audit = |detail| ops::audit(&caller, "rollout.resume", Some(&app), detail, rid.as_deref());
    let row = crate::rollouts::resume(&state, audit, &app, &version, body.force).await?;
    Ok(axum::Json(ReleaseInfo::from(&row)).into_response())
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct YankBody {
    /// Offer clients on this version the last good release (the one it replaced on its
    /// channel and platform), flagged as a downgrade, in `/v1/update` and signed TUF metadata.
    #[serde(default)]
    downgrade: bool,
}

/// Withdraw a release for good, optionally offering its clients a downgrade.
#[utoipa::path(post, path = "/v1/admin/apps/{app}/releases/{version}/yank", operation_id = "yank_release", tag = "releases",
    params(ReleasePath), request_body(content = Option<YankBody>, description = "Optional"),
    responses((status = 200, description = "Yanked", body = ReleaseInfo)), security(("bearer" = [])))]
pub async fn yank_release(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(p): Path<ReleasePath>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let body: YankBody = optional_body(&body)?;
    if !body.downgrade {
        return change(state, caller, rid, p, || Ok(ReleaseChange::Yank)).await;
    }
    let app: AppId = parse("invalid_app_id", &p.app)?;
    let version: Version = parse("invalid_version", &p.version)?;
    ops::require_app(&state, &caller, &app, Role::Publisher).await?;
    let audit = |detail| ops::audit(&caller, "release.yank", Some(&app), detail, rid.as_deref());
    let row = crate::rollouts::yank_with_downgrade(&state, audit, &app, &version).await?;
    Ok(axum::Json(ReleaseInfo::from(&row)).into_response())
}

// ---- tokens ----

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// admin, publisher, viewer or ingest.
    #[schema(pattern = "^(admin|publisher|viewer|ingest)$")]
    role: String,
    /// Apps the token may touch; empty or absent means every app.
    #[serde(default)]
    apps: Vec<String>,
    /// A name for people and the audit log (1 to 100 characters).
    #[serde(default)]
    name: Option<String>,
    /// RFC 3339 time after which the token stops working.
    #[serde(default)]
    expires_at: Option<String>,
}

/// Create an API token. Its secret is in the answer, this once.
#[utoipa::path(post, path = "/v1/admin/tokens", operation_id = "create_token", tag = "tokens", request_body = CreateToken,
    responses((status = 201, description = "Created", body = CreatedToken)), security(("bearer" = [])))]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Json(body): Json<CreateToken>,
) -> ApiResult<Response> {
    caller.require_global(Role::Admin)?;
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::bad_request("invalid_role", format!("unknown role {:?}: admin, publisher, viewer or ingest", body.role))
    })?;
    let apps = body.apps.iter().map(|a| parse::<AppId>("invalid_app_id", a).map(|a| a.to_string())).collect::<ApiResult<Vec<_>>>()?;
    let name = body.name.unwrap_or_else(|| format!("{}-token", role.as_str()));
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
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
    Ok((StatusCode::CREATED, axum::Json(CreatedToken { info: TokenInfo::from(&row), token: secret })).into_response())
}

/// List tokens (never their secrets).
#[utoipa::path(get, path = "/v1/admin/tokens", operation_id = "list_tokens", tag = "tokens",
    responses((status = 200, description = "Tokens", body = TokenList)), security(("bearer" = [])))]
pub async fn list_tokens(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require_global(Role::Admin)?;
    let tokens = state.store.list_tokens().await?.iter().map(TokenInfo::from).collect();
    Ok(axum::Json(TokenList { tokens }).into_response())
}

/// Revoke a token.
#[utoipa::path(delete, path = "/v1/admin/tokens/{id}", operation_id = "revoke_token", tag = "tokens", params(IdPath),
    responses((status = 204, description = "Revoked")), security(("bearer" = [])))]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(p): Path<IdPath>,
) -> ApiResult<Response> {
    caller.require_global(Role::Admin)?;
    let event = ops::audit(&caller, "token.revoke", None, serde_json::json!({"id": p.id}), rid.as_deref());
    if !state.store.revoke_token(&p.id, &updraft_store::now_rfc3339(), Some(&event)).await? {
        return Err(ApiError::not_found("token_not_found", "no active token with that id"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- audit ----

/// The audit log, oldest first, paginated; hash-chained (verify with `updraft audit verify`).
#[utoipa::path(get, path = "/v1/admin/audit", operation_id = "list_audit", tag = "audit", params(AuditQuery),
    responses((status = 200, description = "A page of events", body = AuditPage)), security(("bearer" = [])))]
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
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", "limit must be from 1 to 1000"));
    }
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::bad_request("invalid_query", "after must not be negative"));
    }
    let rows = state.store.list_audit(app.as_ref().map(AppId::as_str), after, limit).await?;
    let next_after = (rows.len() as u32 == limit).then(|| rows.last().map(|r| r.seq)).flatten();
    let events = rows
        .into_iter()
        .map(|r| AuditEvent {
            detail: serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::Null),
            seq: r.seq,
            at: r.at,
            actor: r.actor,
            action: r.action,
            app: r.app,
            request_id: r.request_id,
            prev_hash: r.prev_hash,
            hash: r.hash,
        })
        .collect();
    Ok(axum::Json(AuditPage { events, next_after }).into_response())
}
