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
    pub blobs: BlobStore,
    pub views: Views,
    pub repo: Repo,
    /// Base URL for links in answers, without a trailing slash.
    pub public_url: String,
    app_locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(config: Config, store: Arc<dyn MetaStore>, blobs: BlobStore, repo: Repo, public_url: String) -> Self {
        AppState(Arc::new(Inner { config, store, blobs, views: Views::default(), repo, public_url, app_locks: Default::default() }))
    }

    /// The lock that serializes every change to one app's releases and TUF metadata, so
    /// metadata versions only ever increase by one and never race.
    pub fn app_lock(&self, app: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.app_locks.lock().expect("app locks").entry(app.to_owned()).or_default().clone()
    }
}
