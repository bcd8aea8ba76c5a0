//! What a node hands its core at start, read from its log store.

use ordo_net::SnapshotMeta;
use ordo_storage::{LogStore, StorageError};

use crate::core::{RaftState, RestoredLog};

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
        (snapshot.last_id + 1, snapshot.last_ts)
    } else {
        (1, 0)
    };
    let tail = state
        .last_header
        .map_or(prev_tail, |h| (h.next_id(), h.last_ts()));
    let hard_state = store.hard_state();
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
    })
}
