//! Interoperability: an independent TUF implementation (awslabs' `tough`) loads an app's
//! repository from the real server, starting from the app's root version 1, follows a key
//! rotation through the root chain, and downloads a target it has verified.
//!
//! One difference is bridged, in the transport below, not in the server: tough 0.18 asks for
//! consistent-snapshot targets as `HASH.{dir/name}` (the digest before the whole target path),
//! while the spec (§5.7.3, "HASH.FILENAME.EXT" for the file name) and Updraft serve
//! `{dir/}HASH.name`. Everything tough checks — signatures, thresholds, versions, expiry,
//! lengths and hashes of metadata and of the target — it checks on the server's bytes as served.

use std::time::Duration;

use futures_util::StreamExt;
use tough::{RepositoryLoader, TargetName, Transport, TransportError, TransportErrorKind};

/// tough's `transport::TransportStream` (not re-exported by 0.18).
type TransportStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<tough::Bytes, TransportError>> + Send>>;

use crate::harness::*;

#[derive(Debug, Clone)]
struct Http {
    client: reqwest::Client,
    /// `…/tuf/APP/targets/`: URLs under it get the spec's consistent-snapshot file name.
    targets_base: String,
}

/// `HASH.a/b/name` (tough) → `a/b/HASH.name` (spec).
fn spec_target_path(tough_name: &str) -> String {
    match (tough_name.split_once('.'), tough_name.rsplit_once('/')) {
        (Some((hash, rest)), Some(_)) if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            let (dir, name) = rest.rsplit_once('/').expect("has a directory");
            format!("{dir}/{hash}.{name}")
        }
        _ => tough_name.to_owned(),
    }
}

#[tough::async_trait]
impl Transport for Http {
    async fn fetch(&self, url: url::Url) -> Result<TransportStream, TransportError> {
        let mut target = url.to_string();
        if let Some(rest) = target.strip_prefix(&self.targets_base) {
            target = format!("{}{}", self.targets_base, spec_target_path(rest));
        }
        let resp =
            self.client.get(&target).send().await.map_err(|e| TransportError::new_with_cause(TransportErrorKind::Other, &target, e))?;
        match resp.status().as_u16() {
            200 => {}
            403 | 404 => return Err(TransportError::new(TransportErrorKind::FileNotFound, &target)),
            _ => return Err(TransportError::new(TransportErrorKind::Other, &target)),
        }
        let url_for_errors = target.clone();
        let stream = resp
            .bytes_stream()
            .map(move |chunk| chunk.map_err(|e| TransportError::new_with_cause(TransportErrorKind::Other, &url_for_errors, e)));
        Ok(Box::pin(stream))
    }
}

async fn load(server_url: &str, root: &[u8], datastore: &std::path::Path) -> tough::error::Result<tough::Repository> {
    let metadata = url::Url::parse(&format!("{server_url}/tuf/demo/metadata/")).unwrap();
    let targets = url::Url::parse(&format!("{server_url}/tuf/demo/targets/")).unwrap();
    let transport =
        Http { client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(), targets_base: targets.to_string() };
    RepositoryLoader::new(&root, metadata, targets).transport(transport).datastore(datastore).load().await
}

async fn read(repo: &tough::Repository, name: &str) -> tough::error::Result<Vec<u8>> {
    let mut stream = repo.read_target(&TargetName::new(name).unwrap()).await?.expect("the target is listed");
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

#[test]
fn tough_verifies_the_repository_and_a_target() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    let payload = bytes(300_000, 21);
    publish(&server, dir.path(), "demo", "1.1.0", "linux-x86_64", &payload, &["--rollout", "40"]);
    // Rotations: tough must walk root v1 → v3 and accept the new online keys.
    server.cli(&["keys", "rotate", "demo", "--role", "timestamp"]).ok();
    server.cli(&["keys", "rotate", "demo", "--role", "targets", "--generate", "2", "--threshold", "2"]).ok();
    // Partly rolled out, so 1.1.0 stays live (listed) too.
    publish(&server, dir.path(), "demo", "1.2.0", "linux-x86_64", &bytes(1000, 22), &["--rollout", "30"]);
    let root_v1 = std::fs::read(data.join("trust/demo.root.json")).unwrap();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = tempfile::tempdir().unwrap();
        let repo = load(&server.url, &root_v1, store.path()).await.expect("tough loads and verifies the repository");
        assert_eq!(u64::from(repo.root().signed.version), 3, "followed the root chain");
        assert_eq!(repo.targets().signed.targets.len(), 2, "{:?}", repo.targets().signed.targets.keys());
        let name = "1.1.0/linux-x86_64/demo-1.1.0-linux-x86_64.bin";
        let target = &repo.targets().signed.targets[&TargetName::new(name).unwrap()];
        assert_eq!(target.custom["channel"], "stable");
        assert_eq!(target.custom["rollout"]["basis_points"], 4000);
        assert_eq!(read(&repo, name).await.expect("tough downloads and verifies the target"), payload);

        // tough refuses the target once its bytes on the server no longer match.
        crate::backend::Storage::of(&data).corrupt_blob(&sha256_hex(&payload), 4242);
        assert!(read(&repo, name).await.is_err(), "tough must refuse tampered bytes");

        // And it refuses the repository when started from another app's root.
        server.cli(&["app", "create", "other"]).ok();
        let other_root = std::fs::read(data.join("trust/other.root.json")).unwrap();
        let store = tempfile::tempdir().unwrap();
        assert!(load(&server.url, &other_root, store.path()).await.is_err(), "tough must refuse metadata signed by untrusted keys");
    });
}

#[test]
fn tough_layout_is_mapped_to_the_spec_layout() {
    let h = "a".repeat(64);
    assert_eq!(spec_target_path(&format!("{h}.1.1.0/linux-x86_64/app.bin")), format!("1.1.0/linux-x86_64/{h}.app.bin"));
    assert_eq!(spec_target_path("1.1.0/linux-x86_64/app.bin"), "1.1.0/linux-x86_64/app.bin");
}
