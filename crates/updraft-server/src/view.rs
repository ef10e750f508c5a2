//! The in-memory view that answers update checks. It is rebuilt from the store after every
//! change to an app and swapped in whole, so a check is a couple of hash lookups and a walk
//! down a short list sorted newest first; its cost does not grow with the number of releases a
//! channel has ever had (the walk stops at the client's current version). Answer bodies are
//! serialized once, at build time.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use serde::Serialize;
use updraft_core::{rollout, AppId, Percent, Version};
use updraft_store::{ReleaseRow, ReleaseState};

/// The update answer, as `/v1/update` sends it.
#[derive(Serialize)]
pub struct UpdateAnswer<'a> {
    pub version: &'a str,
    pub notes: Option<&'a str>,
    pub pub_date: Option<&'a str>,
    pub url: String,
    pub sha256: &'a str,
    pub size: u64,
    /// The TUF target path; clients that verify with TUF look it up in signed targets metadata.
    pub target: String,
    pub channel: &'a str,
    pub platform: &'a str,
    /// A lower version offered because the installed one was yanked (`release yank --downgrade`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub downgrade: bool,
}

pub struct Offer {
    pub version: Version,
    pub share: Percent,
    pub salt: String,
    pub body: Bytes,
}

/// Offers for one (channel, platform), newest first, with their metric handles.
pub struct Slot {
    pub offers: Vec<Offer>,
    /// Yanked version → the downgrade offered to clients on it.
    pub downgrades: Vec<(Version, Offer)>,
    pub offered: metrics::Counter,
    pub none: metrics::Counter,
}

pub struct AppView {
    pub app: AppId,
    slots: HashMap<String, HashMap<String, Slot>>,
    /// Blobs of releases clients may download (published or halted).
    blobs: HashSet<String>,
    /// TUF target file names (`{version}/{platform}/{sha256}.{filename}`) → blob.
    targets: HashMap<String, String>,
    /// Metric handle for checks on channels or platforms the app does not have.
    pub unknown: metrics::Counter,
    /// The compatible feeds (Tauri, electron-updater, Velopack, Sparkle), built from the same
    /// releases at the same time, so every change reaches every feed.
    pub compat: crate::compat::Feeds,
}

pub enum Decision<'a> {
    Offer(&'a Offer),
    None,
}

impl AppView {
    pub fn build(app: AppId, releases: &[ReleaseRow], public_url: &str) -> AppView {
        Self::build_with(app, releases, &[], public_url)
    }

    /// [`AppView::build`], with the yanked versions whose clients are offered a downgrade.
    pub fn build_with(app: AppId, releases: &[ReleaseRow], downgrades: &[String], public_url: &str) -> AppView {
        let mut slots: HashMap<String, HashMap<String, Slot>> = HashMap::new();
        let mut blobs = HashSet::new();
        let mut targets = HashMap::new();
        let counter = |channel: &str, platform: &str, outcome: &'static str| metrics::counter!("updraft_update_checks_total", "app" => app.to_string(), "channel" => channel.to_owned(), "platform" => platform.to_owned(), "outcome" => outcome);
        for r in releases {
            if !matches!(r.state, ReleaseState::Published | ReleaseState::Halted) {
                continue;
            }
            let Ok(version) = r.version.parse::<Version>() else { continue };
            for a in &r.artifacts {
                blobs.insert(a.sha256.clone());
                targets.insert(format!("{}/{}/{}.{}", r.version, a.platform, a.sha256, a.filename), a.sha256.clone());
                if r.state != ReleaseState::Published {
                    continue;
                }
                let answer = UpdateAnswer {
                    version: &r.version,
                    notes: r.notes.as_deref(),
                    pub_date: r.published_at.as_deref(),
                    url: format!("{public_url}/v1/blobs/{}", a.sha256),
                    sha256: &a.sha256,
                    size: a.size,
                    target: format!("{}/{}/{}", r.version, a.platform, a.filename),
                    channel: &r.channel,
                    platform: &a.platform,
                    downgrade: false,
                };
                let body = Bytes::from(serde_json::to_vec(&answer).expect("answer serializes"));
                let slot = slots.entry(r.channel.clone()).or_default().entry(a.platform.clone()).or_insert_with(|| Slot {
                    offers: Vec::new(),
                    downgrades: Vec::new(),
                    offered: counter(&r.channel, &a.platform, "offered"),
                    none: counter(&r.channel, &a.platform, "none"),
                });
                slot.offers.push(Offer {
                    version: version.clone(),
                    share: Percent::from_basis_points(r.rollout_bp).unwrap_or(Percent::ZERO),
                    salt: r.salt.clone(),
                    body,
                });
            }
        }
        for platforms in slots.values_mut() {
            for slot in platforms.values_mut() {
                slot.offers.sort_by(|a, b| b.version.cmp(&a.version));
            }
        }
        for ((to, platform), froms) in crate::rollouts::downgrade_offers(releases, downgrades) {
            let Some(r) = releases.iter().find(|r| r.version == to) else { continue };
            let Some(a) = r.artifacts.iter().find(|a| a.platform == platform) else { continue };
            let Some(slot) = slots.get_mut(&r.channel).and_then(|p| p.get_mut(platform)) else { continue };
            let Ok(version) = r.version.parse::<Version>() else { continue };
            let answer = UpdateAnswer {
                version: &r.version,
                notes: r.notes.as_deref(),
                pub_date: r.published_at.as_deref(),
                url: format!("{public_url}/v1/blobs/{}", a.sha256),
                sha256: &a.sha256,
                size: a.size,
                target: format!("{}/{}/{}", r.version, a.platform, a.filename),
                channel: &r.channel,
                platform: &a.platform,
                downgrade: true,
            };
            let body = Bytes::from(serde_json::to_vec(&answer).expect("answer serializes"));
            for from in froms {
                let offer = Offer { version: version.clone(), share: Percent::FULL, salt: r.salt.clone(), body: body.clone() };
                slot.downgrades.push((from, offer));
            }
        }
        let unknown = counter("_other", "_other", "none");
        let compat = crate::compat::Feeds::build(&app, releases, public_url);
        AppView { app, slots, blobs, targets, unknown, compat }
    }

    pub fn slot(&self, channel: &str, platform: &str) -> Option<&Slot> {
        self.slots.get(channel)?.get(platform)
    }

    /// The newest release above `current` whose rollout admits this client. Without a client
    /// id only fully rolled-out releases are offered.
    pub fn decide<'a>(&self, slot: &'a Slot, current: &Version, client: Option<&str>) -> Decision<'a> {
        for offer in &slot.offers {
            if offer.version <= *current {
                break;
            }
            if admitted(&self.app, offer.share, &offer.salt, client) {
                return Decision::Offer(offer);
            }
        }
        if !slot.downgrades.is_empty() {
            if let Some((_, offer)) = slot.downgrades.iter().find(|(from, _)| from == current) {
                return Decision::Offer(offer);
            }
        }
        Decision::None
    }

    pub fn serves_blob(&self, sha256: &str) -> bool {
        self.blobs.contains(sha256)
    }

    pub fn target_blob(&self, target_file: &str) -> Option<&str> {
        self.targets.get(target_file).map(String::as_str)
    }
}

/// Whether a release at `share` is offered to `client`: its bucket is below the share; without
/// a client id only fully rolled-out releases are offered. Every feed decides with this.
pub fn admitted(app: &AppId, share: Percent, salt: &str, client: Option<&str>) -> bool {
    match client {
        Some(id) => rollout::admits(app, salt, id, share),
        None => share == Percent::FULL,
    }
}

/// Every app's view; readers clone an `Arc` and never wait for a rebuild.
#[derive(Default)]
pub struct Views {
    apps: RwLock<HashMap<String, Arc<AppView>>>,
}

impl Views {
    pub fn get(&self, app: &str) -> Option<Arc<AppView>> {
        self.apps.read().expect("views lock").get(app).cloned()
    }
    pub fn put(&self, view: AppView) {
        self.apps.write().expect("views lock").insert(view.app.to_string(), Arc::new(view));
    }
    pub fn serves_blob(&self, sha256: &str) -> bool {
        self.apps.read().expect("views lock").values().any(|v| v.serves_blob(sha256))
    }
}
