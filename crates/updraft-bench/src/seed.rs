//! Bulk setup: brings an app to N published releases. Publishing through the API signs new
//! targets metadata per release, and targets metadata lists every release, so reaching 10,000
//! that way costs O(N²) signing and stored metadata (about an hour and many GiB here). This
//! path makes the same library calls as `ops::create_release` — blob upload sessions, release
//! rows, `Repo::sign_targets_change`, one `MetaStore::apply` with an audit event — once for
//! the whole batch. It runs on a stopped server's data directory (or in-process, for the gate).

use std::convert::Infallible;
use std::path::Path;

use anyhow::Context;
use bytes::Bytes;
use updraft_core::{AppId, Version};
use updraft_server::repo::Repo;
use updraft_store::{ArtifactRow, AuditEntry, BlobStore, Changeset, MetaStore, ReleaseRow, ReleaseState, SqliteStore};

/// Rollout of the newest release of a batch: half the clients, so checks exercise the bucket
/// decision and half of them walk on to the previous release.
pub const NEWEST_ROLLOUT_BP: u32 = 5_000;

/// The version of the `n`th release (1-based), the same scheme `run` publishes with.
pub fn version(n: usize) -> String {
    format!("1.0.{n}")
}

pub fn seed_dir(data: &Path, app: &str, total: usize, platform: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let store = SqliteStore::open(&data.join("updraft.db")).await.context("cannot open the database")?;
        store.migrate().await?;
        let blobs = BlobStore::open(&data.join("blobs")).await?;
        let repo = Repo::new(data, None, updraft_server::Config::default().lifetimes);
        let app: AppId = app.parse().map_err(|e| anyhow::anyhow!("app: {e}"))?;
        let added = add_releases(&store, &blobs, &repo, &app, total, platform).await?;
        println!("seeded {added} releases; {app} has {total}");
        Ok(())
    })
}

/// Adds releases `1.0.{k}` until the app has `total`; returns how many were added.
pub async fn add_releases(
    store: &dyn MetaStore,
    blobs: &BlobStore,
    repo: &Repo,
    app: &AppId,
    total: usize,
    platform: &str,
) -> anyhow::Result<usize> {
    anyhow::ensure!(store.get_app(app.as_str()).await?.is_some(), "app {app} does not exist; create it first");
    let mut releases = store.list_releases(app.as_str()).await?;
    let mut taken: std::collections::BTreeSet<Version> = releases.iter().filter_map(|r| r.version.parse().ok()).collect();
    let mut added = Vec::new();
    let mut n = releases.len();
    while releases.len() + added.len() < total {
        n += 1;
        let v = version(n);
        if !taken.insert(v.parse().map_err(|e| anyhow::anyhow!("version {v}: {e}"))?) {
            continue;
        }
        let content = Bytes::from(format!("updraft-bench artifact {app} {v} {platform}\n"));
        let up = blobs.create_upload(content.len() as u64, "bench-seed").await?;
        blobs.append(&up, 0, futures_util::stream::iter([Ok::<_, Infallible>(content)])).await?;
        let done = blobs.finish(&up).await?;
        let now = updraft_store::now_rfc3339();
        added.push(ReleaseRow {
            app: app.to_string(),
            version: v.clone(),
            channel: "stable".into(),
            notes: Some(format!("Release {v}")),
            state: ReleaseState::Published,
            rollout_bp: 10_000,
            salt: updraft_store::random_hex(16),
            created_at: now.clone(),
            published_at: Some(now),
            artifacts: vec![ArtifactRow {
                platform: platform.to_owned(),
                filename: "app.bin".into(),
                sha256: done.sha256,
                size: done.size,
            }],
            compat: Default::default(),
        });
    }
    if let Some(newest) = added.last_mut() {
        newest.rollout_bp = NEWEST_ROLLOUT_BP;
    }
    if added.is_empty() {
        return Ok(0);
    }
    releases.extend(added.iter().cloned());
    let metadata = repo
        .sign_targets_change(store, app, &releases)
        .await
        .map_err(|e| anyhow::anyhow!("signing targets: {} ({})", e.message, e.code))?;
    let audit = AuditEntry {
        actor: "updraft-bench".into(),
        action: "release.create".into(),
        app: Some(app.to_string()),
        detail: serde_json::json!({
            "bulk": true,
            "count": added.len(),
            "first": added.first().map(|r| r.version.clone()),
            "last": added.last().map(|r| r.version.clone()),
        }),
        request_id: None,
    };
    let count = added.len();
    store.apply(app.as_str(), &Changeset { releases: added, metadata, audit: Some(audit) }).await?;
    Ok(count)
}
