//! Updraft's client library: what an app (or `updraft client`) embeds to check for, download
//! and install updates. Every decision rests on TUF-verified metadata from the app's
//! repository, starting from a pinned root; the server's own update API is never trusted.
//!
//! ```no_run
//! # async fn demo() -> Result<(), updraft_client::ClientError> {
//! use updraft_client::{Client, ClientConfig, Limits};
//! let cfg = ClientConfig {
//!     server: "https://updates.example.com".into(),
//!     app: "my-app".parse().unwrap(),
//!     channel: "stable".parse().unwrap(),
//!     platform: "linux-x86_64".parse().unwrap(),
//!     current: "1.3.2".parse().unwrap(),
//!     trusted_root: std::fs::read("my-app.root.json").unwrap(),
//!     state_dir: "/var/lib/my-app/updraft".into(),
//!     client_id: None,
//!     limits: Limits::default(),
//! };
//! let mut client = Client::new(cfg)?;
//! if let Some(update) = client.check().await? {
//!     client.install(&update, std::path::Path::new("/opt/my-app/my-app"), |done, total| {
//!         eprintln!("{done}/{total}");
//!     }).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! State kept in `state_dir` (one per app installation):
//! - `client-id`: this install's random id, used for rollout buckets;
//! - `tuf/{app}/`: verified metadata (`N.root.json` for each root after the pinned one,
//!   `timestamp.json`, `snapshot.json`, `targets.json`), the baseline that stops rollbacks;
//! - `installed.json`: the last install (`{"app", "version", "previous_version"}`).

mod download;
mod error;
mod fsutil;
mod http;
mod install;
mod select;

use std::path::{Path, PathBuf};
use std::time::Duration;

use time::OffsetDateTime;
use updraft_core::tuf::{consistent_target_name, metadata_file_name, RoleName, TimestampUpdate, TrustedSet, TufError};
use updraft_core::{AppId, Channel, Platform, Version};

pub use error::ClientError;
pub use install::{previous_path, InstallRecord};

use fsutil::{blocking, read_if_exists, remove_if_exists, write_atomic};

/// Size and time limits (TUF's endless-data and slow-retrieval defences).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_root_bytes: u64,
    pub max_timestamp_bytes: u64,
    pub max_snapshot_bytes: u64,
    pub max_targets_bytes: u64,
    /// How many root versions one refresh may walk through.
    pub max_root_rotations: u32,
    /// Connect timeout; whole-request timeout for metadata; for target downloads, the
    /// longest wait for the response and for each next chunk.
    pub request_timeout: Duration,
    /// Average bytes/s below which a transfer is abandoned, once `min_rate_grace` has
    /// passed. 0 disables the check.
    pub min_transfer_rate: u64,
    pub min_rate_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_root_bytes: 512 * 1024,
            max_timestamp_bytes: 16 * 1024,
            max_snapshot_bytes: 2 * 1024 * 1024,
            max_targets_bytes: 32 * 1024 * 1024,
            max_root_rotations: 32,
            request_timeout: Duration::from_secs(30),
            min_transfer_rate: 1024,
            min_rate_grace: Duration::from_secs(15),
        }
    }
}

impl Limits {
    fn max_bytes(&self, role: RoleName) -> u64 {
        match role {
            RoleName::Root => self.max_root_bytes,
            RoleName::Timestamp => self.max_timestamp_bytes,
            RoleName::Snapshot => self.max_snapshot_bytes,
            RoleName::Targets => self.max_targets_bytes,
        }
    }
}

/// Everything the client needs; nothing is read from the environment.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server's base URL, e.g. `http://127.0.0.1:8080` (any path prefix is kept).
    pub server: String,
    pub app: AppId,
    pub channel: Channel,
    pub platform: Platform,
    /// The version running now; only newer versions are offered.
    pub current: Version,
    /// Bytes of the pinned root (`DATA/trust/APP.root.json`, served as `1.root.json`).
    pub trusted_root: Vec<u8>,
    /// Where verified metadata, the client id and the install record live.
    pub state_dir: PathBuf,
    /// Overrides the stored/generated client id (for rollout buckets).
    pub client_id: Option<String>,
    pub limits: Limits,
}

/// An update offered to this client, taken from verified targets metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Update {
    pub version: Version,
    /// The TUF target path, `{version}/{platform}/{filename}`.
    pub target_path: String,
    pub length: u64,
    /// Lowercase hex SHA-256 of the file.
    pub sha256: String,
    pub notes: Option<String>,
    /// RFC 3339 publication time.
    pub pub_date: String,
    /// Where the file is downloaded from.
    pub url: String,
    /// A lower version than the one running, offered because that one was yanked: the signed
    /// targets metadata lists the running version in this target's `downgrade_from`.
    pub downgrade: bool,
}

/// A client for one app on one channel and platform. See the crate docs.
pub struct Client {
    cfg: ClientConfig,
    base: String,
    http: reqwest::Client,
    client_id: String,
    meta_dir: PathBuf,
    trusted: Option<TrustedSet>,
    /// Metadata bytes downloaded by the last refresh.
    downloaded: u64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.base)
            .field("app", &self.cfg.app)
            .field("channel", &self.cfg.channel)
            .field("platform", &self.cfg.platform)
            .field("current", &self.cfg.current)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Validates the configuration, checks the pinned root is a self-signed root, prepares
    /// `state_dir` and settles the client id. Does no network IO.
    pub fn new(cfg: ClientConfig) -> Result<Self, ClientError> {
        let base = check_server_url(&cfg.server)?;
        // Fail early on a bad pin rather than at the first check.
        TrustedSet::new(&cfg.trusted_root)?;
        let meta_dir = cfg.state_dir.join("tuf").join(cfg.app.as_str());
        std::fs::create_dir_all(&meta_dir).map_err(ClientError::io(&meta_dir))?;
        let client_id = match &cfg.client_id {
            Some(id) => {
                check_client_id(id).map_err(|reason| ClientError::Config { reason })?;
                id.clone()
            }
            None => load_or_create_client_id(&cfg.state_dir)?,
        };
        let http = reqwest::Client::builder()
            .user_agent(concat!("updraft-client/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(cfg.limits.request_timeout)
            .read_timeout(cfg.limits.request_timeout)
            .build()
            .map_err(|e| ClientError::Config { reason: format!("cannot set up HTTP client: {e}") })?;
        Ok(Client { cfg, base, http, client_id, meta_dir, trusted: None, downloaded: 0 })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// Changes the version this client considers installed (after an install or rollback).
    pub fn set_current(&mut self, version: Version) {
        self.cfg.current = version;
    }

    /// The id this install uses for rollout buckets.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// How many metadata bytes the last [`Client::refresh`] downloaded (cached files reused
    /// cost nothing): what a refresh costs a device on a metered link.
    pub fn last_refresh_bytes(&self) -> u64 {
        self.downloaded
    }

    /// The verified metadata of the last successful [`Client::refresh`].
    pub fn trusted(&self) -> Option<&TrustedSet> {
        self.trusted.as_ref()
    }

    /// Runs the TUF client workflow (spec §5.3–5.6): walks the root chain from the pinned
    /// root, then timestamp, snapshot and targets, each checked for signatures, versions
    /// (no rollback), hashes, sizes and expiry. Verified metadata is persisted only after it
    /// passes, and becomes the baseline for the next refresh.
    pub async fn refresh(&mut self) -> Result<(), ClientError> {
        self.trusted = None;
        self.downloaded = 0;
        let now = OffsetDateTime::now_utc();
        let limits = self.cfg.limits.clone();
        let mut set = TrustedSet::new(&self.cfg.trusted_root)?;

        // Roots verified on earlier runs: replayed from the pinned one, so the cache itself
        // is checked, not trusted.
        loop {
            let path = self.meta_dir.join(metadata_file_name(RoleName::Root, set.root().version + 1, true));
            let Some(bytes) = self.read_cached(&path, limits.max_root_bytes).await? else { break };
            if let Err(e) = set.update_root(&bytes) {
                tracing::warn!(path = %path.display(), error = %e, "discarding cached root");
                self.remove_cached(&path).await?;
                break;
            }
        }
        let root_before = set.root().clone();

        // Newer roots from the server, one version at a time, until there is none.
        for _ in 0..limits.max_root_rotations {
            let next = set.root().version + 1;
            let name = metadata_file_name(RoleName::Root, next, true);
            let url = self.metadata_url(&name);
            let bytes = match http::get_metadata(&self.http, &url, RoleName::Root, limits.max_root_bytes, &limits).await {
                Ok(b) => b,
                // 403 too: some static hosts (S3) answer it for a missing object.
                Err(ClientError::NotFound { .. } | ClientError::Status { status: 403, .. }) => break,
                Err(e) => return Err(e),
            };
            self.downloaded += bytes.len() as u64;
            set.update_root(&bytes)?;
            tracing::info!(app = %self.cfg.app, version = next, "following root rotation");
            self.persist(&name, bytes).await?;
        }
        set.check_root(now)?;

        let ts_path = self.meta_dir.join("timestamp.json");
        let snap_path = self.meta_dir.join("snapshot.json");
        let targets_path = self.meta_dir.join("targets.json");
        if root_before.online_keys_rotated(set.root()) {
            // Spec 5.3.11: new timestamp/snapshot keys void the old baselines, which is how a
            // repository recovers from a fast-forward attack.
            tracing::info!(app = %self.cfg.app, "timestamp or snapshot keys rotated; discarding cached metadata");
            self.remove_cached(&ts_path).await?;
            self.remove_cached(&snap_path).await?;
        }

        // Timestamp: cached copy as the rollback baseline, then the fresh one.
        if let Some(bytes) = self.read_cached(&ts_path, limits.max_timestamp_bytes).await? {
            if let Err(e) = set.load_cached_timestamp(&bytes) {
                tracing::warn!(error = %e, "discarding cached timestamp");
                self.remove_cached(&ts_path).await?;
            }
        }
        let url = self.metadata_url("timestamp.json");
        let bytes = http::get_metadata(&self.http, &url, RoleName::Timestamp, limits.max_timestamp_bytes, &limits).await?;
        self.downloaded += bytes.len() as u64;
        if set.update_timestamp(&bytes, now)? == TimestampUpdate::Updated {
            self.persist("timestamp.json", bytes).await?;
        }

        // Snapshot: reuse the cached one if it is the current version, else download.
        let mut current = false;
        if let Some(bytes) = self.read_cached(&snap_path, limits.max_snapshot_bytes).await? {
            match set.load_cached_snapshot(&bytes, now) {
                Ok(c) => current = c,
                Err(e) => {
                    tracing::warn!(error = %e, "discarding cached snapshot");
                    self.remove_cached(&snap_path).await?;
                }
            }
        }
        if !current {
            let meta = set.timestamp().ok_or(TufError::OutOfOrder { reason: "no timestamp" })?.snapshot_meta()?.clone();
            let bytes = self.fetch_role(RoleName::Snapshot, meta.version, meta.length, set.root().consistent_snapshot).await?;
            self.downloaded += bytes.len() as u64;
            set.update_snapshot(&bytes, now)?;
            self.persist("snapshot.json", bytes).await?;
        }

        // Targets: the cached copy is used only if it is exactly what the snapshot names.
        let cached_ok = match self.read_cached(&targets_path, limits.max_targets_bytes).await? {
            Some(bytes) => set.update_targets(&bytes, now).is_ok(),
            None => false,
        };
        if !cached_ok {
            let meta = set.snapshot().ok_or(TufError::OutOfOrder { reason: "no snapshot" })?.targets_meta()?.clone();
            let bytes = self.fetch_role(RoleName::Targets, meta.version, meta.length, set.root().consistent_snapshot).await?;
            self.downloaded += bytes.len() as u64;
            set.update_targets(&bytes, now)?;
            self.persist("targets.json", bytes).await?;
        }

        self.trusted = Some(set);
        Ok(())
    }

    /// Refreshes metadata and returns the update this client should take, if any.
    pub async fn check(&mut self) -> Result<Option<Update>, ClientError> {
        self.refresh().await?;
        Ok(self.offered())
    }

    /// The update offered by the metadata of the last refresh, without network IO.
    pub fn offered(&self) -> Option<Update> {
        let targets = self.trusted.as_ref()?.targets()?;
        let want = select::Want {
            app: &self.cfg.app,
            channel: &self.cfg.channel,
            platform: &self.cfg.platform,
            current: &self.cfg.current,
            client_id: &self.client_id,
        };
        let chosen = select::choose(targets, &want)?;
        Some(Update {
            downgrade: chosen.custom.version < *want.current,
            version: chosen.custom.version,
            target_path: chosen.path.to_owned(),
            length: chosen.file.length,
            sha256: chosen.file.hashes.sha256.clone(),
            notes: chosen.custom.notes,
            pub_date: chosen.custom.pub_date,
            url: self.target_url(chosen.path, &chosen.file.hashes.sha256),
        })
    }

    /// Downloads `update` to `out`, resuming a previous partial download (`{out}.part`).
    /// Length and hash come from the verified targets metadata (refreshed first if this
    /// client has none); `out` appears only once the whole file matched them.
    /// `progress(done, total)` is called as bytes arrive.
    pub async fn fetch(&mut self, update: &Update, out: &Path, mut progress: impl FnMut(u64, u64)) -> Result<(), ClientError> {
        if self.trusted.is_none() {
            self.refresh().await?;
        }
        let unknown = || ClientError::UnknownTarget { target: update.target_path.clone() };
        let file = self.trusted.as_ref().and_then(|t| t.targets()).and_then(|t| t.targets.get(&update.target_path)).ok_or_else(unknown)?;
        // The `Update` must describe what is signed now; a stale or hand-made one is refused.
        if file.length != update.length
            || !file.hashes.sha256.eq_ignore_ascii_case(&update.sha256)
            || !select::is_sha256_hex(&file.hashes.sha256)
        {
            return Err(unknown());
        }
        let url = self.target_url(&update.target_path, &file.hashes.sha256);
        let job = download::Job { url: &url, target: &update.target_path, length: file.length, sha256: &file.hashes.sha256 };
        download::download(&self.http, &job, out, &self.cfg.limits, &mut progress).await
    }

    fn metadata_url(&self, name: &str) -> String {
        format!("{}/tuf/{}/metadata/{name}", self.base, self.cfg.app)
    }

    fn target_url(&self, target_path: &str, sha256: &str) -> String {
        let consistent = self.trusted.as_ref().is_none_or(|t| t.root().consistent_snapshot);
        let name = if consistent { consistent_target_name(target_path, sha256) } else { target_path.to_owned() };
        format!("{}/tuf/{}/targets/{name}", self.base, self.cfg.app)
    }

    /// Downloads snapshot or targets metadata, capped by the length the referring metadata
    /// signs (when given) and never more than the configured limit.
    async fn fetch_role(&self, role: RoleName, version: u64, signed_length: Option<u64>, consistent: bool) -> Result<Vec<u8>, ClientError> {
        let limit = self.cfg.limits.max_bytes(role);
        let cap = match signed_length {
            Some(len) if len > limit => return Err(TufError::MetadataTooLarge { role, limit }.into()),
            Some(len) => len,
            None => limit,
        };
        let url = self.metadata_url(&metadata_file_name(role, version, consistent));
        http::get_metadata(&self.http, &url, role, cap, &self.cfg.limits).await
    }

    async fn read_cached(&self, path: &Path, limit: u64) -> Result<Option<Vec<u8>>, ClientError> {
        let path = path.to_owned();
        blocking(move || read_if_exists(&path, limit)).await
    }

    async fn remove_cached(&self, path: &Path) -> Result<(), ClientError> {
        let path = path.to_owned();
        blocking(move || remove_if_exists(&path)).await
    }

    async fn persist(&self, name: &str, bytes: Vec<u8>) -> Result<(), ClientError> {
        let path = self.meta_dir.join(name);
        blocking(move || write_atomic(&path, &bytes)).await
    }
}

/// Accepts `http(s)://host[:port][/prefix]` without credentials, query or fragment; returns
/// it without a trailing slash.
fn check_server_url(server: &str) -> Result<String, ClientError> {
    let bad = |reason: &str| ClientError::Config { reason: format!("server URL {server:?}: {reason}") };
    let url = reqwest::Url::parse(server).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Credentials would end up in error messages and logs; don't echo them here either.
        return Err(ClientError::Config { reason: "server URL must not contain a user name or password".into() });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    if url.host_str().is_none() {
        return Err(bad("has no host"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// A client id: 1 to 128 characters of `[A-Za-z0-9._-]`. It is hashed into rollout buckets
/// and may be sent to servers, so it must be plain and never personal.
fn check_client_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err(format!("client id {:?} must be 1 to 128 characters of A-Z a-z 0-9 . _ -", id.chars().take(40).collect::<String>()));
    }
    Ok(())
}

/// Reads `state_dir/client-id`, or makes a new random one (16 bytes, hex) and stores it.
fn load_or_create_client_id(state_dir: &Path) -> Result<String, ClientError> {
    let path = state_dir.join("client-id");
    if let Some(bytes) = read_if_exists(&path, 1024)? {
        let id = String::from_utf8_lossy(&bytes).trim().to_owned();
        if check_client_id(&id).is_ok() {
            return Ok(id);
        }
        tracing::warn!(path = %path.display(), "stored client id is invalid; making a new one");
    }
    let mut raw = [0u8; 16];
    getrandom::getrandom(&mut raw)
        .map_err(|e| ClientError::Io { path: path.clone(), source: std::io::Error::other(format!("no randomness: {e}")) })?;
    let id = hex::encode(raw);
    write_atomic(&path, id.as_bytes())?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        assert_eq!(check_server_url("http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(check_server_url("https://x.example/updates/").unwrap(), "https://x.example/updates");
        for bad in ["ftp://x", "http://u:p@x", "http://x/?a=1", "not a url", "file:///etc"] {
            assert!(check_server_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn client_ids_are_generated_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_client_id(dir.path()).unwrap();
        assert_eq!(a.len(), 32);
        assert_eq!(load_or_create_client_id(dir.path()).unwrap(), a);
        std::fs::write(dir.path().join("client-id"), "bad id with spaces").unwrap();
        assert_ne!(load_or_create_client_id(dir.path()).unwrap(), a);
        assert!(check_client_id("abc-1.2_x").is_ok());
        assert!(check_client_id("a/b").is_err());
    }
}
