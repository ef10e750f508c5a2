//! The blob store the server uses: local files (the default) or an S3-compatible bucket,
//! chosen by the `--blobs` URL. Both keep the same contract: content-addressed, immutable
//! blobs; resumable uploads whose bytes are hashed and checked before a blob exists; nothing
//! partial ever readable.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::Stream;

use crate::{FileBlobs, FinishedUpload, S3Blobs, S3Object, StoreError, Upload};

/// Where blobs live, from a `--blobs` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobUrl {
    /// A directory (`PATH` or `file://PATH`; default `DATA/blobs`).
    Dir(PathBuf),
    /// `s3://BUCKET[/PREFIX]`, configured by the `AWS_*` environment variables.
    S3 { bucket: String, prefix: String },
}

impl BlobUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let ok = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
            if !ok {
                return Err("s3:// needs a bucket name (3–63 lowercase letters, digits, '-' or '.'), like s3://updraft-blobs/prod".into());
            }
            Ok(Self::S3 { bucket: bucket.to_owned(), prefix: prefix.trim_matches('/').to_owned() })
        } else if let Some(path) = url.strip_prefix("file://") {
            Ok(Self::Dir(path.into()))
        } else if url.contains("://") {
            Err("the blob store URL must be a directory, file://PATH or s3://BUCKET[/PREFIX]".into())
        } else if url.is_empty() {
            Err("the blob store URL is empty".into())
        } else {
            Ok(Self::Dir(url.into()))
        }
    }

    pub async fn open(&self) -> Result<BlobStore, StoreError> {
        Ok(match self {
            Self::Dir(path) => BlobStore::Files(FileBlobs::open(path).await?),
            Self::S3 { bucket, prefix } => BlobStore::S3(S3Blobs::open(bucket, prefix).await?),
        })
    }
}

pub enum BlobStore {
    Files(FileBlobs),
    S3(S3Blobs),
}

/// An open blob, for (ranged) reads.
pub enum BlobReader {
    File(tokio::fs::File),
    S3(S3Object),
}

impl BlobReader {
    /// A presigned GET URL valid for `valid` (S3 blobs); `None` for files.
    pub async fn presigned_get(&self, valid: std::time::Duration) -> Option<Result<String, StoreError>> {
        match self {
            Self::S3(o) => Some(o.presigned_get(valid).await),
            Self::File(_) => None,
        }
    }

    /// `len` bytes from `start` of an S3 blob; `None` for files (read them directly).
    pub fn s3_range(&self, start: u64, len: u64) -> Option<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static> {
        match self {
            Self::S3(o) => Some(o.range(start, len)),
            Self::File(_) => None,
        }
    }
}

impl BlobStore {
    /// A directory store (what `BlobUrl::Dir` opens).
    pub async fn open(root: &Path) -> Result<Self, StoreError> {
        Ok(BlobStore::Files(FileBlobs::open(root).await?))
    }

    /// Whether every instance sharing the bucket sees these blobs.
    pub fn shared(&self) -> bool {
        matches!(self, BlobStore::S3(_))
    }

    pub fn describe(&self) -> String {
        match self {
            BlobStore::Files(f) => f.describe(),
            BlobStore::S3(s) => s.describe(),
        }
    }

    /// Opens a blob with its length; `None` if absent or the name is not a hash.
    pub async fn open_blob(&self, sha256: &str) -> Result<Option<(BlobReader, u64)>, StoreError> {
        Ok(match self {
            BlobStore::Files(f) => f.open_blob(sha256).await?.map(|(file, len)| (BlobReader::File(file), len)),
            BlobStore::S3(s) => s.open_blob(sha256).await?.map(|(o, len)| (BlobReader::S3(o), len)),
        })
    }

    /// Replaces a small named record kept beside the blobs (`marks/NAME`), outside the
    /// metadata database: it outlives the loss of the database, which is what the server's
    /// served-version marks are for (see `Repo`).
    pub async fn put_mark(&self, name: &str, body: &[u8]) -> Result<(), StoreError> {
        match self {
            BlobStore::Files(f) => f.put_mark(name, body).await,
            BlobStore::S3(s) => s.put_mark(name, body).await,
        }
    }

    /// A record [`BlobStore::put_mark`] wrote; `None` if there is none.
    pub async fn get_mark(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            BlobStore::Files(f) => f.get_mark(name).await,
            BlobStore::S3(s) => s.get_mark(name).await,
        }
    }

    pub async fn check_writable(&self) -> Result<(), StoreError> {
        match self {
            BlobStore::Files(f) => f.check_writable().await,
            BlobStore::S3(s) => s.check_writable().await,
        }
    }

    pub async fn create_upload(&self, size: u64, owner: &str) -> Result<Upload, StoreError> {
        match self {
            BlobStore::Files(f) => f.create_upload(size, owner).await,
            BlobStore::S3(s) => s.create_upload(size, owner).await,
        }
    }

    pub async fn get_upload(&self, id: &str) -> Result<Option<Upload>, StoreError> {
        match self {
            BlobStore::Files(f) => f.get_upload(id).await,
            BlobStore::S3(s) => s.get_upload(id).await,
        }
    }

    /// Appends a request body at `offset`; see [`FileBlobs::append`].
    pub async fn append<S, E>(&self, up: &Upload, offset: u64, body: S) -> Result<u64, StoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
    {
        match self {
            BlobStore::Files(f) => f.append(up, offset, body).await,
            BlobStore::S3(s) => s.append(up, offset, body).await,
        }
    }

    pub async fn finish(&self, up: &Upload) -> Result<FinishedUpload, StoreError> {
        match self {
            BlobStore::Files(f) => f.finish(up).await,
            BlobStore::S3(s) => s.finish(up).await,
        }
    }

    pub async fn sweep_stale_uploads(&self, max_age_secs: u64) -> Result<usize, StoreError> {
        match self {
            BlobStore::Files(f) => f.sweep_stale_uploads(max_age_secs).await,
            BlobStore::S3(s) => s.sweep_stale_uploads(max_age_secs).await,
        }
    }
}
