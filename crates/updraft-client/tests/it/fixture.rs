//! Test fixtures: a TUF repository built in-test with `updraft_core::tuf`, served by a tiny
//! axum file server on 127.0.0.1:0 that can be made to misbehave.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use time::{Duration, OffsetDateTime};
use updraft_client::{ClientConfig, Limits};
use updraft_core::tuf::{self, Ed25519Signer, RolloutCustom, Root, RootKeys, Signer, TargetCustom, TargetFile, Targets};
use updraft_core::AppId;

/// What the file server holds and how it behaves.
#[derive(Default)]
pub struct Served {
    /// URL path without the leading `/` → body.
    pub files: HashMap<String, Vec<u8>>,
    /// Answer `Range` requests with the whole file (200), like a server without range support.
    pub ignore_range: bool,
    /// Send bodies as a chunked stream with no Content-Length, so only the client's running
    /// count can stop an endless body.
    pub chunked: bool,
    /// Slow retrieval: send each body `drip.0` bytes at a time, waiting `drip.1` between
    /// chunks (a server, or a man in the middle, holding the client on a trickle).
    pub drip: Option<(usize, std::time::Duration)>,
    /// Every request: (path, Range header).
    pub log: Vec<(String, Option<String>)>,
}

pub struct Server {
    pub base: String,
    pub state: Arc<Mutex<Served>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub async fn start() -> Server {
        let state = Arc::new(Mutex::new(Served::default()));
        let app = axum::Router::new().fallback(serve).with_state(state.clone());
        // Bound before the task starts, so requests queue until it serves: no readiness wait.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server { base, state, task }
    }

    pub fn served(&self) -> std::sync::MutexGuard<'_, Served> {
        self.state.lock().unwrap()
    }

    pub fn put(&self, path: &str, body: Vec<u8>) {
        self.served().files.insert(path.to_owned(), body);
    }
}

async fn serve(State(state): State<Arc<Mutex<Served>>>, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/').to_owned();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut st = state.lock().unwrap();
    st.log.push((path.clone(), range.clone()));
    let Some(body) = st.files.get(&path).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Some((chunk, every)) = st.drip {
        let chunks: Vec<Vec<u8>> = body.chunks(chunk).map(<[u8]>::to_vec).collect();
        let stream = futures_util::stream::iter(chunks).then(move |c| async move {
            tokio::time::sleep(every).await;
            Ok::<_, std::io::Error>(c)
        });
        return axum::body::Body::from_stream(stream).into_response();
    }
    match range {
        Some(r) if !st.ignore_range => {
            let start: usize = r.strip_prefix("bytes=").and_then(|r| r.strip_suffix('-')).and_then(|n| n.parse().ok()).unwrap_or(0);
            if start >= body.len() {
                return StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            }
            let content_range = format!("bytes {start}-{}/{}", body.len() - 1, body.len());
            (StatusCode::PARTIAL_CONTENT, [(header::CONTENT_RANGE, content_range)], body[start..].to_vec()).into_response()
        }
        _ if st.chunked => {
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body.chunks(16 * 1024).map(|c| Ok(c.to_vec())).collect();
            axum::body::Body::from_stream(futures_util::stream::iter(chunks)).into_response()
        }
        _ => body.into_response(),
    }
}

/// One target in the repository.
pub struct Artifact {
    pub path: String,
    pub bytes: Vec<u8>,
    pub custom: TargetCustom,
}

/// An app's TUF repository with one key per role.
pub struct Repo {
    pub app: AppId,
    pub root_key: Ed25519Signer,
    pub targets_key: Ed25519Signer,
    pub snapshot_key: Ed25519Signer,
    pub timestamp_key: Ed25519Signer,
    pub root: Root,
    /// Wire bytes of each root version, index 0 = version 1.
    pub roots: Vec<Vec<u8>>,
    /// Version of the last published timestamp, snapshot and targets.
    pub version: u64,
    pub timestamp_expires: OffsetDateTime,
    pub artifacts: Vec<Artifact>,
}

pub fn in_a_day() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::days(1)
}

impl Repo {
    pub fn new(app: &str) -> Repo {
        let (r, t, s, ts) = (seed(1), seed(2), seed(3), seed(4));
        let keys = RootKeys {
            root: vec![r.public_key()],
            targets: vec![t.public_key()],
            snapshot: vec![s.public_key()],
            timestamp: vec![ts.public_key()],
        };
        let root = tuf::new_root(&keys, tuf::Thresholds::default(), 1, in_a_day() + Duration::days(365)).unwrap();
        let bytes = tuf::to_wire(&tuf::sign(root.clone(), &[&r]).unwrap()).unwrap();
        Repo {
            app: app.parse().unwrap(),
            root_key: r,
            targets_key: t,
            snapshot_key: s,
            timestamp_key: ts,
            root,
            roots: vec![bytes],
            version: 0,
            timestamp_expires: in_a_day(),
            artifacts: Vec::new(),
        }
    }

    /// The pinned root a client ships with.
    pub fn pinned_root(&self) -> Vec<u8> {
        self.roots[0].clone()
    }

    /// Adds a target `{version}/{platform}/app.bin` for `app` on `stable`, fully rolled out.
    pub fn add(&mut self, app: &str, version: &str, platform: &str, bytes: &[u8]) -> &mut TargetCustom {
        let custom = TargetCustom {
            app: app.parse().unwrap(),
            channel: "stable".parse().unwrap(),
            version: version.parse().unwrap(),
            platform: platform.parse().unwrap(),
            notes: Some(format!("release {version}\nwith notes")),
            pub_date: "2030-01-01T00:00:00Z".into(),
            rollout: RolloutCustom { basis_points: 10_000, salt: format!("salt-{version}"), paused: false },
            downgrade_from: vec![],
        };
        self.artifacts.push(Artifact { path: format!("{version}/{platform}/app.bin"), bytes: bytes.to_vec(), custom });
        &mut self.artifacts.last_mut().unwrap().custom
    }

    /// Replaces the timestamp key in a new root version, signed by the (unchanged) root key.
    pub fn rotate_timestamp_key(&mut self, new_key: Ed25519Signer) {
        let mut root = self.root.clone();
        root.version += 1;
        root.keys.remove(&self.timestamp_key.key_id());
        root.keys.insert(new_key.key_id(), new_key.public_key());
        root.roles.timestamp.keyids = vec![new_key.key_id()];
        self.roots.push(tuf::to_wire(&tuf::sign(root.clone(), &[&self.root_key]).unwrap()).unwrap());
        self.root = root;
        self.timestamp_key = new_key;
    }

    fn meta_path(&self, name: &str) -> String {
        format!("tuf/{}/metadata/{name}", self.app)
    }

    /// Signs a new version of targets, snapshot and timestamp and puts everything on the
    /// server. Returns the timestamp's wire bytes.
    pub fn publish(&mut self, srv: &Server) -> Vec<u8> {
        self.version += 1;
        let v = self.version;
        let mut targets = Targets::new(v, in_a_day());
        for a in &self.artifacts {
            let sha = tuf::sha256_hex(&a.bytes);
            targets.targets.insert(a.path.clone(), TargetFile::new(a.bytes.len() as u64, &sha, Some(a.custom.to_value())));
            srv.put(&format!("tuf/{}/targets/{}", self.app, tuf::consistent_target_name(&a.path, &sha)), a.bytes.clone());
        }
        let targets = tuf::to_wire(&tuf::sign(targets, &[&self.targets_key]).unwrap()).unwrap();
        let snapshot = tuf::snapshot_for(&targets, v, v, in_a_day());
        let snapshot = tuf::to_wire(&tuf::sign(snapshot, &[&self.snapshot_key]).unwrap()).unwrap();
        let timestamp = tuf::timestamp_for(&snapshot, v, v, self.timestamp_expires);
        let timestamp = tuf::to_wire(&tuf::sign(timestamp, &[&self.timestamp_key]).unwrap()).unwrap();
        for (i, root) in self.roots.iter().enumerate() {
            srv.put(&self.meta_path(&format!("{}.root.json", i + 1)), root.clone());
        }
        srv.put(&self.meta_path(&format!("{v}.targets.json")), targets);
        srv.put(&self.meta_path(&format!("{v}.snapshot.json")), snapshot);
        srv.put(&self.meta_path("timestamp.json"), timestamp.clone());
        timestamp
    }

    /// URL path of an artifact's file on the server.
    pub fn target_file_path(&self, target_path: &str) -> String {
        let a = self.artifacts.iter().find(|a| a.path == target_path).unwrap();
        format!("tuf/{}/targets/{}", self.app, tuf::consistent_target_name(&a.path, &tuf::sha256_hex(&a.bytes)))
    }
}

pub fn seed(n: u8) -> Ed25519Signer {
    Ed25519Signer::from_seed([n; 32])
}

/// A client config for `repo` on `srv`, running 1.0.0 on linux-x86_64 stable.
pub fn config(srv: &Server, repo: &Repo, state_dir: &Path) -> ClientConfig {
    ClientConfig {
        server: srv.base.clone(),
        app: repo.app.clone(),
        channel: "stable".parse().unwrap(),
        platform: "linux-x86_64".parse().unwrap(),
        current: "1.0.0".parse().unwrap(),
        trusted_root: repo.pinned_root(),
        state_dir: state_dir.to_owned(),
        client_id: Some("client-1".into()),
        limits: Limits::default(),
    }
}
