//! Installing an update over a file with one atomic rename, keeping the replaced file as
//! `{file}.previous` so `rollback` can restore it.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use updraft_core::{AppId, Version};

use crate::fsutil::{blocking, read_if_exists, remove_if_exists, sync_parent, with_suffix, write_atomic};
use crate::{Client, ClientError, Update};

/// What `state_dir/installed.json` holds after an install or rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallRecord {
    pub app: AppId,
    /// The version now installed.
    pub version: Version,
    /// The version `rollback` would restore, if known.
    pub previous_version: Option<Version>,
}

/// The staged download beside the file it will replace (same directory: rename is atomic).
fn staged_path(target_file: &Path) -> PathBuf {
    with_suffix(target_file, ".updraft-new")
}

/// Where the replaced file is kept.
pub fn previous_path(target_file: &Path) -> PathBuf {
    with_suffix(target_file, ".previous")
}

impl Client {
    /// Downloads and verifies `update`, then replaces `target_file` with it in one rename.
    /// The replaced file is kept as `{target_file}.previous` (a hard link, or a copy where
    /// links are impossible) and its permissions carry over to the new file. The install is
    /// recorded in `state_dir/installed.json`, and this client's current version becomes the
    /// installed one.
    pub async fn install(
        &mut self,
        update: &Update,
        target_file: &Path,
        progress: impl FnMut(u64, u64),
    ) -> Result<InstallRecord, ClientError> {
        let staged = staged_path(target_file);
        self.fetch(update, &staged, progress).await?;

        let record_path = self.config().state_dir.join("installed.json");
        let app = self.config().app.clone();
        let running = self.config().current.clone();
        let version = update.version.clone();
        let target = target_file.to_owned();
        let record = blocking(move || {
            let previous = previous_path(&target);
            let had_old = match fs::metadata(&target) {
                Ok(meta) => {
                    // An executable must stay executable (and a private file private).
                    fs::set_permissions(&staged, meta.permissions()).map_err(ClientError::io(&staged))?;
                    remove_if_exists(&previous)?;
                    if fs::hard_link(&target, &previous).is_err() {
                        fs::copy(&target, &previous).map_err(ClientError::io(&previous))?;
                        fs::File::open(&previous).and_then(|f| f.sync_all()).map_err(ClientError::io(&previous))?;
                    }
                    true
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => return Err(ClientError::io(&target)(e)),
            };
            fs::rename(&staged, &target).map_err(ClientError::io(&target))?;
            sync_parent(&target)?;
            let record = InstallRecord { app, version, previous_version: had_old.then_some(running) };
            write_record(&record_path, &record)?;
            Ok(record)
        })
        .await?;
        self.set_current(record.version.clone());
        Ok(record)
    }

    /// Puts `{target_file}.previous` back in place of `target_file` with one rename. Fails
    /// with [`ClientError::NoPrevious`] when there is nothing to restore. Returns the version
    /// now installed when the install record knows it.
    pub async fn rollback(&mut self, target_file: &Path) -> Result<Option<Version>, ClientError> {
        let record_path = self.config().state_dir.join("installed.json");
        let app = self.config().app.clone();
        let target = target_file.to_owned();
        let restored = blocking(move || {
            let previous = previous_path(&target);
            match fs::symlink_metadata(&previous) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ClientError::NoPrevious { path: previous }),
                Err(e) => return Err(ClientError::io(&previous)(e)),
            }
            fs::rename(&previous, &target).map_err(ClientError::io(&target))?;
            sync_parent(&target)?;
            // The record: the previous version is now current; there is no further previous.
            let old: Option<InstallRecord> = read_if_exists(&record_path, 64 * 1024)?
                .and_then(|b| serde_json::from_slice(&b).ok())
                .filter(|r: &InstallRecord| r.app == app);
            match old.and_then(|r| r.previous_version) {
                Some(v) => {
                    write_record(&record_path, &InstallRecord { app, version: v.clone(), previous_version: None })?;
                    Ok(Some(v))
                }
                None => {
                    remove_if_exists(&record_path)?;
                    Ok(None)
                }
            }
        })
        .await?;
        if let Some(v) = &restored {
            self.set_current(v.clone());
        }
        Ok(restored)
    }
}

fn write_record(path: &Path, record: &InstallRecord) -> Result<(), ClientError> {
    let bytes =
        serde_json::to_vec_pretty(record).map_err(|e| ClientError::Io { path: path.to_owned(), source: std::io::Error::other(e) })?;
    write_atomic(path, &bytes)
}
