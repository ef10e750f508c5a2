//! Fuzzes the client's TUF trust state machine with arbitrary metadata at each stage (root
//! chain, timestamp, snapshot, targets), starting from a valid repository. Nothing may panic,
//! and nothing unsigned may be trusted.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use time::macros::datetime;
use updraft_core::tuf::{self, Ed25519Signer, RootKeys, Signer, TargetCustom, Targets, Thresholds, TrustedSet};

struct Repo {
    root: Vec<u8>,
    timestamp: Vec<u8>,
    snapshot: Vec<u8>,
}

fn repo() -> &'static Repo {
    static REPO: OnceLock<Repo> = OnceLock::new();
    REPO.get_or_init(|| {
        let key = Ed25519Signer::from_seed([7; 32]);
        let pk = key.public_key();
        let keys = RootKeys { root: vec![pk.clone()], targets: vec![pk.clone()], snapshot: vec![pk.clone()], timestamp: vec![pk] };
        let exp = datetime!(2099-01-01 0:00 UTC);
        let root = tuf::to_wire(&tuf::sign(tuf::new_root(&keys, Thresholds::default(), 1, exp).unwrap(), &[&key]).unwrap()).unwrap();
        let targets = tuf::to_wire(&tuf::sign(Targets::new(1, exp), &[&key]).unwrap()).unwrap();
        let snapshot = tuf::to_wire(&tuf::sign(tuf::snapshot_for(&targets, 1, 1, exp), &[&key]).unwrap()).unwrap();
        let timestamp = tuf::to_wire(&tuf::sign(tuf::timestamp_for(&snapshot, 1, 1, exp), &[&key]).unwrap()).unwrap();
        Repo { root, timestamp, snapshot }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&stage, input)) = data.split_first() else { return };
    let r = repo();
    let now = datetime!(2030-01-01 0:00 UTC);
    let _ = tuf::canonical_json(&serde_json::from_slice::<serde_json::Value>(input).unwrap_or_default());
    match stage % 5 {
        0 => {
            if let Ok(t) = TrustedSet::new(input) {
                // Whatever parsed must be self-signed: its own root keys verify it.
                let _ = t.check_root(now);
            }
        }
        1 => {
            let mut t = TrustedSet::new(&r.root).unwrap();
            let _ = t.update_root(input);
        }
        2 => {
            let mut t = TrustedSet::new(&r.root).unwrap();
            let _ = t.update_timestamp(input, now);
        }
        3 => {
            let mut t = TrustedSet::new(&r.root).unwrap();
            t.update_timestamp(&r.timestamp, now).unwrap();
            // Only bytes whose hash the timestamp names can be accepted.
            assert!(t.update_snapshot(input, now).is_err() || input == r.snapshot.as_slice());
        }
        _ => {
            let mut t = TrustedSet::new(&r.root).unwrap();
            t.update_timestamp(&r.timestamp, now).unwrap();
            t.update_snapshot(&r.snapshot, now).unwrap();
            if t.update_targets(input, now).is_ok() {
                for (path, file) in &t.targets().unwrap().targets {
                    let _ = TargetCustom::from_target(path, file);
                }
            }
        }
    }
});
