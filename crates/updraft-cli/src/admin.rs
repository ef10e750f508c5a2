//! Admin commands: each is one or a few calls to the admin HTTP API. `release publish`
//! uploads every artifact first (resumable: after a dropped connection it asks the server
//! where the upload stands and continues from there), then creates and publishes the release
//! in one call, so a publish that fails half-way leaves nothing visible.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use tokio::io::AsyncSeekExt;

use crate::exit::{coded, REFUSED, UNREACHABLE};

#[derive(Args, Clone)]
pub struct Conn {
    /// Server base URL.
    #[arg(long, env = "UPDRAFT_SERVER", default_value = "http://127.0.0.1:8080", global = true)]
    pub server: String,
    /// Admin API token.
    #[arg(long, env = "UPDRAFT_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print the server's answer as JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum AppCmd {
    /// Create an app and its TUF repository.
    #[command(
        after_help = "Example:\n  updraft app create my-app\n\nThe app's trusted root is written to DATA/trust/my-app.root.json and served at /tuf/my-app/metadata/1.root.json."
    )]
    Create {
        app: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// List apps.
    #[command(after_help = "Example:\n  updraft app list --json")]
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Show or change an app's health rules (which halt rollouts) and halt webhook.
    #[command(
        after_help = "Example:\n  updraft app health-rules my-app\n  updraft app health-rules my-app --set rules.json --webhook https://hooks.slack.com/services/T/B/X --webhook-format slack\n  updraft app health-rules my-app --defaults\n\nrules.json: {\"z\": 1.96, \"rules\": [{\"metric\": \"crash_free_sessions\", \"min_sample\": 200, \"tolerance\": 0.005}]}\nMetrics: crash_free_sessions, crash_free_clients, install_failure_rate."
    )]
    HealthRules(crate::rollout_cmd::HealthRulesArgs),
    /// Print the app's Sentry DSN, for crash and session reporting.
    #[command(
        after_help = "Example:\n  updraft app dsn my-app\n  # Python: sentry_sdk.init(dsn=\"$(updraft app dsn my-app)\", release=\"my-app@1.4.0\")"
    )]
    Dsn {
        app: String,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
pub enum ReleaseCmd {
    /// Upload artifacts and publish a release.
    #[command(
        after_help = "Example:\n  updraft release publish my-app 1.4.0 --channel stable \\\n      --artifact linux-x86_64=dist/my-app.tar.gz --artifact windows-x86_64=dist/my-app.msi \\\n      --notes 'Faster sync' --rollout 10"
    )]
    Publish(PublishArgs),
    /// List an app's releases.
    #[command(after_help = "Example:\n  updraft release list my-app --json")]
    List {
        app: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Withdraw a release: it is no longer offered or downloadable.
    #[command(
        after_help = "Example:\n  updraft release yank my-app 1.4.0\n  updraft release yank my-app 1.4.0 --downgrade   # clients on 1.4.0 go back to the last good release"
    )]
    Yank {
        app: String,
        version: String,
        /// Offer clients on this version the last good release (flagged as a downgrade in
        /// /v1/update and in signed TUF metadata, so our client installs it).
        #[arg(long)]
        downgrade: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Args)]
pub struct PublishArgs {
    app: String,
    version: String,
    /// Channel clients follow (stable, beta, nightly, or your own).
    #[arg(long)]
    channel: String,
    /// PLATFORM=FILE, e.g. linux-x86_64=dist/app.tar.gz; repeat for each platform.
    #[arg(long = "artifact", required = true, value_name = "PLATFORM=FILE")]
    artifacts: Vec<String>,
    /// Release notes.
    #[arg(long)]
    notes: Option<String>,
    /// Share of clients offered the release, 0–100 with two decimals [default: 100].
    #[arg(long)]
    rollout: Option<String>,
    /// Upload and create the release as a draft, without publishing it.
    #[arg(long)]
    draft: bool,
    /// Roll out on a schedule that advances only while the release is healthy, e.g.
    /// 1%:1h,10%:6h,50%:1d,100% (starts at the first step unless --rollout says otherwise).
    #[arg(long, value_name = "STEPS")]
    schedule: Option<String>,
    /// Extra file served next to the artifact of PLATFORM, e.g. an electron blockmap:
    /// linux-x86_64=dist/app.AppImage.blockmap; repeatable.
    #[arg(long = "file", value_name = "PLATFORM=FILE")]
    files: Vec<String>,
    /// Oldest OS version the release runs on (Sparkle's minimumSystemVersion), e.g. 11.0.
    #[arg(long, value_name = "VERSION")]
    min_system_version: Option<String>,
    /// Mark the release critical (Sparkle's criticalUpdate).
    #[arg(long)]
    critical: bool,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Subcommand)]
pub enum RolloutCmd {
    /// Set the share of clients offered a release.
    #[command(after_help = "Example:\n  updraft rollout set my-app 1.4.0 --percent 25")]
    Set {
        app: String,
        version: String,
        #[arg(long)]
        percent: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Stop offering a release to clients that do not have it (resumable).
    #[command(after_help = "Example:\n  updraft rollout pause my-app 1.4.0")]
    Pause {
        app: String,
        version: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Offer a paused or halted release again (refused while a health rule trips, unless --force).
    #[command(
        after_help = "Example:\n  updraft rollout resume my-app 1.4.0\n  updraft rollout resume my-app 1.4.0 --force   # although it is still less healthy than its baseline"
    )]
    Resume {
        app: String,
        version: String,
        /// Resume even though a health rule still trips (the schedule then stays halted).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Put a rollout schedule on a release (each step after its soak time, only while healthy),
    /// or remove it with --clear.
    #[command(
        after_help = "Example:\n  updraft rollout schedule my-app 1.4.0 --schedule 1%:1h,10%:6h,50%:1d,100%\n  updraft rollout schedule my-app 1.4.0 --clear      # stays where it is; only people move it\n\nThe share rises to each step once the previous one has soaked and the release is as healthy as\nthe one it replaces; a tripped health rule halts it (see `updraft rollout status`)."
    )]
    Schedule(crate::rollout_cmd::ScheduleArgs),
    /// Share, schedule, health against the baseline, and the rule closest to tripping.
    #[command(after_help = "Example:\n  updraft rollout status my-app 1.4.0\n  updraft rollout status my-app 1.4.0 --json")]
    Status(crate::rollout_cmd::StatusArgs),
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create an API token; its secret is printed once.
    #[command(after_help = "Example:\n  updraft token create --role publisher --app my-app --name ci-publisher")]
    Create {
        /// admin, publisher, viewer or ingest.
        #[arg(long)]
        role: String,
        /// Apps the token may touch (repeat); none means every app.
        #[arg(long = "app")]
        apps: Vec<String>,
        #[arg(long)]
        name: Option<String>,
        /// RFC 3339 expiry, e.g. 2027-01-01T00:00:00Z.
        #[arg(long)]
        expires_at: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List tokens (never their secrets).
    #[command(after_help = "Example:\n  updraft token list --json")]
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Revoke a token by id.
    #[command(after_help = "Example:\n  updraft token revoke 3f2a9c01d4e5b6a7")]
    Revoke {
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
}

/// A thin client for the admin API that turns its error answers into exit codes.
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    pub fn new(conn: &Conn) -> anyhow::Result<Api> {
        let token = conn.token.clone().ok_or_else(|| coded(2, "no token: pass --token or set UPDRAFT_TOKEN"))?;
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build().context("cannot build the HTTP client")?;
        Ok(Api { http, base: conn.server.trim_end_matches('/').to_owned(), token })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1/admin{path}", self.base)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| coded(UNREACHABLE, format!("cannot reach {}: {}", self.base, e.without_url())))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let code = body["error"]["code"].as_str().unwrap_or("unknown");
        let message = body["error"]["message"].as_str().unwrap_or("no details");
        let exit = if status.is_server_error() { UNREACHABLE } else { REFUSED };
        Err(coded(exit, format!("the server refused: {message} ({code}, HTTP {})", status.as_u16())))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self.send(self.http.get(self.url(path))).await?.json().await?)
    }
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        Ok(self.send(self.http.post(self.url(path)).json(body)).await?.json().await?)
    }
    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        Ok(self.send(self.http.put(self.url(path)).json(body)).await?.json().await?)
    }
    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.send(self.http.delete(self.url(path))).await?;
        Ok(())
    }
    /// A `DELETE` that answers with a JSON document.
    pub async fn delete_json(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self.send(self.http.delete(self.url(path))).await?.json().await?)
    }

    /// Uploads one file, resuming after failures; returns the upload id.
    async fn upload(&self, path: &std::path::Path, label: &str, bar: &ProgressBar) -> anyhow::Result<String> {
        let size = tokio::fs::metadata(path).await.with_context(|| format!("cannot read {}", path.display()))?.len();
        let up = self.post("/uploads", &json!({ "size": size })).await?;
        let id = up["id"].as_str().context("the server sent no upload id")?.to_owned();
        bar.set_length(size);
        bar.set_message(label.to_owned());
        let mut offset = 0u64;
        let mut failures = 0;
        while offset < size {
            let mut file = tokio::fs::File::open(path).await.with_context(|| format!("cannot read {}", path.display()))?;
            file.seek(std::io::SeekFrom::Start(offset)).await?;
            bar.set_position(offset);
            let progress = bar.clone();
            let stream = file_chunks(file, progress);
            let req = self
                .http
                .patch(self.url(&format!("/uploads/{id}")))
                .header("upload-offset", offset)
                .header(reqwest::header::CONTENT_LENGTH, size - offset)
                .body(reqwest::Body::wrap_stream(stream));
            match self.send(req).await {
                Ok(resp) => {
                    let v: Value = resp.json().await?;
                    offset = v["offset"].as_u64().context("the server sent no offset")?;
                }
                Err(e) if crate::exit::code_of(&e) == REFUSED => return Err(e),
                Err(e) => {
                    failures += 1;
                    if failures > 5 {
                        return Err(e.context(format!("uploading {} failed 5 times", path.display())));
                    }
                    tokio::time::sleep(Duration::from_millis(500 * failures)).await;
                    // Ask where the upload stands and go on from there.
                    let v = self.get(&format!("/uploads/{id}")).await?;
                    offset = v["offset"].as_u64().context("the server sent no offset")?;
                    bar.println(format!("resuming {label} at byte {offset}"));
                }
            }
        }
        bar.set_position(size);
        Ok(id)
    }
}

/// Streams a file in 1 MiB chunks, advancing the progress bar.
fn file_chunks(
    file: tokio::fs::File,
    bar: ProgressBar,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    use tokio::io::AsyncReadExt;
    futures_util::stream::try_unfold((file, bar), |(mut file, bar)| async move {
        let mut buf = vec![0u8; 1 << 20];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        bar.inc(n as u64);
        Ok(Some((bytes::Bytes::from(buf), (file, bar))))
    })
}

pub(crate) fn print(conn: &Conn, value: &Value, human: impl FnOnce(&Value) -> String) {
    if conn.json {
        println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
    } else {
        println!("{}", human(value));
    }
}

fn release_line(r: &Value) -> String {
    format!(
        "{} {} [{}] channel {} rollout {}% ({} artifact(s))",
        r["app"].as_str().unwrap_or(""),
        r["version"].as_str().unwrap_or(""),
        r["state"].as_str().unwrap_or(""),
        r["channel"].as_str().unwrap_or(""),
        r["rollout_percent"],
        r["artifacts"].as_array().map_or(0, Vec::len)
    )
}

/// Path segments are validated by the server; here they are only escaped.
pub(crate) fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._+".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

pub async fn run_app(cmd: AppCmd) -> anyhow::Result<i32> {
    match cmd {
        AppCmd::Create { app, conn } => {
            let v = Api::new(&conn)?.post("/apps", &json!({ "id": app })).await?;
            print(&conn, &v, |v| {
                format!(
                    "created app {}; clients pin its root: {}",
                    v["id"].as_str().unwrap_or(""),
                    v["trusted_root"].as_str().unwrap_or("")
                )
            });
        }
        AppCmd::List { conn } => {
            let v = Api::new(&conn)?.get("/apps").await?;
            print(&conn, &v, |v| {
                v["apps"]
                    .as_array()
                    .map(|a| a.iter().map(|x| x["id"].as_str().unwrap_or("").to_owned()).collect::<Vec<_>>().join("\n"))
                    .unwrap_or_default()
            });
        }
        AppCmd::HealthRules(args) => return crate::rollout_cmd::health_rules(args).await,
        AppCmd::Dsn { app, conn } => {
            let v = Api::new(&conn)?.get(&format!("/apps/{}/dsn", seg(&app))).await?;
            print(&conn, &v, |v| v["dsn"].as_str().unwrap_or("").to_owned());
        }
    }
    Ok(crate::exit::OK)
}

pub async fn run_release(cmd: ReleaseCmd) -> anyhow::Result<i32> {
    match cmd {
        ReleaseCmd::Publish(args) => publish(args).await?,
        ReleaseCmd::List { app, conn } => {
            let v = Api::new(&conn)?.get(&format!("/apps/{}/releases", seg(&app))).await?;
            print(&conn, &v, |v| {
                v["releases"].as_array().map(|a| a.iter().map(release_line).collect::<Vec<_>>().join("\n")).unwrap_or_default()
            });
        }
        ReleaseCmd::Yank { app, version, downgrade, conn } => {
            let body = json!({ "downgrade": downgrade });
            let v = Api::new(&conn)?.post(&format!("/apps/{}/releases/{}/yank", seg(&app), seg(&version)), &body).await?;
            print(&conn, &v, release_line);
        }
    }
    Ok(crate::exit::OK)
}

async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.conn)?;
    let parse_files = |flag: &str, given: &[String]| -> anyhow::Result<Vec<(String, String, PathBuf)>> {
        let mut files = Vec::new();
        for a in given {
            let (platform, file) = a.split_once('=').ok_or_else(|| coded(2, format!("{flag} {a:?}: expected PLATFORM=FILE")))?;
            let path = PathBuf::from(file);
            let filename =
                path.file_name().and_then(|n| n.to_str()).ok_or_else(|| coded(2, format!("{flag} {a:?}: no file name")))?.to_owned();
            if !path.is_file() {
                return Err(coded(2, format!("{flag} {a:?}: {} is not a readable file", path.display())));
            }
            files.push((platform.to_owned(), filename, path));
        }
        Ok(files)
    };
    let files = parse_files("--artifact", &args.artifacts)?;
    let extra_files = parse_files("--file", &args.files)?;
    let rollout = match &args.rollout {
        Some(r) => Some(r.parse::<updraft_core::Percent>().map_err(|e| coded(2, e.to_string()))?.as_f64()),
        None => None,
    };
    // With a schedule, start at its first step rather than at 100 %.
    let rollout = match &args.schedule {
        Some(s) => Some(rollout.unwrap_or(crate::rollout_cmd::first_step(s)?)),
        None => rollout,
    };
    // Fail fast, before any upload, when the version exists or the app is unknown; the
    // server checks again when the release is created.
    match api.get(&format!("/apps/{}/releases/{}", seg(&args.app), seg(&args.version))).await {
        Ok(existing) => {
            return Err(coded(
                REFUSED,
                format!(
                    "app {} already has release {} ({}) (release_exists)",
                    args.app,
                    args.version,
                    existing["state"].as_str().unwrap_or("?")
                ),
            ));
        }
        Err(e) if e.to_string().contains("(release_not_found,") => {}
        Err(e) => return Err(e),
    }
    let style = ProgressStyle::with_template("{msg:30} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let mut artifacts = Vec::new();
    for (platform, filename, path) in &files {
        let bar = if args.conn.json { ProgressBar::hidden() } else { ProgressBar::new(0).with_style(style.clone()) };
        let id = api.upload(path, &format!("{platform} {filename}"), &bar).await?;
        bar.finish();
        artifacts.push(json!({ "platform": platform, "filename": filename, "upload_id": id }));
    }
    let mut extra = Vec::new();
    for (platform, filename, path) in &extra_files {
        let bar = if args.conn.json { ProgressBar::hidden() } else { ProgressBar::new(0).with_style(style.clone()) };
        let id = api.upload(path, &format!("{platform} {filename}"), &bar).await?;
        bar.finish();
        extra.push(json!({ "platform": platform, "filename": filename, "upload_id": id }));
    }
    let mut body = json!({ "version": args.version, "channel": args.channel, "artifacts": artifacts, "publish": !args.draft });
    if !extra.is_empty() {
        body["files"] = json!(extra);
    }
    if let Some(v) = &args.min_system_version {
        body["min_system_version"] = json!(v);
    }
    if args.critical {
        body["critical"] = json!(true);
    }
    if let Some(n) = &args.notes {
        body["notes"] = json!(n);
    }
    if let Some(r) = rollout {
        body["rollout_percent"] = json!(r);
    }
    let v = api.post(&format!("/apps/{}/releases", seg(&args.app)), &body).await?;
    let Some(schedule) = &args.schedule else {
        print(&args.conn, &v, |v| format!("published {}", release_line(v)));
        return Ok(());
    };
    let s = crate::rollout_cmd::put_schedule(&api, &args.app, &args.version, schedule).await.map_err(|e| {
        e.context(format!(
            "{} {} was published at its first step, but its schedule was not set; run `updraft rollout schedule`",
            args.app, args.version
        ))
    })?;
    let mut both = v.clone();
    both["schedule"] = s["schedule"].clone();
    print(&args.conn, &both, |v| format!("published {} on schedule {}", release_line(v), schedule));
    Ok(())
}

pub async fn run_rollout(cmd: RolloutCmd) -> anyhow::Result<i32> {
    let (conn, v) = match cmd {
        RolloutCmd::Set { app, version, percent, conn } => {
            let p = percent.parse::<updraft_core::Percent>().map_err(|e| coded(2, e.to_string()))?;
            let v = Api::new(&conn)?
                .put(&format!("/apps/{}/releases/{}/rollout", seg(&app), seg(&version)), &json!({ "percent": p.as_f64() }))
                .await?;
            (conn, v)
        }
        RolloutCmd::Pause { app, version, conn } => {
            let v = Api::new(&conn)?.post(&format!("/apps/{}/releases/{}/pause", seg(&app), seg(&version)), &json!({})).await?;
            (conn, v)
        }
        RolloutCmd::Resume { app, version, force, conn } => {
            let body = json!({ "force": force });
            let v = Api::new(&conn)?.post(&format!("/apps/{}/releases/{}/resume", seg(&app), seg(&version)), &body).await?;
            (conn, v)
        }
        RolloutCmd::Schedule(args) => return crate::rollout_cmd::schedule(args).await,
        RolloutCmd::Status(args) => return crate::rollout_cmd::status(args).await,
    };
    print(&conn, &v, release_line);
    Ok(crate::exit::OK)
}

pub async fn run_token(cmd: TokenCmd) -> anyhow::Result<i32> {
    match cmd {
        TokenCmd::Create { role, apps, name, expires_at, conn } => {
            let mut body = json!({ "role": role, "apps": apps });
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            if let Some(e) = expires_at {
                body["expires_at"] = json!(e);
            }
            let v = Api::new(&conn)?.post("/tokens", &body).await?;
            print(&conn, &v, |v| {
                format!(
                    "created {} token {} ({}); its secret, shown once:\n{}",
                    v["role"].as_str().unwrap_or(""),
                    v["id"].as_str().unwrap_or(""),
                    v["name"].as_str().unwrap_or(""),
                    v["token"].as_str().unwrap_or("")
                )
            });
        }
        TokenCmd::List { conn } => {
            let v = Api::new(&conn)?.get("/tokens").await?;
            print(&conn, &v, |v| {
                v["tokens"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|t| {
                                format!(
                                    "{} {} {} apps={} {}",
                                    t["id"].as_str().unwrap_or(""),
                                    t["role"].as_str().unwrap_or(""),
                                    t["name"].as_str().unwrap_or(""),
                                    t["apps"],
                                    if t["revoked_at"].is_null() { "" } else { "revoked" }
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default()
            });
        }
        TokenCmd::Revoke { id, conn } => {
            Api::new(&conn)?.delete(&format!("/tokens/{}", seg(&id))).await?;
            print(&conn, &json!({ "revoked": id }), |_| format!("revoked token {id}"));
        }
    }
    Ok(crate::exit::OK)
}
