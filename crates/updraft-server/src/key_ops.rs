//! Key operations behind `/v1/admin/apps/{app}/keys…`, each all-or-nothing like
//! [`crate::ops`]: under the app's lock, [`crate::repo::Repo`] prepares and verifies the new
//! root (and whatever it re-signs), and the store commits the metadata with the audit event in
//! one transaction. Only after the commit are retired key files removed. A crash before the
//! commit leaves the old root in force (new key files, if any, are inert: no stored root names
//! them); after it, the new one.

use updraft_core::AppId;
use updraft_store::Changeset;

use crate::auth::{Caller, Role};
use crate::error::ApiResult;
use crate::ops::{audit, require_app};
use crate::repo::{ExportSpec, KeyChange, KeysReport, RotateSpec};
use crate::state::AppState;

pub async fn list_keys(state: &AppState, caller: &Caller, app: &AppId) -> ApiResult<KeysReport> {
    require_app(state, caller, app, Role::Viewer).await?;
    Ok(state.repo.describe(state.store.as_ref(), app).await?)
}

pub async fn rotate_keys(
    state: &AppState,
    caller: &Caller,
    app: &AppId,
    spec: &RotateSpec,
    request_id: Option<&str>,
) -> ApiResult<(KeyChange, KeysReport)> {
    require_app(state, caller, app, Role::Admin).await?;
    let _guard = state.lock_app(app).await?;
    let releases = state.store.list_releases(app.as_str()).await?;
    let change = state.repo.rotate_keys(state.store.as_ref(), app, &releases, spec).await?;
    crate::cluster::push_keys(state, app).await?;
    commit(state, caller, app, "keys.rotate", Some(spec.role.as_str()), change, request_id).await
}

pub async fn export_root(
    state: &AppState,
    caller: &Caller,
    app: &AppId,
    spec: &ExportSpec,
    request_id: Option<&str>,
) -> ApiResult<Vec<u8>> {
    require_app(state, caller, app, Role::Admin).await?;
    let _guard = state.lock_app(app).await?;
    let doc = state.repo.export_root(state.store.as_ref(), app, spec).await?;
    crate::cluster::push_keys(state, app).await?;
    let generated: Vec<&str> = spec.generate.iter().map(|r| r.as_str()).collect();
    let detail = serde_json::json!({ "generated_for": generated });
    state.store.append_audit(&audit(caller, "keys.root.export", Some(app), detail, request_id)).await?;
    Ok(doc)
}

pub async fn import_root(
    state: &AppState,
    caller: &Caller,
    app: &AppId,
    doc: &[u8],
    request_id: Option<&str>,
) -> ApiResult<(KeyChange, KeysReport)> {
    require_app(state, caller, app, Role::Admin).await?;
    let _guard = state.lock_app(app).await?;
    let releases = state.store.list_releases(app.as_str()).await?;
    let change = state.repo.import_root(state.store.as_ref(), app, &releases, doc).await?;
    commit(state, caller, app, "keys.root.import", None, change, request_id).await
}

async fn commit(
    state: &AppState,
    caller: &Caller,
    app: &AppId,
    action: &str,
    role: Option<&str>,
    change: KeyChange,
    request_id: Option<&str>,
) -> ApiResult<(KeyChange, KeysReport)> {
    // Key ids are public; no key material, URI or PIN goes into the audit log.
    let detail = serde_json::json!({
        "role": role,
        "root_version": change.root.version,
        "added_keys": change.added.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        "retired_keys": change.retired.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        "thresholds": updraft_core::tuf::RoleName::ALL.iter().map(|r| (r.as_str(), change.root.roles.get(*r).threshold)).collect::<std::collections::BTreeMap<_, _>>(),
        "metadata_versions": change.metadata.iter().map(|m| serde_json::json!({"role": m.role, "version": m.version})).collect::<Vec<_>>(),
    });
    let changes = Changeset {
        releases: vec![],
        metadata: change.metadata.clone(),
        audit: Some(audit(caller, action, Some(app), detail, request_id)),
    };
    state.store.apply(app.as_str(), &changes).await?;
    state.repo.retire_keys(app, &change.root);
    crate::cluster::push_keys(state, app).await?;
    let report = state.repo.describe(state.store.as_ref(), app).await?;
    Ok((change, report))
}
