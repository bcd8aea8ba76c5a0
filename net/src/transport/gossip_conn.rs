//! The gossip transport's connection tasks (see [`super::gossip`] for the
//! connection rule): an outbound connection's dial, intro and writer, and
//! an inbound connection's handshake, intro check and reader.

use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future::or;
use glommio::net::{TcpListener, TcpStream};

use crate::gossip::{GossipFrame, GossipIntro, PeerAddr};
use crate::handshake::{
    ConnectionRole, Handshake, HelloAck, HelloReject, PROTOCOL_VERSION, RejectReason,
};
use crate::transport::LinkState;
use crate::transport::backoff::reconnect_delay;
use crate::transport::gossip::{Outbound, Shared};
use crate::transport::handshake::{
    Pending, authenticate, check_hello, dial, receive_handshake, send_handshake, with_timeout,
};
use crate::transport::io::{ConnectionError, Stream, read_frame, write_all};
use crate::transport::peers::READER_YIELD_FRAMES;
use crate::wire::{Decode, FrameSplitter, HANDSHAKE_FRAME_BYTES_MAX, encode_to_vec};

/// How an outbound connection ended.
enum Ended {
    /// Idle for `idle_timeout`: closed without a failure.
    Idle,
    /// The transport closed and the queue was flushed.
    Flushed,
    /// Dial or connection failure.
    Failed(ConnectionError),
}

/// One outbound connection: dial, introduce, drain the queue until idle or
/// failed; then update the entry.
pub(super) async fn run_outbound(shared: Rc<Shared>, peer: Rc<Outbound>, generation: u64) {
    let ended = outbound_connection(&shared, &peer).await;
    if peer.generation.get() != generation {
        return;
    }
    match ended {
        Ended::Idle | Ended::Flushed => {
            tracing::debug!(peer = %peer.addr, "gossip connection closed (idle)");
            peer.state.set(LinkState::Down);
            peer.retry_at.set(None);
            let mut outbound = shared.outbound.borrow_mut();
            if outbound
                .get(&peer.addr)
                .is_some_and(|p| Rc::ptr_eq(p, &peer))
                && peer.queue.stats().bulk_frames == 0
                && peer.queue.stats().priority_bytes == 0
            {
                outbound.remove(&peer.addr);
            }
        }
        Ended::Failed(reason) => {
            if peer.attempt.get() == 0 {
                tracing::info!(peer = %peer.addr, %reason, "gossip peer unreachable");
            } else {
                tracing::debug!(peer = %peer.addr, %reason, "gossip peer still unreachable");
            }
            let attempt = peer.attempt.get();
            peer.attempt.set(attempt.saturating_add(1));
            let timings = &shared.config.timings;
            let delay = reconnect_delay(
                attempt,
                timings.reconnect_backoff_min,
                timings.reconnect_backoff_max,
                &mut shared.rng.borrow_mut(),
            );
            peer.retry_at.set(Some(Instant::now() + delay));
            peer.state.set(LinkState::Down);
            let dropped = peer.queue.clear();
            shared
                .frames_dropped
                .set(shared.frames_dropped.get() + dropped as u64);
            if !shared.closed.get() {
                shared.unreachable.borrow_mut().insert(peer.addr);
                shared.inbox.readable.notify_all();
            }
        }
    }
}

async fn outbound_connection(shared: &Shared, peer: &Outbound) -> Ended {
    let timings = &shared.config.timings;
    let limits = &shared.config.limits;
    let dialed = dial(
        peer.addr,
        shared.hello(),
        None,
        &shared.config.auth,
        timings.connect_timeout,
        timings.handshake_timeout,
        limits.receive_slab_bytes,
        limits.frame_bytes_max,
        None,
    )
    .await;
    let dialed = match dialed {
        Ok(dialed) => dialed,
        Err(reason) => return Ended::Failed(reason),
    };
    if dialed.ack.cluster_id != shared.config.cluster_id {
        return Ended::Failed(ConnectionError::Handshake(format!(
            "{} is in cluster {}",
            peer.addr, dialed.ack.cluster_id
        )));
    }
    let intro = GossipFrame::Intro(GossipIntro {
        listen_addr: shared.local_addr,
    });
    let stream = dialed.stream;
    let mut splitter = dialed.splitter;
    let sent = match encode_to_vec(&intro, HANDSHAKE_FRAME_BYTES_MAX) {
        Ok(bytes) => write_all(&stream, &[&bytes]).await,
        Err(error) => Err(error.into()),
    };
    if let Err(reason) = sent {
        return Ended::Failed(reason);
    }
    shared
        .connections_made
        .set(shared.connections_made.get() + 1);
    peer.state.set(LinkState::Connected);
    peer.attempt.set(0);
    peer.retry_at.set(None);
    // The acceptor never writes: any frame or a close ends the connection.
    let reader = async {
        match read_frame(&stream, &mut splitter).await {
            Ok(Some(_)) => Ended::Failed(ConnectionError::Handshake(
                "the acceptor wrote on a one-way gossip connection".into(),
            )),
            Ok(None) => Ended::Failed(ConnectionError::Eof),
            Err(reason) => Ended::Failed(reason),
        }
    };
    let idle = shared.config.idle_timeout;
    let writer = async {
        loop {
            if let Some(batch) = peer.queue.take() {
                if let Err(error) = write_all(&stream, &batch.slices()).await {
                    return Ended::Failed(error);
                }
                peer.queue.complete(batch);
                continue;
            }
            if peer.queue.is_closed() {
                return Ended::Flushed;
            }
            let since = peer.last_send.get().elapsed();
            if since >= idle {
                return Ended::Idle;
            }
            or(
                peer.queue.writer_wake.notified(),
                glommio::timer::sleep(idle - since),
            )
            .await;
        }
    };
    or(reader, writer).await
}

/// Accepts connections; each gets its own handshake task.
pub(super) async fn accept_loop(shared: Rc<Shared>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "gossip accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if shared.closed.get() {
            break;
        }
        if shared.handshakes_pending.get() >= shared.config.handshakes_pending_max {
            tracing::warn!(remote = ?stream.peer_addr().ok(), "closing inbound gossip connection: too many handshakes pending");
            continue;
        }
        shared
            .handshakes_pending
            .set(shared.handshakes_pending.get() + 1);
        glommio::spawn_local(accept_one(shared.clone(), stream)).detach();
    }
}

async fn reject(shared: &Shared, stream: &Stream, reject: HelloReject) {
    let _ = with_timeout(
        shared.config.timings.handshake_timeout,
        "reject",
        send_handshake(stream, Handshake::Reject(reject)),
    )
    .await;
}

/// Handshake, then: a client goes to the client server; a gossip peer
/// introduces itself and its frames go to the inbox.
async fn accept_one(shared: Rc<Shared>, stream: TcpStream) {
    let pending = Pending(&shared.handshakes_pending);
    let remote = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let stream = Stream::plain(stream);
    let limits = shared.config.limits.clone();
    let mut splitter = FrameSplitter::new(limits.receive_slab_bytes, HANDSHAKE_FRAME_BYTES_MAX);
    let timeout = shared.config.timings.handshake_timeout;
    let received = with_timeout(
        timeout,
        "handshake",
        receive_handshake(&stream, &mut splitter),
    )
    .await;
    let hello = match received {
        Ok(Handshake::Hello(hello)) => hello,
        Ok(_) => {
            tracing::warn!(?remote, "closing inbound gossip connection: expected hello");
            return;
        }
        Err(reason) => {
            tracing::warn!(?remote, %reason, "closing inbound gossip connection: handshake failed");
            return;
        }
    };
    if hello.role == ConnectionRole::Client
        && let Some(clients) = &shared.clients
    {
        drop(pending);
        clients.serve(stream, splitter, hello, remote).await;
        return;
    }
    let role_refusal = (hello.role != ConnectionRole::Gossip).then(|| HelloReject {
        reason: RejectReason::RoleMismatch,
        protocol_version: PROTOCOL_VERSION,
        detail: format!(
            "this port takes gossip connections, dialer is a {:?}",
            hello.role
        ),
    });
    let refusal = role_refusal
        .or_else(|| check_hello(&hello, shared.config.cluster_id, ConnectionRole::Gossip))
        .or_else(|| {
            (shared.closed.get() || shared.inbound.get() >= shared.config.inbound_connections_max)
                .then(|| HelloReject {
                    reason: RejectReason::Unavailable,
                    protocol_version: PROTOCOL_VERSION,
                    detail: "shutting down or at the gossip connection limit".into(),
                })
        });
    if let Some(refusal) = refusal {
        tracing::warn!(?remote, reason = ?refusal.reason, detail = %refusal.detail, "refusing gossip connection");
        reject(&shared, &stream, refusal).await;
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
        tracing::warn!(?remote, %reason, "refusing gossip connection");
        return;
    }
    drop(pending);
    let ack = Handshake::Ack(HelloAck {
        cluster_id: shared.config.cluster_id,
        node_id: shared.config.node_id,
        protocol_version: PROTOCOL_VERSION,
    });
    if let Err(reason) = with_timeout(timeout, "ack", send_handshake(&stream, ack)).await {
        tracing::warn!(?remote, %reason, "closing inbound gossip connection: handshake failed");
        return;
    }
    let intro = with_timeout(timeout, "intro", async {
        let frame = read_frame(&stream, &mut splitter)
            .await?
            .ok_or(ConnectionError::Eof)?;
        match GossipFrame::decode(&frame)? {
            GossipFrame::Intro(intro) => Ok(intro),
            GossipFrame::Wire(_) => Err(ConnectionError::Handshake(
                "a gossip connection must start with an intro".into(),
            )),
        }
    })
    .await;
    let from = match intro {
        Ok(intro) => intro.listen_addr,
        Err(reason) => {
            tracing::warn!(?remote, %reason, "closing inbound gossip connection: no intro");
            return;
        }
    };
    if let Some(remote) = remote
        && remote.ip() != from.ip()
    {
        tracing::warn!(%remote, claimed = %from, "closing inbound gossip connection: it claims another host's address");
        return;
    }
    splitter.set_frame_bytes_max(limits.frame_bytes_max);
    shared.inbound.set(shared.inbound.get() + 1);
    let result = read_inbound(&shared, &stream, &mut splitter, from).await;
    match result {
        Err(ConnectionError::Wire(reason)) => {
            tracing::warn!(peer = %from, %reason, "closing gossip connection: bad frame");
        }
        Err(reason) => tracing::debug!(peer = %from, %reason, "gossip connection closed"),
        Ok(()) => {}
    }
    shared.inbound.set(shared.inbound.get() - 1);
}

async fn read_inbound(
    shared: &Shared,
    stream: &Stream,
    splitter: &mut FrameSplitter,
    from: PeerAddr,
) -> Result<(), ConnectionError> {
    let mut until_yield = READER_YIELD_FRAMES;
    let stop = async {
        shared.shutdown.notified().await;
        Err(ConnectionError::Closed)
    };
    let read = async {
        loop {
            let frame = read_frame(stream, splitter)
                .await?
                .ok_or(ConnectionError::Eof)?;
            let bytes = frame.header().frame_len as usize;
            let message = match GossipFrame::decode(&frame)? {
                GossipFrame::Wire(message) => message,
                GossipFrame::Intro(_) => {
                    return Err(ConnectionError::Handshake("a second intro".into()));
                }
            };
            shared
                .inbox
                .push((from, message), bytes)
                .await
                .map_err(|_| ConnectionError::Closed)?;
            until_yield -= 1;
            if until_yield == 0 {
                until_yield = READER_YIELD_FRAMES;
                futures_lite::future::yield_now().await;
            }
        }
    };
    or(read, stop).await
}
