//! What reaches the group's loop besides peer messages and client calls:
//! completions of the commands it issued (same shard) and requests from
//! other threads (the embedding handle).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;
use ordo_net::{ProposeError, ReadError};
use ordo_storage::{ClientId, Index, MessageId, Seq};

use super::notify::Notify;
use super::{CommittedMessage, Receipt};
use crate::core::{Event, Status};

/// Completions produced on the group's shard. Unbounded on purpose: each
/// answers a command the core issued, and the core bounds those.
#[derive(Default)]
pub struct LocalInputs {
    events: RefCell<VecDeque<Event>>,
    fatal: Cell<bool>,
    /// Moves whenever an event or a failure arrives.
    pub notify: Notify,
}

/// A handle to push completions (cheap to clone; same shard only).
#[derive(Clone, Default)]
pub struct InputSender(pub Rc<LocalInputs>);

impl InputSender {
    /// Queues a completion for the core.
    pub fn completion(&self, event: Event) {
        self.0.events.borrow_mut().push_back(event);
        self.0.notify.notify();
    }

    /// Something failed that the node cannot continue after.
    pub fn fatal(&self) {
        self.0.fatal.set(true);
        self.0.notify.notify();
    }

    /// Takes the next completion.
    pub fn pop(&self) -> Option<Event> {
        self.0.events.borrow_mut().pop_front()
    }

    /// Whether a fatal failure was reported.
    pub fn failed(&self) -> bool {
        self.0.fatal.get()
    }
}

/// A one-shot answer channel (cross-thread; one allocation per request).
pub type Reply<T> = oneshot::Sender<T>;

/// A request from another thread or shard to the group.
pub enum External {
    /// Propose a message.
    Propose {
        /// Session, `0` for none.
        client_id: ClientId,
        /// Sequence number in the session.
        seq: Seq,
        /// The message.
        payload: Bytes,
        /// Where the answer goes.
        reply: Reply<Result<Receipt, ProposeError>>,
    },
    /// A linearizable read barrier: answered once the state machine has
    /// applied the read index.
    Read {
        /// Where the answer goes.
        reply: Reply<Result<Index, ReadError>>,
    },
    /// The core's status.
    Status {
        /// Where the answer goes.
        reply: Reply<Status>,
    },
    /// Committed messages from `from_id` on, then every new one.
    Subscribe {
        /// First message id wanted.
        from_id: MessageId,
        /// Where they go; the subscription ends when the receiver is
        /// dropped, or after an error.
        sink: async_channel::Sender<Result<CommittedMessage, super::FeedError>>,
    },
    /// A client shard's proposals and reads of one turn.
    ShardBatch {
        /// The shard (its index in the group's reply channels).
        shard: usize,
        /// What it collected.
        batch: super::shards::ShardBatch,
    },
    /// A client shard asks for the node's status on a client's behalf.
    ClientStatus {
        /// Where the answer goes.
        reply: Reply<(ordo_net::NodeStatus, ordo_net::LeaderHint)>,
    },
    /// A client shard relays a client's log request.
    ClientLog {
        /// The client's request id.
        request_id: u64,
        /// First message id.
        from_id: MessageId,
        /// Keep streaming.
        follow: bool,
        /// Where the responses go, in order.
        sink: async_channel::Sender<ordo_net::ClientResponse>,
    },
    /// Hand leadership to another voter.
    TransferLeadership {
        /// The voter.
        to: ordo_storage::NodeId,
        /// Where the outcome goes, if anyone waits for it.
        reply: Option<Reply<Result<ordo_storage::NodeId, crate::core::TransferError>>>,
    },
    /// Change the membership by one server.
    ChangeMembership {
        /// The change.
        change: crate::core::MembershipChange,
        /// Where the outcome goes: the committed entry's index, or why not.
        reply: Reply<Result<ordo_storage::Index, crate::core::ChangeError>>,
    },
    /// A client shard relays a client's administrative request.
    ClientAdmin {
        /// The request.
        request: ordo_net::AdminRequest,
        /// Where the answer goes.
        reply: Reply<ordo_net::AdminResponse>,
    },
    /// The configuration links this node holds.
    Chain {
        /// Where the answer goes.
        reply: Reply<Vec<crate::token::ConfigLink>>,
    },
    /// The configuration in force, as this node sees it.
    Members {
        /// Where the answer goes.
        reply: Reply<super::members::MembersView>,
    },
    /// Stop the node cleanly.
    Shutdown,
}
