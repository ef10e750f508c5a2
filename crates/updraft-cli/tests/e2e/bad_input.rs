//! Bad input gets a 4xx with a stable code in one JSON shape, and loses nothing.

use reqwest::blocking::RequestBuilder;
use serde_json::json;

use crate::harness::*;

struct Case {
    name: &'static str,
    status: u16,
    code: &'static str,
}

fn check(case: &Case, req: RequestBuilder) {
    let resp = req.send().unwrap_or_else(|e| panic!("{}: {e}", case.name));
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    assert_eq!(status, case.status, "{}: {text}", case.name);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{}: not JSON: {text}", case.name));
    assert_eq!(v["error"]["code"], case.code, "{}: {text}", case.name);
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(!msg.is_empty(), "{}: empty message", case.name);
    for leak in ["SELECT", "sqlite", "/tmp", "updraft-data", "panicked"] {
        assert!(!text.contains(leak), "{}: response leaks {leak:?}: {text}", case.name);
    }
}

#[test]
fn bad_input_gets_clear_stable_errors_and_loses_nothing() {
    let (dir, data) = scratch();
    let server = Server::start_with(&data, Opts { env: vec![("UPDRAFT_MAX_UPLOAD_BYTES", "1000000".into())] });
    server.cli(&["app", "create", "demo"]).ok();
    let good = bytes(5000, 9);
    publish(&server, dir.path(), "demo", "1.0.0", "linux-x86_64", &good, &[]);
    // One connection per request: after refusing an oversized body the server closes the
    // connection (it will not read the rest), and a pooled connection would race that close.
    let http = reqwest::blocking::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let admin = |m: reqwest::Method, path: &str| http.request(m, server.url(&format!("/v1/admin{path}"))).bearer_auth(TOKEN);
    use reqwest::Method as M;

    // An upload to use below, 10 bytes declared, 4 sent.
    let up: serde_json::Value = admin(M::POST, "/uploads").json(&json!({"size": 10})).send().unwrap().json().unwrap();
    let up_id = up["id"].as_str().unwrap().to_owned();
    admin(M::PATCH, &format!("/uploads/{up_id}")).header("upload-offset", "0").body(vec![1u8; 4]).send().unwrap();
    let release = |version: &str, platform: &str, upload: &str| json!({"version": version, "channel": "stable", "artifacts": [{"platform": platform, "filename": "a.bin", "upload_id": upload}]});

    let cases: Vec<(Case, RequestBuilder)> = vec![
        (Case { name: "invalid app id", status: 400, code: "invalid_app_id" }, admin(M::POST, "/apps").json(&json!({"id": "Bad_App"}))),
        (
            Case { name: "app id too long", status: 400, code: "invalid_app_id" },
            admin(M::POST, "/apps").json(&json!({"id": "a".repeat(64)})),
        ),
        (Case { name: "duplicate app", status: 409, code: "app_exists" }, admin(M::POST, "/apps").json(&json!({"id": "demo"}))),
        (Case { name: "wrong JSON type", status: 400, code: "invalid_body" }, admin(M::POST, "/apps").json(&json!({"id": 5}))),
        (
            Case { name: "unknown field", status: 400, code: "invalid_body" },
            admin(M::POST, "/apps").json(&json!({"id": "x", "evil": true})),
        ),
        (Case { name: "array for an object", status: 400, code: "invalid_body" }, admin(M::POST, "/apps").json(&json!(["other"]))),
        (
            Case { name: "malformed JSON", status: 400, code: "malformed_json" },
            admin(M::POST, "/apps").header("content-type", "application/json").body("{\"id\":"),
        ),
        (Case { name: "not JSON content type", status: 415, code: "unsupported_media_type" }, admin(M::POST, "/apps").body("id=x")),
        (
            Case { name: "huge JSON body", status: 413, code: "body_too_large" },
            admin(M::POST, "/apps").header("content-type", "application/json").body(format!("{{\"id\":\"{}\"}}", "a".repeat(2 << 20))),
        ),
        (
            Case { name: "non-SemVer version", status: 400, code: "invalid_version" },
            admin(M::POST, "/apps/demo/releases").json(&release("1.0", "linux-x86_64", &up_id)),
        ),
        (
            Case { name: "v-prefixed version", status: 400, code: "invalid_version" },
            admin(M::POST, "/apps/demo/releases").json(&release("v2.0.0", "linux-x86_64", &up_id)),
        ),
        (
            Case { name: "duplicate version", status: 409, code: "release_exists" },
            admin(M::POST, "/apps/demo/releases").json(&release("1.0.0", "linux-x86_64", &up_id)),
        ),
        (
            Case { name: "duplicate version by precedence", status: 409, code: "release_exists" },
            admin(M::POST, "/apps/demo/releases").json(&release("1.0.0+build.7", "linux-x86_64", &up_id)),
        ),
        (
            Case { name: "unknown platform", status: 400, code: "invalid_platform" },
            admin(M::POST, "/apps/demo/releases").json(&release("2.0.0", "plan9-mips", &up_id)),
        ),
        (
            Case { name: "truncated upload", status: 409, code: "upload_incomplete" },
            admin(M::POST, "/apps/demo/releases").json(&release("2.0.0", "linux-x86_64", &up_id)),
        ),
        (
            Case { name: "unknown upload", status: 404, code: "upload_not_found" },
            admin(M::POST, "/apps/demo/releases").json(&release("2.0.0", "linux-x86_64", "0123456789abcdef0123456789abcdef")),
        ),
        (
            Case { name: "upload over the size limit", status: 413, code: "upload_too_large" },
            admin(M::POST, "/uploads").json(&json!({"size": 1_000_001})),
        ),
        (
            Case { name: "body past declared size", status: 413, code: "upload_too_large" },
            admin(M::PATCH, &format!("/uploads/{up_id}")).header("upload-offset", "4").body(vec![0u8; 7]),
        ),
        (
            Case { name: "wrong upload offset", status: 409, code: "upload_offset_mismatch" },
            admin(M::PATCH, &format!("/uploads/{up_id}")).header("upload-offset", "2").body(vec![0u8; 1]),
        ),
        (
            Case { name: "missing upload offset", status: 400, code: "missing_upload_offset" },
            admin(M::PATCH, &format!("/uploads/{up_id}")).body(vec![0u8; 1]),
        ),
        (
            Case { name: "bad rollout percent", status: 400, code: "invalid_percent" },
            admin(M::PUT, "/apps/demo/releases/1.0.0/rollout").json(&json!({"percent": 100.5})),
        ),
        (
            Case { name: "three-decimal percent", status: 400, code: "invalid_percent" },
            admin(M::PUT, "/apps/demo/releases/1.0.0/rollout").json(&json!({"percent": 10.125})),
        ),
        (Case { name: "unknown app", status: 404, code: "app_not_found" }, admin(M::GET, "/apps/nope/releases")),
        (Case { name: "unknown release", status: 404, code: "release_not_found" }, admin(M::POST, "/apps/demo/releases/3.0.0/yank")),
        (Case { name: "missing token", status: 401, code: "missing_token" }, http.get(server.url("/v1/admin/apps"))),
        (
            Case { name: "malformed token", status: 401, code: "malformed_token" },
            http.get(server.url("/v1/admin/apps")).header("authorization", "Basic abc"),
        ),
        (
            Case { name: "unknown token", status: 401, code: "invalid_token" },
            http.get(server.url("/v1/admin/apps")).bearer_auth("updraft_0000"),
        ),
        (Case { name: "unknown role", status: 400, code: "invalid_role" }, admin(M::POST, "/tokens").json(&json!({"role": "root"}))),
        (Case { name: "unknown route", status: 404, code: "route_not_found" }, http.get(server.url("/v2/whatever"))),
        (
            Case { name: "wrong method", status: 405, code: "method_not_allowed" },
            http.delete(server.url("/v1/update/demo/stable/linux-x86_64")),
        ),
        (
            Case { name: "check: bad current", status: 400, code: "invalid_version" },
            http.get(server.url("/v1/update/demo/stable/linux-x86_64?current=latest")),
        ),
        (
            Case { name: "check: missing current", status: 400, code: "missing_current" },
            http.get(server.url("/v1/update/demo/stable/linux-x86_64")),
        ),
        (
            Case { name: "check: bad platform", status: 400, code: "invalid_platform" },
            http.get(server.url("/v1/update/demo/stable/linux?current=1.0.0")),
        ),
        (
            Case { name: "check: bad client id", status: 400, code: "invalid_client_id" },
            http.get(server.url(&format!("/v1/update/demo/stable/linux-x86_64?current=1.0.0&client={}", "x".repeat(200)))),
        ),
        (
            Case { name: "check: unknown app", status: 404, code: "app_not_found" },
            http.get(server.url("/v1/update/nope/stable/linux-x86_64?current=1.0.0")),
        ),
        (
            Case { name: "check: invalid app", status: 400, code: "invalid_app_id" },
            http.get(server.url("/v1/update/NOPE/stable/linux-x86_64?current=1.0.0")),
        ),
        (Case { name: "blob: not a hash", status: 400, code: "invalid_sha256" }, http.get(server.url("/v1/blobs/..%2F..%2Fetc%2Fpasswd"))),
        (
            Case { name: "blob: unknown", status: 404, code: "blob_not_found" },
            http.get(server.url(&format!("/v1/blobs/{}", "0".repeat(64)))),
        ),
        (
            Case { name: "tuf: unknown metadata", status: 404, code: "metadata_not_found" },
            http.get(server.url("/tuf/demo/metadata/99.targets.json")),
        ),
        (
            Case { name: "tuf: path traversal", status: 404, code: "target_not_found" },
            http.get(server.url("/tuf/demo/targets/..%2F..%2Fupdraft.db")),
        ),
    ];
    for (case, req) in cases {
        check(&case, req);
    }

    // Nothing was lost or added by all of that.
    let rels = server.cli(&["release", "list", "demo", "--json"]).ok().json();
    assert_eq!(rels["releases"].as_array().unwrap().len(), 1);
    assert_eq!(rels["releases"][0]["state"], "published");
    let r = http.get(server.url("/v1/update/demo/stable/linux-x86_64?current=0.9.0&client=z")).send().unwrap();
    assert_eq!(r.json::<serde_json::Value>().unwrap()["sha256"], sha256_hex(&good));
    let apps = server.cli(&["app", "list", "--json"]).ok().json();
    assert_eq!(apps["apps"].as_array().unwrap().len(), 1);
    // The truncated upload can still be completed and used: nothing was lost.
    admin(M::PATCH, &format!("/uploads/{up_id}"))
        .header("upload-offset", "4")
        .body(vec![2u8; 6])
        .send()
        .unwrap()
        .error_for_status()
        .unwrap();
    let created = admin(M::POST, "/apps/demo/releases").json(&release("2.0.0", "linux-x86_64", &up_id)).send().unwrap();
    assert_eq!(created.status(), 201);

    // The CLI maps refusals to exit code 6 and bad flags to 2.
    let out = server.cli(&["app", "create", "Bad"]);
    assert_eq!(out.code, 6, "{out:?}");
    assert!(out.stderr.contains("invalid_app_id"));
    let out = server.cli(&["rollout", "set", "demo", "1.0.0", "--percent", "101"]);
    assert_eq!(out.code, 2, "{out:?}");
    let out = run_cli("http://127.0.0.1:1", TOKEN, &["app", "list"]);
    assert_eq!(out.code, 5, "unreachable server: {out:?}");
}
