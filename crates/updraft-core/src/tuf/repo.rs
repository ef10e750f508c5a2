//! Building and signing metadata: the pure half of a TUF repository, which the server drives
//! (it owns storage, the clock and the keys).
//!
//! Wire format: the server serves `to_wire(&signed)` bytes (compact `serde_json`, always valid
//! JSON) and stores exactly those; snapshot and timestamp hash and measure those exact bytes.
//! Signatures cover canonical JSON of `signed` only, so the wire encoding is free to differ.

use std::collections::BTreeMap;

use serde::Serialize;
use time::OffsetDateTime;

use super::verify::sha256_hex;
use super::{
    canonical_json, Hashes, Key, KeyId, MetaFile, RoleKeys, RoleName, Roles, Root, Signature, Signed, Signer, Snapshot, Timestamp,
    TufError, TARGETS_META,
};

/// Signs canonical JSON of `signed` with each signer. A key appearing twice signs once
/// (the spec forbids repeated key ids in `signatures`).
pub fn sign<T: Serialize>(signed: T, signers: &[&dyn Signer]) -> Result<Signed<T>, TufError> {
    let msg = canonical_json(&signed)?;
    let mut signatures: Vec<Signature> = Vec::with_capacity(signers.len());
    for signer in signers {
        let keyid = signer.public_key().key_id();
        if signatures.iter().any(|s| s.keyid == keyid) {
            continue;
        }
        let sig = signer.sign(&msg)?;
        signatures.push(Signature { keyid, sig: hex::encode(sig) });
    }
    Ok(Signed { signatures, signed })
}

/// Adds `signer`'s signature to a received document (`{"signatures": [...], "signed": {...}}`)
/// without re-encoding `signed`: the signature covers canonical JSON of `signed` exactly as it
/// stands, unknown fields included. A signature by the same key id is replaced. This is what
/// an offline root ceremony does on a machine that holds one root key and nothing else.
pub fn add_signature(doc: &mut serde_json::Value, signer: &dyn Signer) -> Result<KeyId, TufError> {
    let role =
        doc.get("signed").and_then(|s| s.get("_type")).and_then(|t| serde_json::from_value(t.clone()).ok()).unwrap_or(RoleName::Root);
    let malformed = |reason: &str| TufError::MalformedMetadata { role, reason: reason.into() };
    let signed = doc.get("signed").filter(|v| v.is_object()).ok_or_else(|| malformed("no \"signed\" object"))?;
    let msg = canonical_json(signed)?;
    let keyid = signer.public_key().key_id();
    let sig = Signature { keyid: keyid.clone(), sig: hex::encode(signer.sign(&msg)?) };
    let sigs = match doc.get_mut("signatures") {
        Some(serde_json::Value::Array(a)) => a,
        _ => return Err(malformed("no \"signatures\" array")),
    };
    sigs.retain(|s| s.get("keyid").and_then(serde_json::Value::as_str) != Some(keyid.as_str()));
    sigs.push(serde_json::to_value(&sig).map_err(|e| TufError::CanonicalJson { reason: e.to_string() })?);
    Ok(keyid)
}

/// The bytes to store and serve for a signed document (compact JSON). Hashes and lengths in
/// snapshot and timestamp are computed over these bytes.
pub fn to_wire<T: Serialize>(signed: &Signed<T>) -> Result<Vec<u8>, TufError> {
    serde_json::to_vec(signed).map_err(|e| TufError::CanonicalJson { reason: e.to_string() })
}

/// The public keys of each top-level role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootKeys {
    pub root: Vec<Key>,
    pub targets: Vec<Key>,
    pub snapshot: Vec<Key>,
    pub timestamp: Vec<Key>,
}

/// How many distinct keys of each role must sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub root: u32,
    pub targets: u32,
    pub snapshot: u32,
    pub timestamp: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { root: 1, targets: 1, snapshot: 1, timestamp: 1 }
    }
}

/// A root document with consistent snapshots on. Each threshold must be at least 1 and at
/// most the number of distinct keys given for its role, so the root can actually be met.
pub fn new_root(keys: &RootKeys, thresholds: Thresholds, version: u64, expires: OffsetDateTime) -> Result<Root, TufError> {
    let mut all: BTreeMap<KeyId, Key> = BTreeMap::new();
    let mut role = |name: RoleName, role_keys: &[Key], threshold: u32| -> Result<RoleKeys, TufError> {
        let mut keyids: Vec<KeyId> = Vec::new();
        for k in role_keys {
            if k.identity().is_none() {
                return Err(TufError::InvalidKey { reason: format!("{name} key is not a valid ed25519 key") });
            }
            let id = k.key_id();
            if !keyids.contains(&id) {
                keyids.push(id.clone());
            }
            all.insert(id, k.clone());
        }
        if threshold == 0 || threshold as usize > keyids.len() {
            return Err(TufError::InvalidThreshold { role: name, threshold, keys: keyids.len() });
        }
        Ok(RoleKeys { keyids, threshold })
    };
    let roles = Roles {
        root: role(RoleName::Root, &keys.root, thresholds.root)?,
        targets: role(RoleName::Targets, &keys.targets, thresholds.targets)?,
        snapshot: role(RoleName::Snapshot, &keys.snapshot, thresholds.snapshot)?,
        timestamp: role(RoleName::Timestamp, &keys.timestamp, thresholds.timestamp)?,
    };
    Ok(Root::from_parts(true, version, expires, all, roles))
}

/// A snapshot naming the targets document whose served bytes are `targets_bytes`.
pub fn snapshot_for(targets_bytes: &[u8], targets_version: u64, version: u64, expires: OffsetDateTime) -> Snapshot {
    let meta = BTreeMap::from([(TARGETS_META.to_owned(), meta_file(targets_bytes, targets_version))]);
    Snapshot::new(version, expires, meta)
}

/// A timestamp naming the snapshot document whose served bytes are `snapshot_bytes`.
pub fn timestamp_for(snapshot_bytes: &[u8], snapshot_version: u64, version: u64, expires: OffsetDateTime) -> Timestamp {
    Timestamp::new(version, expires, meta_file(snapshot_bytes, snapshot_version))
}

fn meta_file(bytes: &[u8], version: u64) -> MetaFile {
    MetaFile { version, length: Some(bytes.len() as u64), hashes: Some(Hashes { sha256: sha256_hex(bytes) }) }
}
