//! Health-gated rollouts and incident commands through the real binary: schedules that advance
//! on their own (and wait while nobody reports), rules and webhook configuration, resume after
//! a halt, and yank with a downgrade offer that our client takes only because signed metadata
//! says so. The crash simulation with Sentry session envelopes is in `simulation.rs`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

/// A server whose rollout job runs every second.
pub fn fast_server(data: &std::path::Path) -> Server {
    Server::start_with(data, Opts { env: vec![("UPDRAFT_HEALTH_INTERVAL_SECS", "1".into())] })
}

/// Polls `f` until it returns `Some`, for at most `secs` seconds.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn status(server: &Server, app: &str, version: &str) -> Value {
    server.cli(&["rollout", "status", app, version, "--json"]).ok().json()
}

fn audit_actions(server: &Server, app: &str) -> Vec<Value> {
    let v: Value =
        http().get(server.url(&format!("/v1/admin/audit?app={app}&limit=1000"))).bearer_auth(TOKEN).send().unwrap().json().unwrap();
    v["events"].as_array().unwrap().clone()
}

fn target_custom(server: &Server, app: &str, version: &str) -> Value {
    let targets = latest_targets(server, app);
    let (_, t) = targets["signed"]["targets"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(path, _)| path.starts_with(&format!("{version}/")))
        .unwrap_or_else(|| panic!("{version} not in targets: {targets}"));
    t["custom"].clone()
}

#[test]
fn a_schedule_advances_step_by_step_only_when_its_rules_pass() {
    let (dir, data) = scratch();
    let server = fast_server(&data);
    server.cli(&["app", "create", "demo"]).ok();
    publish(&server, dir.path(), "demo", "1.0.0", "linux-x86_64", &bytes(64, 1), &[]);

    // Default rules, and nobody reports: the release waits at its first step, however long
    // the soak has passed. Silence is not health.
    let v = publish(&server, dir.path(), "demo", "2.0.0", "linux-x86_64", &bytes(64, 2), &["--schedule", "10%:1s,50%:1s,100%"]);
    assert_eq!(v["rollout_percent"], 10.0, "{v}");
    std::thread::sleep(Duration::from_secs(4));
    let s = status(&server, "demo", "2.0.0");
    assert_eq!((s["rollout_percent"].as_f64(), s["verdict"].as_str()), (Some(10.0), Some("waiting")), "{s}");
    assert_eq!(s["schedule"]["step"], 0);
    assert_eq!(s["schedule"]["next_percent"], 50.0);
    assert_eq!(s["platforms"][0]["baseline_version"], "1.0.0");
    assert_eq!(s["closest_rule"]["state"], "no_data", "{s}");
    let text = server.cli(&["rollout", "status", "demo", "2.0.0"]).ok().stdout;
    assert!(text.contains("10%:1s,50%:1s,100%") && text.contains("crash_free_sessions") && text.contains("NO_DATA"), "{text}");
    assert!(text.contains("health: waiting"), "{text}");

    // No rules at all: the schedule runs on time alone, to 100 %.
    let rules = dir.path().join("none.json");
    std::fs::write(&rules, r#"{"rules": []}"#).unwrap();
    let r = server.cli(&["app", "health-rules", "demo", "--set", rules.to_str().unwrap(), "--json"]).ok().json();
    assert_eq!((r["rules"].as_array().map(Vec::len), r["defaults"].as_bool()), (Some(0), Some(false)), "{r}");
    let done = wait_for(20, "the schedule to complete", || {
        let s = status(&server, "demo", "2.0.0");
        (s["schedule"]["state"] == "completed").then_some(s)
    });
    assert_eq!(done["rollout_percent"], 100.0);
    assert_eq!(done["verdict"], "healthy");
    // Each step went through signing: the client's signed rollout says 100 % too.
    assert_eq!(target_custom(&server, "demo", "2.0.0")["rollout"]["basis_points"], 10_000);
    let answer = http().get(server.url("/v1/update/demo/stable/linux-x86_64?current=1.0.0")).send().unwrap();
    assert_eq!(answer.json::<Value>().unwrap()["version"], "2.0.0", "fully rolled out: offered even without a client id");
    let steps: Vec<u64> = audit_actions(&server, "demo")
        .iter()
        .filter(|e| e["action"] == "rollout.advance")
        .map(|e| e["detail"]["to"]["rollout_bp"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, vec![5_000, 10_000]);
    assert!(audit_actions(&server, "demo").iter().all(|e| e["actor"] != "system" || e["action"] != "rollout.halt"));
    server.cli(&["audit", "verify"]).ok();

    // Back to the defaults.
    let r = server.cli(&["app", "health-rules", "demo", "--defaults", "--json"]).ok().json();
    assert_eq!(r["defaults"], true);
    assert_eq!(r["rules"].as_array().map(Vec::len), Some(3));
}

#[test]
fn a_cleared_schedule_leaves_the_release_where_it_is_for_people_to_move() {
    let (dir, data) = scratch();
    let server = fast_server(&data);
    server.cli(&["app", "create", "demo"]).ok();
    publish(&server, dir.path(), "demo", "1.0.0", "linux-x86_64", &bytes(64, 1), &[]);
    publish(&server, dir.path(), "demo", "2.0.0", "linux-x86_64", &bytes(64, 2), &["--schedule", "10%:1s,50%:1s,100%"]);
    let cleared = server.cli(&["rollout", "schedule", "demo", "2.0.0", "--clear", "--json"]).ok().json();
    assert!(cleared["schedule"].is_null(), "{cleared}");
    assert_eq!(cleared["rollout_percent"], 10.0, "{cleared}");
    // Rules that would let a schedule run on time alone: nothing moves it now.
    let rules = dir.path().join("none.json");
    std::fs::write(&rules, r#"{"rules": []}"#).unwrap();
    server.cli(&["app", "health-rules", "demo", "--set", rules.to_str().unwrap()]).ok();
    std::thread::sleep(Duration::from_secs(3));
    let s = status(&server, "demo", "2.0.0");
    assert_eq!(s["rollout_percent"], 10.0, "{s}");
    assert!(s["schedule"].is_null(), "{s}");
    assert!(audit_actions(&server, "demo").iter().all(|e| e["action"] != "rollout.advance"));
    let clear = audit_actions(&server, "demo").into_iter().find(|e| e["action"] == "rollout.schedule.clear").expect("audited");
    assert_eq!(clear["detail"]["schedule"], "10%:1s,50%:1s,100%", "{clear}");
    // People move it; a second clear has nothing to clear.
    server.cli(&["rollout", "set", "demo", "2.0.0", "--percent", "40"]).ok();
    assert_eq!(status(&server, "demo", "2.0.0")["rollout_percent"], 40.0);
    let again = server.cli(&["rollout", "schedule", "demo", "2.0.0", "--clear"]);
    assert_eq!(again.code, 6, "{again:?}");
    assert!(again.stderr.contains("schedule_not_found"), "{}", again.stderr);
    let usage = server.cli(&["rollout", "schedule", "demo", "2.0.0"]);
    assert_eq!(usage.code, 2, "neither --schedule nor --clear: {usage:?}");
}

#[test]
fn bad_schedules_rules_and_webhooks_get_clear_errors() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    publish(&server, dir.path(), "demo", "1.0.0", "linux-x86_64", &bytes(64, 1), &[]);
    let http = http();
    let put = |path: &str, body: Value| {
        let r = http.put(server.url(path)).bearer_auth(TOKEN).json(&body).send().unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    };
    for (body, code) in [
        (json!({"schedule": "10%:1h,5%"}), "invalid_schedule"),
        (json!({"schedule": "1%,100%"}), "invalid_schedule"),
        (json!({"schedule": ""}), "invalid_schedule"),
        (json!({"steps": "1%"}), "invalid_body"),
    ] {
        let (status, v) = put("/v1/admin/apps/demo/releases/1.0.0/schedule", body.clone());
        assert_eq!((status, v["error"]["code"].as_str()), (400, Some(code)), "{body}: {v}");
    }
    let (status, v) = put("/v1/admin/apps/demo/releases/9.9.9/schedule", json!({"schedule": "1%:1h,100%"}));
    assert_eq!((status, v["error"]["code"].as_str()), (404, Some("release_not_found")), "{v}");
    // Every problem at once.
    let (status, v) = put(
        "/v1/admin/apps/demo/health-rules",
        json!({"z": 9, "rules": [{"metric": "vibes", "min_sample": 1, "tolerance": 0.1}, {"metric": "crash_free_clients", "min_sample": 0, "tolerance": -1},
                                 {"metric": "install_failure_rate", "min_sample": 1u64 << 63, "tolerance": 0.0}],
               "webhook": {"url": "ftp://example.com", "format": "xml"}}),
    );
    assert_eq!((status, v["error"]["code"].as_str()), (400, Some("invalid_health_rules")), "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    for part in ["vibes", "z must", "min_sample must be at least 1", "min_sample must be at most", "tolerance", "xml", "http://"] {
        assert!(msg.contains(part), "{part} missing from {msg}");
    }
    // Webhooks into the server's own network (SSRF) are refused unless the operator allows them.
    for url in [
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:8080/",
        "http://[::1]/",
        "http://10.0.0.5/",
    ] {
        let (status, v) = put("/v1/admin/apps/demo/health-rules", json!({"webhook": {"url": url, "format": "json"}}));
        assert_eq!((status, v["error"]["code"].as_str()), (400, Some("invalid_health_rules")), "{url}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("UPDRAFT_WEBHOOK_ALLOW_PRIVATE"), "{url}: {v}");
    }
    // The body is an object (serde would take a struct's fields as an array), and `defaults`
    // is in answers only.
    for body in [json!([2.5, null, null]), json!([]), json!({"defaults": true}), json!({"z": 2.5, "defaults": false})] {
        let (status, v) = put("/v1/admin/apps/demo/health-rules", body.clone());
        assert_eq!((status, v["error"]["code"].as_str()), (400, Some("invalid_body")), "{body}: {v}");
        let want = if body.is_array() { "expected a JSON object" } else { "unknown field `defaults`" };
        assert!(v["error"]["message"].as_str().unwrap().contains(want), "{body}: {v}");
    }
    // Nothing was stored: the answer says these are the defaults.
    let r = http.get(server.url("/v1/admin/apps/demo/health-rules")).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(r.status(), 200);
    let v = r.json::<Value>().unwrap();
    assert_eq!((v["defaults"].as_bool(), v["z"].as_f64(), v["webhook"].is_null()), (Some(true), Some(1.96), true), "{v}");
    assert!(!v["rules"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(server.cli(&["app", "health-rules", "demo", "--json"]).ok().json()["defaults"], true);
    // The CLI checks a schedule before uploading anything.
    let out = server.cli(&["rollout", "schedule", "demo", "1.0.0", "--schedule", "50%:1h,10%"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("not above"), "{out:?}");
    // A webhook secret (Slack puts it in the path) stays out of the audit log.
    server
        .cli(&[
            "app",
            "health-rules",
            "demo",
            "--webhook",
            "https://hooks.example.com/services/T000/B000/SECRETSECRET",
            "--webhook-format",
            "slack",
        ])
        .ok();
    let events = audit_actions(&server, "demo");
    let set = events.iter().rev().find(|e| e["action"] == "health_rules.set").unwrap();
    assert_eq!(set["detail"]["webhook"], "https://hooks.example.com");
    assert!(!set.to_string().contains("SECRETSECRET"));
}

#[test]
fn yank_with_downgrade_sends_clients_on_it_back_to_the_last_good_release() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    let good = bytes(5000, 10);
    publish(&server, dir.path(), "demo", "1.0.0", "linux-x86_64", &good, &[]);
    publish(&server, dir.path(), "demo", "1.5.0", "linux-x86_64", &bytes(5000, 15), &["--rollout", "20"]);
    publish(&server, dir.path(), "demo", "2.0.0", "linux-x86_64", &bytes(5000, 20), &[]);
    let http = http();
    let check = |current: &str| {
        let r = http.get(server.url(&format!("/v1/update/demo/stable/linux-x86_64?current={current}&client=c-1"))).send().unwrap();
        if r.status() == 204 {
            Value::Null
        } else {
            r.json::<Value>().unwrap()
        }
    };
    assert_eq!(check("1.0.0")["version"], "2.0.0");

    // Without --downgrade: 2.0.0 is gone, clients on it are offered nothing.
    // With it: they are offered 1.0.0 (the last release fully rolled out below it), flagged.
    let v = server.cli(&["release", "yank", "demo", "2.0.0", "--downgrade", "--json"]).ok().json();
    assert_eq!(v["state"], "yanked");
    let offer = check("2.0.0");
    assert_eq!((offer["version"].as_str(), offer["downgrade"].as_bool()), (Some("1.0.0"), Some(true)), "{offer}");
    // Clients on 1.0.0: at most 1.5.0 (20 %, by bucket), never the yanked 2.0.0.
    let o = check("1.0.0");
    assert!(o.is_null() || o["version"] == "1.5.0", "{o}");
    assert_ne!(check("1.5.0")["version"], "1.0.0", "clients on other versions are never sent down");
    assert!(check("1.5.0").get("downgrade").is_none());

    // Signed: the good release's target names the yanked version, and our client takes it.
    assert_eq!(target_custom(&server, "demo", "1.0.0")["downgrade_from"], json!(["2.0.0"]));
    let trust = dir.path().join("demo.root.json");
    std::fs::copy(server.data.join("trust/demo.root.json"), &trust).unwrap();
    let client =
        |current: &str, extra: &[&str]| demo_client(&server, &trust, &dir.path().join(format!("state-{current}")), "check", current, extra);
    let out = client("2.0.0", &["--json"]).ok().json();
    assert_eq!((out["update"]["version"].as_str(), out["update"]["downgrade"].as_bool()), (Some("1.0.0"), Some(true)), "{out}");
    assert!(client("2.0.0", &[]).stdout.contains("downgrade"));
    // Clients on the good release are never sent the yanked build nor down: nothing (exit 3),
    // or 1.5.0 when the client's random install id falls in that release's 20 %.
    let r = client("1.0.0", &["--json"]);
    if r.code != 3 {
        let v = r.ok().json();
        assert_eq!((v["update"]["version"].as_str(), v["update"]["downgrade"].as_bool()), (Some("1.5.0"), Some(false)), "{v}");
    }
    let target = dir.path().join("installed.bin");
    std::fs::write(&target, b"the yanked build").unwrap();
    let state = dir.path().join("state-install");
    let out = demo_client(&server, &trust, &state, "install", "2.0.0", &["--target", target.to_str().unwrap()]).ok();
    assert_eq!(std::fs::read(&target).unwrap(), good, "{out:?}");

    // The offer survives every later signing (another release, a re-sign) and a restart.
    publish(&server, dir.path(), "demo", "1.6.0", "linux-x86_64", &bytes(5000, 16), &["--rollout", "1"]);
    assert_eq!(target_custom(&server, "demo", "1.0.0")["downgrade_from"], json!(["2.0.0"]));
    let audit = audit_actions(&server, "demo");
    let yank = audit.iter().find(|e| e["action"] == "release.yank").unwrap();
    assert_eq!(yank["detail"]["downgrade_to"][0]["version"], "1.0.0", "{yank}");

    // Nothing below to go back to: refused, and nothing changes.
    let out = server.cli(&["release", "yank", "demo", "1.0.0", "--downgrade"]);
    assert_eq!(out.code, 6, "{out:?}");
    assert!(out.stderr.contains("no_downgrade_target"), "{out:?}");
    let releases = server.cli(&["release", "list", "demo", "--json"]).ok().json();
    let one = releases["releases"].as_array().unwrap().iter().find(|r| r["version"] == "1.0.0").unwrap().clone();
    assert_eq!(one["state"], "published");
}
