//! `updraft serve`: layers flags over `UPDRAFT_*` over the TOML file named by `--config`, starts
//! the server, prints the bootstrap token once, and stops gracefully on SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use updraft_server::{RawConfig, Server};

/// Where an install keeps its state: what `serve`, `backup` and `migrate` read.
#[derive(Args)]
pub struct StoreArgs {
    /// Data directory (SQLite database, blobs, keys, trust roots) [default: ./updraft-data].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Metadata database: sqlite://PATH or postgres://USER@HOST/DB [default: sqlite://DATA/updraft.db].
    #[arg(long)]
    pub database: Option<String>,
    /// Blob store: a directory or s3://BUCKET[/PREFIX] (AWS_* environment) [default: DATA/blobs].
    #[arg(long)]
    pub blobs: Option<String>,
    /// TOML configuration file (read only when named; flags and UPDRAFT_* override it).
    #[arg(long, env = "UPDRAFT_CONFIG")]
    pub config: Option<PathBuf>,
}

impl StoreArgs {
    /// These flags over `UPDRAFT_*` over the TOML file, validated.
    pub fn config(self) -> anyhow::Result<updraft_server::Config> {
        self.config_with(RawConfig::default())
    }

    /// [`StoreArgs::config`] with more flags.
    fn config_with(self, more: RawConfig) -> anyhow::Result<updraft_server::Config> {
        let flags = RawConfig { data: self.data, database: self.database, blobs: self.blobs, ..more };
        layered(flags, self.config.as_deref())
    }
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<String>,
    /// Base URL clients use to reach this server, for links in answers.
    #[arg(long)]
    public_url: Option<String>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "UPDRAFT_LOG_JSON")]
    log_json: bool,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<i32> {
    init_logging(args.log_json);
    let config = args.store.config_with(RawConfig { listen: args.listen, public_url: args.public_url, ..Default::default() })?;
    let data_dir = config.data_dir.clone();
    let server = Server::start(config).await.context("cannot start the server")?;
    let addr = server.local_addr();
    tracing::info!(%addr, data = %data_dir.display(), "updraft listening");
    if let Some(token) = &server.bootstrap_token {
        // Printed once: only its hash is stored.
        println!("Bootstrap admin token (shown once; store it safely):\n  {token}");
    }
    println!("updraft listening on http://{addr} (data in {})", data_dir.display());
    server.run(shutdown_signal()).await?;
    Ok(crate::exit::OK)
}

/// Flags over `UPDRAFT_*` over the TOML file, validated.
fn layered(flags: RawConfig, file: Option<&std::path::Path>) -> anyhow::Result<updraft_server::Config> {
    let env = RawConfig::from_env(|k| std::env::var(k).ok()).map_err(join_errors)?;
    let file = match file {
        Some(path) => RawConfig::from_toml_file(path)?,
        None => RawConfig::default(),
    };
    flags.over(env).over(file).validate().map_err(join_errors)
}

#[derive(Args)]
pub struct MigrateArgs {
    /// Data directory, for the default SQLite database [default: ./updraft-data].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Metadata database: sqlite://PATH or postgres://USER@HOST/DB [default: sqlite://DATA/updraft.db].
    #[arg(long)]
    database: Option<String>,
    /// TOML configuration file, as for `serve`.
    #[arg(long, env = "UPDRAFT_CONFIG")]
    config: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// `updraft migrate`: brings the database schema to this binary's version, as `serve` does
/// on start (safe to run again, and while other instances run).
pub async fn migrate(args: MigrateArgs) -> anyhow::Result<i32> {
    let flags = RawConfig { data: args.data, database: args.database, ..Default::default() };
    let config = layered(flags, args.config.as_deref())?;
    let store = config.database.open().await.map_err(|e| {
        crate::exit::coded(crate::exit::UNREACHABLE, format!("cannot open the database {}: {e}", config.database.redacted()))
    })?;
    store.migrate().await.map_err(|e| anyhow::anyhow!("migrating {}: {e}", config.database.redacted()))?;
    if args.json {
        println!("{}", serde_json::json!({"database": config.database.redacted(), "migrated": true}));
    } else {
        println!("{}: schema is current", config.database.redacted());
    }
    Ok(crate::exit::OK)
}

fn join_errors(errors: Vec<updraft_server::config::ConfigError>) -> anyhow::Error {
    let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
    crate::exit::coded(2, format!("invalid configuration:\n{}", lines.join("\n")))
}

fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("UPDRAFT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
