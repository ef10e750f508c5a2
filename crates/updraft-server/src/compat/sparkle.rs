//! Sparkle: `/compat/sparkle/{app}/{channel}/appcast.xml`, one `<item>` per release the client
//! is offered (newest first), with `sparkle:version`, `sparkle:shortVersionString`, `pubDate`,
//! `minimumSystemVersion`, `criticalUpdate`, and an `enclosure` carrying `length` and
//! `sparkle:edSignature` (ed25519 over the archive, by the app's updater key, whose public
//! half is served at `/compat/sparkle/{app}/ed25519.pub` for `SUPublicEDKey`).
//!
//! The rollout is decided here, like every other feed: with a client id (`?client=` in the
//! feed URL or the `X-Updraft-Client` header, both settable from the app) the appcast lists
//! the releases that id is offered; without one, only fully rolled-out releases. Sparkle's
//! own `phasedRolloutInterval` is not emitted: Updraft rollouts hold a share rather than
//! follow a fixed schedule, so Sparkle's client-side phasing would disagree with the buckets
//! every other feed uses.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use updraft_store::{ArtifactCompat, ArtifactRow};
use utoipa::IntoParams;

use super::{body, client_id, view, xml_escape, Rel};
use crate::error::ApiResult;
use crate::extract::{Path, Query};
use crate::state::AppState;

/// At most this many items per appcast.
const ITEMS: usize = 20;
pub const NAMESPACE: &str = "http://www.andymatuschak.org/xml-namespaces/sparkle";

fn rfc2822(rfc3339: &str) -> Option<String> {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).ok()?;
    t.format(&time::format_description::well_known::Rfc2822).ok()
}

pub fn item_body(rel: &Rel<'_>, a: &ArtifactRow, sigs: &ArtifactCompat, url: &str) -> Bytes {
    let r = rel.row;
    let v = xml_escape(&r.version);
    let mut x = format!("<item><title>Version {v}</title>");
    if let Some(d) = r.published_at.as_deref().and_then(rfc2822) {
        x.push_str(&format!("<pubDate>{d}</pubDate>"));
    }
    x.push_str(&format!("<sparkle:version>{v}</sparkle:version><sparkle:shortVersionString>{v}</sparkle:shortVersionString>"));
    if let Some(m) = &r.compat.min_system_version {
        x.push_str(&format!("<sparkle:minimumSystemVersion>{}</sparkle:minimumSystemVersion>", xml_escape(m)));
    }
    if r.compat.critical {
        x.push_str("<sparkle:criticalUpdate></sparkle:criticalUpdate>");
    }
    if let Some(n) = &r.notes {
        x.push_str(&format!("<description>{}</description>", xml_escape(n)));
    }
    x.push_str(&format!(
        "<enclosure url=\"{}\" length=\"{}\" type=\"application/octet-stream\" sparkle:edSignature=\"{}\"/></item>",
        xml_escape(url),
        a.size,
        xml_escape(&sigs.ed25519)
    ));
    Bytes::from(x)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AppcastPath {
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    app: String,
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    channel: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AppcastQuery {
    /// The install's id, for the rollout (or the `X-Updraft-Client` header).
    #[param(pattern = "^[A-Za-z0-9._-]{1,128}$")]
    client: Option<String>,
    /// Which platform's builds to list; default: `darwin-universal`, else `darwin-aarch64`,
    /// else `darwin-x86_64`, else the channel's first `darwin-*` platform.
    platform: Option<String>,
}

/// The channel's Sparkle appcast (RSS with the Sparkle namespace).
#[utoipa::path(get, path = "/compat/sparkle/{app}/{channel}/appcast.xml", operation_id = "compat_sparkle_appcast", tag = "compat",
    params(AppcastPath, AppcastQuery, ("x-updraft-client" = Option<String>, Header, description = "The install's id, for the rollout")),
    responses((status = 200, description = "The appcast", content_type = "application/rss+xml", body = String)))]
pub async fn appcast(
    State(state): State<AppState>,
    Path(p): Path<AppcastPath>,
    Query(q): Query<AppcastQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let client = client_id(q.client.as_deref(), &headers, None)?;
    let view = view(&state, &p.app)?;
    super::check_channel(&view, &p.channel)?;
    let known = view.compat.platforms(&p.channel);
    let platform = match q.platform.as_deref() {
        Some(pl) => {
            let _: updraft_core::Platform = crate::extract::parse("invalid_platform", pl)?;
            Some(pl.to_owned())
        }
        None => ["darwin-universal", "darwin-aarch64", "darwin-x86_64"]
            .iter()
            .map(|s| (*s).to_owned())
            .find(|s| known.contains(s))
            .or_else(|| known.iter().find(|p| p.starts_with("darwin-")).cloned()),
    };
    let feed = format!("{}/compat/sparkle/{}/{}/appcast.xml", state.public_url, view.app, p.channel);
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<rss version=\"2.0\" xmlns:sparkle=\"{NAMESPACE}\">\n<channel><title>{}</title><link>{}</link><description>Updates for {} ({})</description><language>en</language>\n",
        xml_escape(view.app.as_str()),
        xml_escape(&feed),
        xml_escape(view.app.as_str()),
        xml_escape(&p.channel)
    )
    .into_bytes();
    if let Some(list) = platform.and_then(|pl| view.compat.list(&p.channel, &format!("sparkle/{pl}"))) {
        for e in list.admitted(&view.app, client.as_deref(), ITEMS) {
            x.extend_from_slice(&e.body);
            x.push(b'\n');
        }
    }
    x.extend_from_slice(b"</channel>\n</rss>\n");
    Ok(body("application/rss+xml; charset=utf-8", x))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AppOnly {
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    app: String,
}

/// The app's ed25519 public key, base64: Sparkle's `SUPublicEDKey`.
#[utoipa::path(get, path = "/compat/sparkle/{app}/ed25519.pub", operation_id = "compat_sparkle_pubkey", tag = "compat", params(AppOnly),
    responses((status = 200, description = "Base64 of the raw ed25519 public key", content_type = "text/plain", body = String)))]
pub async fn pubkey(State(state): State<AppState>, Path(p): Path<AppOnly>) -> ApiResult<Response> {
    let view = view(&state, &p.app)?;
    let key = super::tauri::updater_key(&state, &view.app).await?;
    Ok(body("text/plain; charset=utf-8", key.ed25519_public_base64()))
}
