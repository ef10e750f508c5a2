//! `updraft migrate-store`: moves an embedded install (SQLite + files in a data directory) to
//! PostgreSQL + an S3-compatible bucket. Blobs first (each re-hashed on the way and checked
//! against its name), then every table in one PostgreSQL transaction, then the signing keys.
//! The source is only read; a failed run leaves the target database empty and can be repeated.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use updraft_store::copy::{Database, RowSink};
use updraft_store::{BlobUrl, DatabaseUrl};

use crate::exit;

#[derive(Args)]
pub struct MigrateStoreArgs {
    /// The embedded install's data directory (stop its server first).
    #[arg(long)]
    from: PathBuf,
    /// Target database: postgres://USER:PASS@HOST/DB (created, empty).
    #[arg(long)]
    to: String,
    /// Target blob store: s3://BUCKET[/PREFIX], configured by the AWS_* environment.
    #[arg(long)]
    to_blobs: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

fn blob_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            blob_files(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

pub async fn run(args: MigrateStoreArgs) -> anyhow::Result<i32> {
    let db_file = args.from.join("updraft.db");
    if !db_file.is_file() {
        return Err(exit::coded(2, format!("{} holds no Updraft database (updraft.db)", args.from.display())));
    }
    let Ok(DatabaseUrl::Postgres(to)) = DatabaseUrl::parse(&args.to) else {
        return Err(exit::coded(2, "--to must be a postgres:// URL"));
    };
    let blob_url = BlobUrl::parse(&args.to_blobs).map_err(|e| exit::coded(2, format!("--to-blobs: {e}")))?;
    let src = Database::open(&DatabaseUrl::Sqlite(db_file.clone())).await.context("opening the source database")?;
    src.meta().migrate().await.context("bringing the source schema up to date")?;
    let dst = Database::open(&DatabaseUrl::Postgres(to.clone()))
        .await
        .map_err(|e| exit::coded(exit::UNREACHABLE, format!("cannot open the target database: {e}")))?;
    dst.meta().migrate().await.context("migrating the target database")?;
    if !dst.meta().list_apps().await?.is_empty() || !dst.meta().list_tokens().await?.is_empty() {
        return Err(exit::coded(exit::REFUSED, "the target database is not empty: migrate-store only fills a new one"));
    }
    let blobs = blob_url.open().await.map_err(|e| exit::coded(exit::UNREACHABLE, format!("cannot open the target blob store: {e}")))?;

    // Blobs, streamed and re-hashed: the target computes each address itself.
    let mut files = Vec::new();
    let sha_dir = args.from.join("blobs/sha256");
    if sha_dir.is_dir() {
        blob_files(&sha_dir, &mut files).with_context(|| format!("listing {}", sha_dir.display()))?;
    }
    let mut total = 0u64;
    for f in &files {
        total += std::fs::metadata(f)?.len();
    }
    let bar = indicatif::ProgressBar::new(total);
    if args.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("blobs {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    for path in &files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let size = std::fs::metadata(path)?.len();
        let up = blobs.create_upload(size, "migrate-store").await?;
        let file = tokio::fs::File::open(path).await?;
        let b = bar.clone();
        let stream = futures_util::stream::unfold(file, move |mut file| {
            let b = b.clone();
            async move {
                use tokio::io::AsyncReadExt;
                let mut buf = vec![0u8; 1 << 20];
                match file.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        b.inc(n as u64);
                        Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), file))
                    }
                    Err(e) => Some((Err(e), file)),
                }
            }
        });
        blobs.append(&up, 0, stream).await.with_context(|| format!("copying blob {name}"))?;
        let done = blobs.finish(&up).await.with_context(|| format!("storing blob {name}"))?;
        if done.sha256 != name {
            return Err(exit::coded(exit::FAILURE, format!("blob {name} is damaged in the source: its bytes hash to {}", done.sha256)));
        }
    }
    bar.finish_and_clear();

    // Every table, in one transaction.
    let mut loader = dst.loader().await.context("opening the target database")?;
    src.dump(&mut loader as &mut dyn RowSink).await.context("copying the metadata")?;
    let tables = loader.commit().await.context("committing the metadata")?;

    // Signing keys (as stored: encrypted when the install has a passphrase).
    let repo = updraft_server::repo::Repo::new(&args.from, None, updraft_server::Config::default().lifetimes);
    let mut keys = 0;
    for app in dst.meta().list_apps().await? {
        let id: updraft_core::AppId = app.id.parse().map_err(|e| anyhow::anyhow!("stored app id {}: {e}", app.id))?;
        keys += updraft_server::cluster::push_keys_from(dst.meta(), &repo, &id)
            .await
            .map_err(|e| anyhow::anyhow!("keys of {id}: {}", e.message))?;
    }

    let rows: u64 = tables.iter().map(|(_, n)| n).sum();
    if args.json {
        let t: serde_json::Map<String, serde_json::Value> = tables.iter().map(|(k, v)| (k.clone(), (*v).into())).collect();
        println!("{}", serde_json::json!({"blobs": files.len(), "blob_bytes": total, "tables": t, "key_files": keys}));
    } else {
        println!(
            "copied {} blobs ({total} bytes), {rows} rows in {} tables, {keys} key files to {} and {}",
            files.len(),
            tables.len(),
            DatabaseUrl::Postgres(to.clone()).redacted(),
            blobs.describe()
        );
    }
    Ok(exit::OK)
}
