//! `updraft health` (crash-free rates per release, issues) and `updraft privacy` (erase one
//! install's data, retention): thin calls to the admin API's health endpoints.

use clap::Subcommand;
use serde_json::{json, Value};

use crate::admin::{print, seg, Api, Conn};

#[derive(Subcommand)]
pub enum HealthCmd {
    /// Crash-free sessions and clients, install failures, per release.
    #[command(
        after_help = "Example:\n  updraft health show my-app\n  updraft health show my-app --version 1.4.0 --since 2026-01-01T00:00:00Z --json"
    )]
    Show {
        app: String,
        /// Only this version.
        #[arg(long)]
        version: Option<String>,
        /// RFC 3339 start [default: 24 hours ago].
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Error events grouped into issues, most recently seen first.
    #[command(after_help = "Example:\n  updraft health issues my-app --limit 20")]
    Issues {
        app: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
pub enum PrivacyCmd {
    /// Delete everything tied to one install (events, sessions, install reports); audited.
    #[command(after_help = "Example:\n  updraft privacy erase my-app --client 5f0c…   # the id the SDK sent as user.id or did")]
    Erase {
        app: String,
        /// The device or install id as the app sent it.
        #[arg(long = "client")]
        client: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Set how many days crash, session and install data is kept (default 90).
    #[command(after_help = "Example:\n  updraft privacy retention my-app --days 30")]
    Retention {
        app: String,
        #[arg(long)]
        days: u32,
        #[command(flatten)]
        conn: Conn,
    },
}

fn pct(v: &Value) -> String {
    v.as_f64().map_or_else(|| "-".to_owned(), |f| format!("{:.2}%", f * 100.0))
}

pub async fn run_health(cmd: HealthCmd) -> anyhow::Result<i32> {
    match cmd {
        HealthCmd::Show { app, version, since, conn } => {
            let mut q: Vec<(&str, String)> = Vec::new();
            q.extend(version.map(|v| ("version", v)));
            q.extend(since.map(|s| ("since", s)));
            // `seg` escapes everything but [A-Za-z0-9-._+]; a literal `+` would read as a space.
            let qs = q.iter().map(|(k, v)| format!("{k}={}", seg(v).replace('+', "%2B"))).collect::<Vec<_>>().join("&");
            let v = Api::new(&conn)?.get(&format!("/apps/{}/health?{qs}", seg(&app))).await?;
            print(&conn, &v, |v| {
                let mut out = format!("health of {} since {}", v["app"].as_str().unwrap_or(""), v["since"].as_str().unwrap_or(""));
                for r in v["releases"].as_array().into_iter().flatten() {
                    out.push_str(&format!(
                        "\n{}: {} sessions, crash-free {}; {} clients, crash-free {}; {} installs, {} failed",
                        r["version"].as_str().unwrap_or(""),
                        r["sessions"],
                        pct(&r["crash_free_sessions"]),
                        r["clients"],
                        pct(&r["crash_free_clients"]),
                        r["installs"],
                        r["failed_installs"]
                    ));
                }
                out
            });
        }
        HealthCmd::Issues { app, limit, conn } => {
            let v = Api::new(&conn)?.get(&format!("/apps/{}/issues?limit={limit}", seg(&app))).await?;
            print(&conn, &v, |v| {
                v["issues"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| {
                        format!(
                            "#{} {} ({} events, last {})",
                            i["id"],
                            i["title"].as_str().unwrap_or(""),
                            i["events"],
                            i["last_seen"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
    }
    Ok(crate::exit::OK)
}

pub async fn run_privacy(cmd: PrivacyCmd) -> anyhow::Result<i32> {
    match cmd {
        PrivacyCmd::Erase { app, client, conn } => {
            let v = Api::new(&conn)?.post(&format!("/apps/{}/privacy/erase", seg(&app)), &json!({ "client_id": client })).await?;
            print(&conn, &v, |v| {
                format!(
                    "erased {} event(s), {} session(s), {} client record(s), {} install report(s)",
                    v["events"], v["sessions"], v["clients"], v["installs"]
                )
            });
        }
        PrivacyCmd::Retention { app, days, conn } => {
            let v = Api::new(&conn)?.put(&format!("/apps/{}/retention", seg(&app)), &json!({ "days": days })).await?;
            print(&conn, &v, |v| {
                format!("{} keeps crash and session data for {} days", v["app"].as_str().unwrap_or(""), v["retention_days"])
            });
        }
    }
    Ok(crate::exit::OK)
}
