//! The perf gate's workload: a real Updraft server (the library's router behind its connection
//! loop, `http_serve::serve`, as `updraft serve` runs it) and a keep-alive HTTP client in one process on one thread, so
//! that callgrind, counting instructions inside [`measured_few`] and [`measured_many`], sees every instruction of
//! the check path — HTTP parsing, middleware, routing, the decision, the answer — and nothing
//! else. Instruction counts do not depend on the machine's load, so CI can hold them to a
//! tight tolerance without flaking.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use axum::body::Body;
use axum::http::Request;
use clap::Args;
use tower::ServiceExt;
use updraft_core::AppId;

use crate::load::Conn;

const TOKEN: &str = "updraft_gate_bootstrap_token_0123456789abcdef";
const APP: &str = "gate";

#[derive(Args)]
pub struct GateArgs {
    /// Update checks measured at each release count.
    #[arg(long, default_value_t = 2000)]
    checks: usize,
    /// The smaller release count (measured in `measured_few`).
    #[arg(long, default_value_t = 10)]
    few: usize,
    /// The larger release count (measured in `measured_many`); the check's cost must not grow.
    #[arg(long, default_value_t = 1000)]
    many: usize,
    /// Where to write the run's description (JSON); stdout when absent.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn main(args: GateArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let dir = tempfile::tempdir()?;
    let (state, addr, server) = rt.block_on(start(dir.path().join("data")))?;
    let app: AppId = APP.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = format!("/v1/update/{APP}/stable/linux-x86_64?current=0.0.1");
    let mut runs = Vec::new();
    let mut offset = 0;
    for (releases, measure) in [(args.few, measured_few as Measure), (args.many, measured_many as Measure)] {
        rt.block_on(async {
            crate::seed::add_releases(state.store.as_ref(), &state.blobs, &state.repo, &app, releases, "linux-x86_64").await?;
            updraft_server::ops::rebuild_view(&state, &app).await.map_err(|e| anyhow::anyhow!("rebuilding the view: {}", e.message))
        })?;
        let mut conn = rt.block_on(Conn::connect(&addr.to_string()))?;
        // Warm up: first-use allocations, metric registration, connection state.
        let warm = args.checks.min(200);
        rt.block_on(run_checks(&mut conn, &path, warm, offset))?;
        offset += warm;
        let (answers, allocations, bytes) = crate::alloc::counted(|| measure(&rt, &mut conn, &path, args.checks, offset));
        let answers = answers?;
        offset += args.checks;
        runs.push(serde_json::json!({
            "releases": releases,
            "checks": args.checks,
            "answers": answers,
            "allocations_per_check": allocations as f64 / args.checks as f64,
            "allocated_bytes_per_check": bytes as f64 / args.checks as f64,
        }));
    }
    server.abort();
    let report = serde_json::json!({ "runs": runs });
    match &args.out {
        Some(p) => std::fs::write(p, serde_json::to_vec_pretty(&report)?).with_context(|| format!("cannot write {}", p.display()))?,
        None => println!("{report}"),
    }
    Ok(())
}

type Measure = fn(&tokio::runtime::Runtime, &mut Conn, &str, usize, usize) -> anyhow::Result<serde_json::Value>;

/// The measured regions, one per release count: callgrind collects only while one of these is
/// on the stack (`--toggle-collect='*gate::measured_*'`), and `callgrind_annotate --inclusive`
/// reports each one's count. Everything the server does for these checks runs inside them,
/// because the server's tasks run on this thread's runtime.
#[inline(never)]
fn measured_few(rt: &tokio::runtime::Runtime, conn: &mut Conn, path: &str, n: usize, offset: usize) -> anyhow::Result<serde_json::Value> {
    rt.block_on(run_checks(conn, path, n, offset))
}

#[inline(never)]
fn measured_many(rt: &tokio::runtime::Runtime, conn: &mut Conn, path: &str, n: usize, offset: usize) -> anyhow::Result<serde_json::Value> {
    rt.block_on(run_checks(conn, path, n, offset))
}

async fn run_checks(conn: &mut Conn, path: &str, n: usize, offset: usize) -> anyhow::Result<serde_json::Value> {
    let (mut offered, mut none, mut bytes) = (0u32, 0u32, 0usize);
    let mut url = String::with_capacity(path.len() + 32);
    for k in offset..offset + n {
        url.clear();
        url.push_str(path);
        url.push_str("&client=gate-client-");
        push_decimal(&mut url, k);
        let a = conn.get(&url).await?;
        bytes += a.body_len;
        match a.status {
            200 => offered += 1,
            204 => none += 1,
            s => anyhow::bail!("update check answered {s}"),
        }
    }
    Ok(serde_json::json!({ "offered": offered, "none": none, "body_bytes": bytes }))
}

fn push_decimal(out: &mut String, mut k: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (k % 10) as u8;
        k /= 10;
        if k == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&d| d as char));
}

/// Starts the server library on a fresh data directory, creates the app through the admin API,
/// and serves the router on a loopback port from this thread's runtime.
async fn start(data: PathBuf) -> anyhow::Result<(updraft_server::state::AppState, SocketAddr, tokio::task::JoinHandle<()>)> {
    let raw = updraft_server::RawConfig {
        data: Some(data),
        listen: Some("127.0.0.1:0".into()),
        bootstrap_token: Some(TOKEN.into()),
        ..Default::default()
    };
    let config = raw.validate().map_err(|e| anyhow::anyhow!("config: {e:?}"))?;
    let server = updraft_server::Server::start(config).await.context("starting the server")?;
    let state = server.state().clone();
    drop(server);
    let create = Request::post("/v1/admin/apps")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(format!(r#"{{"id":"{APP}"}}"#)))?;
    let resp = updraft_server::router(state.clone()).oneshot(create).await?;
    anyhow::ensure!(resp.status().is_success(), "creating the app answered {}", resp.status());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = updraft_server::router(state.clone());
    let timeout = std::time::Duration::from_secs(state.config.header_read_timeout_secs);
    let task = tokio::spawn(updraft_server::http_serve::serve(listener, app, timeout, std::future::pending()));
    Ok((state, addr, task))
}

#[derive(Args)]
pub struct ReportArgs {
    /// The JSON `gate --out` wrote.
    #[arg(long)]
    gate: PathBuf,
    /// `callgrind_annotate --inclusive=yes` output for the gate's run.
    #[arg(long)]
    annotate: PathBuf,
    /// Where to write the results for `updraft slo check`.
    #[arg(long)]
    out: PathBuf,
}

/// Joins callgrind's instruction counts (inclusive, per measured function) with the gate's own
/// counts into the results document `benches/perf-gate.slo.toml` reads.
pub fn report(args: ReportArgs) -> anyhow::Result<()> {
    let gate: serde_json::Value = serde_json::from_slice(&std::fs::read(&args.gate)?).context("gate JSON")?;
    let annotate = std::fs::read_to_string(&args.annotate).context("callgrind_annotate output")?;
    let instructions = |function: &str| -> anyhow::Result<f64> {
        annotate
            .lines()
            .find(|l| l.contains(&format!("updraft_bench::gate::{function} ")))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.replace(',', "").parse::<f64>().ok())
            .with_context(|| format!("callgrind_annotate shows no {function}"))
    };
    let runs = gate["runs"].as_array().context("gate JSON has no runs")?;
    anyhow::ensure!(runs.len() == 2, "expected two gate runs, found {}", runs.len());
    let field = |i: usize, k: &str| runs[i][k].as_f64().with_context(|| format!("gate run {i} has no {k}"));
    let (few, many) = (field(0, "releases")?, field(1, "releases")?);
    let checks = field(0, "checks")?;
    let (ir_few, ir_many) = (instructions("measured_few")? / checks, instructions("measured_many")? / checks);
    let round = |x: f64| (x * 100.0).round() / 100.0;
    let doc = serde_json::json!({
        "check": {
            "checks": checks,
            "releases": [few, many],
            format!("instructions_per_check_at_{few}"): ir_few.round(),
            format!("instructions_per_check_at_{many}"): ir_many.round(),
            format!("growth_{many}_vs_{few}_pct"): round((ir_many - ir_few) / ir_few * 100.0),
            format!("allocations_per_check_at_{few}"): round(field(0, "allocations_per_check")?),
            format!("allocations_per_check_at_{many}"): round(field(1, "allocations_per_check")?),
            format!("allocated_bytes_per_check_at_{few}"): field(0, "allocated_bytes_per_check")?.round(),
        }
    });
    let mut bytes = serde_json::to_vec_pretty(&doc)?;
    bytes.push(b'\n');
    std::fs::write(&args.out, bytes).with_context(|| format!("cannot write {}", args.out.display()))?;
    Ok(())
}
