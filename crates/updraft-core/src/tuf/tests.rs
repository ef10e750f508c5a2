//! Tests of the TUF model as a whole: signing and verifying, thresholds, and the client's
//! trust state machine against the attacks the spec names.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use time::macros::datetime;
use time::OffsetDateTime;

use super::*;

const NOW: OffsetDateTime = datetime!(2030-06-01 12:00 UTC);
const LATER: OffsetDateTime = datetime!(2031-01-01 00:00 UTC);

fn signer(n: u8) -> Ed25519Signer {
    Ed25519Signer::from_seed([n; 32])
}

fn keys_of(signers: &[&Ed25519Signer]) -> BTreeMap<KeyId, Key> {
    signers.iter().map(|s| (s.key_id(), s.public_key())).collect()
}

fn role_of(signers: &[&Ed25519Signer], threshold: u32) -> RoleKeys {
    RoleKeys { keyids: signers.iter().map(|s| s.key_id()).collect(), threshold }
}

fn doc<T: serde::Serialize>(signed: &Signed<T>) -> Value {
    serde_json::to_value(signed).unwrap()
}

fn targets_doc(signers: &[&dyn Signer]) -> Value {
    let mut t = Targets::new(1, LATER);
    t.targets.insert("1.0.0/linux-x86_64/a".into(), TargetFile::new(3, sha256_hex(b"abc"), None));
    doc(&sign(t, signers).unwrap())
}

#[test]
fn sign_verify_round_trip_and_tamper() {
    let k = signer(1);
    let d = targets_doc(&[&k]);
    let (role, keys) = (role_of(&[&k], 1), keys_of(&[&k]));
    verify_role(&d, &role, &keys).unwrap();

    let mut tampered = d.clone();
    tampered["signed"]["version"] = json!(2);
    let err = verify_role(&tampered, &role, &keys).unwrap_err();
    assert_eq!(err.code(), "bad_signature", "{err}");
    assert!(matches!(err, TufError::BadSignature { role: RoleName::Targets, .. }));

    // Unknown fields are covered by the signature as received.
    let mut extended = d.clone();
    extended["signed"]["x-extra"] = json!("hi");
    assert_eq!(verify_role(&extended, &role, &keys).unwrap_err().code(), "bad_signature");
}

#[test]
fn unknown_fields_signed_by_the_repository_verify() {
    let k = signer(1);
    // A repository (another implementation, or a later Updraft) adds a field we do not model.
    let mut signed = serde_json::to_value(Targets::new(4, LATER)).unwrap();
    signed["x-future"] = json!({"b": 1, "a": [1, 2]});
    let sig = k.sign(&canonical_json(&signed).unwrap()).unwrap();
    let d = json!({"signatures": [{"keyid": k.key_id(), "sig": hex::encode(sig)}], "signed": signed});
    let bytes = serde_json::to_vec_pretty(&d).unwrap();
    let t: Targets = parse_verified(&bytes, &role_of(&[&k], 1), &keys_of(&[&k])).unwrap();
    assert_eq!(t.version, 4);
}

#[test]
fn duplicate_signatures_count_once() {
    let (a, b) = (signer(1), signer(2));
    let mut d = targets_doc(&[&a]);
    let sig = d["signatures"][0].clone();
    d["signatures"] = json!([sig.clone(), sig.clone(), sig]);
    let err = verify_role(&d, &role_of(&[&a, &b], 2), &keys_of(&[&a, &b])).unwrap_err();
    assert_eq!(err, TufError::ThresholdNotMet { role: RoleName::Targets, valid: 1, threshold: 2 });
}

#[test]
fn one_key_under_two_ids_counts_once() {
    let a = signer(1);
    let d = targets_doc(&[&a]);
    let alias: KeyId = "00ff".parse().unwrap();
    let mut keys = keys_of(&[&a]);
    keys.insert(alias.clone(), a.public_key());
    let mut d2 = d.clone();
    let mut sig2 = d["signatures"][0].clone();
    sig2["keyid"] = json!(alias.as_str());
    d2["signatures"].as_array_mut().unwrap().push(sig2);
    let role = RoleKeys { keyids: vec![a.key_id(), alias], threshold: 2 };
    assert_eq!(verify_role(&d2, &role, &keys).unwrap_err().code(), "threshold_not_met");
}

#[test]
fn threshold_two_of_three() {
    let (a, b, c, stranger) = (signer(1), signer(2), signer(3), signer(9));
    let role = role_of(&[&a, &b, &c], 2);
    let keys = keys_of(&[&a, &b, &c, &stranger]);
    let check = |signers: &[&dyn Signer], ok: bool| {
        let res = verify_role(&targets_doc(signers), &role, &keys);
        assert_eq!(res.is_ok(), ok, "{res:?}");
    };
    check(&[&a], false);
    check(&[&a, &stranger], false); // a key outside the role does not count
    check(&[&a, &c], true);
    check(&[&c, &b, &a], true);
    check(&[&a, &a], false); // sign() itself drops the repeat
    assert_eq!(sign(Targets::new(1, LATER), &[&a, &a]).unwrap().signatures.len(), 1);

    // One bad signature is fine while the threshold is met by others.
    let mut d = targets_doc(&[&a, &b, &c]);
    d["signatures"][0]["sig"] = json!("00".repeat(64));
    verify_role(&d, &role, &keys).unwrap();

    let zero = RoleKeys { threshold: 0, ..role.clone() };
    assert_eq!(verify_role(&d, &zero, &keys).unwrap_err().code(), "invalid_threshold");
}

#[test]
fn malformed_documents_are_refused_not_panicked_on() {
    let k = signer(1);
    let (role, keys) = (role_of(&[&k], 1), keys_of(&[&k]));
    for bad in [
        json!(null),
        json!({}),
        json!({"signed": {}}),
        json!({"signed": 1, "signatures": []}),
        json!({"signed": {}, "signatures": [1, "x", {"keyid": "zz"}]}),
    ] {
        assert!(verify_role(&bad, &role, &keys).is_err(), "{bad}");
    }
    assert_eq!(parse_verified::<Root>(b"{", &role, &keys).unwrap_err().code(), "malformed_metadata");
    let t = serde_json::to_vec(&targets_doc(&[&k])).unwrap();
    assert_eq!(parse_verified::<Root>(&t, &role, &keys).unwrap_err().code(), "wrong_type");
}

#[test]
fn expiry() {
    check_expiry(RoleName::Timestamp, LATER, NOW).unwrap();
    let err = check_expiry(RoleName::Timestamp, NOW, NOW).unwrap_err();
    assert_eq!(err, TufError::ExpiredMetadata { role: RoleName::Timestamp, expires: "2030-06-01T12:00:00Z".into() });
}

#[test]
fn root_thresholds_are_validated() {
    let (a, b) = (signer(1), signer(2));
    let keys = RootKeys {
        root: vec![a.public_key(), b.public_key()],
        targets: vec![a.public_key()],
        snapshot: vec![a.public_key()],
        timestamp: vec![a.public_key()],
    };
    let root = new_root(&keys, Thresholds { root: 2, ..Thresholds::default() }, 1, LATER).unwrap();
    assert_eq!(root.roles.root.threshold, 2);
    assert_eq!(root.keys.len(), 2);
    assert_eq!(root.spec_version, SPEC_VERSION);
    assert!(root.consistent_snapshot);
    let err = new_root(&keys, Thresholds { targets: 2, ..Thresholds::default() }, 1, LATER).unwrap_err();
    assert_eq!(err.code(), "invalid_threshold");
    assert!(new_root(&keys, Thresholds { root: 0, ..Thresholds::default() }, 1, LATER).is_err());
}

/// A tiny in-memory repository: one key per role, helpers to publish new versions.
struct Repo {
    root_key: Ed25519Signer,
    targets_key: Ed25519Signer,
    snapshot_key: Ed25519Signer,
    timestamp_key: Ed25519Signer,
    root: Root,
    root_bytes: Vec<Vec<u8>>,
}

impl Repo {
    fn new() -> Self {
        let (r, t, s, ts) = (signer(1), signer(2), signer(3), signer(4));
        let keys = RootKeys {
            root: vec![r.public_key()],
            targets: vec![t.public_key()],
            snapshot: vec![s.public_key()],
            timestamp: vec![ts.public_key()],
        };
        let root = new_root(&keys, Thresholds::default(), 1, LATER).unwrap();
        let bytes = to_wire(&sign(root.clone(), &[&r]).unwrap()).unwrap();
        Repo { root_key: r, targets_key: t, snapshot_key: s, timestamp_key: ts, root, root_bytes: vec![bytes] }
    }

    /// Rotates the timestamp key in a new root signed by old and new root keys.
    fn rotate_timestamp_key(&mut self, new_key: Ed25519Signer) -> Vec<u8> {
        let mut root = self.root.clone();
        root.version += 1;
        let old_id = self.timestamp_key.key_id();
        root.keys.remove(&old_id);
        root.keys.insert(new_key.key_id(), new_key.public_key());
        root.roles.timestamp.keyids = vec![new_key.key_id()];
        self.timestamp_key = new_key;
        let bytes = to_wire(&sign(root.clone(), &[&self.root_key]).unwrap()).unwrap();
        self.root = root;
        self.root_bytes.push(bytes.clone());
        bytes
    }

    /// (timestamp, snapshot, targets) wire bytes for the given versions.
    fn publish(&self, ts_v: u64, snap_v: u64, targets_v: u64, ts_expires: OffsetDateTime) -> [Vec<u8>; 3] {
        let mut t = Targets::new(targets_v, LATER);
        t.targets.insert("1.0.0/linux-x86_64/a".into(), TargetFile::new(3, sha256_hex(b"abc"), None));
        let targets = to_wire(&sign(t, &[&self.targets_key]).unwrap()).unwrap();
        let snapshot = to_wire(&sign(snapshot_for(&targets, targets_v, snap_v, LATER), &[&self.snapshot_key]).unwrap()).unwrap();
        let timestamp = to_wire(&sign(timestamp_for(&snapshot, snap_v, ts_v, ts_expires), &[&self.timestamp_key]).unwrap()).unwrap();
        [timestamp, snapshot, targets]
    }
}

fn refresh(set: &mut TrustedSet, [ts, snap, targets]: &[Vec<u8>; 3]) -> Result<(), TufError> {
    set.check_root(NOW)?;
    set.update_timestamp(ts, NOW)?;
    set.update_snapshot(snap, NOW)?;
    set.update_targets(targets, NOW)
}

#[test]
fn happy_path_through_the_trusted_set() {
    let repo = Repo::new();
    let mut set = TrustedSet::new(&repo.root_bytes[0]).unwrap();
    refresh(&mut set, &repo.publish(1, 1, 1, LATER)).unwrap();
    assert_eq!(set.targets().unwrap().targets.len(), 1);
    // Targets may not be fetched before snapshot, nor root after timestamp.
    assert_eq!(set.update_root(&repo.root_bytes[0]).unwrap_err().code(), "out_of_order");
    let mut fresh = TrustedSet::new(&repo.root_bytes[0]).unwrap();
    assert_eq!(fresh.update_targets(&repo.publish(1, 1, 1, LATER)[2], NOW).unwrap_err().code(), "out_of_order");
}

#[test]
fn rollback_of_timestamp_snapshot_and_targets_is_refused() {
    let repo = Repo::new();
    let seen = repo.publish(5, 5, 5, LATER);
    let check = |served: [Vec<u8>; 3], code: &str| {
        // The client's order: cached timestamp, fresh timestamp, cached snapshot, fresh
        // snapshot, targets.
        let mut set = TrustedSet::new(&repo.root_bytes[0]).unwrap();
        set.load_cached_timestamp(&seen[0]).unwrap();
        let err = (|| {
            set.update_timestamp(&served[0], NOW)?;
            assert!(!set.load_cached_snapshot(&seen[1], NOW)?);
            set.update_snapshot(&served[1], NOW)?;
            set.update_targets(&served[2], NOW)
        })()
        .unwrap_err();
        assert_eq!(err.code(), code, "{err}");
    };
    check(repo.publish(4, 5, 5, LATER), "rollback_attack"); // older timestamp
    check(repo.publish(6, 4, 4, LATER), "rollback_attack"); // newer timestamp, older snapshot
    check(repo.publish(6, 6, 4, LATER), "rollback_attack"); // newer snapshot, older targets
                                                            // Equal timestamp version: the trusted one is kept, the rest proceeds.
    let mut set = TrustedSet::new(&repo.root_bytes[0]).unwrap();
    set.load_cached_timestamp(&seen[0]).unwrap();
    assert_eq!(set.update_timestamp(&repo.publish(5, 5, 5, LATER)[0], NOW).unwrap(), TimestampUpdate::Unchanged);
}

#[test]
fn expired_or_mismatched_metadata_is_refused() {
    let repo = Repo::new();
    let mut set = TrustedSet::new(&repo.root_bytes[0]).unwrap();
    let err = refresh(&mut set, &repo.publish(1, 1, 1, NOW)).unwrap_err();
    assert_eq!(err.code(), "expired_metadata");

    // Snapshot bytes that are not what the timestamp hashed (mix-and-match).
    let a = repo.publish(1, 1, 1, LATER);
    let b = repo.publish(1, 1, 2, LATER);
    let c = repo.publish(1, 1, 10, LATER); // one digit longer
    let check = |served: [&Vec<u8>; 3], code: &str| {
        let mut set = TrustedSet::new(&repo.root_bytes[0]).unwrap();
        let err = refresh(&mut set, &served.map(Clone::clone)).unwrap_err();
        assert_eq!(err.code(), code, "{err}");
    };
    check([&a[0], &b[1], &b[2]], "hash_mismatch");
    check([&a[0], &c[1], &c[2]], "length_mismatch");
    check([&a[0], &a[1], &b[2]], "hash_mismatch");

    // Timestamp signed by the wrong key.
    let mut wrong = Repo::new();
    wrong.timestamp_key = signer(42);
    let mut set = TrustedSet::new(&repo.root_bytes[0]).unwrap();
    assert_eq!(refresh(&mut set, &wrong.publish(1, 1, 1, LATER)).unwrap_err().code(), "threshold_not_met");
}

#[test]
fn root_rotation_is_followed_and_checked() {
    let mut repo = Repo::new();
    let v2 = repo.rotate_timestamp_key(signer(5));
    let mut set = TrustedSet::new(&repo.root_bytes[0]).unwrap();
    let old_root = set.root().clone();
    // Replaying v1 as "next" is a rollback; v2 applies.
    assert_eq!(set.update_root(&repo.root_bytes[0]).unwrap_err().code(), "rollback_attack");
    set.update_root(&v2).unwrap();
    assert_eq!(set.root().version, 2);
    assert!(old_root.online_keys_rotated(set.root()));
    refresh(&mut set, &repo.publish(1, 1, 1, LATER)).unwrap();

    // A v3 signed only by a new root key (not by v2's root key) is refused.
    let mut rogue = repo.root.clone();
    rogue.version = 3;
    let evil = signer(66);
    rogue.keys.insert(evil.key_id(), evil.public_key());
    rogue.roles.root.keyids = vec![evil.key_id()];
    let mut set = TrustedSet::new(&repo.root_bytes[0]).unwrap();
    set.update_root(&v2).unwrap();
    let rogue_bytes = to_wire(&sign(rogue.clone(), &[&evil]).unwrap()).unwrap();
    assert_eq!(set.update_root(&rogue_bytes).unwrap_err().code(), "threshold_not_met");
    // ...and one signed only by the old key but not by its own new key, too.
    let half = to_wire(&sign(rogue, &[&repo.root_key]).unwrap()).unwrap();
    assert_eq!(set.update_root(&half).unwrap_err().code(), "threshold_not_met");
    // Skipping a version is refused.
    let mut v4 = repo.root.clone();
    v4.version = 4;
    let v4 = to_wire(&sign(v4, &[&repo.root_key]).unwrap()).unwrap();
    assert_eq!(set.update_root(&v4).unwrap_err().code(), "version_mismatch");
}

#[test]
fn expired_final_root_is_refused() {
    let r = signer(1);
    let pk = r.public_key();
    let keys = RootKeys { root: vec![pk.clone()], targets: vec![pk.clone()], snapshot: vec![pk.clone()], timestamp: vec![pk] };
    let root = new_root(&keys, Thresholds::default(), 1, NOW).unwrap();
    let set = TrustedSet::new(&to_wire(&sign(root, &[&r]).unwrap()).unwrap()).unwrap();
    assert_eq!(set.check_root(NOW).unwrap_err().code(), "expired_metadata");
}

#[test]
fn wire_bytes_keep_control_characters_valid() {
    // Release notes with newlines: canonical JSON writes them raw, the wire form escapes them.
    let k = signer(1);
    let mut t = Targets::new(1, LATER);
    t.targets.insert("x".into(), TargetFile::new(1, "00", Some(json!({"notes": "line1\nline2\t\u{1}"}))));
    let wire = to_wire(&sign(t, &[&k]).unwrap()).unwrap();
    let parsed: Targets = parse_verified(&wire, &role_of(&[&k], 1), &keys_of(&[&k])).unwrap();
    assert_eq!(parsed.targets["x"].custom.as_ref().unwrap()["notes"], "line1\nline2\t\u{1}");
}

#[test]
fn set_role_keys_replaces_keys_and_drops_retired_ones() {
    let repo = Repo::new();
    let (a, b, c) = (signer(7), signer(8), signer(9));
    let mut root = repo.root.clone();
    root.set_role_keys(RoleName::Targets, &[a.public_key(), b.public_key(), c.public_key()], 2).unwrap();
    assert_eq!(root.roles.targets.threshold, 2);
    assert_eq!(root.roles.targets.keyids, vec![a.key_id(), b.key_id(), c.key_id()]);
    assert!(!root.keys.contains_key(&repo.targets_key.key_id()), "the retired key is gone");
    assert!(root.keys.contains_key(&repo.root_key.key_id()));
    assert_eq!(root.all_key_ids().len(), 6);
    let check = |keys: &[Key], threshold: u32, code: &str| {
        let mut r = repo.root.clone();
        assert_eq!(r.set_role_keys(RoleName::Root, keys, threshold).unwrap_err().code(), code);
        assert_eq!(r, repo.root, "a refused change leaves the root as it was");
    };
    check(&[a.public_key()], 2, "invalid_threshold");
    check(&[], 1, "invalid_threshold");
    check(&[a.public_key(), a.public_key()], 1, "invalid_key");
    check(&[Key { keytype: "rsa".into(), ..a.public_key() }], 1, "invalid_key");
}

#[test]
fn add_signature_signs_the_document_as_received() {
    let (old, new1, new2) = (signer(1), signer(20), signer(21));
    let repo = Repo::new();
    let mut next = repo.root.clone();
    next.version = 2;
    next.set_role_keys(RoleName::Root, &[new1.public_key(), new2.public_key()], 2).unwrap();
    // Exported unsigned, with a field we do not model: it must stay covered.
    let mut doc = json!({"signatures": [], "signed": serde_json::to_value(&next).unwrap()});
    doc["signed"]["x-note"] = json!("ceremony 2030-06");
    for s in [&old as &dyn Signer, &new1, &new2, &new2] {
        add_signature(&mut doc, s).unwrap();
    }
    assert_eq!(doc["signatures"].as_array().unwrap().len(), 3, "re-signing with one key replaces its signature");
    let mut set = TrustedSet::new(&repo.root_bytes[0]).unwrap();
    set.update_root(&serde_json::to_vec(&doc).unwrap()).unwrap();
    assert_eq!(set.root().version, 2);
    // Without the old root key's signature the chain is broken.
    let mut half = doc.clone();
    half["signatures"].as_array_mut().unwrap().retain(|s| s["keyid"] != json!(old.key_id().as_str()));
    let mut set = TrustedSet::new(&repo.root_bytes[0]).unwrap();
    assert_eq!(set.update_root(&serde_json::to_vec(&half).unwrap()).unwrap_err().code(), "threshold_not_met");
    assert_eq!(add_signature(&mut json!({"signed": 1}), &old).unwrap_err().code(), "malformed_metadata");
}
