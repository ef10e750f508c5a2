//! Database rows. These are storage types, not the wire format: the server maps them to its own
//! response types, so a schema change cannot silently change the API.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRow {
    pub id: String,
    pub created_at: String,
}

/// A release's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseState {
    Draft,
    Published,
    /// No longer offered to clients that do not have it; resumable.
    Halted,
    /// Withdrawn for good.
    Yanked,
}

impl ReleaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Published => "published",
            Self::Halted => "halted",
            Self::Yanked => "yanked",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "draft" => Self::Draft,
            "published" => Self::Published,
            "halted" => Self::Halted,
            "yanked" => Self::Yanked,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRow {
    pub app: String,
    pub version: String,
    pub channel: String,
    pub notes: Option<String>,
    pub state: ReleaseState,
    /// Rollout share in basis points (0–10 000).
    pub rollout_bp: u32,
    /// Bucket salt: with the app and client id it fixes the client's rollout bucket.
    pub salt: String,
    pub created_at: String,
    pub published_at: Option<String>,
    pub artifacts: Vec<ArtifactRow>,
    /// What the compatible feeds need beyond the above (stored as one JSON column).
    pub compat: ReleaseCompat,
}

/// Release metadata for the compatible feeds (Tauri, electron-updater, Velopack, Sparkle):
/// given at publish or computed once then, in the same transaction as the release.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseCompat {
    /// Oldest OS version the release runs on (Sparkle's `minimumSystemVersion`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_system_version: Option<String>,
    /// Sparkle's `criticalUpdate`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub critical: bool,
    /// Digests and signatures per artifact (by platform).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<ArtifactCompat>,
    /// Extra files served next to an artifact, such as electron `.blockmap` files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ExtraFile>,
}

impl ReleaseCompat {
    pub fn artifact(&self, platform: &str) -> Option<&ArtifactCompat> {
        self.artifacts.iter().find(|a| a.platform == platform)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactCompat {
    pub platform: String,
    /// SHA-512, base64 (electron-updater).
    pub sha512: String,
    /// SHA-1, hex (Velopack).
    pub sha1: String,
    /// The minisign `.sig` file, base64 (Tauri's `signature`).
    pub minisign: String,
    /// Ed25519 over the file, base64 (Sparkle's `edSignature`).
    pub ed25519: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraFile {
    pub platform: String,
    pub filename: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRow {
    pub platform: String,
    pub filename: String,
    pub sha256: String,
    pub size: u64,
}

/// One signed TUF metadata file, exactly as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataRow {
    pub role: String,
    pub version: u64,
    pub body: Vec<u8>,
    pub expires: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    /// SHA-256 of the secret, hex. The secret itself is never stored.
    pub hash: String,
    pub role: String,
    /// Apps the token may touch; empty means every app.
    pub apps: Vec<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// An audit event to append; the store chains it to the previous one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub actor: String,
    pub action: String,
    pub app: Option<String>,
    pub detail: serde_json::Value,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub app: Option<String>,
    pub detail: String,
    pub request_id: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRow {
    pub fn fields(&self) -> updraft_core::audit::EventFields<'_> {
        updraft_core::audit::EventFields {
            at: &self.at,
            actor: &self.actor,
            action: &self.action,
            app: self.app.as_deref(),
            detail: &self.detail,
            request_id: self.request_id.as_deref(),
        }
    }
}

/// Everything one change writes, committed in one transaction: release rows (inserted or
/// replaced with their artifacts), new TUF metadata, and the audit event.
#[derive(Debug, Clone, Default)]
pub struct Changeset {
    pub releases: Vec<ReleaseRow>,
    pub metadata: Vec<MetadataRow>,
    pub audit: Option<AuditEntry>,
}
