//! `updraft audit list|verify`: read the hash-chained audit log, and recompute the chain to
//! prove no event was edited, removed or reordered since it was written.

use clap::Subcommand;
use serde_json::Value;
use updraft_core::audit::{verify_chain, ChainBreak, EventFields, GENESIS};

use crate::admin::{Api, Conn};
use crate::exit::{coded, OK};

/// A verification failure: the log was tampered with.
const TAMPERED: i32 = 4;

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Show audit events, oldest first.
    #[command(after_help = "Example:\n  updraft audit list --app my-app --limit 20\n  updraft audit list --json")]
    List {
        /// Only events about this app.
        #[arg(long)]
        app: Option<String>,
        /// Events after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        conn: Conn,
    },
    /// Recompute the whole hash chain; exit 4 and name the first bad event when it breaks.
    #[command(
        after_help = "Example:\n  updraft audit verify\n\nNeeds a viewer (or higher) token that is not limited to apps: the chain spans every app."
    )]
    Verify {
        #[command(flatten)]
        conn: Conn,
    },
}

fn fields(e: &Value) -> anyhow::Result<(String, String, String, String, String, Option<String>, String, Option<String>)> {
    let s = |k: &str| e[k].as_str().map(str::to_owned).ok_or_else(|| coded(TAMPERED, format!("audit event without {k}: {e}")));
    // The detail is stored as the JSON text of the event; serde_json writes it back the same.
    let detail = serde_json::to_string(&e["detail"])?;
    Ok((
        s("prev_hash")?,
        s("hash")?,
        s("at")?,
        s("actor")?,
        s("action")?,
        e["app"].as_str().map(str::to_owned),
        detail,
        e["request_id"].as_str().map(str::to_owned),
    ))
}

pub async fn run(cmd: AuditCmd) -> anyhow::Result<i32> {
    match cmd {
        AuditCmd::List { app, after, limit, conn } => {
            let mut path = format!("/audit?after={after}&limit={limit}");
            if let Some(a) = &app {
                path.push_str(&format!("&app={a}"));
            }
            let v = Api::new(&conn)?.get(&path).await?;
            if conn.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for e in v["events"].as_array().into_iter().flatten() {
                    println!(
                        "{:>6} {} {:<18} {:<24} {} {}",
                        e["seq"],
                        e["at"].as_str().unwrap_or(""),
                        e["action"].as_str().unwrap_or(""),
                        e["actor"].as_str().unwrap_or(""),
                        e["app"].as_str().unwrap_or("-"),
                        e["detail"]
                    );
                }
            }
            Ok(OK)
        }
        AuditCmd::Verify { conn } => {
            let api = Api::new(&conn)?;
            let mut after = 0i64;
            let mut head = GENESIS.to_owned();
            let mut count = 0u64;
            loop {
                let page = api.get(&format!("/audit?after={after}&limit=1000")).await?;
                let events = page["events"].as_array().cloned().unwrap_or_default();
                let owned: Vec<(i64, _)> =
                    events.iter().map(|e| Ok((e["seq"].as_i64().unwrap_or(-1), fields(e)?))).collect::<anyhow::Result<_>>()?;
                let chain = owned.iter().map(|(seq, (prev, hash, at, actor, action, app, detail, rid))| {
                    (
                        *seq,
                        prev.as_str(),
                        hash.as_str(),
                        EventFields { at, actor, action, app: app.as_deref(), detail, request_id: rid.as_deref() },
                    )
                });
                head = match verify_chain(&head, chain) {
                    Ok(h) => h,
                    Err(ChainBreak::Hash { seq }) => {
                        return Err(coded(TAMPERED, format!("audit log tampered: event {seq} does not match its hash (it was edited)")))
                    }
                    Err(ChainBreak::Link { seq }) => {
                        return Err(coded(
                            TAMPERED,
                            format!(
                                "audit log tampered: the chain breaks before event {seq} (an event was removed, inserted or reordered)"
                            ),
                        ))
                    }
                };
                count += owned.len() as u64;
                match page["next_after"].as_i64() {
                    Some(n) => after = n,
                    None => break,
                }
            }
            if conn.json {
                println!("{}", serde_json::json!({ "intact": true, "events": count, "head": head }));
            } else {
                println!("audit log intact: {count} events, chain head {head}");
            }
            Ok(OK)
        }
    }
}
