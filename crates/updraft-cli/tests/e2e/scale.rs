//! Scale-out: PostgreSQL as the metadata store (`updraft migrate`, store chosen by URL scheme).

use crate::harness::*;

#[test]
fn migrate_brings_sqlite_and_postgres_schemas_up_to_date_and_refuses_bad_urls() {
    let (_dir, data) = scratch();
    // SQLite by URL scheme, the file created where the URL says; running it twice is a no-op.
    let db = data.join("custom/meta.db");
    let url = format!("sqlite://{}", db.display());
    for _ in 0..2 {
        let out = run_cli("http://127.0.0.1:1", TOKEN, &["migrate", "--database", &url, "--json"]).ok();
        assert_eq!(out.json()["migrated"], true, "{out:?}");
    }
    assert!(db.is_file(), "the SQLite file is created at the URL's path");

    // PostgreSQL, a fresh database: the schema is created, then found current.
    let pg = pg_database();
    for _ in 0..2 {
        let out = run_cli("http://127.0.0.1:1", TOKEN, &["migrate", "--database", &pg]).ok();
        assert!(out.stdout.contains("schema is current"), "{out:?}");
    }
    let tables = psql(&pg, "SELECT count(*) FROM schema_migrations");
    assert!(tables.trim().parse::<u32>().unwrap() >= 2, "{tables}");

    // UPDRAFT_DATABASE is read too; a URL of another kind is a usage error (exit 2) that names
    // the field and does not echo the URL (it may carry a password).
    let out = std::process::Command::new(bin()).args(["migrate"]).env("UPDRAFT_DATABASE", "mysql://root:hunter2@db/x").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("database") && stderr.contains("postgres://") && !stderr.contains("hunter2"), "{stderr}");

    // An unreachable PostgreSQL is exit 5 (server unreachable), without the password.
    let out = run_cli("http://127.0.0.1:1", TOKEN, &["migrate", "--database", "postgres://u:hunter2@127.0.0.1:1/x"]);
    assert_eq!(out.code, 5, "{out:?}");
    assert!(!out.stderr.contains("hunter2"), "{out:?}");
}

#[test]
fn server_on_postgres_serves_what_it_published_after_a_restart() {
    let (_dir, data) = scratch();
    let pg = pg_database();
    let opts = || Opts { env: vec![("UPDRAFT_DATABASE", pg.clone())] };
    let server = Server::start_with(&data, opts());
    server.cli(&["app", "create", "demo"]).ok();
    let payload = bytes(10_000, 3);
    publish(&server, _dir.path(), "demo", "1.0.0", "linux-x86_64", &payload, &[]);
    assert!(!data.join("updraft.db").exists(), "no SQLite file when the database is PostgreSQL");
    drop(server);
    let server = Server::start_with(&data, opts());
    let check: serde_json::Value =
        http().get(server.url("/v1/update/demo/stable/linux-x86_64?current=0.9.0&client=c1")).send().unwrap().json().unwrap();
    assert_eq!(check["version"], "1.0.0", "{check}");
    let count = psql(&pg, "SELECT count(*) FROM releases WHERE app = 'demo'");
    assert_eq!(count.trim(), "1");
}
