//! In-process server tests: the server library started on a random port over a temporary data
//! directory, driven through its operations where a test needs control of the clock.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};
use updraft_core::tuf::TrustedSet;
use updraft_core::AppId;
use updraft_server::auth::{Caller, Role};
use updraft_server::{ops, Config, RawConfig, Server};

fn config(data: &std::path::Path, passphrase: Option<&str>) -> Config {
    RawConfig {
        data: Some(data.to_owned()),
        listen: Some("127.0.0.1:0".into()),
        key_passphrase: passphrase.map(str::to_owned),
        ..Default::default()
    }
    .validate()
    .unwrap()
}

fn admin() -> Caller {
    Caller { token_id: "test".into(), name: "test".into(), role: Role::Admin, apps: Arc::new(vec![]) }
}

async fn versions(s: &Server) -> (u64, u64, u64, u64) {
    (
        latest_version(s, "root").await,
        latest_version(s, "targets").await,
        latest_version(s, "snapshot").await,
        latest_version(s, "timestamp").await,
    )
}

async fn latest_version(server: &Server, role: &str) -> u64 {
    server.state().store.latest_metadata("demo", role).await.unwrap().unwrap().version
}

/// Verifies the newest metadata as a client would at time `at`.
async fn verify_newest(server: &Server, at: OffsetDateTime) {
    let store = &server.state().store;
    let get = |role: &'static str| async move { store.latest_metadata("demo", role).await.unwrap().unwrap().body };
    let mut trusted = TrustedSet::new(&store.get_metadata("demo", "root", 1).await.unwrap().unwrap().body).unwrap();
    let root_v = latest_version(server, "root").await;
    for v in 2..=root_v {
        trusted.update_root(&store.get_metadata("demo", "root", v).await.unwrap().unwrap().body).unwrap();
    }
    trusted.check_root(at).unwrap();
    trusted.update_timestamp(&get("timestamp").await, at).unwrap();
    trusted.update_snapshot(&get("snapshot").await, at).unwrap();
    trusted.update_targets(&get("targets").await, at).unwrap();
}

#[tokio::test]
async fn metadata_is_re_signed_before_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path(), None)).await.unwrap();
    let app: AppId = "demo".parse().unwrap();
    ops::create_app(server.state(), &admin(), &app, None).await.unwrap();
    let now = OffsetDateTime::now_utc();
    assert_eq!(versions(&server).await, (1, 1, 1, 1));

    // Fresh metadata is left alone.
    assert_eq!(ops::refresh_expiring_metadata(server.state(), now).await.unwrap(), 0);
    assert_eq!(versions(&server).await, (1, 1, 1, 1));

    // 13 hours on, the 1-day timestamp is past half its life: only it is re-signed.
    let t1 = now + Duration::hours(13);
    assert_eq!(ops::refresh_expiring_metadata(server.state(), t1).await.unwrap(), 1);
    assert_eq!(versions(&server).await, (1, 1, 1, 2));
    verify_newest(&server, t1 + Duration::hours(1)).await;

    // 4 days on, the 7-day snapshot is due (and so a timestamp naming it).
    let t2 = now + Duration::days(4);
    ops::refresh_expiring_metadata(server.state(), t2).await.unwrap();
    assert_eq!(versions(&server).await, (1, 1, 2, 3));
    verify_newest(&server, t2 + Duration::hours(1)).await;

    // 46 days on, targets (90 days) is due; 200 days on, the root (1 year) too.
    let t3 = now + Duration::days(46);
    ops::refresh_expiring_metadata(server.state(), t3).await.unwrap();
    assert_eq!(versions(&server).await, (1, 2, 3, 4));
    let t4 = now + Duration::days(200);
    ops::refresh_expiring_metadata(server.state(), t4).await.unwrap();
    assert_eq!(versions(&server).await, (2, 3, 4, 5));
    // A client that pinned root v1 follows the chain and trusts it all, 200 days on.
    verify_newest(&server, t4 + Duration::hours(1)).await;
}

#[tokio::test]
async fn encrypted_keys_need_their_passphrase_at_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let server = Server::start(config(dir.path(), Some("correct horse battery"))).await.unwrap();
        ops::create_app(server.state(), &admin(), &"demo".parse().unwrap(), None).await.unwrap();
    }
    let key = std::fs::read_to_string(dir.path().join("keys/demo/targets.key")).unwrap();
    assert!(key.contains("argon2id-chacha20poly1305"), "key file is encrypted: {key}");
    for (pass, want) in [(None, "UPDRAFT_KEY_PASSPHRASE"), (Some("wrong"), "wrong passphrase")] {
        let err = Server::start(config(dir.path(), pass)).await.err().expect("start must fail");
        let text = err.to_string();
        assert!(text.contains(want) && text.contains("demo"), "{text}");
        assert!(!text.contains("correct horse"), "the passphrase is never echoed");
    }
    Server::start(config(dir.path(), Some("correct horse battery"))).await.unwrap();
}

/// The OpenAPI document is a published interface: any change to it must show up in review as
/// a change to `docs/openapi.json`. Regenerate with `UPDATE_SNAPSHOTS=1 cargo test -p updraft-server openapi`.
#[test]
fn openapi_document_matches_the_committed_snapshot() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let current = updraft_server::openapi::document() + "\n";
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &current).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == current,
        "docs/openapi.json is out of date: run UPDATE_SNAPSHOTS=1 cargo test -p updraft-server openapi, and review the diff"
    );
    // Every operation has an id, a tag and documented errors; admin ones require the token.
    let doc: serde_json::Value = serde_json::from_str(&current).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(op["operationId"].is_string(), "{method} {path}: no operationId");
            assert!(op["responses"]["400"].is_object(), "{method} {path}: errors undocumented");
            if path.starts_with("/v1/admin/") {
                assert_eq!(op["security"][0]["bearer"], serde_json::json!([]), "{method} {path}: no security requirement");
            }
        }
    }
}
