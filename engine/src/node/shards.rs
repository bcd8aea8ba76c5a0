//! Client shards: executors besides the group's that accept client
//! connections on the same port (the kernel spreads connections over the
//! listeners, `SO_REUSEPORT`), decode requests, and hand proposals to the
//! group's shard in batches — one channel message per turn — receiving the
//! answers back in batches too. Frame decoding and encoding, and the
//! connections' IO, so run on other cores than the Raft group.

use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;
use ordo_net::transport::{ClientCall, ClientConn, ClientServer, ClientServerConfig};
use ordo_net::{ClientRequest, ClientResponse, StatusResponse};
use ordo_storage::{ClientId, MessageId, Seq};

use super::inbox;
use super::input::External;

/// One proposal from a client shard.
pub struct ShardProposal {
    /// The shard's handle for the answer.
    pub tag: u64,
    /// Session.
    pub client_id: ClientId,
    /// Sequence number.
    pub seq: Seq,
    /// The message.
    pub payload: Bytes,
    /// Redirect instead of forwarding.
    pub redirect: bool,
    /// The client's own request id, echoed in the answer.
    pub client_request_id: u64,
}

/// What a client shard hands the group in one turn.
#[derive(Default)]
pub struct ShardBatch {
    /// Proposals, in arrival order.
    pub proposals: Vec<ShardProposal>,
    /// Linearizable reads: `(tag, client request id)`.
    pub reads: Vec<(u64, u64)>,
}

/// An answer for a client of a shard: the response to write, keyed by the
/// shard's tag.
pub struct ShardReply {
    /// The shard's handle.
    pub tag: u64,
    /// The response (its request id is the client's).
    pub response: ClientResponse,
}

/// The channels between the group and one client shard.
pub struct ShardLink {
    /// Answers from the group, in batches.
    pub replies: async_channel::Receiver<Vec<ShardReply>>,
    /// The group's inputs.
    pub external: inbox::Sender<External>,
}

/// Why a client shard stopped: it could not listen (the group runs on
/// without it; the other shards and the group's own server serve).
#[derive(Debug, thiserror::Error)]
#[error("client shard {shard} cannot listen on {addr}: {source}")]
pub struct ShardListenError {
    /// The shard's number.
    pub shard: usize,
    /// The client address.
    pub addr: std::net::SocketAddr,
    /// Why.
    pub source: ordo_net::transport::TransportError,
}

/// Runs client shard `shard` on the current executor until the group
/// stops (its channels close).
pub async fn run_client_shard(
    shard: usize,
    config: ClientServerConfig,
    link: ShardLink,
    turn_max: usize,
) -> Result<(), ShardListenError> {
    let addr = config.listen_addr;
    let (server, inbox) = ClientServer::start(config).map_err(|source| ShardListenError {
        shard,
        addr,
        source,
    })?;
    let pending: Rc<std::cell::RefCell<HashMap<u64, ClientConn>>> = Rc::default();
    // Closed when the group stops (its reply channel closes): the shard
    // stops too.
    let (stopped_tx, stopped) = async_channel::bounded::<()>(1);
    // Answers: written to their connections as they arrive.
    let writer = {
        let pending = pending.clone();
        glommio::spawn_local(async move {
            let _stopped = stopped_tx;
            while let Ok(replies) = link.replies.recv().await {
                for reply in replies {
                    let conn = pending.borrow_mut().remove(&reply.tag);
                    if let Some(conn) = conn {
                        // A client that does not read loses its answer; it
                        // retries with its session.
                        let _ = conn.try_send(&reply.response);
                    }
                }
            }
        })
        .detach()
    };
    let mut next_tag = 0u64;
    loop {
        let next = futures_lite::future::or(async { inbox.recv().await }, async {
            // A message or a closed channel both mean stop.
            let _ = stopped.recv().await;
            None
        })
        .await;
        let Some(first) = next else { break };
        let mut batch = ShardBatch::default();
        let mut call = Some(first);
        let mut taken = 0;
        while let Some(ClientCall { conn, request }) = call.take() {
            match request {
                ClientRequest::Propose(propose) => {
                    next_tag += 1;
                    pending.borrow_mut().insert(next_tag, conn);
                    batch.proposals.push(ShardProposal {
                        tag: next_tag,
                        client_id: propose.client_id,
                        seq: propose.seq,
                        payload: propose.payload,
                        redirect: propose.redirect,
                        client_request_id: propose.request_id,
                    });
                }
                ClientRequest::Read(read) => {
                    next_tag += 1;
                    pending.borrow_mut().insert(next_tag, conn);
                    batch.reads.push((next_tag, read.request_id));
                }
                ClientRequest::Status(status) => {
                    let external = link.external.clone();
                    glommio::spawn_local(async move {
                        let (reply, answer) = oneshot::channel();
                        if external
                            .send(External::ClientStatus { reply })
                            .await
                            .is_ok()
                            && let Ok((status_now, leader)) = answer.await
                        {
                            let response = ClientResponse::Status(StatusResponse {
                                request_id: status.request_id,
                                status: status_now,
                                leader,
                            });
                            // The client may have gone away.
                            let _ = conn.send(&response).await;
                        }
                    })
                    .detach();
                }
                ClientRequest::Admin(admin) => {
                    let external = link.external.clone();
                    glommio::spawn_local(async move {
                        let (reply, answer) = oneshot::channel();
                        if external
                            .send(External::ClientAdmin {
                                request: admin,
                                reply,
                            })
                            .await
                            .is_ok()
                            && let Ok(response) = answer.await
                        {
                            // The client may have gone away.
                            let _ = conn.send(&ClientResponse::Admin(response)).await;
                        }
                    })
                    .detach();
                }
                ClientRequest::Log(log) => {
                    let external = link.external.clone();
                    glommio::spawn_local(async move {
                        stream_log(external, conn, log.request_id, log.from_id, log.follow).await;
                    })
                    .detach();
                }
            }
            taken += 1;
            if taken < turn_max {
                call = inbox.try_recv();
            }
        }
        if (!batch.proposals.is_empty() || !batch.reads.is_empty())
            && link
                .external
                .send(External::ShardBatch { shard, batch })
                .await
                .is_err()
        {
            break;
        }
    }
    drop(writer);
    server.shutdown().await;
    Ok(())
}

/// Relays a log stream the group serves to a client of this shard.
async fn stream_log(
    external: inbox::Sender<External>,
    conn: ClientConn,
    request_id: u64,
    from_id: MessageId,
    follow: bool,
) {
    let (sink, chunks) = async_channel::bounded::<ClientResponse>(4);
    let request = External::ClientLog {
        request_id,
        from_id,
        follow,
        sink,
    };
    if external.send(request).await.is_err() {
        return;
    }
    while let Ok(response) = chunks.recv().await {
        if conn.send(&response).await.is_err() {
            return;
        }
    }
}
