//! Small file-system helpers: crash-safe writes (temp file, fsync, rename, fsync directory)
//! and sibling paths.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::ClientError;

/// `path` with `suffix` appended to its file name (`a/b.bin` + `.part` → `a/b.bin.part`), so
/// helper files live in the same directory and `rename` between them is atomic.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name: OsString = path.file_name().map(OsString::from).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// Makes a rename or create in `path`'s directory durable.
pub(crate) fn sync_parent(path: &Path) -> Result<(), ClientError> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(ClientError::io(dir))?;
    }
    #[cfg(not(unix))]
    let _ = path; // Directories cannot be fsynced there; rename is still atomic.
    Ok(())
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new content.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    let tmp = with_suffix(path, &format!(".tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(ClientError::io(path)(e));
    }
    sync_parent(path)
}

/// Reads `path` if it exists; refuses files over `limit` bytes (a cache file that large was
/// not written by us).
pub(crate) fn read_if_exists(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, ClientError> {
    match fs::metadata(path) {
        Ok(m) if m.len() > limit => Ok(None),
        Ok(_) => fs::read(path).map(Some).map_err(ClientError::io(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ClientError::io(path)(e)),
    }
}

/// Removes `path`, treating "already gone" as success.
pub(crate) fn remove_if_exists(path: &Path) -> Result<(), ClientError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ClientError::io(path)(e)),
    }
}

/// Runs blocking file work off the async runtime's worker threads.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ClientError> + Send + 'static) -> Result<T, ClientError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ClientError::Io { path: PathBuf::new(), source: std::io::Error::other(format!("file task failed: {e}")) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_and_atomic_writes() {
        assert_eq!(with_suffix(Path::new("a/b.bin"), ".part"), Path::new("a/b.bin.part"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(read_if_exists(&p, 3).unwrap().unwrap(), b"two");
        assert_eq!(read_if_exists(&p, 2).unwrap(), None);
        remove_if_exists(&p).unwrap();
        remove_if_exists(&p).unwrap();
        assert_eq!(read_if_exists(&p, 10).unwrap(), None);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "no temp files left");
    }
}
