//! Snapshots at runtime: saving the state machine's snapshot durably,
//! streaming it to a follower in acknowledged chunks, receiving one, and
//! reading it back for a restore or a restart.
//!
//! A snapshot file holds the core's [`SnapshotMeta`] (encoded by
//! [`encode_meta`]) followed by the state machine's bytes, so a restart
//! finds both in one place.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ordo_net::{InstallSnapshot, Message, PeerMessage, SnapshotAck, SnapshotChunk, SnapshotMeta};
use ordo_storage::snapshot::SnapshotStore;
use ordo_storage::{LogId, NodeId, StorageError, Term};

use super::input::InputSender;
use super::peers::Peers;
use crate::core::Event;

/// Bytes per streamed chunk.
const CHUNK_BYTES: usize = 256 << 10;
/// How long the leader waits for a chunk's acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest snapshot this runtime receives into memory for a restore.
pub const RECEIVED_BYTES_MAX: u64 = 1 << 30;

/// Encodes the core's snapshot metadata (little-endian, length-prefixed).
pub fn encode_meta(meta: &SnapshotMeta) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u64_le(meta.last.term);
    out.put_u64_le(meta.last.index);
    out.put_u64_le(meta.last_id);
    out.put_u64_le(meta.last_ts);
    out.put_u32_le(meta.voters.len() as u32);
    for voter in &meta.voters {
        out.put_u64_le(*voter);
    }
    out.put_u32_le(meta.core_state.len() as u32);
    out.put_slice(&meta.core_state);
    let mut framed = BytesMut::with_capacity(out.len() + 4);
    framed.put_u32_le(out.len() as u32);
    framed.put_slice(&out);
    framed.freeze()
}

/// Why a snapshot's header (what `encode_meta` writes) does not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotHeaderError {
    /// The bytes end inside the header.
    #[error("snapshot header truncated")]
    Truncated,
    /// The header's lengths do not add up to its size.
    #[error("snapshot header length mismatch")]
    LengthMismatch,
}

/// Why the latest snapshot could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum LoadSnapshotError {
    /// The store failed to read it (an IO error, a data CRC that does not
    /// match).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Its header does not decode.
    #[error(transparent)]
    Header(#[from] SnapshotHeaderError),
}

/// Why streaming a snapshot to a follower stopped (the core sends it again).
#[derive(Debug, thiserror::Error)]
pub enum SendSnapshotError {
    /// Reading the snapshot failed.
    #[error(transparent)]
    Load(#[from] LoadSnapshotError),
    /// There is no snapshot.
    #[error("no snapshot to send")]
    NoSnapshot,
    /// The newer snapshot to send instead went away.
    #[error("the latest snapshot disappeared")]
    Disappeared,
    /// A newer snapshot was installed while this one was being read.
    #[error("the latest snapshot changed while being sent")]
    Changed,
    /// The store holds an older snapshot than the one asked for.
    #[error("latest snapshot is {latest:?}, older than {asked:?}")]
    Older {
        /// The snapshot the store holds.
        latest: LogId,
        /// The snapshot the core asked to send.
        asked: LogId,
    },
    /// The peer transport refused a chunk or the install message.
    #[error(transparent)]
    Send(#[from] ordo_net::transport::SendError),
    /// The follower did not acknowledge a chunk in time.
    #[error("no acknowledgement within {0:?}")]
    NoAck(Duration),
}

impl From<StorageError> for SendSnapshotError {
    fn from(error: StorageError) -> Self {
        Self::Load(LoadSnapshotError::Storage(error))
    }
}

/// Decodes what [`encode_meta`] wrote at the start of `bytes`; returns the
/// metadata and the state machine's bytes after it. Untrusted input.
pub fn decode_meta(mut bytes: Bytes) -> Result<(SnapshotMeta, Bytes), SnapshotHeaderError> {
    let truncated = || SnapshotHeaderError::Truncated;
    if bytes.len() < 4 {
        return Err(truncated());
    }
    let len = bytes.get_u32_le() as usize;
    if bytes.len() < len || len < 40 {
        return Err(truncated());
    }
    let mut header = bytes.split_to(len);
    let last = LogId::new(header.get_u64_le(), header.get_u64_le());
    let last_id = header.get_u64_le();
    let last_ts = header.get_u64_le();
    let voters_len = header.get_u32_le() as usize;
    if header.remaining() < voters_len.saturating_mul(8) + 4 {
        return Err(truncated());
    }
    let voters = (0..voters_len).map(|_| header.get_u64_le()).collect();
    let state_len = header.get_u32_le() as usize;
    if header.remaining() != state_len {
        return Err(SnapshotHeaderError::LengthMismatch);
    }
    Ok((
        SnapshotMeta {
            last,
            last_id,
            last_ts,
            voters,
            core_state: header,
        },
        bytes,
    ))
}

/// The store's lock fails only once closed, which the runtime never does
/// while the group runs: the storage crate's word for a store that takes
/// no more work.
fn lock_closed(error: glommio::GlommioError<()>) -> StorageError {
    StorageError::Closed(error.to_string())
}

/// A snapshot being received from the leader.
struct Incoming {
    last: LogId,
    next_offset: u64,
    data: BytesMut,
}

/// The group's snapshot traffic. Lives on the group's shard.
pub struct SnapshotIo {
    /// The store; an async lock because creating and reading take it
    /// shared across awaits while installing takes it exclusively.
    store: Rc<glommio::sync::RwLock<SnapshotStore>>,
    peers: Rc<Peers>,
    inputs: InputSender,
    /// Acknowledgements routed to the task streaming to each follower.
    acks: RefCell<HashMap<NodeId, async_channel::Sender<SnapshotAck>>>,
    incoming: RefCell<Option<Incoming>>,
    /// A complete snapshot received from the leader, waiting for the core's
    /// `RestoreSnapshot`.
    received: RefCell<Option<(LogId, Bytes)>>,
    term: std::cell::Cell<Term>,
}

impl SnapshotIo {
    /// Snapshot traffic over `store` and `peers`.
    pub fn new(store: SnapshotStore, peers: Rc<Peers>, inputs: InputSender) -> Self {
        Self {
            store: Rc::new(glommio::sync::RwLock::new(store)),
            peers,
            inputs,
            acks: RefCell::default(),
            incoming: RefCell::default(),
            received: RefCell::default(),
            term: std::cell::Cell::new(0),
        }
    }

    /// The latest durable snapshot: its metadata and the state machine's
    /// bytes (read at start).
    pub async fn load_latest(
        store: &SnapshotStore,
    ) -> Result<Option<(SnapshotMeta, Bytes)>, LoadSnapshotError> {
        let Some(mut reader) = store.reader().await? else {
            return Ok(None);
        };
        let mut data = BytesMut::new();
        while let Some(chunk) = reader.next_chunk(CHUNK_BYTES).await? {
            data.put_slice(&chunk);
        }
        Ok(Some(decode_meta(data.freeze())?))
    }

    async fn lock_shared(
        &self,
    ) -> ordo_storage::Result<glommio::sync::RwLockReadGuard<'_, SnapshotStore>> {
        self.store.read().await.map_err(lock_closed)
    }

    async fn lock_exclusive(
        &self,
    ) -> ordo_storage::Result<glommio::sync::RwLockWriteGuard<'_, SnapshotStore>> {
        self.store.write().await.map_err(lock_closed)
    }

    /// Writes the snapshot that ends at `last` (`header`, if given, then
    /// `data`) and installs it, durably.
    async fn write_durably(
        &self,
        last: LogId,
        header: Option<&[u8]>,
        data: &[u8],
    ) -> ordo_storage::Result<()> {
        let mut writer = self.lock_shared().await?.create(last).await?;
        if let Some(header) = header {
            writer.write_chunk(header).await?;
        }
        for chunk in data.chunks(CHUNK_BYTES) {
            writer.write_chunk(chunk).await?;
        }
        self.lock_exclusive()
            .await?
            .install(writer)
            .await
            .map(|_| ())
    }

    /// Saves a snapshot the state machine took (`Command::CreateSnapshot`);
    /// reports `SnapshotCreated` once it is durable.
    pub fn save(self: &Rc<Self>, meta: SnapshotMeta, data: Bytes) {
        let this = self.clone();
        super::env::spawn(async move {
            let result = this
                .write_durably(meta.last, Some(&encode_meta(&meta)), &data)
                .await;
            match result {
                Ok(()) => this.inputs.completion(Event::SnapshotCreated(meta)),
                Err(error @ StorageError::SnapshotSuperseded { .. }) => {
                    tracing::debug!(%error, "a newer snapshot was installed first");
                    this.inputs.completion(Event::SnapshotNotCreated(meta));
                }
                Err(error) => {
                    tracing::error!(%error, "saving a snapshot failed; the log is not compacted");
                    this.inputs.completion(Event::SnapshotNotCreated(meta));
                }
            }
        });
    }

    /// Streams the latest snapshot to `to` (`Command::SendSnapshot`), then
    /// hands its metadata to the follower's core; reports `SnapshotSent`.
    pub fn send(self: &Rc<Self>, to: NodeId, meta: SnapshotMeta, term: Term) {
        let this = self.clone();
        let (ack_tx, ack_rx) = async_channel::bounded(16);
        self.acks.borrow_mut().insert(to, ack_tx);
        super::env::spawn(async move {
            let ok = this
                .stream(to, &meta, term, &ack_rx)
                .await
                .unwrap_or_else(|error| {
                    tracing::warn!(to, %error, "snapshot stream failed");
                    false
                });
            this.acks.borrow_mut().remove(&to);
            this.inputs.completion(Event::SnapshotSent { to, ok });
        });
    }

    async fn stream(
        &self,
        to: NodeId,
        meta: &SnapshotMeta,
        term: Term,
        acks: &async_channel::Receiver<SnapshotAck>,
    ) -> Result<bool, SendSnapshotError> {
        // Damage met reading the snapshot back: the core takes a new one.
        let damaged = |error: StorageError| {
            if matches!(error, StorageError::Corrupt { .. }) {
                tracing::error!(%error, "the latest snapshot is damaged: taking a new one");
                self.inputs.completion(Event::SnapshotUnreadable);
            }
            SendSnapshotError::from(error)
        };
        let reader = self.lock_shared().await?.reader().await.map_err(damaged)?;
        let Some(mut reader) = reader else {
            return Err(SendSnapshotError::NoSnapshot);
        };
        let newer;
        let meta = if reader.meta().last == meta.last {
            meta
        } else if reader.meta().last.index > meta.last.index {
            // A snapshot received from an earlier leader is newer than the
            // last one the core took or restored (its log already held the
            // entries, so it kept them and restored nothing): send that one,
            // with its own metadata (runtime simulator, seed 9809: every
            // stream failed on the mismatch, and the follower never caught
            // up).
            let store = self.lock_shared().await?;
            newer = Self::load_latest(&store)
                .await?
                .map(|(meta, _)| meta)
                .ok_or(SendSnapshotError::Disappeared)?;
            if newer.last != reader.meta().last {
                return Err(SendSnapshotError::Changed);
            }
            &newer
        } else {
            return Err(SendSnapshotError::Older {
                latest: reader.meta().last,
                asked: meta.last,
            });
        };
        let mut offset = 0u64;
        let mut next = reader.next_chunk(CHUNK_BYTES).await.map_err(damaged)?;
        loop {
            let data = next.take().unwrap_or_default();
            let len = data.len() as u64;
            next = reader.next_chunk(CHUNK_BYTES).await.map_err(damaged)?;
            let done = next.is_none();
            let chunk = SnapshotChunk {
                term,
                last: meta.last,
                offset,
                data,
                done,
            };
            self.peers
                .send(to, PeerMessage::SnapshotChunk(chunk))
                .await?;
            offset += len;
            let ack = futures_lite::future::or(async { acks.recv().await.ok() }, async {
                super::env::sleep(ACK_TIMEOUT).await;
                None
            })
            .await
            .ok_or(SendSnapshotError::NoAck(ACK_TIMEOUT))?;
            if !ack.ok || ack.next_offset != offset {
                return Ok(false);
            }
            if done {
                break;
            }
        }
        let message = Message::InstallSnapshot(InstallSnapshot {
            term,
            meta: meta.clone(),
        });
        self.peers.send(to, PeerMessage::Raft(message)).await?;
        Ok(true)
    }

    /// The leader's acknowledgement routing.
    pub fn ack_received(&self, from: NodeId, ack: SnapshotAck) {
        if let Some(sender) = self.acks.borrow().get(&from) {
            // A full or closed channel: the transfer task has ended or is behind; the leader's stall detection retries the snapshot.
            let _ = sender.try_send(ack);
        }
    }

    /// A follower receives a chunk: chunks must arrive in order from offset
    /// 0; the follower acknowledges each (or refuses, and the leader starts
    /// over). The data is kept for the restore and saved durably once
    /// complete.
    pub fn chunk_received(self: &Rc<Self>, from: NodeId, chunk: SnapshotChunk) {
        self.term.set(chunk.term);
        let mut ok = true;
        {
            let mut incoming = self.incoming.borrow_mut();
            if chunk.offset == 0 {
                *incoming = Some(Incoming {
                    last: chunk.last,
                    next_offset: 0,
                    data: BytesMut::new(),
                });
            }
            match incoming.as_mut() {
                Some(current)
                    if current.last == chunk.last
                        && current.next_offset == chunk.offset
                        && current.next_offset + chunk.data.len() as u64 <= RECEIVED_BYTES_MAX =>
                {
                    current.data.put_slice(&chunk.data);
                    current.next_offset += chunk.data.len() as u64;
                }
                _ => ok = false,
            }
        }
        let next_offset = self.incoming.borrow().as_ref().map_or(0, |c| c.next_offset);
        if ok && chunk.done {
            let complete = self.incoming.borrow_mut().take().expect("checked");
            let data = complete.data.freeze();
            match decode_meta(data.clone()) {
                Ok((_, state)) => {
                    // The last chunk is acknowledged once the snapshot is
                    // durable: the leader then installs it, and this node
                    // resets its log to it. Acknowledged before, a crash
                    // could lose both the snapshot and the entries the
                    // reset removed.
                    let ack = SnapshotAck {
                        term: chunk.term,
                        last: chunk.last,
                        next_offset,
                        ok: true,
                    };
                    self.persist_received(complete.last, data, state, from, ack);
                    return;
                }
                Err(error) => {
                    tracing::warn!(from, %error, "received snapshot is malformed");
                    ok = false;
                }
            }
        }
        let ack = SnapshotAck {
            term: chunk.term,
            last: chunk.last,
            next_offset,
            ok,
        };
        // A full queue drops it: the leader's snapshot stalls and is retried (`detect_stalled_followers`).
        let _ = self.peers.try_send(from, PeerMessage::SnapshotAck(ack));
    }

    /// Saves a received snapshot (`data`, holding the state machine's
    /// `state`), then offers it to `RestoreSnapshot` and sends `ack` to
    /// `from` (with `ok` false if the save failed).
    ///
    /// It is offered only once durable: a duplicated `InstallSnapshot`
    /// from an earlier transfer of the same snapshot could otherwise
    /// restore it and reset the log while the file is still being written,
    /// and a crash then left a log that starts after a snapshot the disk
    /// never got (runtime simulator, seed 711).
    fn persist_received(
        self: &Rc<Self>,
        last: LogId,
        data: Bytes,
        state: Bytes,
        from: NodeId,
        ack: SnapshotAck,
    ) {
        let this = self.clone();
        super::env::spawn(async move {
            let result = this.write_durably(last, None, &data).await;
            let mut ack = ack;
            match result {
                // Superseded: this snapshot (a duplicate transfer) or a
                // newer one is already durable.
                Ok(()) | Err(StorageError::SnapshotSuperseded { .. }) => {
                    *this.received.borrow_mut() = Some((last, state))
                }
                Err(error) => {
                    tracing::error!(%error, "saving a received snapshot failed");
                    ack.ok = false;
                }
            }
            // A full queue drops it: the leader's snapshot stalls and is
            // retried (`detect_stalled_followers`).
            let _ = this.peers.try_send(from, PeerMessage::SnapshotAck(ack));
        });
    }

    /// The state machine bytes of the received snapshot for `meta`, if it
    /// is the one received.
    pub fn take_received(&self, meta: &SnapshotMeta) -> Option<Bytes> {
        let mut received = self.received.borrow_mut();
        match received.as_ref() {
            Some((last, _)) if *last == meta.last => received.take().map(|(_, data)| data),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_rejects_truncation() {
        let meta = SnapshotMeta {
            last: LogId::new(3, 99),
            last_id: 90,
            last_ts: 12345,
            voters: vec![1, 2, 3],
            core_state: Bytes::from_static(b"sessions"),
        };
        let mut file = encode_meta(&meta).to_vec();
        file.extend_from_slice(b"machine");
        let (again, state) = decode_meta(Bytes::from(file.clone())).unwrap();
        assert_eq!(again, meta);
        assert_eq!(&state[..], b"machine");
        let header = encode_meta(&meta).len();
        for cut in 0..header {
            assert!(
                decode_meta(Bytes::from(file[..cut].to_vec())).is_err(),
                "cut at {cut}"
            );
        }
    }
}
