//! Checking metadata: signatures against a role's keys and threshold, expiry, and the
//! length/hash of files against the metadata that names them.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::metadata::expires_format;
use super::{canonical_json, Hashes, Key, KeyId, Metadata, RoleKeys, RoleName, Signature, TufError};

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The role named by a document's `signed._type`, used to give errors context.
fn role_of(doc: &Value) -> Option<RoleName> {
    serde_json::from_value(doc.get("signed")?.get("_type")?.clone()).ok()
}

/// Checks that `doc` (a whole `{"signatures": [...], "signed": {...}}` document as received)
/// is signed by at least `role.threshold` distinct keys of `role`.
///
/// The message is canonical JSON of the received `signed` value, so fields we do not model
/// are still covered. Signatures by keys outside the role are ignored; several signatures by
/// one key (even listed under two key ids) count once; `threshold` must be at least 1.
pub fn verify_role(doc: &Value, role: &RoleKeys, keys: &BTreeMap<KeyId, Key>) -> Result<(), TufError> {
    let name = role_of(doc).unwrap_or(RoleName::Root);
    verify_role_as(name, doc, role, keys)
}

pub(crate) fn verify_role_as(name: RoleName, doc: &Value, role: &RoleKeys, keys: &BTreeMap<KeyId, Key>) -> Result<(), TufError> {
    let malformed = |reason: &str| TufError::MalformedMetadata { role: name, reason: reason.into() };
    if role.threshold == 0 {
        return Err(TufError::InvalidThreshold { role: name, threshold: 0, keys: role.keyids.len() });
    }
    let signed = doc.get("signed").filter(|v| v.is_object()).ok_or_else(|| malformed("no \"signed\" object"))?;
    let signatures = doc.get("signatures").and_then(Value::as_array).ok_or_else(|| malformed("no \"signatures\" array"))?;
    let msg = canonical_json(signed)?;

    let trusted: BTreeSet<&KeyId> = role.keyids.iter().collect();
    let mut counted: BTreeSet<[u8; 32]> = BTreeSet::new();
    let mut first_bad: Option<&KeyId> = None;
    let mut parsed = Vec::with_capacity(signatures.len());
    for s in signatures {
        // An entry we cannot read is treated like a signature by an unknown key: ignored.
        if let Ok(sig) = Signature::deserialize(s) {
            parsed.push(sig);
        }
    }
    for sig in &parsed {
        if counted.len() >= role.threshold as usize {
            break; // Enough; don't spend CPU on the rest of an attacker-sized list.
        }
        let Some(key) = trusted.get(&sig.keyid).and_then(|id| keys.get(*id)) else { continue };
        let Some(identity) = key.identity() else { continue };
        if counted.contains(&identity) {
            continue;
        }
        if key.verify(&msg, &sig.sig) {
            counted.insert(identity);
        } else if first_bad.is_none() {
            first_bad = Some(&sig.keyid);
        }
    }
    let valid = counted.len() as u32;
    if valid >= role.threshold {
        return Ok(());
    }
    match first_bad {
        Some(keyid) => Err(TufError::BadSignature { role: name, keyid: keyid.to_string() }),
        None => Err(TufError::ThresholdNotMet { role: name, valid, threshold: role.threshold }),
    }
}

/// Refuses metadata whose `expires` is at or before `now` (spec: freeze attack).
pub fn check_expiry(role: RoleName, expires: OffsetDateTime, now: OffsetDateTime) -> Result<(), TufError> {
    if now >= expires {
        return Err(TufError::ExpiredMetadata { role, expires: expires_format::format(expires).unwrap_or_else(|_| expires.to_string()) });
    }
    Ok(())
}

/// Checks `bytes` against a length and SHA-256 that signed metadata gives for them.
pub fn check_length_and_hash(what: &str, bytes: &[u8], length: Option<u64>, hashes: Option<&Hashes>) -> Result<(), TufError> {
    if let Some(expected) = length {
        if bytes.len() as u64 != expected {
            return Err(TufError::LengthMismatch { what: what.into(), expected, found: bytes.len() as u64 });
        }
    }
    if let Some(h) = hashes {
        let found = sha256_hex(bytes);
        if !found.eq_ignore_ascii_case(&h.sha256) {
            return Err(TufError::HashMismatch { what: what.into(), expected: h.sha256.clone(), found });
        }
    }
    Ok(())
}

/// Parses received bytes as `{signatures, signed}` of role `T`: JSON, then `_type`.
/// Signatures are not checked here.
pub(crate) fn parse_document<T: Metadata>(bytes: &[u8]) -> Result<Value, TufError> {
    let role = T::ROLE;
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| TufError::MalformedMetadata { role, reason: format!("not JSON: {e}") })?;
    let found = doc.get("signed").and_then(|s| s.get("_type")).and_then(Value::as_str);
    match found {
        Some(t) if t == role.as_str() => Ok(doc),
        Some(t) => Err(TufError::WrongType { expected: role, found: t.chars().take(40).collect() }),
        None => Err(TufError::MalformedMetadata { role, reason: "no signed._type".into() }),
    }
}

/// Turns an already signature-checked document into `T`, checking `spec_version`.
pub(crate) fn typed<T: Metadata>(doc: &Value) -> Result<T, TufError> {
    let role = T::ROLE;
    let signed = doc.get("signed").cloned().unwrap_or(Value::Null);
    let t: T = serde_json::from_value(signed).map_err(|e| TufError::MalformedMetadata { role, reason: e.to_string() })?;
    if t.spec_version().split('.').next() != Some("1") {
        return Err(TufError::UnsupportedSpecVersion { role, found: t.spec_version().chars().take(40).collect() });
    }
    Ok(t)
}

/// Parses `bytes` as role `T` and checks its signatures against `role` keys.
/// Expiry and versions are the caller's business (they need context).
pub fn parse_verified<T: Metadata>(bytes: &[u8], role: &RoleKeys, keys: &BTreeMap<KeyId, Key>) -> Result<T, TufError> {
    let doc = parse_document::<T>(bytes)?;
    verify_role_as(T::ROLE, &doc, role, keys)?;
    typed(&doc)
}
