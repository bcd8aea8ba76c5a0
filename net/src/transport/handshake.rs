//! The handshake on a fresh connection (see [`crate::handshake`]).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::future::or;
use glommio::net::TcpStream;
use ordo_storage::NodeId;

use crate::auth::{Credential, Side, fresh_nonce, transcript};
use crate::handshake::{
    ConnectionRole, Handshake, Hello, HelloAck, HelloChallenge, HelloNonce, HelloProof,
    HelloReject, PROTOCOL_VERSION, RejectReason,
};
use crate::tls::TlsClientConfig;
use crate::transport::io::{ConnectionError, Stream, read_frame, write_all};
use crate::wire::{Decode, FrameSplitter, HANDSHAKE_FRAME_BYTES_MAX, encode_to_vec};

/// Counts an accepted connection as "in its handshake" until dropped (after
/// authentication: a dialer that stalls before its proof still counts
/// against `handshakes_pending_max`).
pub(crate) struct Pending<'a>(pub(crate) &'a std::cell::Cell<usize>);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Runs `future`, failing with a handshake timeout after `limit`.
pub(crate) async fn with_timeout<T>(
    limit: Duration,
    what: &'static str,
    future: impl Future<Output = Result<T, ConnectionError>>,
) -> Result<T, ConnectionError> {
    or(future, async move {
        glommio::timer::sleep(limit).await;
        Err(ConnectionError::Handshake(format!(
            "{what} timed out after {limit:?}"
        )))
    })
    .await
}

/// Writes one handshake frame.
pub(crate) async fn send_handshake(
    stream: &Stream,
    message: Handshake,
) -> Result<(), ConnectionError> {
    let bytes = encode_to_vec(&message, HANDSHAKE_FRAME_BYTES_MAX)?;
    write_all(stream, &[&bytes]).await?;
    Ok(())
}

/// Reads one handshake frame (with the small handshake frame limit).
pub(crate) async fn receive_handshake(
    stream: &Stream,
    splitter: &mut FrameSplitter,
) -> Result<Handshake, ConnectionError> {
    let frame = read_frame(stream, splitter)
        .await?
        .ok_or(ConnectionError::Eof)?;
    Ok(Handshake::decode(&frame)?)
}

/// What the dialer knows once a connection is up.
pub(crate) struct Dialed {
    pub(crate) stream: Stream,
    pub(crate) splitter: FrameSplitter,
    pub(crate) ack: HelloAck,
}

/// Connects to `addr`, introduces itself, answers the acceptor's challenge
/// with `auth` and waits for the acceptor's answer. `expect_node`: the node
/// id the dialer means to reach (`None`: any, as a client that does not
/// know ids yet). `tls`: run TLS first, so the handshake and everything
/// after it travel encrypted (client connections only).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn dial(
    addr: SocketAddr,
    hello: Hello,
    expect_node: Option<NodeId>,
    auth: &Credential,
    connect_timeout: Duration,
    handshake_timeout: Duration,
    slab_bytes: usize,
    frame_bytes_max: usize,
    tls: Option<&TlsClientConfig>,
) -> Result<Dialed, ConnectionError> {
    let stream = TcpStream::connect_timeout(addr, connect_timeout)
        .await
        .map_err(std::io::Error::from)?;
    // Heartbeats and responses are small and latency-bound; coalescing is
    // done by the writer, not by Nagle's algorithm.
    stream.set_nodelay(true).map_err(std::io::Error::from)?;
    let stream = match tls {
        None => Stream::plain(stream),
        Some(tls) => {
            with_timeout(
                handshake_timeout,
                "TLS handshake",
                Stream::connect_tls(stream, tls),
            )
            .await?
        }
    };
    let mut splitter = FrameSplitter::new(slab_bytes, HANDSHAKE_FRAME_BYTES_MAX);
    let ack = with_timeout(handshake_timeout, "handshake", async {
        let dialer_nonce = fresh_nonce()
            .map_err(|e| ConnectionError::Handshake(format!("no randomness for a nonce: {e}")))?;
        // One write: the hello and the nonce (an acceptor of another
        // version reads the hello alone and says why it refuses).
        let hello_bytes = encode_to_vec(&Handshake::Hello(hello), HANDSHAKE_FRAME_BYTES_MAX)?;
        let nonce_bytes = encode_to_vec(
            &Handshake::Nonce(HelloNonce {
                nonce: dialer_nonce,
            }),
            HANDSHAKE_FRAME_BYTES_MAX,
        )?;
        write_all(&stream, &[&hello_bytes, &nonce_bytes]).await?;
        let challenge = match receive_handshake(&stream, &mut splitter).await? {
            Handshake::Challenge(challenge) => challenge,
            other => return Err(unexpected_answer(other)),
        };
        check_acceptor(
            &hello,
            expect_node,
            addr,
            challenge.cluster_id,
            challenge.node_id,
        )?;
        let acceptor_transcript = transcript(
            Side::Acceptor,
            hello.role,
            challenge.cluster_id,
            hello.node_id,
            challenge.node_id,
            &dialer_nonce,
            &challenge.nonce,
        );
        auth.verify(
            challenge.node_id,
            &acceptor_transcript,
            &challenge.signature,
        )
        .map_err(|refusal| {
            ConnectionError::Handshake(format!(
                "node {} at {addr} did not prove its identity: {refusal}",
                challenge.node_id
            ))
        })?;
        let dialer_transcript = transcript(
            Side::Dialer,
            hello.role,
            challenge.cluster_id,
            hello.node_id,
            challenge.node_id,
            &dialer_nonce,
            &challenge.nonce,
        );
        let proof = HelloProof {
            signature: auth.sign(&dialer_transcript),
        };
        send_handshake(&stream, Handshake::Proof(proof)).await?;
        let ack = match receive_handshake(&stream, &mut splitter).await? {
            Handshake::Ack(ack) => ack,
            other => return Err(unexpected_answer(other)),
        };
        if ack.cluster_id != challenge.cluster_id || ack.node_id != challenge.node_id {
            return Err(ConnectionError::Handshake(format!(
                "acceptor acked as node {} of cluster {}, challenged as node {} of cluster {}",
                ack.node_id, ack.cluster_id, challenge.node_id, challenge.cluster_id
            )));
        }
        Ok(ack)
    })
    .await?;
    check_acceptor(&hello, expect_node, addr, ack.cluster_id, ack.node_id)?;
    if ack.protocol_version != PROTOCOL_VERSION {
        return Err(ConnectionError::Handshake(format!(
            "acceptor speaks protocol {}, not {PROTOCOL_VERSION}",
            ack.protocol_version
        )));
    }
    splitter.set_frame_bytes_max(frame_bytes_max);
    Ok(Dialed {
        stream,
        splitter,
        ack,
    })
}

/// The error for an answer that is not the one the dialer waits for: a
/// refusal says why, anything else is a broken acceptor.
fn unexpected_answer(answer: Handshake) -> ConnectionError {
    match answer {
        Handshake::Reject(reject) if reject.reason == RejectReason::Unauthenticated => {
            ConnectionError::Unauthenticated(format!("the acceptor refused: {}", reject.detail))
        }
        Handshake::Reject(reject) => {
            ConnectionError::Handshake(format!("refused ({:?}): {}", reject.reason, reject.detail))
        }
        other => ConnectionError::Handshake(format!(
            "acceptor sent an unexpected handshake frame: {}",
            crate::wire::Encode::frame_kind(&other).name()
        )),
    }
}

/// The dialer's checks of whom it reached: the cluster it named (a client
/// that names none, `0`, takes any) and the node it meant.
fn check_acceptor(
    hello: &Hello,
    expect_node: Option<NodeId>,
    addr: SocketAddr,
    cluster_id: u64,
    node_id: NodeId,
) -> Result<(), ConnectionError> {
    let any_cluster = hello.cluster_id == 0 && hello.role == ConnectionRole::Client;
    if cluster_id != hello.cluster_id && !any_cluster {
        return Err(ConnectionError::Handshake(format!(
            "acceptor is in cluster {cluster_id}, not {}",
            hello.cluster_id
        )));
    }
    if let Some(expected) = expect_node
        && node_id != expected
    {
        return Err(ConnectionError::Handshake(format!(
            "reached node {node_id} at {addr}, expected node {expected}"
        )));
    }
    Ok(())
}

/// The acceptor's side of authentication, once `hello` passed its checks:
/// reads the dialer's nonce, sends the challenge, reads and checks the
/// proof. On a bad proof it sends [`RejectReason::Unauthenticated`]; either
/// way an error means the connection must be closed. The caller sends the
/// [`HelloAck`] after `Ok`.
pub(crate) async fn authenticate(
    stream: &Stream,
    splitter: &mut FrameSplitter,
    hello: &Hello,
    cluster_id: u64,
    node_id: NodeId,
    auth: &Credential,
    timeout: Duration,
) -> Result<(), ConnectionError> {
    let checked = with_timeout(timeout, "authentication", async {
        let dialer_nonce = match receive_handshake(stream, splitter).await? {
            Handshake::Nonce(nonce) => nonce.nonce,
            other => {
                return Ok(Err(format!(
                    "expected the dialer's nonce, got {}",
                    crate::wire::Encode::frame_kind(&other).name()
                )));
            }
        };
        let acceptor_nonce = fresh_nonce()
            .map_err(|e| ConnectionError::Handshake(format!("no randomness for a nonce: {e}")))?;
        let acceptor_transcript = transcript(
            Side::Acceptor,
            hello.role,
            cluster_id,
            hello.node_id,
            node_id,
            &dialer_nonce,
            &acceptor_nonce,
        );
        let challenge = HelloChallenge {
            cluster_id,
            node_id,
            nonce: acceptor_nonce,
            signature: auth.sign(&acceptor_transcript),
        };
        send_handshake(stream, Handshake::Challenge(challenge)).await?;
        let proof = match receive_handshake(stream, splitter).await? {
            Handshake::Proof(proof) => proof,
            other => {
                return Ok(Err(format!(
                    "expected a proof, got {}",
                    crate::wire::Encode::frame_kind(&other).name()
                )));
            }
        };
        let dialer_transcript = transcript(
            Side::Dialer,
            hello.role,
            cluster_id,
            hello.node_id,
            node_id,
            &dialer_nonce,
            &acceptor_nonce,
        );
        Ok(auth
            .verify(hello.node_id, &dialer_transcript, &proof.signature)
            .map_err(|refusal| refusal.0))
    })
    .await?;
    if let Err(detail) = checked {
        let detail = match hello.role {
            ConnectionRole::Peer => format!("node {}: {detail}", hello.node_id),
            ConnectionRole::Gossip => format!("gossip credential: {detail}"),
            ConnectionRole::Client => format!("client secret: {detail}"),
        };
        let reject = HelloReject {
            reason: RejectReason::Unauthenticated,
            protocol_version: PROTOCOL_VERSION,
            detail: detail.clone(),
        };
        // Best effort: the connection closes whether or not the dialer
        // reads why.
        let _ = with_timeout(
            timeout,
            "reject",
            send_handshake(stream, Handshake::Reject(reject)),
        )
        .await;
        return Err(ConnectionError::Unauthenticated(detail));
    }
    Ok(())
}

/// The acceptor's checks shared by peer and client listeners: cluster,
/// version and role. Returns the refusal to send, if any.
pub(crate) fn check_hello(
    hello: &Hello,
    cluster_id: u64,
    role: ConnectionRole,
) -> Option<HelloReject> {
    let reject = |reason, detail: String| {
        Some(HelloReject {
            reason,
            protocol_version: PROTOCOL_VERSION,
            detail,
        })
    };
    if hello.protocol_version != PROTOCOL_VERSION {
        return reject(
            RejectReason::VersionMismatch,
            format!(
                "this node speaks protocol {PROTOCOL_VERSION}, dialer {}",
                hello.protocol_version
            ),
        );
    }
    // Clients may name no cluster (0): the `ordo` commands take only an
    // address. Voters must always match.
    let any_cluster = hello.cluster_id == 0 && role == ConnectionRole::Client;
    if hello.cluster_id != cluster_id && !any_cluster {
        return reject(
            RejectReason::ClusterMismatch,
            format!(
                "this node is in cluster {cluster_id}, dialer in {}",
                hello.cluster_id
            ),
        );
    }
    if hello.role != role {
        return reject(
            RejectReason::RoleMismatch,
            format!(
                "this port takes {role:?} connections, dialer is a {:?}",
                hello.role
            ),
        );
    }
    None
}
