//! Publishing and serving: the happy path, 204 for up-to-date clients, yanks, blob serving.

use crate::harness::*;

#[test]
fn published_release_is_offered_served_and_signed() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    assert!(data.join("trust/demo.root.json").is_file(), "trusted root written at app creation");

    let payload = bytes(5 * 1024 * 1024 + 17, 1);
    let rel = publish(&server, dir.path(), "demo", "1.1.0", "linux-x86_64", &payload, &["--notes", "Faster sync"]);
    assert_eq!(rel["state"], "published");
    assert_eq!(rel["artifacts"][0]["sha256"], sha256_hex(&payload));

    let http = http();
    let resp = http.get(server.url("/v1/update/demo/stable/linux-x86_64?current=1.0.0&client=c1")).send().unwrap();
    assert_eq!(resp.status(), 200);
    let answer: serde_json::Value = resp.json().unwrap();
    assert_eq!(answer["version"], "1.1.0");
    assert_eq!(answer["notes"], "Faster sync");
    assert_eq!(answer["size"], payload.len() as u64);
    assert_eq!(answer["target"], "1.1.0/linux-x86_64/demo-1.1.0-linux-x86_64.bin");

    // The download URL serves exactly the published bytes, immutable and cacheable.
    let blob = http.get(answer["url"].as_str().unwrap()).send().unwrap();
    assert_eq!(blob.status(), 200);
    assert_eq!(blob.headers()["cache-control"], "public, max-age=31536000, immutable");
    assert_eq!(blob.headers()["etag"], format!("\"{}\"", sha256_hex(&payload)));
    assert_eq!(blob.bytes().unwrap().as_ref(), payload.as_slice());

    // Up to date, newer than anything published, or on another platform/channel: 204.
    for q in [
        "/v1/update/demo/stable/linux-x86_64?current=1.1.0&client=c1",
        "/v1/update/demo/stable/linux-x86_64?current=2.0.0",
        "/v1/update/demo/stable/windows-x86_64?current=1.0.0",
        "/v1/update/demo/beta/linux-x86_64?current=1.0.0",
    ] {
        assert_eq!(http.get(server.url(q)).send().unwrap().status(), 204, "{q}");
    }
    // A pre-release of the published version is older than it: offered.
    assert_eq!(http.get(server.url("/v1/update/demo/stable/linux-x86_64?current=1.1.0-rc.1")).send().unwrap().status(), 200);

    // TUF: the trusted root is served as 1.root.json, identical to the trust file.
    let root = http.get(server.url("/tuf/demo/metadata/1.root.json")).send().unwrap().bytes().unwrap();
    assert_eq!(root.as_ref(), std::fs::read(data.join("trust/demo.root.json")).unwrap().as_slice());
    let ts: serde_json::Value = http.get(server.url("/tuf/demo/metadata/timestamp.json")).send().unwrap().json().unwrap();
    let snap_v = ts["signed"]["meta"]["snapshot.json"]["version"].as_u64().unwrap();
    assert_eq!(snap_v, 2, "app creation signed v1, the publish v2");
    let snap: serde_json::Value =
        http.get(server.url(&format!("/tuf/demo/metadata/{snap_v}.snapshot.json"))).send().unwrap().json().unwrap();
    let tv = snap["signed"]["meta"]["targets.json"]["version"].as_u64().unwrap();
    let targets: serde_json::Value = http.get(server.url(&format!("/tuf/demo/metadata/{tv}.targets.json"))).send().unwrap().json().unwrap();
    let entry = &targets["signed"]["targets"]["1.1.0/linux-x86_64/demo-1.1.0-linux-x86_64.bin"];
    assert_eq!(entry["hashes"]["sha256"], sha256_hex(&payload));
    assert_eq!(entry["custom"]["channel"], "stable");
    assert_eq!(entry["custom"]["rollout"]["basis_points"], 10000);
    // The target file is served under its consistent-snapshot name.
    let target_url = server.url(&format!("/tuf/demo/targets/1.1.0/linux-x86_64/{}.demo-1.1.0-linux-x86_64.bin", sha256_hex(&payload)));
    assert_eq!(http.get(target_url).send().unwrap().bytes().unwrap().len(), payload.len());

    // Prometheus metrics count what happened, labelled only with known values.
    let metrics = http.get(server.url("/metrics")).send().unwrap().text().unwrap();
    for line in [
        r#"updraft_update_checks_total{app="demo",channel="stable",platform="linux-x86_64",outcome="offered"} 2"#,
        r#"updraft_update_checks_total{app="demo",channel="stable",platform="linux-x86_64",outcome="none"} 2"#,
        r#"updraft_update_checks_total{app="demo",channel="_other",platform="_other",outcome="none"} 2"#,
        r#"updraft_http_requests_total{route="/v1/update/{app}/{channel}/{platform}",method="GET",status="200"} 2"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line} in:\n{metrics}");
    }
    let served: f64 =
        metrics.lines().find_map(|l| l.strip_prefix(r#"updraft_bytes_served_total{kind="blob"} "#)).expect("bytes served").parse().unwrap();
    assert_eq!(served as usize, payload.len());
    assert!(metrics.contains("updraft_http_request_duration_seconds_bucket"), "latency histogram");
}

#[test]
fn yanked_release_is_withdrawn_and_older_one_offered() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    publish(&server, dir.path(), "demo", "1.1.0", "linux-x86_64", &bytes(1000, 2), &[]);
    let bad = bytes(1000, 3);
    publish(&server, dir.path(), "demo", "1.2.0", "linux-x86_64", &bad, &[]);
    let http = http();
    let check = |current: &str| {
        let r = http.get(server.url(&format!("/v1/update/demo/stable/linux-x86_64?current={current}&client=x"))).send().unwrap();
        if r.status() == 204 {
            None
        } else {
            Some(r.json::<serde_json::Value>().unwrap()["version"].as_str().unwrap().to_owned())
        }
    };
    assert_eq!(check("1.0.0").as_deref(), Some("1.2.0"));
    let out = server.cli(&["release", "yank", "demo", "1.2.0", "--json"]).ok().json();
    assert_eq!(out["state"], "yanked");
    assert_eq!(check("1.0.0").as_deref(), Some("1.1.0"), "the newest good release is offered instead");
    assert_eq!(check("1.1.0"), None);
    // Its blob is no longer downloadable, and it is gone from signed targets.
    assert_eq!(http.get(server.url(&format!("/v1/blobs/{}", sha256_hex(&bad)))).send().unwrap().status(), 404);
    let targets = latest_targets(&server, "demo");
    let names: Vec<&String> = targets["signed"]["targets"].as_object().unwrap().keys().collect();
    assert_eq!(names, vec!["1.1.0/linux-x86_64/demo-1.1.0-linux-x86_64.bin"]);
    // Yanking twice is a clear conflict, exit code 6.
    let again = server.cli(&["release", "yank", "demo", "1.2.0"]);
    assert_eq!(again.code, 6, "{again:?}");
    assert!(again.stderr.contains("invalid_release_state"), "{again:?}");
}

#[test]
fn blob_ranges_multi_ranges_and_conditional_requests() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    let payload = bytes(100_000, 4);
    publish(&server, dir.path(), "demo", "1.0.0", "linux-x86_64", &payload, &[]);
    let url = server.url(&format!("/v1/blobs/{}", sha256_hex(&payload)));
    let http = http();
    let r = http.get(&url).header("range", "bytes=10-19").send().unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 10-19/100000");
    assert_eq!(r.bytes().unwrap().as_ref(), &payload[10..20]);
    let r = http.get(&url).header("range", "bytes=-5").send().unwrap();
    assert_eq!(r.bytes().unwrap().as_ref(), &payload[99_995..]);
    let r = http.get(&url).header("range", "bytes=0-1,50000-50002").send().unwrap();
    assert_eq!(r.status(), 206);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    let boundary = ct.strip_prefix("multipart/byteranges; boundary=").expect("multipart").to_owned();
    let body = r.bytes().unwrap();
    let parts: Vec<&[u8]> = split_multipart(&body, &boundary);
    assert_eq!(parts, vec![&payload[0..2], &payload[50_000..50_003]]);
    let r = http.get(&url).header("range", "bytes=200000-").send().unwrap();
    assert_eq!(r.status(), 416);
    let r = http.get(&url).header("if-none-match", format!("\"{}\"", sha256_hex(&payload))).send().unwrap();
    assert_eq!(r.status(), 304);
    let r = http.head(&url).send().unwrap();
    assert_eq!(r.headers()["content-length"], "100000");
}

/// The bodies of a multipart/byteranges answer.
fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Vec<&'a [u8]> {
    let delim = format!("\r\n--{boundary}");
    let text = body;
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(pos) = find(rest, delim.as_bytes()) {
        rest = &rest[pos + delim.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let head_end = find(rest, b"\r\n\r\n").expect("part headers");
        let content = &rest[head_end + 4..];
        let end = find(content, delim.as_bytes()).expect("part end");
        parts.push(&content[..end]);
        rest = &content[end..];
    }
    parts
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn every_command_has_help_with_an_example() {
    let commands: &[&[&str]] = &[
        &["serve"],
        &["migrate"],
        &["migrate-store"],
        &["app", "create"],
        &["app", "list"],
        &["release", "publish"],
        &["release", "list"],
        &["release", "yank"],
        &["rollout", "set"],
        &["rollout", "pause"],
        &["rollout", "resume"],
        &["rollout", "schedule"],
        &["rollout", "status"],
        &["app", "health-rules"],
        &["token", "create"],
        &["token", "list"],
        &["token", "revoke"],
        &["client", "check"],
        &["client", "fetch"],
        &["client", "install"],
        &["audit", "list"],
        &["audit", "verify"],
        &["app", "dsn"],
        &["health", "show"],
        &["health", "issues"],
        &["privacy", "erase"],
        &["privacy", "retention"],
    ];
    for cmd in commands {
        let mut args = cmd.to_vec();
        args.push("--help");
        let out = run_cli("http://127.0.0.1:1", TOKEN, &args);
        assert_eq!(out.code, 0, "{cmd:?}: {out:?}");
        assert!(out.stdout.contains("Example"), "{cmd:?} --help has no example:\n{}", out.stdout);
    }
}
