//! Crash and session ingest through a DSN, driven by the real Sentry SDKs (Python `sentry-sdk`,
//! pinned in scripts/ensure-sentry-sdk.sh, and the Rust `sentry` crate), compressed and not;
//! every privacy scrubber checked on what the Python SDK really sent; bad input; per-key rate
//! limits; erasure and retention.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

struct Dsn {
    dsn: String,
    project_id: i64,
    key: String,
}

fn dsn(server: &Server, app: &str) -> Dsn {
    let v = server.cli(&["app", "dsn", app, "--json"]).ok().json();
    let plain = server.cli(&["app", "dsn", app]).ok().stdout.trim().to_owned();
    assert_eq!(plain, v["dsn"].as_str().unwrap(), "the plain output is the DSN");
    Dsn { dsn: plain, project_id: v["project_id"].as_i64().unwrap(), key: v["public_key"].as_str().unwrap().to_owned() }
}

fn python() -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/ensure-sentry-sdk.sh");
    let out = Command::new("bash").arg(script).output().expect("run ensure-sentry-sdk.sh");
    assert!(out.status.success(), "cannot set up the Python Sentry SDK: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().last().unwrap().trim().to_owned()
}

fn run_python(py: &str, args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/sentry_python.py");
    let out = Command::new(py).arg(script).args(args).output().expect("run python");
    assert!(out.status.success(), "sentry_python.py failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn admin_get(server: &Server, path: &str) -> Value {
    let r = http().get(server.url(path)).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().unwrap()
}

fn health(server: &Server, app: &str, version: &str) -> Value {
    let v = admin_get(server, &format!("/v1/admin/apps/{app}/health?version={version}&since=2000-01-01T00:00:00Z"));
    v["releases"][0].clone()
}

/// Waits until the release has `n` sessions (the SDKs send in the background).
fn wait_sessions(server: &Server, app: &str, version: &str, n: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = health(server, app, version);
        if h["sessions"] == n || Instant::now() > deadline {
            return h;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn issues(server: &Server, app: &str) -> Vec<Value> {
    admin_get(server, &format!("/v1/admin/apps/{app}/issues"))["issues"].as_array().unwrap().clone()
}

#[test]
fn python_sentry_sdk_errors_and_sessions_uncompressed_gzip_and_brotli() {
    let py = python();
    let (_dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    let d = dsn(&server, "demo");
    assert_eq!(d.dsn, format!("{}/{}", server.url.replacen("://", &format!("://{}@", d.key), 1), d.project_id));

    // Uncompressed, single `session` items: 8 healthy, 2 crashed, 10 distinct users.
    let id1 = run_python(&py, &[&d.dsn, "none", "demo@1.0.0", "u1", "8", "2"]);
    // gzip, 5 and 5.
    run_python(&py, &[&d.dsn, "gzip", "demo@2.0.0", "u2", "5", "5"]);
    // brotli, request mode: an aggregated `sessions` item (no per-user ids in aggregates).
    run_python(&py, &[&d.dsn, "br", "demo@3.0.0", "u3", "3", "1", "aggregate"]);

    let h1 = wait_sessions(&server, "demo", "1.0.0", 10);
    assert_eq!((h1["sessions"].as_u64(), h1["crashed_sessions"].as_u64()), (Some(10), Some(2)), "{h1}");
    assert_eq!((h1["clients"].as_u64(), h1["crashed_clients"].as_u64()), (Some(10), Some(2)), "{h1}");
    assert_eq!(h1["crash_free_sessions"].as_f64(), Some(0.8));
    assert_eq!(h1["crash_free_clients"].as_f64(), Some(0.8));
    assert_eq!(h1["buckets"].as_array().unwrap().iter().map(|b| b["started"].as_u64().unwrap()).sum::<u64>(), 10);
    let h2 = wait_sessions(&server, "demo", "2.0.0", 10);
    assert_eq!(
        (h2["crashed_sessions"].as_u64(), h2["clients"].as_u64(), h2["crash_free_clients"].as_f64()),
        (Some(5), Some(10), Some(0.5))
    );
    let h3 = wait_sessions(&server, "demo", "3.0.0", 4);
    assert_eq!((h3["sessions"].as_u64(), h3["crashed_sessions"].as_u64(), h3["clients"].as_u64()), (Some(4), Some(1), Some(0)), "{h3}");

    // The CLI shows the same numbers.
    let out = server.cli(&["health", "show", "demo", "--version", "1.0.0", "--since", "2000-01-01T00:00:00+00:00"]).ok().stdout;
    assert!(out.contains("1.0.0: 10 sessions, crash-free 80.00%; 10 clients, crash-free 80.00%"), "{out}");

    // Issues: the handled ValueError (one per run: three) and the RuntimeError crashes (2+5+1),
    // grouped by type and frames although the messages differ.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut list = issues(&server, "demo");
    while list.iter().map(|i| i["events"].as_u64().unwrap()).sum::<u64>() < 11 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        list = issues(&server, "demo");
    }
    let by_type = |t: &str| list.iter().find(|i| i["exc_type"] == t).unwrap_or_else(|| panic!("no {t} issue in {list:?}")).clone();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(by_type("ValueError")["events"], 3);
    assert_eq!(by_type("RuntimeError")["events"], 8);

    // The stored event, as the SDK sent it minus everything personal.
    let issue_id = by_type("ValueError")["id"].as_i64().unwrap();
    let events = admin_get(&server, &format!("/v1/admin/apps/demo/issues/{issue_id}/events"));
    let ev =
        events["events"].as_array().unwrap().iter().find(|e| e["event_id"] == id1.replace('-', "")).expect("the first run's event").clone();
    assert_eq!(ev["version"], "1.0.0");
    assert_eq!(ev["release"], "demo@1.0.0");
    let body = ev["event"].to_string();
    for leaked in [
        "alice@example.com",
        "10.1.2.3",
        "192.168.7.7",
        "hunter2",
        "sk_live_51Hxyz",
        "4111 1111 1111 1111",
        "490154203237518",
        "00:1A:2B:3C:4D:5E",
        "eyJhbGciOi",
        "t0ps3cret",
        "abc123",
        "/home/alice",
        "Users\\\\carol",
        "/Users/bob",
        "u1-error-user",
        "\"username\"",
        "\"ip_address\"",
    ] {
        assert!(!body.contains(leaked), "{leaked} survived scrubbing: {body}");
    }
    let support = &ev["event"]["contexts"]["support"];
    assert_eq!(support["card"], "[card]");
    assert_eq!(support["imei"], "[imei]");
    assert_eq!(support["wifi_mac"], "[mac]");
    assert_eq!(support["note"], "call from [ip], auth: [Filtered]");
    assert_eq!(support["home"], "C:\\Users\\[user]\\AppData\\Local\\app.log");
    assert_eq!(support["mac_home"], "/Users/[user]/Library/Logs/app.log");
    assert_eq!(support["url"], "https://example.com/cb?code=1&token=[Filtered]");
    assert_eq!(support["Cookie"], "[Filtered]");
    assert_eq!(ev["event"]["tags"]["db_password"], "[Filtered]");
    assert_eq!(ev["message"], "cannot read /home/[user]/.config/app.toml for [email]");
    // The user id is there, hashed with the app's salt; the frame's local `api_key` is filtered.
    let uid = ev["event"]["user"]["id"].as_str().unwrap();
    assert_eq!(uid.len(), 32);
    assert!(body.contains("\"api_key\":\"[Filtered]\""), "{body}");

    // Erasing the first run's error user removes its one event (the other runs used other ids).
    let out = server.cli(&["privacy", "erase", "demo", "--client", "u1-error-user", "--json"]).ok().json();
    assert_eq!(out["events"], 1, "{out}");
    assert_eq!(by_type_after(&server, "ValueError"), 2);
    // A healthy user's sessions go too: its client record and session ids.
    let out = server.cli(&["privacy", "erase", "demo", "--client", "u1-0", "--json"]).ok().json();
    assert_eq!((out["clients"].as_u64(), out["sessions"].as_u64()), (Some(1), Some(1)), "{out}");
    assert_eq!(health(&server, "demo", "1.0.0")["clients"], 9);
    let audit = admin_get(&server, "/v1/admin/audit?app=demo");
    let erase = audit["events"].as_array().unwrap().iter().filter(|e| e["action"] == "privacy.erase").count();
    assert_eq!(erase, 2);
    assert!(!audit.to_string().contains("u1-error-user"), "the audit log names the hash, not the id");
}

fn by_type_after(server: &Server, t: &str) -> u64 {
    issues(server, "demo").iter().find(|i| i["exc_type"] == t).map_or(0, |i| i["events"].as_u64().unwrap())
}

#[test]
fn rust_sentry_crate_errors_and_sessions() {
    let (_dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    let d = dsn(&server, "demo");
    let options = sentry::ClientOptions {
        dsn: Some(d.dsn.parse().unwrap()),
        release: Some("demo@4.0.0".into()),
        environment: Some("production".into()),
        auto_session_tracking: false,
        session_mode: sentry::SessionMode::Application,
        default_integrations: false,
        ..Default::default()
    };
    let guard = sentry::init(options);
    for i in 0..6 {
        sentry::configure_scope(|s| s.set_user(Some(sentry::User { id: Some(format!("rust-{i}")), ..Default::default() })));
        sentry::start_session();
        if i < 2 {
            let err = std::io::Error::other(format!("disk full at /home/rustacean/{i}"));
            sentry::capture_error(&err);
            sentry::end_session_with_status(sentry::protocol::SessionStatus::Crashed);
        } else {
            sentry::end_session();
        }
    }
    sentry::capture_message("low battery for bob@example.org", sentry::Level::Warning);
    assert!(guard.flush(Some(Duration::from_secs(10))), "the SDK could not flush");
    drop(guard);
    let h = wait_sessions(&server, "demo", "4.0.0", 6);
    assert_eq!((h["sessions"].as_u64(), h["crashed_sessions"].as_u64()), (Some(6), Some(2)), "{h}");
    assert_eq!((h["clients"].as_u64(), h["crashed_clients"].as_u64()), (Some(6), Some(2)), "{h}");
    let list = issues(&server, "demo");
    assert_eq!(list.iter().map(|i| i["events"].as_u64().unwrap()).sum::<u64>(), 3, "{list:?}");
    let titles: Vec<&str> = list.iter().map(|i| i["title"].as_str().unwrap()).collect();
    assert!(titles.contains(&"low battery for [email]"), "{titles:?}");
    assert!(titles.iter().any(|t| t.contains("disk full at /home/[user]/")), "{titles:?}");
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn bad_input_is_refused_clearly_and_nothing_is_stored_twice() {
    let (_dir, data) = scratch();
    let server = Server::start_with(&data, Opts { env: vec![("UPDRAFT_INGEST_MAX_EVENT_BYTES", "20000".into())] });
    server.cli(&["app", "create", "demo"]).ok();
    let d = dsn(&server, "demo");
    let http = http();
    let auth = format!("Sentry sentry_key={}, sentry_version=7, sentry_client=test/1", d.key);
    let envelope = |body: &str| format!("{{\"event_id\":\"0123456789abcdef0123456789abcdef\"}}\n{body}");
    let event = "{\"type\":\"event\"}\n{\"message\":\"hello\",\"level\":\"error\"}\n";
    let big_event = format!("{{\"type\":\"event\"}}\n{{\"message\":\"{}\"}}\n", "x".repeat(30_000));
    let bomb = gzip(&vec![b'{'; 64 << 20]);
    let post = |path: String, key: Option<&str>, encoding: Option<&str>, body: Vec<u8>| {
        let mut req = http.post(server.url(&path)).body(body);
        if let Some(k) = key {
            req = req.header("x-sentry-auth", k);
        }
        if let Some(e) = encoding {
            req = req.header("content-encoding", e);
        }
        let r = req.send().unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().unwrap_or(Value::Null);
        (status, v)
    };
    let env_path = format!("/api/{}/envelope/", d.project_id);
    let wrong = "Sentry sentry_key=0000, sentry_version=7".to_owned();
    // (case, path, X-Sentry-Auth, Content-Encoding, body, status, error code)
    type Case<'a> = (&'a str, String, Option<&'a str>, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("unknown project", "/api/999999/envelope/".into(), Some(&auth), None, envelope(event).into_bytes(), 404, "unknown_project"),
        ("non-numeric project", "/api/abc/envelope/".into(), Some(&auth), None, envelope(event).into_bytes(), 404, "unknown_project"),
        ("wrong key", env_path.clone(), Some(&wrong), None, envelope(event).into_bytes(), 401, "invalid_dsn_key"),
        ("wrong key in query", format!("{env_path}?sentry_key=nope"), None, None, envelope(event).into_bytes(), 401, "invalid_dsn_key"),
        ("no key", env_path.clone(), None, None, envelope(event).into_bytes(), 401, "missing_dsn_key"),
        (
            "dsn header of another project",
            env_path.clone(),
            None,
            None,
            format!("{{\"dsn\":\"http://{}@h/{}\"}}\n{event}", d.key, d.project_id + 1).into_bytes(),
            401,
            "invalid_dsn_key",
        ),
        ("header not JSON", env_path.clone(), Some(&auth), None, b"hello\n{}".to_vec(), 400, "envelope_header_invalid"),
        (
            "item header without type",
            env_path.clone(),
            Some(&auth),
            None,
            envelope("{\"length\":2}\n{}\n").into_bytes(),
            400,
            "envelope_item_header_invalid",
        ),
        (
            "length longer than the body",
            env_path.clone(),
            Some(&auth),
            None,
            envelope("{\"type\":\"event\",\"length\":500}\n{}\n").into_bytes(),
            400,
            "envelope_length_mismatch",
        ),
        (
            "length shorter than the payload",
            env_path.clone(),
            Some(&auth),
            None,
            envelope("{\"type\":\"event\",\"length\":1}\n{}\n").into_bytes(),
            400,
            "envelope_length_mismatch",
        ),
        (
            "event not JSON",
            env_path.clone(),
            Some(&auth),
            None,
            envelope("{\"type\":\"event\"}\nnot json\n").into_bytes(),
            400,
            "payload_invalid_json",
        ),
        (
            "session without release",
            env_path.clone(),
            Some(&auth),
            None,
            envelope("{\"type\":\"session\"}\n{\"sid\":\"s\",\"init\":true}\n").into_bytes(),
            400,
            "payload_invalid",
        ),
        ("oversized event", env_path.clone(), Some(&auth), None, envelope(&big_event).into_bytes(), 413, "event_too_large"),
        (
            "oversized event, gzip",
            env_path.clone(),
            Some(&auth),
            Some("gzip"),
            gzip(envelope(&big_event).as_bytes()),
            413,
            "event_too_large",
        ),
        ("gzip bomb", env_path.clone(), Some(&auth), Some("gzip"), bomb, 413, "decompressed_too_large"),
        ("body too large", env_path.clone(), Some(&auth), None, vec![b' '; 2 << 20], 413, "body_too_large"),
        ("corrupt gzip", env_path.clone(), Some(&auth), Some("gzip"), b"\x1f\x8b garbage".to_vec(), 400, "body_not_decodable"),
        ("corrupt brotli", env_path.clone(), Some(&auth), Some("br"), b"\xff\xff\xff\xff\xff".to_vec(), 400, "body_not_decodable"),
        (
            "unknown encoding",
            env_path.clone(),
            Some(&auth),
            Some("zstd"),
            envelope(event).into_bytes(),
            415,
            "unsupported_content_encoding",
        ),
        (
            "store: event is a list",
            format!("/api/{}/store/", d.project_id),
            Some(&auth),
            None,
            b"[1]".to_vec(),
            400,
            "payload_invalid_json",
        ),
    ];
    for (name, path, key, enc, body, status, code) in cases {
        let (got, v) = post(path, key, enc, body);
        assert_eq!((got, v["error"]["code"].as_str().unwrap_or("")), (status, code), "{name}: {v}");
    }
    assert!(issues(&server, "demo").is_empty(), "a refused envelope stored something");

    // Unknown item types are skipped, not fatal; the same event twice is stored once.
    let ok = envelope(&format!("{{\"type\":\"client_report\"}}\n{{}}\n{{\"type\":\"attachment\",\"length\":3}}\nabc\n{event}"));
    let (s, v) = post(env_path.clone(), Some(&auth), None, ok.clone().into_bytes());
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["id"].as_str(), v["events_stored"].as_u64(), v["items_skipped"].as_u64()),
        (Some("0123456789abcdef0123456789abcdef"), Some(1), Some(2))
    );
    let (s, v) = post(env_path.clone(), Some(&auth), Some("gzip"), gzip(ok.as_bytes()));
    assert_eq!((s, v["events_stored"].as_u64(), v["events_duplicate"].as_u64()), (200, Some(0), Some(1)), "{v}");
    // The key in the query string and in the envelope's dsn work too.
    let (s, v) = post(format!("{env_path}?sentry_key={}", d.key), None, None, ok.clone().into_bytes());
    assert_eq!((s, v["events_duplicate"].as_u64()), (200, Some(1)));
    let with_dsn = format!("{{\"event_id\":\"fedcba9876543210fedcba9876543210\",\"dsn\":\"{}\"}}\n{event}", d.dsn);
    let (s, v) = post(env_path.clone(), None, None, with_dsn.into_bytes());
    assert_eq!((s, v["events_stored"].as_u64()), (200, Some(1)), "{v}");
    let list = issues(&server, "demo");
    assert_eq!((list.len(), list[0]["events"].as_u64()), (1, Some(2)), "{list:?}");
    assert_eq!(http.get(server.url("/healthz")).send().unwrap().status(), 200);
}

#[test]
fn ingest_is_rate_limited_per_dsn_key() {
    let (_dir, data) = scratch();
    let server = Server::start_with(&data, Opts { env: vec![("UPDRAFT_INGEST_RATE_LIMIT", "1".into())] });
    server.cli(&["app", "create", "demo"]).ok();
    server.cli(&["app", "create", "other"]).ok();
    let (d, other) = (dsn(&server, "demo"), dsn(&server, "other"));
    let http = http();
    let send = |d: &Dsn| {
        http.post(server.url(&format!("/api/{}/envelope/?sentry_key={}", d.project_id, d.key)))
            .body("{}\n{\"type\":\"session\"}\n{\"sid\":\"x\",\"init\":true,\"attrs\":{\"release\":\"1.0.0\"}}\n")
            .send()
            .unwrap()
    };
    let mut limited = None;
    for _ in 0..30 {
        let r = send(&d);
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status(), 200);
    }
    let r = limited.expect("30 envelopes at 1/s were never limited");
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert_eq!(r.headers()["x-sentry-rate-limits"].to_str().unwrap(), format!("{retry}::key"));
    assert_eq!(r.json::<Value>().unwrap()["error"]["code"], "rate_limited");
    // Another app's key has its own budget.
    assert_eq!(send(&other).status(), 200);
    // The repeated session id counted once.
    assert_eq!(health(&server, "demo", "1.0.0")["sessions"], 1);
}

#[test]
fn retention_deletes_old_data_in_the_background() {
    let (_dir, data) = scratch();
    let server = Server::start_with(&data, Opts { env: vec![("UPDRAFT_MAINTENANCE_INTERVAL_SECS", "1".into())] });
    server.cli(&["app", "create", "demo"]).ok();
    let d = dsn(&server, "demo");
    let old = time::OffsetDateTime::now_utc() - time::Duration::days(3);
    let old = old.format(&time::format_description::well_known::Rfc3339).unwrap();
    let body = format!(
        "{{}}\n{{\"type\":\"sessions\"}}\n{}\n{{\"type\":\"sessions\"}}\n{}\n",
        json!({"aggregates": [{"started": old, "exited": 5}], "attrs": {"release": "1.0.0"}}),
        json!({"aggregates": [{"started": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap(), "exited": 2}], "attrs": {"release": "1.0.0"}}),
    );
    let r = http().post(server.url(&format!("/api/{}/envelope/?sentry_key={}", d.project_id, d.key))).body(body).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(health(&server, "demo", "1.0.0")["sessions"], 7);
    let out = server.cli(&["privacy", "retention", "demo", "--days", "1"]).ok().stdout;
    assert!(out.contains("1 days"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while health(&server, "demo", "1.0.0")["sessions"] != 2 {
        assert!(Instant::now() < deadline, "the 3-day-old bucket was not deleted");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn updraft_client_reports_installs_failures_and_rollbacks_when_enabled() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    let d = dsn(&server, "demo");
    publish(&server, dir.path(), "demo", "2.0.0", "linux-x86_64", &bytes(1000, 5), &[]);
    let trust = dir.path().join("demo.root.json");
    std::fs::copy(server.data.join("trust/demo.root.json"), &trust).unwrap();
    let client = |extra: &[&str]| {
        let state = dir.path().join("state");
        let mut args =
            vec!["client", "install", "--server", &server.url, "--app", "demo", "--channel", "stable", "--platform", "linux-x86_64"];
        // A rollback runs on the new version and goes back from it.
        let current = if extra.contains(&"--rollback") { "2.0.0" } else { "1.0.0" };
        args.extend_from_slice(&["--current", current, "--trust", trust.to_str().unwrap(), "--state", state.to_str().unwrap()]);
        args.extend_from_slice(extra);
        run_cli(&server.url, "unused", &args)
    };
    let target = dir.path().join("app.bin");
    std::fs::write(&target, b"1.0.0").unwrap();
    let t = target.to_str().unwrap();
    // Off by default: nothing is reported.
    client(&["--target", t]).ok();
    client(&["--target", t, "--rollback"]).ok();
    assert_eq!(health(&server, "demo", "2.0.0")["installs"], 0);
    // With a DSN: a success, a rollback, and a failure (the target's directory does not exist).
    client(&["--target", t, "--report-dsn", &d.dsn]).ok();
    client(&["--target", t, "--rollback", "--report-dsn", &d.dsn]).ok();
    let missing = dir.path().join("no/such/dir/app.bin");
    let out = client(&["--target", missing.to_str().unwrap(), "--report-dsn", &d.dsn]);
    assert_ne!(out.code, 0, "{out:?}");
    let h = health(&server, "demo", "2.0.0");
    assert_eq!((h["installs"].as_u64(), h["failed_installs"].as_u64()), (Some(3), Some(2)), "{h}");
    // The install id is stored only hashed: erasing by it removes the three reports.
    let id = std::fs::read_to_string(dir.path().join("state/client-id")).unwrap().trim().to_owned();
    let out = server.cli(&["privacy", "erase", "demo", "--client", &id, "--json"]).ok().json();
    assert_eq!(out["installs"], 3, "{out}");
}
