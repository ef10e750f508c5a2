//! The benchmark suite. Every process under test gets core `--server-cpu` and every load
//! generator core `--load-cpu`, so "requests per second" means "per server core" and the two
//! never fight over a CPU. Servers are loaded in turn, rotating the order each round, and the
//! medians over rounds are reported; the server's own CPU time per request is recorded too,
//! because on a shared machine it varies far less than throughput does.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};

use crate::procs::{self, median, Proc};

const TOKEN: &str = "updraft_bench_bootstrap_token_0123456789abcdef";
const APP: &str = "bench";
const PLATFORM: &str = "linux-x86_64";
const CONNECTIONS: usize = 64;

/// wrk script: `-- PATH MODE [SIZE CHUNK]`. MODE `check` appends a distinct `&client=` id to
/// every request; `plain` repeats PATH; `range` asks for a random CHUNK-sized, aligned range of
/// a SIZE-byte file. `done` prints the summary as one JSON line.
const WRK_LUA: &str = r#"
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  path = args[1]
  mode = args[2] or "plain"
  size = tonumber(args[3] or "0")
  chunk = tonumber(args[4] or "1")
  n = 0
  math.randomseed(42 + tid)
end
function request()
  n = n + 1
  if mode == "check" then
    return wrk.format("GET", path .. "&client=w" .. tid .. "x" .. n)
  elseif mode == "range" then
    local s = math.random(0, math.floor(size / chunk) - 1) * chunk
    return wrk.format("GET", path, { Range = "bytes=" .. s .. "-" .. (s + chunk - 1) })
  end
  return wrk.format("GET", path)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d,\"errors\":%d,\"status_errors\":%d,\"p50_us\":%d,\"p90_us\":%d,\"p99_us\":%d,\"max_us\":%d}\n",
    summary.requests, summary.duration, summary.bytes, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"#;

const NGINX_CONF: &str = r#"
worker_processes 1;
daemon off;
pid @WORK@/nginx.pid;
error_log @WORK@/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  open_file_cache max=1000 inactive=60s;
  open_file_cache_valid 60s;
  open_file_cache_errors on;
  client_body_temp_path @WORK@/nginx-tmp;
  proxy_temp_path @WORK@/nginx-tmp;
  fastcgi_temp_path @WORK@/nginx-tmp;
  uwsgi_temp_path @WORK@/nginx-tmp;
  scgi_temp_path @WORK@/nginx-tmp;
  types { application/json json; }
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:@PORT@;
    root @WORK@/nginx-root;
  }
}
"#;

#[derive(Args)]
pub struct RunArgs {
    /// The `updraft` binary to measure (a release build).
    #[arg(long, default_value = "target/release/updraft")]
    updraft: PathBuf,
    /// Where to write the results.
    #[arg(long, default_value = "benches/results/latest.json")]
    out: PathBuf,
    /// Scratch directory for data, files and configs [default: a fresh temporary directory].
    #[arg(long)]
    work: Option<PathBuf>,
    /// Rounds per scenario; medians are over rounds.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Release counts for the update-check scenario, ascending.
    #[arg(long, default_value = "10,1000,10000", value_delimiter = ',')]
    releases: Vec<usize>,
    /// Releases up to this count are published with `updraft release publish`; beyond it they
    /// are added by the bulk setup path (see `seed.rs`).
    #[arg(long, default_value_t = 1000)]
    cli_publish_limit: usize,
    /// Size of the download artifact, MiB.
    #[arg(long, default_value_t = 256)]
    blob_mib: u64,
    /// Size of the published file in the publish scenario, MiB.
    #[arg(long, default_value_t = 1024)]
    upload_mib: u64,
    /// Scenarios to leave out: check, tuf, download, publish.
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    #[arg(long, default_value_t = 1)]
    load_cpu: usize,
}

struct Bench {
    args: RunArgs,
    work: PathBuf,
    updraft: PathBuf,
    me: PathBuf,
    lua: PathBuf,
}

/// One server under load: where it listens, the path to ask, and whose CPU time to count.
struct Target {
    name: &'static str,
    port: u16,
    path: String,
    cpu_pids: Vec<u32>,
}

#[derive(Debug, Clone, Default)]
struct WrkRun {
    rps: f64,
    mib_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us_per_req: f64,
    errors: u64,
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    for tool in ["wrk", "nginx", "taskset", "sha256sum"] {
        anyhow::ensure!(which(tool), "{tool} is not installed (benches/run.sh installs it)");
    }
    let _tmp;
    let work = match &args.work {
        Some(w) => {
            std::fs::create_dir_all(w)?;
            w.clone()
        }
        None => {
            let t = tempfile::Builder::new().prefix("updraft-bench-").tempdir()?;
            let p = t.path().to_owned();
            _tmp = t;
            p
        }
    };
    let lua = work.join("bench.lua");
    std::fs::write(&lua, WRK_LUA)?;
    let updraft = std::fs::canonicalize(&args.updraft).with_context(|| format!("no updraft binary at {}", args.updraft.display()))?;
    let me = std::env::current_exe()?;
    let bench = Bench { args, work, updraft, me, lua };
    let started = Instant::now();
    let mut results = BTreeMap::<String, Value>::new();
    results.insert("meta".into(), bench.meta());
    if !bench.skipped("check") || !bench.skipped("tuf") || !bench.skipped("download") {
        bench.check_suite(&mut results)?;
    }
    if !bench.skipped("publish") {
        results.insert("publish".into(), bench.publish_scenario()?);
    }
    results.get_mut("meta").and_then(Value::as_object_mut).map(|m| m.insert("wall_secs".into(), json!(started.elapsed().as_secs())));
    let doc = Value::Object(results.into_iter().collect());
    if let Some(dir) = bench.args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut bytes = serde_json::to_vec_pretty(&doc)?;
    bytes.push(b'\n');
    std::fs::write(&bench.args.out, bytes).with_context(|| format!("cannot write {}", bench.args.out.display()))?;
    println!("\n{}", summary(&doc));
    println!("results written to {}", bench.args.out.display());
    Ok(())
}

fn which(tool: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {tool}")).stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn say(msg: impl AsRef<str>) {
    println!("== {}", msg.as_ref());
    let _ = std::io::stdout().flush();
}

impl Bench {
    fn skipped(&self, what: &str) -> bool {
        self.args.skip.iter().any(|s| s == what)
    }

    fn meta(&self) -> Value {
        let out = |cmd: &str| {
            Command::new("sh").arg("-c").arg(cmd).output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default()
        };
        json!({
            "date": out("date -u +%Y-%m-%dT%H:%M:%SZ"),
            "git": out("git rev-parse --short HEAD 2>/dev/null"),
            "cpu": out("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
            "cpus": out("nproc"),
            "kernel": out("uname -r"),
            "nginx": out("nginx -v 2>&1"),
            "wrk": out("wrk -v 2>&1 | head -1"),
            "rounds": self.args.rounds,
            "seconds_per_run": self.args.seconds,
            "connections": CONNECTIONS,
            "pinning": format!("servers on cpu {}, load generators and CLIs on cpu {}", self.args.server_cpu, self.args.load_cpu),
        })
    }

    // ---- processes ----

    fn start_updraft(&self, data: &Path, port: u16) -> anyhow::Result<Proc> {
        let mut cmd = procs::pinned(self.args.server_cpu, &self.updraft.display().to_string());
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(data)
            .env("UPDRAFT_BOOTSTRAP_TOKEN", TOKEN)
            .env("UPDRAFT_LOG", "warn")
            // Publishing a thousand releases is a burst of admin calls from one token.
            .env("UPDRAFT_ADMIN_RATE_LIMIT", "0")
            .env_remove("UPDRAFT_CONFIG")
            .stderr(Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(self.work.join("updraft.log"))?));
        let (p, _) = Proc::spawn_until_line("updraft", cmd, "updraft listening on ", Duration::from_secs(120))?;
        wait_ready(port, Duration::from_secs(60))?;
        Ok(p)
    }

    /// Starts the server and measures the time from spawn to the first `200` from `/readyz`.
    fn cold_start(&self, data: &Path, port: u16) -> anyhow::Result<(Proc, f64)> {
        let mut cmd = procs::pinned(self.args.server_cpu, &self.updraft.display().to_string());
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(data)
            .env("UPDRAFT_LOG", "warn")
            .env("UPDRAFT_ADMIN_RATE_LIMIT", "0")
            .env_remove("UPDRAFT_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let t = Instant::now();
        let p = Proc::spawn("updraft", cmd)?;
        wait_ready(port, Duration::from_secs(60))?;
        Ok((p, t.elapsed().as_secs_f64() * 1000.0))
    }

    fn cli(&self, port: u16, args: &[&str]) -> Command {
        let mut cmd = procs::pinned(self.args.load_cpu, &self.updraft.display().to_string());
        cmd.args(args).env("UPDRAFT_SERVER", format!("http://127.0.0.1:{port}")).env("UPDRAFT_TOKEN", TOKEN).env("NO_COLOR", "1");
        cmd
    }

    fn cli_ok(&self, port: u16, args: &[&str]) -> anyhow::Result<String> {
        let out = self.cli(port, args).output()?;
        if !out.status.success() {
            bail!("updraft {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn publish(&self, port: u16, version: &str, channel: &str, file: &Path, rollout: Option<&str>) -> anyhow::Result<Value> {
        let artifact = format!("{PLATFORM}={}", file.display());
        let mut args = vec!["release", "publish", APP, version, "--channel", channel, "--artifact", &artifact, "--json"];
        if let Some(r) = rollout {
            args.extend(["--rollout", r]);
        }
        Ok(serde_json::from_str(&self.cli_ok(port, &args)?)?)
    }

    fn start_nginx(&self, port: u16) -> anyhow::Result<Proc> {
        std::fs::create_dir_all(self.work.join("nginx-tmp"))?;
        std::fs::create_dir_all(self.work.join("nginx-root"))?;
        let conf = NGINX_CONF.replace("@WORK@", &self.work.display().to_string()).replace("@PORT@", &port.to_string());
        let conf_path = self.work.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let mut cmd = procs::pinned(self.args.server_cpu, "nginx");
        cmd.arg("-c").arg(&conf_path).arg("-e").arg(self.work.join("nginx-error.log")).stdout(Stdio::null()).stderr(Stdio::null());
        let p = Proc::spawn("nginx", cmd)?;
        wait_port(port, Duration::from_secs(10))?;
        Ok(p)
    }

    fn start_hello(&self, port: u16, body: &Path) -> anyhow::Result<Proc> {
        let mut cmd = procs::pinned(self.args.server_cpu, &self.me.display().to_string());
        cmd.arg("hello").arg("--listen").arg(format!("127.0.0.1:{port}")).arg("--body").arg(body);
        let (p, _) = Proc::spawn_until_line("hello", cmd, "hello listening on ", Duration::from_secs(10))?;
        Ok(p)
    }

    // ---- load ----

    fn wrk(&self, target: &Target, mode: &[&str], connections: usize, seconds: u64) -> anyhow::Result<WrkRun> {
        let cpu0: f64 = target.cpu_pids.iter().filter_map(|&p| procs::cpu_secs(p)).sum();
        let mut cmd = procs::pinned(self.args.load_cpu, "wrk");
        cmd.args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s"), "--timeout", "10s", "-s"])
            .arg(&self.lua)
            .arg(format!("http://127.0.0.1:{}", target.port))
            .arg("--")
            .arg(&target.path)
            .args(mode);
        let out = cmd.output().context("running wrk")?;
        let cpu1: f64 = target.cpu_pids.iter().filter_map(|&p| procs::cpu_secs(p)).sum();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("WRKJSON "))
            .with_context(|| format!("wrk printed no summary: {text} {}", String::from_utf8_lossy(&out.stderr)))?;
        let v: Value = serde_json::from_str(line)?;
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        let secs = f("duration_us") / 1e6;
        let requests = f("requests");
        Ok(WrkRun {
            rps: requests / secs,
            mib_s: f("bytes") / secs / (1024.0 * 1024.0),
            p50_ms: f("p50_us") / 1000.0,
            p99_ms: f("p99_us") / 1000.0,
            cpu_us_per_req: (cpu1 - cpu0) * 1e6 / requests.max(1.0),
            errors: (f("errors") + f("status_errors")) as u64,
        })
    }

    /// Loads each target in turn for `rounds` rounds (order rotated every round), after a
    /// short warm-up of each; returns per-target medians and the raw rounds.
    fn compare(&self, targets: &[Target], mode: &[&str], connections: usize) -> anyhow::Result<BTreeMap<&'static str, Value>> {
        for t in targets {
            self.wrk(t, mode, connections, 1)?;
        }
        let mut runs: BTreeMap<&'static str, Vec<WrkRun>> = BTreeMap::new();
        for round in 0..self.args.rounds {
            for i in 0..targets.len() {
                let t = &targets[(i + round) % targets.len()];
                let r = self.wrk(t, mode, connections, self.args.seconds)?;
                runs.entry(t.name).or_default().push(r);
            }
        }
        let mut out = BTreeMap::new();
        for (name, rs) in runs {
            let m = |f: fn(&WrkRun) -> f64| median(&rs.iter().map(f).collect::<Vec<_>>());
            out.insert(
                name,
                json!({
                    "rps": round2(m(|r| r.rps)),
                    "mib_s": round2(m(|r| r.mib_s)),
                    "p50_ms": round3(m(|r| r.p50_ms)),
                    "p99_ms": round3(m(|r| r.p99_ms)),
                    "cpu_us_per_req": round3(m(|r| r.cpu_us_per_req)),
                    "errors": rs.iter().map(|r| r.errors).sum::<u64>(),
                    "rounds_rps": rs.iter().map(|r| r.rps.round()).collect::<Vec<_>>(),
                }),
            );
        }
        Ok(out)
    }

    fn open_loop(&self, port: u16, path: &str, rate: f64) -> anyhow::Result<Value> {
        let mut cmd = procs::pinned(self.args.load_cpu, &self.me.display().to_string());
        cmd.args(["load", "--addr", &format!("127.0.0.1:{port}"), "--path", path, "--rate", &format!("{rate:.0}")]).args([
            "--seconds",
            &self.args.seconds.to_string(),
            "--connections",
            &CONNECTIONS.to_string(),
        ]);
        let out = cmd.output()?;
        anyhow::ensure!(out.status.success(), "load failed: {}", String::from_utf8_lossy(&out.stderr));
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    // ---- scenarios ----

    /// Update checks at each release count (with TUF refresh sizes, server memory and cold
    /// start along the way), then downloads on the largest data set.
    fn check_suite(&self, results: &mut BTreeMap<String, Value>) -> anyhow::Result<()> {
        let data = self.work.join("data");
        let _ = std::fs::remove_dir_all(&data);
        let up_port = procs::free_port()?;
        let mut server = self.start_updraft(&data, up_port)?;
        self.cli_ok(up_port, &["app", "create", APP])?;
        let artifacts = self.work.join("artifacts");
        std::fs::create_dir_all(&artifacts)?;
        let mut have = 0usize;
        let check_path = format!("/v1/update/{APP}/stable/{PLATFORM}?current=0.0.1");

        let mut check = serde_json::Map::new();
        let mut tuf = serde_json::Map::new();
        let mut srv = serde_json::Map::new();
        let mut aux: Option<(Proc, Proc, u16, u16)> = None;
        for &n in &self.args.releases {
            let mut stage = serde_json::Map::new();
            // Bring the app to n releases; the newest at 50% so checks take the rollout decision.
            if n <= self.args.cli_publish_limit {
                say(format!("publishing releases {}..{n} with `updraft release publish`", have + 1));
                let mut times = Vec::new();
                while have < n {
                    have += 1;
                    let f = artifacts.join(format!("app-{have}.bin"));
                    std::fs::write(&f, format!("updraft bench artifact {have}\n").repeat(16))?;
                    let t = Instant::now();
                    self.publish(up_port, &crate::seed::version(have), "stable", &f, (have == n).then_some("50"))?;
                    times.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                let tail = &times[times.len().saturating_sub(20)..];
                stage.insert("publish_ms_at_this_size".into(), json!(round2(median(tail))));
                // Restart to measure a cold start on this data.
                drop(server);
                let (s, ms) = self.cold_starts(&data, up_port)?;
                server = s;
                stage.insert("cold_start_ms".into(), json!(ms));
            } else {
                drop(server);
                say(format!("adding releases {}..{n} through the bulk setup path", have + 1));
                let t = Instant::now();
                let out = Command::new(&self.me)
                    .args(["seed", "--data"])
                    .arg(&data)
                    .args(["--app", APP, "--releases", &n.to_string(), "--platform", PLATFORM])
                    .output()?;
                anyhow::ensure!(out.status.success(), "seed failed: {}", String::from_utf8_lossy(&out.stderr));
                stage.insert("seed_secs".into(), json!(round2(t.elapsed().as_secs_f64())));
                have = n;
                let (s, ms) = self.cold_starts(&data, up_port)?;
                server = s;
                stage.insert("cold_start_ms".into(), json!(ms));
            }
            std::thread::sleep(Duration::from_secs(1));
            let idle = procs::rss_mib(server.pid()).unwrap_or(f64::NAN);
            stage.insert("idle_rss_mib".into(), json!(round2(idle)));

            // The static twin of the answer, for nginx and the hello server.
            let answer = self.fetch(up_port, &format!("{check_path}&client=static-twin"))?;
            let body = self.work.join("nginx-root").join("update.json");
            std::fs::create_dir_all(body.parent().expect("has parent"))?;
            std::fs::write(&body, &answer)?;
            if aux.is_none() {
                let ng_port = procs::free_port()?;
                let nginx = self.start_nginx(ng_port)?;
                let hello_port = procs::free_port()?;
                let hello = self.start_hello(hello_port, &body)?;
                aux = Some((nginx, hello, ng_port, hello_port));
            }
            let (nginx, hello, ng_port, hello_port) = aux.as_ref().expect("started above");

            if !self.skipped("check") {
                say(format!("update checks at {n} releases: Updraft vs nginx vs hello, {} rounds", self.args.rounds));
                let targets = [
                    Target { name: "updraft", port: up_port, path: check_path.clone(), cpu_pids: vec![server.pid()] },
                    Target {
                        name: "nginx",
                        port: *ng_port,
                        path: "/update.json?current=0.0.1".into(),
                        cpu_pids: procs::children(nginx.pid()),
                    },
                    Target { name: "hello", port: *hello_port, path: "/hello?current=0.0.1".into(), cpu_pids: vec![hello.pid()] },
                ];
                procs::reset_peak(server.pid())?;
                let m = self.compare(&targets, &["check"], CONNECTIONS)?;
                let load_peak = procs::peak_rss_mib(server.pid()).unwrap_or(f64::NAN);
                stage.insert("load_rss_mib".into(), json!(round2(load_peak)));
                let rps = |k: &str| m[k]["rps"].as_f64().unwrap_or(f64::NAN);
                let cpu = |k: &str| m[k]["cpu_us_per_req"].as_f64().unwrap_or(f64::NAN);
                let mut c = serde_json::Map::new();
                c.insert("ratio_vs_nginx".into(), json!(round3(rps("updraft") / rps("nginx"))));
                c.insert("ratio_vs_hello".into(), json!(round3(rps("updraft") / rps("hello"))));
                c.insert("cpu_ratio_vs_nginx".into(), json!(round3(cpu("nginx") / cpu("updraft"))));
                c.insert("cpu_ratio_vs_hello".into(), json!(round3(cpu("hello") / cpu("updraft"))));
                let half = rps("updraft") / 2.0;
                say(format!("latency at half of Updraft's peak: {half:.0} req/s, open loop"));
                let mut hp = serde_json::Map::new();
                hp.insert("updraft".into(), self.open_loop(up_port, &check_path, half)?);
                hp.insert("nginx".into(), self.open_loop(*ng_port, "/update.json?current=0.0.1", half)?);
                c.insert("half_peak".into(), Value::Object(hp));
                for (k, v) in m {
                    c.insert(k.into(), v);
                }
                check.insert(format!("releases_{n}"), Value::Object(c));
            }
            if !self.skipped("tuf") {
                say(format!("TUF refresh by `updraft client check` at {n} releases"));
                tuf.insert(format!("releases_{n}"), self.tuf_refresh(up_port, &data, &artifacts, &mut have)?);
            }
            srv.insert(format!("releases_{n}"), Value::Object(stage));
        }
        if let (Some(first), Some(last)) = (self.args.releases.first(), self.args.releases.last()) {
            let get = |n: usize, k: &str| check.get(&format!("releases_{n}")).and_then(|c| c["updraft"][k].as_f64());
            let rps = (get(*first, "rps"), get(*last, "rps"));
            let cpu = (get(*first, "cpu_us_per_req"), get(*last, "cpu_us_per_req"));
            // Throughput relative to nginx in the same rounds: the machine's state drifts
            // between stages (everything slows down together on a shared machine), the ratio
            // does not.
            let ratio = |n: usize| check.get(&format!("releases_{n}")).and_then(|c| c["ratio_vs_nginx"].as_f64());
            if let (Some(a), Some(b)) = (ratio(*first), ratio(*last)) {
                check.insert("flat_ratio_drop_pct".into(), json!(round2((a - b) / a * 100.0)));
            }
            if let (Some(a), Some(b)) = rps {
                check.insert("flat_rps_drop_pct".into(), json!(round2((a - b) / a * 100.0)));
            }
            if let (Some(a), Some(b)) = cpu {
                check.insert("flat_cpu_rise_pct".into(), json!(round2((b - a) / a * 100.0)));
            }
            check.insert("flat_between".into(), json!([first, last]));
        }
        results.insert("check".into(), Value::Object(check));
        results.insert("tuf".into(), Value::Object(tuf));
        results.insert("server".into(), Value::Object(srv));
        if !self.skipped("download") {
            let (nginx, _hello, ng_port, _) = aux.as_ref().context("no nginx")?;
            results.insert("download".into(), self.download_scenario(up_port, *ng_port, nginx.pid(), server.pid())?);
        }
        drop(aux);
        drop(server);
        Ok(())
    }

    /// Five cold starts; returns the last server (running) and the median time to ready.
    fn cold_starts(&self, data: &Path, port: u16) -> anyhow::Result<(Proc, f64)> {
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..5 {
            drop(last.take());
            let (p, ms) = self.cold_start(data, port)?;
            times.push(ms);
            last = Some(p);
        }
        Ok((last.expect("five starts"), round2(median(&times))))
    }

    fn fetch(&self, port: u16, path: &str) -> anyhow::Result<Vec<u8>> {
        let out = Command::new("curl").args(["-sf", &format!("http://127.0.0.1:{port}{path}")]).output()?;
        anyhow::ensure!(out.status.success(), "GET {path} failed");
        Ok(out.stdout)
    }

    /// Bytes and requests of a first refresh (empty state), an unchanged one, and one after a
    /// new release, counted by a byte-counting proxy between the client and the server.
    fn tuf_refresh(&self, up_port: u16, data: &Path, artifacts: &Path, have: &mut usize) -> anyhow::Result<Value> {
        let proxy = CountingProxy::start(up_port)?;
        let state = tempfile::tempdir()?;
        let trust = data.join("trust").join(format!("{APP}.root.json"));
        let refresh = |label: &str| -> anyhow::Result<Value> {
            proxy.reset();
            let t = Instant::now();
            let out = procs::pinned(self.args.load_cpu, &self.updraft.display().to_string())
                .args(["client", "check", "--server", &format!("http://127.0.0.1:{}", proxy.port)])
                .args(["--app", APP, "--channel", "stable", "--platform", PLATFORM, "--current", "0.0.1", "--json", "--trust"])
                .arg(&trust)
                .arg("--state")
                .arg(state.path())
                .output()?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            anyhow::ensure!(
                matches!(out.status.code(), Some(0 | 3)),
                "client check ({label}) failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let (down, upb, requests) = proxy.counts();
            Ok(json!({ "bytes": down + upb, "bytes_down": down, "requests": requests, "ms": round2(ms) }))
        };
        let first = refresh("first")?;
        let unchanged = refresh("unchanged")?;
        *have += 1;
        let f = artifacts.join(format!("app-{have}.bin"));
        std::fs::write(&f, format!("updraft bench artifact {have}\n"))?;
        self.publish(up_port, &crate::seed::version(*have), "stable", &f, Some("50"))?;
        let after = refresh("after one publish")?;
        Ok(json!({ "first": first, "unchanged": unchanged, "after_publish": after }))
    }

    fn download_scenario(&self, up_port: u16, ng_port: u16, nginx_pid: u32, up_pid: u32) -> anyhow::Result<Value> {
        let size = self.args.blob_mib * 1024 * 1024;
        say(format!("downloads: a {} MiB artifact, Updraft vs nginx sendfile", self.args.blob_mib));
        let file = self.work.join("download.bin");
        write_pseudo_random(&file, size, 7)?;
        let v = self.publish(up_port, "900.0.0", "downloads", &file, None)?;
        let sha = v["artifacts"][0]["sha256"].as_str().context("publish answer without sha256")?.to_owned();
        let link = self.work.join("nginx-root").join("blob");
        let _ = std::fs::remove_file(&link);
        std::fs::hard_link(&file, &link).or_else(|_| std::fs::copy(&file, &link).map(|_| ()))?;
        let workers = procs::children(nginx_pid);
        let targets = [
            Target { name: "updraft", port: up_port, path: format!("/v1/blobs/{sha}"), cpu_pids: vec![up_pid] },
            Target { name: "nginx", port: ng_port, path: "/blob".into(), cpu_pids: workers.clone() },
        ];
        let whole = self.compare(&targets, &["plain"], 1)?;
        let chunk: u64 = 1024 * 1024;
        say("downloads: random 1 MiB Range requests, 16 connections");
        let ranges = self.compare(&targets, &["range", &size.to_string(), &chunk.to_string()], 16)?;
        let mib = |m: &BTreeMap<&str, Value>, k: &str| m[k]["mib_s"].as_f64().unwrap_or(f64::NAN);
        Ok(json!({
            "artifact_mib": self.args.blob_mib,
            "connections": 1,
            "updraft": whole["updraft"],
            "nginx": whole["nginx"],
            "ratio_vs_nginx": round3(mib(&whole, "updraft") / mib(&whole, "nginx")),
            "range_1mib": {
                "connections": 16,
                "updraft": ranges["updraft"],
                "nginx": ranges["nginx"],
                "ratio_vs_nginx": round3(mib(&ranges, "updraft") / mib(&ranges, "nginx")),
            },
        }))
    }

    /// `updraft release publish` of a large file against `sha256sum` of the same file, on a
    /// fresh server, with the peak RSS of the server (during the publish) and of the CLI.
    fn publish_scenario(&self) -> anyhow::Result<Value> {
        let size = self.args.upload_mib * 1024 * 1024;
        say(format!("publish: a {} MiB file through `updraft release publish` vs sha256sum", self.args.upload_mib));
        let data = self.work.join("data-publish");
        let _ = std::fs::remove_dir_all(&data);
        let port = procs::free_port()?;
        let server = self.start_updraft(&data, port)?;
        self.cli_ok(port, &["app", "create", APP])?;
        let file = self.work.join("upload.bin");
        write_pseudo_random(&file, size, 11)?;
        let rounds = self.args.rounds.clamp(1, 3);
        let (mut pub_s, mut sum_s, mut cli_rss, mut srv_rss) = (vec![], vec![], vec![], vec![]);
        for r in 0..rounds {
            let mut cmd = procs::pinned(self.args.load_cpu, "sha256sum");
            cmd.arg(&file).stdout(Stdio::null());
            let (st, wall, _) = procs::run_measured(cmd)?;
            anyhow::ensure!(st.success(), "sha256sum failed");
            sum_s.push(wall.as_secs_f64());
            // A different file each round, so no round finds its blob stored already.
            overwrite_first_bytes(&file, r as u64 + 1)?;
            procs::reset_peak(server.pid())?;
            let artifact = format!("{PLATFORM}={}", file.display());
            let version = format!("2.0.{r}");
            let mut cmd = self.cli(port, &["release", "publish", APP, &version, "--channel", "stable", "--artifact", &artifact, "--json"]);
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
            let (st, wall, rss) = procs::run_measured(cmd)?;
            anyhow::ensure!(st.success(), "publish of {} MiB failed", self.args.upload_mib);
            pub_s.push(wall.as_secs_f64());
            cli_rss.push(rss);
            srv_rss.push(procs::peak_rss_mib(server.pid()).unwrap_or(f64::NAN));
        }
        let mib = self.args.upload_mib as f64;
        let (p, s) = (median(&pub_s), median(&sum_s));
        drop(server);
        Ok(json!({
            "file_mib": self.args.upload_mib,
            "updraft_mib_s": round2(mib / p),
            "sha256sum_mib_s": round2(mib / s),
            "ratio_vs_sha256sum": round3(s / p),
            "publish_secs": pub_s.iter().map(|x| round3(*x)).collect::<Vec<_>>(),
            "sha256sum_secs": sum_s.iter().map(|x| round3(*x)).collect::<Vec<_>>(),
            "server_peak_rss_mib": round2(srv_rss.iter().copied().fold(0.0, f64::max)),
            "cli_peak_rss_mib": round2(cli_rss.iter().copied().fold(0.0, f64::max)),
        }))
    }
}

/// Polls `/readyz` every millisecond until it answers 200.
fn wait_ready(port: u16, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        while Instant::now() < deadline {
            if let Ok(mut c) = crate::load::Conn::connect(&format!("127.0.0.1:{port}")).await {
                if c.get("/readyz").await.is_ok_and(|a| a.status == 200) {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        bail!("no 200 from /readyz on port {port} within {timeout:?}")
    })
}

fn wait_port(port: u16, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    bail!("nothing listens on port {port}")
}

/// Writes `size` bytes of incompressible pseudo-random data (xorshift), quickly.
fn write_pseudo_random(path: &Path, size: u64, seed: u64) -> anyhow::Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() == size) {
        return Ok(());
    }
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for chunk in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

fn overwrite_first_bytes(path: &Path, tag: u64) -> anyhow::Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&tag.to_le_bytes())?;
    Ok(())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A loopback TCP proxy that counts bytes each way and requests (request heads end in a blank
/// line, and TUF fetches have no bodies).
struct CountingProxy {
    port: u16,
    down: Arc<AtomicU64>,
    up: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
    _runtime: tokio::runtime::Runtime,
}

impl CountingProxy {
    fn start(upstream: u16) -> anyhow::Result<CountingProxy> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let port = listener.local_addr()?.port();
        let (down, up, requests) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (d, u, q) = (down.clone(), up.clone(), requests.clone());
        // Runs until the runtime is dropped with the proxy.
        runtime.spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((client, _)) = listener.accept().await {
                let (d, u, q) = (d.clone(), u.clone(), q.clone());
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else { return };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let upward = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        let mut tail: Vec<u8> = Vec::new();
                        while let Ok(n) = cr.read(&mut buf).await {
                            if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            u.fetch_add(n as u64, Ordering::Relaxed);
                            tail.extend_from_slice(&buf[..n]);
                            let heads = tail.windows(4).filter(|w| w == b"\r\n\r\n").count();
                            q.fetch_add(heads as u64, Ordering::Relaxed);
                            let keep = tail.len().saturating_sub(3);
                            tail.drain(..keep);
                            if heads > 0 {
                                tail.clear();
                            }
                        }
                        let _ = sw.shutdown().await;
                    };
                    let downward = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n) = sr.read(&mut buf).await {
                            if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            d.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        let _ = cw.shutdown().await;
                    };
                    tokio::join!(upward, downward);
                });
            }
        });
        Ok(CountingProxy { port, down, up, requests, _runtime: runtime })
    }
    fn reset(&self) {
        self.down.store(0, Ordering::Relaxed);
        self.up.store(0, Ordering::Relaxed);
        self.requests.store(0, Ordering::Relaxed);
    }
    fn counts(&self) -> (u64, u64, u64) {
        // Let the last bytes of a just-closed connection be counted.
        std::thread::sleep(Duration::from_millis(50));
        (self.down.load(Ordering::Relaxed), self.up.load(Ordering::Relaxed), self.requests.load(Ordering::Relaxed))
    }
}

/// The human summary printed at the end.
fn summary(doc: &Value) -> String {
    let mut out = String::new();
    let f = |v: &Value| v.as_f64().map_or("-".to_owned(), |x| if x >= 100.0 { format!("{x:.0}") } else { format!("{x:.2}") });
    if let Some(check) = doc["check"].as_object() {
        out.push_str("update check, 64 connections, medians (req/s | p50 ms | p99 ms | server CPU µs/req)\n");
        for (k, c) in check.iter().filter(|(k, _)| k.starts_with("releases_")) {
            out.push_str(&format!("  {k}\n"));
            for s in ["updraft", "nginx", "hello"] {
                let x = &c[s];
                out.push_str(&format!(
                    "    {s:8} {:>8} req/s  p50 {:>6}  p99 {:>6}  cpu {:>6}\n",
                    f(&x["rps"]),
                    f(&x["p50_ms"]),
                    f(&x["p99_ms"]),
                    f(&x["cpu_us_per_req"])
                ));
            }
            out.push_str(&format!(
                "    updraft/nginx {} (per CPU {}), updraft/hello {} (per CPU {}); at half peak ({} req/s) p99 {} ms (nginx {} ms)\n",
                f(&c["ratio_vs_nginx"]),
                f(&c["cpu_ratio_vs_nginx"]),
                f(&c["ratio_vs_hello"]),
                f(&c["cpu_ratio_vs_hello"]),
                f(&c["half_peak"]["updraft"]["achieved_rate"]),
                f(&c["half_peak"]["updraft"]["p99_ms"]),
                f(&c["half_peak"]["nginx"]["p99_ms"]),
            ));
        }
        out.push_str(&format!(
            "  flatness {}: drop of the ratio to nginx {}% (raw req/s drop {}%, CPU/req rise {}%)\n",
            check.get("flat_between").map(|v| v.to_string()).unwrap_or_default(),
            f(&check.get("flat_ratio_drop_pct").cloned().unwrap_or_default()),
            f(&check.get("flat_rps_drop_pct").cloned().unwrap_or_default()),
            f(&check.get("flat_cpu_rise_pct").cloned().unwrap_or_default()),
        ));
    }
    if let Some(srv) = doc["server"].as_object() {
        out.push_str("server: cold start to /readyz | idle RSS | RSS peak under check load\n");
        for (k, s) in srv {
            out.push_str(&format!(
                "  {k:16} {:>7} ms  {:>6} MiB  {:>6} MiB\n",
                f(&s["cold_start_ms"]),
                f(&s["idle_rss_mib"]),
                f(&s["load_rss_mib"])
            ));
        }
    }
    if let Some(tuf) = doc["tuf"].as_object() {
        out.push_str("TUF refresh (bytes / requests): first | unchanged | after one publish\n");
        for (k, t) in tuf {
            let p = |x: &Value| format!("{} B / {}", f(&x["bytes"]), f(&x["requests"]));
            out.push_str(&format!("  {k:16} {} | {} | {}\n", p(&t["first"]), p(&t["unchanged"]), p(&t["after_publish"])));
        }
    }
    let d = &doc["download"];
    if d.is_object() {
        out.push_str(&format!(
            "download {} MiB, 1 connection: updraft {} MiB/s, nginx {} MiB/s, ratio {}\n",
            f(&d["artifact_mib"]),
            f(&d["updraft"]["mib_s"]),
            f(&d["nginx"]["mib_s"]),
            f(&d["ratio_vs_nginx"])
        ));
        let r = &d["range_1mib"];
        out.push_str(&format!(
            "range 1 MiB, 16 connections: updraft {} req/s {} MiB/s, nginx {} req/s {} MiB/s, ratio {}\n",
            f(&r["updraft"]["rps"]),
            f(&r["updraft"]["mib_s"]),
            f(&r["nginx"]["rps"]),
            f(&r["nginx"]["mib_s"]),
            f(&r["ratio_vs_nginx"])
        ));
    }
    let p = &doc["publish"];
    if p.is_object() {
        out.push_str(&format!(
            "publish {} MiB: updraft {} MiB/s, sha256sum {} MiB/s, ratio {}; peak RSS server {} MiB, CLI {} MiB\n",
            f(&p["file_mib"]),
            f(&p["updraft_mib_s"]),
            f(&p["sha256sum_mib_s"]),
            f(&p["ratio_vs_sha256sum"]),
            f(&p["server_peak_rss_mib"]),
            f(&p["cli_peak_rss_mib"])
        ));
    }
    out
}
