//! The deterministic simulator over many seeds.
//!
//! `cargo test -p ordo-tests --test simulation` runs `ORDO_SIM_SEEDS` seeds
//! (default 1000) starting at `ORDO_SIM_SEED_BASE` (default 0) on all cores,
//! and every seed in [`REGRESSION_SEEDS`]. A failure prints the seed and the
//! command that replays it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ordo_tests::env_u64;
use ordo_tests::sim;

/// Seeds that once found a bug; each stays here for good, with what it found.
const REGRESSION_SEEDS: &[(u64, &str)] = &[
    (
        8838,
        "simulator: a client whose attempt died with its node (never answered) retried only every 2 s after that, and 15 retries in a row met removed nodes that knew no leader: liveness failed",
    ),
    (
        53,
        "a duplicated Forward message made the leader append a sessionless proposal twice",
    ),
    (
        61,
        "a duplicated Forward message made the leader append a sessionless proposal twice",
    ),
    (
        17,
        "simulator: clients done before the heal never ended the run",
    ),
    (
        2281,
        "a follower installing a snapshot whose point its log held reset the log, dropping acknowledged entries",
    ),
    (
        11750,
        "a candidate won on other voters' grants before its own term was durable, crashed, and led the same term again with another log",
    ),
    (
        6480,
        "a follower kept what it matched in an earlier term when the same node led the next term (after losing unsynced entries)",
    ),
    (
        43417,
        "a follower kept what it matched in an earlier term when the same node led the next term (after losing unsynced entries)",
    ),
    (
        48729,
        "a follower kept what it matched in an earlier term when the same node led the next term (after losing unsynced entries)",
    ),
    (
        9967,
        "a restart between a snapshot and the log's compaction lowered applied to a stale commit hint: entries applied twice",
    ),
    (17930, "as 9967: entries after the snapshot applied twice"),
    (21607, "as 9967: entries after the snapshot applied twice"),
    (30992, "as 9967: entries after the snapshot applied twice"),
    (
        94683,
        "a duplicated Forward reached its leader after it stepped down, which answered NotLeader (safe to retry) for a proposal it had appended: a sessionless retry committed twice",
    ),
    (
        75950,
        "simulator disk model: compaction left truncated batches that a crash restored before the log's start",
    ),
    (
        160,
        "a wiped node forgot its repair on its next crash and campaigned with an empty log",
    ),
    (
        20465,
        "a wiped node acknowledged a deposed leader's entry (its newer term was lost), and a heartbeat's commit applied it",
    ),
    (
        27053,
        "a wiped node's acknowledgements let a deposed leader commit",
    ),
    (
        30313,
        "a wiped node repaired from a deposed leader whose commit predated the loss; then the leader's stale match stalled its probe",
    ),
    (
        6593,
        "a deposed leader confirmed a read round with a wiped node's echo",
    ),
    (
        68017,
        "a wiped node refilled its log from a deposed leader; the live leader kept its old match for it and ignored its conflicts (seen once syncs covered only earlier writes)",
    ),
];

fn run_seeds(seeds: Vec<u64>) {
    run_seeds_with(seeds, sim::run);
}

fn run_seeds_with(seeds: Vec<u64>, run: fn(u64) -> Result<sim::Summary, sim::Failure>) {
    let next = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let at = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(&seed) = seeds.get(at) else { break };
                let outcome = std::panic::catch_unwind(|| run(seed));
                let failure = match outcome {
                    Ok(Ok(_)) => continue,
                    Ok(Err(failure)) => failure.to_string(),
                    Err(panic) => {
                        let message = ordo_tests::panic_message(&*panic);
                        format!(
                            "seed {seed} panicked: {message}\nreplay: cargo run -p ordo-tests --bin ordo-sim -- {seed}"
                        )
                    }
                };
                failures.lock().unwrap().push(failure);
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
}

#[test]
fn simulation_seeds() {
    let count = env_u64("ORDO_SIM_SEEDS", 1_000);
    let base = env_u64("ORDO_SIM_SEED_BASE", 0);
    run_seeds((base..base + count).collect());
}

#[test]
fn simulation_regression_seeds() {
    let seeds: Vec<u64> = REGRESSION_SEEDS.iter().map(|&(seed, _)| seed).collect();
    // As drawn (half the seeds now run the disk log), and as found: with
    // every log in memory.
    run_seeds(seeds.clone());
    run_seeds_with(seeds, |seed| {
        sim::run_plan(sim::Plan::from_seed(seed).in_memory())
    });
}
