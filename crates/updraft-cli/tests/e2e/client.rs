//! The client against a real server: verified fetch, no-update, tampering refused, install
//! and rollback, and the signed rollout agreeing with the server's answer.

use std::path::Path;

use crate::harness::*;

struct ClientArgs<'a> {
    server: &'a Server,
    trust: String,
    state: String,
}

impl<'a> ClientArgs<'a> {
    fn new(server: &'a Server, dir: &Path, name: &str) -> Self {
        // The app ships its trusted root; the client is pointed at that copy, not the server's.
        let trust = dir.join(format!("{name}.root.json"));
        std::fs::copy(server.data.join("trust/demo.root.json"), &trust).unwrap();
        ClientArgs { server, trust: trust.display().to_string(), state: dir.join(format!("{name}-state")).display().to_string() }
    }

    fn run(&self, verb: &str, current: &str, extra: &[&str]) -> Out {
        demo_client(self.server, std::path::Path::new(&self.trust), std::path::Path::new(&self.state), verb, current, extra)
    }
}

#[test]
fn client_fetches_verified_identical_bytes_and_refuses_tampering() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    let payload = bytes(6 * 1024 * 1024 + 3, 11);
    publish(&server, dir.path(), "demo", "1.1.0", "linux-x86_64", &payload, &[]);
    let client = ClientArgs::new(&server, dir.path(), "c1");

    let out = client.run("check", "1.0.0", &["--json"]).ok();
    assert_eq!(out.json()["update"]["version"], "1.1.0");
    let dest = dir.path().join("fetched.bin");
    client.run("fetch", "1.0.0", &["--out", dest.to_str().unwrap()]).ok();
    assert_eq!(std::fs::read(&dest).unwrap(), payload, "fetched bytes are identical");

    // An up-to-date client: exit 3, "no update".
    let out = client.run("check", "1.1.0", &[]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stdout.contains("no update"));

    // Tamper with the blob on the server's disk: same length, one byte flipped.
    crate::backend::Storage::of(&data).corrupt_blob(&sha256_hex(&payload), 1234);
    let dest2 = dir.path().join("tampered.bin");
    let out = client.run("fetch", "1.0.0", &["--out", dest2.to_str().unwrap()]);
    assert_eq!(out.code, 4, "verification refusal exit code: {out:?}");
    assert!(out.stderr.contains("hash_mismatch"), "{out:?}");
    assert!(!dest2.exists(), "nothing written for a refused download");
    assert!(!dir.path().join("tampered.bin.part").exists(), "no partial file left behind");

    // Metadata tampering is refused too: a client whose trusted root is another app's.
    server.cli(&["app", "create", "other"]).ok();
    let wrong = ClientArgs {
        server: &server,
        trust: data.join("trust/other.root.json").display().to_string(),
        state: dir.path().join("c2-state").display().to_string(),
    };
    let out = wrong.run("check", "1.0.0", &[]);
    assert_eq!(out.code, 4, "metadata signed by keys the client does not trust: {out:?}");
}

#[test]
fn client_install_replaces_atomically_and_rolls_back() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    let new = bytes(200_000, 12);
    publish(&server, dir.path(), "demo", "1.1.0", "linux-x86_64", &new, &[]);
    let client = ClientArgs::new(&server, dir.path(), "c1");
    let installed = dir.path().join("my-app");
    std::fs::write(&installed, b"old version 1.0.0").unwrap();

    let out = client.run("install", "1.0.0", &["--target", installed.to_str().unwrap(), "--json"]).ok();
    assert_eq!(out.json()["installed"], "1.1.0");
    assert_eq!(std::fs::read(&installed).unwrap(), new);
    assert_eq!(std::fs::read(dir.path().join("my-app.previous")).unwrap(), b"old version 1.0.0");

    client.run("install", "1.1.0", &["--target", installed.to_str().unwrap(), "--rollback"]).ok();
    assert_eq!(std::fs::read(&installed).unwrap(), b"old version 1.0.0");
    let out = client.run("install", "1.0.0", &["--target", installed.to_str().unwrap(), "--rollback"]);
    assert_eq!(out.code, 1, "nothing left to roll back to: {out:?}");
    assert!(out.stderr.contains("no_previous_version"), "{out:?}");
}

#[test]
fn client_and_server_agree_on_the_signed_rollout() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    publish(&server, dir.path(), "demo", "1.1.0", "linux-x86_64", &bytes(1000, 13), &["--rollout", "30"]);
    let client = ClientArgs::new(&server, dir.path(), "c1");
    let http = http();
    let (mut offered, mut agreed) = (0, 0);
    for i in 0..40 {
        let id = format!("install-{i}");
        let server_says =
            http.get(server.url(&format!("/v1/update/demo/stable/linux-x86_64?current=1.0.0&client={id}"))).send().unwrap().status() == 200;
        let out = client.run("check", "1.0.0", &["--client-id", &id]);
        assert!(out.code == 0 || out.code == 3, "{out:?}");
        let client_says = out.code == 0;
        offered += usize::from(client_says);
        agreed += usize::from(client_says == server_says);
    }
    assert_eq!(agreed, 40, "the client's signed-metadata decision must match the server's");
    assert!(offered > 0 && offered < 40, "30% of 40 clients should be neither none nor all: {offered}");

    // Pausing is signed too: the client stops taking it.
    server.cli(&["rollout", "set", "demo", "1.1.0", "--percent", "100"]).ok();
    assert_eq!(client.run("check", "1.0.0", &[]).code, 0);
    server.cli(&["rollout", "pause", "demo", "1.1.0"]).ok();
    assert_eq!(client.run("check", "1.0.0", &[]).code, 3);
}
