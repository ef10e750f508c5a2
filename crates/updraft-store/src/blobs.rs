//! The local blob store (the default; `s3.rs` is the shared one): files named by their SHA-256 under `blobs/sha256/ab/abcd…`.
//!
//! Bytes arrive through resumable uploads: `uploads/{id}.part` grows by appends (each at the
//! offset the client names), hashed as they stream; `finish` checks the length, fsyncs, and
//! renames the file into its content address. A blob is therefore either whole and verified or
//! absent — a crash at any point leaves at most a `.part` file, which nothing serves and the
//! stale-upload sweep deletes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::UploadProblem;
use crate::StoreError;

/// An upload session as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    pub id: String,
    /// Declared total size in bytes.
    pub size: u64,
    /// Bytes received so far.
    #[serde(default)]
    pub offset: u64,
    /// Id of the token that created it; only that token may append or use it.
    pub owner: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedUpload {
    pub sha256: String,
    pub size: u64,
}

struct Live {
    /// Hash of the first `hashed` bytes; `None` after a restart, when `finish` re-reads the file.
    hasher: Option<(Sha256, u64)>,
    busy: bool,
}

pub struct FileBlobs {
    root: PathBuf,
    live: Mutex<HashMap<String, Live>>,
}

pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A mark's name: a flat file name of letters, digits, `-`, `_` and `.`, not starting with a dot.
pub(crate) fn check_mark_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!("{name:?} is not a valid mark name")))
    }
}

pub(crate) fn is_upload_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl FileBlobs {
    pub async fn open(root: &Path) -> Result<Self, StoreError> {
        for sub in ["sha256", "uploads"] {
            let p = root.join(sub);
            tokio::fs::create_dir_all(&p).await.map_err(StoreError::io(&p))?;
        }
        Ok(Self { root: root.to_owned(), live: Mutex::new(HashMap::new()) })
    }

    pub fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join("sha256").join(&sha256[..2]).join(sha256)
    }
    fn part_path(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(format!("{id}.part"))
    }
    fn info_path(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(format!("{id}.json"))
    }

    /// Opens a blob for reading, with its length; `None` if absent or the name is not a hash.
    pub async fn open_blob(&self, sha256: &str) -> Result<Option<(tokio::fs::File, u64)>, StoreError> {
        if !is_sha256_hex(sha256) {
            return Ok(None);
        }
        let path = self.blob_path(sha256);
        match tokio::fs::File::open(&path).await {
            Ok(f) => {
                let len = f.metadata().await.map_err(StoreError::io(&path))?.len();
                Ok(Some((f, len)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io { path, source: e }),
        }
    }

    fn mark_path(&self, name: &str) -> Result<PathBuf, StoreError> {
        check_mark_name(name)?;
        Ok(self.root.join("marks").join(name))
    }

    /// Replaces the small named record `name` (see [`BlobStore::put_mark`]), atomically and
    /// durably.
    pub async fn put_mark(&self, name: &str, body: &[u8]) -> Result<(), StoreError> {
        let path = self.mark_path(name)?;
        let dir = self.root.join("marks");
        tokio::fs::create_dir_all(&dir).await.map_err(StoreError::io(&dir))?;
        let tmp = path.with_extension("tmp");
        let write = async {
            let mut f = tokio::fs::File::create(&tmp).await?;
            tokio::io::AsyncWriteExt::write_all(&mut f, body).await?;
            f.sync_all().await?;
            tokio::fs::rename(&tmp, &path).await
        };
        write.await.map_err(StoreError::io(&path))
    }

    pub async fn get_mark(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.mark_path(name)?;
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io { path, source: e }),
        }
    }

    /// Whether the store can be written (for readiness checks): writes and removes a probe.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        let probe = self.root.join("uploads").join(format!(".ready-{}", crate::random_hex(6)));
        tokio::fs::write(&probe, b"ok").await.map_err(StoreError::io(&probe))?;
        tokio::fs::remove_file(&probe).await.map_err(StoreError::io(&probe))
    }

    pub async fn create_upload(&self, size: u64, owner: &str) -> Result<Upload, StoreError> {
        let up = Upload { id: crate::random_hex(16), size, offset: 0, owner: owner.to_owned(), created_at: crate::now_rfc3339() };
        let part = self.part_path(&up.id);
        tokio::fs::File::create(&part).await.map_err(StoreError::io(&part))?;
        let info = self.info_path(&up.id);
        let json = serde_json::to_vec(&up).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tokio::fs::write(&info, json).await.map_err(StoreError::io(&info))?;
        self.live.lock().expect("lock").insert(up.id.clone(), Live { hasher: Some((Sha256::new(), 0)), busy: false });
        Ok(up)
    }

    pub async fn get_upload(&self, id: &str) -> Result<Option<Upload>, StoreError> {
        if !is_upload_id(id) {
            return Ok(None);
        }
        let info = self.info_path(id);
        let raw = match tokio::fs::read(&info).await {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::Io { path: info, source: e }),
        };
        let mut up: Upload = serde_json::from_slice(&raw).map_err(|_| StoreError::Corrupt(format!("upload {id} record")))?;
        let part = self.part_path(id);
        up.offset = match tokio::fs::metadata(&part).await {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::Io { path: part, source: e }),
        };
        Ok(Some(up))
    }

    fn claim(&self, id: &str) -> Result<(), StoreError> {
        let mut live = self.live.lock().expect("lock");
        let entry = live.entry(id.to_owned()).or_insert(Live { hasher: None, busy: false });
        if entry.busy {
            return Err(StoreError::Upload { id: id.to_owned(), reason: UploadProblem::Busy });
        }
        entry.busy = true;
        Ok(())
    }

    fn release(&self, id: &str, hasher: Option<(Sha256, u64)>) {
        if let Some(entry) = self.live.lock().expect("lock").get_mut(id) {
            entry.busy = false;
            entry.hasher = hasher;
        }
    }

    /// Appends a request body at `offset`. On an interrupted body the bytes that arrived are
    /// kept (so the client can resume) and `Interrupted` is returned; past the declared size,
    /// nothing from this request is kept.
    pub async fn append<S, E>(&self, up: &Upload, offset: u64, body: S) -> Result<u64, StoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
    {
        self.claim(&up.id)?;
        let hasher = self.live.lock().expect("lock").get_mut(&up.id).and_then(|l| l.hasher.take());
        let result = self.append_claimed(up, offset, body, hasher).await;
        match result {
            Ok((off, h)) => {
                self.release(&up.id, h);
                Ok(off)
            }
            Err((e, h)) => {
                self.release(&up.id, h);
                Err(e)
            }
        }
    }

    async fn append_claimed<S, E>(
        &self,
        up: &Upload,
        offset: u64,
        body: S,
        mut hasher: Option<(Sha256, u64)>,
    ) -> Result<(u64, Option<(Sha256, u64)>), (StoreError, Option<(Sha256, u64)>)>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
    {
        let part = self.part_path(&up.id);
        let mut file = match tokio::fs::OpenOptions::new().append(true).open(&part).await {
            Ok(f) => f,
            Err(e) => return Err((StoreError::Io { path: part, source: e }, hasher)),
        };
        let start = match file.metadata().await {
            Ok(m) => m.len(),
            Err(e) => return Err((StoreError::Io { path: part, source: e }, hasher)),
        };
        if offset != start {
            return Err((StoreError::Upload { id: up.id.clone(), reason: UploadProblem::OffsetMismatch { expected: start } }, hasher));
        }
        if hasher.as_ref().is_some_and(|(_, n)| *n != start) {
            hasher = None;
        }
        let mut pos = start;
        let mut problem = None;
        futures_util::pin_mut!(body);
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(_) => {
                    problem = Some(UploadProblem::Interrupted);
                    break;
                }
            };
            if pos + chunk.len() as u64 > up.size {
                problem = Some(UploadProblem::TooLarge);
                break;
            }
            if let Err(e) = file.write_all(&chunk).await {
                return Err((StoreError::Io { path: part, source: e }, None));
            }
            if let Some((h, n)) = hasher.as_mut() {
                h.update(&chunk);
                *n += chunk.len() as u64;
            }
            pos += chunk.len() as u64;
        }
        if problem == Some(UploadProblem::TooLarge) {
            // Keep nothing from a request that overran: roll back to where it started.
            drop(file);
            let f = std::fs::OpenOptions::new().write(true).open(&part).and_then(|f| f.set_len(start));
            if let Err(e) = f {
                return Err((StoreError::Io { path: part, source: e }, None));
            }
            return Err((StoreError::Upload { id: up.id.clone(), reason: UploadProblem::TooLarge }, None));
        }
        if let Err(e) = file.flush().await {
            return Err((StoreError::Io { path: part, source: e }, None));
        }
        match problem {
            Some(p) => Err((StoreError::Upload { id: up.id.clone(), reason: p }, hasher)),
            None => Ok((pos, hasher)),
        }
    }

    /// Verifies the upload is complete and moves it to its content address.
    pub async fn finish(&self, up: &Upload) -> Result<FinishedUpload, StoreError> {
        self.claim(&up.id)?;
        let hasher = self.live.lock().expect("lock").get_mut(&up.id).and_then(|l| l.hasher.take());
        let res = self.finish_claimed(up, hasher).await;
        match &res {
            Ok(_) => {
                self.live.lock().expect("lock").remove(&up.id);
            }
            Err(_) => self.release(&up.id, None),
        }
        res
    }

    async fn finish_claimed(&self, up: &Upload, hasher: Option<(Sha256, u64)>) -> Result<FinishedUpload, StoreError> {
        let part = self.part_path(&up.id);
        let file = tokio::fs::File::open(&part).await.map_err(StoreError::io(&part))?;
        let len = file.metadata().await.map_err(StoreError::io(&part))?.len();
        if len != up.size {
            return Err(StoreError::Upload { id: up.id.clone(), reason: UploadProblem::Incomplete { received: len, declared: up.size } });
        }
        let digest = match hasher {
            Some((h, n)) if n == len => hex::encode(h.finalize()),
            // After a restart the running hash is gone: read the file once more.
            _ => hash_reader(file, &part).await?,
        };
        let f = std::fs::File::open(&part).map_err(StoreError::io(&part))?;
        f.sync_all().map_err(StoreError::io(&part))?;
        let dest = self.blob_path(&digest);
        let dir = dest.parent().expect("blob path has a parent").to_owned();
        tokio::fs::create_dir_all(&dir).await.map_err(StoreError::io(&dir))?;
        if tokio::fs::try_exists(&dest).await.unwrap_or(false) {
            // Same content already stored: the existing file is the blob.
            let _ = tokio::fs::remove_file(&part).await;
        } else {
            tokio::fs::rename(&part, &dest).await.map_err(StoreError::io(&dest))?;
            sync_dir(&dir)?;
        }
        let info = self.info_path(&up.id);
        let _ = tokio::fs::remove_file(&info).await;
        Ok(FinishedUpload { sha256: digest, size: len })
    }

    /// Deletes uploads older than `max_age_secs` that nobody is writing. Returns how many.
    pub async fn sweep_stale_uploads(&self, max_age_secs: u64) -> Result<usize, StoreError> {
        let dir = self.root.join("uploads");
        let mut rd = tokio::fs::read_dir(&dir).await.map_err(StoreError::io(&dir))?;
        let mut removed = 0;
        while let Some(entry) = rd.next_entry().await.map_err(StoreError::io(&dir))? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".part").or_else(|| name.strip_suffix(".json")) else { continue };
            let age = entry.metadata().await.ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok()).map(|d| d.as_secs());
            let busy = self.live.lock().expect("lock").get(id).is_some_and(|l| l.busy);
            if age.is_some_and(|a| a > max_age_secs) && !busy {
                let _ = tokio::fs::remove_file(entry.path()).await;
                self.live.lock().expect("lock").remove(id);
                removed += 1;
            }
        }
        Ok(removed)
    }
}

async fn hash_reader(mut file: tokio::fs::File, path: &Path) -> Result<String, StoreError> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).await.map_err(StoreError::io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// fsync a directory so a rename into it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(StoreError::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(chunks: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
        futures_util::stream::iter(chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn upload_resume_and_finish() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileBlobs::open(dir.path()).await.unwrap();
        let up = store.create_upload(11, "tok").await.unwrap();
        assert_eq!(store.append(&up, 0, body(&[b"hello"])).await.unwrap(), 5);
        // A wrong offset is refused and names the right one.
        let err = store.append(&up, 3, body(&[b"xx"])).await.unwrap_err();
        assert!(matches!(err, StoreError::Upload { reason: UploadProblem::OffsetMismatch { expected: 5 }, .. }));
        // Incomplete uploads cannot be finished.
        assert!(matches!(store.finish(&up).await, Err(StoreError::Upload { reason: UploadProblem::Incomplete { .. }, .. })));
        // Overrunning the declared size keeps nothing from that request.
        assert!(matches!(
            store.append(&up, 5, body(&[b" world!!"])).await,
            Err(StoreError::Upload { reason: UploadProblem::TooLarge, .. })
        ));
        assert_eq!(store.get_upload(&up.id).await.unwrap().unwrap().offset, 5);
        // A restarted store (no running hash) still finishes correctly.
        let store = FileBlobs::open(dir.path()).await.unwrap();
        assert_eq!(store.append(&up, 5, body(&[b" ", b"world"])).await.unwrap(), 11);
        let done = store.finish(&up).await.unwrap();
        assert_eq!(done.sha256, hex::encode(Sha256::digest(b"hello world")));
        let (_, len) = store.open_blob(&done.sha256).await.unwrap().unwrap();
        assert_eq!(len, 11);
        assert!(store.get_upload(&up.id).await.unwrap().is_none());
        assert!(store.open_blob("../etc/passwd").await.unwrap().is_none());
    }
}
