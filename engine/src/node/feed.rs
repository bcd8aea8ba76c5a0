//! The committed stream: readers (`ordo log`, embedding subscriptions,
//! gossip) follow the committed log by message id. Each reader is its own
//! task that reads from the log store up to the applied index and waits for
//! more, so a slow reader slows only itself and holds no queue in the group.

use std::cell::Cell;
use std::rc::Rc;

use bytes::Bytes;
use ordo_net::CommittedMessage;
use ordo_storage::{Batch, BatchKind, Index, LogStore, MessageId, StorageError};

use super::notify::Notify;
use super::tokens::Certificates;

/// What readers may read: the applied point, shared by the group.
#[derive(Default)]
pub struct FeedState {
    /// Highest index applied.
    pub applied_index: Cell<Index>,
    /// Id of the last user message applied.
    pub applied_id: Cell<MessageId>,
    /// Moves on every apply and on shutdown.
    pub notify: Notify,
    /// The node is shutting down: readers end.
    pub closed: Cell<bool>,
    /// Moves only when `closed` is set, for loops that wait for the end but
    /// not for every apply (the voter's gossip endpoint: woken by `notify`
    /// it ran a turn per commit for nothing).
    pub closing: Notify,
}

/// Why a reader could not start or continue.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The requested ids were compacted away.
    #[error("message ids before {first_id} were compacted away")]
    Compacted {
        /// The first id still held.
        first_id: MessageId,
    },
    /// The log failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A position in the committed stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// The next message id to deliver.
    pub next_id: MessageId,
    /// The index to read from (at or before the entry with `next_id`).
    pub index: Index,
}

/// Finds where message `id` is (or would be) in the log: the cursor starts
/// at the first index whose batch holds ids `>= id`. Ids and indexes both
/// increase along the log and `index >= id`, so a binary search over
/// indexes reading one batch per step finds it.
pub async fn locate<S: LogStore>(
    store: &S,
    state: &FeedState,
    id: MessageId,
) -> Result<Cursor, FeedError> {
    let log = store.state();
    let id = id.max(1);
    let first = log.first_index();
    let applied = state.applied_index.get();
    if applied < first {
        return Ok(Cursor {
            next_id: id,
            index: applied + 1,
        });
    }
    let first_batch = store.read(first, 1).await?;
    let first_id = first_batch.first().map_or(1, |b| first_id_at(b, first));
    if id < first_id {
        return Err(FeedError::Compacted { first_id });
    }
    let (mut low, mut high) = (first, applied);
    // Invariant: the entry with `id`, if applied, lies in [low, high].
    while low < high {
        let mid = low + (high - low) / 2;
        let Some(batch) = store.read(mid, 1).await?.into_iter().next() else {
            break;
        };
        let header = *batch.header();
        if header.next_id() <= id {
            low = batch.last_index() + 1;
        } else if header.kind == BatchKind::Entries && header.first_id <= id {
            return Ok(Cursor {
                next_id: id,
                index: header.first_index + (id - header.first_id),
            });
        } else {
            // Every id in this batch (or after it) is beyond `id`.
            high = header.first_index.max(low);
        }
    }
    Ok(Cursor {
        next_id: id,
        index: low,
    })
}

fn first_id_at(batch: &Batch, index: Index) -> MessageId {
    let header = batch.header();
    match header.kind {
        BatchKind::Entries => header.first_id + (index - header.first_index),
        _ => header.first_id,
    }
}

/// Reads committed messages from `cursor` up to the applied point, at most
/// `messages_max` of them (at least one batch's worth when any is there).
pub async fn read_committed<S: LogStore>(
    store: &S,
    state: &FeedState,
    certificates: &Certificates,
    cursor: &mut Cursor,
    messages_max: usize,
) -> Result<Vec<CommittedMessage>, FeedError> {
    let mut out = Vec::new();
    let applied = state.applied_index.get();
    while cursor.index <= applied && out.len() < messages_max {
        let batches = store.read(cursor.index, 1 << 20).await?;
        if batches.is_empty() {
            break;
        }
        for batch in &batches {
            for entry in batch.entries() {
                if entry.index < cursor.index || entry.index > applied {
                    continue;
                }
                cursor.index = entry.index + 1;
                if entry.kind != BatchKind::Entries || entry.id < cursor.next_id {
                    continue;
                }
                cursor.next_id = entry.id + 1;
                out.push(CommittedMessage {
                    id: entry.id,
                    index: entry.index,
                    term: entry.term,
                    ts: entry.ts,
                    payload: batch.bytes().slice_ref(entry.payload),
                    token: certificates
                        .token(store, &entry)
                        .await
                        .unwrap_or_else(|_| Bytes::new()),
                });
            }
            if cursor.index > applied || out.len() >= messages_max {
                break;
            }
        }
    }
    Ok(out)
}

/// Follows the committed stream from `cursor`, handing each chunk of
/// messages to `deliver` (which applies backpressure by awaiting). Ends
/// when `deliver` returns false, when `follow` is off and the applied point
/// is reached, or when the node shuts down.
pub async fn follow<S, F, Fut>(
    store: Rc<S>,
    state: Rc<FeedState>,
    certificates: Rc<Certificates>,
    mut cursor: Cursor,
    follow: bool,
    mut deliver: F,
) -> Result<(), FeedError>
where
    S: LogStore,
    F: FnMut(Vec<CommittedMessage>, bool) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        let generation = state.notify.generation();
        let messages = read_committed(&*store, &state, &certificates, &mut cursor, 256).await?;
        let caught_up = cursor.index > state.applied_index.get();
        let done = caught_up && !follow;
        if (!messages.is_empty() || done) && !deliver(messages, done).await {
            return Ok(());
        }
        if done {
            return Ok(());
        }
        if caught_up {
            if state.closed.get() {
                return Ok(());
            }
            state.notify.wait(generation).await;
        }
    }
}
