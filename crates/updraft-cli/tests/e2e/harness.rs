//! Test harness: runs the real `updraft` binary on a random loopback port with its own data
//! directory, waits for `/readyz`, and drives it through the CLI and HTTP. No mocks.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use crate::backend::{pg_database, psql};

pub const TOKEN: &str = "updraft_e2e_bootstrap_token_0123456789";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_updraft")
}

pub struct Server {
    pub child: Child,
    pub url: String,
    pub data: PathBuf,
}

pub struct Opts {
    pub env: Vec<(&'static str, String)>,
}

impl Server {
    pub fn start(data: &Path) -> Server {
        Self::start_with(data, Opts { env: vec![] })
    }

    pub fn start_with(data: &Path, opts: Opts) -> Server {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(data.with_extension("log")).expect("log file");
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .env("UPDRAFT_BOOTSTRAP_TOKEN", TOKEN)
            .env("UPDRAFT_LOG", "info")
            // Tests fire many admin calls at once; the rate-limit test turns limits back on.
            .env("UPDRAFT_ADMIN_RATE_LIMIT", "0")
            .env("UPDRAFT_AUTH_FAILURE_RATE_LIMIT", "0")
            .env_remove("UPDRAFT_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for (k, v) in crate::backend::backend_env(data).unwrap_or_default() {
            cmd.env(k, v);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn updraft serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("updraft listening on ") {
                    let url = rest.split_whitespace().next().unwrap_or_default().to_owned();
                    let _ = tx.send(url);
                }
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| {
            panic!("server did not start; log: {}", std::fs::read_to_string(data.with_extension("log")).unwrap_or_default())
        });
        let server = Server { child, url, data: data.to_owned() };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = http();
        while Instant::now() < deadline {
            if client.get(self.url("/readyz")).send().is_ok_and(|r| r.status() == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server never became ready");
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    pub fn sigterm(&self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
    }

    pub fn cli(&self, args: &[&str]) -> Out {
        run_cli(&self.url, TOKEN, args)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

impl Drop for Server {
    /// Stops the server gracefully (so an instrumented binary writes its coverage data), and
    /// kills it if it has not exited within 10 seconds.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        self.sigterm();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    #[track_caller]
    pub fn ok(self) -> Out {
        assert_eq!(self.code, 0, "command failed: {self:?}");
        self
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// `updraft client VERB` for app `demo`, channel `stable`, `linux-x86_64`, with `current`
/// installed, trusting the root in `trust` and keeping its state in `state`.
pub fn demo_client(server: &Server, trust: &Path, state: &Path, verb: &str, current: &str, extra: &[&str]) -> Out {
    let (t, s) = (trust.display().to_string(), state.display().to_string());
    let mut args = vec![
        "client",
        verb,
        "--server",
        &server.url,
        "--app",
        "demo",
        "--channel",
        "stable",
        "--platform",
        "linux-x86_64",
        "--current",
        current,
        "--trust",
        &t,
        "--state",
        &s,
    ];
    args.extend_from_slice(extra);
    run_cli(&server.url, "unused", &args)
}

/// A blocking HTTP client for tests.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().expect("http client")
}

pub fn run_cli(server: &str, token: &str, args: &[&str]) -> Out {
    let out = Command::new(bin())
        .args(args)
        .env("UPDRAFT_SERVER", server)
        .env("UPDRAFT_TOKEN", token)
        .env("NO_COLOR", "1")
        .output()
        .expect("run updraft");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Deterministic pseudo-random bytes (xorshift), so tests need no randomness source.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}

/// A fresh scratch directory with the server's data dir inside.
pub fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    (dir, data)
}

/// Publishes `file_bytes` as one artifact through the CLI; returns the CLI's JSON answer.
pub fn publish(
    server: &Server,
    dir: &Path,
    app: &str,
    version: &str,
    platform: &str,
    file_bytes: &[u8],
    extra: &[&str],
) -> serde_json::Value {
    let path = dir.join(format!("{app}-{version}-{platform}.bin"));
    std::fs::write(&path, file_bytes).expect("write artifact");
    let artifact = format!("{platform}={}", path.display());
    let mut args = vec!["release", "publish", app, version, "--channel", "stable", "--artifact", &artifact, "--json"];
    args.extend_from_slice(extra);
    server.cli(&args).ok().json()
}

/// The newest signed targets metadata of an app, found as a client would: timestamp →
/// snapshot → targets (unverified: tests that need verification use the client).
pub fn latest_targets(server: &Server, app: &str) -> serde_json::Value {
    let http = http();
    let get = |file: String| -> serde_json::Value {
        http.get(server.url(&format!("/tuf/{app}/metadata/{file}"))).send().unwrap().json().unwrap()
    };
    let ts = get("timestamp.json".into());
    let snapshot = get(format!("{}.snapshot.json", ts["signed"]["meta"]["snapshot.json"]["version"]));
    get(format!("{}.targets.json", snapshot["signed"]["meta"]["targets.json"]["version"]))
}
