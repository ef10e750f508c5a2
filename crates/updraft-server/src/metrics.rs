//! Prometheus metrics: request counts and latencies by route and status, update checks by
//! app/channel/platform/outcome, bytes served. Labels only ever carry values the server knows
//! (a matched route, an existing app), never raw client input, so cardinality stays bounded.
//!
//! The per-request path is kept cheap because every update check pays it: counter handles are
//! cached per worker thread (no label strings built, no registry lookup), and request latency
//! goes into fixed-bucket atomic histograms here rather than the exporter's, which keeps every
//! sample in memory until the next scrape (at 50,000 requests/s that is over 1 MiB a second).
//! [`render`] prints both.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // In tests several servers share one process; only the first install wins, which is fine.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Everything `/metrics` shows: the exporter's metrics and the request latency histograms.
pub fn render() -> String {
    let mut out = handle().render();
    render_latency(&mut out);
    out
}

const LATENCY: &str = "updraft_http_request_duration_seconds";
/// Upper bounds of the latency buckets, seconds (and the same in nanoseconds below).
const BOUNDS: [f64; 13] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
const BOUNDS_NS: [u64; 13] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    10_000_000_000,
];

/// A Prometheus histogram in fixed memory: one count per bucket (not cumulative; summed when
/// rendered), the last for samples above every bound.
struct Histogram {
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Histogram { buckets: std::array::from_fn(|_| AtomicU64::new(0)), sum_ns: AtomicU64::new(0) }
    }
    fn record(&self, ns: u64) {
        let i = BOUNDS_NS.iter().position(|&b| ns <= b).unwrap_or(BOUNDS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

/// Latency histograms by route, in the order routes were first seen.
static HISTOGRAMS: Mutex<Vec<(String, Arc<Histogram>)>> = Mutex::new(Vec::new());

fn histogram_for(route: &str) -> Arc<Histogram> {
    let mut all = HISTOGRAMS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, h)) = all.iter().find(|(r, _)| r == route) {
        return h.clone();
    }
    let h = Arc::new(Histogram::new());
    all.push((route.to_owned(), h.clone()));
    h
}

fn render_latency(out: &mut String) {
    let all = HISTOGRAMS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if all.is_empty() {
        return;
    }
    let _ = writeln!(out, "# TYPE {LATENCY} histogram");
    for (route, h) in all {
        let route = escape_label(&route);
        let mut cumulative = 0u64;
        for (i, bound) in BOUNDS.iter().enumerate() {
            cumulative += h.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{LATENCY}_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}");
        }
        cumulative += h.buckets[BOUNDS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{LATENCY}_bucket{{route=\"{route}\",le=\"+Inf\"}} {cumulative}");
        let sum = h.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{LATENCY}_sum{{route=\"{route}\"}} {sum}");
        let _ = writeln!(out, "{LATENCY}_count{{route=\"{route}\"}} {cumulative}");
    }
    out.push('\n');
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// One route's handles, cached on a worker thread.
struct RouteHandles {
    route: Box<str>,
    latency: Arc<Histogram>,
    /// (method, status) → request counter; a route sees only a few of these.
    counters: Vec<(Method, u16, metrics::Counter)>,
}

thread_local! {
    /// Keyed by the address and length of the matched-path string, which the router keeps for
    /// its lifetime; the stored route text is compared on every hit, so an address reused by
    /// a later router cannot be mistaken for another route.
    static ROUTES: RefCell<HashMap<(usize, usize), RouteHandles>> = RefCell::new(HashMap::new());
}

fn record(route: &str, method: &Method, status: u16, elapsed_ns: u64) {
    ROUTES.with(|routes| {
        let mut routes = routes.borrow_mut();
        let key = (route.as_ptr() as usize, route.len());
        let entry = match routes.get_mut(&key) {
            Some(e) if &*e.route == route => e,
            _ => {
                let e = RouteHandles { route: route.into(), latency: histogram_for(route), counters: Vec::new() };
                routes.insert(key, e);
                routes.get_mut(&key).expect("just inserted")
            }
        };
        entry.latency.record(elapsed_ns);
        match entry.counters.iter().find(|(m, s, _)| m == method && *s == status) {
            Some((_, _, c)) => c.increment(1),
            None => {
                // Register only with the real recorder installed: a handle taken before it would
                // stay a no-op in this thread's cache.
                handle();
                let c = metrics::counter!(
                    "updraft_http_requests_total",
                    "route" => route.to_owned(),
                    "method" => method.as_str().to_owned(),
                    "status" => status.to_string()
                );
                c.increment(1);
                entry.counters.push((method.clone(), status, c));
            }
        }
    });
}

pub async fn track_requests(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    // The matched path shares the router's allocation: cloning it is a reference count.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let resp = next.run(req).await;
    let elapsed = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    record(route.as_ref().map_or("unmatched", MatchedPath::as_str), &method, resp.status().as_u16(), elapsed);
    resp
}

/// A download answered with a redirect to a presigned bucket URL (`blob_redirect_secs`).
pub fn blob_redirect(kind: &'static str) {
    metrics::counter!("updraft_blob_redirects_total", "kind" => kind).increment(1);
}

pub fn bytes_served(kind: &'static str, n: u64) {
    static BLOB: OnceLock<metrics::Counter> = OnceLock::new();
    static TARGET: OnceLock<metrics::Counter> = OnceLock::new();
    let counter = |kind: &'static str| metrics::counter!("updraft_bytes_served_total", "kind" => kind);
    match kind {
        "blob" => BLOB.get_or_init(|| counter("blob")).increment(n),
        "target" => TARGET.get_or_init(|| counter("target")).increment(n),
        other => counter(other).increment(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_histogram_renders_cumulative_buckets() {
        handle();
        let route = "/test/metrics/{only}";
        for ns in [100_000, 700_000, 3_000_000, 20_000_000_000] {
            record(route, &Method::GET, 200, ns);
        }
        record(route, &Method::GET, 404, 1);
        let text = render();
        let line = |suffix: &str| {
            let prefix = format!("{LATENCY}{suffix} ");
            text.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no {prefix} in\n{text}")).to_owned()
        };
        assert_eq!(line(r#"_bucket{route="/test/metrics/{only}",le="0.0005"}"#), "2");
        assert_eq!(line(r#"_bucket{route="/test/metrics/{only}",le="0.001"}"#), "3");
        assert_eq!(line(r#"_bucket{route="/test/metrics/{only}",le="0.005"}"#), "4");
        assert_eq!(line(r#"_bucket{route="/test/metrics/{only}",le="10"}"#), "4");
        assert_eq!(line(r#"_bucket{route="/test/metrics/{only}",le="+Inf"}"#), "5");
        assert_eq!(line(r#"_count{route="/test/metrics/{only}"}"#), "5");
        let sum: f64 = line(r#"_sum{route="/test/metrics/{only}"}"#).parse().unwrap();
        assert!((sum - 20.0038).abs() < 1e-6, "{sum}");
        assert!(text.contains(r#"updraft_http_requests_total{route="/test/metrics/{only}",method="GET",status="404"} 1"#), "{text}");
        assert!(text.contains(r#"updraft_http_requests_total{route="/test/metrics/{only}",method="GET",status="200"} 4"#), "{text}");
    }
}
