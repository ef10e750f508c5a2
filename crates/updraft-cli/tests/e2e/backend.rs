//! The storage backends the suite runs against. PostgreSQL is reached at
//! `UPDRAFT_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/postgres`, which
//! `scripts/services.sh` makes reachable); a test that needs it and cannot reach it fails.

/// A fresh, empty PostgreSQL database; returns its URL.
pub fn pg_database() -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(updraft_store::create_test_database("updraft_e2e"))
        .unwrap_or_else(|e| panic!("PostgreSQL must be reachable for this test (run scripts/services.sh): {e}"))
}

/// Runs one SQL statement with `psql`; returns its unaligned output.
pub fn psql(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql").args(["-At", "-d", url, "-c", sql]).output().expect("psql is installed");
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Which storage the suite's servers use: `UPDRAFT_E2E_BACKEND=postgres-s3` runs every server
/// on its own PostgreSQL database and its own bucket on the S3-compatible server at
/// `UPDRAFT_TEST_S3` (`scripts/services.sh` starts one); unset, the embedded default (SQLite and
/// files in the data directory).
pub fn shared_backend() -> bool {
    match std::env::var("UPDRAFT_E2E_BACKEND").as_deref() {
        Ok("postgres-s3") => true,
        Ok("" | "embedded") | Err(_) => false,
        Ok(other) => panic!("UPDRAFT_E2E_BACKEND={other:?}: expected postgres-s3 or embedded"),
    }
}

/// The S3-compatible endpoint for tests; a test that needs it and finds none fails.
pub fn s3_endpoint() -> String {
    std::env::var("UPDRAFT_TEST_S3").unwrap_or_else(|_| {
        panic!("UPDRAFT_TEST_S3 is not set: run the tests through scripts/test.sh, or source scripts/services.sh first")
    })
}

/// A new, empty bucket on the test S3 server; returns its name.
pub fn s3_bucket() -> String {
    let name = format!(
        "updraft-e2e-{}",
        crate::harness::sha256_hex(format!("{:?}{}", std::time::SystemTime::now(), std::process::id()).as_bytes())[..12].to_owned()
    );
    let resp = crate::harness::http()
        .put(format!("{}/{name}", s3_endpoint()))
        .send()
        .unwrap_or_else(|e| panic!("S3 test server unreachable: {e}"));
    assert!(resp.status().is_success(), "creating bucket {name}: {}", resp.status());
    name
}

/// Environment for a server on PostgreSQL + S3: `database` and `bucket` (with a prefix).
pub fn shared_env(database: &str, bucket: &str) -> Vec<(&'static str, String)> {
    vec![
        ("UPDRAFT_DATABASE", database.to_owned()),
        ("UPDRAFT_BLOBS", format!("s3://{bucket}/blobs")),
        ("AWS_ENDPOINT_URL", s3_endpoint()),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "updraft-test".into()),
        ("AWS_SECRET_ACCESS_KEY", "updraft-test-secret".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

/// The storage a harness server on `data` uses when the suite runs on PostgreSQL + S3: made
/// once per data directory (a restarted server finds its database and bucket again) and
/// remembered beside it. `None` for the embedded backend.
pub fn backend_env(data: &std::path::Path) -> Option<Vec<(&'static str, String)>> {
    if !shared_backend() {
        return None;
    }
    let memo = data.with_extension("backend");
    let (db, bucket) = match std::fs::read_to_string(&memo) {
        Ok(text) => {
            let (db, bucket) = text.split_once('\n').expect("backend memo");
            (db.to_owned(), bucket.trim().to_owned())
        }
        Err(_) => {
            let (db, bucket) = (pg_database(), s3_bucket());
            std::fs::write(&memo, format!("{db}\n{bucket}\n")).expect("backend memo");
            (db, bucket)
        }
    };
    Some(shared_env(&db, &bucket))
}

/// Where a harness server on `data` keeps its state, for tests that reach under the API (an
/// intruder editing the database, a disk flipping a byte, a crash mid-upload).
pub enum Storage {
    /// SQLite and files in the data directory.
    Embedded(std::path::PathBuf),
    /// A PostgreSQL database and a bucket (blobs under `blobs/`).
    Shared { database: String, bucket: String },
}

impl Storage {
    pub fn of(data: &std::path::Path) -> Storage {
        match std::fs::read_to_string(data.with_extension("backend")) {
            Ok(text) => {
                let (db, bucket) = text.split_once('\n').expect("backend memo");
                Storage::Shared { database: db.to_owned(), bucket: bucket.trim().to_owned() }
            }
            Err(_) => Storage::Embedded(data.to_owned()),
        }
    }

    /// Runs one SQL statement against the live database.
    pub fn sql(&self, statement: &str) {
        match self {
            Storage::Embedded(data) => {
                let status = std::process::Command::new("python3")
                    .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()"])
                    .arg(data.join("updraft.db"))
                    .arg(statement)
                    .status()
                    .expect("python3 runs");
                assert!(status.success(), "{statement}");
            }
            Storage::Shared { database, .. } => {
                psql(database, statement);
            }
        }
    }

    fn object_url(bucket: &str, key: &str) -> String {
        format!("{}/{bucket}/{key}", s3_endpoint())
    }

    fn blob_location(&self, sha: &str) -> (Option<std::path::PathBuf>, Option<String>) {
        match self {
            Storage::Embedded(data) => (Some(data.join("blobs/sha256").join(&sha[..2]).join(sha)), None),
            Storage::Shared { bucket, .. } => (None, Some(Self::object_url(bucket, &format!("blobs/sha256/{}/{sha}", &sha[..2])))),
        }
    }

    /// Flips one byte of a stored blob, in place (same length).
    pub fn corrupt_blob(&self, sha: &str, at: usize) {
        match self.blob_location(sha) {
            (Some(path), _) => {
                let mut b = std::fs::read(&path).unwrap();
                b[at] ^= 0xff;
                std::fs::write(&path, b).unwrap();
            }
            _ => {
                let Storage::Shared { bucket, .. } = self else { unreachable!() };
                let key = object_store::path::Path::from(format!("blobs/sha256/{}/{sha}", &sha[..2]));
                let bucket = bucket.clone();
                // Its own thread and runtime: callers may be inside an async test.
                std::thread::spawn(move || {
                    use object_store::ObjectStore;
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    let s3 = object_store::aws::AmazonS3Builder::new()
                        .with_bucket_name(&bucket)
                        .with_endpoint(s3_endpoint())
                        .with_allow_http(true)
                        .with_region("us-east-1")
                        .with_access_key_id("updraft-test")
                        .with_secret_access_key("updraft-test-secret")
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        let mut b = s3.get(&key).await.unwrap().bytes().await.unwrap().to_vec();
                        b[at] ^= 0xff;
                        s3.put(&key, b.into()).await.unwrap();
                    });
                })
                .join()
                .unwrap();
            }
        }
    }

    fn list(bucket: &str, query: &str) -> String {
        let url = format!("{}/{bucket}?{query}", s3_endpoint());
        crate::harness::http().get(url).send().unwrap().error_for_status().unwrap().text().unwrap()
    }

    /// Content-addressed blobs stored (their names).
    pub fn stored_blobs(&self) -> Vec<String> {
        match self {
            Storage::Embedded(data) => walk(&data.join("blobs/sha256")),
            Storage::Shared { bucket, .. } => tags(&Self::list(bucket, "list-type=2&prefix=blobs/sha256/"), "Key"),
        }
    }

    /// Bytes of unfinished uploads held so far, including parts of multipart uploads still
    /// being written to the bucket.
    pub fn upload_bytes(&self) -> u64 {
        match self {
            Storage::Embedded(data) => std::fs::read_dir(data.join("blobs/uploads"))
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "part"))
                .map(|e| e.metadata().unwrap().len())
                .sum(),
            Storage::Shared { bucket, .. } => {
                let done: u64 =
                    tags(&Self::list(bucket, "list-type=2&prefix=blobs/uploads/"), "Size").iter().map(|s| s.parse::<u64>().unwrap()).sum();
                let listing = Self::list(bucket, "uploads");
                let keys = tags(&listing, "Key");
                let ids = tags(&listing, "UploadId");
                let mut in_flight = 0;
                for (key, id) in keys.iter().zip(&ids) {
                    let parts = crate::harness::http()
                        .get(format!("{}?uploadId={id}", Self::object_url(bucket, key)))
                        .send()
                        .unwrap()
                        .text()
                        .unwrap();
                    in_flight += tags(&parts, "Size").iter().map(|s| s.parse::<u64>().unwrap()).sum::<u64>();
                }
                done + in_flight
            }
        }
    }

    /// Makes the blob store refuse writes: the uploads directory becomes a file, or the
    /// bucket is emptied and deleted.
    pub fn break_blob_writes(&self) {
        match self {
            Storage::Embedded(data) => {
                let uploads = data.join("blobs/uploads");
                std::fs::remove_dir_all(&uploads).unwrap();
                std::fs::write(&uploads, b"not a directory").unwrap();
            }
            Storage::Shared { bucket, .. } => {
                let http = crate::harness::http();
                for key in tags(&Self::list(bucket, "list-type=2"), "Key") {
                    http.delete(Self::object_url(bucket, &key)).send().unwrap().error_for_status().unwrap();
                }
                http.delete(format!("{}/{bucket}", s3_endpoint())).send().unwrap().error_for_status().unwrap();
            }
        }
    }
}

/// The text of every `<name>…</name>` element, in order (enough XML for S3 listings).
fn tags(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    xml.split(&open).skip(1).filter_map(|s| s.split_once(&close).map(|(v, _)| v.to_owned())).collect()
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}
