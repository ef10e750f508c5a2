//! The attack suite: every attack TUF names, each a fixture folder in `tests/fixtures/`
//! (see `scenarios.rs`) served by a real HTTP server, and our client's answer checked against
//! the folder's `expect.json`. Slow retrieval needs time, not files: a server that drips.

use std::path::Path;
use std::time::Duration;

use updraft_client::{Client, ClientConfig, ClientError, Limits};

use crate::fixture::Server;
use crate::scenarios::{self, fixtures_dir, APP};

#[test]
fn fixtures_are_current() {
    let write = std::env::var_os("UPDRAFT_WRITE_FIXTURES").is_some();
    let mut stale = Vec::new();
    for s in scenarios::all() {
        let dir = fixtures_dir().join(s.name);
        if write {
            let _ = std::fs::remove_dir_all(&dir);
        }
        for (path, bytes) in &s.files {
            let p = dir.join(path);
            if write {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, bytes).unwrap();
            } else if std::fs::read(&p).ok().as_ref() != Some(bytes) {
                stale.push(p.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "fixtures differ from their generator: {stale:?}\nregenerate: UPDRAFT_WRITE_FIXTURES=1 cargo test -p updraft-client --test it fixtures_are_current"
    );
}

fn read_tree(dir: &Path, prefix: &str, out: &mut Vec<(String, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries {
        let p = e.unwrap().path();
        let name = format!("{prefix}{}", p.file_name().unwrap().to_str().unwrap());
        if p.is_dir() {
            read_tree(&p, &format!("{name}/"), out);
        } else {
            out.push((name, std::fs::read(&p).unwrap()));
        }
    }
}

/// Serves `scenario`'s folder, seeds the client's state from its `client/`, and runs a check
/// (and a fetch when the check offers an update). Returns both outcomes as words.
async fn run(scenario: &str, srv: &Server, limits: Limits) -> (String, Option<String>) {
    let dir = fixtures_dir().join(scenario);
    assert!(dir.is_dir(), "no fixture folder {}", dir.display());
    for (sub, url) in [("metadata", "metadata"), ("targets", "targets")] {
        let mut files = Vec::new();
        read_tree(&dir.join(sub), "", &mut files);
        for (path, bytes) in files {
            srv.put(&format!("tuf/{APP}/{url}/{path}"), bytes);
        }
    }
    let state = tempfile::tempdir().unwrap();
    let mut cached = Vec::new();
    read_tree(&dir.join("client"), "", &mut cached);
    let meta = state.path().join("tuf").join(APP);
    std::fs::create_dir_all(&meta).unwrap();
    for (path, bytes) in cached {
        std::fs::write(meta.join(path), bytes).unwrap();
    }
    let mut client = Client::new(ClientConfig {
        server: srv.base.clone(),
        app: APP.parse().unwrap(),
        channel: "stable".parse().unwrap(),
        platform: "linux-x86_64".parse().unwrap(),
        current: "1.0.0".parse().unwrap(),
        trusted_root: std::fs::read(dir.join("metadata/1.root.json")).unwrap(),
        state_dir: state.path().to_owned(),
        client_id: Some("attack-suite".into()),
        limits,
    })
    .unwrap();
    let word = |e: ClientError| format!("error {}", e.code());
    let update = match client.check().await {
        Ok(Some(u)) => u,
        Ok(None) => return ("no update".into(), None),
        Err(e) => return (word(e), None),
    };
    let check = format!("offered {}", update.version);
    let out = state.path().join("app.bin");
    let fetch = match client.fetch(&update, &out, |_, _| {}).await {
        Ok(()) => {
            assert_eq!(std::fs::read(&out).unwrap(), scenarios::payload(), "a fetch that succeeds delivers the signed bytes");
            "ok".to_owned()
        }
        Err(e) => {
            assert!(!out.exists(), "nothing is written for a refused download");
            word(e)
        }
    };
    (check, Some(fetch))
}

async fn check(scenario: &str) {
    let expect: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures_dir().join(scenario).join("expect.json")).unwrap()).unwrap();
    let srv = Server::start().await;
    let (check, fetch) = run(scenario, &srv, Limits::default()).await;
    assert_eq!(check, expect["check"].as_str().unwrap(), "{scenario}: check");
    assert_eq!(fetch.as_deref(), expect["fetch"].as_str(), "{scenario}: fetch");
}

macro_rules! scenarios {
    ($($test:ident => $folder:literal,)*) => {
        $(
            #[tokio::test]
            async fn $test() {
                check($folder).await;
            }
        )*

        #[test]
        fn every_fixture_folder_has_a_test() {
            let tested = [$($folder),*];
            let generated: Vec<&str> = scenarios::all().iter().map(|s| s.name).collect();
            assert_eq!(tested.to_vec(), generated);
        }
    };
}

scenarios! {
    honest_repository_is_trusted => "honest",
    arbitrary_software_same_length => "arbitrary-software-hash",
    arbitrary_software_longer => "arbitrary-software-length",
    endless_data_timestamp => "endless-data-timestamp",
    endless_data_targets_metadata => "endless-data-targets",
    rollback_timestamp => "rollback-timestamp",
    rollback_snapshot => "rollback-snapshot",
    rollback_targets => "rollback-targets",
    freeze_timestamp => "freeze-timestamp",
    freeze_snapshot => "freeze-snapshot",
    freeze_targets => "freeze-targets",
    freeze_root => "freeze-root",
    fast_forward_without_rotation_is_stuck => "fast-forward-stuck",
    fast_forward_recovered_by_snapshot_key_rotation => "fast-forward-recovered",
    mix_and_match_snapshot => "mix-and-match-snapshot",
    mix_and_match_targets => "mix-and-match-targets",
    malicious_mirror_with_its_own_keys => "malicious-mirror-own-keys",
    malicious_mirror_widening_a_rollout => "malicious-mirror-widened-rollout",
    wrong_software_other_app_and_platform => "wrong-software",
    compromised_targets_key_after_rotation => "key-compromise-recovered",
    root_chain_with_a_skipped_version => "broken-root-chain-skipped-version",
    root_not_signed_by_the_previous_root => "broken-root-chain-missing-old-signature",
    duplicate_signatures_count_once => "duplicate-signatures",
}

fn slow_limits() -> Limits {
    Limits {
        min_transfer_rate: 1000,
        min_rate_grace: Duration::from_millis(300),
        request_timeout: Duration::from_secs(10),
        ..Limits::default()
    }
}

#[tokio::test]
async fn slow_retrieval_of_metadata_is_abandoned() {
    let srv = Server::start().await;
    srv.served().drip = Some((16, Duration::from_millis(40))); // 400 bytes/s
    let started = std::time::Instant::now();
    let (check, _) = run("honest", &srv, slow_limits()).await;
    assert_eq!(check, "error slow_retrieval");
    assert!(started.elapsed() < Duration::from_secs(5), "abandoned soon after the grace period: {:?}", started.elapsed());
}

#[tokio::test]
async fn slow_retrieval_of_a_target_is_abandoned_and_resumable() {
    let srv = Server::start().await;
    // Metadata arrives at full speed; the target then trickles.
    let (check, fetch) = run("honest", &srv, slow_limits()).await;
    assert_eq!((check.as_str(), fetch.as_deref()), ("offered 1.1.0", Some("ok")));
    let srv = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (files, drip) = {
        let mut files = Vec::new();
        read_tree(&fixtures_dir().join("honest/metadata"), "", &mut files);
        (files, (8, Duration::from_millis(40)))
    };
    for (p, b) in files {
        srv.put(&format!("tuf/{APP}/metadata/{p}"), b);
    }
    let mut targets = Vec::new();
    read_tree(&fixtures_dir().join("honest/targets"), "", &mut targets);
    for (p, b) in targets {
        srv.put(&format!("tuf/{APP}/targets/{p}"), b);
    }
    let mut client = Client::new(ClientConfig {
        server: srv.base.clone(),
        app: APP.parse().unwrap(),
        channel: "stable".parse().unwrap(),
        platform: "linux-x86_64".parse().unwrap(),
        current: "1.0.0".parse().unwrap(),
        trusted_root: std::fs::read(fixtures_dir().join("honest/metadata/1.root.json")).unwrap(),
        state_dir: dir.path().to_owned(),
        client_id: Some("attack-suite".into()),
        limits: slow_limits(),
    })
    .unwrap();
    let update = client.check().await.unwrap().unwrap();
    srv.served().drip = Some(drip);
    let out = dir.path().join("app.bin");
    let err = client.fetch(&update, &out, |_, _| {}).await.unwrap_err();
    assert_eq!(err.code(), "slow_retrieval", "{err}");
    assert_eq!(err.exit_code(), 5);
    assert!(!out.exists());
    // The trickled bytes are kept, and a healthy server completes the download.
    srv.served().drip = None;
    client.fetch(&update, &out, |_, _| {}).await.unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), scenarios::payload());
}

#[tokio::test]
async fn a_server_that_stops_sending_times_out() {
    let srv = Server::start().await;
    srv.served().drip = Some((1, Duration::from_secs(30)));
    let limits = Limits { request_timeout: Duration::from_millis(500), ..Limits::default() };
    let started = std::time::Instant::now();
    let (check, _) = run("honest", &srv, limits).await;
    assert_eq!(check, "error timeout");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}
