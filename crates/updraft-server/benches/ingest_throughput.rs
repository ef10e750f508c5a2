//! Ingest throughput: envelopes per second through the real router (DSN auth, gzip decode,
//! envelope parse, scrubbing, id hashing, the batching writer, SQLite with full fsync), on a
//! 2-worker runtime. Each envelope is ~2 KB gzip: one event with a 12-frame stack trace, user,
//! tags and contexts (all scrubbed), plus one session update. HTTP framing is left out (the
//! router is called in-process), so this measures Updraft's own work.
//! `cargo bench -p updraft-server --bench ingest_throughput` (INGEST_ENVELOPES, INGEST_CONCURRENCY).

use std::io::Write;
use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt;

const TOKEN: &str = "updraft_bench_token_0123456789abcdef";

/// Hex that does not compress (xorshift), like the ids, hashes and addresses real events carry.
fn noise(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push_str(&format!("{x:016x}"));
    }
    out.truncate(len);
    out
}

fn event(i: usize) -> String {
    let frames: Vec<serde_json::Value> = (0..12)
        .map(|f| {
            serde_json::json!({
                "filename": format!("/home/dev{}/src/app/module_{f}.py", i % 7),
                "function": format!("handler_{}_{f}", i % 13),
                "module": format!("app.module_{f}"),
                "lineno": 10 + f * 7 + i % 5,
                "in_app": f % 3 != 0,
                "context_line": format!("    result = compute(value_{f}, retries={})", i % 4),
                "vars": {"value": format!("{}", i * 31 + f), "password": "hunter2", "email": "user@example.com",
                         "request_id": noise((i * 12 + f) as u64, 64), "digest": noise((i * 12 + f) as u64 + 7_000_000, 80)}
            })
        })
        .collect();
    serde_json::json!({
        "event_id": format!("{:032x}", i as u128 + 1),
        "release": "bench@2.0.0",
        "environment": "production",
        "platform": "python",
        "level": "error",
        "timestamp": 1_700_000_000 + i as i64,
        "user": {"id": format!("device-{}", i % 2000), "ip_address": "203.0.113.9", "email": "someone@example.org"},
        "tags": {"os": "linux", "db_password": "s3cret", "build": format!("{}", i % 100)},
        "contexts": {"device": {"model": "x", "arch": "x86_64"}, "os": {"name": "Linux", "version": "6.1"},
                     "support": {"card": "4111 1111 1111 1111", "mac": "00:1a:2b:3c:4d:5e", "path": "C:\\Users\\carol\\log.txt"}},
        "exception": {"values": [{"type": format!("ValueError{}", i % 20), "value": format!("bad input {i} from 10.0.0.{}", i % 250),
                                  "stacktrace": {"frames": frames}}]}
    })
    .to_string()
}

fn envelope(i: usize) -> Vec<u8> {
    let ev = event(i);
    let session = serde_json::json!({"sid": format!("s{i}"), "did": format!("device-{}", i % 2000), "init": true,
        "status": if i.is_multiple_of(50) { "crashed" } else { "exited" }, "started": "2026-01-01T10:00:00Z", "attrs": {"release": "bench@2.0.0"}});
    let body = format!(
        "{{\"event_id\":\"{:032x}\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{ev}\n{{\"type\":\"session\"}}\n{session}\n",
        i as u128 + 1,
        ev.len()
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).unwrap();
    gz.finish().unwrap()
}

fn main() {
    let n: usize = std::env::var("INGEST_ENVELOPES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let conc: usize = std::env::var("INGEST_CONCURRENCY").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let raw = updraft_server::RawConfig {
            data: Some(dir.path().join("data")),
            listen: Some("127.0.0.1:0".into()),
            bootstrap_token: Some(TOKEN.into()),
            ingest_rate_limit: Some(0),
            admin_rate_limit: Some(0),
            ..Default::default()
        };
        let server = updraft_server::Server::start(raw.validate().unwrap()).await.unwrap();
        let router = updraft_server::router(server.state().clone());
        let admin = |method: &str, path: &str, body: &str| {
            Request::builder()
                .method(method)
                .uri(path)
                .header("authorization", format!("Bearer {TOKEN}"))
                .header("content-type", "application/json")
                .body(Body::from(body.to_owned()))
                .unwrap()
        };
        let r = router.clone().oneshot(admin("POST", "/v1/admin/apps", r#"{"id":"bench"}"#)).await.unwrap();
        assert!(r.status().is_success(), "create app: {}", r.status());
        let r = router.clone().oneshot(admin("GET", "/v1/admin/apps/bench/dsn", "")).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap()).unwrap();
        let path = format!("/api/{}/envelope/", v["project_id"]);
        let auth = format!("Sentry sentry_key={}, sentry_version=7", v["public_key"].as_str().unwrap());
        let bodies: Vec<Vec<u8>> = (0..n).map(envelope).collect();
        let avg = bodies.iter().map(Vec::len).sum::<usize>() / n;
        let start = Instant::now();
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let bodies = std::sync::Arc::new(bodies);
        let mut tasks = Vec::new();
        for _ in 0..conc {
            let (router, path, auth, next, bodies) = (router.clone(), path.clone(), auth.clone(), next.clone(), bodies.clone());
            tasks.push(tokio::spawn(async move {
                let mut refused = 0u64;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= bodies.len() {
                        return refused;
                    }
                    let req = Request::builder()
                        .method("POST")
                        .uri(&path)
                        .header("x-sentry-auth", &auth)
                        .header("content-encoding", "gzip")
                        .body(Body::from(bodies[i].clone()))
                        .unwrap();
                    let r = router.clone().oneshot(req).await.unwrap();
                    if !r.status().is_success() {
                        refused += 1;
                    }
                }
            }));
        }
        let mut refused = 0;
        for t in tasks {
            refused += t.await.unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        let r = router.clone().oneshot(admin("GET", "/v1/admin/apps/bench/health?version=2.0.0&since=2000-01-01T00:00:00Z", "")).await.unwrap();
        let h: serde_json::Value = serde_json::from_slice(&axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap()).unwrap();
        println!(
            "ingest: {n} envelopes (avg {avg} B gzip, event + session, scrubbed) in {secs:.2} s = {:.0} envelopes/s on 2 workers, concurrency {conc}; refused {refused}; sessions stored {}",
            n as f64 / secs,
            h["releases"][0]["sessions"]
        );
    });
}
