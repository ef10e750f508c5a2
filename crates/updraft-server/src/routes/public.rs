//! What installed clients call, with no credentials: the update check, blobs, the TUF
//! repository, and the operator probes (`/healthz`, `/readyz`, `/metrics`).

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use updraft_core::{AppId, Version};

use crate::error::{ApiError, ApiResult};
use crate::extract::{parse, Path, Query};
use crate::state::AppState;
use crate::view::Decision;
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UpdatePath {
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    app: String,
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    channel: String,
    /// `{os}-{arch}[-{flavor}]`, e.g. `linux-x86_64`.
    platform: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UpdateQuery {
    /// The installed version (SemVer 2.0).
    #[param(required = true)]
    current: Option<String>,
    /// The install's random id; without it only releases at 100 % are offered.
    #[param(pattern = "^[A-Za-z0-9._-]{1,128}$")]
    client: Option<String>,
}

/// The update a client should take (`/v1/update`).
#[derive(serde::Serialize, ToSchema)]
pub struct UpdateOffer {
    pub version: String,
    pub notes: Option<String>,
    pub pub_date: Option<String>,
    /// Where to download it.
    pub url: String,
    pub sha256: String,
    pub size: u64,
    /// The TUF target path, for clients that verify with TUF.
    pub target: String,
    pub channel: String,
    pub platform: String,
    /// Present and true when this is a lower version offered because the installed one was
    /// yanked: install it although it is older.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub downgrade: bool,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct BlobPath {
    /// SHA-256 of the bytes, 64 lowercase hex digits.
    #[param(pattern = "^[0-9a-f]{64}$")]
    sha256: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MetadataPath {
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    app: String,
    /// `timestamp.json`, `root.json`, or `N.root.json`, `N.snapshot.json`, `N.targets.json`.
    file: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TargetFilePath {
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    app: String,
    /// `{version}/{platform}/{sha256}.{filename}`.
    path: String,
}

fn check_client_id(id: &str) -> ApiResult<()> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err(ApiError::bad_request("invalid_client_id", "client must be 1 to 128 characters of letters, digits, '-', '_' or '.'"));
    }
    Ok(())
}

/// Is there an update for this install? `204` when there is none.
#[utoipa::path(get, path = "/v1/update/{app}/{channel}/{platform}", operation_id = "check_update", tag = "public", params(UpdatePath, UpdateQuery),
    responses((status = 200, description = "The update to take", body = UpdateOffer), (status = 204, description = "No update for this client")))]
pub async fn check_update(
    State(state): State<AppState>,
    Path(UpdatePath { app, channel, platform }): Path<UpdatePath>,
    Query(q): Query<UpdateQuery>,
) -> ApiResult<Response> {
    let current = q
        .current
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("missing_current", "the query must name the installed version: ?current=VER"))?;
    let current: Version = parse("invalid_version", current)?;
    if let Some(c) = &q.client {
        check_client_id(c)?;
    }
    let Some(view) = state.views.get(&app) else {
        let _: AppId = parse("invalid_app_id", &app)?;
        return Err(ApiError::app_not_found(&app));
    };
    let Some(slot) = view.slot(&channel, &platform) else {
        // Validate only on the slow path: known (channel, platform) pairs are valid already.
        let _: updraft_core::Channel = parse("invalid_channel", &channel)?;
        let _: updraft_core::Platform = parse("invalid_platform", &platform)?;
        view.unknown.increment(1);
        return Ok(no_update());
    };
    Ok(match view.decide(slot, &current, q.client.as_deref()) {
        Decision::Offer(offer) => {
            slot.offered.increment(1);
            (
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
                offer.body.clone(),
            )
                .into_response()
        }
        Decision::None => {
            slot.none.increment(1);
            no_update()
        }
    })
}

fn no_update() -> Response {
    (StatusCode::NO_CONTENT, [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]).into_response()
}

/// An artifact's bytes (only of releases clients may download). `Range`, `If-None-Match`.
#[utoipa::path(get, path = "/v1/blobs/{sha256}", operation_id = "get_blob", tag = "public", params(BlobPath),
    responses((status = 200, description = "The bytes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The requested range(s)"), (status = 304, description = "Not modified"),
        (status = 307, description = "With blob_redirect_secs and an S3 blob store: fetch it from the presigned URL in Location (send Range there)"),
        (status = 416, description = "Range not satisfiable", body = crate::error::ErrorBody)))]
pub async fn get_blob(State(state): State<AppState>, Path(BlobPath { sha256 }): Path<BlobPath>, headers: HeaderMap) -> ApiResult<Response> {
    if !updraft_store::is_sha256_hex(&sha256) {
        return Err(ApiError::bad_request("invalid_sha256", "a blob is named by its SHA-256 as 64 lowercase hex digits"));
    }
    if !state.views.serves_blob(&sha256) {
        return Err(ApiError::not_found("blob_not_found", "no such blob"));
    }
    serve_blob(&state, &sha256, &headers).await
}

async fn serve_blob(state: &AppState, sha256: &str, headers: &HeaderMap) -> ApiResult<Response> {
    let (file, len) = state
        .blobs
        .open_blob(sha256)
        .await?
        .ok_or_else(|| ApiError::internal(format!("blob {sha256} is referenced but missing from the store")))?;
    Ok(crate::http_blob::serve(file, len, sha256, "application/octet-stream", headers, "blob", state.config.blob_redirect_secs).await)
}

/// `GET /tuf/{app}/metadata/{file}`: `timestamp.json`, `N.root.json`, `N.snapshot.json`,
/// `N.targets.json` (consistent snapshots), and `root.json` as a convenience (the newest root).
#[utoipa::path(get, path = "/tuf/{app}/metadata/{file}", operation_id = "get_metadata", tag = "tuf", params(MetadataPath),
    responses((status = 200, description = "Signed TUF metadata", body = Object)))]
pub async fn get_metadata(State(state): State<AppState>, Path(MetadataPath { app, file }): Path<MetadataPath>) -> ApiResult<Response> {
    let app: AppId = parse("invalid_app_id", &app)?;
    if state.views.get(app.as_str()).is_none() {
        return Err(ApiError::app_not_found(app.as_str()));
    }
    let not_found = || ApiError::not_found("metadata_not_found", format!("no metadata {file:?}"));
    let (row, versioned) = match file.as_str() {
        "timestamp.json" => (state.store.latest_metadata(app.as_str(), "timestamp").await?, false),
        "root.json" => (state.store.latest_metadata(app.as_str(), "root").await?, false),
        _ => {
            let stem = file.strip_suffix(".json").ok_or_else(not_found)?;
            let (n, role) = stem.split_once('.').ok_or_else(not_found)?;
            if !matches!(role, "root" | "snapshot" | "targets") {
                return Err(not_found());
            }
            let n: u64 = n.parse().map_err(|_| not_found())?;
            (state.store.get_metadata(app.as_str(), role, n).await?, true)
        }
    };
    let row = row.ok_or_else(not_found)?;
    // Versioned files never change; the unversioned ones change on every signing.
    let cache = if versioned { "public, max-age=31536000, immutable" } else { "public, max-age=10, must-revalidate" };
    Ok(([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, cache)], row.body).into_response())
}

/// A TUF target file, by its consistent-snapshot name.
#[utoipa::path(get, path = "/tuf/{app}/targets/{path}", operation_id = "get_target", tag = "tuf", params(TargetFilePath),
    responses((status = 200, description = "The bytes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The requested range(s)"), (status = 304, description = "Not modified"),
        (status = 307, description = "With blob_redirect_secs and an S3 blob store: fetch it from the presigned URL in Location (send Range there)"),
        (status = 416, description = "Range not satisfiable", body = crate::error::ErrorBody)))]
pub async fn get_target(
    State(state): State<AppState>,
    Path(TargetFilePath { app, path }): Path<TargetFilePath>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let Some(view) = state.views.get(&app) else { return Err(ApiError::app_not_found(&app)) };
    let sha256 = view.target_blob(&path).ok_or_else(|| ApiError::not_found("target_not_found", "no such target"))?.to_owned();
    let (file, len) = state.blobs.open_blob(&sha256).await?.ok_or_else(|| ApiError::internal(format!("target blob {sha256} missing")))?;
    Ok(crate::http_blob::serve(file, len, &sha256, "application/octet-stream", &headers, "target", state.config.blob_redirect_secs).await)
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations", responses((status = 200, description = "Up", body = Object)))]
pub async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Ready when the database answers and the blob store is writable.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "operations",
    responses((status = 200, description = "Ready", body = Object), (status = 503, description = "Not ready", body = Object)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let db = state.store.ping().await;
    let blobs = state.blobs.check_writable().await;
    if let Err(e) = &db {
        tracing::warn!(error = %e, "readiness: database check failed");
    }
    if let Err(e) = &blobs {
        tracing::warn!(error = %e, "readiness: blob store check failed");
    }
    // TUF metadata that will expire before it can be re-signed (offline keys, failing HSM).
    let tuf = state.repo.readiness(time::OffsetDateTime::now_utc());
    if !tuf.ready {
        tracing::warn!(roles = ?tuf.expiring, "readiness: TUF metadata is about to expire and is not being re-signed");
    }
    let status = if db.is_ok() && blobs.is_ok() && tuf.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let word = |ok: bool| if ok { "ok" } else { "failing" };
    (
        status,
        axum::Json(serde_json::json!({
            "status": word(status == StatusCode::OK), "database": word(db.is_ok()), "blobs": word(blobs.is_ok()),
            "tuf_metadata": word(tuf.ready), "expiring": tuf.expiring,
        })),
    )
        .into_response()
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render())
}
