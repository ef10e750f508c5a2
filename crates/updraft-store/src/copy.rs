//! Every table of a metadata store as portable rows, for `updraft migrate-store` (SQLite into
//! PostgreSQL) and `updraft backup` (either store into an archive and back into either).
//!
//! A dump reads all tables in one read-only snapshot transaction (SQLite: one deferred
//! transaction over WAL; PostgreSQL: `REPEATABLE READ`), so it is consistent while servers keep
//! writing. Values are carried as stored — TUF metadata bytes, audit hashes and sequence
//! numbers included — with only four kinds, which is all the schema uses (`TEXT`, `BIGINT`,
//! `BYTEA`/`BLOB`, and NULL). Tables go in the order their migrations created them, so a load
//! in that order satisfies every reference. A load is one transaction into a migrated, empty
//! database: it commits whole or leaves the target empty.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::{Row, TypeInfo, ValueRef};

use crate::{DatabaseUrl, MetaStore, PgStore, SqliteStore, StoreError};

/// One stored value. On the wire (JSON): `null`, a number, a string, or `{"b64": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Bytes64),
}

/// Binary column bytes, base64 in JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bytes64(pub Vec<u8>);

impl Serialize for Bytes64 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("b64", &base64_encode(&self.0))?;
        m.end()
    }
}

impl<'de> Deserialize<'de> for Bytes64 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct B {
            b64: String,
        }
        let b = B::deserialize(d)?;
        base64_decode(&b.b64).map(Bytes64).ok_or_else(|| serde::de::Error::custom("invalid base64"))
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// A table's name and columns, in the order every row lists its values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub name: String,
    pub columns: Vec<String>,
}

/// Where a dump goes, table by table, row by row.
#[async_trait]
pub trait RowSink: Send {
    async fn table(&mut self, table: &Table) -> Result<(), StoreError>;
    async fn row(&mut self, values: Vec<Value>) -> Result<(), StoreError>;
}

/// The schema version this binary migrates to (the same on both stores).
pub fn latest_schema() -> u64 {
    crate::sqlite::MIGRATIONS.last().map_or(0, |m| m.0 as u64)
}

/// A concrete metadata store, for the tools that copy whole tables.
pub enum Database {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

fn valid_ident(s: &str) -> Result<&str, StoreError> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        Ok(s)
    } else {
        Err(StoreError::Corrupt(format!("{s:?} is not a table or column name of Updraft's schema")))
    }
}

/// Reads `table` row by row from a transaction into `sink`; a macro because the two drivers'
/// rows are different types.
macro_rules! dump_table {
    ($tx:expr, $table:expr, $sink:expr, $kind:expr) => {{
        use futures_util::TryStreamExt;
        let sql = format!("SELECT {} FROM {}", $table.columns.join(", "), $table.name);
        let mut rows = sqlx::query(&sql).fetch(&mut *$tx);
        let mut n = 0u64;
        while let Some(row) = rows.try_next().await? {
            let mut values = Vec::with_capacity($table.columns.len());
            for i in 0..$table.columns.len() {
                let raw = row.try_get_raw(i)?;
                values.push(if raw.is_null() {
                    Value::Null
                } else {
                    match raw.type_info().name() {
                        "INTEGER" | "INT8" | "INT4" | "INT2" => Value::Int(row.try_get(i)?),
                        "BLOB" | "BYTEA" => Value::Blob(Bytes64(row.try_get(i)?)),
                        "TEXT" | "VARCHAR" => Value::Text(row.try_get(i)?),
                        other => {
                            return Err(StoreError::Corrupt(format!(
                                "{}.{}: unexpected {} type {other}",
                                $table.name, $table.columns[i], $kind
                            )))
                        }
                    }
                });
            }
            $sink.row(values).await?;
            n += 1;
        }
        n
    }};
}

/// Inserts one row; NULL as a literal (a typed NULL parameter would not fit every column).
macro_rules! insert_row {
    ($tx:expr, $table:expr, $values:expr) => {{
        let mut n = 0;
        let marks: Vec<String> = $values
            .iter()
            .map(|v| match v {
                Value::Null => "NULL".to_owned(),
                _ => {
                    n += 1;
                    format!("${n}")
                }
            })
            .collect();
        let sql = format!("INSERT INTO {} ({}) VALUES ({})", $table.name, $table.columns.join(", "), marks.join(", "));
        let mut q = sqlx::query(&sql);
        for v in $values {
            q = match v {
                Value::Null => q,
                Value::Int(i) => q.bind(i),
                Value::Text(s) => q.bind(s),
                Value::Blob(b) => q.bind(b.0),
            };
        }
        q.execute(&mut **$tx).await?;
    }};
}

impl Database {
    /// Opens the store a URL names (creating a SQLite file if absent); does not migrate.
    pub async fn open(url: &DatabaseUrl) -> Result<Self, StoreError> {
        Ok(match url {
            DatabaseUrl::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(StoreError::io(dir))?;
                }
                Database::Sqlite(SqliteStore::open(path).await?)
            }
            DatabaseUrl::Postgres(url) => Database::Postgres(PgStore::open(url).await?),
        })
    }

    pub fn meta(&self) -> &dyn MetaStore {
        match self {
            Database::Sqlite(s) => s,
            Database::Postgres(s) => s,
        }
    }

    /// The newest schema migration applied (0 for a database never migrated).
    pub async fn schema_version(&self) -> Result<u64, StoreError> {
        let q = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations";
        let v: Result<i64, sqlx::Error> = match self {
            Database::Sqlite(s) => sqlx::query_scalar(q).fetch_one(s.pool()).await,
            Database::Postgres(s) => sqlx::query_scalar(q).fetch_one(s.pool()).await,
        };
        match v {
            Ok(v) => Ok(v.max(0) as u64),
            Err(sqlx::Error::Database(_)) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes every table into `sink` from one consistent snapshot; returns (table, rows) in
    /// dump order.
    pub async fn dump(&self, sink: &mut dyn RowSink) -> Result<Vec<(String, u64)>, StoreError> {
        let mut counts = Vec::new();
        match self {
            Database::Sqlite(s) => {
                let mut tx = s.pool().begin().await?;
                let tables = sqlite_tables(&mut tx).await?;
                for t in &tables {
                    sink.table(t).await?;
                    counts.push((t.name.clone(), dump_table!(tx, t, sink, "SQLite")));
                }
                tx.commit().await?;
            }
            Database::Postgres(s) => {
                let mut tx = s.pool().begin().await?;
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
                let tables = pg_tables(&mut tx).await?;
                for t in &tables {
                    sink.table(t).await?;
                    counts.push((t.name.clone(), dump_table!(tx, t, sink, "PostgreSQL")));
                }
                tx.commit().await?;
            }
        }
        Ok(counts)
    }

    /// A loader into this database, which must be migrated to the schema of the rows it will
    /// take and hold no row in any table (`Conflict` otherwise).
    pub async fn loader(&self) -> Result<Loader, StoreError> {
        let (tx, tables) = match self {
            Database::Sqlite(s) => {
                let mut tx = s.pool().begin().await?;
                let tables = sqlite_tables(&mut tx).await?;
                (LoaderTx::Sqlite(tx), tables)
            }
            Database::Postgres(s) => {
                let mut tx = s.pool().begin().await?;
                let tables = pg_tables(&mut tx).await?;
                (LoaderTx::Postgres(tx), tables)
            }
        };
        let mut loader = Loader { tx, tables, current: None, counts: Vec::new() };
        for t in loader.tables.clone() {
            let sql = format!("SELECT COUNT(*) FROM {}", t.name);
            let n: i64 = match &mut loader.tx {
                LoaderTx::Sqlite(tx) => sqlx::query_scalar(&sql).fetch_one(&mut **tx).await?,
                LoaderTx::Postgres(tx) => sqlx::query_scalar(&sql).fetch_one(&mut **tx).await?,
            };
            if n > 0 {
                return Err(StoreError::Conflict(format!("the target database is not empty: table {} has {n} rows", t.name)));
            }
        }
        Ok(loader)
    }
}

/// Every table (but `schema_migrations`) with its columns, in creation order.
async fn sqlite_tables(tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>) -> Result<Vec<Table>, StoreError> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations' ORDER BY rowid",
    )
    .fetch_all(&mut **tx)
    .await?;
    let mut out = Vec::new();
    for name in names {
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info($1) ORDER BY cid").bind(&name).fetch_all(&mut **tx).await?;
        out.push(checked(name, columns)?);
    }
    Ok(out)
}

/// [`sqlite_tables`] for PostgreSQL: table OIDs grow as tables are created.
async fn pg_tables(tx: &mut sqlx::Transaction<'static, sqlx::Postgres>) -> Result<Vec<Table>, StoreError> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND n.nspname = current_schema() AND c.relname <> 'schema_migrations' ORDER BY c.oid",
    )
    .fetch_all(&mut **tx)
    .await?;
    let mut out = Vec::new();
    for name in names {
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind(&name)
        .fetch_all(&mut **tx)
        .await?;
        out.push(checked(name, columns)?);
    }
    Ok(out)
}

/// Names go into SQL text: only the schema's own (lowercase, digits, `_`) pass.
fn checked(name: String, columns: Vec<String>) -> Result<Table, StoreError> {
    for s in std::iter::once(&name).chain(&columns) {
        valid_ident(s)?;
    }
    Ok(Table { name, columns })
}

enum LoaderTx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// Fills an empty database in one transaction: [`RowSink`] calls, then [`Loader::commit`].
/// Dropped without a commit, it writes nothing.
pub struct Loader {
    tx: LoaderTx,
    tables: Vec<Table>,
    current: Option<Table>,
    counts: Vec<(String, u64)>,
}

#[async_trait]
impl RowSink for Loader {
    async fn table(&mut self, table: &Table) -> Result<(), StoreError> {
        let Some(target) = self.tables.iter().find(|t| t.name == table.name) else {
            return Err(StoreError::Corrupt(format!("table {} is not in this database's schema", table.name)));
        };
        for c in &table.columns {
            if !target.columns.contains(c) {
                return Err(StoreError::Corrupt(format!("column {}.{c} is not in this database's schema", table.name)));
            }
        }
        self.current = Some(table.clone());
        self.counts.push((table.name.clone(), 0));
        Ok(())
    }

    async fn row(&mut self, values: Vec<Value>) -> Result<(), StoreError> {
        let Some(table) = &self.current else { return Err(StoreError::Corrupt("a row before any table".into())) };
        if values.len() != table.columns.len() {
            return Err(StoreError::Corrupt(format!(
                "a row of {} has {} values for {} columns",
                table.name,
                values.len(),
                table.columns.len()
            )));
        }
        match &mut self.tx {
            LoaderTx::Sqlite(tx) => insert_row!(tx, table, values),
            LoaderTx::Postgres(tx) => insert_row!(tx, table, values),
        }
        if let Some(c) = self.counts.last_mut() {
            c.1 += 1;
        }
        Ok(())
    }
}

impl Loader {
    /// Sets a setting in the same transaction as the rows (a restore's "in progress" flag).
    pub async fn put_setting(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        let sql = "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value";
        match &mut self.tx {
            LoaderTx::Sqlite(tx) => sqlx::query(sql).bind(key).bind(value).execute(&mut **tx).await.map(|_| ())?,
            LoaderTx::Postgres(tx) => sqlx::query(sql).bind(key).bind(value).execute(&mut **tx).await.map(|_| ())?,
        };
        Ok(())
    }

    /// Commits every row (PostgreSQL identity columns continue after the loaded rows);
    /// returns (table, rows) in load order.
    pub async fn commit(self) -> Result<Vec<(String, u64)>, StoreError> {
        match self.tx {
            LoaderTx::Sqlite(tx) => tx.commit().await?,
            LoaderTx::Postgres(mut tx) => {
                let identities: Vec<(String, String)> = sqlx::query_as(
                    "SELECT table_name::text, column_name::text FROM information_schema.columns WHERE table_schema = current_schema() AND is_identity = 'YES'",
                )
                .fetch_all(&mut *tx)
                .await?;
                for (table, column) in identities {
                    valid_ident(&table)?;
                    valid_ident(&column)?;
                    sqlx::query(&format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
                    ))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(self.counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_stores_have_the_same_migrations() {
        let versions = |m: &[(i64, &str)]| m.iter().map(|m| m.0).collect::<Vec<_>>();
        assert_eq!(versions(crate::sqlite::MIGRATIONS), versions(crate::postgres::MIGRATIONS));
        assert_eq!(latest_schema(), crate::postgres::MIGRATIONS.len() as u64);
    }

    #[test]
    fn values_have_a_plain_json_form() {
        let row = vec![Value::Null, Value::Int(-3), Value::Text("a".into()), Value::Blob(Bytes64(vec![0, 255]))];
        let json = serde_json::to_string(&row).unwrap();
        assert_eq!(json, r#"[null,-3,"a",{"b64":"AP8="}]"#);
        assert_eq!(serde_json::from_str::<Vec<Value>>(&json).unwrap(), row);
    }
}
