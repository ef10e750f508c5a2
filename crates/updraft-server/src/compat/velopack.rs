//! Velopack's HTTP source: `{server}/compat/velopack/{app}/` serves `releases.{channel}.json`
//! and the packages it lists, by file name, relative to the feed (as `HttpSource` fetches
//! them). Velopack sends its install id as `?stagingId=`; the feed lists only the releases
//! that id is offered (without one, only fully rolled-out releases).
//!
//! Velopack channels name an OS (its defaults are `win`, `osx`, `linux`); Updraft maps
//! `[{channel}-]{win|osx|linux}[-{arch}]` to the Updraft channel (default `stable`) and
//! platform (`windows`, `darwin`, `linux`; arch `x64`/`x86_64`, `arm64`/`aarch64`, `x86`/`i686`;
//! without one, `x86_64` when the channel has it, else the first platform of that OS). A
//! channel naming no OS is an Updraft channel with exactly one platform.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use updraft_core::AppId;
use updraft_store::{ArtifactCompat, ArtifactRow};
use utoipa::{IntoParams, ToSchema};

use super::{body, client_id, view, Rel};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Path, Query};
use crate::state::AppState;

/// At most this many releases per feed.
const FEED_LIMIT: usize = 50;

/// One Velopack asset (`Assets[]` of `releases.{channel}.json`).
#[allow(non_snake_case)]
#[derive(Serialize, ToSchema)]
pub struct VelopackAsset {
    pub PackageId: String,
    pub Version: String,
    /// `Full` or `Delta` (a file name ending in `-delta.nupkg`).
    pub Type: &'static str,
    pub FileName: String,
    pub SHA1: String,
    pub SHA256: String,
    pub Size: u64,
    pub NotesMarkdown: String,
    pub NotesHtml: String,
}

#[allow(non_snake_case)]
#[derive(Serialize, ToSchema)]
pub struct VelopackFeed {
    pub Assets: Vec<VelopackAsset>,
}

pub fn asset_body(app: &AppId, rel: &Rel<'_>, a: &ArtifactRow, sigs: &ArtifactCompat) -> Bytes {
    let asset = VelopackAsset {
        PackageId: app.to_string(),
        Version: rel.row.version.clone(),
        Type: if a.filename.to_ascii_lowercase().ends_with("-delta.nupkg") { "Delta" } else { "Full" },
        FileName: a.filename.clone(),
        SHA1: sigs.sha1.to_ascii_uppercase(),
        SHA256: a.sha256.to_ascii_uppercase(),
        Size: a.size,
        NotesMarkdown: rel.row.notes.clone().unwrap_or_default(),
        NotesHtml: String::new(),
    };
    Bytes::from(serde_json::to_vec(&asset).expect("serializes"))
}

/// `(Updraft channel, platform)` for a Velopack channel name, given the app's platforms per
/// channel.
fn resolve<'a>(vchannel: &str, platforms: impl Fn(&str) -> &'a [String]) -> Result<(String, String), &'static str> {
    let parts: Vec<&str> = vchannel.split('-').collect();
    let Some(i) = parts.iter().position(|p| matches!(*p, "win" | "osx" | "linux")) else {
        let known = platforms(vchannel);
        return match known {
            [only] => Ok((vchannel.to_owned(), only.clone())),
            [] => Err("no_releases"),
            _ => Err("ambiguous_channel"),
        };
    };
    let os = match parts[i] {
        "win" => "windows",
        "osx" => "darwin",
        _ => "linux",
    };
    let channel = if i == 0 { "stable".to_owned() } else { parts[..i].join("-") };
    let arch = match parts[i + 1..].join("-").as_str() {
        "" => None,
        "x64" | "x86_64" => Some("x86_64"),
        "arm64" | "aarch64" => Some("aarch64"),
        "x86" | "i686" => Some("i686"),
        "universal" => Some("universal"),
        _ => return Err("unknown_arch"),
    };
    let known = platforms(&channel);
    let pick = match arch {
        Some(a) => {
            known.iter().find(|p| **p == format!("{os}-{a}")).or_else(|| known.iter().find(|p| p.starts_with(&format!("{os}-{a}-"))))
        }
        None => known.iter().find(|p| **p == format!("{os}-x86_64")).or_else(|| known.iter().find(|p| p.starts_with(&format!("{os}-")))),
    };
    pick.map(|p| (channel, p.clone())).ok_or("no_releases")
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct VelopackPath {
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    app: String,
    /// `releases.{channel}.json`, or a package file name from it.
    file: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VelopackQuery {
    /// Velopack's install id, for the rollout.
    #[serde(rename = "stagingId")]
    #[param(rename = "stagingId")]
    staging_id: Option<String>,
    /// The install's id (alternative to `stagingId`).
    #[param(pattern = "^[A-Za-z0-9._-]{1,128}$")]
    client: Option<String>,
}

/// A Velopack release feed (`releases.{channel}.json`), or a package it lists.
#[utoipa::path(get, path = "/compat/velopack/{app}/{file}", operation_id = "compat_velopack", tag = "compat",
    params(VelopackPath, VelopackQuery),
    responses((status = 200, description = "The feed (JSON) or the package (bytes)",
            content((VelopackFeed = "application/json"), (Vec<u8> = "application/octet-stream"))),
        (status = 206, description = "The requested range(s) of a package"), (status = 304, description = "Not modified"),
        (status = 416, description = "Range not satisfiable", body = crate::error::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(p): Path<VelopackPath>,
    Query(q): Query<VelopackQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let view = view(&state, &p.app)?;
    let Some(vchannel) = p.file.strip_prefix("releases.").and_then(|f| f.strip_suffix(".json")) else {
        let sha256 = view.compat.velopack_file(&p.file).ok_or_else(|| ApiError::not_found("file_not_found", "no such package"))?.to_owned();
        return super::serve_file(&state, &sha256, &headers).await;
    };
    let staging = q.staging_id.as_deref().filter(|s| !s.is_empty());
    let client = client_id(q.client.as_deref().or(staging), &headers, None)?;
    let resolved = resolve(vchannel, |c| view.compat.platforms(c));
    let (channel, platform) = match resolved {
        Ok(found) => found,
        Err("ambiguous_channel") => {
            return Err(ApiError::not_found(
                "ambiguous_channel",
                format!("channel {vchannel:?} has several platforms: name one as {vchannel}-{{win|osx|linux}}[-{{arch}}]"),
            ))
        }
        Err("unknown_arch") => return Err(ApiError::not_found("channel_not_found", format!("no Velopack channel {vchannel:?}"))),
        Err(_) => return Ok(body("application/json", &b"{\"Assets\":[]}"[..])),
    };
    let mut out = b"{\"Assets\":[".to_vec();
    if let Some(list) = view.compat.list(&channel, &format!("velopack/{platform}")) {
        for (i, e) in list.admitted(&view.app, client.as_deref(), FEED_LIMIT).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&e.body);
        }
    }
    out.extend_from_slice(b"]}");
    Ok(body("application/json", out))
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn channel_names() {
        let stable =
            vec!["darwin-aarch64".to_owned(), "linux-x86_64".to_owned(), "windows-aarch64".to_owned(), "windows-x86_64".to_owned()];
        let beta = vec!["linux-aarch64".to_owned()];
        let platforms = |c: &str| -> &[String] {
            match c {
                "stable" => &stable,
                "beta" => &beta,
                _ => &[],
            }
        };
        let r = |c: &str| resolve(c, platforms);
        assert_eq!(r("win"), Ok(("stable".into(), "windows-x86_64".into())));
        assert_eq!(r("win-arm64"), Ok(("stable".into(), "windows-aarch64".into())));
        assert_eq!(r("osx"), Ok(("stable".into(), "darwin-aarch64".into())));
        assert_eq!(r("linux"), Ok(("stable".into(), "linux-x86_64".into())));
        assert_eq!(r("beta-linux"), Ok(("beta".into(), "linux-aarch64".into())));
        assert_eq!(r("beta"), Ok(("beta".into(), "linux-aarch64".into())));
        assert_eq!(r("stable"), Err("ambiguous_channel"));
        assert_eq!(r("nightly"), Err("no_releases"));
        assert_eq!(r("win-mips"), Err("unknown_arch"));
    }
}
