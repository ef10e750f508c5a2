//! The per-app updater key and what is computed with it once, at publish: each artifact's
//! SHA-512 (electron-updater), SHA-1 (Velopack), minisign signature (Tauri) and ed25519
//! signature (Sparkle's `edSignature`). Files are streamed, never loaded whole.
//!
//! The key is one ed25519 seed per app, kept like the TUF keys (`updraft_store::keys`: 0600,
//! encrypted with the key passphrase when one is set) in `DATA/keys/APP.updater/updater.key`:
//! beside the app's TUF key directory, which holds exactly the keys its root names. Minisign and Sparkle both use plain ed25519, so one key serves both; its public
//! half is served as a minisign public key and as Sparkle's `SUPublicEDKey`.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine;
use blake2::Blake2b512;
use ed25519_dalek::{Signer as _, SigningKey};
use sha1::Sha1;
use sha2::{Digest, Sha512};
use updraft_store::keys;

use crate::repo::RepoError;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const CHUNK: usize = 512 * 1024;

/// An app's updater signing key.
pub struct UpdaterKey {
    signing: SigningKey,
    /// Minisign's key id: 8 bytes naming the key in signatures and the public key file.
    key_id: [u8; 8],
}

impl std::fmt::Debug for UpdaterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdaterKey").field("key_id", &hex::encode(self.key_id)).finish()
    }
}

fn cache() -> &'static Mutex<HashMap<PathBuf, Arc<UpdaterKey>>> {
    static KEYS: OnceLock<Mutex<HashMap<PathBuf, Arc<UpdaterKey>>>> = OnceLock::new();
    KEYS.get_or_init(Default::default)
}

impl UpdaterKey {
    fn from_seed(seed: [u8; 32]) -> UpdaterKey {
        let signing = SigningKey::from_bytes(&seed);
        let digest = sha2::Sha256::digest(signing.verifying_key().as_bytes());
        let mut key_id = [0u8; 8];
        key_id.copy_from_slice(&digest[..8]);
        UpdaterKey { signing, key_id }
    }

    /// Loads the key in `dir`, creating it on first use. Creation refuses to overwrite, so two
    /// racing first uses end with the one key that was written first.
    pub fn load_or_create(dir: &Path, passphrase: Option<&str>) -> Result<Arc<UpdaterKey>, RepoError> {
        let path = dir.join("updater.key");
        if let Some(k) = cache().lock().expect("updater keys").get(&path) {
            return Ok(k.clone());
        }
        if !path.exists() {
            keys::create_private_dir(dir)?;
            let mut seed = [0u8; 32];
            getrandom::getrandom(&mut seed).map_err(|e| RepoError::Invalid(format!("the operating system's random source failed: {e}")))?;
            let res = keys::write_key(&path, &seed, passphrase);
            seed.fill(0);
            std::hint::black_box(&seed);
            if let Err(e) = res {
                if !path.exists() {
                    return Err(e.into());
                }
            }
        }
        let key = Arc::new(UpdaterKey::from_seed(keys::read_key(&path, passphrase)?));
        cache().lock().expect("updater keys").insert(path, key.clone());
        Ok(key)
    }

    /// The minisign public key file (`minisign.pub`).
    pub fn minisign_public_key_file(&self) -> String {
        let mut bin = Vec::with_capacity(42);
        bin.extend_from_slice(b"Ed");
        bin.extend_from_slice(&self.key_id);
        bin.extend_from_slice(self.signing.verifying_key().as_bytes());
        format!("untrusted comment: minisign public key {}\n{}\n", self.key_id_hex(), B64.encode(bin))
    }

    /// The raw ed25519 public key, base64 (Sparkle's `SUPublicEDKey`).
    pub fn ed25519_public_base64(&self) -> String {
        B64.encode(self.signing.verifying_key().as_bytes())
    }

    fn key_id_hex(&self) -> String {
        format!("{:016X}", u64::from_le_bytes(self.key_id))
    }

    /// A minisign signature file for a file whose BLAKE2b-512 is `prehash` (algorithm `ED`):
    /// the signature over the hash, a trusted comment, and the global signature over both.
    pub fn minisign_signature_file(&self, prehash: &[u8], trusted_comment: &str) -> String {
        let sig = self.signing.sign(prehash).to_bytes();
        let mut bin = Vec::with_capacity(74);
        bin.extend_from_slice(b"ED");
        bin.extend_from_slice(&self.key_id);
        bin.extend_from_slice(&sig);
        let mut global = Vec::with_capacity(64 + trusted_comment.len());
        global.extend_from_slice(&sig);
        global.extend_from_slice(trusted_comment.as_bytes());
        let global_sig = self.signing.sign(&global).to_bytes();
        format!(
            "untrusted comment: signature from updraft secret key {}\n{}\ntrusted comment: {trusted_comment}\n{}\n",
            self.key_id_hex(),
            B64.encode(bin),
            B64.encode(global_sig)
        )
    }
}

/// What one artifact gets at publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactSigs {
    pub sha512_base64: String,
    pub sha1_hex: String,
    /// The minisign `.sig` file, base64 (Tauri's `signature` field).
    pub minisign_base64: String,
    /// Ed25519 over the whole file, base64.
    pub ed25519_base64: String,
}

/// Opens the file to sign, from its start; called once per pass.
pub type Open<'a> = &'a dyn Fn() -> std::io::Result<Box<dyn Read>>;

fn stream(open: Open<'_>, mut each: impl FnMut(&[u8])) -> std::io::Result<()> {
    let mut f = open()?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        each(&buf[..n]);
    }
}

/// Streams the file three times: once for the digests, twice for the pure ed25519 signature
/// (ed25519 hashes the message twice; `raw_sign_byupdate` lets each pass stream). Blocking:
/// run it on a blocking thread.
pub fn sign_file(key: &UpdaterKey, open: Open<'_>, trusted_comment: &str) -> std::io::Result<ArtifactSigs> {
    let (mut s512, mut s1, mut b2) = (Sha512::new(), Sha1::new(), Blake2b512::new());
    stream(open, |chunk| {
        s512.update(chunk);
        s1.update(chunk);
        b2.update(chunk);
    })?;
    let minisign = key.minisign_signature_file(&b2.finalize(), trusted_comment);
    let esk = ed25519_dalek::hazmat::ExpandedSecretKey::from(key.signing.as_bytes());
    let failed = Mutex::new(None);
    let ed = ed25519_dalek::hazmat::raw_sign_byupdate::<Sha512, _>(
        &esk,
        |h| {
            stream(open, |chunk| h.update(chunk)).map_err(|e| {
                *failed.lock().expect("sign error") = Some(e);
                ed25519_dalek::SignatureError::new()
            })
        },
        &key.signing.verifying_key(),
    );
    let ed = match ed {
        Ok(sig) => sig,
        Err(_) => {
            return Err(failed.lock().expect("sign error").take().unwrap_or_else(|| std::io::Error::other("ed25519 signing failed")));
        }
    };
    Ok(ArtifactSigs {
        sha512_base64: B64.encode(s512.finalize()),
        sha1_hex: hex::encode(s1.finalize()),
        minisign_base64: B64.encode(minisign),
        ed25519_base64: B64.encode(ed.to_bytes()),
    })
}

/// The trusted comment of an artifact's minisign signature: when, which file, which version.
pub fn trusted_comment(filename: &str, version: &str) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    format!("timestamp:{now}\tfile:{filename}\tversion:{version}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Verifier;

    #[test]
    fn streamed_signatures_match_one_shot_ones() {
        let dir = tempfile::tempdir().unwrap();
        let key = UpdaterKey::load_or_create(&dir.path().join("k"), None).unwrap();
        let again = UpdaterKey::load_or_create(&dir.path().join("k"), None).unwrap();
        assert_eq!(key.minisign_public_key_file(), again.minisign_public_key_file());
        // More than one read chunk, not a multiple of it.
        let data: Vec<u8> = (0..(CHUNK * 2 + 12345)).map(|i| (i * 31 % 251) as u8).collect();
        let file = dir.path().join("a.bin");
        std::fs::write(&file, &data).unwrap();
        let open = || -> std::io::Result<Box<dyn Read>> { Ok(Box::new(std::fs::File::open(&file)?)) };
        let sigs = sign_file(&key, &open, "file:a.bin\tversion:1.0.0").unwrap();
        assert_eq!(sigs.sha512_base64, B64.encode(Sha512::digest(&data)));
        assert_eq!(sigs.sha1_hex, hex::encode(Sha1::digest(&data)));
        let ed = ed25519_dalek::Signature::from_slice(&B64.decode(&sigs.ed25519_base64).unwrap()).unwrap();
        key.signing.verifying_key().verify(&data, &ed).expect("pure ed25519 over the whole file");
        assert!(key.signing.verifying_key().verify(&data[1..], &ed).is_err());
        let sig_file = String::from_utf8(B64.decode(&sigs.minisign_base64).unwrap()).unwrap();
        assert!(sig_file.contains("trusted comment: file:a.bin\tversion:1.0.0\n"), "{sig_file}");
    }
}
