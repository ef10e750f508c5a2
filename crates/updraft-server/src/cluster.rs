//! Many instances, one truth. With a shared store (PostgreSQL) any number of `updraft serve`
//! instances run over one database and one bucket and share nothing else:
//!
//! - **Changes are serialized per app across instances.** [`AppState::lock_app`] takes the
//!   in-process lock (so one request per app and instance waits on the database), then the
//!   app's advisory lock in the database, then re-reads what it needs inside it; TUF versions
//!   are computed from the newest stored metadata, so they stay gap-free whichever instance
//!   signs, and the unique keys refuse anything that slips past (`409 concurrent_change`).
//! - **Signing keys live in the database** (`key_files`): each instance keeps a copy in
//!   `DATA/keys/APP/` as a cache, pulled under the app lock and on every change signal, and
//!   pushes what it writes (new app, rotation, retirement). Key files are stored as they are on
//!   disk: encrypted (Argon2id + ChaCha20-Poly1305) when `UPDRAFT_KEY_PASSPHRASE` is set, which
//!   docs/keys.md requires for a shared store.
//! - **Every instance serves a change within a second.** [`watch`] follows the store's change
//!   signal (PostgreSQL `LISTEN/NOTIFY`) and reloads the app's keys and update view; a poll of
//!   each app's newest timestamp version every [`POLL`] catches what a lost connection missed.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use updraft_core::AppId;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// How often the fallback poll compares every app's newest timestamp version.
pub const POLL: Duration = Duration::from_millis(500);

/// A held app lock: in this process and, with a shared store, in the database.
pub struct AppGuard {
    _db: updraft_store::AppLock,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

impl AppState {
    /// Takes the lock that serializes every change to one app (its releases, TUF metadata and
    /// keys) across all instances, and brings this instance's copy of the app's keys up to date.
    pub async fn lock_app(&self, app: &AppId) -> ApiResult<AppGuard> {
        let local = self.app_lock(app.as_str()).lock_owned().await;
        let db = self.store.lock_app(app.as_str()).await?;
        pull_keys(self, app).await?;
        Ok(AppGuard { _db: db, _local: local })
    }
}

fn key_file_name(name: &str) -> bool {
    let ok_ext = name.ends_with(".key") || name.ends_with(".pkcs11");
    ok_ext && !name.starts_with('.') && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// The directories of an app's keys and the names their files have in the database: the TUF
/// keys as they are, the compatible feeds' updater key under `updater/`.
fn key_dirs(repo: &crate::repo::Repo, app: &AppId) -> [(&'static str, std::path::PathBuf); 2] {
    [("", repo.key_dir(app)), ("updater/", repo.updater_key_dir(app))]
}

/// The app's key files in this data directory, by the name they have in the database.
pub fn local_key_files(repo: &crate::repo::Repo, app: &AppId) -> ApiResult<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for (prefix, dir) in key_dirs(repo, app) {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ApiError::internal(format!("reading {}: {e}", dir.display()))),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if key_file_name(&name) {
                let body = std::fs::read(entry.path()).map_err(|e| ApiError::internal(format!("reading {name}: {e}")))?;
                out.insert(format!("{prefix}{name}"), body);
            }
        }
    }
    Ok(out)
}

/// Where a key file named `stored` in the database goes on this instance.
fn local_path(repo: &crate::repo::Repo, app: &AppId, stored: &str) -> ApiResult<std::path::PathBuf> {
    let [(_, tuf), (updater_prefix, updater)] = key_dirs(repo, app);
    let (dir, name) = match stored.strip_prefix(updater_prefix) {
        Some(name) => (updater, name),
        None => (tuf, stored),
    };
    if !key_file_name(name) {
        return Err(ApiError::internal(format!("stored key file name {stored:?} refused")));
    }
    Ok(dir.join(name))
}

/// Makes this instance's key directory for `app` what the database holds (shared stores only).
/// An app whose keys were never stored in the database keeps its local files.
pub async fn pull_keys(state: &AppState, app: &AppId) -> ApiResult<()> {
    pull_keys_into(state.store.as_ref(), &state.repo, app).await
}

/// [`pull_keys`] before the server state exists (at start).
pub async fn pull_keys_into(store: &dyn updraft_store::MetaStore, repo: &crate::repo::Repo, app: &AppId) -> ApiResult<()> {
    if !store.shared() {
        return Ok(());
    }
    let want: BTreeMap<String, Vec<u8>> = store.key_files(app.as_str()).await?.into_iter().collect();
    if want.is_empty() {
        return Ok(());
    }
    install_key_files(repo, app, &want)
}

/// Makes the app's key files in this data directory exactly `want` (names as in the database),
/// each written privately (0600) and atomically.
pub fn install_key_files(repo: &crate::repo::Repo, app: &AppId, want: &BTreeMap<String, Vec<u8>>) -> ApiResult<()> {
    let have = local_key_files(repo, app)?;
    if have == *want {
        return Ok(());
    }
    for (name, body) in want {
        if have.get(name) != Some(body) {
            let path = local_path(repo, app, name)?;
            updraft_store::keys::create_private_dir(path.parent().expect("key files are in a directory")).map_err(ApiError::internal)?;
            write_private(&path, body)?;
        }
    }
    for name in have.keys().filter(|n| !want.contains_key(*n)) {
        let _ = std::fs::remove_file(local_path(repo, app, name)?);
    }
    repo.forget_keys(app);
    tracing::info!(app = %app, files = want.len(), "signing keys updated from the database");
    Ok(())
}

/// Stores the key files `repo`'s data directory holds for `app` in `store` (used by
/// `updraft migrate-store` to carry an embedded install's keys into PostgreSQL).
pub async fn push_keys_from(store: &dyn updraft_store::MetaStore, repo: &crate::repo::Repo, app: &AppId) -> ApiResult<usize> {
    let files: Vec<(String, Vec<u8>)> = local_key_files(repo, app)?.into_iter().collect();
    store.set_key_files(app.as_str(), &files).await?;
    Ok(files.len())
}

/// Stores this instance's key files for `app` in the database (shared stores only): after a
/// new app's keys are generated, and after a rotation adds or retires keys.
pub async fn push_keys(state: &AppState, app: &AppId) -> ApiResult<()> {
    if !state.store.shared() {
        return Ok(());
    }
    let files: Vec<(String, Vec<u8>)> = local_key_files(&state.repo, app)?.into_iter().collect();
    state.store.set_key_files(app.as_str(), &files).await?;
    Ok(())
}

fn write_private(path: &std::path::Path, body: &[u8]) -> ApiResult<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("sync.tmp");
    let res = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(body).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, path));
    res.map_err(|e| ApiError::internal(format!("writing {}: {e}", path.display())))
}

/// Reloads one app after another instance changed it: keys, then the update view.
async fn reload(state: &AppState, app: &str) {
    let Ok(id) = app.parse::<AppId>() else { return };
    // Never beside a change on this instance: it may have written key files it has not pushed
    // yet, which a pull would take for retired ones.
    let _local = state.app_lock(app).lock_owned().await;
    let result = async {
        pull_keys(state, &id).await?;
        crate::ops::rebuild_view(state, &id).await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(app, error = %e.message, "reloading a changed app failed; the poll retries");
    }
}

/// Follows changes made by any instance until `stop` (shared stores only).
pub async fn watch(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    if !state.store.shared() {
        return;
    }
    let mut feed = match state.store.watch().await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "no change notifications; polling only");
            None
        }
    };
    let mut heads: HashMap<String, u64> = state.store.app_heads().await.unwrap_or_default().into_iter().collect();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            note = async { match feed.as_mut() { Some(f) => f.recv().await, None => std::future::pending().await } } => {
                match note {
                    Some(app) => reload(&state, &app).await,
                    None => feed = None,
                }
            }
            _ = tick.tick() => {
                match state.store.app_heads().await {
                    Ok(now) => {
                        for (app, version) in now {
                            if heads.get(&app) != Some(&version) {
                                reload(&state, &app).await;
                                heads.insert(app, version);
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "polling for changes failed"),
                }
            }
            _ = stop.changed() => return,
        }
    }
}
