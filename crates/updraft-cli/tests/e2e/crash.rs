//! Crashes: state survives `kill -9`, and a `kill -9` in the middle of an upload leaves no
//! partial release or blob visible.

use std::time::{Duration, Instant};

use crate::harness::*;

#[test]
fn state_survives_kill_9_and_restart() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    let payload = bytes(300_000, 6);
    publish(&server, dir.path(), "demo", "1.1.0", "linux-x86_64", &payload, &["--rollout", "42.5"]);
    let http = http();
    let ts_before = http.get(server.url("/tuf/demo/metadata/timestamp.json")).send().unwrap().bytes().unwrap();
    server.kill9();

    let server = Server::start(&data);
    let rels = server.cli(&["release", "list", "demo", "--json"]).ok().json();
    assert_eq!(rels["releases"][0]["version"], "1.1.0");
    assert_eq!(rels["releases"][0]["rollout_percent"], 42.5);
    let ts_after = http.get(server.url("/tuf/demo/metadata/timestamp.json")).send().unwrap().bytes().unwrap();
    assert_eq!(ts_before, ts_after, "metadata is not re-signed without need");
    let blob = http.get(server.url(&format!("/v1/blobs/{}", sha256_hex(&payload)))).send().unwrap();
    assert_eq!(blob.bytes().unwrap().as_ref(), payload.as_slice());
    // The bootstrap token still works (it was not re-created), and the audit trail is there.
    let out = server.cli(&["token", "list", "--json"]).ok().json();
    assert_eq!(out["tokens"].as_array().unwrap().len(), 1);
}

#[test]
fn kill_9_during_a_200_mb_upload_leaves_nothing_visible() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    // 200 MB: a 1 MiB pattern repeated (content does not matter, only that it is big).
    let block = bytes(1 << 20, 7);
    let big = dir.path().join("big.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        for _ in 0..200 {
            f.write_all(&block).unwrap();
        }
    }
    let artifact = format!("linux-x86_64={}", big.display());
    let mut publisher = std::process::Command::new(bin())
        .args(["release", "publish", "demo", "9.9.9", "--channel", "stable", "--artifact", &artifact, "--json"])
        .env("UPDRAFT_SERVER", &server.url)
        .env("UPDRAFT_TOKEN", TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the upload is under way (some bytes on disk, far from all), then crash.
    let storage = crate::backend::Storage::of(&data);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let received = storage.upload_bytes();
        if received > 1 << 20 {
            assert!(received < 200 << 20, "upload finished before the crash; the test proves nothing");
            break;
        }
        assert!(Instant::now() < deadline, "upload never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill9();
    let status = publisher.wait().unwrap();
    assert!(!status.success(), "publish must fail when the server dies");

    let server = Server::start(&data);
    let http = http();
    let rels = server.cli(&["release", "list", "demo", "--json"]).ok().json();
    assert_eq!(rels["releases"].as_array().unwrap().len(), 0, "no release, not even a draft");
    assert_eq!(http.get(server.url("/v1/update/demo/stable/linux-x86_64?current=1.0.0&client=a")).send().unwrap().status(), 204);
    let mut whole = Vec::new();
    for _ in 0..200 {
        whole.extend_from_slice(&block);
    }
    assert_eq!(http.get(server.url(&format!("/v1/blobs/{}", sha256_hex(&whole)))).send().unwrap().status(), 404);
    // Nothing at all under the content-addressed tree: partial bytes live only in uploads/.
    let stored = storage.stored_blobs();
    assert!(stored.is_empty(), "unexpected blobs: {stored:?}");
    // TUF targets are still empty.
    let ts: serde_json::Value = http.get(server.url("/tuf/demo/metadata/timestamp.json")).send().unwrap().json().unwrap();
    assert_eq!(ts["signed"]["version"], 1);
}

#[test]
fn sigterm_lets_an_in_flight_download_finish() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    let payload = bytes(64 << 20, 8);
    publish(&server, dir.path(), "demo", "1.0.0", "linux-x86_64", &payload, &[]);
    let http = http();
    let mut resp = http.get(server.url(&format!("/v1/blobs/{}", sha256_hex(&payload)))).send().unwrap();
    let mut first = vec![0u8; 1024];
    std::io::Read::read_exact(&mut resp, &mut first).unwrap();
    server.sigterm();
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut resp, &mut rest).unwrap();
    first.extend(rest);
    assert_eq!(sha256_hex(&first), sha256_hex(&payload), "the download finished whole after SIGTERM");
    let mut server = server;
    let status = server.child.wait().unwrap();
    assert!(status.success(), "graceful exit: {status:?}");
}
