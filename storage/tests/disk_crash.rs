//! Crash tests: a child process appends, syncs, truncates and saves hard
//! state, reporting on stdout what it was told is durable; the parent
//! SIGKILLs it at a random instant and reopens the log. Every append
//! reported durable must be present and intact, and nothing invalid may
//! be returned.
//!
//! The child is this test binary itself, running the ignored test
//! `crash_child` with `ORDO_STORAGE_CRASH_CHILD_DIR` set. Iterations:
//! `ORDO_STORAGE_CRASH_ITERATIONS` (default 12, ~3 s in debug).

mod common;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

use common::{block_on, entry_is_genuine, read_all, small_config};
use ordo_storage::conformance::batch;
use ordo_storage::{DiskLog, DiskLogConfig, HardState, LogStore};

const CHILD_DIR_ENV: &str = "ORDO_STORAGE_CRASH_CHILD_DIR";
const CHILD_SEED_ENV: &str = "ORDO_STORAGE_CRASH_CHILD_SEED";

struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}

/// The child: four appender tasks sharing one log, a truncation now and
/// then, hard-state saves. Runs until killed.
#[test]
#[ignore = "the crash tests run it as their child process"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        // Not a test of its own: run with `--include-ignored`, it has
        // nothing to do.
        eprintln!("crash_child runs only as the child of the crash tests ({CHILD_DIR_ENV} unset)");
        return;
    };
    let seed: u64 = std::env::var(CHILD_SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    block_on(async move {
        let log = Rc::new(
            DiskLog::open(
                &dir,
                DiskLogConfig {
                    zero_fill_segments: true,
                    // Odd seeds write then fdatasync, even ones write
                    // through (O_DSYNC): both flush paths get killed.
                    write_through: seed.is_multiple_of(2),
                    ..small_config()
                },
            )
            .await
            .expect("child open"),
        );
        let start = log.state();
        println!("OPEN {} {}", start.last.index, start.last.term);
        let term = Rc::new(Cell::new(start.last.term.max(log.hard_state().term).max(1)));
        let rng = Rc::new(std::cell::RefCell::new(Rng(seed | 1)));
        // Bumped when a truncation is announced, and the number announced
        // but not finished: a truncation takes effect when it gets the IO
        // lock, so a durability report that overlapped one is not printed
        // (the parent could not order it).
        let truncations = Rc::new(Cell::new(0u64));
        let truncating = Rc::new(Cell::new(0u64));
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (log, term, rng) = (log.clone(), term.clone(), rng.clone());
            let (truncations, truncating) = (truncations.clone(), truncating.clone());
            tasks.push(glommio::spawn_local(async move {
                loop {
                    let choice = rng.borrow_mut().below(100);
                    if choice < 3 {
                        let state = log.state();
                        if state.last.index >= state.first_index() {
                            let back = rng.borrow_mut().below(12);
                            let from = state
                                .last
                                .index
                                .saturating_sub(back)
                                .max(state.first_index());
                            term.set(term.get() + 1);
                            truncations.set(truncations.get() + 1);
                            truncating.set(truncating.get() + 1);
                            println!("T {from}");
                            log.truncate_suffix(from).await.expect("truncate");
                            truncating.set(truncating.get() - 1);
                        }
                    } else if choice < 4 {
                        // Compaction may drop whole segments behind the
                        // durable index; the parent checks only what is held.
                        let durable = log.state().durable_index;
                        log.compact_prefix(durable.saturating_sub(200))
                            .await
                            .expect("compact");
                    } else if choice < 6 {
                        let saved = term.get() + 1;
                        log.save_hard_state(HardState {
                            term: saved,
                            vote: 1,
                            commit: 0,
                        })
                        .await
                        .expect("save hard state");
                        println!("H {saved}");
                    } else {
                        let seen = if truncating.get() == 0 {
                            truncations.get()
                        } else {
                            u64::MAX
                        };
                        let count = 1 + rng.borrow_mut().below(6) as u32;
                        let next = batch(term.get(), log.state().last.index + 1, count);
                        log.append(std::slice::from_ref(&next))
                            .await
                            .expect("append");
                        let durable = log.sync().await.expect("sync");
                        let read = log.read(durable, 1).await.expect("read durable");
                        let term_at = read[0].entry(durable).term;
                        if truncations.get() == seen && truncating.get() == 0 {
                            println!("D {durable} {term_at}");
                        }
                    }
                }
            }));
        }
        // The appenders loop until the parent kills the process.
        let _appenders = tasks;
        std::future::pending::<()>().await;
    });
}

/// What the child reported, in order.
#[derive(Default)]
struct Reported {
    /// Durable index → the term of the entry there.
    durable: BTreeMap<u64, u64>,
    hard_state_term: u64,
    lines: usize,
}

impl Reported {
    fn apply(&mut self, line: &str) {
        let mut words = line.split_whitespace();
        let (Some(kind), Some(a)) = (words.next(), words.next()) else {
            return;
        };
        let Ok(a) = a.parse::<u64>() else { return };
        match kind {
            "D" => {
                let term: u64 = words
                    .next()
                    .and_then(|t| t.parse().ok())
                    .expect("D line has a term");
                self.durable.insert(a, term);
            }
            // The truncation may or may not have happened: nothing at or
            // after `from` is guaranteed any more.
            "T" => {
                self.durable.retain(|&index, _| index < a);
            }
            "H" => self.hard_state_term = self.hard_state_term.max(a),
            _ => return,
        }
        self.lines += 1;
    }
}

fn iterations() -> u64 {
    std::env::var("ORDO_STORAGE_CRASH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12)
}

fn run_child(dir: &std::path::Path, seed: u64, kill_after: Duration) -> Vec<String> {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_SEED_ENV, seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    std::thread::sleep(kill_after);
    // `Child::kill` sends SIGKILL: no destructor, no flush, no sync.
    let _ = child.kill();
    let _ = child.wait();
    reader.join().expect("reader thread")
}

#[test]
fn sigkilled_appender_loses_nothing_reported_durable() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let mut rng = Rng(0x5eed_0bad_cafe_f00d);
    let mut reported = Reported::default();
    let mut crashes_with_progress = 0;
    for iteration in 0..iterations() {
        let kill_after = Duration::from_millis(20 + rng.below(200));
        let lines = run_child(dir.path(), rng.below(u64::MAX), kill_after);
        if let Ok(debug) = std::env::var("ORDO_STORAGE_CRASH_DEBUG") {
            std::fs::write(format!("{debug}.{iteration}"), lines.join("\n")).expect("debug dump");
        }
        let before = reported.lines;
        for line in &lines {
            reported.apply(line);
        }
        if reported.lines > before {
            crashes_with_progress += 1;
        }
        if let Ok(debug) = std::env::var("ORDO_STORAGE_CRASH_DEBUG") {
            let mut dump = String::new();
            for file in common::segment_files(dir.path()) {
                dump.push_str(&format!("{}\n", file.display()));
                for (offset, h) in common::frames(&file) {
                    dump.push_str(&format!(
                        "  {offset} idx {} count {} term {}\n",
                        h.first_index, h.count, h.term
                    ));
                }
            }
            std::fs::write(format!("{debug}.{iteration}.segments"), dump).expect("debug dump");
        }
        block_on(async {
            let log = DiskLog::open(dir.path(), small_config())
                .await
                .unwrap_or_else(|e| {
                    panic!("iteration {iteration}: reopen after SIGKILL failed: {e}")
                });
            let state = log.state();
            let entries = read_all(&log).await;
            // Contiguous, terms never decreasing, every entry genuine.
            let mut term = 0;
            for (expected, entry) in (state.first_index()..).zip(&entries) {
                assert_eq!(entry.0, expected, "iteration {iteration}: hole in the log");
                assert!(
                    entry.1 >= term,
                    "iteration {iteration}: term regression at {}",
                    entry.0
                );
                assert!(
                    entry_is_genuine(entry),
                    "iteration {iteration}: damaged entry {entry:?}"
                );
                term = entry.1;
            }
            for (&index, &term) in &reported.durable {
                if index < state.first_index() {
                    continue;
                }
                assert!(
                    index <= state.last.index,
                    "iteration {iteration}: durable index {index} lost (log ends at {})",
                    state.last.index
                );
                let entry = &entries[(index - state.first_index()) as usize];
                assert_eq!(
                    entry.1, term,
                    "iteration {iteration}: entry {index} changed term"
                );
            }
            assert!(
                log.hard_state().term >= reported.hard_state_term,
                "iteration {iteration}: hard state went back"
            );
            // Later durable reports are relative to what survived.
            reported
                .durable
                .retain(|&index, _| index <= state.last.index);
        });
    }
    assert!(
        crashes_with_progress * 2 >= iterations(),
        "the child rarely got to report anything ({crashes_with_progress} of {} runs)",
        iterations()
    );
}
