//! Compatible feeds: installed apps built with another updater (Tauri, electron-updater,
//! Velopack, Sparkle) update from Updraft unchanged, each in its own format.
//!
//! Every feed is built with the app's update view (`view.rs`), from the same release rows at
//! the same moment, so a publish, rollout change, pause, halt or yank made anywhere reaches
//! every feed with no extra code. Each feed is a list per (channel, feed key) of entries newest
//! first with their bodies (or body fragments) serialized once; a request picks entries with
//! the one admission rule [`crate::view::admitted`], so one client id gets the same answer
//! from every feed and from `/v1/update`.
//!
//! Digests and signatures the formats need are computed once at publish ([`sign`]) and stored
//! with the release ([`updraft_store::ReleaseCompat`]). Releases published before that existed
//! have none and are left out of these feeds (they stay in `/v1/update` and TUF).

pub mod electron;
pub mod sign;
pub mod sparkle;
pub mod tauri;
pub mod velopack;

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use updraft_core::{AppId, Percent, Version};
use updraft_store::{ArtifactCompat, ArtifactRow, ReleaseRow, ReleaseState};

use crate::error::{ApiError, ApiResult};
use crate::ops::NewArtifact;
use crate::state::AppState;
use crate::view::AppView;

/// The header a Tauri or Sparkle app (or any other) sends its install id in, for the rollout.
pub const CLIENT_HEADER: &str = "x-updraft-client";

/// One published release in one feed.
pub struct Entry {
    pub version: Version,
    share: Percent,
    salt: String,
    /// The feed's body (or body fragment) for this release, serialized once.
    pub body: Bytes,
}

/// A feed's entries, newest first.
#[derive(Default)]
pub struct List {
    entries: Vec<Entry>,
}

impl List {
    /// The newest release above `current` that admits `client`: what `/v1/update` offers.
    pub fn newest(&self, app: &AppId, current: Option<&Version>, client: Option<&str>) -> Option<&Entry> {
        for e in &self.entries {
            if current.is_some_and(|c| e.version <= *c) {
                break;
            }
            if crate::view::admitted(app, e.share, &e.salt, client) {
                return Some(e);
            }
        }
        None
    }

    /// Up to `limit` releases that admit `client`, newest first (for feeds that list several).
    pub fn admitted<'a>(&'a self, app: &'a AppId, client: Option<&'a str>, limit: usize) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.iter().filter(move |e| crate::view::admitted(app, e.share, &e.salt, client)).take(limit)
    }

    /// The newest entry whatever its rollout (electron-updater without a staging id decides
    /// by `stagingPercentage` itself).
    pub fn latest(&self) -> Option<&Entry> {
        self.entries.first()
    }

    pub fn share_of(e: &Entry) -> Percent {
        e.share
    }
}

/// A release with its compat data, as the feed builders see it.
pub struct Rel<'a> {
    pub row: &'a ReleaseRow,
    pub version: Version,
}

impl Rel<'_> {
    pub fn sigs(&self, platform: &str) -> Option<&ArtifactCompat> {
        self.row.compat.artifact(platform)
    }
}

/// The compatible feeds of one app.
#[derive(Default)]
pub struct Feeds {
    /// channel → feed key → entries.
    lists: HashMap<String, HashMap<String, List>>,
    /// channel → platforms that have at least one entry.
    platforms: HashMap<String, Vec<String>>,
    /// `{version}/{platform}/{file}` → blob, for artifacts and extra files of downloadable
    /// releases (published or halted).
    files: HashMap<String, String>,
    /// Velopack asset file name → blob (newest release wins a name given twice).
    velopack_files: HashMap<String, String>,
}

/// Where the compat feeds link an artifact or extra file.
pub fn file_url(public_url: &str, app: &AppId, version: &str, platform: &str, file: &str) -> String {
    format!("{public_url}/compat/files/{app}/{version}/{platform}/{file}")
}

impl Feeds {
    pub fn build(app: &AppId, releases: &[ReleaseRow], public_url: &str) -> Feeds {
        let mut feeds = Feeds::default();
        let mut rels: Vec<Rel<'_>> = Vec::new();
        for r in releases {
            if !matches!(r.state, ReleaseState::Published | ReleaseState::Halted) {
                continue;
            }
            let Ok(version) = r.version.parse::<Version>() else { continue };
            for a in &r.artifacts {
                feeds.files.insert(format!("{}/{}/{}", r.version, a.platform, a.filename), a.sha256.clone());
            }
            for f in &r.compat.files {
                feeds.files.insert(format!("{}/{}/{}", r.version, f.platform, f.filename), f.sha256.clone());
            }
            if r.state == ReleaseState::Published {
                rels.push(Rel { row: r, version });
            }
        }
        // Oldest first, so a newer release's Velopack file name wins.
        rels.sort_by(|a, b| a.version.cmp(&b.version));
        for rel in &rels {
            for a in &rel.row.artifacts {
                if rel.sigs(&a.platform).is_some() {
                    feeds.velopack_files.insert(a.filename.clone(), a.sha256.clone());
                }
            }
        }
        rels.reverse();
        // Below a feed's newest fully rolled-out release nothing can be chosen (it admits
        // everyone), so each feed stops there, like the TUF targets do: building stays cheap at
        // thousands of releases.
        let mut complete: std::collections::HashSet<(String, String)> = Default::default();
        for rel in &rels {
            let r = rel.row;
            let share = Percent::from_basis_points(r.rollout_bp).unwrap_or(Percent::ZERO);
            let mut push = |key: String, body: &dyn Fn() -> Bytes| {
                let id = (r.channel.clone(), key);
                if complete.contains(&id) {
                    return;
                }
                let entry = Entry { version: rel.version.clone(), share, salt: r.salt.clone(), body: body() };
                feeds.lists.entry(id.0.clone()).or_default().entry(id.1.clone()).or_default().entries.push(entry);
                if share == Percent::FULL {
                    complete.insert(id);
                }
            };
            let signed: Vec<&ArtifactRow> = r.artifacts.iter().filter(|a| rel.sigs(&a.platform).is_some()).collect();
            if signed.is_empty() {
                continue;
            }
            for a in &signed {
                let sigs = rel.sigs(&a.platform).expect("filtered above");
                let url = || file_url(public_url, app, &r.version, &a.platform, &a.filename);
                push(format!("tauri/{}", a.platform), &|| tauri::dynamic_body(rel, a, sigs, &url()));
                push(format!("velopack/{}", a.platform), &|| velopack::asset_body(app, rel, a, sigs));
                push(format!("sparkle/{}", a.platform), &|| sparkle::item_body(rel, a, sigs, &url()));
                let known = feeds.platforms.entry(r.channel.clone()).or_default();
                if !known.contains(&a.platform) {
                    known.push(a.platform.clone());
                }
            }
            push("tauri-static".into(), &|| tauri::static_body(public_url, app, rel, &signed));
            for kind in electron::kinds(&signed) {
                push(format!("electron/{kind}"), &|| electron::channel_body(public_url, app, rel, &signed, &kind));
            }
        }
        for platforms in feeds.platforms.values_mut() {
            platforms.sort();
        }
        feeds
    }

    pub fn list(&self, channel: &str, key: &str) -> Option<&List> {
        self.lists.get(channel)?.get(key)
    }

    pub fn has_channel(&self, channel: &str) -> bool {
        self.lists.contains_key(channel)
    }

    pub fn platforms(&self, channel: &str) -> &[String] {
        self.platforms.get(channel).map(Vec::as_slice).unwrap_or_default()
    }

    pub fn file(&self, version: &str, platform: &str, file: &str) -> Option<&str> {
        self.files.get(&format!("{version}/{platform}/{file}")).map(String::as_str)
    }

    pub fn velopack_file(&self, name: &str) -> Option<&str> {
        self.velopack_files.get(name).map(String::as_str)
    }
}

/// Validates a client id the way `/v1/update` does.
pub fn check_client(id: &str) -> ApiResult<()> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err(ApiError::bad_request(
            "invalid_client_id",
            "a client id must be 1 to 128 characters of letters, digits, '-', '_' or '.'",
        ));
    }
    Ok(())
}

/// The client id of a feed request: `?client=`, else the `X-Updraft-Client` header, else the
/// updater's own header (`x-user-staging-id` for electron-updater), checked.
pub fn client_id(query: Option<&str>, headers: &HeaderMap, own_header: Option<&str>) -> ApiResult<Option<String>> {
    let from_header = |name: &str| headers.get(name).map(|v| v.to_str().map(str::trim).unwrap_or("\u{0}").to_owned());
    let id = query.map(str::to_owned).or_else(|| from_header(CLIENT_HEADER)).or_else(|| own_header.and_then(from_header));
    match id {
        Some(id) => {
            check_client(&id)?;
            Ok(Some(id))
        }
        None => Ok(None),
    }
}

/// The app's view, or `404 app_not_found` (`400` for a name that cannot be an app).
pub fn view(state: &AppState, app: &str) -> ApiResult<std::sync::Arc<AppView>> {
    match state.views.get(app) {
        Some(v) => Ok(v),
        None => {
            let _: AppId = crate::extract::parse("invalid_app_id", app)?;
            Err(ApiError::app_not_found(app))
        }
    }
}

/// `404 channel_not_found` unless the app has a release in the channel.
pub fn check_channel(view: &AppView, channel: &str) -> ApiResult<()> {
    if view.compat.has_channel(channel) {
        return Ok(());
    }
    let _: updraft_core::Channel = crate::extract::parse("invalid_channel", channel)?;
    Err(ApiError::not_found("channel_not_found", format!("app {} has no releases in channel {channel:?}", view.app)))
}

pub fn no_content() -> Response {
    (StatusCode::NO_CONTENT, [(axum::http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]).into_response()
}

pub fn body(content_type: &'static str, body: impl Into<axum::body::Body>) -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (axum::http::header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body.into(),
    )
        .into_response()
}

/// Serves a blob of a downloadable release (ETag, single and multi-range `Range`).
pub async fn serve_file(state: &AppState, sha256: &str, headers: &HeaderMap) -> ApiResult<Response> {
    let (file, len) =
        state.blobs.open_blob(sha256).await?.ok_or_else(|| ApiError::internal(format!("blob {sha256} is referenced but missing")))?;
    Ok(crate::http_blob::serve(file, len, sha256, "application/octet-stream", headers, "compat", state.config.blob_redirect_secs).await)
}

/// Extra files must sit next to an artifact of their platform and not shadow any file name.
pub fn check_extra_files(artifacts: &[NewArtifact], files: &[NewArtifact]) -> ApiResult<()> {
    let mut names: std::collections::HashSet<(String, String)> =
        artifacts.iter().map(|a| (a.platform.to_string(), a.filename.clone())).collect();
    for f in files {
        updraft_core::ids::check_filename(&f.filename).map_err(|e| ApiError::bad_request("invalid_filename", e.to_string()))?;
        if !artifacts.iter().any(|a| a.platform == f.platform) {
            return Err(ApiError::bad_request(
                "file_without_artifact",
                format!("extra file {} is for platform {}, which has no artifact in this release", f.filename, f.platform),
            ));
        }
        if !names.insert((f.platform.to_string(), f.filename.clone())) {
            return Err(ApiError::bad_request("duplicate_file", format!("file {} is given twice for platform {}", f.filename, f.platform)));
        }
    }
    if files.len() > 32 {
        return Err(ApiError::bad_request("too_many_files", "a release may have at most 32 extra files"));
    }
    Ok(())
}

/// `minimumSystemVersion`: dotted numbers, e.g. `10.15` or `11.0.1`.
pub fn check_min_system_version(v: &str) -> ApiResult<()> {
    let ok = !v.is_empty() && v.len() <= 32 && v.split('.').all(|p| !p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request("invalid_min_system_version", "min_system_version must be dotted numbers, such as 10.15 or 11.0"))
    }
}

/// Computes each artifact's digests and signatures for the compatible feeds, streaming each
/// stored blob (file or S3) on a blocking thread. Called under the app lock, before the
/// release commits.
///
/// An app that already ships with its own keys keeps them: a `{artifact}.sig` extra file (what
/// Tauri's bundler writes: base64 of a minisign signature file) replaces Updraft's minisign
/// signature, and a `{artifact}.edsig` file (Sparkle's `sign_update` output, or the bare base64
/// signature) replaces its ed25519 signature. Updraft serves them as given; the app verifies
/// them with the key it trusts.
pub async fn sign_artifacts(
    state: &AppState,
    app: &AppId,
    version: &str,
    artifacts: &[ArtifactRow],
    files: &[updraft_store::ExtraFile],
) -> ApiResult<Vec<ArtifactCompat>> {
    let created = !state.repo.updater_key_dir(app).exists();
    let key = state.repo.updater_key(app)?;
    if created {
        crate::cluster::push_keys(state, app).await?; // other instances sign with the same key
    }
    let mut out = Vec::with_capacity(artifacts.len());
    for a in artifacts {
        let own = |suffix: &str| files.iter().find(|f| f.platform == a.platform && f.filename == format!("{}{suffix}", a.filename));
        let own_minisign = match own(".sig") {
            Some(f) => Some(own_minisign(&read_small(state, f).await?, &f.filename)?),
            None => None,
        };
        let own_ed25519 = match own(".edsig") {
            Some(f) => Some(own_ed25519(&read_small(state, f).await?, &f.filename)?),
            None => None,
        };
        let comment = sign::trusted_comment(&a.filename, version);
        let (key, st, sha256) = (key.clone(), state.clone(), a.sha256.clone());
        let handle = tokio::runtime::Handle::current();
        let sigs = tokio::task::spawn_blocking(move || {
            let open = || blob_reader(&handle, &st.blobs, &sha256);
            sign::sign_file(&key, &open, &comment)
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::internal(format!("signing artifact {} for the compatible feeds: {e}", a.sha256)))?;
        out.push(ArtifactCompat {
            platform: a.platform.clone(),
            sha512: sigs.sha512_base64,
            sha1: sigs.sha1_hex,
            minisign: own_minisign.unwrap_or(sigs.minisign_base64),
            ed25519: own_ed25519.unwrap_or(sigs.ed25519_base64),
        });
    }
    Ok(out)
}

/// An uploaded signature file's text (at most 16 KiB).
async fn read_small(state: &AppState, f: &updraft_store::ExtraFile) -> ApiResult<String> {
    let bad = || ApiError::bad_request("invalid_signature_file", format!("{} is not a signature file", f.filename));
    if f.size > 16 * 1024 {
        return Err(bad());
    }
    let (st, sha256) = (state.clone(), f.sha256.clone());
    let handle = tokio::runtime::Handle::current();
    let bytes = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut blob_reader(&handle, &st.blobs, &sha256)?, &mut out)?;
        Ok(out)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    String::from_utf8(bytes).map_err(|_| bad())
}

/// Tauri's `.sig` file: base64 of a minisign signature file (4 lines, algorithm `Ed`/`ED`).
fn own_minisign(text: &str, name: &str) -> ApiResult<String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let bad = || ApiError::bad_request("invalid_signature_file", format!("{name} is not a base64 minisign signature (Tauri's .sig file)"));
    let text = text.trim();
    let decoded = String::from_utf8(b64.decode(text).map_err(|_| bad())?).map_err(|_| bad())?;
    let lines: Vec<&str> = decoded.lines().collect();
    let sig = lines.get(1).and_then(|l| b64.decode(l.trim()).ok()).ok_or_else(bad)?;
    let ok = lines.len() >= 4
        && lines[2].starts_with("trusted comment: ")
        && sig.len() == 74
        && (sig.starts_with(b"Ed") || sig.starts_with(b"ED"))
        && b64.decode(lines[3].trim()).is_ok_and(|g| g.len() == 64);
    if ok {
        Ok(text.to_owned())
    } else {
        Err(bad())
    }
}

/// Sparkle's `sign_update` output (`sparkle:edSignature="…" length="…"`) or the bare base64
/// signature.
fn own_ed25519(text: &str, name: &str) -> ApiResult<String> {
    use base64::Engine;
    let text = text.trim();
    let sig = match text.split_once("sparkle:edSignature=\"") {
        Some((_, rest)) => rest.split('"').next().unwrap_or_default(),
        None => text,
    };
    if base64::engine::general_purpose::STANDARD.decode(sig).is_ok_and(|s| s.len() == 64) {
        Ok(sig.to_owned())
    } else {
        Err(ApiError::bad_request("invalid_signature_file", format!("{name} is not an ed25519 signature (Sparkle's sign_update output)")))
    }
}

/// A blocking reader over a stored blob, from its start (for a blocking thread).
fn blob_reader(handle: &tokio::runtime::Handle, blobs: &updraft_store::BlobStore, sha256: &str) -> std::io::Result<Box<dyn std::io::Read>> {
    let (reader, len) = handle
        .block_on(blobs.open_blob(sha256))
        .map_err(std::io::Error::other)?
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "stored blob is missing"))?;
    match reader {
        updraft_store::BlobReader::File(f) => Ok(Box::new(handle.block_on(f.into_std()))),
        s3 => {
            let stream = s3.s3_range(0, len).ok_or_else(|| std::io::Error::other("not an S3 blob"))?;
            Ok(Box::new(StreamRead { handle: handle.clone(), stream: Box::pin(stream), buf: Bytes::new() }))
        }
    }
}

/// `std::io::Read` over a byte stream, for code that reads on a blocking thread.
struct StreamRead<S> {
    handle: tokio::runtime::Handle,
    stream: std::pin::Pin<Box<S>>,
    buf: Bytes,
}

impl<S: futures_util::Stream<Item = std::io::Result<Bytes>>> std::io::Read for StreamRead<S> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        use futures_util::StreamExt;
        while self.buf.is_empty() {
            match self.handle.block_on(self.stream.next()) {
                Some(chunk) => self.buf = chunk?,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf.split_to(n));
        Ok(n)
    }
}

/// Escapes text for XML character data and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

// ---- routes ----

pub mod routes {
    //! The public compat endpoints and the files they link.

    use axum::extract::State;
    use axum::http::HeaderMap;
    use axum::response::Response;
    use serde::Deserialize;
    use utoipa::IntoParams;

    use super::*;
    use crate::extract::Path;

    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Path)]
    pub struct FilePath {
        #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
        app: String,
        version: String,
        /// `{os}-{arch}[-{flavor}]`.
        platform: String,
        /// The artifact's file name, or an extra file's (such as `{artifact}.blockmap`).
        file: String,
    }

    /// An artifact or extra file of a downloadable release, as the compat feeds link it.
    /// `Range` (single and multiple ranges, for differential downloads), `If-None-Match`.
    #[utoipa::path(get, path = "/compat/files/{app}/{version}/{platform}/{file}", operation_id = "compat_file", tag = "compat",
        params(FilePath),
        responses((status = 200, description = "The bytes", content_type = "application/octet-stream", body = Vec<u8>),
            (status = 206, description = "The requested range(s)"), (status = 304, description = "Not modified"),
        (status = 307, description = "With blob_redirect_secs and an S3 blob store: fetch it from the presigned URL in Location (send Range there)"),
            (status = 416, description = "Range not satisfiable", body = crate::error::ErrorBody)))]
    pub async fn file(
        State(state): State<AppState>,
        Path(FilePath { app, version, platform, file }): Path<FilePath>,
        headers: HeaderMap,
    ) -> ApiResult<Response> {
        let view = view(&state, &app)?;
        let sha256 =
            view.compat.file(&version, &platform, &file).ok_or_else(|| ApiError::not_found("file_not_found", "no such file"))?.to_owned();
        serve_file(&state, &sha256, &headers).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use updraft_store::{ArtifactCompat, ReleaseCompat};

    fn release(i: usize, rollout_bp: u32) -> ReleaseRow {
        let version = format!("1.{}.{}", i / 1000, i % 1000);
        let platforms = ["linux-x86_64", "darwin-universal"];
        ReleaseRow {
            app: "demo".into(),
            version: version.clone(),
            channel: "stable".into(),
            notes: Some("notes".into()),
            state: ReleaseState::Published,
            rollout_bp,
            salt: format!("{i:032x}"),
            created_at: "2030-01-01T00:00:00Z".into(),
            published_at: Some("2030-01-01T00:00:00Z".into()),
            artifacts: platforms
                .iter()
                .map(|p| ArtifactRow {
                    platform: (*p).into(),
                    filename: format!("demo-{version}.bin"),
                    sha256: format!("{i:064x}"),
                    size: 1000,
                })
                .collect(),
            compat: ReleaseCompat {
                artifacts: platforms
                    .iter()
                    .map(|p| ArtifactCompat {
                        platform: (*p).into(),
                        sha512: "s".into(),
                        sha1: "s".into(),
                        minisign: "m".into(),
                        ed25519: "e".into(),
                    })
                    .collect(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn feeds_stop_at_the_newest_full_release_and_keep_every_file() {
        let n = 10_000;
        let releases: Vec<ReleaseRow> = (0..n).map(|i| release(i, if i >= n - 3 { 2500 } else { 10_000 })).collect();
        let app: AppId = "demo".parse().unwrap();
        let started = std::time::Instant::now();
        let feeds = Feeds::build(&app, &releases, "http://x");
        eprintln!("built compat feeds for {n} releases in {:?}", started.elapsed());
        for key in ["tauri/linux-x86_64", "velopack/linux-x86_64", "sparkle/darwin-universal", "tauri-static", "electron/mac"] {
            let list = feeds.list("stable", key).unwrap_or_else(|| panic!("{key}"));
            // Three partial releases and the newest full one: nothing below can be chosen.
            assert_eq!(list.entries.len(), 4, "{key}");
            assert_eq!(list.newest(&app, None, None).unwrap().version.to_string(), "1.9.996");
        }
        // Every downloadable release's files stay reachable (installed clients may hold links).
        assert_eq!(feeds.file("1.0.0", "linux-x86_64", "demo-1.0.0.bin"), Some(format!("{:064x}", 0).as_str()));
    }
}
