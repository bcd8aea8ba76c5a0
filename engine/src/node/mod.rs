//! The node: the runtime that drives the Raft core on glommio, and the
//! embedding API.
//!
//! ```no_run
//! use ordo_engine::node::{Node, NodeConfig, NullStateMachine};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = NodeConfig::load("node1/ordo.toml".as_ref())?;
//! let node = Node::start(config, || Box::new(NullStateMachine))?;
//! let handle = node.handle();
//! let receipt = handle.propose_blocking(b"hello".to_vec())?;
//! println!("committed as id {} at index {}", receipt.id, receipt.index);
//! node.shutdown()?;
//! # Ok(()) }
//! ```
//!
//! Threads: the Raft group (its core, log, peer connections and state
//! machine) lives on shard 0, a glommio executor. A [`NodeHandle`] is `Send`
//! and talks to shard 0 over a bounded channel, from any thread.

mod cert_store;
mod chain_store;
mod clock;
mod config;
pub mod durability;
pub mod env;
mod feed;
mod gossip_bridge;
pub mod gossip_driver;
mod group;
pub mod health;
mod inbox;
mod input;
mod log_io;
pub mod members;
pub(crate) mod notify;
mod observe;
mod peers;
pub(crate) mod restore;
mod shards;
pub mod simulated;
mod snapshots;
mod start;
mod ticker;
pub mod timeline;
mod tokens;
pub(crate) mod wake;

use bytes::Bytes;
pub use cert_store::CertStoreError;
pub use chain_store::{ChainStoreError, SnapshotLinksError};
pub use config::{
    GOSSIP_PORT_OFFSET, ListenConfig, METRICS_PORT_OFFSET, MetricsConfig, NodeConfig,
    NodeConfigError, PEER_PORT_OFFSET, PeerConfig, RuntimeConfig, StorageConfig,
};
pub use feed::{FeedError, TOKEN_WAIT_MAX};
pub use gossip_bridge::{GossipEndpointError, GossipStartError};
pub use group::LogFailed;
pub use group::node_status;
use input::External;
pub use ordo_net::CommittedMessage;
use ordo_net::{ProposeError, ReadError};
use ordo_storage::{ClientId, Index, MessageId, NodeId, Seq, Term, TimestampUs};
pub use peers::InprocPeers;
pub use restore::raft_state;
pub use shards::ShardListenError;
pub use snapshots::{LoadSnapshotError, SendSnapshotError, SnapshotHeaderError};
pub use start::{LocalNode, Node, NodeError, OpenStorageError, RunError, StartError, StartOptions};
pub use tokens::{CertificatesError, LinkError, SignGapError, TokenError};

use crate::core::{ApplyBatch, ChangeError, MembershipChange, Status, TransferError};

/// What a committed proposal gets back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The dense message id.
    pub id: MessageId,
    /// The log index.
    pub index: Index,
    /// The term it committed in.
    pub term: Term,
    /// Its timestamp (µs since the epoch, strictly increasing along the log).
    pub ts: TimestampUs,
    /// The commit token (encoded), verifiable with the cluster's keys.
    pub token: Bytes,
}

/// An embedder's replicated state. Lives on the group's shard; every node
/// applies the same entries in the same order.
pub trait StateMachine {
    /// Applies committed entries, in log order, each exactly once. Use
    /// [`ApplyBatch::messages`] for the user messages (internal entries
    /// such as a new leader's no-op are in [`ApplyBatch::entries`] too).
    fn apply(&mut self, batch: &ApplyBatch);

    /// The state after everything applied so far, as bytes.
    fn snapshot(&mut self) -> Bytes;

    /// Replaces the state by a snapshot taken by [`StateMachine::snapshot`]
    /// (possibly on another node). An error leaves the node without the
    /// snapshot: at start it refuses to start, on a follower the leader
    /// sends it again.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError>;
}

/// Why a state machine could not restore a snapshot: its own error, kept
/// whole (with its causes) for the node's log and start-up error.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct RestoreError(#[from] Box<dyn std::error::Error + Send + Sync>);

impl RestoreError {
    /// Wraps any error, or a message: `RestoreError::new("bad snapshot")`.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(error.into())
    }
}

/// A state machine that keeps nothing: the committed log itself is the
/// product (the `ordo` binary).
#[derive(Clone, Copy, Debug, Default)]
pub struct NullStateMachine;

impl StateMachine for NullStateMachine {
    fn apply(&mut self, _batch: &ApplyBatch) {}

    fn snapshot(&mut self) -> Bytes {
        Bytes::new()
    }

    fn restore(&mut self, _snapshot: &[u8]) -> Result<(), RestoreError> {
        Ok(())
    }
}

/// Why a handle call failed before reaching the core.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// The node's request queue is full.
    #[error("the node's request queue is full")]
    Busy,
    /// The node did not answer in time.
    #[error("the node did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

/// Why a membership change or a leadership transfer failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// The core refused or lost the change.
    #[error(transparent)]
    Membership(#[from] ChangeError),
    /// The transfer did not happen.
    #[error(transparent)]
    Transfer(#[from] TransferError),
}

/// A `Send` handle to a running node, usable from any thread: async methods
/// from any executor, `_blocking` ones from plain threads.
#[derive(Clone)]
pub struct NodeHandle {
    id: NodeId,
    external: inbox::Sender<External>,
}

impl NodeHandle {
    /// Sends the request `make` builds around a reply channel and waits
    /// for its answer; `None` if the node stopped before it answered.
    async fn request<T>(&self, make: impl FnOnce(input::Reply<T>) -> External) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.external.send(make(reply)).await.ok()?;
        answer.await.ok()
    }

    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Proposes `payload` without a session.
    pub async fn propose(&self, payload: impl Into<Bytes>) -> Result<Receipt, ProposeError> {
        self.propose_in_session(0, 0, payload).await
    }

    /// Proposes `payload` as `(client_id, seq)`: a retry with the same pair
    /// returns the original receipt instead of committing twice.
    pub async fn propose_in_session(
        &self,
        client_id: ClientId,
        seq: Seq,
        payload: impl Into<Bytes>,
    ) -> Result<Receipt, ProposeError> {
        let payload = payload.into();
        self.request(|reply| External::Propose {
            client_id,
            seq,
            payload,
            reply,
        })
        .await
        .unwrap_or(Err(ProposeError::Stopped))
    }

    /// [`NodeHandle::propose`] from a thread that is not an executor.
    pub fn propose_blocking(&self, payload: impl Into<Bytes>) -> Result<Receipt, ProposeError> {
        futures_lite::future::block_on(self.propose(payload))
    }

    /// A linearizable read barrier: returns the read index once this node's
    /// state machine has applied it, so a read of the state machine now
    /// reflects every write acknowledged before the call.
    pub async fn read(&self) -> Result<Index, ReadError> {
        self.request(|reply| External::Read { reply })
            .await
            .unwrap_or(Err(ReadError::Stopped))
    }

    /// [`NodeHandle::read`] from a plain thread.
    pub fn read_blocking(&self) -> Result<Index, ReadError> {
        futures_lite::future::block_on(self.read())
    }

    /// The core's status.
    pub async fn status(&self) -> Result<Status, HandleError> {
        self.request(|reply| External::Status { reply })
            .await
            .ok_or(HandleError::Stopped)
    }

    /// What `ordo status` prints for this node, from a plain thread,
    /// waiting at most `limit` for the group to answer.
    pub fn node_status_blocking(
        &self,
        limit: std::time::Duration,
    ) -> Result<ordo_net::NodeStatus, HandleError> {
        let (reply, answer) = oneshot::channel();
        self.external
            .try_send(External::ClientStatus { reply })
            .map_err(|error| match error {
                inbox::TrySendError::Full(_) => HandleError::Busy,
                inbox::TrySendError::Closed(_) => HandleError::Stopped,
            })?;
        match answer.recv_timeout(limit) {
            Ok((status, _)) => Ok(status),
            Err(oneshot::RecvTimeoutError::Timeout) => Err(HandleError::Timeout(limit)),
            Err(oneshot::RecvTimeoutError::Disconnected) => Err(HandleError::Stopped),
        }
    }

    /// [`NodeHandle::status`] from a plain thread.
    pub fn status_blocking(&self) -> Result<Status, HandleError> {
        futures_lite::future::block_on(self.status())
    }

    /// Committed messages from `from_id` on, in id order, each with its
    /// token, then every new one as it commits. At most `capacity` wait in
    /// the channel; a slow reader slows only its own stream. Dropping the
    /// receiver ends it.
    ///
    /// A stream that cannot go on ends with one `Err` naming why: the ids
    /// were compacted away, the log failed, or an applied message's token
    /// did not come within [`TOKEN_WAIT_MAX`] (the error names its id).
    /// Without tokens (no `keys_file` in the config) messages come with
    /// empty tokens.
    /// The channel closes without an error only when the node stops.
    pub fn subscribe(
        &self,
        from_id: MessageId,
        capacity: usize,
    ) -> async_channel::Receiver<Result<CommittedMessage, FeedError>> {
        let (sink, stream) = async_channel::bounded(capacity.max(1));
        if let Err(error) = self.external.try_send(External::Subscribe {
            from_id,
            sink: sink.clone(),
        }) {
            // The request never reached the group: say so on the stream
            // (the channel has room for this one item).
            let reason = match error {
                inbox::TrySendError::Full(_) => "the node's request queue is full",
                inbox::TrySendError::Closed(_) => "the node has stopped",
            };
            // Fresh and bounded with room for this one error; the subscriber may be gone.
            let _ = sink.try_send(Err(FeedError::NotServed {
                reason: reason.into(),
            }));
        }
        stream
    }

    /// Hands leadership to voter `to` (thesis §3.10). Returns the new
    /// leader once this node sees `to` lead, or why not: this node does
    /// not lead, `to` is not a voter or is repairing, another transfer
    /// runs, or `to` did not take over within an election timeout (then
    /// this node, if it still leads, takes proposals again).
    pub async fn transfer_leadership(&self, to: NodeId) -> Result<NodeId, AdminError> {
        let reply = |reply| External::TransferLeadership {
            to,
            reply: Some(reply),
        };
        let result = self.request(reply).await.ok_or(AdminError::Stopped)?;
        result.map_err(AdminError::Transfer)
    }

    /// Changes the membership by one server (thesis §4.1), at the leader.
    /// Returns the index of the configuration entry once it commits.
    pub async fn change_membership(&self, change: MembershipChange) -> Result<Index, AdminError> {
        let reply = |reply| External::ChangeMembership { change, reply };
        let result = self.request(reply).await.ok_or(AdminError::Stopped)?;
        result.map_err(AdminError::Membership)
    }

    /// The configuration in force as this node sees it.
    pub async fn members(&self) -> Result<members::MembersView, AdminError> {
        self.request(|reply| External::Members { reply })
            .await
            .ok_or(AdminError::Stopped)
    }

    /// The configuration links this node holds: committed configuration
    /// entries with their tokens, from `cluster.keys` on
    /// ([`crate::token::Verifier::learn`] checks and learns each).
    pub async fn chain(&self) -> Result<Vec<crate::token::ConfigLink>, AdminError> {
        self.request(|reply| External::Chain { reply })
            .await
            .ok_or(AdminError::Stopped)
    }

    /// Asks the node to stop (see [`Node::shutdown`] to also wait for it).
    /// Never blocks: when the node's inbox is full, a thread of its own
    /// waits for room, so the request is not lost (and `Node::shutdown`
    /// does not wait forever).
    pub fn request_shutdown(&self) {
        match self.external.try_send(External::Shutdown) {
            Ok(()) => {}
            Err(inbox::TrySendError::Full(_)) => {
                let external = self.external.clone();
                let spawned = std::thread::Builder::new()
                    .name("ordo-shutdown".into())
                    .spawn(move || {
                        // Fails only if the node stopped meanwhile: done.
                        let _ = futures_lite::future::block_on(external.send(External::Shutdown));
                    });
                if let Err(error) = spawned {
                    tracing::error!(%error, "cannot queue the shutdown request");
                }
            }
            // The node has stopped already.
            Err(inbox::TrySendError::Closed(_)) => {}
        }
    }
}

/// Runs `test` on a fresh glommio executor of its own thread (unit tests of
/// the runtime's pieces).
#[cfg(test)]
pub(crate) fn on_test_executor<F, T>(test: T)
where
    T: FnOnce() -> F + Send + 'static,
    F: std::future::Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(64 << 10)
        .spawn(test)
        .unwrap()
        .join()
        .unwrap();
}
