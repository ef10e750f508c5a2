//! `updraft backup`: consistent, encrypted backups of a whole install, and restores.
//!
//! An archive is a tar stream encrypted with [age](https://age-encryption.org) to one or more
//! recipients, so `age -d -i KEY backup.age | tar t` reads it too. Its entries, in order:
//!
//! 1. `updraft-backup.json` — the header: format, backup id, time, schema version, source.
//! 2. `tables/NN-NAME.jsonl` — every table from one snapshot transaction: the table and its
//!    columns on the first line, then one JSON array of values per row.
//! 3. `keys/APP/NAME` — the signing-key files of an embedded install, as stored (encrypted
//!    when a key passphrase is set); a shared database carries them in its `key_files` table.
//! 4. `blobs/SHA256` — with `--with-blobs`, every blob a release references.
//! 5. `manifest.json` — last: the SHA-256 and size of every entry before it, the row count of
//!    every table, and the blob manifest (every referenced blob, included or not).
//!
//! age's STREAM construction authenticates every 64 KiB chunk and the end of the stream, so a
//! truncated or altered archive fails to decrypt; the manifest then proves every entry whole.
//!
//! A restore loads every row in one transaction that commits only after the manifest checks
//! out, with a `restore_pending` setting that keeps servers from starting; it then re-signs
//! each app's TUF metadata above the highest version that may have been served — the
//! restored rows, the served-version marks the server keeps beside the blobs, and
//! `--served-floor` — and clears the setting. Run again after a crash, it finishes the job.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use updraft_core::AppId;
use updraft_server::repo::{Repo, ServedVersions};
use updraft_store::copy::{Database, RowSink, Table, Value};
use updraft_store::{BlobStore, StoreError};

use crate::exit;
use crate::serve::StoreArgs;

const FORMAT: &str = "updraft-backup/1";
const HEADER: &str = "updraft-backup.json";
const MANIFEST: &str = "manifest.json";

#[derive(Subcommand)]
pub enum BackupCmd {
    /// Create an age key pair for backups: the identity (private key) goes to a 0600 file,
    /// the recipient (public key) is printed.
    #[command(
        after_help = "Example:\n  updraft backup keygen --out /root/updraft-backup.key\n  # prints age1…: give it to `backup create --recipient`; keep the key file offline"
    )]
    Keygen(KeygenArgs),
    /// Write a consistent, encrypted snapshot of the metadata, the signing keys and the blob
    /// manifest (and, with --with-blobs, the blobs) to a file or an S3 object.
    #[command(
        after_help = "Example:\n  updraft backup create --to /backups/updraft-$(date +%F).age --recipient age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n  UPDRAFT_DATABASE=postgres://updraft@db/updraft UPDRAFT_BLOBS=s3://updraft-blobs/prod \\\n    updraft backup create --to s3://updraft-backups/nightly.age --recipients-file /etc/updraft/backup.pub --with-blobs\n\nSafe while servers run: the metadata is read in one snapshot transaction."
    )]
    Create(CreateArgs),
    /// Decrypt a backup and check every entry against its manifest; with --check-blobs, also
    /// that the blob store holds every blob the backup references but does not include.
    #[command(
        after_help = "Example:\n  updraft backup verify --from /backups/updraft-2026-11-30.age --identity /root/updraft-backup.key --json"
    )]
    Verify(VerifyArgs),
    /// Restore a backup into an empty database and data directory, then re-sign every app's
    /// TUF metadata above the highest version that may have been served.
    #[command(
        after_help = "Example:\n  updraft backup restore --from /backups/updraft-2026-11-30.age --identity /root/updraft-backup.key --data /var/lib/updraft\n  UPDRAFT_DATABASE=postgres://updraft@db/updraft-new UPDRAFT_BLOBS=s3://updraft-blobs/prod \\\n    updraft backup restore --from s3://updraft-backups/nightly.age --identity backup.key\n\nStop every server first. See docs/backups.md for the versioning rule."
    )]
    Restore(RestoreArgs),
    /// Re-sign every app's TUF metadata above the highest version that may have been served
    /// (the served-version marks in the blob store, and --served-floor): after the database was
    /// recovered by other means, such as a PostgreSQL point-in-time recovery.
    #[command(
        after_help = "Example:\n  UPDRAFT_DATABASE=postgres://updraft@db/updraft UPDRAFT_BLOBS=s3://updraft-blobs/prod updraft backup resign\n  updraft backup resign --data /var/lib/updraft --served-floor 812 --json\n\nStop every server first. See docs/backups.md."
    )]
    Resign(ResignArgs),
}

#[derive(Args)]
pub struct KeygenArgs {
    /// Where to write the identity (refused if it exists).
    #[arg(long)]
    out: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct CreateArgs {
    /// Destination: a file path or s3://BUCKET/KEY (AWS_* environment). Refused if it exists.
    #[arg(long)]
    to: String,
    /// An age recipient (age1…) to encrypt to; repeatable.
    #[arg(long = "recipient", value_name = "AGE1…")]
    recipients: Vec<String>,
    /// A file of age recipients, one per line (# comments allowed).
    #[arg(long)]
    recipients_file: Option<PathBuf>,
    /// Include every referenced blob, not only the blob manifest.
    #[arg(long)]
    with_blobs: bool,
    #[command(flatten)]
    store: StoreArgs,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The backup: a file path or s3://BUCKET/KEY.
    #[arg(long)]
    from: String,
    /// An age identity file (AGE-SECRET-KEY-1…).
    #[arg(long)]
    identity: PathBuf,
    /// Also check that the blob store (--blobs / UPDRAFT_BLOBS) holds every referenced blob
    /// the backup does not include.
    #[arg(long)]
    check_blobs: bool,
    #[command(flatten)]
    store: StoreArgs,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// The backup: a file path or s3://BUCKET/KEY.
    #[arg(long)]
    from: String,
    /// An age identity file (AGE-SECRET-KEY-1…).
    #[arg(long)]
    identity: PathBuf,
    /// A TUF metadata version known to have been served after the backup (read from a
    /// client's or a CDN's timestamp.json, for instance): every role is re-signed above it.
    #[arg(long, value_name = "VERSION")]
    served_floor: Option<u64>,
    #[command(flatten)]
    store: StoreArgs,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ResignArgs {
    /// A TUF metadata version known to have been served: every role is re-signed above it.
    #[arg(long, value_name = "VERSION")]
    served_floor: Option<u64>,
    #[command(flatten)]
    store: StoreArgs,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    format: String,
    id: String,
    created_at: String,
    updraft_version: String,
    schema_version: u64,
    /// `sqlite` or `postgres`.
    source: String,
    with_blobs: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct EntrySum {
    path: String,
    size: u64,
    sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct BlobRef {
    sha256: String,
    size: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Manifest {
    entries: Vec<EntrySum>,
    tables: BTreeMap<String, u64>,
    blobs: Vec<BlobRef>,
    /// Each app's newest metadata version per role in the backup.
    apps: BTreeMap<String, ServedVersions>,
}

pub async fn run(cmd: BackupCmd) -> anyhow::Result<i32> {
    match cmd {
        BackupCmd::Keygen(a) => keygen(a),
        BackupCmd::Create(a) => create(a).await,
        BackupCmd::Verify(a) => verify(a).await,
        BackupCmd::Restore(a) => restore(a).await,
        BackupCmd::Resign(a) => resign(a).await,
    }
}

fn keygen(args: KeygenArgs) -> anyhow::Result<i32> {
    use age::secrecy::ExposeSecret;
    use std::os::unix::fs::OpenOptionsExt;
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.out)
        .map_err(|e| exit::coded(exit::FAILURE, format!("cannot create {}: {e}", args.out.display())))?;
    let created = updraft_store::now_rfc3339();
    writeln!(f, "# created: {created}\n# public key: {public}\n{}", id.to_string().expose_secret())?;
    f.sync_all()?;
    if args.json {
        println!("{}", serde_json::json!({"identity_file": args.out, "recipient": public}));
    } else {
        println!("{public}");
        eprintln!("identity written to {} (mode 0600); keep it away from the servers it backs up", args.out.display());
    }
    Ok(exit::OK)
}

// ---------------------------------------------------------------------------------------------
// Where archives live: a file or an S3 object.

enum Location {
    File(PathBuf),
    S3 { bucket: String, key: String },
}

impl Location {
    fn parse(s: &str) -> anyhow::Result<Self> {
        if let Some(rest) = s.strip_prefix("s3://") {
            match rest.split_once('/') {
                Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() && !key.ends_with('/') => {
                    Ok(Location::S3 { bucket: bucket.into(), key: key.into() })
                }
                _ => Err(exit::coded(exit::USAGE, format!("{s}: an S3 location is s3://BUCKET/KEY"))),
            }
        } else if let Some(path) = s.strip_prefix("file://") {
            Ok(Location::File(path.into()))
        } else if s.contains("://") {
            Err(exit::coded(exit::USAGE, format!("{s}: a backup location is a file path or s3://BUCKET/KEY")))
        } else if s.is_empty() {
            Err(exit::coded(exit::USAGE, "the backup location is empty"))
        } else {
            Ok(Location::File(s.into()))
        }
    }

    fn s3(bucket: &str) -> anyhow::Result<Arc<dyn object_store::ObjectStore>> {
        let s = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .context("configuring S3 from the AWS_* environment")?;
        Ok(Arc::new(s))
    }
}

/// A sync writer that hands 8 MiB chunks to an async S3 multipart upload.
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 8 << 20;

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
            self.tx.blocking_send(chunk).map_err(|_| std::io::Error::other("the upload to S3 stopped"))?;
        }
        Ok(())
    }
}

/// A sync reader over an async byte stream (run on a blocking thread).
struct StreamReader {
    rt: tokio::runtime::Handle,
    stream: futures_util::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>,
    cur: bytes::Bytes,
}

impl Read for StreamReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        use futures_util::StreamExt;
        while self.cur.is_empty() {
            match self.rt.block_on(self.stream.next()) {
                Some(chunk) => self.cur = chunk?,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

/// Counts bytes read into a progress bar.
struct Counted<R> {
    inner: R,
    bar: indicatif::ProgressBar,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

fn bar(total: u64, what: &str, hidden: bool) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    if hidden {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!("{what} {{bar:30}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}} {{eta}}"))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Opens an archive for reading; returns the reader and its size.
async fn open_source(loc: &Location) -> anyhow::Result<(Box<dyn Read + Send>, u64)> {
    match loc {
        Location::File(path) => {
            let f = std::fs::File::open(path).map_err(|e| exit::coded(exit::FAILURE, format!("cannot open {}: {e}", path.display())))?;
            let size = f.metadata()?.len();
            Ok((Box::new(std::io::BufReader::with_capacity(1 << 20, f)), size))
        }
        Location::S3 { bucket, key } => {
            use futures_util::TryStreamExt;
            let store = Location::s3(bucket)?;
            let got = store
                .get(&object_store::path::Path::from(key.as_str()))
                .await
                .map_err(|e| exit::coded(exit::UNREACHABLE, format!("cannot read s3://{bucket}/{key}: {e}")))?;
            let size = got.meta.size;
            let stream = got.into_stream().map_err(std::io::Error::other);
            let reader = StreamReader { rt: tokio::runtime::Handle::current(), stream: Box::pin(stream), cur: bytes::Bytes::new() };
            Ok((Box::new(std::io::BufReader::with_capacity(1 << 20, reader)), size))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// create

/// Collects the dump into files under a temporary directory, and what the manifest needs.
struct DumpSink {
    dir: PathBuf,
    files: Vec<(String, PathBuf)>,
    out: Option<std::io::BufWriter<std::fs::File>>,
    table: Option<Table>,
    seen: Seen,
}

fn col<'a>(t: &Table, values: &'a [Value], name: &str) -> Option<&'a Value> {
    t.columns.iter().position(|c| c == name).and_then(|i| values.get(i))
}

fn text(v: Option<&Value>) -> Option<&str> {
    match v {
        Some(Value::Text(s)) => Some(s),
        _ => None,
    }
}

fn int(v: Option<&Value>) -> Option<i64> {
    match v {
        Some(Value::Int(i)) => Some(*i),
        _ => None,
    }
}

fn blob(v: Option<&Value>) -> Option<&[u8]> {
    match v {
        Some(Value::Blob(b)) => Some(&b.0),
        _ => None,
    }
}

/// What a restore and a verify learn from the rows as they pass: the blobs releases reference,
/// TUF metadata, key files, apps.
fn observe(
    t: &Table,
    values: &[Value],
    blobs: &mut BTreeSet<BlobRef>,
    meta: &mut Vec<(String, String, u64, Vec<u8>)>,
    keys: &mut BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    apps: &mut Vec<String>,
) {
    match t.name.as_str() {
        "apps" => apps.extend(text(col(t, values, "id")).map(str::to_owned)),
        "artifacts" => {
            if let (Some(sha), Some(size)) = (text(col(t, values, "sha256")), int(col(t, values, "size"))) {
                blobs.insert(BlobRef { sha256: sha.to_owned(), size: size.max(0) as u64 });
            }
        }
        "releases" => {
            if let Some(compat) = text(col(t, values, "compat")) {
                if let Ok(c) = serde_json::from_str::<updraft_store::ReleaseCompat>(compat) {
                    blobs.extend(c.files.into_iter().map(|f| BlobRef { sha256: f.sha256, size: f.size }));
                }
            }
        }
        "tuf_metadata" => {
            if let (Some(app), Some(role), Some(version), Some(body)) =
                (text(col(t, values, "app")), text(col(t, values, "role")), int(col(t, values, "version")), blob(col(t, values, "body")))
            {
                meta.push((app.to_owned(), role.to_owned(), version.max(0) as u64, body.to_vec()));
            }
        }
        "key_files" => {
            if let (Some(app), Some(name), Some(body)) =
                (text(col(t, values, "app")), text(col(t, values, "name")), blob(col(t, values, "body")))
            {
                keys.entry(app.to_owned()).or_default().insert(name.to_owned(), body.to_vec());
            }
        }
        _ => {}
    }
}

#[async_trait::async_trait]
impl RowSink for DumpSink {
    async fn table(&mut self, table: &Table) -> Result<(), StoreError> {
        if let Some(mut w) = self.out.take() {
            w.flush().map_err(StoreError::io(&self.dir))?;
        }
        let name = format!("tables/{:02}-{}.jsonl", self.files.len() + 1, table.name);
        let path = self.dir.join(format!("{:02}.jsonl", self.files.len() + 1));
        let mut w = std::io::BufWriter::new(std::fs::File::create(&path).map_err(StoreError::io(&path))?);
        serde_json::to_writer(&mut w, table).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        w.write_all(b"\n").map_err(StoreError::io(&path))?;
        self.out = Some(w);
        self.files.push((name, path));
        self.table = Some(table.clone());
        Ok(())
    }

    async fn row(&mut self, values: Vec<Value>) -> Result<(), StoreError> {
        let (Some(w), Some(t)) = (self.out.as_mut(), self.table.as_ref()) else {
            return Err(StoreError::Corrupt("a row before any table".into()));
        };
        serde_json::to_writer(&mut *w, &values).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        w.write_all(b"\n").map_err(StoreError::io(&self.dir))?;
        self.seen.row(t, &values);
        Ok(())
    }
}

/// Each app's newest version per role among `metadata` rows.
fn newest_versions(metadata: &[(String, String, u64, Vec<u8>)]) -> BTreeMap<String, ServedVersions> {
    let mut out: BTreeMap<String, ServedVersions> = BTreeMap::new();
    for (app, role, version, _) in metadata {
        out.entry(app.clone()).or_default().raise_role(role, *version);
    }
    out
}

/// The newest root of `app` among `metadata` rows.
fn newest_root<'a>(metadata: &'a [(String, String, u64, Vec<u8>)], app: &str) -> Option<&'a [u8]> {
    metadata.iter().filter(|m| m.0 == app && m.1 == "root").max_by_key(|m| m.2).map(|m| m.3.as_slice())
}

/// Whether `files` (an app's key files, names as in the database) can sign every online role
/// of `root`: a backup whose keys cannot sign its own metadata is worthless, and a restore
/// would find out too late.
fn keys_sign_root(files: &BTreeMap<String, Vec<u8>>, root: &[u8], config: &updraft_server::Config) -> anyhow::Result<bool> {
    let tmp = tempfile::tempdir()?;
    let repo = Repo::new(tmp.path(), config.key_passphrase.clone(), config.lifetimes);
    let app: AppId = "check".parse().map_err(|e| anyhow!("{e}"))?;
    updraft_server::cluster::install_key_files(&repo, &app, files).map_err(|e| anyhow!("{}", e.message))?;
    let root = updraft_core::tuf::TrustedSet::new(root).map_err(|e| anyhow!("a stored root does not verify: {e}"))?.root().clone();
    let pkcs11 = updraft_server::keystore::Pkcs11Defaults { module: config.pkcs11_module.clone(), pin: config.pkcs11_pin.clone() };
    let store = updraft_server::keystore::KeyStore::load(&repo.key_dir(&app), config.key_passphrase.as_deref(), &pkcs11)
        .map_err(|e| anyhow!("loading the signing keys: {e} (set UPDRAFT_KEY_PASSPHRASE as for `serve`)"))?;
    use updraft_core::tuf::RoleName;
    Ok([RoleName::Targets, RoleName::Snapshot, RoleName::Timestamp].into_iter().all(|r| store.can_sign(&root, r)))
}

async fn create(args: CreateArgs) -> anyhow::Result<i32> {
    let dest = Location::parse(&args.to)?;
    let recipients = read_recipients(&args.recipients, args.recipients_file.as_deref())?;
    let json = args.json;
    let config = args.store.config()?;
    let db = Database::open(&config.database)
        .await
        .map_err(|e| exit::coded(exit::UNREACHABLE, format!("cannot open the database {}: {e}", config.database.redacted())))?;
    let schema = db.schema_version().await?;
    if schema == 0 {
        return Err(exit::coded(exit::FAILURE, format!("{} holds no Updraft database", config.database.redacted())));
    }
    if schema > updraft_store::copy::latest_schema() {
        return Err(exit::coded(
            exit::REFUSED,
            format!("the database is at schema {schema}, newer than this updraft knows: use a newer binary"),
        ));
    }
    let blobs = config.blobs.open().await.map_err(|e| exit::coded(exit::UNREACHABLE, format!("cannot open the blob store: {e}")))?;
    let source = match db {
        Database::Sqlite(_) => "sqlite",
        Database::Postgres(_) => "postgres",
    };
    if let Location::File(p) = &dest {
        if p.exists() {
            return Err(exit::coded(exit::REFUSED, format!("{} exists: a backup never overwrites one", p.display())));
        }
    }

    // The snapshot. With an embedded store the key files live beside the database, read just
    // after it; a key rotation in between would leave keys that cannot sign the snapshot's
    // metadata, which the check below catches, and the dump is taken again.
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let mut attempt = 0;
    let (sink, tables) = loop {
        attempt += 1;
        let dir = tmp.path().join(format!("dump{attempt}"));
        std::fs::create_dir_all(&dir)?;
        let mut sink = DumpSink { dir, files: Vec::new(), out: None, table: None, seen: Seen::default() };
        let tables = db.dump(&mut sink).await.context("reading the database")?;
        if let Some(mut w) = sink.out.take() {
            w.flush()?;
        }
        if source == "sqlite" {
            let repo = Repo::new(&config.data_dir, None, config.lifetimes);
            for app in &sink.seen.apps {
                let id: AppId = app.parse().map_err(|e| anyhow!("stored app id {app}: {e}"))?;
                let files = updraft_server::cluster::local_key_files(&repo, &id).map_err(|e| anyhow!("{}", e.message))?;
                sink.seen.key_files.insert(app.clone(), files);
            }
        }
        let mut unusable = Vec::new();
        for app in &sink.seen.apps {
            let root = newest_root(&sink.seen.metadata, app).ok_or_else(|| anyhow!("app {app} has no root metadata"))?;
            let files = sink.seen.key_files.get(app).cloned().unwrap_or_default();
            if !keys_sign_root(&files, root, &config)? {
                unusable.push(app.clone());
            }
        }
        if unusable.is_empty() {
            break (sink, tables);
        }
        if attempt == 3 {
            return Err(exit::coded(
                exit::FAILURE,
                format!(
                    "the signing keys of {} cannot sign their own metadata (a key change during the backup?); nothing was written",
                    unusable.join(", ")
                ),
            ));
        }
    };

    let header = Header {
        format: FORMAT.into(),
        id: updraft_store::random_hex(16),
        created_at: updraft_store::now_rfc3339(),
        updraft_version: env!("CARGO_PKG_VERSION").into(),
        schema_version: schema,
        source: source.into(),
        with_blobs: args.with_blobs,
    };
    let manifest = Manifest {
        tables: tables.iter().cloned().collect(),
        blobs: sink.seen.blobs.iter().cloned().collect(),
        apps: newest_versions(&sink.seen.metadata),
        ..Default::default()
    };
    let mut total: u64 = sink.files.iter().map(|(_, p)| std::fs::metadata(p).map_or(0, |m| m.len())).sum();
    if args.with_blobs {
        for b in &manifest.blobs {
            match blobs.open_blob(&b.sha256).await? {
                Some((_, len)) if len == b.size => total += len,
                Some((_, len)) => bail!("blob {} is {len} bytes in the blob store, {} in the database", b.sha256, b.size),
                None => {
                    return Err(exit::coded(
                        exit::FAILURE,
                        format!("blob {} is referenced by a release but missing from {}", b.sha256, blobs.describe()),
                    ))
                }
            }
        }
    }
    let progress = bar(total, "backup", json);

    // Encrypt into the destination: a temporary file renamed into place, or an S3 multipart
    // upload completed at the end — nothing partial is ever at the destination.
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient)).context("setting up encryption")?;
    let input = ArchiveInput {
        header_json: serde_json::to_vec_pretty(&header)?,
        tables: sink.files.clone(),
        key_files: if source == "sqlite" { sink.seen.key_files.clone() } else { BTreeMap::new() },
        blobs: if args.with_blobs { Some(Arc::new(blobs)) } else { None },
        rt: tokio::runtime::Handle::current(),
        progress: progress.clone(),
        manifest: manifest.clone(),
    };
    let bytes = match &dest {
        Location::File(path) => {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned();
            let tmp_file = tempfile::NamedTempFile::new_in(&dir).with_context(|| format!("creating a file in {}", dir.display()))?;
            let out = tmp_file.reopen()?;
            let file = tokio::task::spawn_blocking(move || -> anyhow::Result<std::fs::File> {
                let out = write_archive(encryptor, std::io::BufWriter::with_capacity(1 << 20, out), input)?;
                out.into_inner().map_err(|e| e.into_error().into())
            })
            .await??;
            file.sync_all()?;
            let len = file.metadata()?.len();
            tmp_file.persist_noclobber(path).map_err(|e| exit::coded(exit::REFUSED, format!("{}: {}", path.display(), e.error)))?;
            if let Ok(d) = std::fs::File::open(&dir) {
                let _ = d.sync_all();
            }
            len
        }
        Location::S3 { bucket, key } => {
            let store = Location::s3(bucket)?;
            let path = object_store::path::Path::from(key.as_str());
            if store.head(&path).await.is_ok() {
                return Err(exit::coded(exit::REFUSED, format!("s3://{bucket}/{key} exists: a backup never overwrites one")));
            }
            let upload =
                store.put_multipart(&path).await.map_err(|e| exit::coded(exit::UNREACHABLE, format!("s3://{bucket}/{key}: {e}")))?;
            let mut upload = object_store::WriteMultipart::new_with_chunk_size(upload, CHUNK);
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
            let writer = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                let mut out = write_archive(encryptor, ChunkWriter { tx, buf: Vec::with_capacity(CHUNK) }, input)?;
                out.flush()?;
                Ok(())
            });
            let mut len = 0u64;
            let mut failed = None;
            while let Some(chunk) = rx.recv().await {
                len += chunk.len() as u64;
                if let Err(e) = upload.wait_for_capacity(2).await {
                    failed = Some(e);
                    break;
                }
                upload.write(&chunk);
            }
            drop(rx);
            let written = writer.await?;
            match (written, failed) {
                (Ok(()), None) => {
                    upload.finish().await.map_err(|e| exit::coded(exit::UNREACHABLE, format!("completing s3://{bucket}/{key}: {e}")))?;
                }
                (result, failed) => {
                    let _ = upload.abort().await;
                    if let Some(e) = failed {
                        return Err(exit::coded(exit::UNREACHABLE, format!("writing s3://{bucket}/{key}: {e}")));
                    }
                    result?;
                }
            }
            len
        }
    };
    progress.finish_and_clear();
    let rows: u64 = manifest.tables.values().sum();
    let blob_bytes: u64 = manifest.blobs.iter().map(|b| b.size).sum();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "to": args.to, "id": header.id, "created_at": header.created_at, "schema_version": schema,
                "apps": manifest.apps.len(), "tables": manifest.tables, "rows": rows,
                "blobs": manifest.blobs.len(), "blob_bytes": blob_bytes, "with_blobs": args.with_blobs, "bytes": bytes,
            })
        );
    } else {
        println!(
            "backup {} written to {}: {} apps, {rows} rows, {} blobs ({blob_bytes} bytes) {}, {bytes} bytes encrypted",
            header.id,
            args.to,
            manifest.apps.len(),
            manifest.blobs.len(),
            if args.with_blobs { "included" } else { "listed (not included)" },
        );
    }
    Ok(exit::OK)
}

/// Everything an archive holds, for [`write_archive`].
struct ArchiveInput {
    header_json: Vec<u8>,
    /// (entry name, dump file) per table.
    tables: Vec<(String, PathBuf)>,
    key_files: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// The blob store, when blobs are included.
    blobs: Option<Arc<BlobStore>>,
    rt: tokio::runtime::Handle,
    progress: indicatif::ProgressBar,
    /// The manifest without its entry sums.
    manifest: Manifest,
}

/// Writes the whole archive, encrypted, into `out` (on a blocking thread); returns `out`.
fn write_archive<W: Write>(encryptor: age::Encryptor, out: W, input: ArchiveInput) -> anyhow::Result<W> {
    let mut tar = tar::Builder::new(encryptor.wrap_output(out)?);
    let mut manifest = input.manifest;
    let sums = &mut manifest.entries;
    append(&mut tar, HEADER, input.header_json.len() as u64, &mut input.header_json.as_slice(), sums)?;
    for (name, path) in &input.tables {
        let f = std::fs::File::open(path)?;
        let len = f.metadata()?.len();
        append(&mut tar, name, len, &mut Counted { inner: f, bar: input.progress.clone() }, sums)?;
    }
    for (app, files) in &input.key_files {
        for (name, body) in files {
            append(&mut tar, &format!("keys/{app}/{name}"), body.len() as u64, &mut body.as_slice(), sums)?;
        }
    }
    if let Some(blobs) = &input.blobs {
        for b in &manifest.blobs {
            let reader = input.rt.block_on(open_blob_reader(blobs, &b.sha256, b.size, input.rt.clone()))?;
            append(&mut tar, &format!("blobs/{}", b.sha256), b.size, &mut Counted { inner: reader, bar: input.progress.clone() }, sums)?;
        }
    }
    let body = serde_json::to_vec_pretty(&manifest)?;
    append(&mut tar, MANIFEST, body.len() as u64, &mut body.as_slice(), &mut Vec::new())?;
    let enc = tar.into_inner()?;
    Ok(enc.finish()?)
}

async fn open_blob_reader(blobs: &BlobStore, sha256: &str, size: u64, rt: tokio::runtime::Handle) -> anyhow::Result<Box<dyn Read + Send>> {
    let Some((reader, len)) = blobs.open_blob(sha256).await? else {
        bail!("blob {sha256} disappeared from the blob store during the backup")
    };
    if len != size {
        bail!("blob {sha256} changed size during the backup");
    }
    Ok(match reader {
        updraft_store::BlobReader::File(f) => Box::new(f.into_std().await),
        r @ updraft_store::BlobReader::S3(_) => {
            let stream = r.s3_range(0, len).ok_or_else(|| anyhow!("not an S3 blob"))?;
            Box::new(StreamReader { rt, stream: Box::pin(stream), cur: bytes::Bytes::new() })
        }
    })
}

/// Appends one entry, hashing it on the way.
fn append<W: Write>(tar: &mut tar::Builder<W>, path: &str, size: u64, data: &mut dyn Read, sums: &mut Vec<EntrySum>) -> anyhow::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    let mut hashing = Hashing { inner: data.take(size), hasher: Sha256::new(), n: 0 };
    tar.append_data(&mut header, path, &mut hashing).with_context(|| format!("writing {path}"))?;
    if hashing.n != size {
        bail!("{path}: {} bytes read, {size} expected", hashing.n);
    }
    sums.push(EntrySum { path: path.to_owned(), size, sha256: hex::encode(hashing.hasher.finalize()) });
    Ok(())
}

struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    n: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        self.hasher.update(&out[..n]);
        self.n += n as u64;
        Ok(n)
    }
}

fn read_recipients(given: &[String], file: Option<&Path>) -> anyhow::Result<Vec<age::x25519::Recipient>> {
    let mut lines: Vec<String> = given.to_vec();
    if let Some(f) = file {
        let text = std::fs::read_to_string(f).map_err(|e| exit::coded(exit::USAGE, format!("cannot read {}: {e}", f.display())))?;
        lines.extend(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned));
    }
    if lines.is_empty() {
        return Err(exit::coded(
            exit::USAGE,
            "give at least one --recipient age1… or --recipients-file (create one with `updraft backup keygen`)",
        ));
    }
    lines
        .iter()
        .map(|l| {
            age::x25519::Recipient::from_str(l).map_err(|e| exit::coded(exit::USAGE, format!("{l:?} is not an age X25519 recipient: {e}")))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Reading: verify and restore share one pass over the archive.

fn load_identities(path: &Path) -> anyhow::Result<Vec<Box<dyn age::Identity>>> {
    let f = std::fs::File::open(path).map_err(|e| exit::coded(exit::USAGE, format!("cannot read {}: {e}", path.display())))?;
    let ids = age::IdentityFile::from_buffer(std::io::BufReader::new(f))
        .and_then(|f| f.into_identities().map_err(std::io::Error::other))
        .map_err(|e| exit::coded(exit::USAGE, format!("{} is not an age identity file: {e}", path.display())))?;
    if ids.is_empty() {
        return Err(exit::coded(exit::USAGE, format!("{} holds no age identity", path.display())));
    }
    Ok(ids)
}

/// One entry of an archive, as a reader hands it to the caller.
enum Entry<'a> {
    Header(&'a Header),
    Table(&'a Table),
    Row(&'a Table, Vec<Value>),
    KeyFile {
        app: String,
        name: String,
        body: Vec<u8>,
    },
    Blob {
        sha256: String,
        size: u64,
        data: &'a mut dyn Read,
    },
    /// The manifest checked out: every entry is whole; the caller may commit.
    End(&'a Manifest),
}

fn damaged(msg: impl Into<String>) -> anyhow::Error {
    exit::coded(exit::VERIFY, format!("the backup is damaged or not an Updraft backup: {}", msg.into()))
}

/// Decrypts `src` and walks its entries, calling `on` for each, checking every entry against
/// the manifest at the end. What `on` saw is only to be kept after `Entry::End`.
fn read_archive(
    src: Box<dyn Read + Send>,
    identity: &Path,
    mut on: impl FnMut(Entry) -> anyhow::Result<()>,
) -> anyhow::Result<(Header, Manifest)> {
    let identities = load_identities(identity)?;
    let decryptor = age::Decryptor::new_buffered(std::io::BufReader::new(src)).map_err(|e| damaged(format!("not an age file ({e})")))?;
    let plain = decryptor.decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity)).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => exit::coded(exit::VERIFY, "none of the given identities can decrypt this backup"),
        e => damaged(e.to_string()),
    })?;
    let mut archive = tar::Archive::new(plain);
    let mut header: Option<Header> = None;
    let mut sums: Vec<EntrySum> = Vec::new();
    let mut rows: BTreeMap<String, u64> = BTreeMap::new();
    let mut blobs_seen: Vec<BlobRef> = Vec::new();
    let mut done = None;
    for entry in archive.entries().map_err(|e| damaged(e.to_string()))? {
        let entry = entry.map_err(|e| damaged(e.to_string()))?;
        let path = entry.path().map_err(|e| damaged(e.to_string()))?.to_string_lossy().into_owned();
        let size = entry.size();
        if header.is_none() && path != HEADER {
            return Err(damaged(format!("it starts with {path}, not {HEADER}")));
        }
        let mut r = Hashing { inner: entry, hasher: Sha256::new(), n: 0 };
        if path == MANIFEST {
            let mut body = Vec::new();
            r.read_to_end(&mut body).map_err(|e| damaged(e.to_string()))?;
            let manifest: Manifest = serde_json::from_slice(&body).map_err(|e| damaged(format!("manifest: {e}")))?;
            let header = header.ok_or_else(|| damaged("no header"))?;
            if manifest.entries != sums {
                let bad = manifest
                    .entries
                    .iter()
                    .zip(&sums)
                    .find(|(a, b)| a != b)
                    .map_or_else(|| "the number of entries".to_owned(), |(a, _)| a.path.clone());
                return Err(damaged(format!("{bad} does not match the manifest")));
            }
            if manifest.tables != rows {
                return Err(damaged("the row counts do not match the manifest"));
            }
            let listed: BTreeSet<&BlobRef> = manifest.blobs.iter().collect();
            if blobs_seen.iter().any(|b| !listed.contains(b)) || (header.with_blobs && blobs_seen.len() != manifest.blobs.len()) {
                return Err(damaged("the included blobs do not match the blob manifest"));
            }
            done = Some((header, manifest));
            break;
        }
        if path == HEADER {
            let mut body = Vec::new();
            r.read_to_end(&mut body).map_err(|e| damaged(e.to_string()))?;
            let h: Header = serde_json::from_slice(&body).map_err(|e| damaged(format!("header: {e}")))?;
            if h.format != FORMAT {
                return Err(exit::coded(
                    exit::REFUSED,
                    format!("backup format {:?} is not {FORMAT}: use the Updraft version that wrote it", h.format),
                ));
            }
            on(Entry::Header(&h))?;
            header = Some(h);
        } else if let Some(rest) = path.strip_prefix("tables/") {
            let mut lines = std::io::BufReader::new(&mut r).lines();
            let first = lines.next().ok_or_else(|| damaged(format!("{path} is empty")))?.map_err(|e| damaged(e.to_string()))?;
            let table: Table = serde_json::from_str(&first).map_err(|e| damaged(format!("{path}: {e}")))?;
            if !rest.ends_with(&format!("-{}.jsonl", table.name)) {
                return Err(damaged(format!("{path} holds table {}", table.name)));
            }
            on(Entry::Table(&table))?;
            let mut n = 0u64;
            for line in lines {
                let line = line.map_err(|e| damaged(e.to_string()))?;
                let values: Vec<Value> = serde_json::from_str(&line).map_err(|e| damaged(format!("{path}: {e}")))?;
                if values.len() != table.columns.len() {
                    return Err(damaged(format!("{path}: a row has {} values for {} columns", values.len(), table.columns.len())));
                }
                on(Entry::Row(&table, values))?;
                n += 1;
            }
            rows.insert(table.name.clone(), n);
        } else if let Some(rest) = path.strip_prefix("keys/") {
            let (app, name) = rest.split_once('/').ok_or_else(|| damaged(format!("{path}: no app")))?;
            if size > 1 << 20 {
                return Err(damaged(format!("{path} is too large for a key file")));
            }
            let mut body = Vec::new();
            r.read_to_end(&mut body).map_err(|e| damaged(e.to_string()))?;
            on(Entry::KeyFile { app: app.to_owned(), name: name.to_owned(), body })?;
        } else if let Some(sha) = path.strip_prefix("blobs/") {
            if !updraft_store::is_sha256_hex(sha) {
                return Err(damaged(format!("{path} is not named by a SHA-256")));
            }
            on(Entry::Blob { sha256: sha.to_owned(), size, data: &mut r })?;
            blobs_seen.push(BlobRef { sha256: sha.to_owned(), size });
        } else {
            return Err(damaged(format!("unexpected entry {path}")));
        }
        // Whatever the caller did not read is hashed too.
        std::io::copy(&mut r, &mut std::io::sink()).map_err(|e| damaged(e.to_string()))?;
        if r.n != size {
            return Err(damaged(format!("{path} is truncated")));
        }
        let sha256 = hex::encode(r.hasher.finalize());
        if let Some(name) = path.strip_prefix("blobs/") {
            if sha256 != name {
                return Err(damaged(format!("blob {name} hashes to {sha256}")));
            }
        }
        sums.push(EntrySum { path, size, sha256 });
    }
    let (header, manifest) = done.ok_or_else(|| damaged("it ends before its manifest (truncated?)"))?;
    // Read to the end of the age stream, whose last chunk is authenticated as the last: only
    // then is the archive known whole, before the caller commits anything.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(|e| damaged(e.to_string()))?;
    on(Entry::End(&manifest))?;
    Ok((header, manifest))
}

/// What a pass over the rows learns (see [`observe`]).
#[derive(Default)]
struct Seen {
    blobs: BTreeSet<BlobRef>,
    /// (app, role, version, body) of every TUF metadata row.
    metadata: Vec<(String, String, u64, Vec<u8>)>,
    key_files: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    apps: Vec<String>,
}

impl Seen {
    fn row(&mut self, t: &Table, values: &[Value]) {
        observe(t, values, &mut self.blobs, &mut self.metadata, &mut self.key_files, &mut self.apps);
    }
}

/// Checks each app's TUF metadata in the backup as a client would have at backup time: the
/// chain of roots from version 1, then the newest timestamp, snapshot and targets.
fn verify_tuf(seen: &Seen, at: &str) -> anyhow::Result<()> {
    use updraft_core::tuf::TrustedSet;
    let now =
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).map_err(|e| damaged(format!("created_at: {e}")))?;
    for app in &seen.apps {
        let mut rows: Vec<&(String, String, u64, Vec<u8>)> = seen.metadata.iter().filter(|m| &m.0 == app).collect();
        rows.sort_by_key(|m| m.2);
        let roots: Vec<&[u8]> = rows.iter().filter(|m| m.1 == "root").map(|m| m.3.as_slice()).collect();
        let newest = |role: &str| rows.iter().rev().find(|m| m.1 == role).map(|m| m.3.as_slice());
        let bad = |e: updraft_core::tuf::TufError| damaged(format!("the TUF metadata of {app} does not verify: {e}"));
        let first = roots.first().ok_or_else(|| damaged(format!("app {app} has no root metadata")))?;
        let mut trusted = TrustedSet::new(first).map_err(bad)?;
        for r in &roots[1..] {
            trusted.update_root(r).map_err(bad)?;
        }
        trusted.update_timestamp(newest("timestamp").unwrap_or_default(), now).map_err(bad)?;
        trusted.update_snapshot(newest("snapshot").unwrap_or_default(), now).map_err(bad)?;
        trusted.update_targets(newest("targets").unwrap_or_default(), now).map_err(bad)?;
    }
    Ok(())
}

/// The referenced blobs a backup does not include that `blobs` lacks (or holds at another size).
async fn missing_blobs(blobs: &BlobStore, manifest: &Manifest, included: &BTreeSet<String>) -> anyhow::Result<Vec<String>> {
    let mut missing = Vec::new();
    for b in manifest.blobs.iter().filter(|b| !included.contains(&b.sha256)) {
        match blobs.open_blob(&b.sha256).await? {
            Some((_, len)) if len == b.size => {}
            _ => missing.push(b.sha256.clone()),
        }
    }
    Ok(missing)
}

async fn verify(args: VerifyArgs) -> anyhow::Result<i32> {
    let loc = Location::parse(&args.from)?;
    load_identities(&args.identity)?;
    let identity = args.identity.clone();
    let blob_store = if args.check_blobs {
        let config = args.store.config()?;
        Some(config.blobs.open().await.map_err(|e| exit::coded(exit::UNREACHABLE, format!("cannot open the blob store: {e}")))?)
    } else {
        None
    };
    let (src, size) = open_source(&loc).await?;
    let progress = bar(size, "verify", args.json);
    let src: Box<dyn Read + Send> = Box::new(Counted { inner: src, bar: progress.clone() });
    let (header, manifest, seen, included) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let mut seen = Seen::default();
        let mut included = BTreeSet::new();
        let (header, manifest) = read_archive(src, &identity, |e| {
            match e {
                Entry::Row(t, values) => seen.row(t, &values),
                Entry::Blob { sha256, .. } => {
                    included.insert(sha256);
                }
                Entry::KeyFile { app, name, body } => {
                    seen.key_files.entry(app).or_default().insert(name, body);
                }
                _ => {}
            }
            Ok(())
        })?;
        Ok((header, manifest, seen, included))
    })
    .await??;
    progress.finish_and_clear();
    verify_tuf(&seen, &header.created_at)?;
    let missing = match &blob_store {
        Some(b) => Some(missing_blobs(b, &manifest, &included).await?),
        None => None,
    };
    let rows: u64 = manifest.tables.values().sum();
    let ok = missing.as_ref().is_none_or(Vec::is_empty);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "ok": ok, "id": header.id, "created_at": header.created_at, "schema_version": header.schema_version,
                "source": header.source, "apps": manifest.apps, "tables": manifest.tables, "rows": rows,
                "blobs": manifest.blobs.len(), "blobs_included": included.len(), "entries": manifest.entries.len() + 1,
                "missing_blobs": missing,
            })
        );
    } else {
        println!(
            "backup {} ({}, schema {}) verifies: {} apps, {rows} rows, {} of {} blobs included; every entry matches its manifest and every app's TUF metadata verifies",
            header.id,
            header.created_at,
            header.schema_version,
            manifest.apps.len(),
            included.len(),
            manifest.blobs.len()
        );
        if let Some(m) = &missing {
            if m.is_empty() {
                println!("the blob store holds every referenced blob the backup does not include");
            } else {
                println!("the blob store lacks {} referenced blobs the backup does not include, such as {}", m.len(), m[0]);
            }
        }
    }
    Ok(if ok { exit::OK } else { exit::FAILURE })
}

/// Streams a blob from a sync reader (on a blocking thread) into the blob store; returns its
/// address as the store computed it.
fn store_blob(rt: &tokio::runtime::Handle, blobs: &Arc<BlobStore>, size: u64, data: &mut dyn Read) -> anyhow::Result<String> {
    let up = rt.block_on(blobs.create_upload(size, "backup-restore"))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    let store = blobs.clone();
    let task = rt.spawn(async move {
        let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) });
        let appended = store.append(&up, 0, body).await;
        (up, appended)
    });
    loop {
        let mut buf = vec![0u8; 1 << 20];
        match data.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                buf.truncate(n);
                if tx.blocking_send(Ok(bytes::Bytes::from(buf))).is_err() {
                    break;
                }
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(std::io::Error::new(e.kind(), e.to_string())));
                return Err(damaged(e.to_string()));
            }
        }
    }
    drop(tx);
    let (up, appended) = rt.block_on(task)?;
    appended?;
    Ok(rt.block_on(blobs.finish(&up))?.sha256)
}

async fn restore(args: RestoreArgs) -> anyhow::Result<i32> {
    let loc = Location::parse(&args.from)?;
    load_identities(&args.identity)?;
    let identity = args.identity.clone();
    let json = args.json;
    let config = args.store.config()?;
    let db = Arc::new(
        Database::open(&config.database)
            .await
            .map_err(|e| exit::coded(exit::UNREACHABLE, format!("cannot open the database {}: {e}", config.database.redacted())))?,
    );
    let blobs =
        Arc::new(config.blobs.open().await.map_err(|e| exit::coded(exit::UNREACHABLE, format!("cannot open the blob store: {e}")))?);
    let repo = Repo::new(&config.data_dir, config.key_passphrase.clone(), config.lifetimes)
        .with_pkcs11(updraft_server::keystore::Pkcs11Defaults { module: config.pkcs11_module.clone(), pin: config.pkcs11_pin.clone() })
        .with_marks(blobs.clone());
    let pending = if db.schema_version().await? > 0 { db.meta().get_setting(updraft_server::RESTORE_PENDING).await? } else { None };

    let (header, manifest, loaded, blobs_written) = match pending {
        Some(p) => {
            // A restore that stopped after its commit: finish it (the archive is not read again).
            if !json {
                eprintln!("finishing the restore started at {p}");
            }
            (None, None, Vec::new(), 0)
        }
        None => {
            let (src, size) = open_source(&loc).await?;
            let progress = bar(size, "restore", json);
            let src: Box<dyn Read + Send> = Box::new(Counted { inner: src, bar: progress.clone() });
            let rt = tokio::runtime::Handle::current();
            let (db2, blobs2, data_dir) = (db.clone(), blobs.clone(), config.data_dir.clone());
            let passphrase = config.key_passphrase.clone();
            let lifetimes = config.lifetimes;
            let result = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let mut loader: Option<updraft_store::copy::Loader> = None;
                let mut seen = Seen::default();
                let mut archive_keys: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
                let mut included = BTreeSet::new();
                let mut blobs_written = 0u64;
                let mut done = None;
                let (header, manifest) = read_archive(src, &identity, |e| {
                    match e {
                        Entry::Header(h) => {
                            if h.schema_version > updraft_store::copy::latest_schema() {
                                return Err(exit::coded(
                                    exit::REFUSED,
                                    format!("the backup is at schema {}, newer than this updraft knows: use a newer binary", h.schema_version),
                                ));
                            }
                            loader = Some(rt.block_on(async {
                                db2.meta().migrate_to(h.schema_version).await?;
                                db2.loader().await
                            }).map_err(|e| match e {
                                StoreError::Conflict(m) => exit::coded(exit::REFUSED, format!("{m}: restore only fills an empty database")),
                                e => anyhow!("preparing the target database: {e}"),
                            })?);
                        }
                        Entry::Table(t) => rt.block_on(loader.as_mut().ok_or_else(|| damaged("no header"))?.table(t))?,
                        Entry::Row(t, values) => {
                            seen.row(t, &values);
                            rt.block_on(loader.as_mut().ok_or_else(|| damaged("no header"))?.row(values))?;
                        }
                        Entry::KeyFile { app, name, body } => {
                            archive_keys.entry(app).or_default().insert(name, body);
                        }
                        Entry::Blob { sha256, size, data } => {
                            let have = rt.block_on(blobs2.open_blob(&sha256))?.map(|(_, len)| len);
                            if have != Some(size) {
                                let got = store_blob(&rt, &blobs2, size, data)?;
                                if got != sha256 {
                                    return Err(damaged(format!("blob {sha256} hashes to {got}")));
                                }
                                blobs_written += 1;
                            }
                            included.insert(sha256);
                        }
                        Entry::End(manifest) => {
                            let missing = rt.block_on(missing_blobs(&blobs2, manifest, &included))?;
                            if !missing.is_empty() {
                                return Err(exit::coded(
                                    exit::REFUSED,
                                    format!(
                                        "the blob store lacks {} blobs the backup references but does not include (such as {}): point --blobs at the store that holds them, or restore a backup made with --with-blobs",
                                        missing.len(),
                                        missing[0]
                                    ),
                                ));
                            }
                            // Keys first (an embedded install's from the archive, a shared
                            // one's from its key_files rows), then one commit of every row.
                            let keys = if archive_keys.is_empty() { seen.key_files.clone() } else { archive_keys.clone() };
                            let repo = Repo::new(&data_dir, passphrase.clone(), lifetimes);
                            for app in &seen.apps {
                                let id: AppId = app.parse().map_err(|e| damaged(format!("app id {app}: {e}")))?;
                                let files = keys.get(app).cloned().unwrap_or_default();
                                updraft_server::cluster::install_key_files(&repo, &id, &files).map_err(|e| anyhow!("{}", e.message))?;
                            }
                            let mut l = loader.take().ok_or_else(|| damaged("no header"))?;
                            let marker = format!("{} (backup {})", updraft_store::now_rfc3339(), manifest_id(manifest));
                            let counts = rt.block_on(async {
                                l.put_setting(updraft_server::RESTORE_PENDING, &marker).await?;
                                l.commit().await
                            })?;
                            done = Some(counts);
                        }
                    }
                    Ok(())
                })?;
                Ok((header, manifest, done.unwrap_or_default(), blobs_written, archive_keys.is_empty()))
            })
            .await?;
            progress.finish_and_clear();
            let (header, manifest, loaded, written, from_shared) = result?;
            // The schema on to this binary's; an embedded install's keys into a shared database.
            db.meta().migrate().await.context("migrating the restored database")?;
            if db.meta().shared() && !from_shared {
                for app in db.meta().list_apps().await? {
                    let id: AppId = app.id.parse().map_err(|e| anyhow!("stored app id {}: {e}", app.id))?;
                    updraft_server::cluster::push_keys_from(db.meta(), &repo, &id)
                        .await
                        .map_err(|e| anyhow!("keys of {id}: {}", e.message))?;
                }
            }
            (Some(header), Some(manifest), loaded, written)
        }
    };

    // Re-sign every app above what may have been served, then open the install to servers.
    let apps = resign_all(db.meta(), &repo, &blobs, args.served_floor, "backup.restored").await?;
    let store = db.meta();
    store.delete_setting(updraft_server::RESTORE_PENDING).await?;

    let rows: u64 = loaded.iter().map(|(_, n)| n).sum();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "id": header.as_ref().map(|h| h.id.clone()), "created_at": header.as_ref().map(|h| h.created_at.clone()),
                "database": config.database.redacted(), "blobs": blobs.describe(), "rows": rows,
                "blob_manifest": manifest.as_ref().map(|m| m.blobs.len()), "blobs_written": blobs_written, "apps": apps,
            })
        );
    } else {
        if let Some(h) = &header {
            println!("restored backup {} ({}): {rows} rows, {blobs_written} blobs written into {}", h.id, h.created_at, blobs.describe());
        }
        for a in &apps {
            println!("{}: metadata re-signed at {}", a["app"].as_str().unwrap_or_default(), a["signed"]);
        }
        println!("the install is ready: start `updraft serve` with the same settings");
    }
    Ok(exit::OK)
}

/// Re-signs every app's targets, snapshot and timestamp above the highest version that may
/// have been served: the stored metadata, the served-version mark in the blob store, and
/// `floor`. One audit event (`action`) per app; rewrites `DATA/trust/APP.root.json`.
async fn resign_all(
    store: &dyn updraft_store::MetaStore,
    repo: &Repo,
    blobs: &BlobStore,
    floor: Option<u64>,
    action: &str,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut apps = Vec::new();
    for app in store.list_apps().await? {
        let id: AppId = app.id.parse().map_err(|e| anyhow!("stored app id {}: {e}", app.id))?;
        let mut stored = ServedVersions::default();
        for role in ["root", "targets", "snapshot", "timestamp"] {
            stored.raise(&store.latest_metadata(id.as_str(), role).await?.into_iter().collect::<Vec<_>>());
        }
        let marked = ServedVersions::read_mark(blobs, &id).await?.unwrap_or_default();
        let f = floor.unwrap_or(0);
        let served = marked.max(ServedVersions { root: 0, targets: f, snapshot: f, timestamp: f });
        if marked.root > stored.root {
            eprintln!(
                "warning: {id}: root version {} was served, this database holds {}: clients that follow it need the keys it names; redo that key change (docs/keys.md)",
                marked.root, stored.root
            );
        }
        let releases = store.list_releases(id.as_str()).await?;
        let metadata = repo.sign_after_restore(store, &id, &releases, served).await.map_err(|e| anyhow!("re-signing {id}: {e}"))?;
        let versions: BTreeMap<String, u64> = metadata.iter().map(|m| (m.role.clone(), m.version)).collect();
        let entry = updraft_store::AuditEntry {
            actor: "system".into(),
            action: action.into(),
            app: Some(id.to_string()),
            detail: serde_json::json!({ "stored": stored, "served_mark": marked, "served_floor": floor, "metadata_versions": versions }),
            request_id: None,
        };
        store.apply(id.as_str(), &updraft_store::Changeset { releases: vec![], metadata, audit: Some(entry) }).await?;
        if let Some(root) = store.get_metadata(id.as_str(), "root", 1).await? {
            repo.write_trust_file(&id, &root.body).map_err(|e| anyhow!("{e}"))?;
        }
        apps.push(serde_json::json!({"app": id.as_str(), "stored": stored, "served_mark": marked, "signed": versions}));
    }
    Ok(apps)
}

async fn resign(args: ResignArgs) -> anyhow::Result<i32> {
    let config = args.store.config()?;
    let db = Database::open(&config.database)
        .await
        .map_err(|e| exit::coded(exit::UNREACHABLE, format!("cannot open the database {}: {e}", config.database.redacted())))?;
    if db.schema_version().await? == 0 {
        return Err(exit::coded(exit::FAILURE, format!("{} holds no Updraft database", config.database.redacted())));
    }
    db.meta().migrate().await.context("migrating the database")?;
    let blobs =
        Arc::new(config.blobs.open().await.map_err(|e| exit::coded(exit::UNREACHABLE, format!("cannot open the blob store: {e}")))?);
    let repo = Repo::new(&config.data_dir, config.key_passphrase.clone(), config.lifetimes)
        .with_pkcs11(updraft_server::keystore::Pkcs11Defaults { module: config.pkcs11_module.clone(), pin: config.pkcs11_pin.clone() })
        .with_marks(blobs.clone());
    if db.meta().shared() {
        for app in db.meta().list_apps().await? {
            let id: AppId = app.id.parse().map_err(|e| anyhow!("stored app id {}: {e}", app.id))?;
            updraft_server::cluster::pull_keys_into(db.meta(), &repo, &id).await.map_err(|e| anyhow!("keys of {id}: {}", e.message))?;
        }
    }
    let apps = resign_all(db.meta(), &repo, &blobs, args.served_floor, "metadata.resigned").await?;
    if args.json {
        println!("{}", serde_json::json!({ "apps": apps }));
    } else {
        for a in &apps {
            println!("{}: metadata re-signed at {}", a["app"].as_str().unwrap_or_default(), a["signed"]);
        }
    }
    Ok(exit::OK)
}

fn manifest_id(m: &Manifest) -> String {
    m.entries.first().map(|e| e.sha256[..12].to_owned()).unwrap_or_default()
}
