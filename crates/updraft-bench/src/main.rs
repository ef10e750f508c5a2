//! `updraft-bench`: measures Updraft against the cheapest things that could do its job — nginx
//! serving a file, a bare axum "hello world", `sha256sum` — on this machine, in one run, and
//! writes the medians as JSON (see `docs/benchmarks.md`). It also holds the fixed workload the
//! CI perf gate runs under callgrind (`gate`). Run it through `benches/run.sh` and
//! `scripts/perf-gate.sh`, which install the tools and build it in release mode.

mod alloc;
mod gate;
mod hello;
mod load;
mod procs;
mod run;
mod seed;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

#[derive(Parser)]
#[command(name = "updraft-bench", about = "Updraft benchmarks against nginx, a hello-world server and sha256sum.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole suite: start Updraft, nginx and a hello-world server on loopback, load them
    /// in turn with wrk, print medians and ratios, write JSON.
    Run(run::RunArgs),
    /// A bare axum server answering every GET with the bytes of one file (the ceiling).
    Hello {
        #[arg(long)]
        listen: String,
        #[arg(long)]
        body: PathBuf,
    },
    /// Adds published releases to an app in a stopped server's data directory, through the
    /// store and repository libraries, with one signing for the whole batch.
    Seed {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        app: String,
        /// Total number of releases the app should have afterwards.
        #[arg(long)]
        releases: usize,
        #[arg(long, default_value = "linux-x86_64")]
        platform: String,
    },
    /// Open-loop load at a fixed rate; prints latency percentiles as JSON.
    Load(load::LoadArgs),
    /// The perf-gate workload: N update checks over loopback HTTP on one thread (run it under
    /// `valgrind --tool=callgrind --toggle-collect='*gate::measured_*'`).
    Gate(gate::GateArgs),
    /// Turns a gate run's callgrind profile and counts into results for `updraft slo check`.
    GateReport(gate::ReportArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Hello { listen, body } => hello::serve(&listen, &body),
        Command::Seed { data, app, releases, platform } => seed::seed_dir(&data, &app, releases, &platform),
        Command::Load(args) => load::main(args),
        Command::Gate(args) => gate::main(args),
        Command::GateReport(args) => gate::report(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
