//! Serving immutable, content-addressed files over HTTP: `ETag` (the hash), `If-None-Match`,
//! single and multi-range `Range` requests, streamed from disk in fixed-size chunks so no file
//! is ever loaded whole into memory.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{stream, StreamExt};

/// Bytes per body chunk: large enough that the per-chunk hand-off to a blocking thread is a
/// small share of the copying, small enough to keep a download's memory bounded.
const CHUNK: usize = 512 * 1024;
/// More ranges than this in one request is treated as abuse and answered with the whole file.
const MAX_RANGES: usize = 64;

/// Parses a `Range` header against a file of `len` bytes. `Ok(None)`: serve the whole file;
/// `Err(())`: unsatisfiable (416).
pub fn parse_range(value: &str, len: u64) -> Result<Option<Vec<(u64, u64)>>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return Ok(None) };
    let mut ranges = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        let Some((a, b)) = part.split_once('-') else { return Ok(None) };
        let (start, end) = if a.is_empty() {
            // Suffix range: the last N bytes.
            let n: u64 = b.parse().map_err(|_| ())?;
            if n == 0 {
                continue;
            }
            (len.saturating_sub(n), len.saturating_sub(1))
        } else {
            let start: u64 = a.parse().map_err(|_| ())?;
            let end: u64 = if b.is_empty() { len.saturating_sub(1) } else { b.parse::<u64>().map_err(|_| ())?.min(len.saturating_sub(1)) };
            if b.parse::<u64>().is_ok_and(|e| e < start) {
                return Ok(None); // syntactically invalid: ignore the header, as RFC 9110 says
            }
            (start, end)
        };
        if start >= len {
            continue;
        }
        ranges.push((start, end));
    }
    if ranges.is_empty() {
        return Err(());
    }
    if ranges.len() > MAX_RANGES {
        return Ok(None);
    }
    Ok(Some(ranges))
}

/// Streams `len` bytes of `file` from `start`. Each chunk is one `read` on a blocking thread
/// straight into the buffer that becomes the body chunk: no intermediate copy (tokio's `File`
/// copies through its own buffer) and no zeroing of the buffer first.
fn read_stream(
    file: std::fs::File,
    start: u64,
    len: u64,
    kind: &'static str,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send {
    stream::try_unfold((Some(file), start, len, false), move |(file, start, left, seeked)| async move {
        let Some(file) = file.filter(|_| left > 0) else { return Ok(None) };
        let want = left.min(CHUNK as u64) as usize;
        let (file, buf) = tokio::task::spawn_blocking(move || -> std::io::Result<(std::fs::File, Vec<u8>)> {
            use std::io::{Read, Seek};
            let mut file = file;
            if !seeked && start > 0 {
                file.seek(std::io::SeekFrom::Start(start))?;
            }
            let mut buf = Vec::with_capacity(want);
            (&mut file).take(want as u64).read_to_end(&mut buf)?;
            Ok((file, buf))
        })
        .await
        .map_err(std::io::Error::other)??;
        if buf.len() < want {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "blob shorter than expected"));
        }
        crate::metrics::bytes_served(kind, want as u64);
        Ok(Some((Bytes::from(buf), (Some(file), start, left - want as u64, true))))
    })
}

/// Where the bytes come from: a local file (read on blocking threads) or an S3 object (each
/// range one ranged GET, streamed through as the bucket sends it).
enum Source {
    File(std::fs::File),
    S3(updraft_store::BlobReader),
}

impl Source {
    fn range(&self, start: u64, n: u64, kind: &'static str) -> stream::BoxStream<'static, std::io::Result<Bytes>> {
        match self {
            Source::File(f) => match f.try_clone() {
                // Each range duplicates the descriptor (cheap), so ranges stream in turn.
                Ok(f) => read_stream(f, start, n, kind).boxed(),
                Err(e) => stream::once(async move { Err(e) }).boxed(),
            },
            Source::S3(o) => match o.s3_range(start, n) {
                Some(s) => s
                    .inspect(move |c| {
                        if let Ok(c) = c {
                            crate::metrics::bytes_served(kind, c.len() as u64);
                        }
                    })
                    .boxed(),
                None => stream::once(async { Err(std::io::Error::other("not an S3 blob")) }).boxed(),
            },
        }
    }
}

/// Builds the response for a stored blob whose identity (and ETag) is `sha256`. With
/// `redirect_secs` above 0 and a blob in S3, the answer is a `307` to a presigned URL valid that
/// long (the client repeats its `Range` there), cacheable for half of it.
pub async fn serve(
    blob: updraft_store::BlobReader,
    len: u64,
    sha256: &str,
    content_type: &'static str,
    headers: &HeaderMap,
    kind: &'static str,
    redirect_secs: u64,
) -> Response {
    let etag = format!("\"{sha256}\"");
    let cache = HeaderValue::from_static("public, max-age=31536000, immutable");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag), (header::CACHE_CONTROL, cache.to_str().unwrap_or_default().to_owned())])
            .into_response();
    }
    if redirect_secs > 0 {
        match blob.presigned_get(std::time::Duration::from_secs(redirect_secs)).await {
            Some(Ok(url)) => {
                crate::metrics::blob_redirect(kind);
                return (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, url), (header::CACHE_CONTROL, format!("public, max-age={}", redirect_secs / 2))],
                )
                    .into_response();
            }
            Some(Err(e)) => tracing::warn!(error = %e, "presigning a blob URL failed; streaming it instead"),
            None => {}
        }
    }
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    // If-Range with a different validator: serve the whole file.
    let if_range_ok = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()).is_none_or(|v| v.trim() == etag);
    let ranges = match range.filter(|_| if_range_ok).map(|r| parse_range(r, len)) {
        None | Some(Ok(None)) => None,
        Some(Ok(Some(r))) => Some(r),
        Some(Err(())) => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{len}"))],
                crate::error::ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "range_not_satisfiable",
                    "the requested range is outside the file",
                ),
            )
                .into_response();
        }
    };
    let file = match blob {
        updraft_store::BlobReader::File(f) => Source::File(f.into_std().await),
        s3 => Source::S3(s3),
    };
    let builder =
        Response::builder().header(header::ETAG, &etag).header(header::CACHE_CONTROL, cache).header(header::ACCEPT_RANGES, "bytes");
    match ranges.as_deref() {
        None => builder
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, len)
            .body(Body::from_stream(file.range(0, len, kind)))
            .unwrap_or_else(|e| crate::error::ApiError::internal(e).into_response()),
        Some([(start, end)]) => builder
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}"))
            .header(header::CONTENT_LENGTH, end - start + 1)
            .body(Body::from_stream(file.range(*start, end - start + 1, kind)))
            .unwrap_or_else(|e| crate::error::ApiError::internal(e).into_response()),
        Some(many) => {
            let boundary = updraft_store::random_hex(12);
            let mut parts = Vec::new();
            let mut total = 0u64;
            for (start, end) in many {
                let head = Bytes::from(format!(
                    "\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {start}-{end}/{len}\r\n\r\n"
                ));
                total += head.len() as u64 + (end - start + 1);
                parts.push((head, *start, end - start + 1));
            }
            let tail = Bytes::from(format!("\r\n--{boundary}--\r\n"));
            total += tail.len() as u64;
            let body = stream::iter(parts)
                .map(move |(head, start, n)| stream::once(async move { Ok(head) }).chain(file.range(start, n, kind)).boxed())
                .flatten()
                .chain(stream::once(async move { Ok(tail) }));
            builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_TYPE, format!("multipart/byteranges; boundary={boundary}"))
                .header(header::CONTENT_LENGTH, total)
                .body(Body::from_stream(body))
                .unwrap_or_else(|e| crate::error::ApiError::internal(e).into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        let check = |h: &str, want: Result<Option<Vec<(u64, u64)>>, ()>| assert_eq!(parse_range(h, 100), want, "{h}");
        check("bytes=0-9", Ok(Some(vec![(0, 9)])));
        check("bytes=90-", Ok(Some(vec![(90, 99)])));
        check("bytes=-10", Ok(Some(vec![(90, 99)])));
        check("bytes=95-200", Ok(Some(vec![(95, 99)])));
        check("bytes=0-1, 5-6", Ok(Some(vec![(0, 1), (5, 6)])));
        check("bytes=100-", Err(()));
        check("bytes=9-3", Ok(None));
        check("items=0-1", Ok(None));
        check("bytes=a-b", Err(()));
    }
}
