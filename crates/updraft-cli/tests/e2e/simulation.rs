//! The release-health simulation: 2,000 simulated installs on 1.0.0 crash in 0.5 % of their
//! sessions and report them to a live server as Sentry envelopes (the `sessions` item, with
//! each install's id), authenticated by the app's DSN. 2.0.0 is published on a seconds-scale
//! schedule; installs take it when `/v1/update` offers it to them, then report on it.
//!
//! - 2.0.0 as healthy as 1.0.0: the schedule completes to 100 %, with no halt.
//! - 2.0.0 crashing in 5 % of sessions: it halts by itself at its first step; `/v1/update`, the
//!   signed TUF targets (our client gets no update) and the webhook receiver all see it.
//! - A handful of reports, however bad: no halt (the rules wait for their minimum samples).
//!
//! The default health rules judge it. Randomness comes from a fixed seed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::compat::{answers, linux, publish_files};
use crate::harness::*;
use crate::health::{status, wait_for};

const CLIENTS: usize = 2_000;
const SESSIONS_PER_REPORT: u64 = 5;

/// splitmix64: a fixed seed gives the same simulation on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

struct Sim {
    server: Server,
    project_id: i64,
    key: String,
    hooks: mpsc::Receiver<Value>,
    _dir: tempfile::TempDir,
}

/// A tiny webhook receiver: each POST body, parsed, goes down the channel; answers 200.
fn webhook_receiver() -> (String, mpsc::Receiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/updraft", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_ok() {
                let _ = tx.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, rx)
}

fn start(with_baseline: bool) -> Sim {
    let (dir, data) = scratch();
    let server = Server::start_with(
        &data,
        Opts {
            env: vec![
                ("UPDRAFT_HEALTH_INTERVAL_SECS", "1".into()),
                ("UPDRAFT_INGEST_RATE_LIMIT", "0".into()),
                // The test's webhook receiver listens on loopback.
                ("UPDRAFT_WEBHOOK_ALLOW_PRIVATE", "true".into()),
            ],
        },
    );
    server.cli(&["app", "create", "demo"]).ok();
    let dsn = server.cli(&["app", "dsn", "demo", "--json"]).ok().json();
    let (hook_url, hooks) = webhook_receiver();
    server.cli(&["app", "health-rules", "demo", "--webhook", &hook_url]).ok();
    let sim = Sim {
        server,
        project_id: dsn["project_id"].as_i64().unwrap(),
        key: dsn["public_key"].as_str().unwrap().to_owned(),
        hooks,
        _dir: dir,
    };
    sim.publish("1.0.0", &[]);
    if with_baseline {
        let mut rng = Rng(0x5EED_0001);
        sim.report("1.0.0", &(0..CLIENTS).collect::<Vec<_>>(), 0.005, &mut rng);
        wait_for(30, "the baseline's sessions to be stored", || {
            let s = sim.health("1.0.0");
            (s["sessions"].as_u64() == Some(CLIENTS as u64 * SESSIONS_PER_REPORT)).then_some(())
        });
    }
    sim
}

impl Sim {
    /// A release for Linux (AppImage) and macOS (zip), so every compatible feed lists it.
    fn publish(&self, version: &str, extra: &[&str]) {
        let seed = version.bytes().map(u64::from).sum::<u64>();
        let linux = linux();
        let (a, b) = (bytes(3000, seed), bytes(3000, seed + 1));
        publish_files(
            &self.server,
            self._dir.path(),
            version,
            &[(&linux, "demo.AppImage", &a), ("darwin-universal", "Demo.zip", &b)],
            extra,
        );
    }

    /// Each client sends one envelope with a `sessions` item: its sessions on `version`, each
    /// crashed with probability `crash`. Four senders in parallel, like installs would.
    fn report(&self, version: &str, clients: &[usize], crash: f64, rng: &mut Rng) {
        let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap();
        let bodies: Vec<String> = clients
            .iter()
            .map(|c| {
                let crashed = (0..SESSIONS_PER_REPORT).filter(|_| rng.chance(crash)).count() as u64;
                let item = json!({
                    "attrs": {"release": format!("demo@{version}"), "environment": "production"},
                    "aggregates": [{"started": now, "did": format!("install-{c:04}"), "exited": SESSIONS_PER_REPORT - crashed, "crashed": crashed}],
                })
                .to_string();
                format!("{{\"sent_at\":\"{now}\"}}\n{{\"type\":\"sessions\",\"length\":{}}}\n{item}\n", item.len())
            })
            .collect();
        let url = self.server.url(&format!("/api/{}/envelope/", self.project_id));
        let auth = format!("Sentry sentry_key={}, sentry_version=7, sentry_client=updraft-simulation/1", self.key);
        std::thread::scope(|s| {
            for chunk in bodies.chunks(bodies.len().div_ceil(4).max(1)) {
                let (url, auth) = (&url, &auth);
                s.spawn(move || {
                    let http = http();
                    for body in chunk {
                        let r = http
                            .post(url)
                            .header("x-sentry-auth", auth)
                            .header("content-type", "application/x-sentry-envelope")
                            .body(body.clone())
                            .send()
                            .unwrap();
                        assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
                    }
                });
            }
        });
    }

    fn health(&self, version: &str) -> Value {
        let v: Value = http()
            .get(self.server.url(&format!("/v1/admin/apps/demo/health?version={version}")))
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["releases"].as_array().and_then(|r| r.iter().find(|x| x["version"] == version).cloned()).unwrap_or(v)
    }

    /// Which of `clients` (still on 1.0.0) `/v1/update` now offers 2.0.0.
    fn offered(&self, clients: &[usize]) -> Vec<usize> {
        let http = http();
        clients
            .iter()
            .copied()
            .filter(|c| {
                let r = http
                    .get(self.server.url(&format!("/v1/update/demo/stable/{}?current=1.0.0&client=install-{c:04}", linux())))
                    .send()
                    .unwrap();
                r.status() == 200 && r.json::<Value>().unwrap()["version"] == "2.0.0"
            })
            .collect()
    }

    /// Runs the rollout: installs take 2.0.0 when offered and report on it, until `done`.
    /// Returns the installs that took 2.0.0.
    fn roll(&self, crash: f64, rng: &mut Rng, mut done: impl FnMut(&Value) -> bool) -> (Vec<usize>, Value) {
        let mut on_old: Vec<usize> = (0..CLIENTS).collect();
        let mut upgraded = Vec::new();
        let mut last_share = -1.0;
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let s = status(&self.server, "demo", "2.0.0");
            if done(&s) {
                return (upgraded, s);
            }
            assert!(std::time::Instant::now() < deadline, "the rollout did not finish: {s}");
            let share = s["rollout_percent"].as_f64().unwrap();
            if share != last_share && s["state"] == "published" {
                last_share = share;
                let taken = self.offered(&on_old);
                on_old.retain(|c| !taken.contains(c));
                upgraded.extend_from_slice(&taken);
                self.report("2.0.0", &taken, crash, rng);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn audit(server: &Server, action: &str) -> Vec<Value> {
    let v: Value = http().get(server.url("/v1/admin/audit?app=demo&limit=1000")).bearer_auth(TOKEN).send().unwrap().json().unwrap();
    v["events"].as_array().unwrap().iter().filter(|e| e["action"] == action).cloned().collect()
}

#[test]
fn a_healthy_release_rolls_out_to_everyone_on_its_schedule() {
    let sim = start(true);
    let mut rng = Rng(0x5EED_0002);
    sim.publish("2.0.0", &["--schedule", "10%:2s,50%:2s,100%"]);
    let (upgraded, s) = sim.roll(0.005, &mut rng, |s| s["schedule"]["state"] != "active");
    assert_eq!((s["schedule"]["state"].as_str(), s["rollout_percent"].as_f64()), (Some("completed"), Some(100.0)), "{s}");
    assert_eq!(s["state"], "published");
    // Judged on real numbers, not on silence: every rule with data passed.
    assert_eq!(s["verdict"], "healthy", "{s}");
    let rules = s["platforms"][0]["rules"].as_array().unwrap();
    let sessions = rules.iter().find(|r| r["metric"] == "crash_free_sessions").unwrap();
    assert_eq!(sessions["state"], "healthy");
    assert!(sessions["new"]["reports"].as_u64().unwrap() >= 200, "{sessions}");
    assert_eq!(rules.iter().find(|r| r["metric"] == "install_failure_rate").unwrap()["state"], "no_data");
    let steps: Vec<u64> = audit(&sim.server, "rollout.advance").iter().map(|e| e["detail"]["to"]["rollout_bp"].as_u64().unwrap()).collect();
    assert_eq!(steps, vec![5_000, 10_000]);
    for e in audit(&sim.server, "rollout.advance") {
        assert_eq!(e["detail"]["verdict"], "healthy", "each step was taken on a healthy verdict: {e}");
    }
    assert!(audit(&sim.server, "rollout.halt").is_empty());
    assert!(sim.hooks.try_recv().is_err(), "no webhook for a healthy rollout");
    // The first step's installs took it (~10 %; the loop always sees that step, because it
    // cannot advance before their reports arrive). Later steps may pass faster than this loop
    // runs on a loaded machine, so their share is checked through the audit steps above and the
    // offer to everyone below, not through how many installs the loop happened to move.
    assert!(upgraded.len() >= CLIENTS / 20, "{}", upgraded.len());
    assert_eq!(sim.offered(&(0..CLIENTS).collect::<Vec<_>>()).len(), CLIENTS, "at 100 % every install is offered 2.0.0");
    // Every compatible feed offers it too (the halt test relies on feeds that can say so).
    let http = http();
    for c in [0, 999, 1999] {
        let a = answers(&sim.server, &http, &format!("install-{c:04}"));
        let all = [a.v1, a.tauri, a.electron, a.velopack, a.sparkle];
        assert!(all.iter().all(|v| v.as_deref() == Some("2.0.0")), "install-{c:04}: {all:?}");
    }
}

#[test]
fn a_crashing_release_halts_itself_at_its_first_step_everywhere() {
    let sim = start(true);
    let mut rng = Rng(0x5EED_0003);
    sim.publish("2.0.0", &["--schedule", "10%:3s,50%:3s,100%"]);
    let (upgraded, s) = sim.roll(0.05, &mut rng, |s| s["state"] == "halted");
    // Halted, not yanked, before passing the first step.
    assert_eq!((s["rollout_percent"].as_f64(), s["schedule"]["state"].as_str()), (Some(10.0), Some("halted")), "{s}");
    assert!(audit(&sim.server, "rollout.advance").is_empty(), "it never passed its first step");
    assert!(!upgraded.is_empty() && upgraded.len() < CLIENTS / 5, "{}", upgraded.len());
    let closest = &s["closest_rule"];
    assert_eq!(closest["state"], "tripped", "{s}");
    assert!(closest["new"]["upper"].as_f64().unwrap() < closest["threshold"].as_f64().unwrap());

    // The evidence, in the audit log and in the schedule.
    let halts = audit(&sim.server, "rollout.halt");
    assert_eq!(halts.len(), 1);
    let ev = &halts[0];
    assert_eq!(ev["actor"], "system");
    let rule = &ev["detail"]["rule"];
    assert!(["crash_free_sessions", "crash_free_clients"].contains(&rule["metric"].as_str().unwrap()), "{ev}");
    assert!(rule["new"]["upper"].as_f64().unwrap() < rule["baseline"]["lower"].as_f64().unwrap() - rule["tolerance"].as_f64().unwrap());
    assert_eq!(ev["detail"]["evaluation"]["platforms"][0]["baseline"], "1.0.0");
    assert!(ev["detail"]["metadata_versions"].as_array().is_some_and(|m| !m.is_empty()), "the halt was signed: {ev}");
    assert!(s["schedule"]["halt_evidence"]["rule"].is_object());

    // /v1/update: no install is offered 2.0.0 any more.
    assert!(sim.offered(&(0..CLIENTS).collect::<Vec<_>>()).is_empty());
    // Nor by any compatible feed, even to installs the 10 % step had admitted.
    let http = http();
    for c in upgraded.iter().take(10) {
        let a = answers(&sim.server, &http, &format!("install-{c:04}"));
        let all = [a.v1, a.tauri, a.electron, a.velopack, a.sparkle];
        assert!(all.iter().all(Option::is_none), "install-{c:04}: {all:?}");
    }
    // Signed TUF targets: paused, so our client, verifying, gets no update.
    let targets = latest_targets(&sim.server, "demo");
    let entry = targets["signed"]["targets"].as_object().unwrap().iter().find(|(p, _)| p.starts_with("2.0.0/")).unwrap().1.clone();
    assert_eq!(entry["custom"]["rollout"]["paused"], true);
    let trust = sim._dir.path().join("demo.root.json");
    std::fs::copy(sim.server.data.join("trust/demo.root.json"), &trust).unwrap();
    for &c in upgraded.iter().take(10) {
        let state = sim._dir.path().join(format!("client-{c}"));
        let out = run_cli(
            &sim.server.url,
            "unused",
            &[
                "client",
                "check",
                "--server",
                &sim.server.url,
                "--app",
                "demo",
                "--channel",
                "stable",
                "--platform",
                &linux(),
                "--current",
                "1.0.0",
                "--trust",
                trust.to_str().unwrap(),
                "--state",
                state.to_str().unwrap(),
                "--client-id",
                &format!("install-{c:04}"),
            ],
        );
        assert_eq!(out.code, 3, "install-{c:04}: {out:?}");
    }
    // The webhook receiver got the evidence.
    let hook = sim.hooks.recv_timeout(Duration::from_secs(15)).expect("the webhook fired");
    assert_eq!((hook["event"].as_str(), hook["version"].as_str()), (Some("rollout.halted"), Some("2.0.0")), "{hook}");
    assert_eq!(hook["rule"], ev["detail"]["rule"]);
    assert_eq!(hook["evidence"]["evaluation"]["verdict"], "tripped");

    // Resume is refused while the rule trips; --force overrides and leaves the schedule halted.
    let out = sim.server.cli(&["rollout", "resume", "demo", "2.0.0"]);
    assert_eq!(out.code, 6, "{out:?}");
    assert!(out.stderr.contains("health_rule_trips"), "{out:?}");
    assert_eq!(status(&sim.server, "demo", "2.0.0")["state"], "halted");
    sim.server.cli(&["rollout", "resume", "demo", "2.0.0", "--force"]).ok();
    std::thread::sleep(Duration::from_secs(3));
    let s = status(&sim.server, "demo", "2.0.0");
    assert_eq!((s["state"].as_str(), s["schedule"]["state"].as_str()), (Some("published"), Some("halted")), "{s}");
    assert_eq!(s["rollout_percent"], 10.0, "a forced resume does not restart the schedule");
}

#[test]
fn a_small_sample_does_not_halt_on_noise() {
    let sim = start(true);
    let mut rng = Rng(0x5EED_0004);
    sim.publish("2.0.0", &["--schedule", "10%:1s,100%"]);
    // Eight installs report, and half their sessions crashed: far worse-looking than 5 %, but
    // eight installs and 40 sessions are noise next to the minimum samples.
    let few: Vec<usize> = sim.offered(&(0..CLIENTS).collect::<Vec<_>>()).into_iter().take(8).collect();
    assert_eq!(few.len(), 8);
    sim.report("2.0.0", &few, 0.5, &mut rng);
    wait_for(30, "the reports to be stored", || (sim.health("2.0.0")["sessions"].as_u64() == Some(40)).then_some(()));
    std::thread::sleep(Duration::from_secs(4)); // several passes of the job, well past the soak time
    let s = status(&sim.server, "demo", "2.0.0");
    assert_eq!(
        (s["state"].as_str(), s["rollout_percent"].as_f64(), s["verdict"].as_str()),
        (Some("published"), Some(10.0), Some("waiting")),
        "{s}"
    );
    assert_eq!(s["schedule"]["state"], "active");
    let sessions = s["platforms"][0]["rules"].as_array().unwrap().iter().find(|r| r["metric"] == "crash_free_sessions").unwrap().clone();
    assert_eq!((sessions["state"].as_str(), sessions["new"]["reports"].as_u64()), (Some("waiting"), Some(40)), "{sessions}");
    assert!(audit(&sim.server, "rollout.halt").is_empty());
    assert!(sim.hooks.try_recv().is_err());
}
