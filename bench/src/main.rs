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
    /// Searches the batch, pipeline, fsync, notify and shard knobs (and the
    /// concurrency, for a throughput goal) for `--goal` on this machine and
    /// data directory: `--goal "p99<2ms"` is the most commits/s with p99
    /// under 2 ms, `--goal min:p50 --rate 50000` the lowest p50 at 50,000
    /// proposals/s. Ends with the ordo.toml snippet to paste; writes
    /// tune.md (every trial), tuned.toml and tune.svg into --out.
    Tune(TuneArgs),
    /// Regenerates the knob tables of docs/tuning.md: every table's sweep
    /// (concurrency 1, 64 and 256), each configuration --repeat times,
    /// the repeats interleaved, each figure the range of its repeats. With
    /// --write, the tables replace their sections of that page.
    Tables(TablesArgs),
    /// Where one commit's time goes: a C = 1 run of nodes in this process
    /// with every hop timestamped (the proposer's send, the leader taking
    /// the proposal, appends, AppendEntries and their answers, syncs,
    /// apply, the answer), then each hop's median offset and gap, beside
    /// the run's floor. Takes the run's knobs (not --procs).
    Timeline(RunArgs),
    /// This machine's disk as three voters sharing it see it, with no ordo
    /// running: three threads make paced 4 KiB O_DSYNC writes at once (the
    /// quorum floor's rounds) for --duration, then the time until the
    /// second completes by percentile, every round of 20 ms or more (a
    /// stall every commit on this disk would wait out), and the durable
    /// write rate of three logs.
    Disk(DiskArgs),
}

#[derive(Args, Debug)]
struct DiskArgs {
    /// How long the writes go on.
    #[arg(long, default_value = "10s", value_parser = ordo_bench::spec::parse_duration)]
    duration: std::time::Duration,
    /// Where the files go (default: where a run's data would; tmpfs is
    /// refused, it has no O_DIRECT).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
struct TablesArgs {
    /// Runs of each configuration (the table shows their range).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Measured time per run.
    #[arg(long, default_value = "3s")]
    duration: String,
    /// Only these tables (their flags: `fsync,shards`); default all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The page whose marked sections the tables replace
    /// (docs/tuning.md); without it they are printed.
    #[arg(long)]
    write: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct TuneArgs {
    /// What to optimise: `<percentile><<latency>` or `min:<percentile>`
    /// (percentiles p50, p90, p99, p99.9).
    #[arg(long)]
    goal: String,
    /// Walks over every knob (a second pass starts from the first's
    /// result).
    #[arg(long, default_value_t = 1)]
    passes: usize,
    /// A candidate replaces the current value only when it beats it by
    /// more than this fraction (runs are noisy).
    #[arg(long, default_value_t = 0.03)]
    min_gain: f64,
    #[command(flatten)]
    run: RunArgs,
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
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let cli = Cli::parse();
    let recorder = ordo_bench::timeline::Recorder::default();
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"))
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter());
    if matches!(cli.command, Some(Command::Timeline(_))) {
        // Only the timeline's hops, at TRACE, go to the recorder.
        let hops = tracing_subscriber::filter::Targets::new()
            .with_target(ordo_engine::node::timeline::TARGET, tracing::Level::TRACE);
        tracing_subscriber::registry()
            .with(fmt)
            .with(recorder.clone().with_filter(hops))
            .init();
    } else {
        tracing_subscriber::registry().with(fmt).init();
    }
    let result = match cli.command {
        Some(Command::Sweep(args)) => run(args, true),
        Some(Command::Tune(args)) => tune(args),
        Some(Command::Tables(args)) => tables(args),
        Some(Command::Timeline(args)) => timeline(args, &recorder),
        Some(Command::Disk(args)) => disk(args),
        None => run(cli.run, false),
    };
    match result {
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

fn tune(args: TuneArgs) -> Result<(), String> {
    let goal: ordo_bench::tune::Goal = args.goal.parse()?;
    if args.run.knobs.fsync.iter().any(|f| f == "none") {
        return Err("tune: --fsync none is not durable; tune searches durable modes only".into());
    }
    let start = args
        .run
        .knobs
        .expand()?
        .into_iter()
        .next()
        .ok_or("tune: the knobs give no run")?;
    let out = args.run.out.clone().unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from(format!("target/ordo-bench/tune-{now}"))
    });
    let progress = std::io::stderr().is_terminal();
    let mut n = 0;
    let tuned = ordo_bench::tune::search(
        start,
        &goal,
        args.passes,
        args.min_gain,
        |spec| {
            n += 1;
            eprintln!("ordo-bench tune: trial {n}: {}", spec.label());
            run_one(spec, progress)
        },
        |trial| {
            let r = &trial.outcome.result;
            eprintln!(
                "ordo-bench tune:   {}: {:.0} commits/s, p50 {:.1} µs, {} {:.1} µs, {}",
                trial.changed,
                r.commits_per_s,
                r.p50_us,
                goal.percentile().name(),
                goal.percentile().of(r),
                if trial.score.is_some() {
                    "meets the goal"
                } else {
                    "misses the goal"
                }
            );
        },
    )?;
    ordo_bench::tune::write_outputs(&out, &args.goal, &goal, &tuned)?;
    println!("{}", ordo_bench::tune::table(&goal, &tuned));
    match tuned.best {
        Some(best) => {
            let trial = &tuned.trials[best];
            println!(
                "chosen: trial {} ({} proposers{}), {:.0} commits/s, {} {:.1} µs; paste into ordo.toml:\n",
                best + 1,
                trial.spec.concurrency,
                trial
                    .spec
                    .rate
                    .map_or(String::new(), |r| format!(", {r}/s offered")),
                trial.outcome.result.commits_per_s,
                goal.percentile().name(),
                goal.percentile().of(&trial.outcome.result)
            );
            println!("{}", ordo_bench::tune::snippet(&trial.spec));
        }
        None => println!("no trial met the goal {:?}", args.goal),
    }
    eprintln!(
        "ordo-bench tune: tune.md, tuned.toml and tune.svg in {}",
        out.display()
    );
    Ok(())
}

fn tables(args: TablesArgs) -> Result<(), String> {
    use ordo_bench::tables::{TABLES, markdown, write_page};
    let chosen: Vec<_> = TABLES
        .iter()
        .filter(|t| args.only.is_empty() || args.only.iter().any(|o| o == t.flag))
        .copied()
        .collect();
    if chosen.is_empty() {
        let flags: Vec<&str> = TABLES.iter().map(|t| t.flag).collect();
        return Err(format!(
            "--only: no such table; the tables are {}",
            flags.join(", ")
        ));
    }
    let specs = chosen
        .iter()
        .map(|t| t.specs(&args.duration))
        .collect::<Result<Vec<_>, _>>()?;
    let total: usize = specs.iter().map(Vec::len).sum::<usize>() * args.repeat.max(1);
    let mut results: Vec<Vec<Vec<ordo_bench::report::RunResult>>> =
        specs.iter().map(|s| vec![Vec::new(); s.len()]).collect();
    let mut n = 0;
    for _ in 0..args.repeat.max(1) {
        for (t, table_specs) in specs.iter().enumerate() {
            for (k, spec) in table_specs.iter().enumerate() {
                n += 1;
                eprintln!("ordo-bench tables: run {n}/{total}: {}", spec.label());
                results[t][k].push(run_one(spec, false)?.result);
            }
        }
    }
    let texts: Vec<_> = chosen
        .iter()
        .zip(&specs)
        .zip(&results)
        .map(|((table, specs), results)| (*table, markdown(table, &args.duration, specs, results)))
        .collect();
    match &args.write {
        Some(path) => {
            write_page(path, &texts)?;
            eprintln!(
                "ordo-bench tables: {} tables written into {}",
                texts.len(),
                path.display()
            );
        }
        None => {
            for (_, text) in &texts {
                println!("{text}");
            }
        }
    }
    Ok(())
}

fn disk(args: DiskArgs) -> Result<(), String> {
    let candidates = ordo_bench::data_dir::default_candidates();
    let chosen = ordo_bench::data_dir::choose(args.data_dir.as_deref(), false, &candidates)
        .map_err(|e| e.to_string())?;
    if let Some(warning) = chosen.warning {
        eprintln!("ordo-bench: {warning}");
    }
    let dir = tempfile::Builder::new()
        .prefix("ordo-bench-disk-")
        .tempdir_in(&chosen.dir)
        .map_err(|e| format!("cannot create a directory in {}: {e}", chosen.dir.display()))?;
    eprintln!(
        "ordo-bench disk: {} for {:?}",
        chosen.dir.display(),
        args.duration
    );
    print!(
        "{}",
        ordo_bench::floor::disk_report(dir.path(), args.duration)?
    );
    Ok(())
}

fn timeline(mut args: RunArgs, recorder: &ordo_bench::timeline::Recorder) -> Result<(), String> {
    if args.knobs.procs {
        return Err("timeline: the nodes run in this process (no --procs), where their hops can be recorded".into());
    }
    args.knobs.concurrency = vec![1];
    args.knobs.rate.clear();
    let spec = args
        .knobs
        .expand()?
        .into_iter()
        .next()
        .ok_or("timeline: the knobs give no run")?;
    eprintln!("ordo-bench timeline: {}", spec.label());
    let outcome = run_one(&spec, std::io::stderr().is_terminal())?;
    let marks = recorder.take();
    let (hops, commit_us, commits) = ordo_bench::timeline::analyse(&marks);
    println!("{}", outcome.result.summary());
    println!(
        "{}",
        ordo_bench::timeline::render(&hops, commit_us, commits)
    );
    let r = &outcome.result;
    println!(
        "floor: a majority's paced durable writes + 2 round trips p50 {} µs (writes alone {} µs, round trip {:.1} µs)",
        r.floor_quorum_us
            .map_or("n/a".into(), |v| format!("{v:.1}")),
        r.floor_quorum_us
            .map_or("n/a".into(), |v| format!("{:.1}", v - 2.0 * r.floor_rtt_us)),
        r.floor_rtt_us
    );
    Ok(())
}
