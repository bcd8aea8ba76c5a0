//! The conformance suite every [`LogStore`] must pass: the in-memory log and
//! the segmented disk log run the same checks.
//!
//! A [`Harness`] opens a store over some persistent medium and can crash it.
//! Each check gets a fresh harness. The suite is async; the caller drives it
//! with its executor (`pollster` for the in-memory log, glommio for the disk
//! log).

use crate::error::StorageError;
use crate::frame::{Batch, BatchKind, BatchMeta, EntryOut};
use crate::hard_state::HardState;
use crate::log_store::{LogStore, TermRun};
use crate::types::{Index, LogId, Term};

/// Opens and crashes one store instance over a persistent medium.
#[allow(async_fn_in_trait)] // single-shard by design, like `LogStore`
pub trait Harness {
    /// The store under test.
    type Store: LogStore;
    /// Opens (or reopens after a crash) the store over this harness's medium.
    async fn open(&mut self) -> Self::Store;
    /// Crashes the store: it is dropped without a sync, and anything not
    /// covered by a completed sync may be lost.
    async fn crash(&mut self, store: Self::Store);
}

/// Consecutive user batches of `term` starting at `first_index`, one per
/// element of `counts` (its entry count). Payloads encode their index so a
/// misplaced entry is visible.
pub fn batches(term: Term, first_index: Index, counts: &[u32]) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut index = first_index;
    for &count in counts {
        out.push(batch(term, index, count));
        index += u64::from(count);
    }
    out
}

/// One user batch: `count` entries of `term` from `first_index`, ids from
/// `first_index` (so ids stay unique within a test), timestamps `index * 10`.
pub fn batch(term: Term, first_index: Index, count: u32) -> Batch {
    let payloads: Vec<Vec<u8>> = (0..u64::from(count))
        .map(|i| {
            let index = first_index + i;
            let mut payload = index.to_le_bytes().to_vec();
            payload.extend(std::iter::repeat_n(term as u8, (index % 7) as usize));
            payload
        })
        .collect();
    let entries = payloads
        .iter()
        .enumerate()
        .map(|(i, payload)| EntryOut {
            client_id: term,
            seq: first_index + i as u64,
            payload,
        })
        .collect();
    Batch::encode(
        BatchMeta {
            kind: BatchKind::Entries,
            term,
            first_index,
            first_id: first_index,
            first_ts: first_index * 10,
        },
        entries,
    )
}

/// A flat description of entries, to compare logs whose batch boundaries may
/// differ (a truncated batch comes back as a re-encoded slice).
pub type EntryKey = (Index, Term, u64, u64, u64, u64, Vec<u8>);

/// Flattens batches into entry keys.
pub fn flatten(batches: &[Batch]) -> Vec<EntryKey> {
    batches
        .iter()
        .flat_map(|b| {
            b.entries()
                .map(|e| {
                    (
                        e.index,
                        e.term,
                        e.id,
                        e.ts,
                        e.client_id,
                        e.seq,
                        e.payload.to_vec(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn read_all<S: LogStore>(store: &S) -> Vec<EntryKey> {
    let state = store.state();
    if state.last.index < state.first_index() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut from = state.first_index();
    while from <= state.last.index {
        let batches = store.read(from, 1 << 20).await.expect("read within bounds");
        assert!(!batches.is_empty(), "read({from}) returned nothing");
        assert!(
            batches[0].header().contains(from),
            "first batch must contain {from}"
        );
        for entry in flatten(&batches) {
            if entry.0 >= from {
                out.push(entry);
            }
        }
        from = batches.last().expect("non-empty").last_index() + 1;
    }
    out
}

fn entries_from(model: &[EntryKey], first: Index) -> Vec<EntryKey> {
    model.iter().filter(|e| e.0 >= first).cloned().collect()
}

/// Runs every check, each on a fresh harness from `make`.
pub async fn run_all<H: Harness>(mut make: impl FnMut() -> H) {
    empty_log(make()).await;
    append_then_read_back(make()).await;
    append_rejects_gaps_overlaps_and_term_regressions(make()).await;
    read_respects_bytes_max(make()).await;
    sync_reports_durable_index(make()).await;
    truncate_suffix_inside_and_between_batches(make()).await;
    truncate_outside_the_log_is_an_error(make()).await;
    synced_entries_survive_a_crash(make()).await;
    synced_truncation_survives_a_crash(make()).await;
    hard_state_survives_a_crash(make()).await;
    compact_prefix_keeps_the_suffix(make()).await;
    reset_restarts_after_a_snapshot_point(make()).await;
    random_operations_match_a_model(make(), 1).await;
    random_operations_match_a_model(make(), 2).await;
}

/// A new log is empty, has the default hard state and nothing to read.
pub async fn empty_log<H: Harness>(mut harness: H) {
    let store = harness.open().await;
    let state = store.state();
    assert_eq!(state.prev, LogId::default());
    assert_eq!(state.last, LogId::default());
    assert_eq!(state.durable_index, 0);
    assert!(state.last_header.is_none());
    assert_eq!(store.hard_state(), HardState::default());
    assert!(store.term_runs().is_empty());
    assert!(matches!(
        store.read(1, 1024).await,
        Err(StorageError::OutOfRange { .. })
    ));
}

/// What is appended reads back identically, from any index.
pub async fn append_then_read_back<H: Harness>(mut harness: H) {
    let store = harness.open().await;
    let mut written = batches(1, 1, &[3, 1, 5]);
    written.extend(batches(2, 10, &[2]));
    store.append(&written).await.unwrap();
    let state = store.state();
    assert_eq!(state.last, LogId::new(2, 11));
    assert_eq!(state.last_header.unwrap().first_index, 10);
    assert_eq!(store.read(1, usize::MAX).await.unwrap(), written);
    let from_five = store.read(5, usize::MAX).await.unwrap();
    assert_eq!(from_five[0].first_index(), 5);
    assert_eq!(from_five.len(), 2);
    let from_six = store.read(6, usize::MAX).await.unwrap();
    assert_eq!(from_six[0], written[2]);
    assert_eq!(
        store.term_runs(),
        vec![
            TermRun {
                term: 1,
                first_index: 1
            },
            TermRun {
                term: 2,
                first_index: 10
            }
        ]
    );
    assert!(matches!(
        store.read(12, 1024).await,
        Err(StorageError::OutOfRange { .. })
    ));
}

/// Appends must continue the log exactly, with non-decreasing terms.
pub async fn append_rejects_gaps_overlaps_and_term_regressions<H: Harness>(mut harness: H) {
    let store = harness.open().await;
    store.append(&batches(2, 1, &[4])).await.unwrap();
    let gap = store.append(&batches(2, 6, &[1])).await;
    assert!(matches!(
        gap,
        Err(StorageError::NonContiguous {
            last_index: 4,
            first_index: 6
        })
    ));
    let overlap = store.append(&batches(2, 4, &[1])).await;
    assert!(matches!(overlap, Err(StorageError::NonContiguous { .. })));
    let regression = store.append(&batches(1, 5, &[1])).await;
    assert!(matches!(
        regression,
        Err(StorageError::TermRegression { .. })
    ));
    assert_eq!(store.state().last, LogId::new(2, 4));
    store.append(&batches(3, 5, &[1])).await.unwrap();
    assert_eq!(store.state().last, LogId::new(3, 5));
}

/// A read returns at least one batch and otherwise stays within its budget.
pub async fn read_respects_bytes_max<H: Harness>(mut harness: H) {
    let store = harness.open().await;
    let written = batches(1, 1, &[10, 10, 10, 10]);
    store.append(&written).await.unwrap();
    let one = store.read(1, 1).await.unwrap();
    assert_eq!(one, written[..1].to_vec());
    let budget = written[0].len_bytes() + written[1].len_bytes();
    let two = store.read(1, budget).await.unwrap();
    assert_eq!(two, written[..2].to_vec());
    let total: usize = two.iter().map(Batch::len_bytes).sum();
    assert!(total <= budget);
}

/// `sync` reports the last index and the state says it is durable.
pub async fn sync_reports_durable_index<H: Harness>(mut harness: H) {
    let store = harness.open().await;
    store.append(&batches(1, 1, &[2, 2])).await.unwrap();
    assert_eq!(store.sync().await.unwrap(), 4);
    assert_eq!(store.state().durable_index, 4);
    store.append(&batches(1, 5, &[1])).await.unwrap();
    assert!(store.state().durable_index <= 5);
    assert_eq!(store.sync().await.unwrap(), 5);
    assert_eq!(store.state().durable_index, 5);
}

/// Truncation removes exactly the suffix, splitting a straddling batch.
pub async fn truncate_suffix_inside_and_between_batches<H: Harness>(mut harness: H) {
    let store = harness.open().await;
    let written = batches(1, 1, &[4, 4, 4]);
    store.append(&written).await.unwrap();
    store.sync().await.unwrap();
    store.truncate_suffix(7).await.unwrap();
    assert_eq!(store.state().last, LogId::new(1, 6));
    assert!(store.state().durable_index <= 6);
    let model = flatten(&written);
    assert_eq!(read_all(&store).await, model[..6].to_vec());
    store.truncate_suffix(5).await.unwrap();
    assert_eq!(store.state().last, LogId::new(1, 4));
    store.truncate_suffix(5).await.unwrap(); // no-op at last + 1
    let newer = batches(2, 5, &[3]);
    store.append(&newer).await.unwrap();
    assert_eq!(store.sync().await.unwrap(), 7);
    let mut expected = model[..4].to_vec();
    expected.extend(flatten(&newer));
    assert_eq!(read_all(&store).await, expected);
    assert_eq!(
        store.term_runs(),
        vec![
            TermRun {
                term: 1,
                first_index: 1
            },
            TermRun {
                term: 2,
                first_index: 5
            }
        ]
    );
    assert_eq!(store.state().last_header.unwrap().term, 2);
}

/// Truncating below the log or past its end is an error, not a panic.
pub async fn truncate_outside_the_log_is_an_error<H: Harness>(mut harness: H) {
    let store = harness.open().await;
    store.append(&batches(1, 1, &[3])).await.unwrap();
    assert!(matches!(
        store.truncate_suffix(5).await,
        Err(StorageError::OutOfRange { .. })
    ));
    assert!(matches!(
        store.truncate_suffix(0).await,
        Err(StorageError::OutOfRange { .. })
    ));
    assert_eq!(store.state().last.index, 3);
}

/// Everything a completed sync covered is present and intact after a crash;
/// what was not synced may be lost but never returns damaged.
pub async fn synced_entries_survive_a_crash<H: Harness>(mut harness: H) {
    let store = harness.open().await;
    let synced = batches(1, 1, &[3, 3]);
    store.append(&synced).await.unwrap();
    store.sync().await.unwrap();
    let unsynced = batches(1, 7, &[2, 2]);
    store.append(&unsynced).await.unwrap();
    harness.crash(store).await;
    let store = harness.open().await;
    let state = store.state();
    assert!(state.last.index >= 6, "lost synced entries: {state:?}");
    assert!(
        state.durable_index >= 6,
        "synced entries not durable after reopen: {state:?}"
    );
    let mut model = flatten(&synced);
    model.extend(flatten(&unsynced));
    let recovered = read_all(&store).await;
    assert_eq!(recovered, model[..recovered.len()].to_vec());
    // The recovered log continues normally.
    let next = state.last.index + 1;
    store.append(&batches(2, next, &[1])).await.unwrap();
    assert_eq!(store.sync().await.unwrap(), next);
}

/// A truncation followed by a sync is durable.
pub async fn synced_truncation_survives_a_crash<H: Harness>(mut harness: H) {
    let store = harness.open().await;
    let old = batches(1, 1, &[5, 5]);
    store.append(&old).await.unwrap();
    store.sync().await.unwrap();
    store.truncate_suffix(4).await.unwrap();
    let newer = batches(2, 4, &[2]);
    store.append(&newer).await.unwrap();
    store.sync().await.unwrap();
    harness.crash(store).await;
    let store = harness.open().await;
    let mut expected = flatten(&old)[..3].to_vec();
    expected.extend(flatten(&newer));
    assert_eq!(read_all(&store).await, expected);
    assert_eq!(store.state().last, LogId::new(2, 5));
}

/// Hard state is durable once saved.
pub async fn hard_state_survives_a_crash<H: Harness>(mut harness: H) {
    let store = harness.open().await;
    let first = HardState {
        term: 3,
        vote: 2,
        commit: 0,
    };
    store.save_hard_state(first).await.unwrap();
    assert_eq!(store.hard_state(), first);
    let second = HardState {
        term: 4,
        vote: 0,
        commit: 9,
    };
    store.save_hard_state(second).await.unwrap();
    harness.crash(store).await;
    let store = harness.open().await;
    assert_eq!(store.hard_state(), second);
    let third = HardState {
        term: 5,
        vote: 1,
        commit: 9,
    };
    store.save_hard_state(third).await.unwrap();
    harness.crash(store).await;
    assert_eq!(harness.open().await.hard_state(), third);
}

/// Compaction drops at most the prefix it was asked to drop.
pub async fn compact_prefix_keeps_the_suffix<H: Harness>(mut harness: H) {
    let store = harness.open().await;
    let written = batches(1, 1, &[4, 4, 4, 4]);
    store.append(&written).await.unwrap();
    store.sync().await.unwrap();
    store.compact_prefix(10).await.unwrap();
    let state = store.state();
    assert!(state.first_index() <= 11 && state.first_index() >= 1);
    assert_eq!(state.last.index, 16);
    let model = flatten(&written);
    assert_eq!(
        read_all(&store).await,
        entries_from(&model, state.first_index())
    );
    assert!(store.read(11, usize::MAX).await.is_ok());
    harness.crash(store).await;
    let store = harness.open().await;
    let state = store.state();
    assert!(state.first_index() <= 11);
    assert_eq!(state.last.index, 16);
    assert_eq!(
        read_all(&store).await,
        entries_from(&model, state.first_index())
    );
    let runs = store.term_runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].first_index, state.first_index());
}

/// After a reset the log is empty after the snapshot point and continues
/// from it, across a crash too.
pub async fn reset_restarts_after_a_snapshot_point<H: Harness>(mut harness: H) {
    let store = harness.open().await;
    store.append(&batches(1, 1, &[4])).await.unwrap();
    store.sync().await.unwrap();
    let point = LogId::new(5, 100);
    store.reset(point).await.unwrap();
    let state = store.state();
    assert_eq!(state.prev, point);
    assert_eq!(state.last, point);
    assert!(store.read(4, 1024).await.is_err());
    harness.crash(store).await;
    let store = harness.open().await;
    assert_eq!(store.state().prev, point);
    assert_eq!(store.state().last, point);
    let next = batches(6, 101, &[2]);
    store.append(&next).await.unwrap();
    assert_eq!(store.sync().await.unwrap(), 102);
    assert_eq!(read_all(&store).await, flatten(&next));
}

/// A deterministic random walk of appends, truncations, syncs, compactions
/// and crashes, checked against a model after every step.
pub async fn random_operations_match_a_model<H: Harness>(mut harness: H, seed: u64) {
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move |bound: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % bound
    };
    let mut store = harness.open().await;
    // model: the entries the log holds now; durable: the prefix length that
    // must survive a crash.
    let mut model: Vec<EntryKey> = Vec::new();
    let mut durable_len = 0usize;
    let mut term = 1;
    let mut first_held: Index = 1;
    for _step in 0..300 {
        match next(10) {
            0..=3 => {
                let first = store.state().last.index + 1;
                if next(4) == 0 {
                    term += 1;
                }
                let count = 1 + next(5) as u32;
                let written = batches(term, first, &[count]);
                store.append(&written).await.unwrap();
                model.extend(flatten(&written));
            }
            4 => {
                let state = store.state();
                if state.last.index >= state.first_index() {
                    let span = state.last.index - state.first_index() + 1;
                    let from = state.first_index() + next(span + 1);
                    store.truncate_suffix(from).await.unwrap();
                    model.retain(|e| e.0 < from);
                    durable_len = durable_len.min(model.len());
                    term += 1;
                }
            }
            5 | 6 => {
                let durable = store.sync().await.unwrap();
                assert_eq!(durable, store.state().last.index);
                durable_len = model.len();
            }
            7 => {
                let state = store.state();
                if state.durable_index > state.first_index() {
                    let upto =
                        state.first_index() + next(state.durable_index - state.first_index());
                    store.compact_prefix(upto).await.unwrap();
                    first_held = store.state().first_index();
                    assert!(first_held <= upto + 1);
                }
            }
            _ => {
                harness.crash(store).await;
                store = harness.open().await;
                let recovered = read_all(&store).await;
                let state = store.state();
                first_held = state.first_index();
                let expected = entries_from(&model, first_held);
                let durable_expected = entries_from(&model[..durable_len], first_held);
                assert!(
                    recovered.len() >= durable_expected.len(),
                    "seed {seed}: lost synced entries ({} < {})",
                    recovered.len(),
                    durable_expected.len()
                );
                // Beyond the durable prefix a crash may keep the unsynced
                // appends or bring back entries a pending truncation removed;
                // the durable prefix itself must be exact.
                assert_eq!(recovered[..durable_expected.len()], durable_expected[..]);
                if recovered.len() <= expected.len() && recovered[..] == expected[..recovered.len()]
                {
                    model.truncate(model.len() - (expected.len() - recovered.len()));
                } else {
                    // A truncation was undone: adopt what was recovered.
                    model.retain(|e| e.0 < first_held);
                    model.extend(recovered.iter().cloned());
                }
                durable_len = model.len().min(
                    durable_len.max(model.iter().filter(|e| e.0 <= state.durable_index).count()),
                );
                term = term.max(state.last.term) + 1;
            }
        }
        let state = store.state();
        assert!(state.durable_index <= state.last.index);
        assert_eq!(
            state.last.index,
            model.last().map_or(state.prev.index, |e| e.0)
        );
    }
    let _ = first_held;
}
