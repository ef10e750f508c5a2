//! How many metadata bytes an Updraft client downloads per refresh, at 10, 1,000 and 10,000
//! published releases. A real server (in process, on 127.0.0.1:0) and the real client over HTTP.
//!
//! For each size: N releases (two platforms, one channel; all fully rolled out but the newest,
//! at 25%) are committed at once, a new client refreshes from the pinned root (first refresh),
//! refreshes again with nothing new (no change), then one more release (at 10%) is published
//! and it refreshes again (new release: what a device pays per release). All in bytes. For comparison, the size targets metadata would have if
//! it listed every published release.
//!
//! Run: `cargo bench -p updraft-server --bench tuf_metadata_size` (add `-- 10 1000` for other
//! sizes).

use std::sync::Arc;

use time::OffsetDateTime;
use updraft_client::{Client, ClientConfig, Limits};
use updraft_core::tuf::{self, Ed25519Signer, RolloutCustom, TargetCustom, TargetFile, Targets};
use updraft_core::AppId;
use updraft_server::auth::{Caller, Role};
use updraft_server::{ops, RawConfig, Server};
use updraft_store::{ArtifactRow, Changeset, ReleaseRow, ReleaseState};

const PLATFORMS: [&str; 2] = ["linux-x86_64", "windows-x86_64"];

fn release(app: &str, i: usize, rollout_bp: u32) -> ReleaseRow {
    let version = format!("1.{}.{}", i / 1000, i % 1000);
    ReleaseRow {
        app: app.into(),
        version: version.clone(),
        channel: "stable".into(),
        notes: Some(format!("Release {version}: fixes and improvements.")),
        state: ReleaseState::Published,
        rollout_bp,
        salt: format!("{:032x}", i * 7919),
        created_at: format!("2030-01-01T00:00:{:02}Z", i % 60),
        published_at: Some("2030-01-01T00:00:00Z".into()),
        artifacts: PLATFORMS
            .iter()
            .map(|p| ArtifactRow {
                platform: (*p).into(),
                filename: format!("my-app-{version}.tar.gz"),
                sha256: tuf::sha256_hex(format!("{version}/{p}").as_bytes()),
                size: 48_000_000 + i as u64,
            })
            .collect(),
        compat: Default::default(),
    }
}

/// Targets metadata listing every published release (what Updraft did before pruning).
fn unpruned_targets_bytes(app: &AppId, releases: &[ReleaseRow]) -> usize {
    let mut t = Targets::new(1, OffsetDateTime::now_utc() + time::Duration::days(90));
    for r in releases {
        for a in &r.artifacts {
            let custom = TargetCustom {
                app: app.clone(),
                channel: r.channel.parse().unwrap(),
                version: r.version.parse().unwrap(),
                platform: a.platform.parse().unwrap(),
                notes: r.notes.clone(),
                pub_date: r.published_at.clone().unwrap(),
                rollout: RolloutCustom { basis_points: r.rollout_bp, salt: r.salt.clone(), paused: false },
                downgrade_from: vec![],
            };
            t.targets.insert(
                format!("{}/{}/{}", r.version, a.platform, a.filename),
                TargetFile::new(a.size, &a.sha256, Some(custom.to_value())),
            );
        }
    }
    tuf::to_wire(&tuf::sign(t, &[&Ed25519Signer::from_seed([1; 32])]).unwrap()).unwrap().len()
}

async fn measure(n: usize) -> (u64, u64, u64, usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let config =
        RawConfig { data: Some(dir.path().to_owned()), listen: Some("127.0.0.1:0".into()), ..Default::default() }.validate().unwrap();
    let server = Server::start(config).await.unwrap();
    let state = server.state().clone();
    let url = format!("http://{}", server.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let caller = Caller { token_id: "bench".into(), name: "bench".into(), role: Role::Admin, apps: Arc::new(vec![]) };
    let app: AppId = "my-app".parse().unwrap();
    ops::create_app(&state, &caller, &app, None).await.unwrap();

    let mut releases: Vec<ReleaseRow> = (0..n).map(|i| release("my-app", i, if i + 1 == n { 2500 } else { 10_000 })).collect();
    let commit = |releases: Vec<ReleaseRow>, new: Vec<ReleaseRow>| {
        let state = state.clone();
        let app = app.clone();
        async move {
            let metadata = state.repo.sign_targets_change(state.store.as_ref(), &app, &releases).await.unwrap();
            state.store.apply("my-app", &Changeset { releases: new, metadata, audit: None }).await.unwrap();
            ops::rebuild_view(&state, &app).await.unwrap();
        }
    };
    commit(releases.clone(), releases.clone()).await;
    let unpruned = unpruned_targets_bytes(&app, &releases);

    let client_dir = tempfile::tempdir().unwrap();
    let root = std::fs::read(dir.path().join("trust/my-app.root.json")).unwrap();
    let mut client = Client::new(ClientConfig {
        server: url,
        app: app.clone(),
        channel: "stable".parse().unwrap(),
        platform: "linux-x86_64".parse().unwrap(),
        current: "0.1.0".parse().unwrap(),
        trusted_root: root,
        state_dir: client_dir.path().to_owned(),
        client_id: Some("bench-client".into()),
        limits: Limits::default(),
    })
    .unwrap();
    client.refresh().await.unwrap();
    let first = client.last_refresh_bytes();
    client.refresh().await.unwrap();
    let idle = client.last_refresh_bytes();

    let next = release("my-app", n, 1000);
    releases.push(next.clone());
    commit(releases, vec![next]).await;
    client.refresh().await.unwrap();
    let steady = client.last_refresh_bytes();
    let listed = client.trusted().unwrap().targets().unwrap().targets.len();
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    (first, idle, steady, unpruned, listed)
}

fn main() {
    let sizes: Vec<usize> = {
        let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
        if args.is_empty() {
            vec![10, 1_000, 10_000]
        } else {
            args
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!("releases  first refresh  no change  new release  targets listed  targets.json if all releases were listed (bytes)");
    for n in sizes {
        let (first, idle, steady, unpruned, listed) = rt.block_on(measure(n));
        println!("{n:>8}  {first:>13}  {idle:>9}  {steady:>11}  {listed:>14}  {unpruned:>48}");
    }
}
