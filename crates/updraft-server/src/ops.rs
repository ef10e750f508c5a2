//! The operations behind the admin API, each one all-or-nothing: under the app's lock, read the
//! app's releases, compute the change, sign new TUF metadata for it, and commit releases,
//! metadata and the audit event in one store transaction; only then rebuild the update view.
//! A crash before the commit leaves nothing; after it, everything.

use axum::http::StatusCode;
use updraft_core::{AppId, Channel, Percent, Platform, Version};
use updraft_store::{AppRow, ArtifactRow, AuditEntry, Changeset, ExtraFile, ReleaseCompat, ReleaseRow, ReleaseState, StoreError};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::view::AppView;

pub struct NewArtifact {
    pub platform: Platform,
    pub filename: String,
    pub upload_id: String,
}

pub struct NewRelease {
    pub version: Version,
    pub channel: Channel,
    pub notes: Option<String>,
    pub artifacts: Vec<NewArtifact>,
    pub publish: bool,
    pub rollout: Percent,
    /// For the compatible feeds: Sparkle's `minimumSystemVersion` and `criticalUpdate`.
    pub min_system_version: Option<String>,
    pub critical: bool,
    /// Extra files served next to the artifact of their platform (electron `.blockmap`s).
    pub files: Vec<NewArtifact>,
}

/// A change to one release's rollout or state.
#[derive(Debug, Clone, Copy)]
pub enum ReleaseChange {
    Publish(Option<Percent>),
    SetRollout(Percent),
    Pause,
    Resume,
    Yank,
}

impl ReleaseChange {
    fn action(self) -> &'static str {
        match self {
            Self::Publish(_) => "release.publish",
            Self::SetRollout(_) => "rollout.set",
            Self::Pause => "rollout.pause",
            Self::Resume => "rollout.resume",
            Self::Yank => "release.yank",
        }
    }
}

/// Whether a release appears in signed targets metadata.
fn in_targets(state: ReleaseState) -> bool {
    matches!(state, ReleaseState::Published | ReleaseState::Halted)
}

pub fn audit(caller: &Caller, action: &str, app: Option<&AppId>, detail: serde_json::Value, request_id: Option<&str>) -> AuditEntry {
    AuditEntry {
        actor: caller.actor(),
        action: action.into(),
        app: app.map(|a| a.to_string()),
        detail,
        request_id: request_id.map(str::to_owned),
    }
}

pub async fn rebuild_view(state: &AppState, app: &AppId) -> ApiResult<()> {
    let releases = state.store.list_releases(app.as_str()).await?;
    let downgrades = state.store.list_downgrades(app.as_str()).await?;
    state.views.put(AppView::build_with(app.clone(), &releases, &downgrades, &state.public_url));
    Ok(())
}

pub async fn rebuild_all_views(state: &AppState) -> ApiResult<()> {
    for app in state.store.list_apps().await? {
        if let Ok(id) = app.id.parse::<AppId>() {
            rebuild_view(state, &id).await?;
        }
    }
    Ok(())
}

pub async fn create_app(state: &AppState, caller: &Caller, app: &AppId, request_id: Option<&str>) -> ApiResult<AppRow> {
    let _guard = state.lock_app(app).await?;
    if state.store.get_app(app.as_str()).await?.is_some() {
        return Err(ApiError::conflict("app_exists", format!("app {app:?} exists already")));
    }
    let created = state.repo.create_repository(app).map_err(ApiError::internal)?;
    crate::cluster::push_keys(state, app).await?;
    let row = AppRow { id: app.to_string(), created_at: updraft_store::now_rfc3339() };
    let changes = Changeset {
        releases: vec![],
        metadata: created.metadata,
        audit: Some(audit(caller, "app.create", Some(app), serde_json::json!({ "root_keys": created.root_key_ids }), request_id)),
    };
    match state.store.create_app(&row, &changes).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => return Err(ApiError::conflict("app_exists", format!("app {app:?} exists already"))),
        Err(e) => return Err(e.into()),
    }
    state.repo.write_trust_file(app, &created.root).map_err(ApiError::internal)?;
    rebuild_view(state, app).await?;
    Ok(row)
}

pub async fn require_app(state: &AppState, caller: &Caller, app: &AppId, role: crate::auth::Role) -> ApiResult<()> {
    caller.require_app(role, app.as_str())?;
    if state.store.get_app(app.as_str()).await?.is_none() {
        return Err(ApiError::app_not_found(app.as_str()));
    }
    Ok(())
}

/// Creates a release from finished uploads, optionally publishing it in the same transaction.
pub async fn create_release(
    state: &AppState,
    caller: &Caller,
    app: &AppId,
    new: NewRelease,
    request_id: Option<&str>,
) -> ApiResult<ReleaseRow> {
    if new.artifacts.is_empty() {
        return Err(ApiError::bad_request("no_artifacts", "a release needs at least one artifact"));
    }
    let mut seen = std::collections::HashSet::new();
    for a in &new.artifacts {
        updraft_core::ids::check_filename(&a.filename).map_err(|e| ApiError::bad_request("invalid_filename", e.to_string()))?;
        if !seen.insert(a.platform.clone()) {
            return Err(ApiError::bad_request("duplicate_platform", format!("platform {} is given twice", a.platform)));
        }
    }
    crate::compat::check_extra_files(&new.artifacts, &new.files)?;
    let _guard = state.lock_app(app).await?;
    let mut releases = state.store.list_releases(app.as_str()).await?;
    if let Some(existing) = releases.iter().find(|r| r.version.parse::<Version>().is_ok_and(|v| v == new.version)) {
        return Err(ApiError::conflict(
            "release_exists",
            format!("app {app} already has release {} ({})", existing.version, existing.state.as_str()),
        ));
    }
    // Check every upload before finishing any, so a bad one leaves the others reusable.
    let mut uploads = Vec::new();
    for a in new.artifacts.iter().chain(&new.files) {
        let up = state
            .blobs
            .get_upload(&a.upload_id)
            .await?
            .filter(|u| u.owner == caller.token_id)
            .ok_or_else(|| ApiError::not_found("upload_not_found", format!("no upload {:?} for this token", a.upload_id)))?;
        if up.offset != up.size {
            return Err(ApiError::conflict("upload_incomplete", format!("upload {} has {} of {} bytes", up.id, up.offset, up.size)));
        }
        uploads.push(up);
    }
    let mut artifacts = Vec::new();
    let mut files = Vec::new();
    for (i, (a, up)) in new.artifacts.iter().chain(&new.files).zip(&uploads).enumerate() {
        let done = state.blobs.finish(up).await?;
        let (platform, filename, sha256, size) = (a.platform.to_string(), a.filename.clone(), done.sha256, done.size);
        if i < new.artifacts.len() {
            artifacts.push(ArtifactRow { platform, filename, sha256, size });
        } else {
            files.push(ExtraFile { platform, filename, sha256, size });
        }
    }
    // Digests and signatures for the compatible feeds, computed once and committed with the
    // release; a failure here leaves nothing (the finished blobs are unreferenced).
    let compat = ReleaseCompat {
        min_system_version: new.min_system_version,
        critical: new.critical,
        artifacts: crate::compat::sign_artifacts(state, app, &new.version.to_string(), &artifacts, &files).await?,
        files,
    };
    let now = updraft_store::now_rfc3339();
    let row = ReleaseRow {
        app: app.to_string(),
        version: new.version.to_string(),
        channel: new.channel.to_string(),
        notes: new.notes,
        state: if new.publish { ReleaseState::Published } else { ReleaseState::Draft },
        rollout_bp: new.rollout.basis_points(),
        salt: updraft_store::random_hex(16),
        created_at: now.clone(),
        published_at: new.publish.then_some(now),
        artifacts,
        compat,
    };
    releases.push(row.clone());
    let metadata = if new.publish { state.repo.sign_targets_change(state.store.as_ref(), app, &releases).await? } else { vec![] };
    let detail = serde_json::json!({
        "version": row.version, "channel": row.channel, "state": row.state.as_str(), "rollout_percent": new.rollout.to_string(),
        "artifacts": row.artifacts.iter().map(|a| serde_json::json!({"platform": a.platform, "sha256": a.sha256, "size": a.size})).collect::<Vec<_>>(),
        "files": row.compat.files.iter().map(|f| serde_json::json!({"platform": f.platform, "filename": f.filename, "sha256": f.sha256})).collect::<Vec<_>>(),
        "critical": row.compat.critical, "min_system_version": row.compat.min_system_version,
        "metadata_versions": metadata.iter().map(|m| serde_json::json!({"role": m.role, "version": m.version})).collect::<Vec<_>>(),
    });
    let changes =
        Changeset { releases: vec![row.clone()], metadata, audit: Some(audit(caller, "release.create", Some(app), detail, request_id)) };
    state.store.apply(app.as_str(), &changes).await?;
    rebuild_view(state, app).await?;
    Ok(row)
}

/// Publishes, pauses, resumes, yanks or changes the rollout share of a release.
pub async fn change_release(
    state: &AppState,
    caller: &Caller,
    app: &AppId,
    version: &Version,
    change: ReleaseChange,
    request_id: Option<&str>,
) -> ApiResult<ReleaseRow> {
    let _guard = state.lock_app(app).await?;
    let mut releases = state.store.list_releases(app.as_str()).await?;
    let idx = releases
        .iter()
        .position(|r| r.version.parse::<Version>().is_ok_and(|v| v == *version))
        .ok_or_else(|| ApiError::release_not_found(app.as_str(), &version.to_string()))?;
    let before = releases[idx].clone();
    let r = &mut releases[idx];
    let bad_state = |what: &str, r: &ReleaseRow| {
        ApiError::new(
            StatusCode::CONFLICT,
            "invalid_release_state",
            format!("cannot {what} release {} while it is {}", r.version, r.state.as_str()),
        )
    };
    match change {
        ReleaseChange::Publish(share) => {
            if r.state != ReleaseState::Draft {
                return Err(bad_state("publish", r));
            }
            r.state = ReleaseState::Published;
            r.published_at = Some(updraft_store::now_rfc3339());
            if let Some(s) = share {
                r.rollout_bp = s.basis_points();
            }
        }
        ReleaseChange::SetRollout(share) => {
            if r.state == ReleaseState::Yanked {
                return Err(bad_state("change the rollout of", r));
            }
            r.rollout_bp = share.basis_points();
        }
        ReleaseChange::Pause => {
            if r.state != ReleaseState::Published {
                return Err(bad_state("pause", r));
            }
            r.state = ReleaseState::Halted;
        }
        ReleaseChange::Resume => {
            if r.state != ReleaseState::Halted {
                return Err(bad_state("resume", r));
            }
            r.state = ReleaseState::Published;
        }
        ReleaseChange::Yank => {
            if r.state == ReleaseState::Yanked {
                return Err(bad_state("yank", r));
            }
            r.state = ReleaseState::Yanked;
        }
    }
    let after = releases[idx].clone();
    if after == before {
        return Ok(after); // nothing changed: no new metadata, no event
    }
    let affects_clients = in_targets(before.state) || in_targets(after.state);
    let metadata = if affects_clients { state.repo.sign_targets_change(state.store.as_ref(), app, &releases).await? } else { vec![] };
    let detail = serde_json::json!({
        "version": after.version,
        "from": {"state": before.state.as_str(), "rollout_bp": before.rollout_bp},
        "to": {"state": after.state.as_str(), "rollout_bp": after.rollout_bp},
        "metadata_versions": metadata.iter().map(|m| serde_json::json!({"role": m.role, "version": m.version})).collect::<Vec<_>>(),
    });
    let changes =
        Changeset { releases: vec![after.clone()], metadata, audit: Some(audit(caller, change.action(), Some(app), detail, request_id)) };
    state.store.apply(app.as_str(), &changes).await?;
    rebuild_view(state, app).await?;
    Ok(after)
}

/// Re-signs metadata that is past half its lifetime (timestamp daily, and so on). Runs in the
/// background; also at start, so a server that was down for a while comes back fresh.
///
/// One app that cannot be re-signed (its HSM is down, its keys are offline) does not stop the
/// others: each app is tried, and the first failure is returned after all were.
pub async fn refresh_expiring_metadata(state: &AppState, now: time::OffsetDateTime) -> ApiResult<usize> {
    let mut refreshed = 0;
    let mut first_error = None;
    for app in state.store.list_apps().await? {
        let Ok(id) = app.id.parse::<AppId>() else { continue };
        let _guard = match state.lock_app(&id).await {
            Ok(g) => g,
            Err(e) => {
                first_error.get_or_insert(e);
                continue;
            }
        };
        let result: ApiResult<bool> = async {
            let releases = state.store.list_releases(id.as_str()).await?;
            let metadata = state.repo.refresh_expiring(state.store.as_ref(), &id, &releases, now).await?;
            if metadata.is_empty() {
                return Ok(false);
            }
            let roles: Vec<_> = metadata.iter().map(|m| serde_json::json!({"role": m.role, "version": m.version})).collect();
            let entry = AuditEntry {
                actor: "system".into(),
                action: "metadata.refresh".into(),
                app: Some(id.to_string()),
                detail: serde_json::json!({ "metadata_versions": roles }),
                request_id: None,
            };
            state.store.apply(id.as_str(), &Changeset { releases: vec![], metadata, audit: Some(entry) }).await?;
            Ok(true)
        }
        .await;
        match result {
            Ok(done) => refreshed += usize::from(done),
            Err(e) => {
                tracing::error!(app = %id, error = %e.message, "re-signing expiring metadata failed");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(refreshed),
    }
}
