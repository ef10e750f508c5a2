//! The TUF metadata model (spec 1.0.x) and everything pure about it: canonical JSON, keys and
//! signing, building a repository's metadata, verifying it, and the client's trust state
//! machine. No IO, clock or randomness: callers pass `now` and key seeds.
//!
//! ```
//! use updraft_core::tuf::{self, Ed25519Signer, RootKeys, Signer, Thresholds};
//! use time::macros::datetime;
//!
//! let key = Ed25519Signer::from_seed([7; 32]);
//! let pk = key.public_key();
//! let keys = RootKeys { root: vec![pk.clone()], targets: vec![pk.clone()], snapshot: vec![pk.clone()], timestamp: vec![pk] };
//! let root = tuf::new_root(&keys, Thresholds::default(), 1, datetime!(2040-01-01 0:00 UTC)).unwrap();
//! let signed = tuf::sign(root, &[&key]).unwrap();
//! let wire = tuf::to_wire(&signed).unwrap();             // what the server stores and serves
//! let trusted = tuf::TrustedSet::new(&wire).unwrap();     // what a client starts from
//! assert_eq!(trusted.root().version, 1);
//! ```

mod cjson;
mod custom;
mod error;
mod keys;
mod metadata;
mod repo;
mod trusted;
mod verify;

pub use cjson::canonical_json;
pub use custom::{consistent_target_name, RolloutCustom, TargetCustom, TargetPath};
pub use error::{RoleName, TufError};
pub use keys::{Ed25519Signer, Key, KeyId, KeyVal, Signature, Signer, ED25519};
pub use metadata::{
    expires_format, metadata_file_name, Hashes, MetaFile, Metadata, RoleKeys, Roles, Root, Signed, Snapshot, TargetFile, Targets,
    Timestamp, SNAPSHOT_META, SPEC_VERSION, TARGETS_META,
};
pub use repo::{add_signature, new_root, sign, snapshot_for, timestamp_for, to_wire, RootKeys, Thresholds};
pub use trusted::{TimestampUpdate, TrustedSet};
pub use verify::{check_expiry, check_length_and_hash, parse_verified, sha256_hex, verify_role};

#[cfg(test)]
mod tests;
