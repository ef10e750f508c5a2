//! The key-management admin API: `GET /v1/admin/apps/{app}/keys`, `POST …/keys/rotate`,
//! `POST …/keys/root/export`, `POST …/keys/root/import`. Wire types live here. Answers carry
//! key ids, key types and where each key is held, never key material or PINs.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use updraft_core::tuf::{Key, RoleName};
use updraft_core::AppId;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse, Json, Path};
use crate::key_ops;
use crate::repo::{ExportSpec, KeyChange, KeysReport, RotateSpec};
use crate::routes::admin::RequestId;
use crate::state::AppState;

#[derive(Serialize)]
pub struct KeysInfo {
    pub app: String,
    pub root_version: u64,
    pub roles: BTreeMap<&'static str, RoleInfo>,
}

#[derive(Serialize)]
pub struct RoleInfo {
    pub threshold: u32,
    /// Newest metadata version of the role, and when it expires.
    pub version: u64,
    pub expires: String,
    /// Whether this server holds a threshold of the role's keys.
    pub online: bool,
    pub keys: Vec<KeyInfo>,
}

#[derive(Serialize)]
pub struct KeyInfo {
    pub keyid: String,
    pub keytype: String,
    /// `file`, `pkcs11`, or `offline` (not on this server).
    pub location: &'static str,
    /// For HSM keys, the `pkcs11:` URI without any PIN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

#[derive(Serialize)]
pub struct KeyChangeInfo {
    #[serde(flatten)]
    pub keys: KeysInfo,
    pub added_keys: Vec<String>,
    pub retired_keys: Vec<String>,
}

fn keys_info(app: &AppId, r: KeysReport) -> KeysInfo {
    KeysInfo {
        app: app.to_string(),
        root_version: r.root_version,
        roles: r
            .roles
            .into_iter()
            .map(|role| {
                (
                    role.role.as_str(),
                    RoleInfo {
                        threshold: role.threshold,
                        version: role.version,
                        expires: role.expires,
                        online: role.can_sign,
                        keys: role
                            .keys
                            .into_iter()
                            .map(|k| KeyInfo {
                                keyid: k.keyid.to_string(),
                                keytype: k.keytype,
                                location: k.backend.map_or("offline", |b| b.as_str()),
                                uri: k.label,
                            })
                            .collect(),
                    },
                )
            })
            .collect(),
    }
}

fn change_info(app: &AppId, (change, report): (KeyChange, KeysReport)) -> KeyChangeInfo {
    KeyChangeInfo {
        keys: keys_info(app, report),
        added_keys: change.added.iter().map(|k| k.to_string()).collect(),
        retired_keys: change.retired.iter().map(|k| k.to_string()).collect(),
    }
}

fn role(s: &str) -> ApiResult<RoleName> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| ApiError::bad_request("invalid_role", format!("{s:?} is not a role: root, targets, snapshot or timestamp")))
}

/// `GET /v1/admin/apps/{app}/keys`
pub async fn list_keys(State(state): State<AppState>, caller: Caller, Path(app): Path<String>) -> ApiResult<axum::Json<KeysInfo>> {
    let app: AppId = parse("invalid_app_id", &app)?;
    let report = key_ops::list_keys(&state, &caller, &app).await?;
    Ok(axum::Json(keys_info(&app, report)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateKeys {
    role: String,
    threshold: Option<u32>,
    /// New key files to generate on the server.
    #[serde(default)]
    generate: u32,
    /// HSM keys to use, as RFC 7512 URIs.
    #[serde(default)]
    pkcs11: Vec<String>,
    /// Offline public keys (root role only).
    #[serde(default)]
    public_keys: Vec<Key>,
}

/// `POST /v1/admin/apps/{app}/keys/rotate`
pub async fn rotate_keys(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(app): Path<String>,
    Json(body): Json<RotateKeys>,
) -> ApiResult<axum::Json<KeyChangeInfo>> {
    let app: AppId = parse("invalid_app_id", &app)?;
    let spec = RotateSpec {
        role: role(&body.role)?,
        threshold: body.threshold,
        generate: body.generate,
        pkcs11: body.pkcs11,
        public_keys: body.public_keys,
    };
    let done = key_ops::rotate_keys(&state, &caller, &app, &spec, rid.as_deref()).await?;
    Ok(axum::Json(change_info(&app, done)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ExportRoot {
    /// Role → its new public keys.
    #[serde(default)]
    keys: BTreeMap<String, Vec<Key>>,
    /// Roles for which the server generates a new key file.
    #[serde(default)]
    generate: Vec<String>,
    #[serde(default)]
    thresholds: BTreeMap<String, u32>,
}

/// `POST /v1/admin/apps/{app}/keys/root/export`: the unsigned next root.
pub async fn export_root(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(app): Path<String>,
    Json(body): Json<ExportRoot>,
) -> ApiResult<Response> {
    let app: AppId = parse("invalid_app_id", &app)?;
    let spec = ExportSpec {
        keys: body.keys.iter().map(|(r, k)| Ok((role(r)?, k.clone()))).collect::<ApiResult<_>>()?,
        generate: body.generate.iter().map(|r| role(r)).collect::<ApiResult<_>>()?,
        thresholds: body.thresholds.iter().map(|(r, t)| Ok((role(r)?, *t))).collect::<ApiResult<_>>()?,
    };
    let doc = key_ops::export_root(&state, &caller, &app, &spec, rid.as_deref()).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], doc).into_response())
}

/// `POST /v1/admin/apps/{app}/keys/root/import`: body is the signed root document.
pub async fn import_root(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(app): Path<String>,
    Json(body): Json<serde_json::Value>,
) -> ApiResult<axum::Json<KeyChangeInfo>> {
    let app: AppId = parse("invalid_app_id", &app)?;
    // Re-encoding keeps every field: signatures cover canonical JSON, not these bytes.
    let doc = serde_json::to_vec(&body).map_err(|e| ApiError::bad_request("invalid_root", e.to_string()))?;
    let done = key_ops::import_root(&state, &caller, &app, &doc, rid.as_deref()).await?;
    Ok(axum::Json(change_info(&app, done)))
}
