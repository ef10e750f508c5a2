//! Security properties end to end: the audit chain catches edits, real storage failures never
//! leak internals, and rate limits answer 429 with Retry-After.

use serde_json::json;

use crate::harness::*;

/// Runs SQL against the server's live database, as an intruder or a failing disk would.
fn sql(data: &std::path::Path, statement: &str) {
    crate::backend::Storage::of(data).sql(statement);
}

#[test]
fn audit_verify_names_the_edited_or_removed_event() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    publish(&server, dir.path(), "demo", "1.0.0", "linux-x86_64", &bytes(1000, 21), &["--rollout", "10"]);
    server.cli(&["rollout", "set", "demo", "1.0.0", "--percent", "20"]).ok();
    server.cli(&["token", "create", "--role", "viewer"]).ok();

    let out = server.cli(&["audit", "verify", "--json"]).ok();
    let events = out.json()["events"].as_u64().unwrap();
    assert!(events >= 6, "bootstrap, app, upload, release, rollout, token: {events}");
    let list = server.cli(&["audit", "list", "--json", "--limit", "1000"]).ok().json();
    let actions: Vec<&str> = list["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for want in ["token.bootstrap", "app.create", "upload.create", "upload.append", "release.create", "rollout.set", "token.create"] {
        assert!(actions.contains(&want), "{want} missing from {actions:?}");
    }
    let rollout_seq = list["events"].as_array().unwrap().iter().find(|e| e["action"] == "rollout.set").unwrap()["seq"].as_i64().unwrap();

    // Someone with database access makes the rollout change look smaller.
    sql(&data, &format!("UPDATE audit SET detail = replace(detail, '2000', '1000') WHERE seq = {rollout_seq}"));
    let out = server.cli(&["audit", "verify"]);
    assert_eq!(out.code, 4, "{out:?}");
    assert!(out.stderr.contains(&format!("event {rollout_seq} does not match")), "{out:?}");

    // Or removes it altogether: the next event's link breaks.
    sql(&data, &format!("DELETE FROM audit WHERE seq = {rollout_seq}"));
    let out = server.cli(&["audit", "verify"]);
    assert_eq!(out.code, 4, "{out:?}");
    assert!(out.stderr.contains(&format!("breaks before event {}", rollout_seq + 1)), "{out:?}");
    drop(dir);
}

#[test]
fn real_storage_failures_answer_500_without_internals() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    let http = http();

    // The upload directory is replaced by a file: the disk refuses writes.
    crate::backend::Storage::of(&data).break_blob_writes();
    let resp = http.post(server.url("/v1/admin/uploads")).bearer_auth(TOKEN).json(&json!({"size": 10})).send().unwrap();
    assert_eq!(resp.status(), 500);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body = resp.text().unwrap();
    check_internal(&body, &request_id, &data);
    // /readyz tells operators.
    assert_eq!(http.get(server.url("/readyz")).send().unwrap().status(), 503);

    // A table vanishes from under the server: every audited change fails, and leaks no SQL.
    sql(&data, "DROP TABLE audit");
    let resp = http.post(server.url("/v1/admin/apps")).bearer_auth(TOKEN).json(&json!({"id": "second"})).send().unwrap();
    assert_eq!(resp.status(), 500);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    check_internal(&resp.text().unwrap(), &request_id, &data);
    // Nothing partial: the app was not created, no trust file was written.
    assert_eq!(http.get(server.url("/v1/admin/apps/second")).bearer_auth(TOKEN).send().unwrap().status(), 404);
    assert!(!data.join("trust/second.root.json").exists());
    // The server log has the detail, with the same request id.
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    assert!(log.lines().any(|l| l.contains(&request_id) && l.contains("audit")), "log lacks the detail for {request_id}");
    drop(dir);
}

fn check_internal(body: &str, request_id: &str, data: &std::path::Path) {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["error"]["code"], "internal_error", "{body}");
    assert!(v["error"]["message"].as_str().unwrap().contains(request_id), "the message carries the request id: {body}");
    for leak in
        ["sqlite", "SQL", "INSERT", "table", "audit", "os error", "Not a directory", "/tmp", &data.display().to_string(), "updraft_"]
    {
        assert!(!body.contains(leak), "response leaks {leak:?}: {body}");
    }
}

#[test]
fn rate_limits_answer_429_with_retry_after() {
    let (dir, data) = scratch();
    let server = Server::start_with(
        &data,
        Opts {
            env: vec![
                ("UPDRAFT_ADMIN_RATE_LIMIT", "1".into()),
                ("UPDRAFT_AUTH_FAILURE_RATE_LIMIT", "1".into()),
                ("UPDRAFT_PUBLIC_RATE_LIMIT", "1".into()),
            ],
        },
    );
    let http = http();
    let limited = |req: &dyn Fn() -> reqwest::blocking::RequestBuilder, what: &str| {
        // Bursts are at least 10 (twice the rate, or 10 for admin, 20 for failures); 40 quick calls must hit the limit.
        let statuses: Vec<u16> = (0..40).map(|_| req().send().unwrap().status().as_u16()).collect();
        let first = statuses.iter().position(|s| *s == 429).unwrap_or_else(|| panic!("{what}: never limited: {statuses:?}"));
        // (the harness's readiness poll may have spent one public token)
        assert!(first >= 9, "{what}: the burst is allowed: {statuses:?}");
        let resp = req().send().unwrap();
        assert_eq!(resp.status(), 429, "{what}");
        let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=2).contains(&retry), "{what}: Retry-After {retry}");
        let v: serde_json::Value = resp.json().unwrap();
        assert_eq!(v["error"]["code"], "rate_limited");
    };
    limited(&|| http.get(server.url("/v1/admin/apps")).bearer_auth(TOKEN), "admin, per token");
    // Another token has its own budget.
    let other = server.cli(&["token", "create", "--role", "viewer", "--json"]);
    // (the CLI call above may itself be limited: it uses the limited bootstrap token)
    if other.code == 0 {
        let secret = other.json()["token"].as_str().unwrap().to_owned();
        assert_eq!(http.get(server.url("/v1/admin/apps")).bearer_auth(&secret).send().unwrap().status(), 200);
    }
    limited(&|| http.get(server.url("/v1/admin/apps")).bearer_auth("updraft_wrong"), "failed authentications, per address");
    limited(&|| http.get(server.url("/healthz")), "public, per address");
    drop(dir);
}

#[test]
fn slow_or_idle_connections_are_closed_but_slow_bodies_are_not() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let (_dir, data) = scratch();
    let server = Server::start_with(&data, Opts { env: vec![("UPDRAFT_HEADER_READ_TIMEOUT_SECS", "1".into())] });
    let addr = server.url.trim_start_matches("http://").to_owned();
    // Reads until the server closes the connection; returns what it sent and how long it took.
    let until_closed = |s: &mut std::net::TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let start = Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("the server kept the connection open: {e}"),
            }
        }
        (String::from_utf8_lossy(&got).into_owned(), start.elapsed())
    };

    // A request head dribbled out (slowloris): cut off after the timeout.
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    let (answer, took) = until_closed(&mut slow);
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");

    // An idle keep-alive connection: its next request head never comes, so it is closed too.
    let mut idle = std::net::TcpStream::connect(&addr).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (answer, took) = until_closed(&mut idle);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");

    // A body that takes longer than the head timeout is fine: the head arrived in time.
    let body = br#"{"id":"slow-body"}"#;
    let mut post = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        post,
        "POST /v1/admin/apps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    post.write_all(&body[..5]).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    post.write_all(&body[5..]).unwrap();
    let (answer, _) = until_closed(&mut post);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
}
