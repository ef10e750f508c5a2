//! `TufError`: every reason TUF metadata can be refused or fail to build, with stable codes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The four top-level TUF roles. Errors name the role they concern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    Root,
    Targets,
    Snapshot,
    Timestamp,
}

impl RoleName {
    pub const ALL: [RoleName; 4] = [RoleName::Root, RoleName::Targets, RoleName::Snapshot, RoleName::Timestamp];

    pub fn as_str(self) -> &'static str {
        match self {
            RoleName::Root => "root",
            RoleName::Targets => "targets",
            RoleName::Snapshot => "snapshot",
            RoleName::Timestamp => "timestamp",
        }
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why TUF metadata was refused, or could not be built or signed.
///
/// Security refusals (signatures, thresholds, versions, expiry, hashes, sizes) and plain
/// malformed input are kept apart so callers can report them differently; [`TufError::code`]
/// gives a stable snake_case name for logs, exit codes and JSON errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TufError {
    /// A value could not be written as canonical JSON (e.g. it holds a float).
    #[error("cannot encode canonical JSON: {reason}")]
    CanonicalJson { reason: String },

    /// The document is not valid JSON or does not have the shape the spec requires.
    #[error("malformed {role} metadata: {reason}")]
    MalformedMetadata { role: RoleName, reason: String },

    /// The document's `_type` is not the role we asked for (e.g. a snapshot served as timestamp).
    #[error("expected {expected} metadata but _type is {found:?}")]
    WrongType { expected: RoleName, found: String },

    /// `spec_version` has a major version other than 1.
    #[error("{role} metadata has unsupported spec_version {found:?} (need 1.x)")]
    UnsupportedSpecVersion { role: RoleName, found: String },

    /// A signature by a trusted key did not verify, and the threshold was not met without it.
    #[error("bad signature by key {keyid} on {role} metadata")]
    BadSignature { role: RoleName, keyid: String },

    /// Too few distinct trusted keys signed.
    #[error("{role} metadata is signed by {valid} trusted key(s), {threshold} required")]
    ThresholdNotMet { role: RoleName, valid: u32, threshold: u32 },

    /// A role is defined with threshold 0, or a threshold larger than its keys can meet.
    #[error("invalid threshold {threshold} for {role} role with {keys} key(s)")]
    InvalidThreshold { role: RoleName, threshold: u32, keys: usize },

    /// Metadata is past its `expires` time (spec: freeze attack).
    #[error("{role} metadata expired at {expires}")]
    ExpiredMetadata { role: RoleName, expires: String },

    /// A version went down compared with what we trusted before (spec: rollback attack).
    #[error("rollback attack: {role} version {new} is lower than trusted version {trusted}")]
    RollbackAttack { role: RoleName, trusted: u64, new: u64 },

    /// A version is not the one the referring metadata (or the root chain) says it must be.
    #[error("{role} metadata version {found} does not match expected version {expected}")]
    VersionMismatch { role: RoleName, expected: u64, found: u64 },

    /// Bytes do not hash to the value signed metadata gives for them.
    #[error("hash mismatch for {what}: expected sha256 {expected}, got {found}")]
    HashMismatch { what: String, expected: String, found: String },

    /// Bytes are not the length signed metadata gives for them.
    #[error("length mismatch for {what}: expected {expected} bytes, got {found}")]
    LengthMismatch { what: String, expected: u64, found: u64 },

    /// A metadata file is larger than the limit for its role (spec: endless data attack).
    #[error("{role} metadata exceeds the limit of {limit} bytes")]
    MetadataTooLarge { role: RoleName, limit: u64 },

    /// Referring metadata lacks the entry for a file (e.g. timestamp without `snapshot.json`).
    #[error("{role} metadata has no entry for {name:?}")]
    MissingMeta { role: RoleName, name: String },

    /// A public key is not a usable ed25519 key.
    #[error("invalid key: {reason}")]
    InvalidKey { reason: String },

    /// A [`Signer`](super::Signer) could not sign (e.g. an HSM refused).
    #[error("signing failed: {reason}")]
    Signing { reason: String },

    /// A target path is not `{version}/{platform}/{filename}` or names unsafe components.
    #[error("invalid target path {path:?}: {reason}")]
    InvalidTargetPath { path: String, reason: String },

    /// A target's `custom` is not Updraft's [`TargetCustom`](super::TargetCustom).
    #[error("invalid custom data for target {path:?}: {reason}")]
    InvalidTargetCustom { path: String, reason: String },

    /// The trusted set was asked to update roles in an order the spec forbids
    /// (e.g. root after timestamp). A caller bug, never outside input.
    #[error("TUF update out of order: {reason}")]
    OutOfOrder { reason: &'static str },
}

impl TufError {
    /// A stable snake_case name for this kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            TufError::CanonicalJson { .. } => "canonical_json",
            TufError::MalformedMetadata { .. } => "malformed_metadata",
            TufError::WrongType { .. } => "wrong_type",
            TufError::UnsupportedSpecVersion { .. } => "unsupported_spec_version",
            TufError::BadSignature { .. } => "bad_signature",
            TufError::ThresholdNotMet { .. } => "threshold_not_met",
            TufError::InvalidThreshold { .. } => "invalid_threshold",
            TufError::ExpiredMetadata { .. } => "expired_metadata",
            TufError::RollbackAttack { .. } => "rollback_attack",
            TufError::VersionMismatch { .. } => "version_mismatch",
            TufError::HashMismatch { .. } => "hash_mismatch",
            TufError::LengthMismatch { .. } => "length_mismatch",
            TufError::MetadataTooLarge { .. } => "metadata_too_large",
            TufError::MissingMeta { .. } => "missing_meta",
            TufError::InvalidKey { .. } => "invalid_key",
            TufError::Signing { .. } => "signing_failed",
            TufError::InvalidTargetPath { .. } => "invalid_target_path",
            TufError::InvalidTargetCustom { .. } => "invalid_target_custom",
            TufError::OutOfOrder { .. } => "out_of_order",
        }
    }
}
