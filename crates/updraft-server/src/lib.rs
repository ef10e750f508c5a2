//! The Updraft server: an axum application over the stores. [`Server::start`] opens storage,
//! bootstraps the first admin token, binds, and serves until the shutdown future resolves
//! (in-flight requests finish first).
//!
//! ```no_run
//! # async fn demo() -> Result<(), updraft_server::StartError> {
//! let config = updraft_server::Config::default();
//! let server = updraft_server::Server::start(config).await?;
//! println!("listening on {}", server.local_addr());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod cluster;
pub mod compat;
pub mod config;
pub mod error;
mod extract;
mod http_blob;
pub mod http_serve;
pub mod ingest;
pub mod key_ops;
pub mod keystore;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod ratelimit;
pub mod repo;
pub mod rollouts;
mod routes;
pub mod state;
pub mod view;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{HeaderName, StatusCode};
use axum::routing::{get, patch, post, put};
use axum::Router;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};

pub use config::{Config, RawConfig};
use error::ApiError;
use state::AppState;
use updraft_store::{MetaStore, TokenRow};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("cannot use the data directory {path}: {source}")]
    DataDir { path: std::path::PathBuf, source: std::io::Error },
    #[error("storage: {0}")]
    Store(#[from] updraft_store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Other(String),
}

/// A started server, bound and ready to [`run`](Server::run).
pub struct Server {
    state: AppState,
    listener: tokio::net::TcpListener,
    /// The bootstrap admin token, when this start created it (printed once by the CLI).
    pub bootstrap_token: Option<String>,
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    let json_limit = state.config.max_json_bytes;
    let admin = Router::new()
        .route("/apps", post(routes::admin::create_app).get(routes::admin::list_apps))
        .route("/apps/{app}", get(routes::admin::get_app))
        .route("/apps/{app}/releases", post(routes::admin::create_release).get(routes::admin::list_releases))
        .route("/apps/{app}/releases/{version}", get(routes::admin::get_release))
        .route("/apps/{app}/releases/{version}/publish", post(routes::admin::publish_release))
        .route("/apps/{app}/releases/{version}/rollout", put(routes::admin::set_rollout))
        .route("/apps/{app}/releases/{version}/pause", post(routes::admin::pause_rollout))
        .route("/apps/{app}/releases/{version}/resume", post(routes::admin::resume_rollout))
        .route("/apps/{app}/releases/{version}/yank", post(routes::admin::yank_release))
        .route("/uploads", post(routes::admin::create_upload))
        .route("/uploads/{id}", patch(routes::admin::append_upload).get(routes::admin::get_upload))
        .route("/tokens", post(routes::admin::create_token).get(routes::admin::list_tokens))
        .route("/tokens/{id}", axum::routing::delete(routes::admin::revoke_token))
        .route("/audit", get(routes::admin::list_audit))
        .route("/apps/{app}/releases/{version}/schedule", put(routes::rollouts::set_schedule).delete(routes::rollouts::delete_schedule))
        .route("/apps/{app}/releases/{version}/health", get(routes::rollouts::get_rollout_status))
        .route("/apps/{app}/health-rules", get(routes::rollouts::get_health_rules).put(routes::rollouts::set_health_rules))
        .route("/apps/{app}/dsn", get(ingest::admin::get_dsn))
        .route("/apps/{app}/retention", put(ingest::admin::set_retention))
        .route("/apps/{app}/health", get(ingest::admin::get_health))
        .route("/apps/{app}/issues", get(ingest::admin::list_issues))
        .route("/apps/{app}/issues/{id}/events", get(ingest::admin::list_events))
        .route("/apps/{app}/privacy/erase", post(ingest::admin::erase))
        .route("/apps/{app}/keys", get(routes::keys::list_keys))
        .route("/apps/{app}/keys/rotate", post(routes::keys::rotate_keys))
        .route("/apps/{app}/keys/root/export", post(routes::keys::export_root))
        .route("/apps/{app}/keys/root/import", post(routes::keys::import_root))
        .layer(axum::extract::DefaultBodyLimit::max(json_limit));
    let inner = Router::new()
        .route("/v1/update/{app}/{channel}/{platform}", get(routes::public::check_update))
        .route("/v1/blobs/{sha256}", get(routes::public::get_blob))
        .route("/tuf/{app}/metadata/{file}", get(routes::public::get_metadata))
        .route("/tuf/{app}/targets/{*path}", get(routes::public::get_target))
        .route("/api/{project_id}/envelope/", post(ingest::envelope_endpoint))
        .route("/api/{project_id}/store/", post(ingest::store_endpoint))
        .route("/compat/tauri/{app}/{channel}/{target}/{arch}/{current_version}", get(compat::tauri::check))
        .route("/compat/tauri/{app}/{channel}/latest.json", get(compat::tauri::latest_json))
        .route("/compat/tauri/{app}/minisign.pub", get(compat::tauri::pubkey))
        .route("/compat/electron/{app}/{channel}/{file}", get(compat::electron::channel_file))
        .route("/compat/velopack/{app}/{file}", get(compat::velopack::get))
        .route("/compat/sparkle/{app}/{channel}/appcast.xml", get(compat::sparkle::appcast))
        .route("/compat/sparkle/{app}/ed25519.pub", get(compat::sparkle::pubkey))
        .route("/compat/files/{app}/{version}/{platform}/{file}", get(compat::routes::file))
        .route("/healthz", get(routes::public::healthz))
        .route("/readyz", get(routes::public::readyz))
        .route("/metrics", get(routes::public::metrics))
        .route("/openapi.json", get(|| async { ([(axum::http::header::CONTENT_TYPE, "application/json")], openapi::document()) }))
        .nest("/v1/admin", admin)
        .fallback(|| async { ApiError::not_found("route_not_found", "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not accept that method")
        })
        .layer(axum::middleware::from_fn(metrics::track_requests))
        .with_state(state.clone());
    // Middleware for every request wraps the router once, instead of each route (which clones
    // the boxed layer stack on every request).
    let svc = tower::ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(X_REQUEST_ID, CounterRequestId))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(axum::middleware::from_fn(scope_request_id))
        .layer(axum::middleware::from_fn_with_state(state, guard))
        .service(inner);
    Router::new().fallback_service(svc)
}

/// The setting a restore holds while its rows are in the database but its metadata is not yet
/// re-signed (`updraft backup restore`); a server does not start while it is set.
pub const RESTORE_PENDING: &str = "restore_pending";

impl Server {
    pub async fn start(config: Config) -> Result<Server, StartError> {
        let data = config.data_dir.clone();
        std::fs::create_dir_all(&data).map_err(|source| StartError::DataDir { path: data.clone(), source })?;
        let store = config.database.open().await?;
        store.migrate().await?;
        if store.shared() && config.key_passphrase.is_none() {
            tracing::warn!("the database is shared and holds the signing keys; without UPDRAFT_KEY_PASSPHRASE they are stored unencrypted (docs/keys.md)");
        }
        if let Some(when) = store.get_setting(RESTORE_PENDING).await? {
            return Err(StartError::Other(format!(
                "a restore started at {when} has not finished: run `updraft backup restore` again with the same archive to finish it (docs/runbook.md)"
            )));
        }
        let blobs = std::sync::Arc::new(config.blobs.open().await?);
        if config.blob_redirect_secs > 0 && !blobs.shared() {
            tracing::warn!("blob_redirect_secs is set but blobs are local files: downloads are streamed, not redirected");
        }
        let repo = repo::Repo::new(&data, config.key_passphrase.clone(), config.lifetimes)
            .with_pkcs11(keystore::Pkcs11Defaults { module: config.pkcs11_module.clone(), pin: config.pkcs11_pin.clone() })
            .with_marks(blobs.clone());
        let listener =
            tokio::net::TcpListener::bind(config.listen).await.map_err(|source| StartError::Bind { addr: config.listen, source })?;
        let local = listener.local_addr().map_err(|source| StartError::Bind { addr: config.listen, source })?;
        let public_url = config.public_url.clone().unwrap_or_else(|| format!("http://{local}"));
        metrics::handle();
        for app in store.list_apps().await? {
            let id: updraft_core::AppId = app.id.parse().map_err(|e| StartError::Other(format!("stored app id: {e}")))?;
            if store.shared() {
                cluster::pull_keys_into(store.as_ref(), &repo, &id)
                    .await
                    .map_err(|e| StartError::Other(format!("app {id}: {}", e.message)))?;
            }
            repo.check_keys(&id).map_err(|e| StartError::Other(format!("app {id}: {e}")))?;
        }
        let bootstrap_token = bootstrap(store.as_ref(), config.bootstrap_token.as_deref()).await?;
        let state = AppState::new(config, store, blobs, repo, public_url);
        ops::rebuild_all_views(&state).await.map_err(|e| StartError::Other(format!("loading releases: {}", e.message)))?;
        Ok(Server { state, listener, bootstrap_token })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartError> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let health_every = Duration::from_secs(self.state.config.health_interval_secs);
        let health = tokio::spawn(rollouts::run_loop(self.state.clone(), health_every, stop_rx.clone()));
        let watcher = tokio::spawn(cluster::watch(self.state.clone(), stop_rx.clone()));
        let maintenance = tokio::spawn(maintenance_loop(self.state.clone(), stop_rx));
        let app = router(self.state.clone());
        let header_timeout = Duration::from_secs(self.state.config.header_read_timeout_secs);
        http_serve::serve(self.listener, app, header_timeout, async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
        })
        .await;
        let _ = stop_tx.send(true);
        let _ = maintenance.await;
        let _ = health.await;
        let _ = watcher.await;
        Ok(())
    }
}

/// Makes the request id (set by the outer layer) available to error messages.
async fn scope_request_id(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let id = req.headers().get(X_REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("none").to_owned();
    error::REQUEST_ID.scope(id, next.run(req)).await
}

/// The public rate limit (per client address) and the request timeout. Upload bodies stream
/// for as long as they take, so the timeout does not apply to them; downloads answer at once
/// and stream afterwards, outside it.
async fn guard(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = req.uri().path();
    let is_admin = path.starts_with("/v1/admin/");
    if !is_admin {
        if let Some(limit) = &state.limits.public {
            let (parts, body) = req.into_parts();
            if let Some(addr) = state.client_addr(&parts) {
                if let Err(wait) = limit.check(&addr, std::time::Instant::now()) {
                    return ApiError::too_many_requests(wait).into_response();
                }
            }
            return timed(&state, axum::extract::Request::from_parts(parts, body), next).await;
        }
    }
    let is_upload_body = req.method() == axum::http::Method::PATCH && path.starts_with("/v1/admin/uploads/");
    if is_upload_body {
        return next.run(req).await;
    }
    timed(&state, req, next).await
}

async fn timed(state: &AppState, req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(Duration::from_secs(state.config.request_timeout_secs), next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "request_timeout", "the request took too long; try again").into_response(),
    }
}

/// Creates the first admin token on a fresh install. Returns the secret when it was created
/// here from a random value (the caller prints it once); nothing is returned otherwise.
async fn bootstrap(store: &dyn MetaStore, from_env: Option<&str>) -> Result<Option<String>, StartError> {
    // Instances starting together on a new shared database: one bootstraps, the others wait.
    let _lock = store.lock_app("(bootstrap)").await?;
    if store.get_setting("bootstrapped").await?.is_some() {
        return Ok(None);
    }
    let secret = from_env.map(str::to_owned).unwrap_or_else(auth::new_secret);
    let row = TokenRow {
        id: updraft_store::random_hex(8),
        name: "bootstrap-admin".into(),
        hash: auth::hash_secret(&secret),
        role: "admin".into(),
        apps: vec![],
        created_at: updraft_store::now_rfc3339(),
        expires_at: None,
        revoked_at: None,
    };
    let event = updraft_store::AuditEntry {
        actor: "system".into(),
        action: "token.bootstrap".into(),
        app: None,
        detail: serde_json::json!({"id": row.id}),
        request_id: None,
    };
    store.insert_token(&row, Some(&event)).await?;
    store.init_setting("bootstrapped", &updraft_store::now_rfc3339()).await?;
    Ok(if from_env.is_some() { None } else { Some(secret) })
}

/// Background upkeep: re-sign metadata before it expires, delete abandoned uploads.
async fn maintenance_loop(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let every = Duration::from_secs(state.config.maintenance_interval_secs);
    loop {
        match ops::refresh_expiring_metadata(&state, time::OffsetDateTime::now_utc()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(apps = n, "re-signed expiring TUF metadata"),
            Err(e) => tracing::error!(error = %e.message, "metadata refresh failed"),
        }
        state.limits.sweep();
        state.ingest.sweep();
        match ingest::admin::apply_retention(&state, time::OffsetDateTime::now_utc()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "deleted crash and session data past retention"),
            Err(e) => tracing::error!(error = %e, "retention pass failed"),
        }
        if let Err(e) = state.blobs.sweep_stale_uploads(24 * 3600).await {
            tracing::warn!(error = %e, "stale upload sweep failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Request ids without a system call per request: a random per-process prefix and a counter.
#[derive(Clone, Copy)]
struct CounterRequestId;

impl tower_http::request_id::MakeRequestId for CounterRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<tower_http::request_id::RequestId> {
        static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let prefix = *PREFIX.get_or_init(|| {
            let mut b = [0u8; 8];
            let _ = getrandom::getrandom(&mut b);
            u64::from_le_bytes(b)
        });
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut buf = [0u8; 33];
        let text = format_id(prefix, n, &mut buf);
        axum::http::HeaderValue::from_str(text).ok().map(tower_http::request_id::RequestId::new)
    }
}

fn format_id(prefix: u64, n: u64, buf: &mut [u8; 33]) -> &str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in 0..16 {
        buf[i] = HEX[((prefix >> (60 - 4 * i)) & 0xf) as usize];
        buf[17 + i] = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
    buf[16] = b'-';
    std::str::from_utf8(&buf[..]).unwrap_or("")
}
