//! End-to-end tests of the client against a real HTTP server holding a TUF repository built
//! in-test: the happy path and each attack the client must refuse.

mod attacks;
mod fixture;
mod scenarios;

use std::fs;

use fixture::{config, seed, Repo, Server};
use updraft_client::{Client, ClientError, Update};

/// Bytes big enough to arrive in several chunks.
fn payload(tag: u8) -> Vec<u8> {
    (0..200_000u32).map(|i| (i as u8).wrapping_mul(31).wrapping_add(tag)).collect()
}

struct Setup {
    srv: Server,
    repo: Repo,
    dir: tempfile::TempDir,
}

/// A server with app `demo`, a 1.1.0 release for linux-x86_64, published once.
async fn setup() -> Setup {
    let srv = Server::start().await;
    let mut repo = Repo::new("demo");
    repo.add("demo", "1.1.0", "linux-x86_64", &payload(1));
    repo.publish(&srv);
    Setup { srv, repo, dir: tempfile::tempdir().unwrap() }
}

impl Setup {
    fn client(&self) -> Client {
        Client::new(config(&self.srv, &self.repo, &self.dir.path().join("state"))).unwrap()
    }
    fn out(&self) -> std::path::PathBuf {
        self.dir.path().join("app.bin")
    }
}

fn part(out: &std::path::Path) -> std::path::PathBuf {
    let mut p = out.as_os_str().to_owned();
    p.push(".part");
    p.into()
}

async fn offered(client: &mut Client) -> Update {
    client.check().await.unwrap().expect("an update is offered")
}

#[tokio::test]
async fn happy_path_check_and_fetch_give_identical_bytes() {
    let s = setup().await;
    let mut client = s.client();
    let update = offered(&mut client).await;
    assert_eq!(update.version.to_string(), "1.1.0");
    assert_eq!(update.target_path, "1.1.0/linux-x86_64/app.bin");
    assert_eq!(update.length, 200_000);
    assert_eq!(update.notes.as_deref(), Some("release 1.1.0\nwith notes"));
    assert_eq!(update.url, format!("{}/{}", s.srv.base, s.repo.target_file_path(&update.target_path)));

    let mut calls = Vec::new();
    client.fetch(&update, &s.out(), |done, total| calls.push((done, total))).await.unwrap();
    assert_eq!(fs::read(s.out()).unwrap(), payload(1));
    assert!(!part(&s.out()).exists());
    assert_eq!(calls.first(), Some(&(0, 200_000)));
    assert_eq!(calls.last(), Some(&(200_000, 200_000)));

    // The verified metadata was persisted, and a second check works from it.
    let meta = s.dir.path().join("state/tuf/demo");
    for f in ["timestamp.json", "snapshot.json", "targets.json"] {
        assert!(meta.join(f).exists(), "{f}");
    }
    assert_eq!(offered(&mut s.client()).await, update);
}

#[tokio::test]
async fn resume_from_partial_part_file() {
    let s = setup().await;
    let mut client = s.client();
    let update = offered(&mut client).await;
    fs::write(part(&s.out()), &payload(1)[..77_777]).unwrap();
    let mut first = None;
    client
        .fetch(&update, &s.out(), |done, _| {
            first.get_or_insert(done);
        })
        .await
        .unwrap();
    assert_eq!(fs::read(s.out()).unwrap(), payload(1));
    assert_eq!(first, Some(77_777), "progress starts from the part already on disk");
    let log = &s.srv.served().log;
    let (_, range) = log.iter().rev().find(|(p, _)| p.contains("/targets/")).unwrap();
    assert_eq!(range.as_deref(), Some("bytes=77777-"));
}

#[tokio::test]
async fn resume_restarts_when_server_ignores_range() {
    let s = setup().await;
    s.srv.served().ignore_range = true;
    let mut client = s.client();
    let update = offered(&mut client).await;
    // A stale part with wrong bytes: the 200 answer replaces it.
    fs::write(part(&s.out()), vec![0xAA; 5000]).unwrap();
    client.fetch(&update, &s.out(), |_, _| {}).await.unwrap();
    assert_eq!(fs::read(s.out()).unwrap(), payload(1));
}

#[tokio::test]
async fn tampered_target_is_refused_and_leaves_no_file() {
    let s = setup().await;
    let mut client = s.client();
    let update = offered(&mut client).await;
    let mut evil = payload(1);
    evil[100_000] ^= 1;
    s.srv.put(&s.repo.target_file_path(&update.target_path), evil);
    let err = client.fetch(&update, &s.out(), |_, _| {}).await.unwrap_err();
    assert!(matches!(err, ClientError::HashMismatch { .. }), "{err}");
    assert_eq!((err.code(), err.exit_code()), ("hash_mismatch", 4));
    assert!(!s.out().exists());
    assert!(!part(&s.out()).exists(), "a bad part is not kept for resuming");
}

#[tokio::test]
async fn oversized_target_is_refused() {
    let s = setup().await;
    let mut client = s.client();
    let update = offered(&mut client).await;
    let mut endless = payload(1);
    endless.extend(vec![0; 1_000_000]);
    s.srv.put(&s.repo.target_file_path(&update.target_path), endless);
    let err = client.fetch(&update, &s.out(), |_, _| {}).await.unwrap_err();
    assert!(matches!(err, ClientError::TargetTooLarge { length: 200_000, .. }), "{err}");
    assert_eq!(err.exit_code(), 4);
    assert!(!s.out().exists() && !part(&s.out()).exists());
}

#[tokio::test]
async fn endless_target_without_content_length_is_cut_off() {
    let s = setup().await;
    let mut client = s.client();
    let update = offered(&mut client).await;
    let mut endless = payload(1);
    endless.extend(vec![0; 1_000_000]);
    s.srv.put(&s.repo.target_file_path(&update.target_path), endless);
    s.srv.served().chunked = true;
    let mut most = 0;
    let err = client.fetch(&update, &s.out(), |done, _| most = most.max(done)).await.unwrap_err();
    assert!(matches!(err, ClientError::TargetTooLarge { .. }), "{err}");
    assert!(most <= 200_000, "never wrote past the signed length ({most})");
    assert!(!s.out().exists() && !part(&s.out()).exists());
}

#[tokio::test]
async fn endless_metadata_without_content_length_is_cut_off() {
    let s = setup().await;
    s.srv.put("tuf/demo/metadata/timestamp.json", vec![b' '; 100_000]);
    s.srv.served().chunked = true;
    let err = s.client().check().await.unwrap_err();
    assert_eq!(err.code(), "metadata_too_large", "{err}");
}

#[tokio::test]
async fn oversized_metadata_is_refused() {
    let s = setup().await;
    let mut cfg = config(&s.srv, &s.repo, &s.dir.path().join("state"));
    cfg.limits.max_timestamp_bytes = 100;
    let err = Client::new(cfg).unwrap().check().await.unwrap_err();
    assert_eq!((err.code(), err.exit_code()), ("metadata_too_large", 4), "{err}");
}

#[tokio::test]
async fn hand_made_update_is_not_fetched() {
    let s = setup().await;
    let mut client = s.client();
    let mut update = offered(&mut client).await;
    update.sha256 = "0".repeat(64);
    let err = client.fetch(&update, &s.out(), |_, _| {}).await.unwrap_err();
    assert_eq!(err.code(), "unknown_target", "{err}");
}

#[tokio::test]
async fn expired_timestamp_is_refused() {
    let mut s = setup().await;
    s.repo.timestamp_expires = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    s.repo.publish(&s.srv);
    let err = s.client().check().await.unwrap_err();
    assert_eq!((err.code(), err.exit_code()), ("expired_metadata", 4), "{err}");
}

#[tokio::test]
async fn timestamp_rollback_is_refused() {
    let mut s = setup().await;
    let old = s.srv.served().files["tuf/demo/metadata/timestamp.json"].clone();
    s.repo.publish(&s.srv);
    offered(&mut s.client()).await; // the client now trusts timestamp v2
    s.srv.put("tuf/demo/metadata/timestamp.json", old);
    let err = s.client().check().await.unwrap_err();
    assert!(matches!(&err, ClientError::Tuf(updraft_core::tuf::TufError::RollbackAttack { trusted: 2, new: 1, .. })), "{err}");
    assert_eq!(err.exit_code(), 4);
}

#[tokio::test]
async fn root_rotation_is_followed_and_recovers_from_fast_forward() {
    let mut s = setup().await;
    // The client has seen a (fast-forwarded) timestamp version 50 signed by the old key.
    for _ in 0..49 {
        s.repo.version += 1;
    }
    s.repo.publish(&s.srv);
    offered(&mut s.client()).await;

    // The repository rotates the timestamp key and starts over at version 1.
    s.repo.rotate_timestamp_key(seed(44));
    s.repo.version = 0;
    s.repo.publish(&s.srv);
    let update = offered(&mut s.client()).await;
    assert_eq!(update.version.to_string(), "1.1.0");
    assert!(s.dir.path().join("state/tuf/demo/2.root.json").exists());

    // Without the rotation the same reset would be a rollback.
    let mut s2 = setup().await;
    for _ in 0..49 {
        s2.repo.version += 1;
    }
    s2.repo.publish(&s2.srv);
    offered(&mut s2.client()).await;
    s2.repo.version = 0;
    s2.repo.publish(&s2.srv);
    assert_eq!(s2.client().check().await.unwrap_err().code(), "rollback_attack");
}

#[tokio::test]
async fn root_not_signed_by_previous_root_is_refused() {
    let s = setup().await;
    let mut root = s.repo.root.clone();
    root.version = 2;
    root.keys.insert(seed(99).key_id(), updraft_core::tuf::Signer::public_key(&seed(99)));
    root.roles.root.keyids = vec![seed(99).key_id()];
    let bytes = updraft_core::tuf::to_wire(&updraft_core::tuf::sign(root, &[&seed(99)]).unwrap()).unwrap();
    s.srv.put("tuf/demo/metadata/2.root.json", bytes);
    let err = s.client().check().await.unwrap_err();
    assert_eq!((err.code(), err.exit_code()), ("threshold_not_met", 4), "{err}");
}

#[tokio::test]
async fn wrong_app_target_is_ignored() {
    let mut s = setup().await;
    s.repo.add("other", "9.0.0", "linux-x86_64", b"not ours");
    s.repo.add("demo", "8.0.0", "darwin-aarch64", b"not our platform");
    s.repo.add("demo", "7.0.0", "linux-x86_64", b"other channel").channel = "beta".parse().unwrap();
    s.repo.publish(&s.srv);
    assert_eq!(offered(&mut s.client()).await.version.to_string(), "1.1.0");
}

#[tokio::test]
async fn paused_and_zero_percent_are_not_offered() {
    let srv = Server::start().await;
    let mut repo = Repo::new("demo");
    repo.add("demo", "1.1.0", "linux-x86_64", b"paused").rollout.paused = true;
    repo.add("demo", "1.2.0", "linux-x86_64", b"zero").rollout.basis_points = 0;
    repo.publish(&srv);
    let dir = tempfile::tempdir().unwrap();
    let mut client = Client::new(config(&srv, &repo, dir.path())).unwrap();
    assert_eq!(client.check().await.unwrap(), None);

    repo.add("demo", "1.0.1", "linux-x86_64", b"full");
    repo.publish(&srv);
    assert_eq!(client.check().await.unwrap().unwrap().version.to_string(), "1.0.1");
}

#[tokio::test]
async fn install_then_rollback_restores_old_bytes() {
    let s = setup().await;
    let mut client = s.client();
    let target = s.dir.path().join("app");
    fs::write(&target, b"old version").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let update = offered(&mut client).await;
    let record = client.install(&update, &target, |_, _| {}).await.unwrap();
    assert_eq!(fs::read(&target).unwrap(), payload(1));
    assert_eq!(fs::read(s.dir.path().join("app.previous")).unwrap(), b"old version");
    assert_eq!(record.version.to_string(), "1.1.0");
    assert_eq!(record.previous_version.map(|v| v.to_string()).as_deref(), Some("1.0.0"));
    let stored: serde_json::Value = serde_json::from_slice(&fs::read(s.dir.path().join("state/installed.json")).unwrap()).unwrap();
    assert_eq!(stored, serde_json::json!({"app": "demo", "version": "1.1.0", "previous_version": "1.0.0"}));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o755);
    }
    // Installed: nothing newer is offered now.
    assert_eq!(client.check().await.unwrap(), None);

    let restored = client.rollback(&target).await.unwrap();
    assert_eq!(restored.map(|v| v.to_string()).as_deref(), Some("1.0.0"));
    assert_eq!(fs::read(&target).unwrap(), b"old version");
    let err = client.rollback(&target).await.unwrap_err();
    assert!(matches!(err, ClientError::NoPrevious { .. }), "{err}");
    assert_eq!(err.code(), "no_previous_version");
    // Running 1.0.0 again, so 1.1.0 is offered again.
    assert!(client.check().await.unwrap().is_some());
}

#[tokio::test]
async fn unreachable_server_is_a_network_error() {
    let s = setup().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut cfg = config(&s.srv, &s.repo, s.dir.path());
    cfg.server = format!("http://{addr}");
    let err = Client::new(cfg).unwrap().check().await.unwrap_err();
    assert_eq!((err.code(), err.exit_code()), ("network_error", 5), "{err}");

    // A missing timestamp is a server problem, too.
    s.srv.served().files.remove("tuf/demo/metadata/timestamp.json");
    let err = s.client().check().await.unwrap_err();
    assert_eq!((err.code(), err.exit_code()), ("not_found", 5), "{err}");
}

#[test]
fn bad_pinned_root_is_refused_at_construction() {
    let repo = Repo::new("demo");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = updraft_client::ClientConfig {
        server: "http://127.0.0.1:1".into(),
        trusted_root: b"{}".to_vec(),
        ..config_without_server(&repo, dir.path())
    };
    assert_eq!(Client::new(cfg.clone()).unwrap_err().exit_code(), 4);
    cfg.trusted_root = repo.pinned_root();
    cfg.server = "http://user:secret@127.0.0.1:1".into();
    let err = Client::new(cfg).unwrap_err();
    assert_eq!(err.code(), "invalid_config");
    assert!(!err.to_string().contains("secret"), "{err}");
}

fn config_without_server(repo: &Repo, dir: &std::path::Path) -> updraft_client::ClientConfig {
    updraft_client::ClientConfig {
        server: String::new(),
        app: repo.app.clone(),
        channel: "stable".parse().unwrap(),
        platform: "linux-x86_64".parse().unwrap(),
        current: "1.0.0".parse().unwrap(),
        trusted_root: repo.pinned_root(),
        state_dir: dir.to_owned(),
        client_id: None,
        limits: Default::default(),
    }
}
