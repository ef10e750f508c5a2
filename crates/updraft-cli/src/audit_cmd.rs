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

/// One event's stored fields, as the API returns them.
struct Event {
    seq: i64,
    prev_hash: String,
    hash: String,
    at: String,
    actor: String,
    action: String,
    app: Option<String>,
    detail: String,
    request_id: Option<String>,
}

impl Event {
    fn parse(e: &Value) -> anyhow::Result<Event> {
        let s = |k: &str| e[k].as_str().map(str::to_owned).ok_or_else(|| coded(TAMPERED, format!("audit event without {k}: {e}")));
        Ok(Event {
            seq: e["seq"].as_i64().unwrap_or(-1),
            prev_hash: s("prev_hash")?,
            hash: s("hash")?,
            at: s("at")?,
            actor: s("actor")?,
            action: s("action")?,
            app: e["app"].as_str().map(str::to_owned),
            // The detail is stored as the JSON text of the event; serde_json writes it back the same.
            detail: serde_json::to_string(&e["detail"])?,
            request_id: e["request_id"].as_str().map(str::to_owned),
        })
    }

    fn fields(&self) -> EventFields<'_> {
        EventFields {
            at: &self.at,
            actor: &self.actor,
            action: &self.action,
            app: self.app.as_deref(),
            detail: &self.detail,
            request_id: self.request_id.as_deref(),
        }
    }
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
                let owned: Vec<Event> = events.iter().map(Event::parse).collect::<anyhow::Result<_>>()?;
                let chain = owned.iter().map(|e| (e.seq, e.prev_hash.as_str(), e.hash.as_str(), e.fields()));
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
