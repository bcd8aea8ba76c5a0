//! `ordo-bench`: see `--help` and docs/benchmarks.md.

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use ordo_bench::report::RunOutcome;
use ordo_bench::run::run_one;
use ordo_bench::spec::{Knobs, RunSpec};
use ordo_bench::sweep;

// The same allocator as the `ordo` binary (docs/dependencies.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Commit latency and throughput of an ordo cluster under closed-loop
/// proposers.
///
/// With no arguments: 3 nodes in this process (each on its own executor),
/// real TCP on loopback, the disk log in a fresh temporary directory with
/// fsync `always`, 64 proposers of 64 B payloads, 10 s after a 1 s warm-up;
/// prints commits/s, latency percentiles and this machine's floor measured
/// in the same run. Engine-only mode: `--storage memory --transport inproc
/// --payload 0`.
#[derive(Parser, Debug)]
#[command(name = "ordo-bench", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Every combination of the knob lists (e.g. `--concurrency 1,64,256
    /// --fsync always,group:200us`), one fresh cluster per run; writes
    /// table.md, runs.csv and SVG plots (throughput against p99 per swept
    /// knob, a percentile distribution per run) into --out.
    Sweep(RunArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    knobs: Knobs,
    /// One JSON object per run on stdout, one line each (no progress bar).
    #[arg(long)]
    json: bool,
    /// Write table.md, runs.csv and plots here (a sweep's default:
    /// target/ordo-bench/sweep-<unix time>).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let (args, sweeping) = match cli.command {
        Some(Command::Sweep(args)) => (args, true),
        None => (cli.run, false),
    };
    match run(args, sweeping) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ordo-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs, sweeping: bool) -> Result<(), String> {
    let specs = args.knobs.expand()?;
    let out = args.out.clone().or_else(|| {
        sweeping.then(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            PathBuf::from(format!("target/ordo-bench/sweep-{now}"))
        })
    });
    let progress = !args.json && std::io::stderr().is_terminal();
    let mut outcomes: Vec<(RunSpec, RunOutcome)> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        if !args.json {
            eprintln!(
                "ordo-bench: run {}/{}: {}",
                i + 1,
                specs.len(),
                spec.label()
            );
        }
        let outcome = run_one(spec, progress)?;
        if args.json {
            println!("{}", outcome.result.json());
        } else {
            println!("{}", outcome.result.summary());
        }
        outcomes.push((spec.clone(), outcome));
    }
    if let Some(out) = out {
        let table = sweep::write_outputs(&out, &args.knobs, &outcomes)?;
        if !args.json {
            println!("{table}");
            eprintln!("ordo-bench: table, CSV and plots in {}", out.display());
        }
    }
    Ok(())
}
