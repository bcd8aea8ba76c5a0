//! The real disk log over a simulated faulty disk, over many seeds.
//!
//! `cargo test -p ordo-tests --test disk_simulation` runs
//! `ORDO_DISK_SIM_SEEDS` seeds (default 1000) from `ORDO_DISK_SIM_SEED_BASE`
//! (default 0) on all cores, and every seed in [`REGRESSION_SEEDS`].
//! `ORDO_DISK_SIM_SEED=N cargo test -p ordo-tests --test disk_simulation
//! -- --nocapture replay` replays one seed with the log's trace.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ordo_tests::disk_sim::{self, Summary};
use ordo_tests::env_u64;

/// Seeds that once found a bug; each stays here for good, with what it found.
const REGRESSION_SEEDS: &[(u64, &str)] = &[(
    3721,
    "a later segment's header lost to a misdirected write after an empty base segment: the cut was placed at the damaged segment, not where the log ended",
)];

fn run_seeds(seeds: Vec<u64>) -> Summary {
    let next = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    let total = Mutex::new(Summary::default());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut seeds = std::iter::from_fn(|| {
                    let at = next.fetch_add(1, Ordering::Relaxed) as usize;
                    seeds.get(at).copied()
                });
                disk_sim::run_many(&mut seeds, &mut |_, result| match result {
                    Ok(summary) => {
                        let mut total = total.lock().unwrap();
                        total.steps += summary.steps;
                        total.crashes += summary.crashes;
                        total.damaged_opens += summary.damaged_opens;
                        total.refused += summary.refused;
                        total.cuts += summary.cuts;
                        total.hard_states_lost += summary.hard_states_lost;
                        total.snapshots += summary.snapshots;
                        total.snapshots_refused += summary.snapshots_refused;
                        total.faults += summary.faults;
                    }
                    Err(failure) => failures.lock().unwrap().push(failure),
                });
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} seeds failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    total.into_inner().unwrap()
}

#[test]
fn disk_simulation_seeds() {
    let count = env_u64("ORDO_DISK_SIM_SEEDS", 1_000);
    let base = env_u64("ORDO_DISK_SIM_SEED_BASE", 0);
    let summary = run_seeds((base..base + count).collect());
    eprintln!("{count} seeds from {base}: {summary:?}");
    // The plan's faults happen: a run that never crashed, cut or damaged
    // anything would check nothing.
    if count >= 100 {
        assert!(summary.crashes > count, "{summary:?}");
        assert!(summary.damaged_opens > 0 && summary.cuts > 0, "{summary:?}");
    }
}

#[test]
fn disk_simulation_regression_seeds() {
    run_seeds(REGRESSION_SEEDS.iter().map(|&(seed, _)| seed).collect());
}

/// Replays `ORDO_DISK_SIM_SEED` with the log's trace on stderr.
#[test]
fn replay() {
    let Ok(seed) = std::env::var("ORDO_DISK_SIM_SEED") else {
        return;
    };
    let seed: u64 = seed.parse().expect("ORDO_DISK_SIM_SEED must be a number");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "debug".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    match disk_sim::run(seed) {
        Ok(summary) => eprintln!("seed {seed}: {summary:?}"),
        Err(failure) => panic!("{failure}"),
    }
}
