//! The auth matrix, generated from the server's own OpenAPI document: every admin operation ×
//! {no token, malformed, unknown, revoked, expired, wrong role, wrong app scope, right} gets
//! the expected status. An operation in the document without a row here fails the test, and
//! so does a row for an operation the document lacks.

use std::collections::BTreeMap;

use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::*;

#[derive(Clone, Copy, PartialEq)]
enum Scope {
    /// The path names an app: out of scope answers 404, like a missing app.
    App,
    /// Not tied to an app and not allowed to scoped tokens (apps, tokens): 403.
    Global,
    /// Not tied to an app, open to scoped tokens (uploads, the filtered app list).
    Open,
}

struct Op {
    role: &'static str,
    scope: Scope,
    method: Method,
    path: String,
    body: Option<Value>,
    raw: Option<(Vec<u8>, u64)>,
    success: u16,
}

fn op(role: &'static str, scope: Scope, method: Method, path: impl Into<String>, body: Option<Value>, success: u16) -> Op {
    Op { role, scope, method, path: path.into(), body, raw: None, success }
}

fn create_token(http: &Client, server: &Server, body: Value) -> (String, String) {
    let v: Value = http.post(server.url("/v1/admin/tokens")).bearer_auth(TOKEN).json(&body).send().unwrap().json().unwrap();
    assert!(v["token"].is_string(), "token creation failed: {v}");
    (v["id"].as_str().unwrap().to_owned(), v["token"].as_str().unwrap().to_owned())
}

/// Creates an upload of `size` bytes and appends `data` to it.
fn upload(http: &Client, server: &Server, token: &str, size: usize, data: &[u8]) -> String {
    let v: Value =
        http.post(server.url("/v1/admin/uploads")).bearer_auth(token).json(&json!({"size": size})).send().unwrap().json().unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    if !data.is_empty() {
        let r = http
            .patch(server.url(&format!("/v1/admin/uploads/{id}")))
            .bearer_auth(token)
            .header("upload-offset", "0")
            .body(data.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    id
}

fn send(http: &Client, server: &Server, op: &Op, auth: Option<&str>) -> (u16, String) {
    let mut req = http.request(op.method.clone(), server.url(&op.path));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if let Some(b) = &op.body {
        req = req.json(b);
    }
    if let Some((bytes, offset)) = &op.raw {
        req = req.header("upload-offset", offset.to_string()).body(bytes.clone());
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().unwrap_or_default())
}

#[test]
fn every_admin_operation_enforces_authentication_role_and_scope() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    let http = http();
    server.cli(&["app", "create", "demo"]).ok();
    server.cli(&["app", "create", "other"]).ok();
    for v in ["1.0.0", "1.5.0", "1.6.0", "1.7.0"] {
        publish(&server, dir.path(), "demo", v, "linux-x86_64", &bytes(100, v.len() as u64 + v.as_bytes()[2] as u64), &[]);
    }
    publish(&server, dir.path(), "demo", "2.0.0", "linux-x86_64", &bytes(100, 99), &["--draft"]);
    server.cli(&["rollout", "pause", "demo", "1.6.0"]).ok();
    // A schedule for delete_schedule's right call to remove (set_schedule puts one back).
    server.cli(&["rollout", "schedule", "demo", "1.5.0", "--schedule", "50%:1h,100%"]).ok();

    // Tokens: one per role with every app, the right ones scoped to "demo", and the bad ones.
    let bearer = |t: &str| format!("Bearer {t}");
    let mut by_role: BTreeMap<&str, String> = BTreeMap::new();
    for role in ["ingest", "viewer", "publisher"] {
        by_role.insert(role, create_token(&http, &server, json!({"role": role})).1);
    }
    by_role.insert("admin", TOKEN.to_owned());
    let mut right: BTreeMap<&str, String> = BTreeMap::new();
    for role in ["viewer", "publisher"] {
        right.insert(role, create_token(&http, &server, json!({"role": role, "apps": ["demo"]})).1);
    }
    right.insert("admin", TOKEN.to_owned());
    let wrong_scope = create_token(&http, &server, json!({"role": "admin", "apps": ["other"]})).1;
    let (revoked_id, revoked) = create_token(&http, &server, json!({"role": "admin"}));
    assert_eq!(http.delete(server.url(&format!("/v1/admin/tokens/{revoked_id}"))).bearer_auth(TOKEN).send().unwrap().status(), 204);
    let expired = create_token(&http, &server, json!({"role": "admin", "expires_at": "2020-01-01T00:00:00Z"})).1;
    let (victim_id, _) = create_token(&http, &server, json!({"role": "viewer"}));

    // A next root, exported through the offline ceremony, for import_root (the server adds
    // its own root keys' signatures on import).
    let next_root = dir.path().join("next.root.json");
    server.cli(&["keys", "root", "export", "demo", "--generate", "snapshot", "--out", next_root.to_str().unwrap()]).ok();
    let next_root: Value = serde_json::from_slice(&std::fs::read(&next_root).unwrap()).unwrap();

    // Resources the right tokens act on.
    let publisher = right["publisher"].clone();
    let u_append = upload(&http, &server, &publisher, 5, &[]);
    let u_release = upload(&http, &server, &publisher, 13, b"release-bytes");

    let mut ops: BTreeMap<&str, Op> = BTreeMap::new();
    ops.insert("create_app", op("admin", Scope::Global, Method::POST, "/v1/admin/apps", Some(json!({"id": "matrix-new"})), 201));
    ops.insert("list_apps", op("viewer", Scope::Open, Method::GET, "/v1/admin/apps", None, 200));
    ops.insert("get_app", op("viewer", Scope::App, Method::GET, "/v1/admin/apps/demo", None, 200));
    ops.insert("create_upload", op("publisher", Scope::Open, Method::POST, "/v1/admin/uploads", Some(json!({"size": 5})), 201));
    ops.insert("get_upload", op("publisher", Scope::Open, Method::GET, format!("/v1/admin/uploads/{u_append}"), None, 200));
    let mut append = op("publisher", Scope::Open, Method::PATCH, format!("/v1/admin/uploads/{u_append}"), None, 200);
    append.raw = Some((b"12345".to_vec(), 0));
    ops.insert("append_upload", append);
    let release = json!({"version": "3.0.0", "channel": "stable", "artifacts": [{"platform": "linux-x86_64", "filename": "a.bin", "upload_id": u_release}]});
    ops.insert("create_release", op("publisher", Scope::App, Method::POST, "/v1/admin/apps/demo/releases", Some(release), 201));
    ops.insert("list_releases", op("viewer", Scope::App, Method::GET, "/v1/admin/apps/demo/releases", None, 200));
    ops.insert("get_release", op("viewer", Scope::App, Method::GET, "/v1/admin/apps/demo/releases/1.0.0", None, 200));
    ops.insert("publish_release", op("publisher", Scope::App, Method::POST, "/v1/admin/apps/demo/releases/2.0.0/publish", None, 200));
    ops.insert(
        "set_rollout",
        op("publisher", Scope::App, Method::PUT, "/v1/admin/apps/demo/releases/1.0.0/rollout", Some(json!({"percent": 50})), 200),
    );
    ops.insert("pause_rollout", op("publisher", Scope::App, Method::POST, "/v1/admin/apps/demo/releases/1.5.0/pause", None, 200));
    ops.insert("resume_rollout", op("publisher", Scope::App, Method::POST, "/v1/admin/apps/demo/releases/1.6.0/resume", None, 200));
    ops.insert("yank_release", op("publisher", Scope::App, Method::POST, "/v1/admin/apps/demo/releases/1.7.0/yank", None, 200));
    ops.insert("create_token", op("admin", Scope::Global, Method::POST, "/v1/admin/tokens", Some(json!({"role": "viewer"})), 201));
    ops.insert("list_tokens", op("admin", Scope::Global, Method::GET, "/v1/admin/tokens", None, 200));
    ops.insert("revoke_token", op("admin", Scope::Global, Method::DELETE, format!("/v1/admin/tokens/{victim_id}"), None, 204));
    ops.insert("list_keys", op("viewer", Scope::App, Method::GET, "/v1/admin/apps/demo/keys", None, 200));
    ops.insert(
        "rotate_keys",
        op("admin", Scope::App, Method::POST, "/v1/admin/apps/demo/keys/rotate", Some(json!({"role": "timestamp", "generate": 1})), 200),
    );
    ops.insert(
        "export_root",
        op("admin", Scope::App, Method::POST, "/v1/admin/apps/demo/keys/root/export", Some(json!({"generate": ["targets"]})), 200),
    );
    ops.insert("import_root", op("admin", Scope::App, Method::POST, "/v1/admin/apps/demo/keys/root/import", Some(next_root), 200));
    ops.insert(
        "set_schedule",
        op(
            "publisher",
            Scope::App,
            Method::PUT,
            "/v1/admin/apps/demo/releases/1.5.0/schedule",
            Some(json!({"schedule": "50%:1h,100%"})),
            200,
        ),
    );
    ops.insert("delete_schedule", op("publisher", Scope::App, Method::DELETE, "/v1/admin/apps/demo/releases/1.5.0/schedule", None, 200));
    ops.insert("get_rollout_status", op("viewer", Scope::App, Method::GET, "/v1/admin/apps/demo/releases/1.5.0/health", None, 200));
    ops.insert("get_health_rules", op("viewer", Scope::App, Method::GET, "/v1/admin/apps/demo/health-rules", None, 200));
    ops.insert(
        "set_health_rules",
        op("admin", Scope::App, Method::PUT, "/v1/admin/apps/demo/health-rules", Some(json!({"rules": null, "webhook": null})), 200),
    );
    ops.insert("list_audit", op("viewer", Scope::App, Method::GET, "/v1/admin/audit?app=demo", None, 200));
    // Ingest: one event through the DSN, so an issue exists to list events of.
    let dsn = server.cli(&["app", "dsn", "demo", "--json"]).ok().json();
    let store = format!("/api/{}/store/?sentry_key={}", dsn["project_id"], dsn["public_key"].as_str().unwrap());
    assert_eq!(http.post(server.url(&store)).body(r#"{"message":"matrix"}"#).send().unwrap().status(), 200);
    ops.insert("get_dsn", op("viewer", Scope::App, Method::GET, "/v1/admin/apps/demo/dsn", None, 200));
    ops.insert("set_retention", op("admin", Scope::App, Method::PUT, "/v1/admin/apps/demo/retention", Some(json!({"days": 30})), 200));
    ops.insert("get_health", op("viewer", Scope::App, Method::GET, "/v1/admin/apps/demo/health", None, 200));
    ops.insert("list_issues", op("viewer", Scope::App, Method::GET, "/v1/admin/apps/demo/issues", None, 200));
    ops.insert("list_issue_events", op("viewer", Scope::App, Method::GET, "/v1/admin/apps/demo/issues/1/events", None, 200));
    ops.insert(
        "privacy_erase",
        op("admin", Scope::App, Method::POST, "/v1/admin/apps/demo/privacy/erase", Some(json!({"client_id": "someone"})), 200),
    );

    // The operations, from the document the server serves.
    let doc: Value = http.get(server.url("/openapi.json")).send().unwrap().json().unwrap();
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/v1/admin/") {
            continue;
        }
        for (method, o) in item.as_object().unwrap() {
            let id = o["operationId"].as_str().unwrap().to_owned();
            let row = ops.get(id.as_str()).unwrap_or_else(|| panic!("{method} {path} ({id}) is not in the auth matrix: add a row"));
            assert_eq!(row.method.as_str().to_lowercase(), *method, "{id}: method");
            documented.push(id);
        }
    }
    for id in ops.keys() {
        assert!(documented.iter().any(|d| d == id), "{id} is in the matrix but not in the OpenAPI document");
    }

    let below = |role: &str| match role {
        "admin" => "publisher",
        "publisher" => "viewer",
        _ => "ingest",
    };
    let mut checked = 0;
    for (id, o) in &ops {
        let cases: Vec<(&str, Option<String>, u16)> = vec![
            ("no token", None, 401),
            ("malformed", Some("Token abc".to_owned()), 401),
            ("unknown", Some(bearer("updraft_00000000000000000000000000000000000000000000000000000000deadbeef")), 401),
            ("revoked", Some(bearer(&revoked)), 401),
            ("expired", Some(bearer(&expired)), 401),
            ("wrong role", Some(bearer(&by_role[below(o.role)])), 403),
            (
                "wrong app scope",
                Some(bearer(&wrong_scope)),
                match o.scope {
                    Scope::App => 404,
                    Scope::Global => 403,
                    // Open operations: a scoped token may do them; uploads are its own.
                    Scope::Open if id.ends_with("_upload") && *id != "create_upload" => 404,
                    Scope::Open => o.success,
                },
            ),
        ];
        for (case, auth, want) in cases {
            let (status, body) = send(&http, &server, o, auth.as_deref());
            assert_eq!(status, want, "{id} / {case}: {body}");
            if status >= 400 {
                let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{id} / {case}: not the error shape: {body}"));
                assert!(v["error"]["code"].is_string(), "{id} / {case}: {body}");
            }
            checked += 1;
        }
        let token = right.get(o.role).unwrap_or(&by_role[o.role]);
        let (status, body) = send(&http, &server, o, Some(&bearer(token)));
        assert_eq!(status, o.success, "{id} / right token: {body}");
        checked += 1;
    }
    assert_eq!(checked, ops.len() * 8);
    // Nothing the refused calls tried happened: e.g. the victim token was revoked once, by the right call.
    let audit: Value = http.get(server.url("/v1/admin/audit?limit=1000")).bearer_auth(TOKEN).send().unwrap().json().unwrap();
    let revokes = audit["events"].as_array().unwrap().iter().filter(|e| e["action"] == "token.revoke").count();
    assert_eq!(revokes, 2, "the setup's revoke and the right call's");
}
