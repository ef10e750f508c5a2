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
