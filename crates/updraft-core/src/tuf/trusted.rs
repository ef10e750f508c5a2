//! `TrustedSet`: the spec's client workflow (§5.3–5.6) as a pure state machine. It holds the
//! metadata trusted so far and accepts new documents only in the spec's order, only when
//! they pass every check. The caller does the IO: fetching, caching and the clock.
//!
//! Modelled on python-tuf's `TrustedMetadataSet`: cached copies of timestamp and snapshot are
//! loaded first as rollback baselines (their expiry does not matter for that), then the
//! fresh ones must be at least as new.

use time::OffsetDateTime;

use super::verify::{check_expiry, check_length_and_hash, parse_document, typed, verify_role_as};
use super::{Metadata, RoleName, Root, Snapshot, Targets, Timestamp, TufError, SNAPSHOT_META, TARGETS_META};

/// Whether a fresh timestamp replaced the trusted one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampUpdate {
    /// A newer timestamp is now trusted; persist it.
    Updated,
    /// Same version as the trusted one; the trusted copy is kept (and need not be persisted).
    Unchanged,
}

/// Metadata trusted so far in one refresh. See the module docs.
#[derive(Debug, Clone)]
pub struct TrustedSet {
    root: Root,
    timestamp: Option<Timestamp>,
    snapshot: Option<Snapshot>,
    targets: Option<Targets>,
}

impl TrustedSet {
    /// Starts from a trusted root (the pinned one, or one verified earlier). It must be signed
    /// by a threshold of its own root keys. Its expiry is checked later, by
    /// [`TrustedSet::check_root`], after any newer roots have been applied.
    pub fn new(root_bytes: &[u8]) -> Result<Self, TufError> {
        let doc = parse_document::<Root>(root_bytes)?;
        let root: Root = typed(&doc)?;
        verify_role_as(RoleName::Root, &doc, &root.roles.root, &root.keys)?;
        Ok(TrustedSet { root, timestamp: None, snapshot: None, targets: None })
    }

    pub fn root(&self) -> &Root {
        &self.root
    }
    pub fn timestamp(&self) -> Option<&Timestamp> {
        self.timestamp.as_ref()
    }
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }
    pub fn targets(&self) -> Option<&Targets> {
        self.targets.as_ref()
    }

    /// Applies the next root in the chain (spec 5.3.4–5.3.9): signed by a threshold of the
    /// trusted root's root keys *and* of its own, and exactly one version newer.
    pub fn update_root(&mut self, bytes: &[u8]) -> Result<&Root, TufError> {
        if self.timestamp.is_some() {
            return Err(TufError::OutOfOrder { reason: "root cannot change after timestamp was loaded" });
        }
        let doc = parse_document::<Root>(bytes)?;
        verify_role_as(RoleName::Root, &doc, &self.root.roles.root, &self.root.keys)?;
        let new: Root = typed(&doc)?;
        verify_role_as(RoleName::Root, &doc, &new.roles.root, &new.keys)?;
        let expected = self.root.version.saturating_add(1);
        if new.version != expected {
            return Err(if new.version <= self.root.version {
                TufError::RollbackAttack { role: RoleName::Root, trusted: self.root.version, new: new.version }
            } else {
                TufError::VersionMismatch { role: RoleName::Root, expected, found: new.version }
            });
        }
        self.root = new;
        Ok(&self.root)
    }

    /// The final root must not be expired (spec 5.3.10).
    pub fn check_root(&self, now: OffsetDateTime) -> Result<(), TufError> {
        check_expiry(RoleName::Root, self.root.expires, now)
    }

    /// Loads a timestamp from the client's own cache as the rollback baseline: signatures are
    /// checked against the current root, expiry is not.
    pub fn load_cached_timestamp(&mut self, bytes: &[u8]) -> Result<(), TufError> {
        if self.snapshot.is_some() || self.timestamp.is_some() {
            return Err(TufError::OutOfOrder { reason: "cached timestamp must be loaded first" });
        }
        let ts = self.verified::<Timestamp>(bytes)?;
        ts.snapshot_meta()?;
        self.timestamp = Some(ts);
        Ok(())
    }

    /// Applies a freshly downloaded timestamp (spec 5.4): signed by the timestamp role, its
    /// version and its snapshot's version not lower than the trusted ones, not expired.
    pub fn update_timestamp(&mut self, bytes: &[u8], now: OffsetDateTime) -> Result<TimestampUpdate, TufError> {
        if self.snapshot.is_some() {
            return Err(TufError::OutOfOrder { reason: "timestamp cannot change after snapshot was loaded" });
        }
        self.check_root(now)?;
        let new = self.verified::<Timestamp>(bytes)?;
        let new_snap = new.snapshot_meta()?.version;
        if let Some(old) = &self.timestamp {
            if new.version < old.version {
                return Err(TufError::RollbackAttack { role: RoleName::Timestamp, trusted: old.version, new: new.version });
            }
            if new.version == old.version {
                // python-tuf does the same: an equal version is not news; keep what we have.
                check_expiry(RoleName::Timestamp, old.expires, now)?;
                return Ok(TimestampUpdate::Unchanged);
            }
            let old_snap = old.snapshot_meta()?.version;
            if new_snap < old_snap {
                return Err(TufError::RollbackAttack { role: RoleName::Snapshot, trusted: old_snap, new: new_snap });
            }
        }
        check_expiry(RoleName::Timestamp, new.expires, now)?;
        self.timestamp = Some(new);
        Ok(TimestampUpdate::Updated)
    }

    /// Loads a snapshot from the client's own cache. Signatures are checked; the hash against
    /// the timestamp is not (the cache was verified when written). The snapshot becomes the
    /// rollback baseline; returns whether it is also *current* (the version the trusted
    /// timestamp names, unexpired), in which case there is nothing to download.
    pub fn load_cached_snapshot(&mut self, bytes: &[u8], now: OffsetDateTime) -> Result<bool, TufError> {
        let ts = self.final_timestamp(now)?;
        if self.snapshot.is_some() {
            return Err(TufError::OutOfOrder { reason: "cached snapshot must be loaded before a fresh one" });
        }
        let wanted = ts.snapshot_meta()?.version;
        let snap = self.verified::<Snapshot>(bytes)?;
        snap.targets_meta()?;
        let current = snap.version == wanted && now < snap.expires;
        self.snapshot = Some(snap);
        Ok(current)
    }

    /// Applies a freshly downloaded snapshot (spec 5.5): length and hash as the timestamp says,
    /// signed by the snapshot role, no targets version lower than in the trusted snapshot,
    /// version as the timestamp says, not expired.
    pub fn update_snapshot(&mut self, bytes: &[u8], now: OffsetDateTime) -> Result<(), TufError> {
        if self.targets.is_some() {
            return Err(TufError::OutOfOrder { reason: "snapshot cannot change after targets was loaded" });
        }
        let meta = self.final_timestamp(now)?.snapshot_meta()?.clone();
        check_length_and_hash(SNAPSHOT_META, bytes, meta.length, meta.hashes.as_ref())?;
        let new = self.verified::<Snapshot>(bytes)?;
        if let Some(old) = &self.snapshot {
            // Every file the old snapshot listed must still be listed, at no lower version.
            for (name, old_meta) in &old.meta {
                let new_meta = new.meta.get(name).ok_or_else(|| TufError::MissingMeta { role: RoleName::Snapshot, name: name.clone() })?;
                if new_meta.version < old_meta.version {
                    return Err(TufError::RollbackAttack { role: RoleName::Targets, trusted: old_meta.version, new: new_meta.version });
                }
            }
        }
        new.targets_meta()?;
        if new.version != meta.version {
            return Err(TufError::VersionMismatch { role: RoleName::Snapshot, expected: meta.version, found: new.version });
        }
        check_expiry(RoleName::Snapshot, new.expires, now)?;
        self.snapshot = Some(new);
        Ok(())
    }

    /// Applies top-level targets, cached or fresh (spec 5.6): length and hash as the snapshot
    /// says, signed by the targets role, version as the snapshot says, not expired.
    pub fn update_targets(&mut self, bytes: &[u8], now: OffsetDateTime) -> Result<(), TufError> {
        let meta = self.final_snapshot(now)?.targets_meta()?.clone();
        check_length_and_hash(TARGETS_META, bytes, meta.length, meta.hashes.as_ref())?;
        let new = self.verified::<Targets>(bytes)?;
        if new.version != meta.version {
            return Err(TufError::VersionMismatch { role: RoleName::Targets, expected: meta.version, found: new.version });
        }
        check_expiry(RoleName::Targets, new.expires, now)?;
        self.targets = Some(new);
        Ok(())
    }

    fn verified<T: Metadata>(&self, bytes: &[u8]) -> Result<T, TufError> {
        let doc = parse_document::<T>(bytes)?;
        verify_role_as(T::ROLE, &doc, self.root.roles.get(T::ROLE), &self.root.keys)?;
        typed(&doc)
    }

    fn final_timestamp(&self, now: OffsetDateTime) -> Result<&Timestamp, TufError> {
        let ts = self.timestamp.as_ref().ok_or(TufError::OutOfOrder { reason: "no trusted timestamp" })?;
        check_expiry(RoleName::Timestamp, ts.expires, now)?;
        Ok(ts)
    }

    fn final_snapshot(&self, now: OffsetDateTime) -> Result<&Snapshot, TufError> {
        let ts = self.final_timestamp(now)?;
        let snap = self.snapshot.as_ref().ok_or(TufError::OutOfOrder { reason: "no trusted snapshot" })?;
        let wanted = ts.snapshot_meta()?.version;
        if snap.version != wanted {
            return Err(TufError::VersionMismatch { role: RoleName::Snapshot, expected: wanted, found: snap.version });
        }
        check_expiry(RoleName::Snapshot, snap.expires, now)?;
        Ok(snap)
    }
}
