//! The TCP transport on glommio.
//!
//! - [`PeerTransport`] / [`PeerInbox`]: voter-to-voter connections (one per
//!   pair, the lower id dials), bounded priority and bulk queues with write
//!   coalescing, reconnects with jittered backoff;
//! - [`ClientServer`] / [`ClientInbox`] / [`ClientConn`]: the node's side of
//!   client connections;
//! - [`ClientConnection`]: the client's side;
//! - [`GossipTransport`] / [`GossipInbox`]: gossip members named by address,
//!   one-way connections opened on demand, bounded queues, backoff; clients
//!   served on the same port.
//!
//! Everything lives on the glommio executor it was started on.

mod backoff;
mod client_conn;
mod client_server;
mod config;
mod gossip;
mod gossip_conn;
mod handshake;
mod inbox;
mod io;
mod notify;
mod outbound;
mod peers;

pub use client_conn::ClientConnection;
pub use client_server::{ClientCall, ClientConn, ClientInbox, ClientServer};
pub use config::{
    ClientConfig, ClientServerConfig, ConfigError, ConnectionLimits, Timings, TransportConfig,
};
pub use gossip::{
    GossipEvent, GossipInbox, GossipStarted, GossipTransport, GossipTransportConfig,
    GossipTransportStats,
};
pub use io::ConnectionError;
pub use outbound::{QueueStats, SendError};
pub use peers::{ConnectionErrors, LinkState, PeerEvent, PeerInbox, PeerStats, PeerTransport};

use ordo_storage::NodeId;

/// Why a transport could not start or take a command.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The configuration breaks a relation between bounds.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Binding or configuring a socket failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A peer id that cannot be a peer.
    #[error("invalid peer {id}: {reason}")]
    InvalidPeer {
        /// The id.
        id: NodeId,
        /// Why.
        reason: &'static str,
    },
    /// The transport is shut down.
    #[error("transport is shut down")]
    Closed,
}
