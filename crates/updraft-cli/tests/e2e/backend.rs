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
