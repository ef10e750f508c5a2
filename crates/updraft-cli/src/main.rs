//! The `updraft` binary: flag parsing and glue. `serve` runs the server library; the admin
//! commands speak the admin HTTP API; `client` drives the client library. Every failure maps
//! to one of the exit codes in [`exit`].

mod admin;
mod audit_cmd;
mod backup;
mod client_cmd;
mod exit;
mod health_cmd;
mod keys_cmd;
mod migrate_store;
mod rollout_cmd;
mod serve;
mod slo;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "updraft", version, about = "Updraft: signed releases, staged rollouts and verified updates.")]
#[command(
    after_help = "Exit codes: 0 ok, 1 failure, 2 usage, 3 no update available, 4 verification refused, 5 server unreachable or failing, 6 request refused by the server, 7 an objective not met (slo check)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    #[command(
        after_help = "Example:\n  updraft serve                       # ./updraft-data, 127.0.0.1:8080\n  updraft serve --data /var/lib/updraft --listen 0.0.0.0:8080"
    )]
    Serve(serve::ServeArgs),
    /// Bring the metadata database's schema up to date (serve also does this on start).
    #[command(
        after_help = "Example:\n  updraft migrate --database postgres://updraft@db.internal/updraft\n  UPDRAFT_DATABASE=sqlite:///var/lib/updraft/updraft.db updraft migrate --json"
    )]
    Migrate(serve::MigrateArgs),
    /// Move an embedded install (SQLite + files) to PostgreSQL + an S3-compatible bucket.
    #[command(
        after_help = "Example:\n  AWS_REGION=eu-west-1 updraft migrate-store --from /var/lib/updraft \\\n    --to postgres://updraft@db.internal/updraft --to-blobs s3://updraft-blobs/prod\n\nStop the embedded server first; the target database must be new. See docs/scale-out.md."
    )]
    MigrateStore(migrate_store::MigrateStoreArgs),
    /// Encrypted backups of a whole install (metadata, keys, blob manifest, optionally blobs),
    /// and restores.
    #[command(subcommand)]
    Backup(backup::BackupCmd),
    /// Manage apps.
    #[command(subcommand)]
    App(admin::AppCmd),
    /// Publish, list and yank releases.
    #[command(subcommand)]
    Release(admin::ReleaseCmd),
    /// Change a release's rollout.
    #[command(subcommand)]
    Rollout(admin::RolloutCmd),
    /// Read and verify the hash-chained audit log.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCmd),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(admin::TokenCmd),
    /// TUF signing keys: list, rotate, generate, and the offline root ceremony.
    #[command(subcommand)]
    Keys(keys_cmd::KeysCmd),
    /// Check for, download and install updates, verified with TUF.
    #[command(subcommand)]
    Client(client_cmd::ClientCmd),
    /// Release health from crash and session reports: crash-free rates, issues.
    #[command(subcommand)]
    Health(health_cmd::HealthCmd),
    /// Privacy: erase one install's data, set how long data is kept.
    #[command(subcommand)]
    Privacy(health_cmd::PrivacyCmd),
    /// Check benchmark results against service-level objectives.
    #[command(subcommand)]
    Slo(slo::SloCmd),
}

fn main() {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        // Rust ignores SIGPIPE, so printing into a closed pipe (`updraft audit list | head`)
        // would panic; a command-line tool should end quietly instead, as `ls | head` does.
        // Not for `serve`: a server must outlive whoever reads its stdout.
        // SAFETY: called before any thread is started; SIG_DFL is a valid disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(exit::FAILURE);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Migrate(args) => serve::migrate(args).await,
            Command::MigrateStore(args) => migrate_store::run(args).await,
            Command::Backup(cmd) => backup::run(cmd).await,
            Command::App(cmd) => admin::run_app(cmd).await,
            Command::Release(cmd) => admin::run_release(cmd).await,
            Command::Rollout(cmd) => admin::run_rollout(cmd).await,
            Command::Token(cmd) => admin::run_token(cmd).await,
            Command::Audit(cmd) => audit_cmd::run(cmd).await,
            Command::Client(cmd) => client_cmd::run(cmd).await,
            Command::Health(cmd) => health_cmd::run_health(cmd).await,
            Command::Privacy(cmd) => health_cmd::run_privacy(cmd).await,
            Command::Keys(cmd) => keys_cmd::run(cmd).await,
            Command::Slo(cmd) => slo::run(cmd),
        }
    });
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            let code = exit::code_of(&e);
            eprintln!("error: {e:#}");
            code
        }
    };
    std::process::exit(code);
}
