//! The client's side of a client connection (for the `ordo` CLI and the
//! Rust client), on a glommio executor.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;

use bytes::Bytes;
use ordo_storage::NodeId;

use crate::client::{ClientRequest, ClientResponse};
use crate::handshake::{ConnectionRole, Hello, PROTOCOL_VERSION};
use crate::transport::config::ClientConfig;
use crate::transport::handshake::dial;
use crate::transport::io::{ConnectionError, Stream, read_frame, write_all};
use crate::wire::{Decode, Encode, FrameSplitter};

/// Attachments up to this size are copied next to the frame header; larger
/// payloads are written from the caller's buffer.
const INLINE_ATTACHMENT_BYTES_MAX: usize = 2048;

/// A connection to one node's client port.
///
/// Requests may be pipelined: [`ClientConnection::send`] several, then
/// [`ClientConnection::recv`] the responses, matched by `request_id`. One
/// task may send while another receives; a second concurrent sender (or
/// receiver) gets an error rather than interleaved bytes. A `recv` future
/// dropped mid-frame leaves the stream unusable: later calls fail.
pub struct ClientConnection {
    stream: Stream,
    splitter: RefCell<Option<FrameSplitter>>,
    sending: Cell<bool>,
    node_id: NodeId,
    frame_bytes_max: usize,
}

/// A second concurrent send or receive on one [`ClientConnection`].
fn busy(what: &str) -> ConnectionError {
    ConnectionError::Io(std::io::Error::new(
        std::io::ErrorKind::ResourceBusy,
        format!("another {what} is in progress on this connection"),
    ))
}

impl ClientConnection {
    /// Connects and handshakes.
    pub async fn connect(addr: SocketAddr, config: &ClientConfig) -> Result<Self, ConnectionError> {
        let hello = Hello {
            cluster_id: config.cluster_id,
            node_id: 0,
            protocol_version: PROTOCOL_VERSION,
            role: ConnectionRole::Client,
        };
        let dialed = dial(
            addr,
            hello,
            None,
            &config.auth,
            config.connect_timeout,
            config.handshake_timeout,
            config.receive_slab_bytes,
            config.frame_bytes_max,
            config.tls.as_ref(),
        )
        .await
        .map_err(|error| match error {
            ConnectionError::Eof if config.tls.is_none() => ConnectionError::Handshake(format!(
                "{addr} closed the connection during the handshake; a node with \
                 `[tls] clients = true` closes plain connections: give the client \
                 the cluster CA (`--tls-ca`)"
            )),
            other => other,
        })?;
        Ok(Self {
            stream: dialed.stream,
            splitter: RefCell::new(Some(dialed.splitter)),
            sending: Cell::new(false),
            node_id: dialed.ack.node_id,
            frame_bytes_max: config.frame_bytes_max,
        })
    }

    /// Whether the connection runs over TLS.
    pub fn is_encrypted(&self) -> bool {
        self.stream.is_tls()
    }

    /// Moves to new TLS traffic keys (a TLS 1.3 KeyUpdate, which also asks
    /// the node to update its own), sent ahead of the next request. A
    /// no-op on a plain connection.
    pub fn refresh_traffic_keys(&self) -> Result<(), ConnectionError> {
        self.stream.refresh_traffic_keys()
    }

    /// The id of the node this connection reached.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Writes one request.
    pub async fn send(&self, request: &ClientRequest) -> Result<(), ConnectionError> {
        self.send_many(std::slice::from_ref(request)).await
    }

    /// Writes several requests, in order, with as few `sendmsg` calls as
    /// they fit in: a pipelining client pays one syscall per batch of
    /// requests rather than one per request.
    pub async fn send_many(&self, requests: &[ClientRequest]) -> Result<(), ConnectionError> {
        if requests.is_empty() {
            return Ok(());
        }
        if self.sending.replace(true) {
            return Err(busy("send"));
        }
        let result = self.write(requests).await;
        self.sending.set(false);
        result
    }

    async fn write(&self, requests: &[ClientRequest]) -> Result<(), ConnectionError> {
        // Small frames (inlined payloads) share one contiguous `head`; an
        // attachment written from its own buffer splits it, so the pieces
        // are kept in wire order: head ranges and attachments.
        enum Piece {
            Head(std::ops::Range<usize>),
            Tail(usize),
        }
        let mut head = Vec::new();
        let mut tail: Vec<Bytes> = Vec::new();
        let mut pieces = Vec::new();
        let mut head_start = 0;
        for request in requests {
            let tail_start = tail.len();
            let mut sink = crate::wire::FrameSink {
                head: &mut head,
                tail: &mut tail,
                inline_bytes_max: INLINE_ATTACHMENT_BYTES_MAX,
                frame_bytes_max: self.frame_bytes_max,
            };
            request.encode(&mut sink)?;
            if tail.len() > tail_start {
                pieces.push(Piece::Head(head_start..head.len()));
                pieces.extend((tail_start..tail.len()).map(Piece::Tail));
                head_start = head.len();
            }
        }
        pieces.push(Piece::Head(head_start..head.len()));
        let slices: Vec<&[u8]> = pieces
            .iter()
            .map(|piece| match piece {
                Piece::Head(range) => &head[range.clone()],
                Piece::Tail(i) => &tail[*i][..],
            })
            .filter(|slice| !slice.is_empty())
            .collect();
        write_all(&self.stream, &slices).await?;
        Ok(())
    }

    /// Reads the next response.
    pub async fn recv(&self) -> Result<ClientResponse, ConnectionError> {
        let mut splitter = self
            .splitter
            .borrow_mut()
            .take()
            .ok_or_else(|| busy("receive"))?;
        let frame = read_frame(&self.stream, &mut splitter).await;
        *self.splitter.borrow_mut() = Some(splitter);
        let frame = frame?.ok_or(ConnectionError::Eof)?;
        Ok(ClientResponse::decode(&frame)?)
    }

    /// Sends `request` and returns the next response (for callers with one
    /// request outstanding at a time).
    pub async fn call(&self, request: &ClientRequest) -> Result<ClientResponse, ConnectionError> {
        self.send(request).await?;
        self.recv().await
    }
}
