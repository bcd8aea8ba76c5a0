//! What a node hands its core at start, read from its log store.

use ordo_net::SnapshotMeta;
use ordo_storage::{BatchKind, Index, LogStore, StorageError};

use crate::core::{LogTail, Membership, RaftState, RestoredLog};

/// The core's starting state from `store` and the latest durable snapshot
/// (the state machine has been restored from it).
///
/// A log that ends before the snapshot (recovery cut damaged entries the
/// snapshot covers, or a follower applied and snapshotted entries a crash
/// then took from its log before they were synced) is reset to the
/// snapshot point first: the snapshot holds everything up to it, durably.
pub async fn raft_state<S: LogStore>(
    store: &S,
    snapshot: Option<SnapshotMeta>,
) -> Result<RaftState, StorageError> {
    let snapshot = snapshot.unwrap_or_default();
    if store.state().last.index < snapshot.last.index {
        tracing::warn!(
            log_last = store.state().last.index,
            snapshot = snapshot.last.index,
            "the log ends before the snapshot: restarting it at the snapshot point"
        );
        store.reset(snapshot.last).await?;
    } else if let Some(term) = term_at(store, snapshot.last.index)
        && term != snapshot.last.term
    {
        tracing::warn!(
            snapshot = ?snapshot.last,
            log_term = term,
            "the log disagrees with the snapshot at its last index (a crash came \
             between saving a received snapshot and resetting the log): restarting \
             the log at the snapshot point"
        );
        store.reset(snapshot.last).await?;
    }
    let state = store.state();
    let last_batch = if state.last.index > state.prev.index {
        store.read(state.last.index, 1).await?.pop()
    } else {
        None
    };
    // `prev` is the snapshot point unless the log was compacted elsewhere
    // (then its tail is never needed: prev is at or below the commit index).
    let prev_tail = if state.prev == snapshot.last {
        LogTail::after_snapshot(&snapshot)
    } else {
        LogTail::START
    };
    let tail = state.last_header.map_or(prev_tail, |h| LogTail::after(&h));
    let hard_state = store.hard_state();
    let configs = configurations(store, state.prev.index).await?;
    Ok(RaftState {
        hard_state,
        log: RestoredLog {
            prev: state.prev,
            last: state.last,
            term_runs: store.term_runs(),
            tail,
            prev_tail,
            last_batch,
            commit: hard_state.commit,
            applied: snapshot.last.index,
        },
        snapshot,
        loss: None,
        configs,
    })
}

/// The configuration entries `store` holds after `after`, decoded, in
/// index order. One the node cannot decode (written by a newer version)
/// is left out, saying so: the core then keeps the one before.
async fn configurations<S: LogStore>(
    store: &S,
    after: Index,
) -> Result<Vec<(Index, Membership)>, StorageError> {
    let mut configs = Vec::new();
    for index in store.config_indexes() {
        if index <= after {
            continue;
        }
        let batches = store.read(index, 1).await?;
        let Some(entry) = batches
            .iter()
            .flat_map(|b| b.entries())
            .find(|e| e.index == index && e.kind == BatchKind::Config)
        else {
            tracing::error!(index, "configuration entry missing from the log read");
            continue;
        };
        match Membership::decode(entry.payload) {
            Ok(membership) => configs.push((index, membership)),
            Err(error) => {
                tracing::error!(index, %error, "configuration entry unreadable; left out")
            }
        }
    }
    Ok(configs)
}

/// The term of the entry at `index` in `store`, if the log holds it (its
/// compaction point counts).
fn term_at<S: LogStore>(store: &S, index: u64) -> Option<u64> {
    let state = store.state();
    if index == state.prev.index {
        return Some(state.prev.term);
    }
    if index < state.prev.index || index > state.last.index {
        return None;
    }
    let runs = store.term_runs();
    let at = runs.partition_point(|run| run.first_index <= index);
    runs.get(at.checked_sub(1)?).map(|run| run.term)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use ordo_storage::LogId;
    use ordo_storage::{Batch, BatchKind, BatchMeta, EntryOut, MemLog};

    use super::*;

    /// A log of `count` one-entry batches from index 1, the first
    /// `term_change_at - 1` in term 1 and the rest in term 2.
    fn log(count: u64, term_change_at: u64) -> MemLog {
        let log = MemLog::new();
        for index in 1..=count {
            let term = if index < term_change_at { 1 } else { 2 };
            let meta = BatchMeta {
                kind: BatchKind::Entries,
                term,
                first_index: index,
                first_id: index,
                first_ts: index,
            };
            let entries = vec![EntryOut {
                client_id: 0,
                seq: 0,
                payload: b"x",
            }];
            log.append_now(&[Batch::encode(meta, entries)]).unwrap();
        }
        log.sync_now().unwrap();
        log
    }

    fn snapshot(index: u64, term: u64) -> SnapshotMeta {
        SnapshotMeta {
            last: LogId { term, index },
            last_id: index,
            last_ts: index,
            voters: vec![1, 2, 3],
            core_state: Bytes::new(),
        }
    }

    #[test]
    fn a_log_that_holds_the_snapshot_point_keeps_its_suffix() {
        let store = log(10, 100);
        let state =
            futures_lite::future::block_on(raft_state(&store, Some(snapshot(6, 1)))).unwrap();
        assert_eq!(state.log.last.index, 10);
        assert_eq!(state.log.prev.index, 0);
    }

    /// Seed 351 of the runtime simulator: a follower saved a received
    /// snapshot at (2, 166), crashed before its log reset reached the disk,
    /// and restarted with term-1 entries through 168. Kept, they answered
    /// every probe with a conflict below the index it had acknowledged.
    #[test]
    fn a_log_that_disagrees_at_the_snapshot_point_restarts_there() {
        let store = log(10, 100);
        let state =
            futures_lite::future::block_on(raft_state(&store, Some(snapshot(6, 2)))).unwrap();
        assert_eq!(state.log.prev, LogId { term: 2, index: 6 });
        assert_eq!(state.log.last, LogId { term: 2, index: 6 });
        assert_eq!(
            state.log.tail,
            LogTail {
                next_id: 7,
                last_ts: 6
            }
        );
    }

    #[test]
    fn a_log_that_ends_before_the_snapshot_restarts_there() {
        let store = log(4, 100);
        let state =
            futures_lite::future::block_on(raft_state(&store, Some(snapshot(6, 1)))).unwrap();
        assert_eq!(state.log.prev, LogId { term: 1, index: 6 });
        assert_eq!(state.log.last.index, 6);
    }
}
