//! Each app's TUF repository: its signing keys (files under `DATA/keys/APP/`, 0600, encrypted
//! when a passphrase is set), and the signing of root, targets, snapshot and timestamp.
//!
//! Invariants: metadata versions only ever go up by one (callers hold the app lock; the store
//! refuses a version that exists); every new set of metadata is verified with the same code our
//! client runs before it is handed to the store, so the server never publishes metadata its own
//! client would refuse; signing happens through the [`Signer`] seam so that thresholds, offline
//! root keys and HSMs can replace the file keys.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use updraft_core::tuf::{
    self, Ed25519Signer, RolloutCustom, RootKeys, Signer, TargetCustom, TargetFile, TargetPath, Targets, Thresholds, TrustedSet,
};
use updraft_core::{AppId, Channel, Platform, Version};
use updraft_store::{keys, MetaStore, MetadataRow, ReleaseRow, ReleaseState};

use crate::config::Lifetimes;
use crate::error::{ApiError, ApiResult};

const ROLES: [&str; 4] = ["root", "targets", "snapshot", "timestamp"];

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    #[error("key storage: {0}")]
    Keys(#[from] updraft_store::StoreError),
    #[error("TUF: {0}")]
    Tuf(#[from] tuf::TufError),
    #[error("io at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

impl From<RepoError> for ApiError {
    fn from(e: RepoError) -> Self {
        ApiError::internal(e)
    }
}

struct AppSigners {
    root: Ed25519Signer,
    targets: Ed25519Signer,
    snapshot: Ed25519Signer,
    timestamp: Ed25519Signer,
}

pub struct CreatedRepo {
    pub metadata: Vec<MetadataRow>,
    /// `1.root.json` as served: what clients pin.
    pub root: Vec<u8>,
    pub root_key_ids: Vec<String>,
}

pub struct Repo {
    data_dir: PathBuf,
    passphrase: Option<String>,
    lifetimes: Lifetimes,
    signers: Mutex<HashMap<String, Arc<AppSigners>>>,
}

fn random_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).expect("the operating system's random source failed");
    seed
}

fn expires_in(now: OffsetDateTime, secs: u64) -> OffsetDateTime {
    let t = now + time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 4));
    t.replace_nanosecond(0).unwrap_or(t)
}

fn row(role: &str, version: u64, body: Vec<u8>, expires: OffsetDateTime) -> Result<MetadataRow, RepoError> {
    let expires = tuf::expires_format::format(expires).map_err(|e| RepoError::Invalid(e.to_string()))?;
    Ok(MetadataRow { role: role.into(), version, body, expires })
}

impl Repo {
    pub fn new(data_dir: &Path, passphrase: Option<String>, lifetimes: Lifetimes) -> Self {
        Repo { data_dir: data_dir.to_owned(), passphrase, lifetimes, signers: Mutex::new(HashMap::new()) }
    }

    fn key_dir(&self, app: &AppId) -> PathBuf {
        self.data_dir.join("keys").join(app.as_str())
    }

    /// Where the app's trusted root is written for operators to hand to clients.
    pub fn trust_file(&self, app: &AppId) -> PathBuf {
        self.data_dir.join("trust").join(format!("{app}.root.json"))
    }

    /// Loads the app's keys now, so a missing passphrase or a damaged key file stops the
    /// server at start with a clear message instead of failing the first publish.
    pub fn check_keys(&self, app: &AppId) -> Result<(), RepoError> {
        self.signers(app).map(|_| ())
    }

    fn signers(&self, app: &AppId) -> Result<Arc<AppSigners>, RepoError> {
        if let Some(s) = self.signers.lock().expect("signers").get(app.as_str()) {
            return Ok(s.clone());
        }
        let dir = self.key_dir(app);
        let load = |role: &str| -> Result<Ed25519Signer, RepoError> {
            Ok(Ed25519Signer::from_seed(keys::read_key(&dir.join(format!("{role}.key")), self.passphrase.as_deref())?))
        };
        let s = Arc::new(AppSigners {
            root: load("root")?,
            targets: load("targets")?,
            snapshot: load("snapshot")?,
            timestamp: load("timestamp")?,
        });
        self.signers.lock().expect("signers").insert(app.to_string(), s.clone());
        Ok(s)
    }

    /// Generates the app's keys and its first metadata (root, targets, snapshot, timestamp at
    /// version 1). The caller holds the app lock and has checked the app does not exist, so a
    /// key directory found here is left over from a create that crashed before its commit.
    pub fn create_repository(&self, app: &AppId) -> Result<CreatedRepo, RepoError> {
        let dir = self.key_dir(app);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|source| RepoError::Io { path: dir.clone(), source })?;
        }
        keys::create_private_dir(&dir)?;
        for role in ROLES {
            keys::write_key(&dir.join(format!("{role}.key")), &random_seed(), self.passphrase.as_deref())?;
        }
        self.signers.lock().expect("signers").remove(app.as_str());
        let s = self.signers(app)?;
        let now = OffsetDateTime::now_utc();
        let root_keys = RootKeys {
            root: vec![s.root.public_key()],
            targets: vec![s.targets.public_key()],
            snapshot: vec![s.snapshot.public_key()],
            timestamp: vec![s.timestamp.public_key()],
        };
        let root_expires = expires_in(now, self.lifetimes.root);
        let root = tuf::new_root(&root_keys, Thresholds::default(), 1, root_expires)?;
        let root_bytes = tuf::to_wire(&tuf::sign(root, &[&s.root])?)?;
        let mut metadata = vec![row("root", 1, root_bytes.clone(), root_expires)?];
        metadata.extend(self.sign_set(app, &s, &[], now, (1, 1, 1), None)?);
        self.verify_chain(&root_bytes, &metadata)?;
        Ok(CreatedRepo { metadata, root: root_bytes, root_key_ids: vec![s.root.public_key().key_id().to_string()] })
    }

    /// Writes `DATA/trust/APP.root.json` (atomically; readable, it is public).
    pub fn write_trust_file(&self, app: &AppId, root: &[u8]) -> Result<(), RepoError> {
        let path = self.trust_file(app);
        let dir = path.parent().expect("trust file has a parent");
        std::fs::create_dir_all(dir).map_err(|source| RepoError::Io { path: dir.to_owned(), source })?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, root).and_then(|_| std::fs::rename(&tmp, &path)).map_err(|source| RepoError::Io { path: path.clone(), source })
    }

    /// Targets metadata for the releases clients may see (published and halted), each
    /// artifact a target carrying Updraft's signed `custom`.
    fn targets_doc(app: &AppId, releases: &[ReleaseRow], version: u64, expires: OffsetDateTime) -> Result<Targets, RepoError> {
        let mut t = Targets::new(version, expires);
        for r in releases.iter().filter(|r| matches!(r.state, ReleaseState::Published | ReleaseState::Halted)) {
            let bad = |what: &str| RepoError::Invalid(format!("release {} has an invalid {what}", r.version));
            let v: Version = r.version.parse().map_err(|_| bad("version"))?;
            let channel: Channel = r.channel.parse().map_err(|_| bad("channel"))?;
            for a in &r.artifacts {
                let platform: Platform = a.platform.parse().map_err(|_| bad("platform"))?;
                let path = TargetPath::new(&v, &platform, &a.filename)?;
                let custom = TargetCustom {
                    app: app.clone(),
                    channel: channel.clone(),
                    version: v.clone(),
                    platform,
                    notes: r.notes.clone(),
                    pub_date: r.published_at.clone().unwrap_or_else(|| r.created_at.clone()),
                    rollout: RolloutCustom { basis_points: r.rollout_bp, salt: r.salt.clone(), paused: r.state == ReleaseState::Halted },
                };
                t.targets.insert(path.to_string(), TargetFile::new(a.size, a.sha256.clone(), Some(custom.to_value())));
            }
        }
        Ok(t)
    }

    /// Signs targets (from `releases`, or keeps `existing_targets`), snapshot and timestamp at
    /// the given versions.
    fn sign_set(
        &self,
        app: &AppId,
        s: &AppSigners,
        releases: &[ReleaseRow],
        now: OffsetDateTime,
        versions: (u64, u64, u64),
        existing_targets: Option<&MetadataRow>,
    ) -> Result<Vec<MetadataRow>, RepoError> {
        let (tv, sv, tsv) = versions;
        let mut out = Vec::new();
        let (targets_bytes, targets_version) = match existing_targets {
            Some(t) => (t.body.clone(), t.version),
            None => {
                let exp = expires_in(now, self.lifetimes.targets);
                let bytes = tuf::to_wire(&tuf::sign(Self::targets_doc(app, releases, tv, exp)?, &[&s.targets])?)?;
                out.push(row("targets", tv, bytes.clone(), exp)?);
                (bytes, tv)
            }
        };
        let snap_exp = expires_in(now, self.lifetimes.snapshot);
        let snap_bytes = tuf::to_wire(&tuf::sign(tuf::snapshot_for(&targets_bytes, targets_version, sv, snap_exp), &[&s.snapshot])?)?;
        let ts_exp = expires_in(now, self.lifetimes.timestamp);
        let ts_bytes = tuf::to_wire(&tuf::sign(tuf::timestamp_for(&snap_bytes, sv, tsv, ts_exp), &[&s.timestamp])?)?;
        out.push(row("snapshot", sv, snap_bytes, snap_exp)?);
        out.push(row("timestamp", tsv, ts_bytes, ts_exp)?);
        Ok(out)
    }

    /// Runs our client's verification over a new set before anyone can see it.
    fn verify_chain(&self, root: &[u8], set: &[MetadataRow]) -> Result<(), RepoError> {
        self.verify_chain_at(root, set, OffsetDateTime::now_utc())
    }

    fn verify_chain_at(&self, root: &[u8], set: &[MetadataRow], now: OffsetDateTime) -> Result<(), RepoError> {
        let find = |role: &str| set.iter().find(|m| m.role == role).map(|m| m.body.as_slice());
        let mut trusted = TrustedSet::new(find("root").unwrap_or(root))?;
        trusted.check_root(now)?;
        if let Some(ts) = find("timestamp") {
            trusted.update_timestamp(ts, now)?;
        }
        if let Some(snap) = find("snapshot") {
            trusted.update_snapshot(snap, now)?;
        }
        if let Some(t) = find("targets") {
            trusted.update_targets(t, now)?;
        }
        Ok(())
    }

    async fn latest(store: &dyn MetaStore, app: &AppId, role: &str) -> ApiResult<MetadataRow> {
        store.latest_metadata(app.as_str(), role).await?.ok_or_else(|| ApiError::internal(format!("app {app} has no {role} metadata")))
    }

    /// New targets, snapshot and timestamp for a changed set of releases. The caller holds
    /// the app lock and commits the rows in the same transaction as the release change.
    pub async fn sign_targets_change(&self, store: &dyn MetaStore, app: &AppId, releases: &[ReleaseRow]) -> ApiResult<Vec<MetadataRow>> {
        let root = Self::latest(store, app, "root").await?;
        let t = Self::latest(store, app, "targets").await?;
        let sn = Self::latest(store, app, "snapshot").await?;
        let ts = Self::latest(store, app, "timestamp").await?;
        let s = self.signers(app)?;
        let set = self.sign_set(app, &s, releases, OffsetDateTime::now_utc(), (t.version + 1, sn.version + 1, ts.version + 1), None)?;
        self.verify_chain(&root.body, &set)?;
        Ok(set)
    }

    /// Re-signs whatever is past half its lifetime: root (same keys, next version), targets
    /// (and so snapshot and timestamp), snapshot (and timestamp), or timestamp alone.
    pub async fn refresh_expiring(
        &self,
        store: &dyn MetaStore,
        app: &AppId,
        releases: &[ReleaseRow],
        now: OffsetDateTime,
    ) -> ApiResult<Vec<MetadataRow>> {
        let due = |row: &MetadataRow, lifetime: u64| -> bool {
            let Ok(exp) = tuf::expires_format::parse(&row.expires) else { return true };
            (exp - now).whole_seconds() < i64::try_from(lifetime / 2).unwrap_or(i64::MAX)
        };
        let mut root = Self::latest(store, app, "root").await?;
        let t = Self::latest(store, app, "targets").await?;
        let sn = Self::latest(store, app, "snapshot").await?;
        let ts = Self::latest(store, app, "timestamp").await?;
        let s = self.signers(app)?;
        let mut out = Vec::new();
        if due(&root, self.lifetimes.root) {
            let current: TrustedSet = TrustedSet::new(&root.body).map_err(RepoError::from)?;
            let exp = expires_in(now, self.lifetimes.root);
            let mut next = current.root().clone();
            next.version = root.version + 1;
            next.expires = exp;
            let bytes = tuf::to_wire(&tuf::sign(next, &[&s.root]).map_err(RepoError::from)?).map_err(RepoError::from)?;
            root = row("root", root.version + 1, bytes, exp)?;
            out.push(root.clone());
        }
        let versions = (t.version + 1, sn.version + 1, ts.version + 1);
        if due(&t, self.lifetimes.targets) {
            out.extend(self.sign_set(app, &s, releases, now, versions, None)?);
        } else if due(&sn, self.lifetimes.snapshot) {
            out.extend(self.sign_set(app, &s, releases, now, versions, Some(&t))?);
        } else if due(&ts, self.lifetimes.timestamp) {
            let exp = expires_in(now, self.lifetimes.timestamp);
            let bytes = tuf::to_wire(
                &tuf::sign(tuf::timestamp_for(&sn.body, sn.version, ts.version + 1, exp), &[&s.timestamp]).map_err(RepoError::from)?,
            )
            .map_err(RepoError::from)?;
            out.push(row("timestamp", ts.version + 1, bytes, exp)?);
        }
        if !out.is_empty() {
            // Verify the whole newest set, old parts included, as a client would see it.
            let pick = |role: &str, old: &MetadataRow| out.iter().find(|m| m.role == role).cloned().unwrap_or_else(|| old.clone());
            let full = vec![pick("timestamp", &ts), pick("snapshot", &sn), pick("targets", &t)];
            self.verify_chain_at(&root.body, &full, now)?;
        }
        Ok(out)
    }
}
