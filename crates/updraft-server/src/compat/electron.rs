//! electron-updater's generic provider: `{server}/compat/electron/{app}/{channel}/` serves
//! `latest.yml` (Windows), `latest-mac.yml`, `latest-linux.yml` and `latest-linux-{arch}.yml`
//! (any electron channel name in place of `latest`; the Updraft channel is in the path).
//!
//! electron-updater always sends its install id in `x-user-staging-id`; the rollout is then
//! decided here, with the same buckets as every other feed, and the answer says
//! `stagingPercentage: 100` (this client is in) or `0` (it is not: the client reports no
//! update). Without the header the newest release is served with its real share as
//! `stagingPercentage`, and electron-updater decides by its own buckets.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use updraft_core::AppId;
use updraft_store::ArtifactRow;
use utoipa::IntoParams;

use super::{body, client_id, view, List, Rel};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Path, Query};
use crate::state::AppState;

fn q(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// Which channel file an artifact belongs in.
fn kind_of(platform: &str) -> Option<String> {
    let mut parts = platform.splitn(3, '-');
    let (os, arch) = (parts.next()?, parts.next()?);
    match os {
        "windows" => Some("win".into()),
        "darwin" => Some("mac".into()),
        "linux" => Some(format!("linux-{}", if arch == "arm64" { "aarch64" } else { arch })),
        _ => None,
    }
}

/// The channel files a release's artifacts appear in.
pub fn kinds(artifacts: &[&ArtifactRow]) -> Vec<String> {
    let mut kinds: Vec<String> = artifacts.iter().filter_map(|a| kind_of(&a.platform)).collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// The body of channel file `kind` for one release (without `stagingPercentage`, added per
/// request).
pub fn channel_body(public_url: &str, app: &AppId, rel: &Rel<'_>, artifacts: &[&ArtifactRow], kind: &str) -> Bytes {
    let mut y = format!("version: {}\nfiles:\n", q(&rel.row.version));
    let mut first: Option<(String, String)> = None;
    for a in artifacts.iter().filter(|a| kind_of(&a.platform).as_deref() == Some(kind)) {
        let Some(sigs) = rel.sigs(&a.platform) else { continue };
        let url = super::file_url(public_url, app, &rel.row.version, &a.platform, &a.filename);
        y.push_str(&format!("  - url: {}\n    sha512: {}\n    size: {}\n", q(&url), q(&sigs.sha512), a.size));
        let blockmap = format!("{}.blockmap", a.filename);
        if let Some(bm) = rel.row.compat.files.iter().find(|f| f.platform == a.platform && f.filename == blockmap) {
            y.push_str(&format!("    blockMapSize: {}\n", bm.size));
        }
        first.get_or_insert((url, sigs.sha512.clone()));
    }
    if let Some((path, sha512)) = first {
        y.push_str(&format!("path: {}\nsha512: {}\n", q(&path), q(&sha512)));
    }
    if let Some(d) = &rel.row.published_at {
        y.push_str(&format!("releaseDate: {}\n", q(d)));
    }
    if let Some(n) = &rel.row.notes {
        y.push_str(&format!("releaseNotes: {}\n", q(n)));
    }
    Bytes::from(y)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ChannelFilePath {
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    app: String,
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    channel: String,
    /// `latest.yml`, `latest-mac.yml`, `latest-linux.yml`, `latest-linux-{arm64,armv7l,ia32}.yml`.
    file: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ElectronQuery {
    /// The install's id (electron-updater sends it as `x-user-staging-id`).
    #[param(pattern = "^[A-Za-z0-9._-]{1,128}$")]
    client: Option<String>,
}

/// The kind of channel file asked for, from its name.
fn kind_for_file(file: &str) -> Option<String> {
    let stem = file.strip_suffix(".yml")?;
    if stem.ends_with("-mac") {
        return Some("mac".into());
    }
    if let Some(i) = stem.rfind("-linux") {
        let arch = match &stem[i + "-linux".len()..] {
            "" | "-x64" => "x86_64",
            "-arm64" => "aarch64",
            "-arm" | "-armv7l" => "armv7",
            "-ia32" => "i686",
            _ => return None,
        };
        return Some(format!("linux-{arch}"));
    }
    (!stem.is_empty()).then(|| "win".into())
}

/// An electron-updater channel file (YAML).
#[utoipa::path(get, path = "/compat/electron/{app}/{channel}/{file}", operation_id = "compat_electron_channel_file", tag = "compat",
    params(ChannelFilePath, ElectronQuery,
        ("x-user-staging-id" = Option<String>, Header, description = "electron-updater's install id, for the rollout")),
    responses((status = 200, description = "The channel file", content_type = "text/yaml", body = String)))]
pub async fn channel_file(
    State(state): State<AppState>,
    Path(p): Path<ChannelFilePath>,
    Query(query): Query<ElectronQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let client = client_id(query.client.as_deref(), &headers, Some("x-user-staging-id"))?;
    let view = view(&state, &p.app)?;
    super::check_channel(&view, &p.channel)?;
    let not_found = || ApiError::not_found("file_not_found", format!("no channel file {:?} in channel {}", p.file, p.channel));
    let kind = kind_for_file(&p.file).ok_or_else(not_found)?;
    let list: &List = view.compat.list(&p.channel, &format!("electron/{kind}")).ok_or_else(not_found)?;
    let (entry, staging) = match client.as_deref() {
        Some(id) => match list.newest(&view.app, None, Some(id)) {
            Some(e) => (e, 100),
            // Nothing this client is offered: the newest release, which it will not take.
            None => (list.latest().ok_or_else(not_found)?, 0),
        },
        None => {
            let e = list.latest().ok_or_else(not_found)?;
            (e, List::share_of(e).basis_points() / 100)
        }
    };
    let mut text = Vec::with_capacity(entry.body.len() + 24);
    text.extend_from_slice(&entry.body);
    text.extend_from_slice(format!("stagingPercentage: {staging}\n").as_bytes());
    Ok(body("text/yaml; charset=utf-8", text))
}

#[cfg(test)]
mod tests {
    use super::kind_for_file;

    #[test]
    fn channel_file_names() {
        let k = |f: &str| kind_for_file(f);
        assert_eq!(k("latest.yml").as_deref(), Some("win"));
        assert_eq!(k("beta.yml").as_deref(), Some("win"));
        assert_eq!(k("latest-mac.yml").as_deref(), Some("mac"));
        assert_eq!(k("latest-linux.yml").as_deref(), Some("linux-x86_64"));
        assert_eq!(k("latest-linux-arm64.yml").as_deref(), Some("linux-aarch64"));
        assert_eq!(k("latest-linux-armv7l.yml").as_deref(), Some("linux-armv7"));
        assert_eq!(k("latest-linux-ia32.yml").as_deref(), Some("linux-i686"));
        assert_eq!(k("latest-linux-mips.yml"), None);
        assert_eq!(k("latest.json"), None);
        assert_eq!(k(".yml"), None);
    }
}
