//! HTTP fetching with the limits TUF asks for: a size cap per file (endless data), an overall
//! timeout for metadata and a minimum transfer rate (slow retrieval).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use updraft_core::tuf::{RoleName, TufError};

use crate::{ClientError, Limits};

/// Watches a transfer's average rate; after a grace period, a transfer slower than the
/// minimum is abandoned (an attacker trickling bytes must not hold the client forever).
#[derive(Debug, Clone)]
pub(crate) struct RateGuard {
    start: Instant,
    min_rate: u64,
    grace: Duration,
    bytes: u64,
}

impl RateGuard {
    pub(crate) fn new(limits: &Limits) -> Self {
        RateGuard { start: Instant::now(), min_rate: limits.min_transfer_rate, grace: limits.min_rate_grace, bytes: 0 }
    }

    pub(crate) fn add(&mut self, n: u64, url: &str) -> Result<(), ClientError> {
        self.bytes += n;
        match too_slow(self.bytes, self.start.elapsed(), self.min_rate, self.grace) {
            Some(rate) => Err(ClientError::SlowRetrieval { url: url.to_owned(), rate, min: self.min_rate }),
            None => Ok(()),
        }
    }
}

/// `Some(rate)` when `bytes` over `elapsed` is below `min_rate` bytes/s and the grace period
/// is over. A `min_rate` of 0 disables the check.
pub(crate) fn too_slow(bytes: u64, elapsed: Duration, min_rate: u64, grace: Duration) -> Option<u64> {
    if min_rate == 0 || elapsed <= grace {
        return None;
    }
    let rate = (u128::from(bytes) * 1000 / elapsed.as_millis().max(1)) as u64;
    (rate < min_rate).then_some(rate)
}

/// GETs a metadata file, refusing bodies over `cap` bytes without reading past the cap.
pub(crate) async fn get_metadata(
    http: &reqwest::Client,
    url: &str,
    role: RoleName,
    cap: u64,
    limits: &Limits,
) -> Result<Vec<u8>, ClientError> {
    let fetch = async {
        let resp = http.get(url).send().await.map_err(|e| ClientError::http(url, e))?;
        check_status(url, resp.status(), &[reqwest::StatusCode::OK])?;
        if resp.content_length().is_some_and(|n| n > cap) {
            return Err(TufError::MetadataTooLarge { role, limit: cap }.into());
        }
        let mut body = Vec::new();
        let mut guard = RateGuard::new(limits);
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ClientError::http(url, e))?;
            if body.len() as u64 + chunk.len() as u64 > cap {
                return Err(TufError::MetadataTooLarge { role, limit: cap }.into());
            }
            body.extend_from_slice(&chunk);
            guard.add(chunk.len() as u64, url)?;
        }
        Ok(body)
    };
    tokio::time::timeout(limits.request_timeout, fetch).await.unwrap_or_else(|_| Err(ClientError::Timeout { url: url.to_owned() }))
}

/// Maps a status outside `ok` to an error.
pub(crate) fn check_status(url: &str, status: reqwest::StatusCode, ok: &[reqwest::StatusCode]) -> Result<(), ClientError> {
    if ok.contains(&status) {
        Ok(())
    } else if status == reqwest::StatusCode::NOT_FOUND {
        Err(ClientError::NotFound { url: url.to_owned() })
    } else {
        Err(ClientError::Status { url: url.to_owned(), status: status.as_u16() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_transfers_are_detected_after_grace() {
        let grace = Duration::from_secs(10);
        let s = Duration::from_secs;
        assert_eq!(too_slow(0, s(5), 1000, grace), None, "still in grace");
        assert_eq!(too_slow(0, s(11), 1000, grace), Some(0));
        assert_eq!(too_slow(11_000, s(11), 1000, grace), None);
        assert_eq!(too_slow(10_000, s(20), 1000, grace), Some(500));
        assert_eq!(too_slow(0, s(1000), 0, grace), None, "disabled");
    }
}
