//! Copying an embedded install's metadata into PostgreSQL (`updraft migrate-store`): every
//! table, row for row, values as stored (TUF metadata bytes, audit hashes and sequence numbers
//! included), in one PostgreSQL transaction. Tables are copied in the order their migrations
//! created them, so references are satisfied; the target must be migrated and empty.

use sqlx::{Column, Row, TypeInfo, ValueRef};

use crate::{PgStore, SqliteStore, StoreError};

/// One value as SQLite stored it.
enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// Copies every table but `schema_migrations`; returns (table, rows) in copy order.
pub async fn sqlite_to_postgres(src: &SqliteStore, dst: &PgStore) -> Result<Vec<(String, u64)>, StoreError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations' ORDER BY rowid",
    )
    .fetch_all(src.pool())
    .await?;
    let mut tx = dst.pool().begin().await?;
    for table in &tables {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&mut *tx).await?;
        if n > 0 {
            return Err(StoreError::Conflict(format!("the target database is not empty: table {table} has {n} rows")));
        }
    }
    let mut copied = Vec::new();
    let mut read = src.pool().begin().await?;
    for table in &tables {
        let rows = sqlx::query(&format!("SELECT * FROM {table}")).fetch_all(&mut *read).await?;
        for row in &rows {
            let cols: Vec<String> = row.columns().iter().map(|c| c.name().to_owned()).collect();
            let mut values = Vec::with_capacity(cols.len());
            for (i, col) in cols.iter().enumerate() {
                let raw = row.try_get_raw(i)?;
                let v = if raw.is_null() {
                    Value::Null
                } else {
                    match raw.type_info().name() {
                        "INTEGER" => Value::Int(row.try_get(i)?),
                        "BLOB" => Value::Blob(row.try_get(i)?),
                        "TEXT" => Value::Text(row.try_get(i)?),
                        other => return Err(StoreError::Corrupt(format!("{table}.{col}: unexpected SQLite type {other}"))),
                    }
                };
                values.push(v);
            }
            // NULL as a literal: a typed NULL parameter would not fit every column type.
            let mut n = 0;
            let marks: Vec<String> = values
                .iter()
                .map(|v| match v {
                    Value::Null => "NULL".to_owned(),
                    _ => {
                        n += 1;
                        format!("${n}")
                    }
                })
                .collect();
            let sql = format!("INSERT INTO {table} ({}) VALUES ({})", cols.join(", "), marks.join(", "));
            let mut q = sqlx::query(&sql);
            for v in values {
                q = match v {
                    Value::Null => q,
                    Value::Int(i) => q.bind(i),
                    Value::Text(s) => q.bind(s),
                    Value::Blob(b) => q.bind(b),
                };
            }
            q.execute(&mut *tx).await?;
        }
        copied.push((table.clone(), rows.len() as u64));
    }
    read.commit().await?;
    // Identity columns continue after the copied rows.
    let identities: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns WHERE table_schema = current_schema() AND is_identity = 'YES'",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (table, column) in identities {
        sqlx::query(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
        ))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(copied)
}
