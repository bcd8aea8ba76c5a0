//! The handshake on a fresh connection (see [`crate::handshake`]).

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::future::or;
use glommio::net::TcpStream;
use ordo_storage::NodeId;

use crate::handshake::{
    ConnectionRole, Handshake, Hello, HelloAck, HelloReject, PROTOCOL_VERSION, RejectReason,
};
use crate::transport::io::{ConnectionError, read_frame, write_all};
use crate::wire::{Decode, FrameSplitter, HANDSHAKE_FRAME_BYTES_MAX, encode_to_vec};

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
    stream: &RefCell<TcpStream>,
    message: Handshake,
) -> Result<(), ConnectionError> {
    let bytes = encode_to_vec(&message, HANDSHAKE_FRAME_BYTES_MAX)?;
    write_all(stream, &[&bytes]).await?;
    Ok(())
}

/// Reads one handshake frame (with the small handshake frame limit).
pub(crate) async fn receive_handshake(
    stream: &RefCell<TcpStream>,
    splitter: &mut FrameSplitter,
) -> Result<Handshake, ConnectionError> {
    let frame = read_frame(stream, splitter)
        .await?
        .ok_or(ConnectionError::Eof)?;
    Ok(Handshake::decode(&frame)?)
}

/// What the dialer knows once a connection is up.
pub(crate) struct Dialed {
    pub(crate) stream: RefCell<TcpStream>,
    pub(crate) splitter: FrameSplitter,
    pub(crate) ack: HelloAck,
}

/// Connects to `addr`, introduces itself and waits for the acceptor's answer.
/// `expect_node`: the node id the dialer means to reach (`None`: any, as a
/// client that does not know ids yet).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn dial(
    addr: SocketAddr,
    hello: Hello,
    expect_node: Option<NodeId>,
    connect_timeout: Duration,
    handshake_timeout: Duration,
    slab_bytes: usize,
    frame_bytes_max: usize,
) -> Result<Dialed, ConnectionError> {
    let stream = TcpStream::connect_timeout(addr, connect_timeout)
        .await
        .map_err(std::io::Error::from)?;
    // Heartbeats and responses are small and latency-bound; coalescing is
    // done by the writer, not by Nagle's algorithm.
    stream.set_nodelay(true).map_err(std::io::Error::from)?;
    let stream = RefCell::new(stream);
    let mut splitter = FrameSplitter::new(slab_bytes, HANDSHAKE_FRAME_BYTES_MAX);
    let answer = with_timeout(handshake_timeout, "handshake", async {
        send_handshake(&stream, Handshake::Hello(hello)).await?;
        receive_handshake(&stream, &mut splitter).await
    })
    .await?;
    let ack = match answer {
        Handshake::Ack(ack) => ack,
        Handshake::Reject(reject) => {
            return Err(ConnectionError::Handshake(format!(
                "refused ({:?}): {}",
                reject.reason, reject.detail
            )));
        }
        Handshake::Hello(_) => {
            return Err(ConnectionError::Handshake("acceptor sent hello".into()));
        }
    };
    // A client that names no cluster (0) learns it from the acceptor.
    let any_cluster = hello.cluster_id == 0 && hello.role == ConnectionRole::Client;
    if ack.cluster_id != hello.cluster_id && !any_cluster {
        return Err(ConnectionError::Handshake(format!(
            "acceptor is in cluster {}, not {}",
            ack.cluster_id, hello.cluster_id
        )));
    }
    if ack.protocol_version != PROTOCOL_VERSION {
        return Err(ConnectionError::Handshake(format!(
            "acceptor speaks protocol {}, not {PROTOCOL_VERSION}",
            ack.protocol_version
        )));
    }
    if let Some(expected) = expect_node
        && ack.node_id != expected
    {
        return Err(ConnectionError::Handshake(format!(
            "reached node {} at {addr}, expected node {expected}",
            ack.node_id
        )));
    }
    splitter.set_frame_bytes_max(frame_bytes_max);
    Ok(Dialed {
        stream,
        splitter,
        ack,
    })
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
