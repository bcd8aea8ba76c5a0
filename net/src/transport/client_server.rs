//! The node's side of client connections: accept, handshake, hand decoded
//! requests to the runtime, write its responses.
//!
//! Requests from every connection go to one bounded [`ClientInbox`]; a full
//! inbox stops reading sockets, so clients are slowed by TCP rather than
//! buffered. Each connection has its own bounded outbound queue: a client
//! that does not read its responses (or its log stream) fills it, and then
//! `try_send` says `Full` and `send` waits; nothing grows without bound.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use futures_lite::future::or;
use glommio::Task;
use glommio::net::{TcpListener, TcpStream};

use crate::client::{ClientRequest, ClientResponse};
use crate::handshake::{
    ConnectionRole, Handshake, Hello, HelloAck, HelloReject, PROTOCOL_VERSION, RejectReason,
};
use crate::transport::TransportError;
use crate::transport::config::ClientServerConfig;
use crate::transport::handshake::{
    authenticate, check_hello, receive_handshake, send_handshake, with_timeout,
};
use crate::transport::inbox::Inbox;
use crate::transport::io::{ConnectionError, Stream, read_frame, write_loop};
use crate::transport::notify::Notify;
use crate::transport::outbound::{OutQueue, QueueStats, SendError};
use crate::transport::peers::READER_YIELD_FRAMES;
use crate::wire::{Decode, FrameSplitter, HANDSHAKE_FRAME_BYTES_MAX};

/// A request and the connection to answer on.
pub struct ClientCall {
    /// Where to send the response(s).
    pub conn: ClientConn,
    /// The decoded request.
    pub request: ClientRequest,
}

struct ConnInner {
    id: u64,
    remote: Option<SocketAddr>,
    queue: OutQueue,
    /// Ends the connection at once (shutdown deadline passed).
    abort: Notify,
}

/// A handle to one client connection, cheap to clone; the runtime keeps it
/// to answer requests and to stream the log.
#[derive(Clone)]
pub struct ClientConn {
    inner: Rc<ConnInner>,
}

impl std::fmt::Debug for ClientConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConn")
            .field("id", &self.inner.id)
            .field("remote", &self.inner.remote)
            .finish()
    }
}

impl ClientConn {
    /// The connection's id, unique within this server.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The client's address.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.remote
    }

    /// Queues a response without waiting; `Err(Closed)` once the client is
    /// gone, `Err(Full)` if it does not read fast enough.
    pub fn try_send(&self, response: &ClientResponse) -> Result<(), SendError> {
        self.inner.queue.try_push(response)
    }

    /// Queues a response, waiting while the queue is full (a log stream
    /// paced by its reader).
    pub async fn send(&self, response: &ClientResponse) -> Result<(), SendError> {
        loop {
            match self.inner.queue.try_push(response) {
                Err(SendError::Full { .. }) => self.inner.queue.space.notified().await,
                other => return other,
            }
        }
    }

    /// Whether the connection is gone (responses would be dropped).
    pub fn is_closed(&self) -> bool {
        self.inner.queue.is_closed()
    }

    /// Closes the connection once queued responses are written.
    pub fn close(&self) {
        self.inner.queue.close();
    }

    /// Outbound queue counters.
    pub fn stats(&self) -> QueueStats {
        self.inner.queue.stats()
    }
}

struct Shared {
    config: ClientServerConfig,
    local_addr: SocketAddr,
    inbox: Inbox<ClientCall>,
    connections: RefCell<HashMap<u64, Rc<ConnInner>>>,
    /// Wakes shutdown when a connection ends.
    connection_ended: Notify,
    next_id: Cell<u64>,
    closed: Cell<bool>,
    accept_task: RefCell<Option<Task<()>>>,
    handshakes_pending: Cell<usize>,
}

/// The client listener of one node.
pub struct ClientServer {
    shared: Rc<Shared>,
}

/// Requests from every client connection, in arrival order per connection.
pub struct ClientInbox {
    shared: Rc<Shared>,
}

impl ClientServer {
    /// Binds the listener and starts accepting clients. Must run on the
    /// glommio executor that will own the server.
    pub fn start(
        config: ClientServerConfig,
    ) -> Result<(ClientServer, ClientInbox), TransportError> {
        config.validate()?;
        let listener = TcpListener::bind(config.listen_addr).map_err(std::io::Error::from)?;
        let local_addr = listener.local_addr().map_err(std::io::Error::from)?;
        let shared = Rc::new(Shared {
            inbox: Inbox::new(config.inbox_requests_max, config.inbox_bytes_max),
            config,
            local_addr,
            connections: RefCell::new(HashMap::new()),
            connection_ended: Notify::default(),
            next_id: Cell::new(1),
            closed: Cell::new(false),
            accept_task: RefCell::new(None),
            handshakes_pending: Cell::new(0),
        });
        let task = glommio::spawn_local(accept_loop(shared.clone(), listener));
        *shared.accept_task.borrow_mut() = Some(task);
        Ok((
            ClientServer {
                shared: shared.clone(),
            },
            ClientInbox { shared },
        ))
    }

    /// A server without a listener of its own: its connections come from
    /// another listener that dispatches on the handshake's role (a gossip
    /// node serves clients on its gossip address, see
    /// [`crate::transport::GossipTransport`]). `local_addr` is that
    /// listener's address.
    pub(crate) fn without_listener(
        config: ClientServerConfig,
        local_addr: SocketAddr,
    ) -> Result<(ClientServer, ClientInbox), TransportError> {
        config.validate()?;
        let shared = Rc::new(Shared {
            inbox: Inbox::new(config.inbox_requests_max, config.inbox_bytes_max),
            config,
            local_addr,
            connections: RefCell::new(HashMap::new()),
            connection_ended: Notify::default(),
            next_id: Cell::new(1),
            closed: Cell::new(false),
            accept_task: RefCell::new(None),
            handshakes_pending: Cell::new(0),
        });
        Ok((
            ClientServer {
                shared: shared.clone(),
            },
            ClientInbox { shared },
        ))
    }

    /// What another listener uses to hand this server client connections.
    pub(crate) fn adopter(&self) -> ClientAdopter {
        ClientAdopter {
            shared: self.shared.clone(),
        }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.shared.connections.borrow().len()
    }

    /// Stops accepting, gives queued responses up to
    /// `shutdown_flush_timeout`, then closes every connection. The inbox
    /// then yields what it holds and ends.
    pub async fn shutdown(self) {
        let shared = &self.shared;
        shared.closed.set(true);
        drop(shared.accept_task.borrow_mut().take());
        let connections: Vec<Rc<ConnInner>> =
            shared.connections.borrow().values().cloned().collect();
        for conn in &connections {
            conn.queue.close();
        }
        let deadline = Instant::now() + shared.config.timings.shutdown_flush_timeout;
        while !shared.connections.borrow().is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            or(
                shared.connection_ended.notified(),
                glommio::timer::sleep(left),
            )
            .await;
        }
        for conn in shared.connections.borrow().values() {
            conn.abort.notify_all();
        }
        shared.inbox.close();
    }
}

impl ClientInbox {
    /// The next request; `None` once the server is shut down and drained.
    pub async fn recv(&self) -> Option<ClientCall> {
        loop {
            if let Some(call) = self.shared.inbox.try_pop() {
                return Some(call);
            }
            if self.shared.inbox.is_closed() {
                return None;
            }
            self.shared.inbox.readable.notified().await;
        }
    }

    /// Whether no request is waiting.
    pub fn is_empty(&self) -> bool {
        self.shared.inbox.len() == 0
    }

    /// The next request, if one is ready.
    pub fn try_recv(&self) -> Option<ClientCall> {
        self.shared.inbox.try_pop()
    }
}

/// Hands client connections accepted by another listener to a
/// [`ClientServer`] (see [`ClientServer::without_listener`]).
pub(crate) struct ClientAdopter {
    shared: Rc<Shared>,
}

impl ClientAdopter {
    /// Serves a connection whose `hello` (role `Client`) was read by
    /// another listener: answers the handshake, then serves requests.
    pub(crate) async fn serve(
        &self,
        stream: Stream,
        splitter: FrameSplitter,
        hello: Hello,
        remote: Option<SocketAddr>,
    ) {
        serve_hello(self.shared.clone(), stream, splitter, hello, remote).await;
    }
}

async fn accept_loop(shared: Rc<Shared>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "client accept failed");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if shared.handshakes_pending.get() >= shared.config.connections_max {
            tracing::warn!(remote = ?stream.peer_addr().ok(), "closing client connection: too many handshakes pending");
            continue;
        }
        shared
            .handshakes_pending
            .set(shared.handshakes_pending.get() + 1);
        glommio::spawn_local(serve(shared.clone(), stream)).detach();
    }
}

/// One client connection, from handshake to close.
async fn serve(shared: Rc<Shared>, stream: TcpStream) {
    let remote = stream.peer_addr().ok();
    // Best effort: without it responses may wait for Nagle's timer, but the
    // connection still works.
    let _ = stream.set_nodelay(true);
    let limits = shared.config.limits.clone();
    let mut splitter = FrameSplitter::new(limits.receive_slab_bytes, HANDSHAKE_FRAME_BYTES_MAX);
    let timeout = shared.config.timings.handshake_timeout;
    let received = with_timeout(timeout, "handshake", async {
        let stream = match &shared.config.tls {
            None => Stream::plain(stream),
            Some(tls) => Stream::accept_tls(stream, tls).await?,
        };
        let hello = receive_handshake(&stream, &mut splitter).await?;
        Ok((stream, hello))
    })
    .await;
    shared
        .handshakes_pending
        .set(shared.handshakes_pending.get() - 1);
    let (stream, hello) = match received {
        Ok((stream, Handshake::Hello(hello))) => (stream, hello),
        Ok(_) => {
            tracing::warn!(?remote, "closing client connection: expected hello");
            return;
        }
        Err(reason) => {
            tracing::warn!(?remote, %reason, "closing client connection: handshake failed");
            return;
        }
    };
    serve_hello(shared, stream, splitter, hello, remote).await;
}

/// The rest of a client connection once its hello was read: accept or
/// refuse it, then serve requests until it closes.
async fn serve_hello(
    shared: Rc<Shared>,
    stream: Stream,
    mut splitter: FrameSplitter,
    hello: Hello,
    remote: Option<SocketAddr>,
) {
    let limits = shared.config.limits.clone();
    let timeout = shared.config.timings.handshake_timeout;
    let reject = check_hello(&hello, shared.config.cluster_id, ConnectionRole::Client)
        .or_else(|| {
            (shared.closed.get()
                || shared.connections.borrow().len() >= shared.config.connections_max)
                .then(|| HelloReject {
                    reason: RejectReason::Unavailable,
                    protocol_version: PROTOCOL_VERSION,
                    detail: "shutting down or at the connection limit".into(),
                })
        })
        .or_else(|| {
            // A client adopted from another listener came in plain; this
            // server takes clients over TLS only.
            (shared.config.tls.is_some() && !stream.is_tls()).then(|| HelloReject {
                reason: RejectReason::Unavailable,
                protocol_version: PROTOCOL_VERSION,
                detail: "this node takes clients over TLS on its client port only".into(),
            })
        });
    if let Some(reject) = reject {
        tracing::warn!(?remote, reason = ?reject.reason, detail = %reject.detail, "refusing client connection");
        let _ = with_timeout(
            timeout,
            "reject",
            send_handshake(&stream, Handshake::Reject(reject)),
        )
        .await;
        return;
    }
    if let Err(reason) = authenticate(
        &stream,
        &mut splitter,
        &hello,
        shared.config.cluster_id,
        shared.config.node_id,
        &shared.config.auth,
        timeout,
    )
    .await
    {
        tracing::warn!(?remote, %reason, "refusing client connection");
        return;
    }
    let ack = Handshake::Ack(HelloAck {
        cluster_id: shared.config.cluster_id,
        node_id: shared.config.node_id,
        protocol_version: PROTOCOL_VERSION,
    });
    if let Err(reason) = with_timeout(timeout, "ack", send_handshake(&stream, ack)).await {
        tracing::warn!(?remote, %reason, "closing client connection: handshake failed");
        return;
    }
    splitter.set_frame_bytes_max(limits.frame_bytes_max);
    let id = shared.next_id.get();
    shared.next_id.set(id + 1);
    let inner = Rc::new(ConnInner {
        id,
        remote,
        queue: OutQueue::new(limits),
        abort: Notify::default(),
    });
    shared.connections.borrow_mut().insert(id, inner.clone());
    let conn = ClientConn {
        inner: inner.clone(),
    };
    let reader = async {
        let mut until_yield = READER_YIELD_FRAMES;
        loop {
            let frame = read_frame(&stream, &mut splitter)
                .await?
                .ok_or(ConnectionError::Eof)?;
            let bytes = frame.header().frame_len as usize;
            let request = ClientRequest::decode(&frame)?;
            let call = ClientCall {
                conn: conn.clone(),
                request,
            };
            shared
                .inbox
                .push(call, bytes)
                .await
                .map_err(|_| ConnectionError::Closed)?;
            until_yield -= 1;
            if until_yield == 0 {
                until_yield = READER_YIELD_FRAMES;
                futures_lite::future::yield_now().await;
            }
        }
    };
    let writer = write_loop(&stream, &inner.queue);
    let abort = async {
        inner.abort.notified().await;
        Err(ConnectionError::Closed)
    };
    match or(or(reader, writer), abort).await {
        Ok(()) => tracing::debug!(conn = id, ?remote, "client connection closed after flush"),
        Err(ConnectionError::Wire(reason)) => {
            tracing::warn!(conn = id, ?remote, %reason, "closing client connection: bad frame")
        }
        Err(reason) => tracing::debug!(conn = id, ?remote, %reason, "client connection closed"),
    }
    inner.queue.close();
    inner.queue.clear();
    shared.connections.borrow_mut().remove(&id);
    shared.connection_ended.notify_all();
}
