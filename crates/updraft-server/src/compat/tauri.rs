//! Tauri v2 (`tauri-plugin-updater`) and `cargo-packager-updater`: the dynamic endpoint
//! `/compat/tauri/{app}/{channel}/{target}/{arch}/{current_version}` (`200` with the update or
//! `204`), a static `latest.json` per channel, and the app's minisign public key.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use updraft_core::{AppId, Version};
use updraft_store::{ArtifactCompat, ArtifactRow};
use utoipa::{IntoParams, ToSchema};

use super::{body, client_id, no_content, view, Rel};
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse, Path, Query};
use crate::state::AppState;

/// The update as Tauri's dynamic endpoint answers it.
#[derive(Serialize, ToSchema)]
pub struct TauriUpdate {
    pub version: String,
    pub notes: Option<String>,
    /// RFC 3339.
    pub pub_date: Option<String>,
    pub url: String,
    /// The minisign `.sig` file, base64.
    pub signature: String,
    /// `app`, `appimage`, `nsis` or `wix` (for `cargo-packager-updater`).
    pub format: &'static str,
}

/// The static `latest.json`.
#[derive(Serialize, ToSchema)]
pub struct TauriStatic {
    pub version: String,
    pub notes: Option<String>,
    pub pub_date: Option<String>,
    /// By `{os}-{arch}` (and `{os}-{arch}-{bundle}`); macOS under both `darwin-*` and `macos-*`.
    pub platforms: std::collections::BTreeMap<String, TauriPlatform>,
}

#[derive(Serialize, ToSchema)]
pub struct TauriPlatform {
    pub url: String,
    pub signature: String,
    pub format: &'static str,
}

/// The installer format `cargo-packager-updater` expects, from the flavour or file name.
fn format_of(platform: &str, filename: &str) -> &'static str {
    let flavor = platform.splitn(3, '-').nth(2).unwrap_or_default();
    let lower = filename.to_ascii_lowercase();
    match flavor {
        "appimage" => return "appimage",
        "app" => return "app",
        "msi" => return "wix",
        "nsis" => return "nsis",
        _ => {}
    }
    if lower.contains(".appimage") {
        "appimage"
    } else if lower.contains(".app.") || lower.ends_with(".app") {
        "app"
    } else if lower.contains(".msi") {
        "wix"
    } else if lower.ends_with(".exe") || lower.contains(".exe.") || lower.contains("nsis") {
        "nsis"
    } else {
        match platform.split('-').next() {
            Some("darwin") => "app",
            Some("windows") => "nsis",
            _ => "appimage",
        }
    }
}

pub fn dynamic_body(rel: &Rel<'_>, a: &ArtifactRow, sigs: &ArtifactCompat, url: &str) -> Bytes {
    let body = TauriUpdate {
        version: rel.row.version.clone(),
        notes: rel.row.notes.clone(),
        pub_date: rel.row.published_at.clone(),
        url: url.to_owned(),
        signature: sigs.minisign.clone(),
        format: format_of(&a.platform, &a.filename),
    };
    Bytes::from(serde_json::to_vec(&body).expect("serializes"))
}

pub fn static_body(public_url: &str, app: &AppId, rel: &Rel<'_>, artifacts: &[&ArtifactRow]) -> Bytes {
    let mut platforms = std::collections::BTreeMap::new();
    // Unflavoured platforms first, so `linux-x86_64` names the plain build when both exist.
    let mut sorted: Vec<&&ArtifactRow> = artifacts.iter().collect();
    sorted.sort_by_key(|a| (a.platform.matches('-').count(), a.platform.clone()));
    for a in sorted {
        let Some(sigs) = rel.sigs(&a.platform) else { continue };
        let entry = || TauriPlatform {
            url: super::file_url(public_url, app, &rel.row.version, &a.platform, &a.filename),
            signature: sigs.minisign.clone(),
            format: format_of(&a.platform, &a.filename),
        };
        let mut parts = a.platform.splitn(3, '-');
        let (os, arch, flavor) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default(), parts.next());
        let arches: Vec<&str> = match arch {
            "universal" => vec!["x86_64", "aarch64"],
            "arm64" => vec!["aarch64"],
            other => vec![other],
        };
        let oses: &[&str] = if os == "darwin" { &["darwin", "macos"] } else { std::slice::from_ref(&os) };
        for os in oses {
            for arch in &arches {
                let key = match flavor {
                    Some(f) => format!("{os}-{arch}-{f}"),
                    None => format!("{os}-{arch}"),
                };
                platforms.entry(key).or_insert_with(entry);
                if flavor.is_some() {
                    platforms.entry(format!("{os}-{arch}")).or_insert_with(entry);
                }
            }
        }
    }
    let body =
        TauriStatic { version: rel.row.version.clone(), notes: rel.row.notes.clone(), pub_date: rel.row.published_at.clone(), platforms };
    Bytes::from(serde_json::to_vec(&body).expect("serializes"))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DynamicPath {
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    app: String,
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    channel: String,
    /// Tauri's `{{target}}`: `linux`, `windows` or `darwin` (`macos` too).
    target: String,
    /// Tauri's `{{arch}}`: `x86_64`, `aarch64`, `i686` or `armv7`.
    arch: String,
    /// Tauri's `{{current_version}}`.
    current_version: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DynamicQuery {
    /// Tauri's `{{bundle_type}}` (`appimage`, `deb`, `rpm`, `app`, `msi`, `nsis`): the platform
    /// flavour `{os}-{arch}-{bundle_type}` is preferred when the release has one.
    bundle_type: Option<String>,
    /// The install's id, for the rollout (or the `X-Updraft-Client` header).
    #[param(pattern = "^[A-Za-z0-9._-]{1,128}$")]
    client: Option<String>,
}

const BUNDLES: &[&str] = &["appimage", "deb", "rpm", "app", "msi", "nsis"];

/// Platforms to look for, best first.
fn candidates(os: &str, arch: &str, bundle: Option<&str>, known: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let arches: &[&str] = if os == "darwin" { &[arch, "universal"] } else { std::slice::from_ref(&arch) };
    for a in arches {
        if let Some(b) = bundle {
            out.push(format!("{os}-{a}-{b}"));
        }
        out.push(format!("{os}-{a}"));
    }
    // Without an exact match, any flavour of the same os and arch.
    for a in arches {
        let prefix = format!("{os}-{a}-");
        out.extend(known.iter().filter(|p| p.starts_with(&prefix)).cloned());
    }
    out
}

/// Is there an update for this Tauri app? `204` when there is none.
#[utoipa::path(get, path = "/compat/tauri/{app}/{channel}/{target}/{arch}/{current_version}", operation_id = "compat_tauri_check",
    tag = "compat", params(DynamicPath, DynamicQuery, ("x-updraft-client" = Option<String>, Header, description = "The install's id, for the rollout")),
    responses((status = 200, description = "The update to take", body = TauriUpdate), (status = 204, description = "No update for this client")))]
pub async fn check(
    State(state): State<AppState>,
    Path(p): Path<DynamicPath>,
    Query(q): Query<DynamicQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let current: Version = parse("invalid_version", &p.current_version)?;
    let os = match p.target.as_str() {
        "linux" | "windows" | "darwin" => p.target.as_str(),
        "macos" => "darwin",
        _ => return Err(ApiError::bad_request("invalid_target", "target must be linux, windows, darwin or macos")),
    };
    if !matches!(p.arch.as_str(), "x86_64" | "aarch64" | "i686" | "armv7") {
        return Err(ApiError::bad_request("invalid_arch", "arch must be x86_64, aarch64, i686 or armv7"));
    }
    let bundle = match q.bundle_type.as_deref() {
        None | Some("") => None,
        Some(b) if BUNDLES.contains(&b) => Some(b),
        Some(_) => return Err(ApiError::bad_request("invalid_bundle_type", "bundle_type must be appimage, deb, rpm, app, msi or nsis")),
    };
    let client = client_id(q.client.as_deref(), &headers, None)?;
    let view = view(&state, &p.app)?;
    let found = candidates(os, &p.arch, bundle, view.compat.platforms(&p.channel))
        .into_iter()
        .find_map(|platform| view.compat.list(&p.channel, &format!("tauri/{platform}")));
    let Some(list) = found else {
        let _: updraft_core::Channel = parse("invalid_channel", &p.channel)?;
        return Ok(no_content());
    };
    Ok(match list.newest(&view.app, Some(&current), client.as_deref()) {
        Some(e) => body("application/json", e.body.clone()),
        None => no_content(),
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct StaticPath {
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    app: String,
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    channel: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ClientQuery {
    /// The install's id, for the rollout (or the `X-Updraft-Client` header).
    #[param(pattern = "^[A-Za-z0-9._-]{1,128}$")]
    client: Option<String>,
}

/// The channel's static `latest.json` (every platform of the newest release this client is
/// offered; without a client id, the newest fully rolled-out one). `204` when there is none.
#[utoipa::path(get, path = "/compat/tauri/{app}/{channel}/latest.json", operation_id = "compat_tauri_static", tag = "compat",
    params(StaticPath, ClientQuery, ("x-updraft-client" = Option<String>, Header, description = "The install's id, for the rollout")),
    responses((status = 200, description = "The newest release", body = TauriStatic), (status = 204, description = "No release for this client")))]
pub async fn latest_json(
    State(state): State<AppState>,
    Path(p): Path<StaticPath>,
    Query(q): Query<ClientQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let client = client_id(q.client.as_deref(), &headers, None)?;
    let view = view(&state, &p.app)?;
    super::check_channel(&view, &p.channel)?;
    let entry = view.compat.list(&p.channel, "tauri-static").and_then(|l| l.newest(&view.app, None, client.as_deref()));
    Ok(match entry {
        Some(e) => body("application/json", e.body.clone()),
        None => no_content(),
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AppOnly {
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    app: String,
}

/// The app's minisign public key file, base64 (what Tauri's `plugins.updater.pubkey` takes).
#[utoipa::path(get, path = "/compat/tauri/{app}/minisign.pub", operation_id = "compat_tauri_pubkey", tag = "compat", params(AppOnly),
    responses((status = 200, description = "Base64 of the minisign public key file", content_type = "text/plain", body = String)))]
pub async fn pubkey(State(state): State<AppState>, Path(p): Path<AppOnly>) -> ApiResult<Response> {
    let view = view(&state, &p.app)?;
    let key = updater_key(&state, &view.app).await?;
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(key.minisign_public_key_file());
    Ok(body("text/plain; charset=utf-8", b64))
}

/// The app's updater key (created on first use, under the app lock).
pub async fn updater_key(state: &AppState, app: &AppId) -> ApiResult<std::sync::Arc<super::sign::UpdaterKey>> {
    if state.repo.updater_key_dir(app).exists() {
        return Ok(state.repo.updater_key(app)?);
    }
    // First use: under the app lock (which also takes a key another instance made), and
    // shared with the other instances.
    let _guard = state.lock_app(app).await?;
    let created = !state.repo.updater_key_dir(app).exists();
    let key = state.repo.updater_key(app)?;
    if created {
        crate::cluster::push_keys(state, app).await?;
    }
    Ok(key)
}
