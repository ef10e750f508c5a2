//! An app's signing keys as the server holds them: a directory `DATA/keys/APP/` of key
//! references, each named by the key id it signs as. `{keyid}.key` is an ed25519 key file
//! (0600, encrypted when a passphrase is set); `{keyid}.pkcs11` names a key in an HSM by an
//! RFC 7512 `pkcs11:` URI. Files from before key ids (`root.key`, `targets.key`, …) are
//! indexed by the id of the key they hold.
//!
//! The app's newest root metadata, not this directory, decides which key signs for which role:
//! a key file the root does not list is never used. That is what makes a rotation
//! all-or-nothing: new key files are written before the root that lists them is committed,
//! and a crash in between leaves unused files and the old state.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use updraft_core::tuf::{Ed25519Signer, KeyId, RoleName, Root, Signer};
use updraft_store::keys;

use crate::repo::RepoError;

/// Where a key's private half lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A key file on this server.
    File,
    /// A key in an HSM, reached over PKCS#11.
    Pkcs11,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::File => "file",
            Backend::Pkcs11 => "pkcs11",
        }
    }
}

/// One key the server can sign with.
#[derive(Clone)]
pub struct HeldKey {
    pub signer: Arc<dyn Signer>,
    pub backend: Backend,
    pub path: PathBuf,
    /// For HSM keys, the URI without its PIN (for `keys list`).
    pub label: Option<String>,
}

impl fmt::Debug for HeldKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldKey").field("key_id", &self.signer.public_key().key_id()).field("backend", &self.backend).finish()
    }
}

/// The keys of one app, by key id.
#[derive(Debug, Default, Clone)]
pub struct KeyStore {
    keys: BTreeMap<KeyId, HeldKey>,
}

/// How a server reaches HSMs: the module to load when a URI names none, and the PIN when a
/// URI carries no `pin-source`/`pin-value`.
#[derive(Clone, Default)]
pub struct Pkcs11Defaults {
    pub module: Option<PathBuf>,
    pub pin: Option<String>,
}

impl fmt::Debug for Pkcs11Defaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Defaults").field("module", &self.module).field("pin", &self.pin.as_ref().map(|_| "<set>")).finish()
    }
}

impl KeyStore {
    /// Loads every key reference in `dir`. A damaged file, a wrong passphrase or an HSM that
    /// refuses is an error naming the file, never a silently missing key.
    pub fn load(dir: &Path, passphrase: Option<&str>, pkcs11: &Pkcs11Defaults) -> Result<KeyStore, RepoError> {
        let mut store = KeyStore::default();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(store),
            Err(source) => return Err(RepoError::Io { path: dir.to_owned(), source }),
        };
        let mut paths: Vec<PathBuf> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| RepoError::Io { path: dir.to_owned(), source })?;
            paths.push(entry.path());
        }
        paths.sort();
        for path in paths {
            let held = match path.extension().and_then(|e| e.to_str()) {
                Some("key") => {
                    let seed = keys::read_key(&path, passphrase)?;
                    HeldKey { signer: Arc::new(Ed25519Signer::from_seed(seed)), backend: Backend::File, path, label: None }
                }
                Some("pkcs11") => {
                    let uri = read_pkcs11_ref(&path)?;
                    let signer = updraft_hsm::Pkcs11Signer::open(&uri, &hsm_defaults(pkcs11))
                        .map_err(|e| RepoError::Hsm { path: path.clone(), source: e })?;
                    let label = Some(signer.uri());
                    HeldKey { signer: Arc::new(signer), backend: Backend::Pkcs11, path, label }
                }
                _ => continue,
            };
            let id = held.signer.public_key().key_id();
            store.keys.entry(id).or_insert(held);
        }
        Ok(store)
    }

    pub fn get(&self, id: &KeyId) -> Option<&HeldKey> {
        self.keys.get(id)
    }

    /// The held keys that `root` lists for `role`, in the root's order.
    pub fn signers_for(&self, root: &Root, role: RoleName) -> Vec<Arc<dyn Signer>> {
        root.roles.get(role).keyids.iter().filter_map(|id| self.keys.get(id)).map(|k| k.signer.clone()).collect()
    }

    /// The signers for `role`, or an error when fewer than its threshold are held here.
    pub fn threshold_signers(&self, root: &Root, role: RoleName) -> Result<Vec<Arc<dyn Signer>>, RepoError> {
        let signers = self.signers_for(root, role);
        let threshold = root.roles.get(role).threshold;
        if (signers.len() as u32) < threshold {
            return Err(RepoError::KeysOffline { role, held: signers.len() as u32, threshold });
        }
        Ok(signers)
    }

    /// Whether this server holds a threshold of `role`'s keys.
    pub fn can_sign(&self, root: &Root, role: RoleName) -> bool {
        self.signers_for(root, role).len() as u32 >= root.roles.get(role).threshold
    }

    /// Key files and references that `root` no longer lists (retired by a rotation).
    pub fn unused_by(&self, root: &Root) -> Vec<(KeyId, PathBuf)> {
        let used = root.all_key_ids();
        self.keys.iter().filter(|(id, _)| !used.contains(*id)).map(|(id, k)| (id.clone(), k.path.clone())).collect()
    }
}

pub(crate) fn hsm_defaults(d: &Pkcs11Defaults) -> updraft_hsm::Defaults {
    updraft_hsm::Defaults { module: d.module.clone(), pin: d.pin.clone() }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Pkcs11Ref {
    updraft_key_ref: u32,
    uri: String,
}

fn read_pkcs11_ref(path: &Path) -> Result<String, RepoError> {
    let raw = std::fs::read(path).map_err(|source| RepoError::Io { path: path.to_owned(), source })?;
    let r: Pkcs11Ref = serde_json::from_slice(&raw)
        .map_err(|_| RepoError::Invalid(format!("{} is not an Updraft PKCS#11 key reference", path.display())))?;
    Ok(r.uri)
}

/// Writes `DIR/{keyid}.pkcs11` naming an HSM key (0600: a URI may carry a PIN).
pub fn write_pkcs11_ref(dir: &Path, id: &KeyId, uri: &str) -> Result<PathBuf, RepoError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    keys::create_private_dir(dir)?;
    let path = dir.join(format!("{id}.pkcs11"));
    let body = serde_json::to_vec_pretty(&Pkcs11Ref { updraft_key_ref: 1, uri: uri.to_owned() })
        .map_err(|e| RepoError::Invalid(format!("cannot encode a key reference: {e}")))?;
    let tmp = path.with_extension("pkcs11.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|source| RepoError::Io { path: tmp.clone(), source })?;
    f.write_all(&body).and_then(|_| f.sync_all()).map_err(|source| RepoError::Io { path: tmp.clone(), source })?;
    std::fs::rename(&tmp, &path).map_err(|source| RepoError::Io { path: path.clone(), source })?;
    Ok(path)
}

/// Generates a new ed25519 key file `DIR/{keyid}.key`; returns its signer.
pub fn generate_file_key(dir: &Path, passphrase: Option<&str>) -> Result<Ed25519Signer, RepoError> {
    keys::create_private_dir(dir)?;
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| RepoError::Invalid(format!("the operating system's random source failed: {e}")))?;
    let signer = Ed25519Signer::from_seed(seed);
    let path = dir.join(format!("{}.key", signer.key_id()));
    let res = keys::write_key(&path, &seed, passphrase);
    seed.fill(0);
    std::hint::black_box(&seed);
    res?;
    Ok(signer)
}
