//! Blobs in an S3-compatible bucket (AWS S3, MinIO, Garage, R2, …) through `object_store`,
//! configured by the standard `AWS_*` environment variables. Every instance sharing the bucket
//! sees the same blobs and the same uploads, so an upload may be continued on any instance:
//!
//! ```text
//! PREFIX/sha256/ab/abcd…                 a blob, by content address
//! PREFIX/uploads/ID/info.json            an upload session (declared size, owner)
//! PREFIX/uploads/ID/p00000000000000000000 the bytes one PATCH brought, named by its offset
//! PREFIX/staging/ID                      a finishing upload, before it is copied into place
//! ```
//!
//! Bytes stream through in parts of [`PART`] bytes (a PATCH becomes a multipart upload of its
//! own); nothing holds a whole blob in memory. `finish` streams the parts, in order, into one
//! multipart object while hashing them, then copies it to its content address (a server-side
//! copy: one object of at most 5 GiB). A blob is referenced by a release only after that, so a
//! crash leaves at most unreferenced objects, which the stale-upload sweep deletes.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};

use crate::blobs::{is_upload_id, FinishedUpload, Upload};
use crate::error::UploadProblem;
use crate::{is_sha256_hex, StoreError};

/// Size of each part sent to the bucket; at most a few are in flight per stream.
const PART: usize = 8 * 1024 * 1024;
/// Parts uploading at once per stream (memory per stream: about this many parts).
const IN_FLIGHT: usize = 2;

pub struct S3Blobs {
    store: Arc<AmazonS3>,
    bucket: String,
    prefix: String,
    /// Uploads a request on this instance is writing or finishing right now.
    busy: Mutex<HashSet<String>>,
}

/// A blob in the bucket, for ranged reads.
#[derive(Clone)]
pub struct S3Object {
    store: Arc<AmazonS3>,
    path: Path,
}

impl S3Object {
    /// A URL anyone can GET this object from (ranges included) for `valid` without credentials.
    pub async fn presigned_get(&self, valid: std::time::Duration) -> Result<String, StoreError> {
        use object_store::signer::Signer;
        let url = self.store.signed_url(http::Method::GET, &self.path, valid).await.map_err(store_err)?;
        Ok(url.to_string())
    }

    /// `len` bytes from `start`, streamed as the bucket sends them.
    pub fn range(&self, start: u64, len: u64) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        let (store, path) = (self.store.clone(), self.path.clone());
        futures_util::stream::once(async move {
            let opts = GetOptions { range: Some(GetRange::Bounded(start..start + len)), ..Default::default() };
            store.get_opts(&path, opts).await.map(|r| r.into_stream().map_err(std::io::Error::other)).map_err(std::io::Error::other)
        })
        .try_flatten()
    }
}

fn store_err(e: object_store::Error) -> StoreError {
    StoreError::Object(Box::new(e))
}

impl S3Blobs {
    /// Connects to `bucket` (which must exist) with the `AWS_*` environment, and checks it can
    /// be listed, so a wrong endpoint or credentials stop the server at start.
    pub async fn open(bucket: &str, prefix: &str) -> Result<Self, StoreError> {
        let store = AmazonS3Builder::from_env().with_bucket_name(bucket).build().map_err(store_err)?;
        let s = S3Blobs {
            store: Arc::new(store),
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            busy: Mutex::new(HashSet::new()),
        };
        s.store.list_with_delimiter(Some(&s.key("uploads"))).await.map_err(store_err)?;
        Ok(s)
    }

    pub fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn key(&self, rest: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(rest)
        } else {
            Path::from(format!("{}/{rest}", self.prefix))
        }
    }
    fn blob_key(&self, sha256: &str) -> Path {
        self.key(&format!("sha256/{}/{sha256}", &sha256[..2]))
    }
    fn upload_dir(&self, id: &str) -> Path {
        self.key(&format!("uploads/{id}"))
    }
    fn info_key(&self, id: &str) -> Path {
        self.key(&format!("uploads/{id}/info.json"))
    }
    fn part_key(&self, id: &str, offset: u64) -> Path {
        self.key(&format!("uploads/{id}/p{offset:020}"))
    }

    pub async fn open_blob(&self, sha256: &str) -> Result<Option<(S3Object, u64)>, StoreError> {
        if !is_sha256_hex(sha256) {
            return Ok(None);
        }
        let path = self.blob_key(sha256);
        match self.store.head(&path).await {
            Ok(meta) => Ok(Some((S3Object { store: self.store.clone(), path }, meta.size))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_err(e)),
        }
    }

    pub async fn put_mark(&self, name: &str, body: &[u8]) -> Result<(), StoreError> {
        crate::blobs::check_mark_name(name)?;
        self.store.put(&self.key(&format!("marks/{name}")), PutPayload::from(body.to_vec())).await.map_err(store_err)?;
        Ok(())
    }

    pub async fn get_mark(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        crate::blobs::check_mark_name(name)?;
        match self.store.get(&self.key(&format!("marks/{name}"))).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(store_err)?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_err(e)),
        }
    }

    /// Whether the bucket takes writes: puts and deletes a probe.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        let probe = self.key(&format!("probes/ready-{}", crate::random_hex(6)));
        self.store.put(&probe, PutPayload::from_static(b"ok")).await.map_err(store_err)?;
        self.store.delete(&probe).await.map_err(store_err)
    }

    pub async fn create_upload(&self, size: u64, owner: &str) -> Result<Upload, StoreError> {
        let up = Upload { id: crate::random_hex(16), size, offset: 0, owner: owner.to_owned(), created_at: crate::now_rfc3339() };
        let json = serde_json::to_vec(&up).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.store.put(&self.info_key(&up.id), json.into()).await.map_err(store_err)?;
        Ok(up)
    }

    /// The parts of an upload that follow each other from 0, by offset, with their sizes.
    async fn parts(&self, id: &str) -> Result<Vec<(u64, u64)>, StoreError> {
        let prefix = self.upload_dir(id);
        let mut found = BTreeMap::new();
        let mut list = self.store.list(Some(&prefix));
        while let Some(meta) = list.next().await {
            let meta = meta.map_err(store_err)?;
            if let Some(off) = meta.location.filename().and_then(|n| n.strip_prefix('p')).and_then(|n| n.parse::<u64>().ok()) {
                found.insert(off, meta.size);
            }
        }
        let mut parts = Vec::new();
        let mut next = 0;
        for (off, size) in found {
            if off == next && size > 0 {
                parts.push((off, size));
                next += size;
            }
        }
        Ok(parts)
    }

    pub async fn get_upload(&self, id: &str) -> Result<Option<Upload>, StoreError> {
        if !is_upload_id(id) {
            return Ok(None);
        }
        let raw = match self.store.get(&self.info_key(id)).await {
            Ok(r) => r.bytes().await.map_err(store_err)?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_err(e)),
        };
        let mut up: Upload = serde_json::from_slice(&raw).map_err(|_| StoreError::Corrupt(format!("upload {id} record")))?;
        up.offset = self.parts(id).await?.iter().map(|(_, s)| s).sum();
        Ok(Some(up))
    }

    fn claim(&self, id: &str) -> Result<Claim<'_>, StoreError> {
        if !self.busy.lock().expect("busy").insert(id.to_owned()) {
            return Err(StoreError::Upload { id: id.to_owned(), reason: UploadProblem::Busy });
        }
        Ok(Claim { set: &self.busy, id: id.to_owned() })
    }

    /// Appends a request body at `offset` as one new part. An interrupted body keeps what
    /// arrived (the client resumes after it); past the declared size nothing is kept.
    pub async fn append<S, E>(&self, up: &Upload, offset: u64, body: S) -> Result<u64, StoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
    {
        let _claim = self.claim(&up.id)?;
        let start: u64 = self.parts(&up.id).await?.iter().map(|(_, s)| s).sum();
        if offset != start {
            return Err(StoreError::Upload { id: up.id.clone(), reason: UploadProblem::OffsetMismatch { expected: start } });
        }
        let mut writer: Option<WriteMultipart> = None;
        let mut pos = start;
        let mut problem = None;
        futures_util::pin_mut!(body);
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else {
                problem = Some(UploadProblem::Interrupted);
                break;
            };
            if pos + chunk.len() as u64 > up.size {
                problem = Some(UploadProblem::TooLarge);
                break;
            }
            if chunk.is_empty() {
                continue;
            }
            if writer.is_none() {
                let mp = self.store.put_multipart(&self.part_key(&up.id, start)).await.map_err(store_err)?;
                writer = Some(WriteMultipart::new_with_chunk_size(mp, PART));
            }
            let w = writer.as_mut().expect("writer");
            pos += chunk.len() as u64;
            w.put(chunk);
            if let Err(e) = w.wait_for_capacity(IN_FLIGHT).await {
                if let Some(w) = writer.take() {
                    let _ = w.abort().await;
                }
                return Err(store_err(e));
            }
        }
        if problem == Some(UploadProblem::TooLarge) {
            if let Some(w) = writer {
                let _ = w.abort().await;
            }
            return Err(StoreError::Upload { id: up.id.clone(), reason: UploadProblem::TooLarge });
        }
        if let Some(w) = writer {
            w.finish().await.map_err(store_err)?;
        }
        match problem {
            Some(p) => Err(StoreError::Upload { id: up.id.clone(), reason: p }),
            None => Ok(pos),
        }
    }

    /// Streams the parts into one object while hashing, then copies it to its content address.
    pub async fn finish(&self, up: &Upload) -> Result<FinishedUpload, StoreError> {
        let _claim = self.claim(&up.id)?;
        let parts = self.parts(&up.id).await?;
        let received: u64 = parts.iter().map(|(_, s)| s).sum();
        if received != up.size {
            return Err(StoreError::Upload { id: up.id.clone(), reason: UploadProblem::Incomplete { received, declared: up.size } });
        }
        let staging = self.key(&format!("staging/{}", up.id));
        let mut w = WriteMultipart::new_with_chunk_size(self.store.put_multipart(&staging).await.map_err(store_err)?, PART);
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        let streamed: Result<(), StoreError> = async {
            for (off, _) in &parts {
                let mut s = self.store.get(&self.part_key(&up.id, *off)).await.map_err(store_err)?.into_stream();
                while let Some(chunk) = s.next().await {
                    let chunk = chunk.map_err(store_err)?;
                    hasher.update(&chunk);
                    total += chunk.len() as u64;
                    w.put(chunk);
                    w.wait_for_capacity(IN_FLIGHT).await.map_err(store_err)?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = streamed {
            let _ = w.abort().await;
            return Err(e);
        }
        if total != up.size {
            let _ = w.abort().await;
            return Err(StoreError::Corrupt(format!("upload {} parts hold {total} bytes, not {}", up.id, up.size)));
        }
        w.finish().await.map_err(store_err)?;
        let digest = hex::encode(hasher.finalize());
        let dest = self.blob_key(&digest);
        match self.store.head(&dest).await {
            Ok(_) => {} // the same content is stored already
            Err(object_store::Error::NotFound { .. }) => self.store.copy(&staging, &dest).await.map_err(store_err)?,
            Err(e) => return Err(store_err(e)),
        }
        let _ = self.store.delete(&staging).await;
        self.delete_upload(&up.id).await;
        Ok(FinishedUpload { sha256: digest, size: total })
    }

    async fn delete_upload(&self, id: &str) {
        let prefix = self.upload_dir(id);
        let names: Vec<Path> = self.store.list(Some(&prefix)).filter_map(|m| async move { m.ok().map(|m| m.location) }).collect().await;
        // The record last, so a half-deleted upload is still found and swept.
        for p in
            names.iter().filter(|p| p.filename() != Some("info.json")).chain(names.iter().filter(|p| p.filename() == Some("info.json")))
        {
            let _ = self.store.delete(p).await;
        }
    }

    /// Deletes uploads (and staging objects) older than `max_age_secs` that this instance is
    /// not writing. Returns how many uploads.
    pub async fn sweep_stale_uploads(&self, max_age_secs: u64) -> Result<usize, StoreError> {
        let cutoff = chrono_cutoff(max_age_secs);
        let mut stale = Vec::new();
        let mut list = self.store.list(Some(&self.key("uploads")));
        while let Some(meta) = list.next().await {
            let meta = meta.map_err(store_err)?;
            if meta.location.filename() == Some("info.json") && meta.last_modified.timestamp() < cutoff {
                let parts: Vec<_> = meta.location.parts().collect();
                if let Some(id) = parts.len().checked_sub(2).and_then(|i| parts.get(i)) {
                    stale.push(id.as_ref().to_owned());
                }
            }
        }
        let mut removed = 0;
        for id in stale {
            if self.busy.lock().expect("busy").contains(&id) {
                continue;
            }
            self.delete_upload(&id).await;
            let _ = self.store.delete(&self.key(&format!("staging/{id}"))).await;
            removed += 1;
        }
        Ok(removed)
    }
}

fn chrono_cutoff(max_age_secs: u64) -> i64 {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    now.saturating_sub(i64::try_from(max_age_secs).unwrap_or(i64::MAX))
}

/// Marks an upload busy on this instance until dropped.
struct Claim<'a> {
    set: &'a Mutex<HashSet<String>>,
    id: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.set.lock().expect("busy").remove(&self.id);
    }
}
