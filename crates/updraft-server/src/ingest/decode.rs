//! Request bodies in gzip, deflate (zlib or raw) and brotli, each decoded with a hard cap on the
//! decompressed size: a decompression bomb stops at the cap and is refused, nothing is kept.

use std::io::Read;

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// More than the cap once decompressed.
    TooLarge { limit: usize },
    /// Not valid data for the declared encoding.
    Corrupt(&'static str),
    /// An encoding we do not speak.
    Unsupported(String),
}

fn read_capped(mut r: impl Read, cap: usize, name: &'static str) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    let mut limited = (&mut r).take(cap as u64 + 1);
    limited.read_to_end(&mut out).map_err(|_| DecodeError::Corrupt(name))?;
    if out.len() > cap {
        return Err(DecodeError::TooLarge { limit: cap });
    }
    Ok(out)
}

/// Decodes `body` by its `Content-Encoding` (absent or `identity`: as is, still capped).
pub fn decode(encoding: Option<&str>, body: &[u8], cap: usize) -> Result<Vec<u8>, DecodeError> {
    let enc = encoding.map(|e| e.trim().to_ascii_lowercase()).unwrap_or_default();
    match enc.as_str() {
        "" | "identity" => {
            if body.len() > cap {
                return Err(DecodeError::TooLarge { limit: cap });
            }
            Ok(body.to_vec())
        }
        "gzip" | "x-gzip" => read_capped(flate2::read::MultiGzDecoder::new(body), cap, "gzip"),
        "deflate" => {
            // HTTP's deflate is zlib-wrapped; some clients send raw deflate.
            match read_capped(flate2::read::ZlibDecoder::new(body), cap, "deflate") {
                Err(DecodeError::Corrupt(_)) => read_capped(flate2::read::DeflateDecoder::new(body), cap, "deflate"),
                other => other,
            }
        }
        "br" => read_capped(brotli_decompressor::Decompressor::new(body, 4096), cap, "brotli"),
        other => Err(DecodeError::Unsupported(other.chars().take(40).collect())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn round_trips_and_caps() {
        let data = b"hello envelope".repeat(10);
        assert_eq!(decode(Some("gzip"), &gzip(&data), 1000).unwrap(), data);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&data).unwrap();
        assert_eq!(decode(Some("deflate"), &z.finish().unwrap(), 1000).unwrap(), data);
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(&data).unwrap();
        assert_eq!(decode(Some("deflate"), &raw.finish().unwrap(), 1000).unwrap(), data);
        // A bomb: 64 MiB of zeros in ~64 KiB, refused at the cap without inflating it all.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 100_000);
        assert_eq!(decode(Some("gzip"), &bomb, 1 << 20), Err(DecodeError::TooLarge { limit: 1 << 20 }));
        assert_eq!(decode(Some("gzip"), b"not gzip", 100), Err(DecodeError::Corrupt("gzip")));
        assert_eq!(decode(Some("br"), b"\xff\xff\xff\xff", 100), Err(DecodeError::Corrupt("brotli")));
        assert_eq!(decode(Some("zstd"), b"", 100), Err(DecodeError::Unsupported("zstd".into())));
        assert_eq!(decode(None, b"abc", 2), Err(DecodeError::TooLarge { limit: 2 }));
    }
}
