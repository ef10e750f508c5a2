//! Health-gated rollout commands: `rollout schedule`, `rollout status`, `app health-rules`.
//! Each is one or two admin API calls; the server does the judging.

use std::path::PathBuf;

use clap::Args;
use serde_json::{json, Value};

use crate::admin::{seg, Api, Conn};
use crate::exit::coded;

#[derive(Args)]
pub struct ScheduleArgs {
    app: String,
    version: String,
    /// Steps PERCENT:SOAK, the last without a soak; soak units s, m, h, d.
    #[arg(long, value_name = "STEPS", required_unless_present = "clear", conflicts_with = "clear")]
    schedule: Option<String>,
    /// Remove the release's schedule: it keeps its share and state, and nothing moves it any
    /// more but people.
    #[arg(long)]
    clear: bool,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Args)]
pub struct StatusArgs {
    app: String,
    version: String,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Args)]
pub struct HealthRulesArgs {
    app: String,
    /// Replace the rules with those in a JSON file: {"z": 1.96, "rules": [{"metric":
    /// "crash_free_sessions", "min_sample": 200, "tolerance": 0.005}, …]}.
    #[arg(long, value_name = "FILE", conflicts_with = "defaults")]
    set: Option<PathBuf>,
    /// Go back to the default rules.
    #[arg(long)]
    defaults: bool,
    /// POST halts to this URL.
    #[arg(long, value_name = "URL", conflicts_with = "no_webhook")]
    webhook: Option<String>,
    /// json (generic) or slack ({"text": …}).
    #[arg(long, value_name = "FORMAT", value_parser = ["json", "slack"])]
    webhook_format: Option<String>,
    /// Remove the webhook.
    #[arg(long)]
    no_webhook: bool,
    #[command(flatten)]
    conn: Conn,
}

/// Checks a schedule before anything is sent, so `release publish --schedule` fails before
/// uploading. Returns the first step's share.
pub fn first_step(schedule: &str) -> anyhow::Result<f64> {
    let s: updraft_core::health::Schedule = schedule.parse().map_err(|e| coded(2, format!("--schedule: {e}")))?;
    Ok(s.steps()[0].percent.as_f64())
}

pub async fn put_schedule(api: &Api, app: &str, version: &str, schedule: &str) -> anyhow::Result<Value> {
    api.put(&format!("/apps/{}/releases/{}/schedule", seg(app), seg(version)), &json!({ "schedule": schedule })).await
}

pub async fn schedule(args: ScheduleArgs) -> anyhow::Result<i32> {
    let api = Api::new(&args.conn)?;
    let v = match &args.schedule {
        Some(schedule) => {
            first_step(schedule)?;
            put_schedule(&api, &args.app, &args.version, schedule).await?
        }
        None => api.delete_json(&format!("/apps/{}/releases/{}/schedule", seg(&args.app), seg(&args.version))).await?,
    };
    show(&args.conn, &v);
    Ok(crate::exit::OK)
}

pub async fn status(args: StatusArgs) -> anyhow::Result<i32> {
    let v = Api::new(&args.conn)?.get(&format!("/apps/{}/releases/{}/health", seg(&args.app), seg(&args.version))).await?;
    show(&args.conn, &v);
    Ok(crate::exit::OK)
}

fn show(conn: &Conn, v: &Value) {
    if conn.json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        print!("{}", status_text(v));
    }
}

fn pct(x: &Value) -> String {
    x.as_f64().map_or_else(|| "-".into(), |x| format!("{:.2}%", x * 100.0))
}

/// `rollout status` for people.
pub fn status_text(v: &Value) -> String {
    let s = |x: &Value| x.as_str().unwrap_or("-").to_owned();
    let mut out = format!(
        "{} {} [{}] channel {}, rollout {}%\n",
        s(&v["app"]),
        s(&v["version"]),
        s(&v["state"]),
        s(&v["channel"]),
        v["rollout_percent"]
    );
    match v["schedule"].as_object() {
        None => out.push_str("schedule: none\n"),
        Some(sch) => {
            let steps = sch["steps"].as_array().map_or(0, Vec::len);
            out.push_str(&format!(
                "schedule: {} (step {} of {steps}, {})\n",
                s(&sch["schedule"]),
                sch["step"].as_u64().unwrap_or(0) + 1,
                s(&sch["state"])
            ));
            if !sch["next_percent"].is_null() {
                out.push_str(&format!(
                    "  next: {}% not before {}, and only while healthy\n",
                    sch["next_percent"],
                    sch["next_not_before"].as_str().unwrap_or("now")
                ));
            }
            if let Some(e) = sch["halt_evidence"].as_object() {
                out.push_str(&format!("  halted automatically at {}%: see --json for the evidence\n", e["rollout_percent"]));
            }
        }
    }
    out.push_str(&format!("health: {} (reports since {})\n", s(&v["verdict"]), s(&v["since"])));
    for p in v["platforms"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {} against {}:\n",
            s(&p["platform"]),
            p["baseline_version"].as_str().map_or("no baseline".to_owned(), |b| format!("baseline {b}"))
        ));
        for r in p["rules"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "    {:<22} new {} [{}, {}] n={:<6} baseline {} [{}, {}] n={:<6} needs upper >= {} (min {}): {}\n",
                s(&r["metric"]),
                pct(&r["new"]["rate"]),
                pct(&r["new"]["lower"]),
                pct(&r["new"]["upper"]),
                r["new"]["reports"],
                pct(&r["baseline"]["rate"]),
                pct(&r["baseline"]["lower"]),
                pct(&r["baseline"]["upper"]),
                r["baseline"]["reports"],
                pct(&r["threshold"]),
                r["min_sample"],
                s(&r["state"]).to_uppercase()
            ));
        }
    }
    if let Some(c) = v["closest_rule"].as_object() {
        let margin = c["margin"].as_f64().map_or("-".into(), |m| format!("{:+.2} points", m * 100.0));
        out.push_str(&format!(
            "closest to tripping: {} on {} ({}, margin {margin}, {} of {} reports)\n",
            s(&c["metric"]),
            s(&c["platform"]),
            s(&c["state"]),
            c["new"]["reports"],
            c["min_sample"]
        ));
    }
    out
}

pub async fn health_rules(args: HealthRulesArgs) -> anyhow::Result<i32> {
    let api = Api::new(&args.conn)?;
    let path = format!("/apps/{}/health-rules", seg(&args.app));
    let changing = args.set.is_some() || args.defaults || args.webhook.is_some() || args.webhook_format.is_some() || args.no_webhook;
    let mut current = api.get(&path).await?;
    if changing {
        let mut body = json!({});
        if args.defaults {
            body["rules"] = Value::Null;
        } else if let Some(file) = &args.set {
            let text = std::fs::read_to_string(file).map_err(|e| coded(2, format!("--set {}: {e}", file.display())))?;
            let given: Value = serde_json::from_str(&text).map_err(|e| coded(2, format!("--set {}: not JSON: {e}", file.display())))?;
            body["rules"] = given["rules"].clone();
            if !given["z"].is_null() {
                body["z"] = given["z"].clone();
            }
        } else if current["defaults"] != json!(true) {
            body["rules"] = current["rules"].clone();
            body["z"] = current["z"].clone();
        }
        let webhook = if args.no_webhook {
            Value::Null
        } else {
            let mut w = current["webhook"].clone();
            if let Some(url) = &args.webhook {
                w = json!({ "url": url, "format": w["format"].as_str().unwrap_or("json") });
            }
            if let Some(f) = &args.webhook_format {
                if w.is_null() {
                    return Err(coded(2, "--webhook-format needs a webhook: pass --webhook URL"));
                }
                w["format"] = json!(f);
            }
            w
        };
        body["webhook"] = webhook;
        current = api.put(&path, &body).await?;
    }
    if args.conn.json {
        println!("{}", serde_json::to_string_pretty(&current).unwrap_or_default());
    } else {
        let mut out = format!(
            "{} rules for {} (z = {}):\n",
            if current["defaults"] == json!(true) { "default" } else { "custom" },
            args.app,
            current["z"]
        );
        for r in current["rules"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  {:<22} min_sample {:<6} tolerance {:.2} points\n",
                r["metric"].as_str().unwrap_or("-"),
                r["min_sample"],
                r["tolerance"].as_f64().unwrap_or(0.0) * 100.0
            ));
        }
        match current["webhook"].as_object() {
            Some(w) => out.push_str(&format!(
                "webhook: {} ({})",
                w["url"].as_str().unwrap_or("-").split('/').take(3).collect::<Vec<_>>().join("/") + "/…",
                w["format"].as_str().unwrap_or("json")
            )),
            None => out.push_str("webhook: none"),
        }
        println!("{out}");
    }
    Ok(crate::exit::OK)
}
