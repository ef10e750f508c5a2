//! Resumable, verified download of one target file: into `{out}.part`, resumed with `Range`,
//! never more than the signed length, SHA-256 checked over the whole file before it is
//! renamed to `out`.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::fsutil::{blocking, sync_parent, with_suffix};
use crate::http::{check_status, RateGuard};
use crate::{ClientError, Limits};

/// What to download and what it must turn out to be (from verified targets metadata).
pub(crate) struct Job<'a> {
    pub url: &'a str,
    pub target: &'a str,
    pub length: u64,
    pub sha256: &'a str,
}

/// Where a partial download of `out` is kept between attempts.
pub(crate) fn part_path(out: &Path) -> PathBuf {
    with_suffix(out, ".part")
}

pub(crate) async fn download(
    http: &reqwest::Client,
    job: &Job<'_>,
    out: &Path,
    limits: &Limits,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), ClientError> {
    let part = part_path(out);
    let io = |e| ClientError::io(&part)(e);
    let mut file = tokio::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&part).await.map_err(io)?;
    let mut have = file.metadata().await.map_err(io)?.len();
    if have > job.length {
        // Not a prefix of this target; start over.
        file.set_len(0).await.map_err(io)?;
        have = 0;
    }
    // The hash covers the whole file, so first take in the part already on disk.
    let mut hasher = Sha256::new();
    if have > 0 {
        file.seek(std::io::SeekFrom::Start(0)).await.map_err(io)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = have;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = file.read(&mut buf[..want]).await.map_err(io)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        if left > 0 {
            file.set_len(0).await.map_err(io)?;
            hasher = Sha256::new();
            have = 0;
        }
    }
    progress(have, job.length);

    // Two attempts at most: a server that ignores or botches our Range gets one fresh start.
    let mut attempts = 0;
    while have < job.length {
        attempts += 1;
        let mut req = http.get(job.url);
        if have > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let resp = tokio::time::timeout(limits.request_timeout, req.send())
            .await
            .map_err(|_| ClientError::Timeout { url: job.url.to_owned() })?
            .map_err(|e| ClientError::http(job.url, e))?;
        let status = resp.status();
        let resumed = have > 0 && status == reqwest::StatusCode::PARTIAL_CONTENT && content_range_start(&resp) == Some(have);
        if !resumed && have > 0 {
            if attempts < 2 && (status.is_success() || status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE) {
                // The server sends the whole file (200), a range we did not ask for, or
                // cannot serve ours (416): drop the part and start from zero.
                tracing::debug!(url = job.url, %status, "server did not resume; restarting download");
                file.set_len(0).await.map_err(io)?;
                hasher = Sha256::new();
                have = 0;
                progress(0, job.length);
                if status != reqwest::StatusCode::OK {
                    continue;
                }
            } else {
                check_status(job.url, status, &[])?;
            }
        } else if !resumed {
            check_status(job.url, status, &[reqwest::StatusCode::OK])?;
        }
        if resp.content_length().is_some_and(|n| have + n > job.length) {
            return Err(too_large(file, &part, job));
        }
        file.seek(std::io::SeekFrom::Start(have)).await.map_err(io)?;
        file.set_len(have).await.map_err(io)?;

        let mut guard = RateGuard::new(limits);
        let mut stream = resp.bytes_stream();
        loop {
            let next = tokio::time::timeout(limits.request_timeout, stream.next()).await;
            let chunk = match next {
                Err(_) => Err(ClientError::Timeout { url: job.url.to_owned() }),
                Ok(None) => break,
                Ok(Some(Err(e))) => Err(ClientError::http(job.url, e)),
                Ok(Some(Ok(chunk))) => Ok(chunk),
            };
            // On network trouble keep what we have: the next attempt resumes from it.
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    file.flush().await.map_err(io)?;
                    return Err(e);
                }
            };
            if have + chunk.len() as u64 > job.length {
                return Err(too_large(file, &part, job));
            }
            file.write_all(&chunk).await.map_err(io)?;
            hasher.update(&chunk);
            have += chunk.len() as u64;
            progress(have, job.length);
            if let Err(e) = guard.add(chunk.len() as u64, job.url) {
                file.flush().await.map_err(io)?;
                return Err(e);
            }
        }
        if have < job.length {
            file.flush().await.map_err(io)?;
            return Err(ClientError::Incomplete { url: job.url.to_owned(), got: have, expected: job.length });
        }
    }

    let found = hex::encode(hasher.finalize());
    if !found.eq_ignore_ascii_case(job.sha256) {
        drop(file);
        crate::fsutil::remove_if_exists(&part)?;
        return Err(ClientError::HashMismatch { target: job.target.to_owned(), expected: job.sha256.to_owned(), found });
    }
    file.sync_all().await.map_err(io)?;
    drop(file);
    tokio::fs::rename(&part, out).await.map_err(ClientError::io(out))?;
    let out = out.to_owned();
    blocking(move || sync_parent(&out)).await
}

/// The server is sending more than the signed length: discard everything (we cannot tell
/// which bytes are good) and refuse.
fn too_large(file: tokio::fs::File, part: &Path, job: &Job<'_>) -> ClientError {
    drop(file);
    if let Err(e) = crate::fsutil::remove_if_exists(part) {
        return e;
    }
    ClientError::TargetTooLarge { target: job.target.to_owned(), length: job.length }
}

/// The first byte position of a `Content-Range: bytes START-END/TOTAL` header.
fn content_range_start(resp: &reqwest::Response) -> Option<u64> {
    let v = resp.headers().get(reqwest::header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.strip_prefix("bytes ")?;
    rest.split('-').next()?.trim().parse().ok()
}
