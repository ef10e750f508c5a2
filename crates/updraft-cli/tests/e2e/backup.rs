//! Backups: create → wipe → restore gives back every byte clients saw, and clients that saw
//! newer metadata than the backup accept the restored server. On the suite's backend: the
//! embedded default (the whole data directory lost) or PostgreSQL + S3 (the database lost, the
//! bucket kept).

use std::path::{Path, PathBuf};

use crate::backend::{backend_env, shared_backend, Storage};
use crate::harness::*;

const PUBLIC_URL: &str = "https://updates.example.com";

/// Runs `updraft` with `env` (a server's storage settings) and `args`.
fn updraft(env: &[(&'static str, String)], args: &[&str]) -> Out {
    let mut cmd = std::process::Command::new(bin());
    cmd.args(args).env_remove("UPDRAFT_CONFIG").env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run updraft");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The storage settings of the harness server on `data`, as the CLI takes them.
fn storage_env(data: &Path) -> Vec<(&'static str, String)> {
    let mut env = backend_env(data).unwrap_or_default();
    env.push(("UPDRAFT_DATA", data.display().to_string()));
    env.push(("UPDRAFT_PUBLIC_URL", PUBLIC_URL.into()));
    env
}

fn start(data: &Path) -> Server {
    Server::start_with(data, Opts { env: vec![("UPDRAFT_PUBLIC_URL", PUBLIC_URL.into())] })
}

fn client(server: &Server, trust: &Path, state: &Path, extra: &[&str]) -> Out {
    demo_client(server, trust, state, "fetch", "0.1.0", extra)
}

fn get(server: &Server, path: &str) -> (u16, Vec<u8>) {
    let r = http().get(server.url(path)).send().unwrap();
    (r.status().as_u16(), r.bytes().unwrap().to_vec())
}

fn version_of(server: &Server, app: &str, role: &str) -> u64 {
    let (status, body) = get(server, &format!("/tuf/{app}/metadata/{role}.json"));
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    doc["signed"]["version"].as_u64().unwrap()
}

/// Every path a client could have fetched: each metadata version, the targets, the blobs, the
/// update answers for 40 installs, and the compatible feeds.
fn client_visible_paths(server: &Server, blobs: &[String]) -> Vec<String> {
    let mut paths = Vec::new();
    for app in ["demo", "tools"] {
        let ts: serde_json::Value = serde_json::from_slice(&get(server, &format!("/tuf/{app}/metadata/timestamp.json")).1).unwrap();
        let snapshot = ts["signed"]["meta"]["snapshot.json"]["version"].as_u64().unwrap();
        let mut n = 1;
        while get(server, &format!("/tuf/{app}/metadata/{n}.root.json")).0 == 200 {
            paths.push(format!("/tuf/{app}/metadata/{n}.root.json"));
            n += 1;
        }
        for n in 1..=snapshot {
            paths.push(format!("/tuf/{app}/metadata/{n}.snapshot.json"));
            paths.push(format!("/tuf/{app}/metadata/{n}.targets.json"));
        }
        let targets = latest_targets(server, app);
        for (path, t) in targets["signed"]["targets"].as_object().unwrap() {
            let (dir, file) = path.rsplit_once('/').unwrap();
            paths.push(format!("/tuf/{app}/targets/{dir}/{}.{file}", t["hashes"]["sha256"].as_str().unwrap()));
        }
    }
    paths.extend(blobs.iter().map(|b| format!("/v1/blobs/{b}")));
    for i in 0..40 {
        paths.push(format!("/v1/update/demo/stable/linux-x86_64?current=0.9.0&client=install-{i}"));
    }
    paths.extend(
        [
            "/compat/tauri/demo/stable/latest.json",
            "/compat/tauri/demo/minisign.pub",
            "/compat/electron/demo/stable/latest-linux.yml",
            "/compat/velopack/demo/releases.linux.json",
            "/compat/sparkle/demo/stable/appcast.xml",
            "/compat/sparkle/demo/ed25519.pub",
        ]
        .map(String::from),
    );
    paths
}

fn tamper(src: &Path, dst: &Path, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(src).unwrap();
    edit(&mut bytes);
    std::fs::write(dst, bytes).unwrap();
    dst.to_owned()
}

#[test]
fn backup_create_wipe_restore_gives_back_every_byte_and_clients_that_saw_newer_metadata_accept_it() {
    let (dir, data) = scratch();
    let server = start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    server.cli(&["app", "create", "tools"]).ok();
    let (p1, p2, p3) = (bytes(300_000, 21), bytes(1_500_000, 22), bytes(50_000, 23));
    publish(&server, dir.path(), "demo", "1.0.0", "linux-x86_64", &p1, &[]);
    publish(&server, dir.path(), "demo", "1.1.0", "linux-x86_64", &p2, &["--rollout", "30"]);
    publish(&server, dir.path(), "tools", "2.0.0", "linux-x86_64", &p3, &[]);
    server.cli(&["token", "create", "--role", "viewer"]).ok();
    let trust = dir.path().join("demo.root.json");
    std::fs::write(&trust, get(&server, "/tuf/demo/metadata/1.root.json").1).unwrap();
    // A client that saw the metadata as it is at the backup.
    client(&server, &trust, &dir.path().join("early"), &["--out", dir.path().join("early.bin").to_str().unwrap()]).ok();

    let blobs: Vec<String> = [&p1, &p2, &p3].iter().map(|p| sha256_hex(p)).collect();
    let paths = client_visible_paths(&server, &blobs);
    let before: Vec<(u16, Vec<u8>)> = paths.iter().map(|p| get(&server, p)).collect();
    for (p, (status, _)) in paths.iter().zip(&before) {
        assert_eq!(*status, 200, "{p}");
    }
    let events = server.cli(&["audit", "verify", "--json"]).ok().json()["events"].as_u64().unwrap();

    // Back up, twice: a file with the blobs, and (shared backend) an S3 object without them.
    let key = dir.path().join("backup.key");
    let recipient = updraft(&[], &["backup", "keygen", "--out", key.to_str().unwrap()]).ok().stdout.trim().to_owned();
    assert!(recipient.starts_with("age1"), "{recipient}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let env = storage_env(&data);
    let archive = dir.path().join("full.age");
    let made = updraft(&env, &["backup", "create", "--to", archive.to_str().unwrap(), "--recipient", &recipient, "--with-blobs", "--json"])
        .ok()
        .json();
    assert_eq!(made["apps"], 2, "{made}");
    assert_eq!(made["blobs"], 3, "{made}");
    assert_eq!(made["with_blobs"], true, "{made}");
    assert_eq!(made["tables"]["releases"], 3, "{made}");
    let plain = std::fs::read(&archive).unwrap();
    assert!(plain.starts_with(b"age-encryption.org/v1\n"), "an age file");
    assert!(!plain.windows(p2.len().min(64)).any(|w| w == &p2[..64]), "blob bytes are not in the clear");
    // Never over an existing backup.
    let again = updraft(&env, &["backup", "create", "--to", archive.to_str().unwrap(), "--recipient", &recipient]);
    assert_eq!(again.code, 6, "{again:?}");
    let s3_archive = shared_backend().then(|| {
        let Storage::Shared { bucket, .. } = Storage::of(&data) else { unreachable!() };
        format!("s3://{bucket}/backups/nightly.age")
    });
    if let Some(url) = &s3_archive {
        let made = updraft(&env, &["backup", "create", "--to", url, "--recipient", &recipient, "--json"]).ok().json();
        assert_eq!(made["with_blobs"], false, "{made}");
    }

    // verify: whole, and every kind of damage refused with exit code 4.
    let verified = updraft(&env, &["backup", "verify", "--from", archive.to_str().unwrap(), "--identity", key.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(verified["ok"], true, "{verified}");
    assert_eq!(verified["blobs_included"], 3, "{verified}");
    let flipped = tamper(&archive, &dir.path().join("flipped.age"), |b| {
        let at = b.len() / 2;
        b[at] ^= 1;
    });
    let truncated = tamper(&archive, &dir.path().join("truncated.age"), |b| b.truncate(b.len() - 70_000));
    let tail_cut = tamper(&archive, &dir.path().join("tail.age"), |b| b.truncate(b.len() - 16));
    let other_key = dir.path().join("other.key");
    updraft(&[], &["backup", "keygen", "--out", other_key.to_str().unwrap()]).ok();
    for (file, id) in [(&flipped, &key), (&truncated, &key), (&tail_cut, &key), (&archive, &other_key)] {
        let out = updraft(&env, &["backup", "verify", "--from", file.to_str().unwrap(), "--identity", id.to_str().unwrap()]);
        assert_eq!(out.code, 4, "{file:?} with {id:?}: {out:?}");
    }

    // After the backup the server goes on: a release, seen by a second client.
    publish(&server, dir.path(), "demo", "1.2.0", "linux-x86_64", &bytes(80_000, 24), &[]);
    client(&server, &trust, &dir.path().join("late"), &["--out", dir.path().join("late.bin").to_str().unwrap()]).ok();
    let seen_late = version_of(&server, "demo", "timestamp");
    drop(server);

    // The disaster. Embedded: the whole data directory is gone, marks and all, so the operator
    // gives the newest version a client or the CDN shows. Shared: the database is gone, the
    // bucket (with the served-version marks) survives, and nothing else is needed.
    let restored_data = dir.path().join("restored");
    let mut restore_env = vec![("UPDRAFT_DATA", restored_data.display().to_string()), ("UPDRAFT_PUBLIC_URL", PUBLIC_URL.into())];
    let floor = seen_late.to_string();
    let mut restore_args = vec!["backup", "restore", "--from", archive.to_str().unwrap(), "--identity", key.to_str().unwrap(), "--json"];
    match Storage::of(&data) {
        Storage::Embedded(_) => {
            std::fs::remove_dir_all(&data).unwrap();
            restore_args.extend(["--served-floor", &floor]);
        }
        Storage::Shared { bucket, .. } => {
            let db = pg_database();
            std::fs::write(restored_data.with_extension("backend"), format!("{db}\n{bucket}\n")).unwrap();
            restore_env.extend(crate::backend::shared_env(&db, &bucket));
        }
    }
    let restored = updraft(&restore_env, &restore_args).ok().json();
    assert!(restored["rows"].as_u64().unwrap() > 0, "{restored}");
    // Into a filled database: refused, nothing touched.
    let twice = updraft(&restore_env, &restore_args);
    assert_eq!(twice.code, 6, "{twice:?}");

    let server = start(&restored_data);
    let after: Vec<(u16, Vec<u8>)> = paths.iter().map(|p| get(&server, p)).collect();
    for ((p, a), b) in paths.iter().zip(&after).zip(&before) {
        assert_eq!(a.0, b.0, "{p}");
        assert!(a.1 == b.1, "{p} differs after the restore");
    }
    // Signed above anything served, the post-backup release gone with the lost database.
    assert!(version_of(&server, "demo", "timestamp") > seen_late);
    let (status, _) = get(&server, "/v1/update/demo/stable/linux-x86_64?current=1.1.0&client=x");
    assert!(status == 204 || status == 200);
    // Both clients go on with the restored server: the one that saw the backup's metadata and
    // the one that saw newer metadata (no rollback refusal).
    for who in ["early", "late"] {
        let out_file = dir.path().join(format!("{who}-after.bin"));
        client(&server, &trust, &dir.path().join(who), &["--out", out_file.to_str().unwrap()]).ok();
        let got = std::fs::read(&out_file).unwrap();
        assert!(got == p1 || got == p2, "{who}: fetched bytes are neither restored release");
    }
    // The audit chain is whole: the backup's events and one restore event per app.
    let audit = server.cli(&["audit", "verify", "--json"]).ok().json();
    assert_eq!(audit["events"].as_u64().unwrap(), events + 2, "{audit}");
    // It signs with the restored keys, gap-free from the re-signed versions on.
    let v = version_of(&server, "demo", "timestamp");
    publish(&server, dir.path(), "demo", "1.3.0", "linux-x86_64", &bytes(10_000, 25), &[]);
    assert_eq!(version_of(&server, "demo", "timestamp"), v + 1);
    drop(server);

    // A backup of one kind of store restores into the other: the shared one's archive (with
    // blobs) into an embedded data directory.
    if shared_backend() {
        let embedded = dir.path().join("embedded");
        let env = vec![
            ("UPDRAFT_DATA", embedded.display().to_string()),
            ("UPDRAFT_DATABASE", format!("sqlite://{}", embedded.join("updraft.db").display())),
            ("UPDRAFT_BLOBS", embedded.join("blobs").display().to_string()),
            ("UPDRAFT_PUBLIC_URL", PUBLIC_URL.into()),
        ];
        updraft(
            &env,
            &["backup", "restore", "--from", archive.to_str().unwrap(), "--identity", key.to_str().unwrap(), "--served-floor", &floor],
        )
        .ok();
        let server = Server::start_with(&embedded, Opts { env: env[1..].to_vec() });
        for (p, (status, body)) in paths.iter().zip(&before).filter(|(p, _)| p.contains(".targets.json") || p.starts_with("/v1/")) {
            let got = get(&server, p);
            assert!(got.0 == *status && got.1 == *body, "{p} differs in the embedded restore");
        }
        let out_file = dir.path().join("embedded.bin");
        client(&server, &trust, &dir.path().join("embedded-client"), &["--out", out_file.to_str().unwrap()]).ok();
    }

    // From S3, into a third database, using the surviving bucket's blobs.
    if let Some(url) = &s3_archive {
        let Storage::Shared { bucket, .. } = Storage::of(&data) else { unreachable!() };
        let db = pg_database();
        let third = dir.path().join("third");
        let mut env = crate::backend::shared_env(&db, &bucket);
        env.push(("UPDRAFT_DATA", third.display().to_string()));
        let v =
            updraft(&env, &["backup", "verify", "--from", url, "--identity", key.to_str().unwrap(), "--check-blobs", "--json"]).ok().json();
        assert_eq!(v["missing_blobs"].as_array().map(Vec::len), Some(0), "{v}");
        updraft(&env, &["backup", "restore", "--from", url, "--identity", key.to_str().unwrap()]).ok();
        std::fs::write(third.with_extension("backend"), format!("{db}\n{bucket}\n")).unwrap();
        let server = start(&third);
        assert_eq!(get(&server, &format!("/v1/blobs/{}", blobs[1])).1, p2);
        assert!(version_of(&server, "demo", "timestamp") > v["apps"]["demo"]["timestamp"].as_u64().unwrap());
    }
}

#[test]
fn a_restore_cut_short_keeps_servers_down_until_it_is_run_again() {
    let (dir, data) = scratch();
    let server = start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    publish(&server, dir.path(), "demo", "1.0.0", "linux-x86_64", &bytes(20_000, 31), &[]);
    let key = dir.path().join("k");
    let recipient = updraft(&[], &["backup", "keygen", "--out", key.to_str().unwrap()]).ok().stdout.trim().to_owned();
    let archive = dir.path().join("b.age");
    updraft(&storage_env(&data), &["backup", "create", "--to", archive.to_str().unwrap(), "--recipient", &recipient, "--with-blobs"]).ok();
    drop(server);

    // A restore that died after committing the rows but before re-signing (as a kill -9 at
    // that point leaves it): its flag is set.
    let target = dir.path().join("target");
    let env = storage_env(&target);
    updraft(&env, &["backup", "restore", "--from", archive.to_str().unwrap(), "--identity", key.to_str().unwrap()]).ok();
    Storage::of(&target).sql("INSERT INTO settings (key, value) VALUES ('restore_pending', 'test')");
    // A server refuses to start on it, saying what to do.
    let mut serve = std::process::Command::new(bin());
    serve.args(["serve", "--listen", "127.0.0.1:0"]).env("UPDRAFT_BOOTSTRAP_TOKEN", TOKEN);
    for (k, v) in &env {
        serve.env(k, v);
    }
    let out = serve.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("restore") && err.contains("has not finished"), "{err}");
    // Running the restore again finishes it (re-signs, clears the flag); then it serves.
    let done = updraft(&env, &["backup", "restore", "--from", archive.to_str().unwrap(), "--identity", key.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(done["apps"][0]["app"], "demo", "{done}");
    let server = start(&target);
    let trust = dir.path().join("root.json");
    std::fs::write(&trust, get(&server, "/tuf/demo/metadata/1.root.json").1).unwrap();
    client(&server, &trust, &dir.path().join("st"), &["--out", dir.path().join("o.bin").to_str().unwrap()]).ok();
}

#[test]
fn backup_commands_refuse_bad_input_with_clear_errors() {
    let (dir, data) = scratch();
    let env = vec![("UPDRAFT_DATA", data.display().to_string())];
    let key = dir.path().join("k");
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (vec!["backup".into(), "create".into(), "--to".into(), "x.age".into()], 2, "--recipient"),
        (vec!["backup".into(), "create".into(), "--to".into(), "x.age".into(), "--recipient".into(), "age1nope".into()], 2, "not an age"),
        (vec!["backup".into(), "create".into(), "--to".into(), "ftp://h/x".into(), "--recipient".into(), "age1x".into()], 2, "location"),
        (
            vec!["backup".into(), "verify".into(), "--from".into(), "x.age".into(), "--identity".into(), key.display().to_string()],
            2,
            "cannot read",
        ),
    ];
    for (args, code, says) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = updraft(&env, &args);
        assert_eq!(out.code, code, "{args:?}: {out:?}");
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
    // A key file that is not an age identity, and an archive that is not an age file.
    std::fs::write(&key, "hello\n").unwrap();
    let junk = dir.path().join("junk.age");
    std::fs::write(&junk, b"not a backup").unwrap();
    let out = updraft(&env, &["backup", "verify", "--from", junk.to_str().unwrap(), "--identity", key.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:?}");
    updraft(&[], &["backup", "keygen", "--out", dir.path().join("k2").to_str().unwrap()]).ok();
    let out = updraft(&env, &["backup", "verify", "--from", junk.to_str().unwrap(), "--identity", dir.path().join("k2").to_str().unwrap()]);
    assert_eq!(out.code, 4, "{out:?}");
    assert!(out.stderr.contains("not an age file"), "{}", out.stderr);
    // keygen never overwrites.
    let out = updraft(&[], &["backup", "keygen", "--out", dir.path().join("k2").to_str().unwrap()]);
    assert_eq!(out.code, 1, "{out:?}");
}

#[test]
fn the_reference_age_cli_opens_backups_and_its_keys_work_with_updraft() {
    let (dir, data) = scratch();
    let server = start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    let artifact = bytes(200_000, 41);
    publish(&server, dir.path(), "demo", "1.0.0", "linux-x86_64", &artifact, &[]);
    // One key made by the reference `age-keygen`, one by `updraft backup keygen`.
    let age_key = dir.path().join("age.key");
    let keygen = std::process::Command::new("age-keygen")
        .arg("-o")
        .arg(&age_key)
        .output()
        .expect("age-keygen is installed (scripts/ensure-packages.sh)");
    assert!(keygen.status.success(), "{}", String::from_utf8_lossy(&keygen.stderr));
    let age_recipient =
        std::fs::read_to_string(&age_key).unwrap().lines().find_map(|l| l.strip_prefix("# public key: ")).unwrap().to_owned();
    let our_key = dir.path().join("ours.key");
    let our_recipient = updraft(&[], &["backup", "keygen", "--out", our_key.to_str().unwrap()]).ok().stdout.trim().to_owned();
    let archive = dir.path().join("b.age");
    updraft(
        &storage_env(&data),
        &[
            "backup",
            "create",
            "--to",
            archive.to_str().unwrap(),
            "--recipient",
            &age_recipient,
            "--recipient",
            &our_recipient,
            "--with-blobs",
        ],
    )
    .ok();

    // `age -d` with Updraft's key gives a tar stream: header first, manifest last, the blob whole.
    let out = std::process::Command::new("age").arg("-d").arg("-i").arg(&our_key).arg(&archive).output().expect("age is installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut tar = tar::Archive::new(out.stdout.as_slice());
    let mut names = Vec::new();
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut body).unwrap();
        if name == "updraft-backup.json" {
            let h: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(h["format"], "updraft-backup/1");
        }
        if name == format!("blobs/{}", sha256_hex(&artifact)) {
            assert!(body == artifact, "the blob entry is the artifact");
        }
        names.push(name);
    }
    assert_eq!(names.first().map(String::as_str), Some("updraft-backup.json"));
    assert_eq!(names.last().map(String::as_str), Some("manifest.json"));
    assert!(names.iter().any(|n| n == "tables/05-tuf_metadata.jsonl"), "{names:?}");
    // And Updraft reads it with the key `age-keygen` made.
    let v = updraft(&[], &["backup", "verify", "--from", archive.to_str().unwrap(), "--identity", age_key.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(v["ok"], true, "{v}");
}

#[test]
fn resign_puts_a_database_recovered_by_other_means_above_what_clients_saw() {
    let (dir, data) = scratch();
    let server = start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    let p1 = bytes(40_000, 51);
    publish(&server, dir.path(), "demo", "1.0.0", "linux-x86_64", &p1, &[]);
    let trust = dir.path().join("root.json");
    std::fs::write(&trust, get(&server, "/tuf/demo/metadata/1.root.json").1).unwrap();
    let recovered_to = version_of(&server, "demo", "timestamp");
    // A rollout change clients see, then the database "recovered" to before it (as a
    // point-in-time recovery loses the newest transactions).
    server.cli(&["rollout", "set", "demo", "1.0.0", "--percent", "50"]).ok();
    client(&server, &trust, &dir.path().join("st"), &["--out", dir.path().join("a.bin").to_str().unwrap()]);
    let seen = version_of(&server, "demo", "timestamp");
    assert_eq!(seen, recovered_to + 1);
    drop(server);
    let storage = Storage::of(&data);
    storage.sql(&format!("DELETE FROM tuf_metadata WHERE app = 'demo' AND role <> 'root' AND version > {recovered_to}"));
    storage.sql("UPDATE releases SET rollout_bp = 10000 WHERE app = 'demo'");

    let out = updraft(&storage_env(&data), &["backup", "resign", "--json"]).ok().json();
    assert_eq!(out["apps"][0]["served_mark"]["timestamp"], seen, "{out}");
    assert_eq!(out["apps"][0]["signed"]["timestamp"], seen + 1, "{out}");
    let server = start(&data);
    assert_eq!(version_of(&server, "demo", "timestamp"), seen + 1);
    // The client that saw the lost version takes the recovered state (1.0.0 at 100 % again).
    let out_file = dir.path().join("b.bin");
    client(&server, &trust, &dir.path().join("st"), &["--out", out_file.to_str().unwrap()]).ok();
    assert!(std::fs::read(&out_file).unwrap() == p1);
    server.cli(&["audit", "verify"]).ok();
}
