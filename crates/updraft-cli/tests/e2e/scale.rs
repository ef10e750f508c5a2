//! Scale-out: PostgreSQL as the metadata store (`updraft migrate`, store chosen by URL scheme).

use crate::harness::*;

#[test]
fn migrate_brings_sqlite_and_postgres_schemas_up_to_date_and_refuses_bad_urls() {
    let (_dir, data) = scratch();
    // SQLite by URL scheme, the file created where the URL says; running it twice is a no-op.
    let db = data.join("custom/meta.db");
    let url = format!("sqlite://{}", db.display());
    for _ in 0..2 {
        let out = run_cli("http://127.0.0.1:1", TOKEN, &["migrate", "--database", &url, "--json"]).ok();
        assert_eq!(out.json()["migrated"], true, "{out:?}");
    }
    assert!(db.is_file(), "the SQLite file is created at the URL's path");

    // PostgreSQL, a fresh database: the schema is created, then found current.
    let pg = pg_database();
    for _ in 0..2 {
        let out = run_cli("http://127.0.0.1:1", TOKEN, &["migrate", "--database", &pg]).ok();
        assert!(out.stdout.contains("schema is current"), "{out:?}");
    }
    let tables = psql(&pg, "SELECT count(*) FROM schema_migrations");
    assert!(tables.trim().parse::<u32>().unwrap() >= 2, "{tables}");

    // UPDRAFT_DATABASE is read too; a URL of another kind is a usage error (exit 2) that names
    // the field and does not echo the URL (it may carry a password).
    let out = std::process::Command::new(bin()).args(["migrate"]).env("UPDRAFT_DATABASE", "mysql://root:hunter2@db/x").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("database") && stderr.contains("postgres://") && !stderr.contains("hunter2"), "{stderr}");

    // An unreachable PostgreSQL is exit 5 (server unreachable), without the password.
    let out = run_cli("http://127.0.0.1:1", TOKEN, &["migrate", "--database", "postgres://u:hunter2@127.0.0.1:1/x"]);
    assert_eq!(out.code, 5, "{out:?}");
    assert!(!out.stderr.contains("hunter2"), "{out:?}");
}

#[test]
fn server_on_postgres_serves_what_it_published_after_a_restart() {
    let (_dir, data) = scratch();
    let pg = pg_database();
    let opts = || Opts { env: vec![("UPDRAFT_DATABASE", pg.clone())] };
    let server = Server::start_with(&data, opts());
    server.cli(&["app", "create", "demo"]).ok();
    let payload = bytes(10_000, 3);
    publish(&server, _dir.path(), "demo", "1.0.0", "linux-x86_64", &payload, &[]);
    assert!(!data.join("updraft.db").exists(), "no SQLite file when the database is PostgreSQL");
    drop(server);
    let server = Server::start_with(&data, opts());
    let check: serde_json::Value =
        http().get(server.url("/v1/update/demo/stable/linux-x86_64?current=0.9.0&client=c1")).send().unwrap().json().unwrap();
    assert_eq!(check["version"], "1.0.0", "{check}");
    let count = psql(&pg, "SELECT count(*) FROM releases WHERE app = 'demo'");
    assert_eq!(count.trim(), "1");
}

/// Two instances over one PostgreSQL database and one bucket, sharing nothing else.
fn two_instances() -> (tempfile::TempDir, Server, Server) {
    let dir = tempfile::tempdir().unwrap();
    let (db, bucket) = (pg_database(), crate::backend::s3_bucket());
    let env = crate::backend::shared_env(&db, &bucket);
    let mut env_with_pass = env.clone();
    env_with_pass.push(("UPDRAFT_KEY_PASSPHRASE", "correct horse battery staple".into()));
    let a = Server::start_with(&dir.path().join("a"), Opts { env: env_with_pass.clone() });
    let b = Server::start_with(&dir.path().join("b"), Opts { env: env_with_pass });
    (dir, a, b)
}

fn upload(server: &Server, payload: &[u8]) -> String {
    let http = http();
    let up: serde_json::Value = http
        .post(server.url("/v1/admin/uploads"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"size": payload.len()}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = up["id"].as_str().unwrap().to_owned();
    let resp = http
        .patch(server.url(&format!("/v1/admin/uploads/{id}")))
        .bearer_auth(TOKEN)
        .header("upload-offset", "0")
        .body(payload.to_vec())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().unwrap());
    id
}

fn create_release(server: &Server, version: &str, upload_id: &str) -> reqwest::blocking::Response {
    http()
        .post(server.url("/v1/admin/apps/demo/releases"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"version": version, "channel": "stable",
            "artifacts": [{"platform": "linux-x86_64", "filename": format!("demo-{version}.bin"), "upload_id": upload_id}]}))
        .send()
        .unwrap()
}

fn check(server: &Server) -> Option<serde_json::Value> {
    let resp = http().get(server.url("/v1/update/demo/stable/linux-x86_64?current=0.1.0&client=c1")).send().unwrap();
    (resp.status() == 200).then(|| resp.json().unwrap())
}

fn client(server: &Server, trust: &std::path::Path, state: &std::path::Path, verb: &str, extra: &[&str]) -> Out {
    demo_client(server, trust, state, verb, "0.1.0", extra)
}

#[test]
fn a_change_through_one_instance_is_served_verified_by_the_other_within_a_second() {
    let (dir, a, b) = two_instances();
    a.cli(&["app", "create", "demo"]).ok();
    // The app and its keys, created on A, reach B.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while http().get(b.url("/tuf/demo/metadata/1.root.json")).send().unwrap().status() != 200 {
        assert!(std::time::Instant::now() < deadline, "B does not serve the app A created within a second");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    // One upload, continued on the other instance: the session lives in the bucket.
    let payload = bytes(3 * 1024 * 1024 + 5, 77);
    let http = http();
    let up: serde_json::Value = http
        .post(a.url("/v1/admin/uploads"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"size": payload.len()}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = up["id"].as_str().unwrap();
    let half = payload.len() / 2;
    let patch = |s: &Server, off: usize, body: &[u8]| {
        http.patch(s.url(&format!("/v1/admin/uploads/{id}")))
            .bearer_auth(TOKEN)
            .header("upload-offset", off.to_string())
            .body(body.to_vec())
            .send()
            .unwrap()
    };
    assert_eq!(patch(&a, 0, &payload[..half]).status(), 200);
    let wrong = patch(&b, 0, &payload[half..]);
    assert_eq!(wrong.status(), 409, "B knows where A's upload stands");
    assert_eq!(wrong.headers()["upload-offset"], half.to_string().as_str());
    assert_eq!(patch(&b, half, &payload[half..]).status(), 200);
    let got: serde_json::Value = http.get(a.url(&format!("/v1/admin/uploads/{id}"))).bearer_auth(TOKEN).send().unwrap().json().unwrap();
    assert_eq!(got["offset"], payload.len());

    // Published through B; A serves it within a second of the commit.
    assert_eq!(create_release(&b, "1.0.0", id).status(), 201);
    let started = std::time::Instant::now();
    let answer = loop {
        if let Some(v) = check(&a) {
            break v;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "A does not offer B's release within a second; A's log:\n{}",
            std::fs::read_to_string(a.data.with_extension("log")).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    eprintln!("release published on B offered by A after {:?}", started.elapsed());
    assert_eq!(answer["version"], "1.0.0");
    assert_eq!(answer["sha256"], sha256_hex(&payload));

    // A client that ships A's root fetches through B and verifies every byte.
    let trust = dir.path().join("demo.root.json");
    std::fs::copy(a.data.join("trust/demo.root.json"), &trust).unwrap();
    let out_file = dir.path().join("fetched.bin");
    client(&b, &trust, &dir.path().join("state-b"), "fetch", &["--out", out_file.to_str().unwrap()]).ok();
    assert_eq!(std::fs::read(&out_file).unwrap(), payload);

    // Signing keys rotated on B are the ones A signs with next, and clients follow both.
    b.cli(&["keys", "rotate", "demo", "--role", "targets"]).ok();
    let started = std::time::Instant::now();
    let v2 = bytes(1000, 78);
    let id2 = upload(&a, &v2);
    let resp = create_release(&a, "1.1.0", &id2);
    assert_eq!(resp.status(), 201, "A signs with the targets key B generated: {}", resp.text().unwrap());
    while check(&b).is_none_or(|v| v["version"] != "1.1.0") {
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "B does not offer A's release");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let out_file = dir.path().join("fetched2.bin");
    client(&b, &trust, &dir.path().join("state-b"), "fetch", &["--out", out_file.to_str().unwrap()]).ok();
    assert_eq!(std::fs::read(&out_file).unwrap(), v2);
}

#[test]
fn concurrent_publishes_across_instances_keep_tuf_versions_gap_free_and_racing_duplicates_get_409() {
    let (dir, a, b) = two_instances();
    a.cli(&["app", "create", "demo"]).ok();
    while http().get(b.url("/tuf/demo/metadata/1.root.json")).send().unwrap().status() != 200 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // 20 publishes at once, split across A and B.
    let servers = [&a, &b];
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let server = servers[i % 2];
                let dir = dir.path();
                s.spawn(move || publish(server, dir, "demo", &format!("1.0.{i}"), "linux-x86_64", &bytes(2000 + i, i as u64), &[]))
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap()["state"], "published");
        }
    });
    // Every version from 1 to 21 exists, once, on both instances; nothing above.
    for server in servers {
        let ts: serde_json::Value = http().get(server.url("/tuf/demo/metadata/timestamp.json")).send().unwrap().json().unwrap();
        assert_eq!(ts["signed"]["version"], 21, "one timestamp per publish, after the first");
        for role in ["targets", "snapshot"] {
            for n in 1..=21 {
                let doc: serde_json::Value =
                    http().get(server.url(&format!("/tuf/demo/metadata/{n}.{role}.json"))).send().unwrap().json().unwrap();
                assert_eq!(doc["signed"]["version"], n, "{role} {n}");
            }
            assert_eq!(http().get(server.url(&format!("/tuf/demo/metadata/22.{role}.json"))).send().unwrap().status(), 404);
        }
    }
    // The repository verifies for a client, and the audit chain written by both is whole.
    let trust = dir.path().join("demo.root.json");
    std::fs::copy(a.data.join("trust/demo.root.json"), &trust).unwrap();
    let out = client(&b, &trust, &dir.path().join("state"), "check", &["--json"]).ok();
    assert_eq!(out.json()["update"]["version"], "1.0.19", "{out:?}");
    let verified = b.cli(&["audit", "verify", "--json"]).ok().json();
    assert!(verified["events"].as_u64().unwrap() >= 41, "{verified}");

    // Two instances racing to publish the same version: exactly one wins, the other gets 409.
    for round in 0..4 {
        let version = format!("2.0.{round}");
        let (ua, ub) = (upload(&a, &bytes(500, 100 + round)), upload(&b, &bytes(500, 200 + round)));
        let (ra, rb) = std::thread::scope(|s| {
            let ta = s.spawn(|| create_release(&a, &version, &ua));
            let tb = s.spawn(|| create_release(&b, &version, &ub));
            (ta.join().unwrap(), tb.join().unwrap())
        });
        let mut statuses = [ra.status().as_u16(), rb.status().as_u16()];
        let loser = if ra.status() == 201 { rb } else { ra };
        statuses.sort();
        assert_eq!(statuses, [201, 409], "round {round}");
        let err: serde_json::Value = loser.json().unwrap();
        assert_eq!(err["error"]["code"], "release_exists", "{err}");
    }
    let ts: serde_json::Value = http().get(a.url("/tuf/demo/metadata/timestamp.json")).send().unwrap().json().unwrap();
    assert_eq!(ts["signed"]["version"], 25, "each race signed once");
}

#[test]
fn migrate_store_moves_an_embedded_install_to_postgres_and_s3_byte_for_byte() {
    let (dir, data) = scratch();
    // An embedded install (whatever the suite's backend), with history.
    let server = Server::start_with(
        &data,
        Opts {
            env: vec![
                ("UPDRAFT_DATABASE", format!("sqlite://{}", data.join("updraft.db").display())),
                ("UPDRAFT_BLOBS", data.join("blobs").display().to_string()),
            ],
        },
    );
    server.cli(&["app", "create", "demo"]).ok();
    let p1 = bytes(300_000, 5);
    let p2 = bytes(2 * 1024 * 1024 + 3, 6);
    publish(&server, dir.path(), "demo", "1.0.0", "linux-x86_64", &p1, &[]);
    publish(&server, dir.path(), "demo", "1.1.0", "linux-x86_64", &p2, &["--rollout", "30"]);
    server.cli(&["token", "create", "--role", "viewer"]).ok();
    let get = |s: &Server, path: &str| http().get(s.url(path)).send().unwrap().bytes().unwrap().to_vec();
    let files = ["timestamp.json", "1.root.json", "3.snapshot.json", "3.targets.json", "2.targets.json"];
    let before: Vec<Vec<u8>> = files.iter().map(|f| get(&server, &format!("/tuf/demo/metadata/{f}"))).collect();
    let events = server.cli(&["audit", "verify", "--json"]).ok().json()["events"].as_u64().unwrap();
    drop(server);

    let (db, bucket) = (pg_database(), crate::backend::s3_bucket());
    let env = crate::backend::shared_env(&db, &bucket);
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["migrate-store", "--from", data.to_str().unwrap(), "--to", &db, "--to-blobs", &format!("s3://{bucket}/blobs"), "--json"]);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["blobs"], 2, "{report}");
    assert_eq!(report["tables"]["releases"], 2, "{report}");
    assert_eq!(report["key_files"], 5, "four TUF keys and the feeds' updater key: {report}");
    // Running it again into the now-filled database is refused.
    let again = cmd.output().unwrap();
    assert_eq!(again.status.code(), Some(6), "{}", String::from_utf8_lossy(&again.stderr));

    // A fresh instance on PostgreSQL + S3 serves every byte the embedded one served.
    let moved = Server::start_with(&dir.path().join("moved"), Opts { env: env.clone() });
    for (f, want) in files.iter().zip(&before) {
        assert_eq!(&get(&moved, &format!("/tuf/demo/metadata/{f}")), want, "{f}");
    }
    assert_eq!(get(&moved, &format!("/v1/blobs/{}", sha256_hex(&p2))), p2);
    assert_eq!(moved.cli(&["audit", "verify", "--json"]).ok().json()["events"].as_u64().unwrap(), events);
    // Clients that trust the original root verify through it, and it signs with the carried keys.
    let trust = dir.path().join("demo.root.json");
    std::fs::copy(data.join("trust/demo.root.json"), &trust).unwrap();
    let out_file = dir.path().join("got.bin");
    client(&moved, &trust, &dir.path().join("st"), "fetch", &["--out", out_file.to_str().unwrap()]).ok();
    // 1.1.0 is at 30%: this client's bucket decides between it and 1.0.0, both verified.
    let got = std::fs::read(&out_file).unwrap();
    assert!(got == p1 || got == p2, "fetched bytes are neither release");
    publish(&moved, dir.path(), "demo", "1.2.0", "linux-x86_64", &bytes(100, 7), &[]);
    let ts: serde_json::Value = serde_json::from_slice(&get(&moved, "/tuf/demo/metadata/timestamp.json")).unwrap();
    assert_eq!(ts["signed"]["version"], 4);
}

#[test]
fn downloads_redirect_to_presigned_bucket_urls_when_configured() {
    let (dir, data) = scratch();
    let (db, bucket) = (pg_database(), crate::backend::s3_bucket());
    let mut env = crate::backend::shared_env(&db, &bucket);
    env.push(("UPDRAFT_BLOB_REDIRECT_SECS", "300".into()));
    let server = Server::start_with(&data, Opts { env });
    server.cli(&["app", "create", "demo"]).ok();
    let p1 = bytes(300_000, 61);
    publish(&server, dir.path(), "demo", "1.0.0", "linux-x86_64", &p1, &[]);
    let sha = sha256_hex(&p1);

    // The instance answers with a redirect to a presigned URL on the bucket's endpoint...
    let no_follow = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = no_follow.get(server.url(&format!("/v1/blobs/{sha}"))).send().unwrap();
    assert_eq!(r.status(), 307);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&crate::backend::s3_endpoint()), "{location}");
    assert!(location.contains("X-Amz-Signature="), "{location}");
    assert_eq!(r.headers()["cache-control"], "public, max-age=150");
    // ...which any HTTP client follows, ranges included, with no credentials.
    assert_eq!(http().get(server.url(&format!("/v1/blobs/{sha}"))).send().unwrap().bytes().unwrap().to_vec(), p1);
    let part = http().get(server.url(&format!("/v1/blobs/{sha}"))).header("range", "bytes=100-199").send().unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().unwrap().to_vec(), p1[100..200].to_vec());
    // TUF targets too, and our client verifies what it downloads through the redirect.
    let trust = dir.path().join("root.json");
    std::fs::write(&trust, http().get(server.url("/tuf/demo/metadata/1.root.json")).send().unwrap().bytes().unwrap()).unwrap();
    let out_file = dir.path().join("got.bin");
    client(&server, &trust, &dir.path().join("st"), "fetch", &["--out", out_file.to_str().unwrap()]).ok();
    assert_eq!(std::fs::read(&out_file).unwrap(), p1);
    // A blob that may not be served is still refused by the instance, never redirected.
    server.cli(&["release", "yank", "demo", "1.0.0"]).ok();
    assert_eq!(no_follow.get(server.url(&format!("/v1/blobs/{sha}"))).send().unwrap().status(), 404);
    let metrics = http().get(server.url("/metrics")).send().unwrap().text().unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("updraft_blob_redirects_total{kind=\"blob\"}")), "{metrics}");
}
