//! The real node runtime under the deterministic simulator
//! (`ordo_tests::runtime_sim`): `ORDO_RUNTIME_SIM_SEEDS` seeds (default
//! 200) from `ORDO_RUNTIME_SIM_FIRST` (default 1), then the regression
//! seeds.

use ordo_tests::{env_u64, runtime_sim};

/// Seeds that found a bug in the runtime, replayed on every run.
/// - 351: a follower saved a received snapshot, crashed before the log
///   reset reached its disk, and restarted with a log that disagreed with
///   the snapshot at its last index (probes looped on the conflict).
/// - 711: a snapshot taken locally finished after a newer one received
///   from the leader, replaced it and deleted its file; after a crash the
///   log started past the only snapshot left.
/// - 947: the only statement for two committed entries was lost with a
///   wiped disk, and every log but one had compacted past them: that
///   voter now signs them itself.
/// - 2318: a duplicated `InstallSnapshot` arrived while the snapshot was
///   still being saved; the core waited for that restore forever.
const REGRESSION_SEEDS: &[u64] = &[351, 711, 947, 2318];

fn run(seed: u64) -> runtime_sim::Summary {
    if std::env::var_os("RUST_LOG").is_some() {
        // The nodes' own logs, for a replayed seed.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    match runtime_sim::run(seed) {
        Ok(summary) => summary,
        Err(failure) => panic!("{failure}"),
    }
}

#[test]
fn the_runtime_keeps_every_invariant_over_many_seeds() {
    let first = env_u64("ORDO_RUNTIME_SIM_FIRST", 1);
    let seeds = env_u64("ORDO_RUNTIME_SIM_SEEDS", 200);
    let mut total = runtime_sim::Summary::default();
    let verbose = std::env::var_os("ORDO_SIM_VERBOSE").is_some();
    for seed in first..first + seeds {
        let started = std::time::Instant::now();
        let s = run(seed);
        if verbose {
            eprintln!("seed {seed}: {:?} in {:?}", s, started.elapsed());
        }
        total.acknowledged += s.acknowledged;
        total.committed += s.committed;
        total.served += s.served;
        total.crashes += s.crashes;
        total.wipes += s.wipes;
        total.corruptions += s.corruptions;
        total.losses_found += s.losses_found;
        total.reads += s.reads;
        total.token_waits += s.token_waits;
        total.storage_stops += s.storage_stops;
        total.ambiguous += s.ambiguous;
        total.steps += s.steps;
    }
    eprintln!("{seeds} seeds from {first}: {total:?}");
    assert!(total.acknowledged > 0, "no proposal was acknowledged");
    assert!(total.served > 0, "no entry was served");
}

#[test]
fn regression_seeds_pass() {
    for &seed in REGRESSION_SEEDS {
        run(seed);
    }
}
