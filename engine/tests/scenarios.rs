//! Scenario tests: scripts under `tests/testdata/*.txt` that drive a small
//! cluster of real cores and print a deterministic trace (see `scenario` for
//! the commands). Each script's expected output is checked; regenerate with
//!
//! ```text
//! ORDO_REWRITE=1 cargo test -p ordo-engine --test scenarios
//! ```
//!
//! and review the diff. Besides the printed trace, every command is
//! followed by cross-node invariant checks (election safety, state machine
//! safety, dense ids, increasing timestamps, no duplicate session entries,
//! batch bounds) that fail the test on their own.

mod scenario;

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                scenario::run_file(stringify!($name));
            }
        )*

        /// Every script has a test, so none is silently skipped.
        #[test]
        fn every_script_is_run() {
            let known = [$(stringify!($name)),*];
            let mut missing = Vec::new();
            for entry in std::fs::read_dir(scenario::testdata()).expect("testdata") {
                let path = entry.expect("entry").path();
                if path.extension().is_some_and(|e| e == "txt") {
                    let stem = path.file_stem().expect("name").to_string_lossy().to_string();
                    if !known.contains(&stem.as_str()) {
                        missing.push(stem);
                    }
                }
            }
            assert!(missing.is_empty(), "scripts without a test in scenarios.rs: {missing:?}");
        }
    };
}

scenarios!(
    commit_notify,
    forwarding,
    pre_vote,
    check_quorum,
    fast_backtracking,
    inflight_window,
    batch_bounds,
    ids_and_timestamps,
    sessions,
    read_index,
    snapshot,
);
