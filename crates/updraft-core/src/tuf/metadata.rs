//! The metadata documents of the spec (root, targets, snapshot, timestamp) as serde types,
//! with the spec's exact field names.
//!
//! Parsing tolerates unknown fields (the spec lets metadata grow); signatures are never checked
//! against these structs re-serialised, only against the received JSON (see `verify`).

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Key, KeyId, RoleName, Signature, TufError};

/// The spec version Updraft writes. Clients accept any 1.x.
pub const SPEC_VERSION: &str = "1.0.31";

/// A signed document: `{"signatures": [...], "signed": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signed<T> {
    pub signatures: Vec<Signature>,
    pub signed: T,
}

/// What every top-level role's `signed` object has.
pub trait Metadata: Serialize + DeserializeOwned {
    const ROLE: RoleName;
    fn version(&self) -> u64;
    fn expires(&self) -> OffsetDateTime;
    fn spec_version(&self) -> &str;
}

/// `expires` as the spec writes it: `YYYY-MM-DDTHH:MM:SSZ`, UTC, no fractional seconds.
pub mod expires_format {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

    /// Formats `t` (converted to UTC, sub-second part dropped).
    pub fn format(t: OffsetDateTime) -> Result<String, time::error::Format> {
        t.to_offset(UtcOffset::UTC).format(FORMAT)
    }

    /// Parses the spec's form; other RFC 3339 spellings (fractions, offsets) written by other
    /// TUF implementations are accepted too.
    pub fn parse(s: &str) -> Result<OffsetDateTime, time::error::Parse> {
        match PrimitiveDateTime::parse(s, FORMAT) {
            Ok(t) => Ok(t.assume_utc()),
            Err(_) => OffsetDateTime::parse(s, &Rfc3339).map(|t| t.to_offset(UtcOffset::UTC)),
        }
    }

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*t).map_err(serde::ser::Error::custom)?)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(|e| serde::de::Error::custom(format!("invalid expires {s:?}: {e}")))
    }
}

/// Zero-sized `_type` fields: they serialise as the role's name and refuse any other value, so
/// a struct can never claim to be a different role than it is.
macro_rules! type_tag {
    ($name:ident, $s:literal) => {
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        struct $name;
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str($s)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                if s == $s {
                    Ok($name)
                } else {
                    Err(serde::de::Error::custom(format!("expected _type {:?}, found {s:?}", $s)))
                }
            }
        }
    };
}
type_tag!(RootTag, "root");
type_tag!(TargetsTag, "targets");
type_tag!(SnapshotTag, "snapshot");
type_tag!(TimestampTag, "timestamp");

/// Which keys may sign for a role and how many must.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleKeys {
    pub keyids: Vec<KeyId>,
    pub threshold: u32,
}

/// The four top-level roles' keys. Other entries a root may carry are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roles {
    pub root: RoleKeys,
    pub targets: RoleKeys,
    pub snapshot: RoleKeys,
    pub timestamp: RoleKeys,
}

impl Roles {
    pub fn get(&self, role: RoleName) -> &RoleKeys {
        match role {
            RoleName::Root => &self.root,
            RoleName::Targets => &self.targets,
            RoleName::Snapshot => &self.snapshot,
            RoleName::Timestamp => &self.timestamp,
        }
    }

    pub fn get_mut(&mut self, role: RoleName) -> &mut RoleKeys {
        match role {
            RoleName::Root => &mut self.root,
            RoleName::Targets => &mut self.targets,
            RoleName::Snapshot => &mut self.snapshot,
            RoleName::Timestamp => &mut self.timestamp,
        }
    }
}

/// `root.json`: the keys and thresholds of every top-level role. Built with
/// [`super::new_root`]; fields are public so a later version can be edited from an earlier one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Root {
    #[serde(rename = "_type")]
    type_: RootTag,
    pub spec_version: String,
    pub consistent_snapshot: bool,
    pub version: u64,
    #[serde(with = "expires_format")]
    pub expires: OffsetDateTime,
    pub keys: BTreeMap<KeyId, Key>,
    pub roles: Roles,
}

impl Root {
    pub(crate) fn from_parts(
        consistent_snapshot: bool,
        version: u64,
        expires: OffsetDateTime,
        keys: BTreeMap<KeyId, Key>,
        roles: Roles,
    ) -> Self {
        Root { type_: RootTag, spec_version: SPEC_VERSION.into(), consistent_snapshot, version, expires, keys, roles }
    }

    /// The keys a role may sign with, as (id, key) pairs; ids without a key entry are skipped.
    pub fn role_keys(&self, role: RoleName) -> BTreeSet<(&KeyId, &Key)> {
        self.roles.get(role).keyids.iter().filter_map(|id| self.keys.get(id).map(|k| (id, k))).collect()
    }

    /// Replaces the keys of `role` with `keys` (at least one, all valid ed25519, distinct) and
    /// sets its threshold, which must be met by the keys given. Keys no role uses any more
    /// are dropped from `keys`, so a retired key cannot linger in the root.
    pub fn set_role_keys(&mut self, role: RoleName, keys: &[Key], threshold: u32) -> Result<(), TufError> {
        let mut ids: Vec<KeyId> = Vec::with_capacity(keys.len());
        let mut seen = BTreeSet::new();
        for k in keys {
            let identity = k.identity().ok_or_else(|| TufError::InvalidKey { reason: format!("{role} key is not a valid ed25519 key") })?;
            if !seen.insert(identity) {
                return Err(TufError::InvalidKey { reason: format!("{role} lists the same key twice") });
            }
            ids.push(k.key_id());
        }
        if threshold == 0 || threshold as usize > ids.len() {
            return Err(TufError::InvalidThreshold { role, threshold, keys: ids.len() });
        }
        for (id, k) in ids.iter().zip(keys) {
            self.keys.insert(id.clone(), k.clone());
        }
        *self.roles.get_mut(role) = RoleKeys { keyids: ids, threshold };
        let used: BTreeSet<KeyId> = RoleName::ALL.iter().flat_map(|r| self.roles.get(*r).keyids.iter().cloned()).collect();
        self.keys.retain(|id, _| used.contains(id));
        Ok(())
    }

    /// Every key id some role of this root lists.
    pub fn all_key_ids(&self) -> BTreeSet<KeyId> {
        RoleName::ALL.iter().flat_map(|r| self.roles.get(*r).keyids.iter().cloned()).collect()
    }

    /// Whether the timestamp or snapshot keys differ between two roots. After such a rotation
    /// the client discards its trusted timestamp and snapshot (spec 5.3.11, fast-forward
    /// attack recovery).
    pub fn online_keys_rotated(&self, newer: &Root) -> bool {
        [RoleName::Timestamp, RoleName::Snapshot].into_iter().any(|r| self.role_keys(r) != newer.role_keys(r))
    }
}

impl Metadata for Root {
    const ROLE: RoleName = RoleName::Root;
    fn version(&self) -> u64 {
        self.version
    }
    fn expires(&self) -> OffsetDateTime {
        self.expires
    }
    fn spec_version(&self) -> &str {
        &self.spec_version
    }
}

/// Hashes of a file. Updraft always writes and requires SHA-256 (lowercase hex); other
/// algorithms another implementation lists are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hashes {
    pub sha256: String,
}

/// One entry of `targets`: the file's length and hashes, and free-form `custom` data (for
/// Updraft's own targets, a [`super::TargetCustom`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetFile {
    pub length: u64,
    pub hashes: Hashes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<serde_json::Value>,
}

impl TargetFile {
    pub fn new(length: u64, sha256_hex: impl Into<String>, custom: Option<serde_json::Value>) -> Self {
        TargetFile { length, hashes: Hashes { sha256: sha256_hex.into() }, custom }
    }
}

/// `targets.json`: the files clients may install. Delegations are not supported yet; the
/// struct is `non_exhaustive` so they can be added without breaking callers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Targets {
    #[serde(rename = "_type")]
    type_: TargetsTag,
    pub spec_version: String,
    pub version: u64,
    #[serde(with = "expires_format")]
    pub expires: OffsetDateTime,
    pub targets: BTreeMap<String, TargetFile>,
}

impl Targets {
    /// An empty targets document; add entries to `targets`.
    pub fn new(version: u64, expires: OffsetDateTime) -> Self {
        Targets { type_: TargetsTag, spec_version: SPEC_VERSION.into(), version, expires, targets: BTreeMap::new() }
    }
}

impl Metadata for Targets {
    const ROLE: RoleName = RoleName::Targets;
    fn version(&self) -> u64 {
        self.version
    }
    fn expires(&self) -> OffsetDateTime {
        self.expires
    }
    fn spec_version(&self) -> &str {
        &self.spec_version
    }
}

/// A metadata file's entry in snapshot or timestamp (`METAFILES` in the spec). `length` and
/// `hashes` are optional in the spec; Updraft always writes both and checks them when present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaFile {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<Hashes>,
}

/// Name of the targets entry in snapshot `meta`.
pub const TARGETS_META: &str = "targets.json";
/// Name of the snapshot entry in timestamp `meta`.
pub const SNAPSHOT_META: &str = "snapshot.json";

/// `snapshot.json`: the version (and hash) of every targets metadata file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Snapshot {
    #[serde(rename = "_type")]
    type_: SnapshotTag,
    pub spec_version: String,
    pub version: u64,
    #[serde(with = "expires_format")]
    pub expires: OffsetDateTime,
    pub meta: BTreeMap<String, MetaFile>,
}

impl Snapshot {
    pub fn new(version: u64, expires: OffsetDateTime, meta: BTreeMap<String, MetaFile>) -> Self {
        Snapshot { type_: SnapshotTag, spec_version: SPEC_VERSION.into(), version, expires, meta }
    }
    /// The entry for top-level `targets.json`.
    pub fn targets_meta(&self) -> Result<&MetaFile, TufError> {
        self.meta.get(TARGETS_META).ok_or_else(|| TufError::MissingMeta { role: RoleName::Snapshot, name: TARGETS_META.into() })
    }
}

impl Metadata for Snapshot {
    const ROLE: RoleName = RoleName::Snapshot;
    fn version(&self) -> u64 {
        self.version
    }
    fn expires(&self) -> OffsetDateTime {
        self.expires
    }
    fn spec_version(&self) -> &str {
        &self.spec_version
    }
}

/// `timestamp.json`: the current snapshot's version and hash; short-lived, re-signed often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Timestamp {
    #[serde(rename = "_type")]
    type_: TimestampTag,
    pub spec_version: String,
    pub version: u64,
    #[serde(with = "expires_format")]
    pub expires: OffsetDateTime,
    pub meta: BTreeMap<String, MetaFile>,
}

impl Timestamp {
    pub fn new(version: u64, expires: OffsetDateTime, snapshot: MetaFile) -> Self {
        let meta = BTreeMap::from([(SNAPSHOT_META.to_owned(), snapshot)]);
        Timestamp { type_: TimestampTag, spec_version: SPEC_VERSION.into(), version, expires, meta }
    }
    /// The entry for `snapshot.json`.
    pub fn snapshot_meta(&self) -> Result<&MetaFile, TufError> {
        self.meta.get(SNAPSHOT_META).ok_or_else(|| TufError::MissingMeta { role: RoleName::Timestamp, name: SNAPSHOT_META.into() })
    }
}

impl Metadata for Timestamp {
    const ROLE: RoleName = RoleName::Timestamp;
    fn version(&self) -> u64 {
        self.version
    }
    fn expires(&self) -> OffsetDateTime {
        self.expires
    }
    fn spec_version(&self) -> &str {
        &self.spec_version
    }
}

/// File name a role's metadata is served under. With consistent snapshots, snapshot and
/// targets carry their version (`3.snapshot.json`); root always does; timestamp never does.
pub fn metadata_file_name(role: RoleName, version: u64, consistent_snapshot: bool) -> String {
    match role {
        RoleName::Timestamp => "timestamp.json".into(),
        RoleName::Root => format!("{version}.root.json"),
        _ if consistent_snapshot => format!("{version}.{role}.json"),
        _ => format!("{role}.json"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn expires_round_trips_in_spec_form() {
        let t = datetime!(2030-01-02 03:04:05 UTC);
        assert_eq!(expires_format::format(t).unwrap(), "2030-01-02T03:04:05Z");
        assert_eq!(expires_format::parse("2030-01-02T03:04:05Z").unwrap(), t);
        // Fractions are dropped on output; offsets are converted to UTC.
        assert_eq!(expires_format::format(datetime!(2030-01-02 03:04:05.9 UTC)).unwrap(), "2030-01-02T03:04:05Z");
        assert_eq!(expires_format::format(datetime!(2030-01-02 05:04:05 +02:00)).unwrap(), "2030-01-02T03:04:05Z");
        assert_eq!(expires_format::parse("2030-01-02T05:04:05.5+02:00").unwrap(), datetime!(2030-01-02 03:04:05.5 UTC));
        for bad in ["", "2030-01-02", "2030-13-02T03:04:05Z", "tomorrow"] {
            assert!(expires_format::parse(bad).is_err(), "{bad:?}");
        }
        let ts = Timestamp::new(1, t, MetaFile { version: 1, length: None, hashes: None });
        let json = serde_json::to_value(&ts).unwrap();
        assert_eq!(json["expires"], "2030-01-02T03:04:05Z");
        assert_eq!(json["_type"], "timestamp");
        assert_eq!(json["meta"]["snapshot.json"], serde_json::json!({"version": 1}));
        assert_eq!(serde_json::from_value::<Timestamp>(json).unwrap(), ts);
    }

    #[test]
    fn type_tag_is_enforced_and_unknown_fields_tolerated() {
        let t = datetime!(2030-01-02 03:04:05 UTC);
        let mut json = serde_json::to_value(Targets::new(2, t)).unwrap();
        json["x-future-field"] = serde_json::json!({"anything": [1, 2]});
        assert!(serde_json::from_value::<Targets>(json.clone()).is_ok());
        json["_type"] = "snapshot".into();
        assert!(serde_json::from_value::<Targets>(json).is_err());
    }

    #[test]
    fn file_names() {
        assert_eq!(metadata_file_name(RoleName::Root, 3, true), "3.root.json");
        assert_eq!(metadata_file_name(RoleName::Snapshot, 7, true), "7.snapshot.json");
        assert_eq!(metadata_file_name(RoleName::Targets, 7, false), "targets.json");
        assert_eq!(metadata_file_name(RoleName::Timestamp, 7, true), "timestamp.json");
    }
}
