//! Shared server state: the stores, the TUF repository service, the update views and per-app
//! locks. Cloning is cheap (one `Arc`).

use std::collections::HashMap;
use std::sync::Arc;

use updraft_store::{BlobStore, MetaStore};

use crate::config::Config;
use crate::repo::Repo;
use crate::view::Views;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub store: Arc<dyn MetaStore>,
    pub blobs: Arc<BlobStore>,
    pub views: Views,
    pub repo: Repo,
    /// Base URL for links in answers, without a trailing slash.
    pub public_url: String,
    pub limits: crate::ratelimit::Limits,
    /// Crash and session ingest: project cache, per-key limit, the batching writer.
    pub ingest: crate::ingest::Ingest,
    app_locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(config: Config, store: Arc<dyn MetaStore>, blobs: Arc<BlobStore>, repo: Repo, public_url: String) -> Self {
        let rate = |r: u64, burst: f64| (r as f64, burst.max(r as f64 * 2.0));
        let limits = crate::ratelimit::Limits {
            public: {
                let (r, b) = rate(config.public_rate_limit, 10.0);
                crate::ratelimit::Limiter::new(r, b)
            },
            admin: {
                let (r, b) = rate(config.admin_rate_limit, 10.0);
                crate::ratelimit::Limiter::new(r, b)
            },
            auth_failures: {
                let (r, b) = rate(config.auth_failure_rate_limit, 20.0);
                crate::ratelimit::Limiter::new(r, b)
            },
        };
        let ingest = crate::ingest::Ingest::new(config.ingest);
        AppState(Arc::new(Inner {
            config,
            store,
            blobs,
            views: Views::default(),
            repo,
            public_url,
            limits,
            ingest,
            app_locks: Default::default(),
        }))
    }

    /// The client's address: the peer, or the last `X-Forwarded-For` hop when configured.
    pub fn client_addr(&self, parts: &axum::http::request::Parts) -> Option<std::net::IpAddr> {
        if self.config.trust_forwarded_for {
            let hop = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|s| s.trim().parse().ok())
                .next_back();
            if hop.is_some() {
                return hop;
            }
        }
        parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip())
    }

    /// The lock that serializes every change to one app's releases and TUF metadata, so
    /// metadata versions only ever increase by one and never race.
    pub fn app_lock(&self, app: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.app_locks.lock().expect("app locks").entry(app.to_owned()).or_default().clone()
    }
}
