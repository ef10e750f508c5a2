//! Prometheus metrics: request counts and latencies by route and status, update checks by
//! app/channel/platform/outcome, bytes served. Labels only ever carry values the server knows
//! (a matched route, an existing app), never raw client input, so cardinality stays bounded.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("updraft_http_request_duration_seconds".into()),
                &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0],
            )
            .expect("static bucket list is valid")
            .build_recorder();
        let handle = recorder.handle();
        // In tests several servers share one process; only the first install wins, which is fine.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

pub async fn track_requests(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("updraft_http_requests_total", "route" => route.clone(), "method" => method, "status" => status).increment(1);
    metrics::histogram!("updraft_http_request_duration_seconds", "route" => route).record(start.elapsed().as_secs_f64());
    resp
}

pub fn bytes_served(kind: &'static str, n: u64) {
    metrics::counter!("updraft_bytes_served_total", "kind" => kind).increment(n);
}
