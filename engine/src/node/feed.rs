//! The committed stream: readers (`ordo log`, embedding subscriptions,
//! gossip) follow the committed log by message id. Each reader is its own
//! task that reads from the log store up to the applied index and waits for
//! more, so a slow reader slows only itself and holds no queue in the group.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use ordo_net::{CommittedMessage, LogResponse};
use ordo_storage::{Batch, BatchKind, Index, LogStore, MessageId, StorageError};

use super::notify::Notify;
use super::tokens::{Certificates, TokenError};

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

impl FeedState {
    /// Waits `interval`, or less if the node starts closing meanwhile: the
    /// pause of a periodic task that must end with the node.
    pub async fn pause_unless_closing(&self, interval: Duration) {
        futures_lite::future::or(
            super::env::sleep(interval),
            self.closing.wait(self.closing.generation()),
        )
        .await;
    }
}

/// Why a reader could not start or continue.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The requested ids were compacted away.
    #[error(
        "message ids before {first_id} are no longer retained: the first retained message id is {first_id}"
    )]
    Compacted {
        /// The first id still held.
        first_id: MessageId,
    },
    /// A message the node has applied still had no token after the
    /// stream waited `waited` for its certificate.
    #[error(
        "message id {id} (index {index}) has no commit certificate on this node after {waited:?}: no leader sent or re-signed one"
    )]
    TokenMissing {
        /// The message id the stream is held at.
        id: MessageId,
        /// Its index.
        index: Index,
        /// How long the stream waited.
        waited: Duration,
    },
    /// A message's token could not be cut (its statement does not match
    /// the log, or the log failed).
    #[error("message id {id}: {error}")]
    Token {
        /// The message id.
        id: MessageId,
        /// Why.
        error: TokenError,
    },
    /// The log failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The request never reached the group (its inbox was full, or the
    /// node stopped).
    #[error("the subscription was not taken: {reason}")]
    NotServed {
        /// Why.
        reason: String,
    },
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
        // Nothing applied in the log yet: everything up to the applied id
        // is in the snapshot the log starts after (found by the runtime
        // simulator: a stream from before it skipped to the log's first
        // message instead of saying what was compacted).
        let first_id = state.applied_id.get() + 1;
        if id < first_id {
            return Err(FeedError::Compacted { first_id });
        }
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

/// How much one read of the committed stream may return: a chunk ends
/// before the message that would take it past either bound, but always
/// holds at least one message when one is ready (a proposal is at most
/// `proposal_bytes_max`, which a frame always fits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkLimit {
    /// Messages per chunk.
    pub messages_max: usize,
    /// Bytes per chunk, counted as [`CommittedMessage::wire_bytes`].
    pub bytes_max: usize,
}

impl ChunkLimit {
    /// What a log stream sends per response frame: 4 MiB keeps a frame far
    /// under the 16 MiB default frame limit (a reader's own limit may be
    /// smaller than the node's) and is still thousands of small messages.
    pub const LOG_RESPONSE: ChunkLimit = ChunkLimit {
        messages_max: 4096,
        bytes_max: (4 << 20) - LogResponse::ENVELOPE_BYTES,
    };
}

/// A read of the committed stream.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Consecutive committed messages from the cursor on, each with its
    /// token.
    pub messages: Vec<CommittedMessage>,
    /// The read stopped before this applied message because its token
    /// cannot be cut yet (no statement covers it): it is never served
    /// without one.
    pub token_missing: Option<TokenMissing>,
}

/// A committed message whose token is not there yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenMissing {
    /// Its message id.
    pub id: MessageId,
    /// Its log index.
    pub index: Index,
}

/// Reads committed messages from `cursor` up to the applied point, within
/// `limit`. Stops before the first message whose token cannot be cut yet
/// (see [`Chunk::token_missing`]); the cursor then points at it.
pub async fn read_committed<S: LogStore>(
    store: &S,
    state: &FeedState,
    certificates: &Certificates,
    cursor: &mut Cursor,
    limit: ChunkLimit,
) -> Result<Chunk, FeedError> {
    let mut chunk = Chunk::default();
    let mut bytes = 0;
    let applied = state.applied_index.get();
    'read: while cursor.index <= applied {
        let batches = store.read(cursor.index, 1 << 20).await?;
        let before = cursor.index;
        for batch in &batches {
            for entry in batch.entries() {
                if entry.index < cursor.index || entry.index > applied {
                    continue;
                }
                if entry.kind != BatchKind::Entries || entry.id < cursor.next_id {
                    cursor.index = entry.index + 1;
                    continue;
                }
                if chunk.messages.len() >= limit.messages_max {
                    break 'read;
                }
                let token = match certificates.token(store, &entry).await {
                    Ok(token) => token,
                    Err(TokenError::Missing { .. }) => {
                        chunk.token_missing = Some(TokenMissing {
                            id: entry.id,
                            index: entry.index,
                        });
                        break 'read;
                    }
                    Err(error) => {
                        return Err(FeedError::Token {
                            id: entry.id,
                            error,
                        });
                    }
                };
                let message = CommittedMessage {
                    id: entry.id,
                    index: entry.index,
                    term: entry.term,
                    ts: entry.ts,
                    payload: batch.bytes().slice_ref(entry.payload),
                    token,
                };
                bytes += message.wire_bytes();
                if !chunk.messages.is_empty() && bytes > limit.bytes_max {
                    break 'read;
                }
                cursor.index = entry.index + 1;
                cursor.next_id = entry.id + 1;
                chunk.messages.push(message);
            }
        }
        if cursor.index == before {
            // Nothing at the cursor (the log holds no batch there).
            break;
        }
    }
    Ok(chunk)
}

/// How long a reader waits for the certificate of a message it has
/// applied before the stream fails, naming the message. The group's
/// repair asks the leader for missing statements every 200 ms (a leader
/// signs uncovered ranges itself), so only a cluster without a leader, or
/// a leader that cannot sign, takes this long. Shorter than a client's
/// default 10 s timeout, so that the client hears why.
pub const TOKEN_WAIT_MAX: Duration = Duration::from_secs(5);

/// Follows the committed stream from `cursor`, handing each chunk of
/// messages to `deliver` (which applies backpressure by awaiting). Ends
/// when `deliver` returns false, when `follow` is off and the applied point
/// is reached, or when the node shuts down; fails when a message it has
/// applied still has no token after `token_wait_max`.
///
/// Only new commits are waited for without limit: a message already
/// applied is served, or the stream fails naming it.
#[allow(clippy::too_many_arguments)]
pub async fn follow<S, F, Fut>(
    store: Rc<S>,
    state: Rc<FeedState>,
    certificates: Rc<Certificates>,
    mut cursor: Cursor,
    follow: bool,
    limit: ChunkLimit,
    token_wait_max: Duration,
    mut deliver: F,
) -> Result<(), FeedError>
where
    S: LogStore,
    F: FnMut(Vec<CommittedMessage>, bool) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    // Since when the stream has been held at a message without a token.
    let clock = super::clock::Clock::new();
    let mut held: Option<(TokenMissing, u64)> = None;
    loop {
        let generation = state.notify.generation();
        let stored = certificates.stored.generation();
        let chunk = read_committed(&*store, &state, &certificates, &mut cursor, limit).await?;
        let caught_up = cursor.index > state.applied_index.get();
        let done = caught_up && !follow;
        if (!chunk.messages.is_empty() || done) && !deliver(chunk.messages, done).await {
            return Ok(());
        }
        if done || state.closed.get() {
            return Ok(());
        }
        match chunk.token_missing {
            Some(missing) => {
                let since = match held {
                    Some((at, since)) if at == missing => since,
                    _ => {
                        let now = clock.mono_us();
                        held = Some((missing, now));
                        now
                    }
                };
                let waited = Duration::from_micros(clock.mono_us().saturating_sub(since));
                let Some(left) = token_wait_max.checked_sub(waited) else {
                    return Err(FeedError::TokenMissing {
                        id: missing.id,
                        index: missing.index,
                        waited: token_wait_max,
                    });
                };
                futures_lite::future::or(
                    certificates.stored.wait(stored),
                    futures_lite::future::or(
                        state.closing.wait(state.closing.generation()),
                        super::env::sleep(left),
                    ),
                )
                .await;
            }
            None if caught_up => {
                held = None;
                state.notify.wait(generation).await;
            }
            None => held = None,
        }
    }
}

/// A stream's failure as a client sees it: the message id it could not
/// get past, or what failed.
pub fn client_error(error: &FeedError, at: MessageId) -> ordo_net::ClientError {
    match error {
        FeedError::Compacted { first_id } => ordo_net::ClientError::Compacted {
            first_id: *first_id,
        },
        FeedError::TokenMissing { id, .. } | FeedError::Token { id, .. } => {
            ordo_net::ClientError::Stalled {
                id: *id,
                reason: error.to_string(),
            }
        }
        FeedError::Storage(_) | FeedError::NotServed { .. } => ordo_net::ClientError::Stalled {
            id: at,
            reason: error.to_string(),
        },
    }
}

/// What a log stream or a gossip pull reads committed messages from: the
/// group's log, its apply state and its certificates, held by the task
/// that reads.
pub(super) struct LogSource<S> {
    pub(super) store: Rc<S>,
    pub(super) state: Rc<FeedState>,
    pub(super) certificates: Rc<Certificates>,
}

impl<S> Clone for LogSource<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            state: self.state.clone(),
            certificates: self.certificates.clone(),
        }
    }
}

impl<S: LogStore> LogSource<S> {
    /// Where message `from_id` is in the log.
    pub(super) async fn locate(&self, from_id: MessageId) -> Result<Cursor, FeedError> {
        locate(&*self.store, &self.state, from_id).await
    }

    /// Follows the committed log from `cursor` in log-response chunks
    /// (`feed::follow`), handing each to `deliver` with whether it is the
    /// last; new commits are waited for if `follow`.
    pub(super) async fn follow<F, Fut>(
        self,
        cursor: Cursor,
        follow: bool,
        deliver: F,
    ) -> Result<(), FeedError>
    where
        F: FnMut(Vec<CommittedMessage>, bool) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        self::follow(
            self.store,
            self.state,
            self.certificates,
            cursor,
            follow,
            ChunkLimit::LOG_RESPONSE,
            TOKEN_WAIT_MAX,
            deliver,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use ordo_net::Certificate;
    use ordo_storage::{Batch, BatchKind, BatchMeta, EntryOut, LogStore, MemLog};

    use super::*;
    use crate::node::NodeConfig;
    use crate::node::cert_store::encode_statement;
    use crate::node::on_test_executor;
    use crate::token::{ClusterId, NodeKey, Signer};

    /// A log of `count` user messages of `payload_bytes` each, in batches
    /// of `per_batch`, all applied; certificates with no statement yet.
    struct Fixture {
        store: Rc<MemLog>,
        state: Rc<FeedState>,
        certificates: Rc<Certificates>,
        signer: Signer,
        _dir: tempfile::TempDir,
    }

    fn fixture(count: u64, payload_bytes: usize, per_batch: u64) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut config = NodeConfig::cluster(1, 40_000, 7).unwrap().remove(0);
        config.data_dir = dir.path().to_path_buf();
        // A cluster with tokens, and no key in the data directory: this
        // node signs nothing, as a follower's tokens come from the leader's
        // statements (the keys file is read only with a key).
        config.keys_file = Some(dir.path().join("cluster.keys"));
        // It exists (tokens are on); without a key it is not read.
        std::fs::write(dir.path().join("cluster.keys"), "").unwrap();
        let certificates = Rc::new(Certificates::open(&config).unwrap());
        let store = Rc::new(MemLog::new());
        let payload = vec![7u8; payload_bytes];
        let mut index = 1;
        while index <= count {
            let last = count.min(index + per_batch - 1);
            let entries = (index..=last)
                .map(|_| EntryOut {
                    client_id: 0,
                    seq: 0,
                    payload: &payload,
                })
                .collect();
            let batch = Batch::encode(
                BatchMeta {
                    kind: BatchKind::Entries,
                    term: 1,
                    first_index: index,
                    first_id: index,
                    first_ts: 1_000 + index,
                },
                entries,
            );
            store.append_now(&[batch]).unwrap();
            index = last + 1;
        }
        store.sync_now().unwrap();
        let state = Rc::new(FeedState::default());
        state.applied_index.set(count);
        state.applied_id.set(count);
        Fixture {
            store,
            state,
            certificates,
            signer: Signer::new(ClusterId([7; 16]), 1, NodeKey::generate().unwrap()),
            _dir: dir,
        }
    }

    impl Fixture {
        /// Stores the leader's statement over `[first, last]`, as a
        /// replicated certificate.
        async fn certify(&self, first: Index, last: Index) {
            let batches = self.store.read(first, usize::MAX).await.unwrap();
            let entries = batches
                .iter()
                .flat_map(|b| b.entries())
                .filter(|e| e.index >= first && e.index <= last);
            let proof = self.signer.sign_entries(1, entries).unwrap();
            self.certificates.received(Certificate {
                term: 1,
                statement: encode_statement(proof.signed()),
            });
        }

        async fn read(&self, cursor: &mut Cursor, limit: ChunkLimit) -> Chunk {
            read_committed(&*self.store, &self.state, &self.certificates, cursor, limit)
                .await
                .unwrap()
        }
    }

    const START: Cursor = Cursor {
        next_id: 1,
        index: 1,
    };

    #[test]
    fn chunks_are_cut_by_bytes_and_every_message_has_its_token() {
        on_test_executor(|| async {
            // 64 KiB messages, many per batch (forwarded proposals).
            let f = fixture(300, 64 << 10, 150);
            f.certify(1, 300).await;
            let limit = ChunkLimit {
                messages_max: 4096,
                bytes_max: 1 << 20,
            };
            let mut cursor = START;
            let mut next = 1;
            while next <= 300 {
                let chunk = f.read(&mut cursor, limit).await;
                assert!(chunk.token_missing.is_none());
                let response = LogResponse {
                    request_id: 1,
                    messages: chunk.messages,
                    done: false,
                };
                assert!(!response.messages.is_empty());
                assert!(response.wire_bytes() - LogResponse::ENVELOPE_BYTES <= limit.bytes_max);
                for message in &response.messages {
                    assert_eq!(message.id, next);
                    assert!(!message.token.is_empty());
                    next += 1;
                }
            }
            assert_eq!(cursor.index, 301);
        });
    }

    #[test]
    fn a_message_larger_than_the_byte_bound_still_comes_alone() {
        on_test_executor(|| async {
            let f = fixture(3, (1 << 20) - 64, 3);
            f.certify(1, 3).await;
            let limit = ChunkLimit {
                messages_max: 4096,
                bytes_max: 1 << 16,
            };
            let mut cursor = START;
            for id in 1..=3 {
                let chunk = f.read(&mut cursor, limit).await;
                assert_eq!(chunk.messages.len(), 1);
                assert_eq!(chunk.messages[0].id, id);
            }
        });
    }

    #[test]
    fn a_read_stops_before_the_first_message_without_a_certificate() {
        on_test_executor(|| async {
            let f = fixture(10, 64, 5);
            f.certify(1, 4).await;
            let mut cursor = START;
            let chunk = f.read(&mut cursor, ChunkLimit::LOG_RESPONSE).await;
            assert_eq!(chunk.messages.len(), 4);
            assert_eq!(chunk.token_missing, Some(TokenMissing { id: 5, index: 5 }));
            assert_eq!(
                cursor,
                Cursor {
                    next_id: 5,
                    index: 5
                }
            );
            // Nothing further is read until the statement arrives.
            let chunk = f.read(&mut cursor, ChunkLimit::LOG_RESPONSE).await;
            assert!(chunk.messages.is_empty());
            f.certify(5, 10).await;
            let chunk = f.read(&mut cursor, ChunkLimit::LOG_RESPONSE).await;
            assert_eq!(chunk.messages.len(), 6);
            assert!(chunk.token_missing.is_none());
        });
    }

    #[test]
    fn a_stream_held_at_a_missing_certificate_fails_naming_the_id() {
        on_test_executor(|| async {
            let f = fixture(10, 64, 10);
            f.certify(1, 6).await;
            let delivered = Rc::new(Cell::new(0u64));
            let seen = delivered.clone();
            let started = Instant::now();
            let result = follow(
                f.store.clone(),
                f.state.clone(),
                f.certificates.clone(),
                START,
                true,
                ChunkLimit::LOG_RESPONSE,
                Duration::from_millis(200),
                move |messages, _| {
                    seen.set(seen.get() + messages.len() as u64);
                    async { true }
                },
            )
            .await;
            assert_eq!(delivered.get(), 6);
            match result {
                Err(FeedError::TokenMissing { id, index, .. }) => assert_eq!((id, index), (7, 7)),
                other => panic!("expected TokenMissing, got {other:?}"),
            }
            assert!(started.elapsed() >= Duration::from_millis(200));
            let error = client_error(&result.unwrap_err(), 0);
            assert!(error.to_string().contains("message id 7"), "{error}");
        });
    }

    #[test]
    fn a_stream_held_at_a_missing_certificate_resumes_when_it_arrives() {
        on_test_executor(|| async {
            let f = Rc::new(fixture(10, 64, 10));
            f.certify(1, 3).await;
            let late = f.clone();
            glommio::spawn_local(async move {
                glommio::timer::sleep(Duration::from_millis(50)).await;
                late.certify(4, 10).await;
            })
            .detach();
            let ids = Rc::new(std::cell::RefCell::new(Vec::new()));
            let seen = ids.clone();
            follow(
                f.store.clone(),
                f.state.clone(),
                f.certificates.clone(),
                START,
                false,
                ChunkLimit::LOG_RESPONSE,
                Duration::from_secs(10),
                move |messages, _| {
                    seen.borrow_mut().extend(messages.iter().map(|m| m.id));
                    assert!(messages.iter().all(|m| !m.token.is_empty()));
                    async { true }
                },
            )
            .await
            .unwrap();
            assert_eq!(*ids.borrow(), (1..=10).collect::<Vec<_>>());
        });
    }

    #[test]
    fn a_cluster_without_tokens_serves_entries_without_waiting() {
        on_test_executor(|| async {
            let dir = tempfile::tempdir().unwrap();
            let mut config = NodeConfig::cluster(1, 40_000, 7).unwrap().remove(0);
            config.data_dir = dir.path().to_path_buf();
            config.keys_file = None;
            let f = fixture(5, 64, 5);
            let certificates = Certificates::open(&config).unwrap();
            let mut cursor = START;
            let chunk = read_committed(
                &*f.store,
                &f.state,
                &certificates,
                &mut cursor,
                ChunkLimit::LOG_RESPONSE,
            )
            .await
            .unwrap();
            assert_eq!(chunk.messages.len(), 5);
            assert!(chunk.token_missing.is_none());
            assert!(chunk.messages.iter().all(|m| m.token.is_empty()));
        });
    }

    #[test]
    fn payloads_are_slices_of_the_log() {
        on_test_executor(|| async {
            let f = fixture(2, 100, 2);
            f.certify(1, 2).await;
            let mut cursor = START;
            let chunk = f.read(&mut cursor, ChunkLimit::LOG_RESPONSE).await;
            assert_eq!(chunk.messages[1].payload, Bytes::from(vec![7u8; 100]));
        });
    }
}
