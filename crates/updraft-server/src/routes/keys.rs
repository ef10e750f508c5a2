//! The key-management admin API: `GET /v1/admin/apps/{app}/keys`, `POST …/keys/rotate`,
//! `POST …/keys/root/export`, `POST …/keys/root/import`. Wire types live here. Answers carry
//! key ids, key types and where each key is held, never key material or PINs. Each handler
//! carries its `#[utoipa::path]` (tag `keys`) for the OpenAPI document.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use updraft_core::tuf::{Key, RoleName};
use updraft_core::AppId;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse, Json, JsonValue, Path};
use crate::key_ops;
use crate::repo::{ExportSpec, KeyChange, KeysReport, RotateSpec};
use crate::routes::admin::RequestId;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct KeysInfo {
    pub app: String,
    pub root_version: u64,
    /// `root`, `targets`, `snapshot`, `timestamp`.
    #[schema(value_type = BTreeMap<String, RoleInfo>)]
    pub roles: BTreeMap<&'static str, RoleInfo>,
}

#[derive(Serialize, ToSchema)]
pub struct RoleInfo {
    pub threshold: u32,
    /// Newest metadata version of the role, and when it expires.
    pub version: u64,
    pub expires: String,
    /// Whether this server holds a threshold of the role's keys.
    pub online: bool,
    pub keys: Vec<KeyInfo>,
}

#[derive(Serialize, ToSchema)]
pub struct KeyInfo {
    pub keyid: String,
    pub keytype: String,
    /// `file`, `pkcs11`, or `offline` (not on this server).
    pub location: &'static str,
    /// For HSM keys, the `pkcs11:` URI without any PIN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

#[derive(Serialize, ToSchema)]
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

/// Each role's keys, threshold, where each key is held, and metadata expiry.
#[utoipa::path(get, path = "/v1/admin/apps/{app}/keys", operation_id = "list_keys", tag = "keys",
    params(("app" = String, Path, description = "App id")),
    responses((status = 200, description = "The app's keys", body = KeysInfo)), security(("bearer" = [])))]
pub async fn list_keys(State(state): State<AppState>, caller: Caller, Path(app): Path<String>) -> ApiResult<axum::Json<KeysInfo>> {
    let app: AppId = parse("invalid_app_id", &app)?;
    let report = key_ops::list_keys(&state, &caller, &app).await?;
    Ok(axum::Json(keys_info(&app, report)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKeys {
    /// `root`, `targets`, `snapshot` or `timestamp`.
    role: String,
    threshold: Option<u32>,
    /// New key files to generate on the server.
    #[serde(default)]
    generate: u32,
    /// HSM keys to use, as RFC 7512 URIs.
    #[serde(default)]
    pkcs11: Vec<String>,
    /// Offline public keys (root role only), as TUF key objects.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    public_keys: Vec<Key>,
}

/// Replace one role's keys (admin): a new root version signed by the old and the new root keys.
#[utoipa::path(post, path = "/v1/admin/apps/{app}/keys/rotate", operation_id = "rotate_keys", tag = "keys",
    params(("app" = String, Path, description = "App id")), request_body = RotateKeys,
    responses((status = 200, description = "Rotated", body = KeyChangeInfo),
        (status = 502, description = "The HSM could not be used", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
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

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRoot {
    /// Role → its new public keys (TUF key objects).
    #[serde(default)]
    #[schema(value_type = Object)]
    keys: BTreeMap<String, Vec<Key>>,
    /// Roles for which the server generates a new key file.
    #[serde(default)]
    generate: Vec<String>,
    #[serde(default)]
    thresholds: BTreeMap<String, u32>,
}

/// The unsigned next root version, for an offline signing ceremony (admin).
#[utoipa::path(post, path = "/v1/admin/apps/{app}/keys/root/export", operation_id = "export_root", tag = "keys",
    params(("app" = String, Path, description = "App id")), request_body = ExportRoot,
    responses((status = 200, description = "`{\"signatures\": [], \"signed\": {root}}`", body = Object)), security(("bearer" = [])))]
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

/// Publish a root signed offline (admin); checked against both thresholds like a client would.
#[utoipa::path(post, path = "/v1/admin/apps/{app}/keys/root/import", operation_id = "import_root", tag = "keys",
    params(("app" = String, Path, description = "App id")), request_body = Object,
    responses((status = 200, description = "Published", body = KeyChangeInfo)), security(("bearer" = [])))]
pub async fn import_root(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(app): Path<String>,
    JsonValue(body): JsonValue,
) -> ApiResult<axum::Json<KeyChangeInfo>> {
    let app: AppId = parse("invalid_app_id", &app)?;
    // Re-encoding keeps every field: signatures cover canonical JSON, not these bytes.
    let doc = serde_json::to_vec(&body).map_err(|e| ApiError::bad_request("invalid_root", e.to_string()))?;
    let done = key_ops::import_root(&state, &caller, &app, &doc, rid.as_deref()).await?;
    Ok(axum::Json(change_info(&app, done)))
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    #[test]
    fn key_operations_are_documented() {
        #[derive(OpenApi)]
        #[openapi(paths(super::list_keys, super::rotate_keys, super::export_root, super::import_root))]
        struct KeysDoc;
        let doc = serde_json::to_value(KeysDoc::openapi()).unwrap();
        for (path, method, id) in [
            ("/v1/admin/apps/{app}/keys", "get", "list_keys"),
            ("/v1/admin/apps/{app}/keys/rotate", "post", "rotate_keys"),
            ("/v1/admin/apps/{app}/keys/root/export", "post", "export_root"),
            ("/v1/admin/apps/{app}/keys/root/import", "post", "import_root"),
        ] {
            assert_eq!(doc["paths"][path][method]["operationId"], id, "{path}");
        }
        let schemas = &doc["components"]["schemas"];
        assert!(schemas["KeysInfo"].is_object() && schemas["RotateKeys"].is_object(), "{schemas}");
    }
}
