//! Each app's TUF repository: its signing keys (a [`KeyStore`] under `DATA/keys/APP/`: key
//! files, 0600, encrypted when a passphrase is set, or PKCS#11 references), and the signing of
//! root, targets, snapshot and timestamp with thresholds of those keys; key rotation and the
//! offline root ceremony (export an unsigned next root, sign it elsewhere, import it).
//!
//! Invariants: metadata versions only ever go up by one (callers hold the app lock; the store
//! refuses a version that exists); every new set of metadata is verified with the same code our
//! client runs, from the previous root, before it is handed to the store, so the server never
//! publishes metadata its own client would refuse; the newest root decides which held key
//! signs for which role, so new key files written before a rotation commits are inert until
//! the root naming them is committed.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use updraft_core::tuf::{
    self, Key, KeyId, RoleName, RolloutCustom, Root, RootKeys, Signer, TargetCustom, TargetFile, TargetPath, Targets, Thresholds,
    TrustedSet, TufError,
};
use updraft_core::{AppId, Channel, Percent, Platform, Version};
use updraft_store::{MetaStore, MetadataRow, ReleaseRow, ReleaseState};

use crate::config::Lifetimes;
use crate::error::{ApiError, ApiResult};
use crate::keystore::{self, Backend, KeyStore, Pkcs11Defaults};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    #[error("key storage: {0}")]
    Keys(#[from] updraft_store::StoreError),
    #[error("TUF: {0}")]
    Tuf(#[from] TufError),
    #[error("io at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("HSM key {path}: {source}")]
    Hsm { path: PathBuf, source: updraft_hsm::HsmError },
    /// Fewer than `threshold` keys of `role` are held by this server (they are offline).
    #[error("this server holds {held} of the {threshold} {role} key(s) needed to sign")]
    KeysOffline { role: RoleName, held: u32, threshold: u32 },
    /// A request the repository refuses: a client's mistake, with a stable code.
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    #[error("{0}")]
    Invalid(String),
    /// The served-version mark could not be written, so nothing new may be served.
    #[error("recording the served metadata versions in the blob store: {0}")]
    Mark(updraft_store::StoreError),
}

/// The highest metadata version of each role an app may have served. The server writes it
/// beside the blobs (`marks/tuf-APP.json`) *before* it commits newly signed metadata, so it
/// outlives the loss of the database: a restore signs above it (see docs/runbook.md, "Backups").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServedVersions {
    pub root: u64,
    pub targets: u64,
    pub snapshot: u64,
    pub timestamp: u64,
}

impl ServedVersions {
    /// Raises each role to at least the version of any row of it in `rows`.
    pub fn raise(&mut self, rows: &[MetadataRow]) {
        for r in rows {
            self.raise_role(&r.role, r.version);
        }
    }

    /// Raises `role` to at least `version` (other role names are ignored).
    pub fn raise_role(&mut self, role: &str, version: u64) {
        let v = match role {
            "root" => &mut self.root,
            "targets" => &mut self.targets,
            "snapshot" => &mut self.snapshot,
            "timestamp" => &mut self.timestamp,
            _ => return,
        };
        *v = (*v).max(version);
    }

    /// Each role at the higher of the two.
    pub fn max(self, o: ServedVersions) -> ServedVersions {
        ServedVersions {
            root: self.root.max(o.root),
            targets: self.targets.max(o.targets),
            snapshot: self.snapshot.max(o.snapshot),
            timestamp: self.timestamp.max(o.timestamp),
        }
    }

    fn mark_name(app: &AppId) -> String {
        format!("tuf-{app}.json")
    }

    /// The mark the server left for `app` in `blobs`, if any.
    pub async fn read_mark(blobs: &updraft_store::BlobStore, app: &AppId) -> Result<Option<ServedVersions>, updraft_store::StoreError> {
        let Some(body) = blobs.get_mark(&Self::mark_name(app)).await? else { return Ok(None) };
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| updraft_store::StoreError::Corrupt(format!("the served-version mark of {app} is unreadable: {e}")))
    }
}

impl RepoError {
    fn refused(code: &'static str, message: impl Into<String>) -> Self {
        RepoError::Refused { code, message: message.into() }
    }
}

impl From<RepoError> for ApiError {
    fn from(e: RepoError) -> Self {
        use axum::http::StatusCode;
        match e {
            RepoError::KeysOffline { role: RoleName::Root, .. } => ApiError::conflict(
                "root_keys_offline",
                format!("{e}: sign the new root offline (updraft keys root export / sign / import)"),
            ),
            RepoError::KeysOffline { .. } => ApiError::conflict("keys_offline", e.to_string()),
            // Only HSM signers can fail to sign (in-memory ed25519 cannot).
            RepoError::Tuf(TufError::Signing { reason }) => {
                tracing::error!(error = %reason, "HSM signing failed");
                ApiError::new(StatusCode::BAD_GATEWAY, "hsm_unavailable", "the HSM could not sign; the server log has the details")
            }
            RepoError::Refused { code, message } => ApiError::bad_request(code, message),
            RepoError::Hsm { source, .. } => match source {
                updraft_hsm::HsmError::InvalidUri { .. }
                | updraft_hsm::HsmError::KeyNotUnique { .. }
                | updraft_hsm::HsmError::NoToken { .. }
                | updraft_hsm::HsmError::NotEd25519 { .. } => ApiError::bad_request(source.code(), source.to_string()),
                other => ApiError::new(StatusCode::BAD_GATEWAY, "hsm_unavailable", {
                    tracing::error!(error = %other, "HSM failure");
                    "the HSM could not be used; the server log has the details"
                }),
            },
            other => ApiError::internal(other),
        }
    }
}

pub struct CreatedRepo {
    pub metadata: Vec<MetadataRow>,
    /// `1.root.json` as served: what clients pin.
    pub root: Vec<u8>,
    pub root_key_ids: Vec<String>,
}

/// What `keys rotate` changes: one role's keys and threshold.
#[derive(Debug, Clone)]
pub struct RotateSpec {
    pub role: RoleName,
    /// New threshold; by default the old one, lowered to the number of new keys if needed.
    pub threshold: Option<u32>,
    /// How many new key files to generate on this server.
    pub generate: u32,
    /// Existing HSM keys (RFC 7512 URIs) to use.
    pub pkcs11: Vec<String>,
    /// Public keys whose private halves stay offline (for the root role).
    pub public_keys: Vec<Key>,
}

/// What `keys root export` puts in the next root.
#[derive(Debug, Clone, Default)]
pub struct ExportSpec {
    /// Roles whose keys become exactly these public keys (plus any generated for that role).
    pub keys: Vec<(RoleName, Vec<Key>)>,
    /// Roles for which this server generates one new key file (online roles).
    pub generate: Vec<RoleName>,
    pub thresholds: Vec<(RoleName, u32)>,
}

/// A committed-to-be key change: the rows to store and what changed, for the audit log.
pub struct KeyChange {
    pub metadata: Vec<MetadataRow>,
    pub root: Root,
    pub retired: Vec<KeyId>,
    pub added: Vec<KeyId>,
}

/// Expiry of one role's newest metadata, as `/readyz` and `/metrics` report it.
#[derive(Debug, Clone)]
pub struct RoleExpiry {
    pub role: RoleName,
    pub version: u64,
    pub expires: OffsetDateTime,
    /// Whether this server holds a threshold of the role's keys (can re-sign it).
    pub can_sign: bool,
    /// The role's configured lifetime, in seconds.
    pub lifetime: u64,
}

impl RoleExpiry {
    pub fn seconds_left(&self, now: OffsetDateTime) -> i64 {
        (self.expires - now).whole_seconds()
    }
    /// Less than a quarter of its lifetime left. Online roles are re-signed at half their
    /// lifetime, so this means re-signing has failed for a quarter lifetime, or cannot happen
    /// here (offline keys): an operator must act before clients refuse it.
    pub fn at_risk(&self, now: OffsetDateTime) -> bool {
        self.seconds_left(now) < i64::try_from(self.lifetime / 4).unwrap_or(i64::MAX)
    }
}

pub struct Repo {
    data_dir: PathBuf,
    passphrase: Option<String>,
    lifetimes: Lifetimes,
    pkcs11: Pkcs11Defaults,
    /// Where served-version marks go (the server's blob store); none for offline tools.
    marks: Option<Arc<updraft_store::BlobStore>>,
    stores: Mutex<HashMap<String, Arc<KeyStore>>>,
    expiry: Mutex<HashMap<String, Vec<RoleExpiry>>>,
}

fn expires_in(now: OffsetDateTime, secs: u64) -> OffsetDateTime {
    let t = now + time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 4));
    t.replace_nanosecond(0).unwrap_or(t)
}

fn row(role: &str, version: u64, body: Vec<u8>, expires: OffsetDateTime) -> Result<MetadataRow, RepoError> {
    let expires = tuf::expires_format::format(expires).map_err(|e| RepoError::Invalid(e.to_string()))?;
    Ok(MetadataRow { role: role.into(), version, body, expires })
}

fn refs(signers: &[Arc<dyn Signer>]) -> Vec<&dyn Signer> {
    signers.iter().map(|s| s.as_ref()).collect()
}

/// The four newest rows of an app.
struct Latest {
    root: MetadataRow,
    targets: MetadataRow,
    snapshot: MetadataRow,
    timestamp: MetadataRow,
    /// Yanked versions whose clients are offered a downgrade (signed into targets).
    downgrades: Vec<String>,
}

impl Repo {
    /// A repository service with no PKCS#11 defaults; see [`Repo::with_pkcs11`].
    pub fn new(data_dir: &Path, passphrase: Option<String>, lifetimes: Lifetimes) -> Self {
        let pkcs11 = Pkcs11Defaults::default();
        Repo {
            data_dir: data_dir.to_owned(),
            passphrase,
            lifetimes,
            pkcs11,
            marks: None,
            stores: Mutex::new(HashMap::new()),
            expiry: Mutex::new(HashMap::new()),
        }
    }

    /// The PKCS#11 module and PIN used for `pkcs11:` URIs that name neither.
    pub fn with_pkcs11(mut self, defaults: Pkcs11Defaults) -> Self {
        self.pkcs11 = defaults;
        self
    }

    /// Records served-version marks in `blobs` before every commit of new metadata.
    pub fn with_marks(mut self, blobs: Arc<updraft_store::BlobStore>) -> Self {
        self.marks = Some(blobs);
        self
    }

    /// Raises the app's served-version mark to cover `rows`, which are about to be committed.
    async fn mark_served(&self, app: &AppId, rows: &[MetadataRow]) -> Result<(), RepoError> {
        let Some(blobs) = &self.marks else { return Ok(()) };
        if rows.is_empty() {
            return Ok(());
        }
        let mut v = ServedVersions::read_mark(blobs, app).await.map_err(RepoError::Mark)?.unwrap_or_default();
        let before = v;
        v.raise(rows);
        if v != before {
            let body = serde_json::to_vec(&v).map_err(|e| RepoError::Invalid(e.to_string()))?;
            blobs.put_mark(&ServedVersions::mark_name(app), &body).await.map_err(RepoError::Mark)?;
        }
        Ok(())
    }

    pub fn key_dir(&self, app: &AppId) -> PathBuf {
        self.data_dir.join("keys").join(app.as_str())
    }

    /// The app's updater key for the compatible feeds (minisign, Sparkle), created on first
    /// use, stored like the TUF keys but beside the app's TUF key directory (`APP.updater/`;
    /// no app id has a dot), which holds exactly the keys its root names.
    pub fn updater_key(&self, app: &AppId) -> Result<Arc<crate::compat::sign::UpdaterKey>, RepoError> {
        let dir = self.updater_key_dir(app);
        crate::compat::sign::UpdaterKey::load_or_create(&dir, self.passphrase.as_deref())
    }

    /// Where the app's updater key lives (`DATA/keys/APP.updater/`).
    pub fn updater_key_dir(&self, app: &AppId) -> PathBuf {
        self.data_dir.join("keys").join(format!("{app}.updater"))
    }

    /// Where the app's trusted root is written for operators to hand to clients.
    pub fn trust_file(&self, app: &AppId) -> PathBuf {
        self.data_dir.join("trust").join(format!("{app}.root.json"))
    }

    /// Loads the app's keys now, so a missing passphrase, a damaged key file or an HSM that
    /// refuses stops the server at start with a clear message instead of failing the first
    /// publish.
    pub fn check_keys(&self, app: &AppId) -> Result<(), RepoError> {
        self.keystore(app).map(|_| ())
    }

    fn keystore(&self, app: &AppId) -> Result<Arc<KeyStore>, RepoError> {
        if let Some(s) = self.stores.lock().expect("keystores").get(app.as_str()) {
            return Ok(s.clone());
        }
        let s = Arc::new(KeyStore::load(&self.key_dir(app), self.passphrase.as_deref(), &self.pkcs11)?);
        self.stores.lock().expect("keystores").insert(app.to_string(), s.clone());
        Ok(s)
    }

    /// Drops the cached keys of `app`; the next signing reloads them from disk.
    pub fn forget_keys(&self, app: &AppId) {
        self.stores.lock().expect("keystores").remove(app.as_str());
    }

    /// Generates the app's keys (one file key per role) and its first metadata (root,
    /// targets, snapshot, timestamp at version 1). The caller holds the app lock and has
    /// checked the app does not exist, so a key directory found here is left over from a
    /// create that crashed before its commit.
    pub fn create_repository(&self, app: &AppId) -> Result<CreatedRepo, RepoError> {
        let dir = self.key_dir(app);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|source| RepoError::Io { path: dir.clone(), source })?;
        }
        updraft_store::keys::create_private_dir(&dir)?;
        let mut public = Vec::new();
        for role in RoleName::ALL {
            let mut seed = [0u8; 32];
            getrandom::getrandom(&mut seed).map_err(|e| RepoError::Invalid(format!("no randomness: {e}")))?;
            let key = tuf::Ed25519Signer::from_seed(seed);
            let res = updraft_store::keys::write_key(&dir.join(format!("{role}.key")), &seed, self.passphrase.as_deref());
            seed.fill(0);
            std::hint::black_box(&seed);
            res?;
            public.push(key.public_key());
        }
        self.forget_keys(app);
        let keys = self.keystore(app)?;
        let now = OffsetDateTime::now_utc();
        let [root_key, targets_key, snapshot_key, timestamp_key] = <[Key; 4]>::try_from(public).expect("four roles");
        let root_keys =
            RootKeys { root: vec![root_key], targets: vec![targets_key], snapshot: vec![snapshot_key], timestamp: vec![timestamp_key] };
        let root_expires = expires_in(now, self.lifetimes.root);
        let root = tuf::new_root(&root_keys, Thresholds::default(), 1, root_expires)?;
        let root_signers = keys.threshold_signers(&root, RoleName::Root)?;
        let root_bytes = tuf::to_wire(&tuf::sign(root.clone(), &refs(&root_signers))?)?;
        let mut metadata = vec![row("root", 1, root_bytes.clone(), root_expires)?];
        metadata.extend(self.sign_set(app, &keys, &root, (&[], &[]), now, (1, 1, 1), None)?);
        self.verify_chain(&root_bytes, &metadata)?;
        let root_key_ids = root.roles.root.keyids.iter().map(|k| k.to_string()).collect();
        Ok(CreatedRepo { metadata, root: root_bytes, root_key_ids })
    }

    /// Writes `DATA/trust/APP.root.json` (atomically; readable, it is public).
    pub fn write_trust_file(&self, app: &AppId, root: &[u8]) -> Result<(), RepoError> {
        let path = self.trust_file(app);
        let dir = path.parent().expect("trust file has a parent");
        std::fs::create_dir_all(dir).map_err(|source| RepoError::Io { path: dir.to_owned(), source })?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, root).and_then(|_| std::fs::rename(&tmp, &path)).map_err(|source| RepoError::Io { path: path.clone(), source })
    }

    /// Targets metadata for the releases clients may be offered. Only *live* releases are
    /// listed: per (channel, platform), published or halted releases from the newest down to
    /// and including the newest one fully rolled out (100%, not halted). An older release can
    /// never be chosen by our client (it takes the newest admitted version, and the fully
    /// rolled-out one admits everybody), so listing it would only make every refresh grow with
    /// the app's history.
    ///
    /// A release that clients of a yanked version in `downgrades` should go back to carries
    /// those versions in `custom.downgrade_from`.
    pub fn targets_doc(
        app: &AppId,
        releases: &[ReleaseRow],
        downgrades: &[String],
        version: u64,
        expires: OffsetDateTime,
    ) -> Result<Targets, RepoError> {
        let mut t = Targets::new(version, expires);
        let offers = crate::rollouts::downgrade_offers(releases, downgrades);
        for (r, v, channel, platforms) in live_releases(releases)? {
            for (a, platform) in r.artifacts.iter().zip(platforms) {
                let Some(platform) = platform else { continue };
                let path = TargetPath::new(&v, &platform, &a.filename)?;
                let downgrade_from = offers.get(&(r.version.as_str(), platform.as_str())).cloned().unwrap_or_default();
                let custom = TargetCustom {
                    app: app.clone(),
                    channel: channel.clone(),
                    version: v.clone(),
                    platform,
                    notes: r.notes.clone(),
                    pub_date: r.published_at.clone().unwrap_or_else(|| r.created_at.clone()),
                    rollout: RolloutCustom { basis_points: r.rollout_bp, salt: r.salt.clone(), paused: r.state == ReleaseState::Halted },
                    downgrade_from,
                };
                t.targets.insert(path.to_string(), TargetFile::new(a.size, a.sha256.clone(), Some(custom.to_value())));
            }
        }
        Ok(t)
    }

    /// Signs targets (from `releases`, or keeps `existing_targets`), snapshot and timestamp at
    /// the given versions, with the keys `root` names.
    #[allow(clippy::too_many_arguments)]
    fn sign_set(
        &self,
        app: &AppId,
        keys: &KeyStore,
        root: &Root,
        (releases, downgrades): (&[ReleaseRow], &[String]),
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
                let signers = keys.threshold_signers(root, RoleName::Targets)?;
                let bytes = tuf::to_wire(&tuf::sign(Self::targets_doc(app, releases, downgrades, tv, exp)?, &refs(&signers))?)?;
                out.push(row("targets", tv, bytes.clone(), exp)?);
                (bytes, tv)
            }
        };
        let snap_exp = expires_in(now, self.lifetimes.snapshot);
        let signers = keys.threshold_signers(root, RoleName::Snapshot)?;
        let snap_bytes = tuf::to_wire(&tuf::sign(tuf::snapshot_for(&targets_bytes, targets_version, sv, snap_exp), &refs(&signers))?)?;
        out.push(row("snapshot", sv, snap_bytes.clone(), snap_exp)?);
        out.push(self.sign_timestamp(keys, root, &snap_bytes, sv, tsv, now)?);
        Ok(out)
    }

    fn sign_timestamp(
        &self,
        keys: &KeyStore,
        root: &Root,
        snapshot: &[u8],
        snapshot_version: u64,
        version: u64,
        now: OffsetDateTime,
    ) -> Result<MetadataRow, RepoError> {
        let exp = expires_in(now, self.lifetimes.timestamp);
        let signers = keys.threshold_signers(root, RoleName::Timestamp)?;
        let bytes = tuf::to_wire(&tuf::sign(tuf::timestamp_for(snapshot, snapshot_version, version, exp), &refs(&signers))?)?;
        row("timestamp", version, bytes, exp)
    }

    /// Runs our client's verification over a new set before anyone can see it.
    fn verify_chain(&self, root: &[u8], set: &[MetadataRow]) -> Result<(), RepoError> {
        verify_chain_at(root, set, OffsetDateTime::now_utc())
    }

    async fn latest(store: &dyn MetaStore, app: &AppId) -> Result<Latest, RepoError> {
        let get = |role: &'static str| async move {
            store.latest_metadata(app.as_str(), role).await?.ok_or_else(|| RepoError::Invalid(format!("app {app} has no {role} metadata")))
        };
        Ok(Latest {
            root: get("root").await?,
            targets: get("targets").await?,
            snapshot: get("snapshot").await?,
            timestamp: get("timestamp").await?,
            downgrades: store.list_downgrades(app.as_str()).await?,
        })
    }

    /// The trusted root a row holds (its self-signature checked).
    fn parse_root(row: &MetadataRow) -> Result<Root, RepoError> {
        Ok(TrustedSet::new(&row.body)?.root().clone())
    }

    /// New targets, snapshot and timestamp for a changed set of releases. The caller holds
    /// the app lock and commits the rows in the same transaction as the release change.
    pub async fn sign_targets_change(&self, store: &dyn MetaStore, app: &AppId, releases: &[ReleaseRow]) -> ApiResult<Vec<MetadataRow>> {
        self.sign_targets_change_with(store, app, releases, None).await
    }

    /// [`Repo::sign_targets_change`] with the set of downgrade offers about to be committed
    /// (`None`: the stored set).
    pub async fn sign_targets_change_with(
        &self,
        store: &dyn MetaStore,
        app: &AppId,
        releases: &[ReleaseRow],
        downgrades: Option<&[String]>,
    ) -> ApiResult<Vec<MetadataRow>> {
        let l = Self::latest(store, app).await?;
        let downgrades = downgrades.unwrap_or(&l.downgrades);
        let root = Self::parse_root(&l.root)?;
        let keys = self.keystore(app)?;
        let versions = (l.targets.version + 1, l.snapshot.version + 1, l.timestamp.version + 1);
        let set = self.sign_set(app, &keys, &root, (releases, downgrades), OffsetDateTime::now_utc(), versions, None)?;
        self.verify_chain(&l.root.body, &set)?;
        self.mark_served(app, &set).await?;
        Ok(set)
    }

    /// After a restore: new targets, snapshot and timestamp, each one version above the
    /// higher of the restored metadata and `served` (what may have been served since the
    /// backup), so no client that saw newer metadata than the backup's refuses them.
    pub async fn sign_after_restore(
        &self,
        store: &dyn MetaStore,
        app: &AppId,
        releases: &[ReleaseRow],
        served: ServedVersions,
    ) -> Result<Vec<MetadataRow>, RepoError> {
        let l = Self::latest(store, app).await?;
        let root = Self::parse_root(&l.root)?;
        let keys = self.keystore(app)?;
        let versions = (
            l.targets.version.max(served.targets) + 1,
            l.snapshot.version.max(served.snapshot) + 1,
            l.timestamp.version.max(served.timestamp) + 1,
        );
        let set = self.sign_set(app, &keys, &root, (releases, &l.downgrades), OffsetDateTime::now_utc(), versions, None)?;
        self.verify_chain(&l.root.body, &set)?;
        self.mark_served(app, &set).await?;
        Ok(set)
    }

    /// Re-signs whatever is past half its lifetime: root (same keys, next version; only when
    /// a threshold of root keys is held here), targets (and so snapshot and timestamp),
    /// snapshot (and timestamp), or timestamp alone. Also records every role's expiry for
    /// `/readyz` and the `updraft_tuf_expiry_seconds` gauge.
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
        let l = Self::latest(store, app).await?;
        let keys = self.keystore(app)?;
        let mut root_row = l.root.clone();
        let root = Self::parse_root(&root_row)?;
        let mut out = Vec::new();
        let result: Result<(), RepoError> = (|| {
            if due(&root_row, self.lifetimes.root) {
                match keys.threshold_signers(&root, RoleName::Root) {
                    Ok(signers) => {
                        let exp = expires_in(now, self.lifetimes.root);
                        let mut next = root.clone();
                        next.version = root_row.version + 1;
                        next.expires = exp;
                        let bytes = tuf::to_wire(&tuf::sign(next, &refs(&signers))?)?;
                        root_row = row("root", root_row.version + 1, bytes, exp)?;
                        out.push(root_row.clone());
                    }
                    Err(e) => tracing::warn!(app = %app, error = %e, "root metadata is due for re-signing but its keys are offline"),
                }
            }
            let versions = (l.targets.version + 1, l.snapshot.version + 1, l.timestamp.version + 1);
            if due(&l.targets, self.lifetimes.targets) {
                out.extend(self.sign_set(app, &keys, &root, (releases, &l.downgrades), now, versions, None)?);
            } else if due(&l.snapshot, self.lifetimes.snapshot) {
                out.extend(self.sign_set(app, &keys, &root, (releases, &l.downgrades), now, versions, Some(&l.targets))?);
            } else if due(&l.timestamp, self.lifetimes.timestamp) {
                out.push(self.sign_timestamp(&keys, &root, &l.snapshot.body, l.snapshot.version, l.timestamp.version + 1, now)?);
            }
            Ok(())
        })();
        let pick = |role: &str, old: &MetadataRow| out.iter().find(|m| m.role == role).cloned().unwrap_or_else(|| old.clone());
        let newest = [root_row.clone(), pick("targets", &l.targets), pick("snapshot", &l.snapshot), pick("timestamp", &l.timestamp)];
        self.record_expiry(app, &root, &keys, &newest, now);
        result?;
        self.mark_served(app, &out).await?;
        if !out.is_empty() {
            // Verify the whole newest set, old parts included, as a client would see it.
            let full = vec![newest[3].clone(), newest[2].clone(), newest[1].clone()];
            verify_chain_at(&root_row.body, &full, now)?;
        }
        Ok(out)
    }

    fn record_expiry(&self, app: &AppId, root: &Root, keys: &KeyStore, rows: &[MetadataRow], now: OffsetDateTime) {
        let mut report = Vec::new();
        for r in rows {
            let Ok(role) = serde_json::from_value::<RoleName>(serde_json::Value::String(r.role.clone())) else { continue };
            let Ok(expires) = tuf::expires_format::parse(&r.expires) else { continue };
            let lifetime = match role {
                RoleName::Root => self.lifetimes.root,
                RoleName::Targets => self.lifetimes.targets,
                RoleName::Snapshot => self.lifetimes.snapshot,
                RoleName::Timestamp => self.lifetimes.timestamp,
            };
            let e = RoleExpiry { role, version: r.version, expires, can_sign: keys.can_sign(root, role), lifetime };
            metrics::gauge!("updraft_tuf_expiry_seconds", "app" => app.to_string(), "role" => role.as_str())
                .set(e.seconds_left(now) as f64);
            report.push(e);
        }
        self.expiry.lock().expect("expiry").insert(app.to_string(), report);
    }

    /// Every app's roles whose metadata is at risk of expiring (see [`RoleExpiry::at_risk`]),
    /// as last seen by the background refresh.
    pub fn expiring(&self, now: OffsetDateTime) -> Vec<(String, RoleExpiry)> {
        let all = self.expiry.lock().expect("expiry");
        let mut out: Vec<_> =
            all.iter().flat_map(|(app, roles)| roles.iter().filter(|r| r.at_risk(now)).map(move |r| (app.clone(), r.clone()))).collect();
        out.sort_by(|a, b| (&a.0, a.1.role).cmp(&(&b.0, b.1.role)));
        out
    }

    /// `/readyz`'s view of TUF metadata at `now`: unready when some app's role is at risk of
    /// expiring (see [`RoleExpiry::at_risk`]), listing each such role.
    pub fn readiness(&self, now: OffsetDateTime) -> TufReadiness {
        let expiring = self.expiring(now);
        let detail = expiring
            .iter()
            .map(|(app, e)| {
                serde_json::json!({
                    "app": app, "role": e.role.as_str(), "version": e.version,
                    "expires": tuf::expires_format::format(e.expires).unwrap_or_default(),
                    "seconds_left": e.seconds_left(now), "can_sign": e.can_sign,
                })
            })
            .collect();
        TufReadiness { ready: expiring.is_empty(), expiring: detail }
    }

    /// Every role's keys and threshold, where each key is held, and each role's newest
    /// metadata version and expiry.
    pub async fn describe(&self, store: &dyn MetaStore, app: &AppId) -> Result<KeysReport, RepoError> {
        let l = Self::latest(store, app).await?;
        let root = Self::parse_root(&l.root)?;
        let keys = self.keystore(app)?;
        let roles = RoleName::ALL
            .iter()
            .map(|&role| {
                let rk = root.roles.get(role);
                let meta = match role {
                    RoleName::Root => &l.root,
                    RoleName::Targets => &l.targets,
                    RoleName::Snapshot => &l.snapshot,
                    RoleName::Timestamp => &l.timestamp,
                };
                RoleReport {
                    role,
                    threshold: rk.threshold,
                    version: meta.version,
                    expires: meta.expires.clone(),
                    can_sign: keys.can_sign(&root, role),
                    keys: rk
                        .keyids
                        .iter()
                        .map(|id| KeyReport {
                            keyid: id.clone(),
                            keytype: root.keys.get(id).map(|k| k.keytype.clone()).unwrap_or_default(),
                            backend: keys.get(id).map(|k| k.backend),
                            label: keys.get(id).and_then(|k| k.label.clone()),
                        })
                        .collect(),
                }
            })
            .collect();
        Ok(KeysReport { root_version: l.root.version, roles })
    }

    /// Replaces one role's keys in a new root version, signed by a threshold of the old root
    /// keys and of the new ones, and re-signs the metadata of the rotated role with its new
    /// keys. New keys are created before anything is signed; if anything fails they are
    /// removed, and if the process dies before the caller commits they are inert (the stored
    /// root does not name them). The caller holds the app lock and commits `metadata`
    /// together with the audit event, then calls [`Repo::retire_keys`].
    pub async fn rotate_keys(
        &self,
        store: &dyn MetaStore,
        app: &AppId,
        releases: &[ReleaseRow],
        spec: &RotateSpec,
    ) -> Result<KeyChange, RepoError> {
        if spec.generate > 16 || spec.pkcs11.len() > 16 || spec.public_keys.len() > 16 {
            return Err(RepoError::refused("too_many_keys", "at most 16 keys of each kind per rotation"));
        }
        if spec.role != RoleName::Root && !spec.public_keys.is_empty() {
            return Err(RepoError::refused(
                "offline_online_role",
                format!("the {} role is signed by this server: give it keys the server holds (generate or pkcs11)", spec.role),
            ));
        }
        for k in &spec.public_keys {
            k.check().map_err(|e| RepoError::refused("invalid_key", e.to_string()))?;
        }
        let l = Self::latest(store, app).await?;
        let old_root = Self::parse_root(&l.root)?;
        let dir = self.key_dir(app);
        let mut created: Vec<PathBuf> = Vec::new();
        let result = async {
            let mut new_keys: Vec<Key> = spec.public_keys.clone();
            for _ in 0..spec.generate {
                let s = keystore::generate_file_key(&dir, self.passphrase.as_deref())?;
                created.push(dir.join(format!("{}.key", s.key_id())));
                new_keys.push(s.public_key());
            }
            for uri in &spec.pkcs11 {
                let s = updraft_hsm::Pkcs11Signer::open(uri, &keystore::hsm_defaults(&self.pkcs11))
                    .map_err(|source| RepoError::Hsm { path: dir.clone(), source })?;
                let id = s.public_key().key_id();
                if !dir.join(format!("{id}.pkcs11")).exists() {
                    created.push(keystore::write_pkcs11_ref(&dir, &id, uri)?);
                }
                new_keys.push(s.public_key());
            }
            if new_keys.is_empty() {
                return Err(RepoError::refused("no_keys", "give at least one new key (generate, pkcs11 or public_keys)"));
            }
            let old_threshold = old_root.roles.get(spec.role).threshold;
            let threshold = spec.threshold.unwrap_or_else(|| old_threshold.min(new_keys.len() as u32).max(1));
            let mut next = old_root.clone();
            next.version = l.root.version + 1;
            next.expires = expires_in(OffsetDateTime::now_utc(), self.lifetimes.root);
            next.set_role_keys(spec.role, &new_keys, threshold).map_err(|e| RepoError::refused(e.code(), e.to_string()))?;
            self.forget_keys(app);
            let keys = self.keystore(app)?;
            self.commit_root(app, &keys, &l, &old_root, next, None, releases).await
        }
        .await;
        if result.is_err() {
            for p in &created {
                let _ = std::fs::remove_file(p);
            }
            self.forget_keys(app);
        }
        result
    }

    /// Builds the next root version for an offline ceremony, unsigned:
    /// `{"signatures": [], "signed": {…}}`. Key files for `spec.generate` roles are created
    /// now (inert until the signed root is imported).
    pub async fn export_root(&self, store: &dyn MetaStore, app: &AppId, spec: &ExportSpec) -> Result<Vec<u8>, RepoError> {
        let l = Self::latest(store, app).await?;
        let mut next = Self::parse_root(&l.root)?;
        next.version = l.root.version + 1;
        next.expires = expires_in(OffsetDateTime::now_utc(), self.lifetimes.root);
        let roles: BTreeSet<RoleName> =
            spec.keys.iter().map(|(r, _)| *r).chain(spec.generate.iter().copied()).chain(spec.thresholds.iter().map(|(r, _)| *r)).collect();
        let dir = self.key_dir(app);
        for role in roles {
            let mut keys: Vec<Key> = spec.keys.iter().filter(|(r, _)| *r == role).flat_map(|(_, k)| k.iter().cloned()).collect();
            for k in &keys {
                k.check().map_err(|e| RepoError::refused("invalid_key", e.to_string()))?;
            }
            if spec.generate.contains(&role) {
                keys.push(keystore::generate_file_key(&dir, self.passphrase.as_deref())?.public_key());
                self.forget_keys(app);
            }
            if keys.is_empty() {
                keys = next.role_keys(role).into_iter().map(|(_, k)| k.clone()).collect();
            }
            let threshold = spec
                .thresholds
                .iter()
                .find(|(r, _)| *r == role)
                .map(|(_, t)| *t)
                .unwrap_or_else(|| next.roles.get(role).threshold.min(keys.len() as u32).max(1));
            next.set_role_keys(role, &keys, threshold).map_err(|e| RepoError::refused(e.code(), e.to_string()))?;
        }
        let doc = serde_json::json!({ "signatures": [], "signed": next });
        serde_json::to_vec_pretty(&doc).map_err(|e| RepoError::Invalid(e.to_string()))
    }

    /// Publishes a root signed in an offline ceremony. The server adds signatures of the
    /// root keys it holds itself, then checks the document exactly as a client would: the next
    /// version, signed by a threshold of the current root keys and of its own, not expired.
    /// Roles whose keys the new root changes are re-signed with their new keys, which this
    /// server must hold.
    pub async fn import_root(
        &self,
        store: &dyn MetaStore,
        app: &AppId,
        releases: &[ReleaseRow],
        doc: &[u8],
    ) -> Result<KeyChange, RepoError> {
        let bad = |code: &'static str, m: String| RepoError::refused(code, m);
        let mut value: serde_json::Value =
            serde_json::from_slice(doc).map_err(|e| bad("invalid_root", format!("the root document is not JSON: {e}")))?;
        let next: Root = serde_json::from_value(value.get("signed").cloned().unwrap_or_default())
            .map_err(|e| bad("invalid_root", format!("the document's \"signed\" is not root metadata: {e}")))?;
        let l = Self::latest(store, app).await?;
        let old_root = Self::parse_root(&l.root)?;
        if next.version != l.root.version + 1 {
            return Err(bad(
                "root_version_mismatch",
                format!("the document is root version {}, the next version is {}", next.version, l.root.version + 1),
            ));
        }
        let keys = self.keystore(app)?;
        for role_root in [&old_root, &next] {
            for s in keys.signers_for(role_root, RoleName::Root) {
                tuf::add_signature(&mut value, s.as_ref()).map_err(|e| bad(e.code(), e.to_string()))?;
            }
        }
        let bytes = serde_json::to_vec(&value).map_err(|e| RepoError::Invalid(e.to_string()))?;
        self.commit_root(app, &keys, &l, &old_root, next, Some(bytes), releases).await
    }

    /// Signs (unless `signed_bytes` is given) and checks root `next`, and re-signs the
    /// metadata of roles whose keys changed.
    #[allow(clippy::too_many_arguments)]
    async fn commit_root(
        &self,
        app: &AppId,
        keys: &KeyStore,
        l: &Latest,
        old_root: &Root,
        next: Root,
        signed_bytes: Option<Vec<u8>>,
        releases: &[ReleaseRow],
    ) -> Result<KeyChange, RepoError> {
        let now = OffsetDateTime::now_utc();
        let root_bytes = match signed_bytes {
            Some(b) => b,
            None => {
                let old = keys.threshold_signers(old_root, RoleName::Root)?;
                let new = keys.threshold_signers(&next, RoleName::Root)?;
                let all: Vec<Arc<dyn Signer>> = old.into_iter().chain(new).collect();
                tuf::to_wire(&tuf::sign(next.clone(), &refs(&all))?)?
            }
        };
        // The chain step a client takes, before anything else is signed.
        let mut check = TrustedSet::new(&l.root.body)?;
        check.update_root(&root_bytes).map_err(|e| RepoError::refused(e.code(), format!("the new root does not verify: {e}")))?;
        check.check_root(now).map_err(|e| RepoError::refused(e.code(), e.to_string()))?;
        let changed = |role| old_root.role_keys(role) != next.role_keys(role) || old_root.roles.get(role) != next.roles.get(role);
        let versions = (l.targets.version + 1, l.snapshot.version + 1, l.timestamp.version + 1);
        let mut metadata = vec![row("root", next.version, root_bytes.clone(), next.expires)?];
        if changed(RoleName::Targets) {
            metadata.extend(self.sign_set(app, keys, &next, (releases, &l.downgrades), now, versions, None)?);
        } else if changed(RoleName::Snapshot) {
            metadata.extend(self.sign_set(app, keys, &next, (releases, &l.downgrades), now, versions, Some(&l.targets))?);
        } else if changed(RoleName::Timestamp) {
            metadata.push(self.sign_timestamp(keys, &next, &l.snapshot.body, l.snapshot.version, versions.2, now)?);
        }
        let pick = |role: &str, old: &MetadataRow| metadata.iter().find(|m| m.role == role).cloned().unwrap_or_else(|| old.clone());
        let newest = vec![pick("timestamp", &l.timestamp), pick("snapshot", &l.snapshot), pick("targets", &l.targets)];
        // A client that trusted the previous root must accept the whole newest set.
        verify_chain_from(&l.root.body, &root_bytes, &newest, now)?;
        self.mark_served(app, &metadata).await?;
        let old_ids = old_root.all_key_ids();
        let new_ids = next.all_key_ids();
        Ok(KeyChange {
            metadata,
            retired: old_ids.difference(&new_ids).cloned().collect(),
            added: new_ids.difference(&old_ids).cloned().collect(),
            root: next,
        })
    }

    /// After a key change is committed: deletes the key files and references the new root no
    /// longer names, and reloads the app's keys.
    pub fn retire_keys(&self, app: &AppId, root: &Root) {
        if let Ok(keys) = self.keystore(app) {
            for (id, path) in keys.unused_by(root) {
                match std::fs::remove_file(&path) {
                    Ok(()) => tracing::info!(app = %app, key_id = %id, "retired signing key removed"),
                    Err(e) => tracing::warn!(app = %app, key_id = %id, error = %e, "could not remove a retired signing key"),
                }
            }
        }
        self.forget_keys(app);
    }
}

/// Per (channel, platform), the published/halted releases from the newest down to and
/// including the newest fully rolled-out one, with each artifact's parsed platform (`None`
/// when it is not live on its platform).
#[allow(clippy::type_complexity)]
fn live_releases(releases: &[ReleaseRow]) -> Result<Vec<(&ReleaseRow, Version, Channel, Vec<Option<Platform>>)>, RepoError> {
    let mut parsed = Vec::new();
    for r in releases.iter().filter(|r| matches!(r.state, ReleaseState::Published | ReleaseState::Halted)) {
        let bad = |what: &str| RepoError::Invalid(format!("release {} has an invalid {what}", r.version));
        let v: Version = r.version.parse().map_err(|_| bad("version"))?;
        let channel: Channel = r.channel.parse().map_err(|_| bad("channel"))?;
        let platforms =
            r.artifacts.iter().map(|a| a.platform.parse::<Platform>().map_err(|_| bad("platform"))).collect::<Result<Vec<_>, _>>()?;
        parsed.push((r, v, channel, platforms));
    }
    // Newest first; then walk each (channel, platform) until its floor.
    let mut order: Vec<usize> = (0..parsed.len()).collect();
    order.sort_by(|&a, &b| parsed[b].1.cmp(&parsed[a].1));
    let mut floored: BTreeSet<(String, String)> = BTreeSet::new();
    let mut out = Vec::new();
    for i in order {
        let (r, v, channel, platforms) = &parsed[i];
        let full = r.state == ReleaseState::Published && r.rollout_bp >= Percent::FULL.basis_points();
        let live: Vec<Option<Platform>> = platforms
            .iter()
            .map(|p| {
                let key = (channel.to_string(), p.to_string());
                if floored.contains(&key) {
                    return None;
                }
                if full {
                    floored.insert(key);
                }
                Some(p.clone())
            })
            .collect();
        if live.iter().any(Option::is_some) {
            out.push((*r, v.clone(), channel.clone(), live));
        }
    }
    Ok(out)
}

fn verify_chain_at(root: &[u8], set: &[MetadataRow], now: OffsetDateTime) -> Result<(), RepoError> {
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

/// A client that trusted `old_root` follows `new_root` and loads the newest set.
fn verify_chain_from(old_root: &[u8], new_root: &[u8], set: &[MetadataRow], now: OffsetDateTime) -> Result<(), RepoError> {
    let find = |role: &str| set.iter().find(|m| m.role == role).map(|m| m.body.as_slice());
    let mut trusted = TrustedSet::new(old_root)?;
    trusted.update_root(new_root)?;
    trusted.check_root(now)?;
    trusted.update_timestamp(find("timestamp").unwrap_or_default(), now)?;
    trusted.update_snapshot(find("snapshot").unwrap_or_default(), now)?;
    trusted.update_targets(find("targets").unwrap_or_default(), now)?;
    Ok(())
}

/// See [`Repo::readiness`].
#[derive(Debug, Clone)]
pub struct TufReadiness {
    pub ready: bool,
    /// One object per role at risk: app, role, version, expires, seconds_left, can_sign.
    pub expiring: Vec<serde_json::Value>,
}

/// What `keys list` shows.
#[derive(Debug, Clone)]
pub struct KeysReport {
    pub root_version: u64,
    pub roles: Vec<RoleReport>,
}

#[derive(Debug, Clone)]
pub struct RoleReport {
    pub role: RoleName,
    pub threshold: u32,
    pub version: u64,
    pub expires: String,
    pub can_sign: bool,
    pub keys: Vec<KeyReport>,
}

#[derive(Debug, Clone)]
pub struct KeyReport {
    pub keyid: KeyId,
    pub keytype: String,
    /// `None`: the private key is not on this server (offline).
    pub backend: Option<Backend>,
    /// For HSM keys, the URI without its PIN.
    pub label: Option<String>,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use time::Duration;
    use tower::ServiceExt;

    use super::*;
    use crate::auth::{Caller, Role};
    use crate::{ops, Config, RawConfig, Server};

    fn config(data: &Path) -> Config {
        RawConfig { data: Some(data.to_owned()), listen: Some("127.0.0.1:0".into()), ..Default::default() }.validate().unwrap()
    }

    fn admin() -> Caller {
        Caller { token_id: "t".into(), name: "t".into(), role: Role::Admin, apps: Arc::new(vec![]) }
    }

    async fn readyz(server: &Server) -> (u16, serde_json::Value) {
        let req = axum::http::Request::get("/readyz").body(axum::body::Body::empty()).unwrap();
        let resp = crate::router(server.state().clone()).oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    fn gauge(app: &str, role: &str) -> Option<f64> {
        let text = crate::metrics::handle().render();
        let prefix = format!("updraft_tuf_expiry_seconds{{app=\"{app}\",role=\"{role}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| v.parse().unwrap())
    }

    #[tokio::test]
    async fn expiry_is_exported_and_unsignable_roles_make_the_server_unready() {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(config(dir.path())).await.unwrap();
        let state = server.state();
        let app: AppId = "expiry-demo".parse().unwrap();
        ops::create_app(state, &admin(), &app, None).await.unwrap();
        let now = OffsetDateTime::now_utc();
        ops::refresh_expiring_metadata(state, now).await.unwrap();
        let ts = gauge("expiry-demo", "timestamp").expect("gauge per app and role");
        assert!((86_000.0..=86_400.0).contains(&ts), "{ts}");
        assert!(gauge("expiry-demo", "root").unwrap() > 360.0 * 86_400.0);
        assert_eq!(readyz(&server).await.0, 200);
        assert!(state.repo.readiness(now).ready);

        // The timestamp key disappears (a lost disk, an unplugged HSM): re-signing fails...
        std::fs::remove_file(dir.path().join("keys/expiry-demo/timestamp.key")).unwrap();
        state.repo.forget_keys(&app);
        let later = now + Duration::hours(20);
        assert!(ops::refresh_expiring_metadata(state, later).await.is_err());
        // ...and with 4 of its 24 hours left the server says so, before clients would freeze.
        let ready = state.repo.readiness(later);
        assert!(!ready.ready);
        assert_eq!(ready.expiring.len(), 1, "{:?}", ready.expiring);
        assert_eq!(ready.expiring[0]["role"], "timestamp");
        assert_eq!(ready.expiring[0]["can_sign"], false);
        let left = gauge("expiry-demo", "timestamp").unwrap();
        assert!((14_000.0..=14_400.0).contains(&left), "gauge counts down: {left}");
        // Right now (real clock) it still has most of a day: ready, with the field present.
        let (status, body) = readyz(&server).await;
        assert_eq!((status, &body["tuf_metadata"]), (200, &serde_json::json!("ok")), "{body}");
    }

    /// A rotation whose commit never happens (the process dies after the new key files are
    /// written and the new root is signed) leaves the old keys in force: after a restart the
    /// server signs with them, clients verify, and the orphaned key file is inert.
    #[tokio::test]
    async fn a_rotation_that_never_commits_leaves_the_old_keys_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let app: AppId = "crashy".parse().unwrap();
        let spec = RotateSpec { role: RoleName::Targets, threshold: None, generate: 1, pkcs11: vec![], public_keys: vec![] };
        let before = {
            let server = Server::start(config(dir.path())).await.unwrap();
            let state = server.state();
            ops::create_app(state, &admin(), &app, None).await.unwrap();
            let before = state.repo.describe(state.store.as_ref(), &app).await.unwrap();
            let releases = state.store.list_releases("crashy").await.unwrap();
            let change = state.repo.rotate_keys(state.store.as_ref(), &app, &releases, &spec).await.unwrap();
            assert_eq!(change.added.len(), 1);
            // "Crash": the change is dropped instead of committed.
            before
        };
        assert_eq!(std::fs::read_dir(dir.path().join("keys/crashy")).unwrap().count(), 5, "the new key file was written");

        let server = Server::start(config(dir.path())).await.unwrap();
        let state = server.state();
        let after = state.repo.describe(state.store.as_ref(), &app).await.unwrap();
        assert_eq!(after.root_version, 1);
        let ids = |r: &KeysReport| r.roles.iter().map(|r| r.keys.iter().map(|k| k.keyid.clone()).collect::<Vec<_>>()).collect::<Vec<_>>();
        assert_eq!(ids(&after), ids(&before), "the old keys are the keys");
        // Signing still works with the old targets key, and verifies from root v1.
        let set = state.repo.sign_targets_change(state.store.as_ref(), &app, &[]).await.unwrap();
        let root = state.store.get_metadata("crashy", "root", 1).await.unwrap().unwrap();
        verify_chain_at(&root.body, &set, OffsetDateTime::now_utc()).unwrap();
        // A later rotation commits normally and removes the orphan along with the retired key.
        crate::key_ops::rotate_keys(state, &admin(), &app, &spec, None).await.unwrap();
        assert_eq!(std::fs::read_dir(dir.path().join("keys/crashy")).unwrap().count(), 4);
    }

    #[test]
    fn hsm_failures_are_bad_gateway_without_details_and_offline_keys_conflict() {
        let e: ApiError = RepoError::Tuf(TufError::Signing { reason: "C_Sign failed for pkcs11:token=t".into() }).into();
        assert_eq!((e.status.as_u16(), e.code), (502, "hsm_unavailable"));
        assert!(!e.message.contains("pkcs11:"), "{}", e.message);
        let e: ApiError = RepoError::KeysOffline { role: RoleName::Root, held: 0, threshold: 2 }.into();
        assert_eq!((e.status.as_u16(), e.code), (409, "root_keys_offline"));
        let e: ApiError = RepoError::KeysOffline { role: RoleName::Timestamp, held: 0, threshold: 1 }.into();
        assert_eq!((e.status.as_u16(), e.code), (409, "keys_offline"));
    }

    #[tokio::test]
    async fn one_app_that_cannot_be_re_signed_does_not_stop_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(config(dir.path())).await.unwrap();
        let state = server.state();
        // "a-broken" sorts first, so the healthy app is refreshed after the failure.
        for app in ["a-broken", "b-healthy"] {
            ops::create_app(state, &admin(), &app.parse().unwrap(), None).await.unwrap();
        }
        std::fs::remove_file(dir.path().join("keys/a-broken/timestamp.key")).unwrap();
        state.repo.forget_keys(&"a-broken".parse().unwrap());
        let later = OffsetDateTime::now_utc() + Duration::hours(13);
        assert!(ops::refresh_expiring_metadata(state, later).await.is_err(), "the failure is reported");
        let ts = |app: &'static str| async move { state.store.latest_metadata(app, "timestamp").await.unwrap().unwrap().version };
        assert_eq!((ts("a-broken").await, ts("b-healthy").await), (1, 2), "the healthy app was still re-signed");
    }

    /// The HTTP path: `/readyz` answers 503 and names the role when, right now, a timestamp
    /// that cannot be re-signed is about to expire.
    #[tokio::test]
    async fn readyz_is_503_while_unsignable_metadata_is_about_to_expire() {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(config(dir.path())).await.unwrap();
        let state = server.state();
        let app: AppId = "soon".parse().unwrap();
        ops::create_app(state, &admin(), &app, None).await.unwrap();
        // A timestamp that expires in 30 seconds, signed with the app's real key (as if the
        // server had been configured with a very short lifetime).
        let short = Repo::new(dir.path(), None, Lifetimes { timestamp: 30, ..state.config.lifetimes });
        let l = Repo::latest(state.store.as_ref(), &app).await.unwrap();
        let root = Repo::parse_root(&l.root).unwrap();
        let keys = short.keystore(&app).unwrap();
        let now = OffsetDateTime::now_utc();
        let ts = short.sign_timestamp(&keys, &root, &l.snapshot.body, l.snapshot.version, 2, now).unwrap();
        state.store.apply("soon", &updraft_store::Changeset { releases: vec![], metadata: vec![ts], audit: None }).await.unwrap();
        // The key is gone, so the background job cannot re-sign it.
        std::fs::remove_file(dir.path().join("keys/soon/timestamp.key")).unwrap();
        state.repo.forget_keys(&app);
        assert!(ops::refresh_expiring_metadata(state, now).await.is_err());
        let (status, body) = readyz(&server).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["tuf_metadata"], "failing");
        assert_eq!(body["expiring"][0]["app"], "soon");
        assert_eq!(body["expiring"][0]["role"], "timestamp");
        assert!(body["expiring"][0]["seconds_left"].as_i64().unwrap() <= 30, "{body}");
    }

    #[tokio::test]
    async fn offline_root_is_not_re_signed_but_online_roles_are() {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(config(dir.path())).await.unwrap();
        let state = server.state();
        let app: AppId = "offline-root".parse().unwrap();
        ops::create_app(state, &admin(), &app, None).await.unwrap();
        std::fs::remove_file(dir.path().join("keys/offline-root/root.key")).unwrap();
        state.repo.forget_keys(&app);
        // 200 days on: root is past half its year but cannot be signed here; the rest is.
        let t = OffsetDateTime::now_utc() + Duration::days(200);
        ops::refresh_expiring_metadata(state, t).await.unwrap();
        let latest = |role: &'static str| async move { state.store.latest_metadata("offline-root", role).await.unwrap().unwrap().version };
        assert_eq!((latest("root").await, latest("targets").await, latest("timestamp").await), (1, 2, 2));
        // 300 days on, the root has under a quarter of its life left and nobody can re-sign it.
        let t = OffsetDateTime::now_utc() + Duration::days(300);
        let r = state.repo.readiness(t);
        assert!(!r.ready && r.expiring.iter().any(|e| e["role"] == "root" && e["can_sign"] == false), "{:?}", r.expiring);
    }
}
