//! Signing-key files: one ed25519 seed per file, mode 0600 in a 0700 directory, encrypted with
//! a passphrase (Argon2id → ChaCha20-Poly1305) when one is configured. The seed never leaves
//! this module except into a signer; nothing here logs or formats key material.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use serde::{Deserialize, Serialize};

use crate::StoreError;

#[derive(Serialize, Deserialize)]
struct KeyFile {
    updraft_key: u32,
    keytype: String,
    /// "none" or "argon2id-chacha20poly1305".
    encryption: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    salt: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    nonce: String,
    /// The seed (hex) when unencrypted, the ciphertext (hex) when encrypted.
    material: String,
}

fn key_err(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::Key { path: path.to_owned(), reason: reason.into() }
}

fn derive(passphrase: &str, salt: &[u8], path: &Path) -> Result<[u8; 32], StoreError> {
    let mut key = [0u8; 32];
    argon2::Argon2::default()
        .hash_password_into(passphrase.as_bytes(), salt, &mut key)
        .map_err(|_| key_err(path, "key derivation failed"))?;
    Ok(key)
}

/// Creates a directory (and parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(StoreError::io(dir))
}

/// Writes a new key file; refuses to overwrite an existing one.
pub fn write_key(path: &Path, seed: &[u8; 32], passphrase: Option<&str>) -> Result<(), StoreError> {
    let file = match passphrase {
        None => KeyFile {
            updraft_key: 1,
            keytype: "ed25519".into(),
            encryption: "none".into(),
            salt: String::new(),
            nonce: String::new(),
            material: hex::encode(seed),
        },
        Some(pass) => {
            let mut salt = [0u8; 16];
            let mut nonce = [0u8; 12];
            getrandom::getrandom(&mut salt).and_then(|_| getrandom::getrandom(&mut nonce)).map_err(|_| key_err(path, "no randomness"))?;
            let key = derive(pass, &salt, path)?;
            let cipher = ChaCha20Poly1305::new((&key).into());
            let ct = cipher.encrypt(Nonce::from_slice(&nonce), seed.as_slice()).map_err(|_| key_err(path, "encryption failed"))?;
            KeyFile {
                updraft_key: 1,
                keytype: "ed25519".into(),
                encryption: "argon2id-chacha20poly1305".into(),
                salt: hex::encode(salt),
                nonce: hex::encode(nonce),
                material: hex::encode(ct),
            }
        }
    };
    let json = serde_json::to_vec_pretty(&file).map_err(|_| key_err(path, "encoding failed"))?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(StoreError::io(&tmp))?;
    f.write_all(&json).and_then(|_| f.sync_all()).map_err(StoreError::io(&tmp))?;
    if path.exists() {
        let _ = std::fs::remove_file(&tmp);
        return Err(key_err(path, "a key file already exists there"));
    }
    std::fs::rename(&tmp, path).map_err(StoreError::io(path))?;
    if let Some(dir) = path.parent() {
        crate::blobs::sync_dir(dir)?;
    }
    Ok(())
}

/// Reads a key file's seed. An encrypted file needs the passphrase it was written with.
pub fn read_key(path: &Path, passphrase: Option<&str>) -> Result<[u8; 32], StoreError> {
    let raw = std::fs::read(path).map_err(StoreError::io(path))?;
    let file: KeyFile = serde_json::from_slice(&raw).map_err(|_| key_err(path, "not an Updraft key file"))?;
    if file.updraft_key != 1 || file.keytype != "ed25519" {
        return Err(key_err(path, "unsupported key file version or key type"));
    }
    let bytes = |s: &str| hex::decode(s).map_err(|_| key_err(path, "malformed key file"));
    let seed = match file.encryption.as_str() {
        "none" => bytes(&file.material)?,
        "argon2id-chacha20poly1305" => {
            let pass = passphrase.ok_or_else(|| key_err(path, "the key file is encrypted: set UPDRAFT_KEY_PASSPHRASE"))?;
            let key = derive(pass, &bytes(&file.salt)?, path)?;
            let nonce = bytes(&file.nonce)?;
            if nonce.len() != 12 {
                return Err(key_err(path, "malformed key file"));
            }
            ChaCha20Poly1305::new((&key).into())
                .decrypt(Nonce::from_slice(&nonce), bytes(&file.material)?.as_slice())
                .map_err(|_| key_err(path, "wrong passphrase or corrupted key file"))?
        }
        _ => return Err(key_err(path, "unknown key encryption")),
    };
    seed.try_into().map_err(|_| key_err(path, "malformed key file"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_files_round_trip_private_and_encrypted() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        create_private_dir(&keys).unwrap();
        assert_eq!(std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777, 0o700);
        let seed = [7u8; 32];
        let plain = keys.join("a.key");
        write_key(&plain, &seed, None).unwrap();
        assert_eq!(std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(read_key(&plain, None).unwrap(), seed);
        assert!(write_key(&plain, &seed, None).is_err(), "never overwrites a key");

        let enc = keys.join("b.key");
        write_key(&enc, &seed, Some("correct horse")).unwrap();
        let text = std::fs::read_to_string(&enc).unwrap();
        assert!(!text.contains(&hex::encode(seed)), "seed must not be stored in clear");
        assert_eq!(read_key(&enc, Some("correct horse")).unwrap(), seed);
        assert!(read_key(&enc, Some("wrong")).is_err());
        assert!(read_key(&enc, None).is_err());
    }
}
