//! Fuzzes the whole HTTP surface in-process: arbitrary method, path, query string, Range,
//! Upload-Offset, Content-Type and Authorization headers and body, sent through the real
//! router over real SQLite and files. A client's mistake must never be a 500, and every error
//! must use the one JSON shape.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;
use updraft_server::{RawConfig, Server};

const TOKEN: &str = "updraft_fuzz_bootstrap_token_0123456789";

struct Env {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = RawConfig {
            data: Some(dir.path().to_owned()),
            listen: Some("127.0.0.1:0".into()),
            bootstrap_token: Some(TOKEN.into()),
            admin_rate_limit: Some(0),
            auth_failure_rate_limit: Some(0),
            ..Default::default()
        }
        .validate()
        .unwrap();
        let router = rt.block_on(async {
            let server = Server::start(config).await.unwrap();
            let router = updraft_server::router(server.state().clone());
            // An app to aim at.
            let req = Request::post("/v1/admin/apps").header("authorization", format!("Bearer {TOKEN}")).header("content-type", "application/json").body(Body::from(r#"{"id":"demo"}"#)).unwrap();
            assert_eq!(router.clone().oneshot(req).await.unwrap().status(), 201);
            router
        });
        Env { rt, router, _dir: dir }
    })
}

/// Splits the input into fields at 0xff bytes.
fn fields(data: &[u8]) -> Vec<&[u8]> {
    data.split(|b| *b == 0xff).collect()
}

fuzz_target!(|data: &[u8]| {
    let f = fields(data);
    let get = |i: usize| f.get(i).copied().unwrap_or_default();
    let selector = get(0).first().copied().unwrap_or(0);
    let method = [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::HEAD][usize::from(selector % 6)].clone();
    let prefixes = ["/v1/update/demo/stable/", "/v1/admin/apps/demo/releases/", "/v1/admin/uploads/", "/v1/blobs/", "/tuf/demo/metadata/", "/tuf/demo/targets/", "/v1/admin/", "/"];
    let path = format!("{}{}", prefixes[usize::from(selector / 8 % 8)], String::from_utf8_lossy(get(1)));
    let Ok(uri) = path.parse::<axum::http::Uri>() else { return };
    let mut req = Request::builder().method(method).uri(uri);
    if selector & 0x40 != 0 {
        req = req.header("authorization", format!("Bearer {TOKEN}"));
    }
    for (name, i) in [("range", 2), ("upload-offset", 3), ("content-type", 4), ("authorization", 5)] {
        if let Ok(v) = axum::http::HeaderValue::from_bytes(get(i)) {
            if !get(i).is_empty() {
                req = req.header(name, v);
            }
        }
    }
    let Ok(req) = req.body(Body::from(get(6).to_vec())) else { return };
    let e = env();
    let (status, body) = e.rt.block_on(async {
        let resp = e.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        (status, body)
    });
    assert_ne!(status.as_u16(), 500, "internal error for a client's request: {}", String::from_utf8_lossy(&body));
    if status.is_client_error() && !body.is_empty() {
        let v: serde_json::Value = serde_json::from_slice(&body).expect("errors are JSON");
        assert!(v["error"]["code"].is_string() && v["error"]["message"].is_string(), "error shape: {v}");
    }
});
