//! The practical ceiling for an update check on this machine: axum on tokio, as Updraft uses
//! them, answering every GET with the same JSON bytes Updraft would send, with no routing
//! work, middleware, metrics or decision behind it.

use std::path::Path;

use anyhow::Context;
use axum::http::header;
use axum::response::IntoResponse;
use bytes::Bytes;

pub fn serve(listen: &str, body: &Path) -> anyhow::Result<()> {
    let body = Bytes::from(std::fs::read(body).with_context(|| format!("cannot read {}", body.display()))?);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        let app = axum::Router::new().fallback(axum::routing::get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body).into_response() }
        }));
        println!("hello listening on http://{}", listener.local_addr()?);
        axum::serve(listener, app).await.context("hello server failed")
    })
}
