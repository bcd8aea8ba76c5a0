//! The transport's bounds and timings, each named with its unit, and the
//! relations between them, checked once at start.

use std::net::SocketAddr;
use std::time::Duration;

use ordo_storage::NodeId;

use crate::auth::Credential;
use crate::tls::{TlsClientConfig, TlsServerConfig};

use crate::wire::{FRAME_BYTES_CEILING, FRAME_BYTES_MAX_DEFAULT, FRAME_HEADER_BYTES};

/// Bounds of one connection's queues and buffers. Memory a connection can
/// hold, whatever its peer does:
///
/// - outbound: `priority_queue_bytes_max + bulk_queue_bytes_max` queued, plus
///   one write in flight of at most
///   `priority_queue_bytes_max + max(write_coalesce_bytes_max, frame_bytes_max)`;
/// - inbound: one receive slab (`max(receive_slab_bytes, frame_bytes_max)`),
///   plus what waits in the shared inbox (its own byte bound).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Largest frame sent or accepted; a larger announced length closes the
    /// connection before any of the frame is buffered.
    pub frame_bytes_max: usize,
    /// Encoded priority frames (votes, heartbeats, responses) waiting to be
    /// written. Above it, sends fail with `Full`.
    pub priority_queue_bytes_max: usize,
    /// Bulk frames (entries, payloads, snapshot data) waiting to be written.
    pub bulk_queue_frames_max: usize,
    /// Bytes of bulk frames waiting, attachments included.
    pub bulk_queue_bytes_max: usize,
    /// Small bulk frames are gathered into one `sendmsg` up to this many
    /// bytes; it is also the most a priority frame waits behind, besides
    /// one large bulk frame.
    pub write_coalesce_bytes_max: usize,
    /// Attachments up to this size are copied into the frame's head buffer;
    /// larger ones are written from their own buffers (zero copy).
    pub inline_attachment_bytes_max: usize,
    /// Size of the buffers frames are received into (see
    /// [`crate::wire::FrameSplitter`]). Received frames share them, so a
    /// small frame kept alive keeps its slab alive.
    pub receive_slab_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            priority_queue_bytes_max: 1 << 20,
            bulk_queue_frames_max: 4096,
            bulk_queue_bytes_max: 64 << 20,
            write_coalesce_bytes_max: 256 << 10,
            inline_attachment_bytes_max: 2048,
            receive_slab_bytes: 256 << 10,
        }
    }
}

/// A configuration that breaks a relation between bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid transport config: {field}: {reason}")]
pub struct ConfigError {
    /// The field at fault.
    pub field: &'static str,
    /// The relation it breaks.
    pub reason: &'static str,
}

fn check(ok: bool, field: &'static str, reason: &'static str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError { field, reason })
    }
}

impl ConnectionLimits {
    /// Checks the relations between the bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.frame_bytes_max >= 4096 && self.frame_bytes_max <= FRAME_BYTES_CEILING,
            "frame_bytes_max",
            "must lie in [4096, FRAME_BYTES_CEILING]",
        )?;
        check(
            self.priority_queue_bytes_max >= 4096,
            "priority_queue_bytes_max",
            "must hold at least 4096 bytes of control frames",
        )?;
        check(
            self.bulk_queue_frames_max >= 1,
            "bulk_queue_frames_max",
            "must be at least 1",
        )?;
        check(
            self.bulk_queue_bytes_max >= self.frame_bytes_max,
            "bulk_queue_bytes_max",
            "must be at least frame_bytes_max, or a legal frame could never be queued",
        )?;
        check(
            self.write_coalesce_bytes_max >= FRAME_HEADER_BYTES,
            "write_coalesce_bytes_max",
            "must hold a frame header",
        )?;
        check(
            self.receive_slab_bytes >= 4096,
            "receive_slab_bytes",
            "must be at least 4096",
        )?;
        Ok(())
    }
}

/// Reconnect and handshake timings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timings {
    /// A dial that has not connected by then fails.
    pub connect_timeout: Duration,
    /// A handshake not completed by then closes the connection.
    pub handshake_timeout: Duration,
    /// First reconnect delay; doubles per failed attempt.
    pub reconnect_backoff_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_backoff_max: Duration,
    /// On shutdown, queued frames get this long to be written.
    pub shutdown_flush_timeout: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_millis(1000),
            handshake_timeout: Duration::from_millis(1000),
            reconnect_backoff_min: Duration::from_millis(20),
            reconnect_backoff_max: Duration::from_millis(2000),
            shutdown_flush_timeout: Duration::from_millis(1000),
        }
    }
}

impl Timings {
    /// Checks the relations between the timings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            !self.connect_timeout.is_zero(),
            "connect_timeout",
            "must be positive",
        )?;
        check(
            !self.handshake_timeout.is_zero(),
            "handshake_timeout",
            "must be positive",
        )?;
        check(
            !self.reconnect_backoff_min.is_zero()
                && self.reconnect_backoff_min <= self.reconnect_backoff_max,
            "reconnect_backoff_min",
            "must be positive and at most reconnect_backoff_max",
        )?;
        Ok(())
    }
}

/// Configuration of the peer transport of one node (one shard).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportConfig {
    /// The cluster: connections from other clusters are refused.
    pub cluster_id: u64,
    /// This node.
    pub node_id: NodeId,
    /// Where to listen for peers (port 0: any free port).
    pub listen_addr: SocketAddr,
    /// Per-connection bounds.
    pub limits: ConnectionLimits,
    /// Timings.
    pub timings: Timings,
    /// Received peer messages waiting for the runtime, by count.
    pub inbox_messages_max: usize,
    /// Received peer messages waiting for the runtime, by frame bytes. A full
    /// inbox stops reading sockets: TCP pushes back on the senders.
    pub inbox_bytes_max: usize,
    /// Accepted connections still in their handshake; more are closed at
    /// once (a flood of idle connections cannot pile up).
    pub handshakes_pending_max: usize,
    /// Signs this node's challenges and proofs and checks the peers' (the
    /// engine's node keys). Default: none (no authentication).
    pub auth: Credential,
}

impl TransportConfig {
    /// A configuration with default bounds.
    pub fn new(cluster_id: u64, node_id: NodeId, listen_addr: SocketAddr) -> Self {
        Self {
            cluster_id,
            node_id,
            listen_addr,
            limits: ConnectionLimits::default(),
            timings: Timings::default(),
            inbox_messages_max: 8192,
            inbox_bytes_max: 64 << 20,
            handshakes_pending_max: 64,
            auth: Credential::none(),
        }
    }

    /// Checks every relation between the bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(self.node_id != 0, "node_id", "0 means no node")?;
        self.limits.validate()?;
        self.timings.validate()?;
        check(
            self.inbox_messages_max >= 1,
            "inbox_messages_max",
            "must be at least 1",
        )?;
        check(
            self.inbox_bytes_max >= self.limits.frame_bytes_max,
            "inbox_bytes_max",
            "must be at least frame_bytes_max",
        )?;
        check(
            self.handshakes_pending_max >= 1,
            "handshakes_pending_max",
            "must be at least 1",
        )?;
        Ok(())
    }
}

/// Configuration of a node's client server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientServerConfig {
    /// The cluster clients must name.
    pub cluster_id: u64,
    /// This node (told to clients in the handshake).
    pub node_id: NodeId,
    /// Where to listen for clients.
    pub listen_addr: SocketAddr,
    /// Per-connection bounds.
    pub limits: ConnectionLimits,
    /// Timings (only the handshake and shutdown ones apply).
    pub timings: Timings,
    /// Open client connections; more are refused in the handshake.
    pub connections_max: usize,
    /// Requests waiting for the runtime, by count.
    pub inbox_requests_max: usize,
    /// Requests waiting for the runtime, by frame bytes.
    pub inbox_bytes_max: usize,
    /// Checks clients' proofs (the client secret). Default: none (any
    /// client is accepted).
    pub auth: Credential,
    /// Encrypts client connections: every client must speak TLS. Default:
    /// none (plain TCP).
    pub tls: Option<TlsServerConfig>,
}

impl ClientServerConfig {
    /// A configuration with default bounds.
    pub fn new(cluster_id: u64, node_id: NodeId, listen_addr: SocketAddr) -> Self {
        Self {
            cluster_id,
            node_id,
            listen_addr,
            limits: ConnectionLimits {
                bulk_queue_bytes_max: 32 << 20,
                ..ConnectionLimits::default()
            },
            timings: Timings::default(),
            connections_max: 1024,
            inbox_requests_max: 16384,
            inbox_bytes_max: 64 << 20,
            auth: Credential::none(),
            tls: None,
        }
    }

    /// Checks every relation between the bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.limits.validate()?;
        self.timings.validate()?;
        check(
            self.connections_max >= 1,
            "connections_max",
            "must be at least 1",
        )?;
        check(
            self.inbox_requests_max >= 1,
            "inbox_requests_max",
            "must be at least 1",
        )?;
        check(
            self.inbox_bytes_max >= self.limits.frame_bytes_max,
            "inbox_bytes_max",
            "must be at least frame_bytes_max",
        )?;
        Ok(())
    }
}

/// Configuration of a client connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// The cluster the client expects.
    pub cluster_id: u64,
    /// Largest frame sent or accepted.
    pub frame_bytes_max: usize,
    /// Receive slab size.
    pub receive_slab_bytes: usize,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Handshake timeout.
    pub handshake_timeout: Duration,
    /// Proves this client holds the client secret. Default: none (for
    /// nodes that do not require it).
    pub auth: Credential,
    /// Speaks TLS to the node, trusting the cluster's certificate
    /// authority. Default: none (plain TCP, for nodes with TLS off).
    pub tls: Option<TlsClientConfig>,
}

impl ClientConfig {
    /// A configuration with default bounds.
    pub fn new(cluster_id: u64) -> Self {
        Self {
            cluster_id,
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            receive_slab_bytes: 256 << 10,
            connect_timeout: Duration::from_millis(1000),
            handshake_timeout: Duration::from_millis(1000),
            auth: Credential::none(),
            tls: None,
        }
    }
}
