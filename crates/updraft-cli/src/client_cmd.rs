//! `updraft client check|fetch|install`: the client library as a command, for devices and
//! scripts. It trusts only the root file given with `--trust`; everything it acts on comes from
//! TUF metadata verified against it.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use updraft_client::{Client, ClientConfig, ClientError, Limits, Update};

use crate::exit::{coded, NO_UPDATE, OK};

#[derive(Subcommand)]
pub enum ClientCmd {
    /// Is there an update for this install? Exit 0 and print it, or exit 3 when there is none.
    #[command(
        after_help = "Example:\n  updraft client check --server https://updates.example.com --app my-app --channel stable \\\n      --platform linux-x86_64 --current 1.0.0 --trust my-app.root.json"
    )]
    Check(Common),
    /// Download the update, verified, to a file.
    #[command(
        after_help = "Example:\n  updraft client fetch --server https://updates.example.com --app my-app --channel stable \\\n      --platform linux-x86_64 --current 1.0.0 --trust my-app.root.json --out my-app-new.tar.gz"
    )]
    Fetch {
        #[command(flatten)]
        common: Common,
        /// Where to write the verified file (a partial download is kept as FILE.part and resumed).
        #[arg(long)]
        out: PathBuf,
    },
    /// Download the update, verify it, and atomically replace a file with it (the old one is
    /// kept as FILE.previous); or put the previous file back with --rollback.
    #[command(
        after_help = "Example:\n  updraft client install --server https://updates.example.com --app my-app --channel stable \\\n      --platform linux-x86_64 --current 1.0.0 --trust my-app.root.json --target /opt/my-app/my-app\n  updraft client install … --target /opt/my-app/my-app --rollback"
    )]
    Install {
        #[command(flatten)]
        common: Common,
        /// The installed file to replace.
        #[arg(long)]
        target: PathBuf,
        /// Restore the file the last install replaced.
        #[arg(long)]
        rollback: bool,
        /// Report the outcome (success, failure, rollback) to this Updraft DSN (`updraft app
        /// dsn APP`). Off unless given; sends the version, platform, outcome, error code and the
        /// install id, which the server hashes before storing.
        #[arg(long, env = "UPDRAFT_REPORT_DSN")]
        report_dsn: Option<String>,
    },
}

#[derive(Args)]
pub struct Common {
    /// Server (or mirror) base URL.
    #[arg(long, env = "UPDRAFT_SERVER")]
    server: String,
    #[arg(long)]
    app: String,
    #[arg(long)]
    channel: String,
    /// {os}-{arch}[-{flavor}], e.g. linux-x86_64.
    #[arg(long)]
    platform: String,
    /// The installed version.
    #[arg(long)]
    current: String,
    /// The app's trusted root (APP.root.json), shipped with the app.
    #[arg(long)]
    trust: PathBuf,
    /// Where verified metadata and this install's id are kept [default: $XDG_STATE_HOME/updraft or ~/.local/state/updraft].
    #[arg(long, env = "UPDRAFT_CLIENT_STATE")]
    state: Option<PathBuf>,
    /// Use this install id instead of the stored random one.
    #[arg(long)]
    client_id: Option<String>,
    /// Print results as JSON.
    #[arg(long)]
    json: bool,
}

fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("updraft");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(h) => PathBuf::from(h).join(".local/state/updraft"),
        None => PathBuf::from(".updraft-client"),
    }
}

fn usage(what: &str, e: impl std::fmt::Display) -> anyhow::Error {
    coded(2, format!("--{what}: {e}"))
}

fn client_err(e: ClientError) -> anyhow::Error {
    coded(e.exit_code(), format!("{e} ({})", e.code()))
}

fn build(common: &Common) -> anyhow::Result<Client> {
    let trusted_root = std::fs::read(&common.trust)
        .with_context(|| format!("cannot read the trusted root {}", common.trust.display()))
        .map_err(|e| coded(2, format!("{e:#}")))?;
    let cfg = ClientConfig {
        server: common.server.clone(),
        app: common.app.parse().map_err(|e| usage("app", e))?,
        channel: common.channel.parse().map_err(|e| usage("channel", e))?,
        platform: common.platform.parse().map_err(|e| usage("platform", e))?,
        current: common.current.parse().map_err(|e| usage("current", e))?,
        trusted_root,
        state_dir: common.state.clone().unwrap_or_else(default_state_dir),
        client_id: common.client_id.clone(),
        limits: Limits::default(),
    };
    Client::new(cfg).map_err(client_err)
}

fn describe(u: &Update) -> serde_json::Value {
    json!({ "version": u.version.to_string(), "target": u.target_path, "length": u.length, "sha256": u.sha256, "notes": u.notes, "pub_date": u.pub_date, "url": u.url, "downgrade": u.downgrade })
}

fn progress_bar(json: bool, label: String) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{msg:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::new(0).with_style(style).with_message(label)
}

/// A download progress callback that moves `bar`.
fn follow(bar: &ProgressBar) -> impl FnMut(u64, u64) + '_ {
    |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    }
}

/// Checks; prints "no update" and returns `None` when there is nothing for this install.
async fn check(client: &mut Client, json: bool) -> anyhow::Result<Option<Update>> {
    let update = client.check().await.map_err(client_err)?;
    if update.is_none() {
        if json {
            println!("{}", json!({ "update": null }));
        } else {
            println!("no update available");
        }
    }
    Ok(update)
}

pub async fn run(cmd: ClientCmd) -> anyhow::Result<i32> {
    match cmd {
        ClientCmd::Check(common) => {
            let mut client = build(&common)?;
            let Some(u) = check(&mut client, common.json).await? else { return Ok(NO_UPDATE) };
            if common.json {
                println!("{}", json!({ "update": describe(&u) }));
            } else {
                let kind = if u.downgrade { "downgrade (the running version was yanked)" } else { "update" };
                println!("{kind} available: {} ({} bytes, sha256 {})", u.version, u.length, u.sha256);
            }
            Ok(OK)
        }
        ClientCmd::Fetch { common, out } => {
            let mut client = build(&common)?;
            let Some(u) = check(&mut client, common.json).await? else { return Ok(NO_UPDATE) };
            let bar = progress_bar(common.json, format!("{}", u.version));
            client.fetch(&u, &out, follow(&bar)).await.map_err(client_err)?;
            bar.finish();
            if common.json {
                println!("{}", json!({ "update": describe(&u), "path": out }));
            } else {
                println!("fetched {} to {} (verified)", u.version, out.display());
            }
            Ok(OK)
        }
        ClientCmd::Install { common, target, rollback, report_dsn } => {
            let mut client = build(&common)?;
            let install_id = client.client_id().to_owned();
            let report = |version: String, from: Option<String>, outcome: &'static str, error: Option<&'static str>| {
                let report = report_dsn.as_deref().map(|dsn| InstallReport {
                    dsn: dsn.to_owned(),
                    body: json!({ "version": version, "from_version": from, "platform": common.platform, "outcome": outcome,
                                  "install_id": install_id, "error": error }),
                });
                async move {
                    if let Some(r) = report {
                        r.send().await;
                    }
                }
            };
            if rollback {
                let restored = client.rollback(&target).await.map_err(client_err)?;
                report(common.current.clone(), restored.as_ref().map(ToString::to_string), "rollback", None).await;
                let version = restored.map(|v| v.to_string());
                if common.json {
                    println!("{}", json!({ "rolled_back": true, "version": version, "path": target }));
                } else {
                    println!(
                        "restored the previous {}{}",
                        target.display(),
                        version.map(|v| format!(" (version {v})")).unwrap_or_default()
                    );
                }
                return Ok(OK);
            }
            let Some(u) = check(&mut client, common.json).await? else { return Ok(NO_UPDATE) };
            let bar = progress_bar(common.json, format!("{}", u.version));
            let record = match client.install(&u, &target, follow(&bar)).await {
                Ok(r) => r,
                Err(e) => {
                    report(u.version.to_string(), Some(common.current.clone()), "failure", Some(e.code())).await;
                    return Err(client_err(e));
                }
            };
            bar.finish();
            report(u.version.to_string(), Some(common.current.clone()), "success", None).await;
            if common.json {
                println!(
                    "{}",
                    json!({ "installed": record.version.to_string(), "previous": record.previous_version.map(|v| v.to_string()), "path": target })
                );
            } else {
                println!(
                    "installed {} at {} (previous kept as {})",
                    record.version,
                    target.display(),
                    updraft_client::previous_path(&target).display()
                );
            }
            Ok(OK)
        }
    }
}

/// An install report for Updraft's ingest: an envelope with one `updraft_install` item, sent to
/// the DSN's project. Best effort: a report that cannot be sent is a warning, never a failure of
/// the install itself.
struct InstallReport {
    dsn: String,
    body: serde_json::Value,
}

impl InstallReport {
    async fn send(self) {
        if let Err(e) = self.try_send().await {
            eprintln!("warning: the install report was not sent: {e:#}");
        }
    }

    async fn try_send(&self) -> anyhow::Result<()> {
        // DSN: SCHEME://KEY@HOST[:PORT][/PATH]/PROJECT_ID
        let (scheme, rest) = self.dsn.split_once("://").context("the DSN has no scheme")?;
        let (key, hostpath) = rest.split_once('@').context("the DSN has no key")?;
        let key = key.split(':').next().unwrap_or(key);
        let (base, project) = hostpath.trim_end_matches('/').rsplit_once('/').context("the DSN has no project id")?;
        let url = format!("{scheme}://{base}/api/{project}/envelope/");
        let item = self.body.to_string();
        let envelope = format!("{}\n{}\n{item}\n", json!({ "dsn": self.dsn }), json!({ "type": "updraft_install", "length": item.len() }));
        let resp = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()?
            .post(url)
            .header(
                "x-sentry-auth",
                format!("Sentry sentry_key={key}, sentry_version=7, sentry_client=updraft-client/{}", env!("CARGO_PKG_VERSION")),
            )
            .header("content-type", "application/x-sentry-envelope")
            .body(envelope)
            .send()
            .await?;
        anyhow::ensure!(resp.status().is_success(), "the server answered {}", resp.status());
        Ok(())
    }
}
