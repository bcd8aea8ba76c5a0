//! The group's connections to the other voters: TCP on glommio, or
//! in-process channels (the engine-only benchmark: several nodes in one
//! process, no sockets, messages passed by reference count).

use std::collections::HashMap;

use ordo_net::PeerMessage;
use ordo_net::transport::{PeerEvent, PeerInbox, PeerTransport, SendError};
use ordo_net::wire::Lane;
use ordo_storage::NodeId;

/// One in-process link's message.
pub type InprocFrame = (NodeId, PeerMessage);

/// Channels to and from the other in-process nodes.
pub struct InprocPeers {
    me: NodeId,
    outboxes: HashMap<NodeId, async_channel::Sender<InprocFrame>>,
    inbox: async_channel::Receiver<InprocFrame>,
}

impl InprocPeers {
    /// Wires `nodes` together with bounded channels of `capacity` messages;
    /// returns each node's end, in the order of `nodes`.
    pub fn mesh(nodes: &[NodeId], capacity: usize) -> Vec<InprocPeers> {
        let channels: Vec<_> = nodes
            .iter()
            .map(|_| async_channel::bounded(capacity))
            .collect();
        nodes
            .iter()
            .enumerate()
            .map(|(i, &me)| InprocPeers {
                me,
                outboxes: nodes
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(j, &peer)| (peer, channels[j].0.clone()))
                    .collect(),
                inbox: channels[i].1.clone(),
            })
            .collect()
    }
}

/// A simulated node's links: what it sends waits in `outbox` for the
/// simulator's network, which delivers into `inbox` (or drops).
pub struct SimPeers {
    /// Messages sent and not yet taken by the network, oldest first.
    pub outbox: std::rc::Rc<std::cell::RefCell<std::collections::VecDeque<InprocFrame>>>,
    /// Most messages the outbox holds before sends see `Full`.
    pub outbox_max: usize,
    /// What the network delivered.
    pub inbox: async_channel::Receiver<PeerEvent>,
}

/// The voter links of one node. Lives on the group's shard.
pub enum Peers {
    /// TCP connections.
    Tcp {
        /// Outbound side.
        transport: PeerTransport,
        /// Inbound events.
        inbox: PeerInbox,
        /// The keys the handshake checks peers with (`None`: `[auth]
        /// peers = false`); updated when the configuration changes.
        keys: Option<std::sync::Arc<crate::auth::PeerKeys>>,
    },
    /// In-process channels.
    Inproc(InprocPeers),
    /// The simulator's network.
    Sim(SimPeers),
}

impl Peers {
    /// Queues `message` for `to` without waiting; `Full` is backpressure.
    pub fn try_send(&self, to: NodeId, message: PeerMessage) -> Result<(), SendError> {
        match self {
            Peers::Tcp { transport, .. } => transport.try_send(to, &message),
            Peers::Inproc(peers) => {
                let outbox = peers.outboxes.get(&to).ok_or(SendError::UnknownPeer(to))?;
                outbox
                    .try_send((peers.me, message))
                    .map_err(|error| match error {
                        async_channel::TrySendError::Full(_) => {
                            SendError::Full { lane: Lane::Bulk }
                        }
                        async_channel::TrySendError::Closed(_) => SendError::Closed,
                    })
            }
            Peers::Sim(peers) => {
                let mut outbox = peers.outbox.borrow_mut();
                if outbox.len() >= peers.outbox_max {
                    return Err(SendError::Full { lane: Lane::Bulk });
                }
                outbox.push_back((to, message));
                Ok(())
            }
        }
    }

    /// Queues `message` for `to`, waiting for room.
    pub async fn send(&self, to: NodeId, message: PeerMessage) -> Result<(), SendError> {
        match self {
            Peers::Tcp { transport, .. } => transport.send(to, &message).await,
            Peers::Inproc(peers) => {
                let outbox = peers.outboxes.get(&to).ok_or(SendError::UnknownPeer(to))?;
                outbox
                    .send((peers.me, message))
                    .await
                    .map_err(|_| SendError::Closed)
            }
            // The simulated network never blocks a sender: a full outbox
            // is a lost message, as when a TCP connection drops it.
            Peers::Sim(_) => self.try_send(to, message),
        }
    }

    /// The next inbound event, if one is ready.
    pub fn try_recv(&self) -> Option<PeerEvent> {
        match self {
            Peers::Tcp { inbox, .. } => inbox.try_recv(),
            Peers::Inproc(peers) => peers
                .inbox
                .try_recv()
                .ok()
                .map(|(from, message)| PeerEvent::Message { from, message }),
            Peers::Sim(peers) => peers.inbox.try_recv().ok(),
        }
    }

    /// The next inbound event (cancel-safe).
    pub async fn recv(&self) -> Option<PeerEvent> {
        match self {
            Peers::Tcp { inbox, .. } => inbox.recv().await,
            Peers::Inproc(peers) => peers
                .inbox
                .recv()
                .await
                .ok()
                .map(|(from, message)| PeerEvent::Message { from, message }),
            Peers::Sim(peers) => peers.inbox.recv().await.ok(),
        }
    }

    /// Whether no inbound event is waiting.
    pub fn is_empty(&self) -> bool {
        match self {
            Peers::Tcp { inbox, .. } => inbox.is_empty(),
            Peers::Inproc(peers) => peers.inbox.is_empty(),
            Peers::Sim(peers) => peers.inbox.is_empty(),
        }
    }

    /// Closes the links (TCP: flushes what is queued, briefly).
    pub async fn shutdown(self) {
        match self {
            Peers::Tcp { transport, .. } => transport.shutdown().await,
            Peers::Inproc(peers) => {
                peers.inbox.close();
            }
            Peers::Sim(peers) => {
                peers.inbox.close();
            }
        }
    }
}
