//! Helpers shared by the integration tests: message generators and glommio
//! executors sized for the locked-memory limit.
#![allow(dead_code)]

use bytes::Bytes;
use ordo_net::*;
use ordo_storage::{Batch, BatchKind, BatchMeta, EntryOut, LogId};
use proptest::prelude::*;

/// io_uring registered-buffer memory per test executor. The transport does
/// no DMA file IO, and several executors run at once under an 8 MiB
/// `RLIMIT_MEMLOCK` when not root.
pub const TEST_IO_MEMORY_BYTES: usize = 512 << 10;

/// Runs `f` on a fresh glommio executor on its own thread; returns its
/// result.
pub fn on_executor<T, F, Fut>(name: &str, f: F) -> std::thread::JoinHandle<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
{
    let name = name.to_string();
    std::thread::spawn(move || {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .name(&name)
            .io_memory(TEST_IO_MEMORY_BYTES)
            .make()
            .expect("executor starts")
            .run(f())
    })
}

/// Reads one handshake frame from a blocking socket. `Err` for a close, a
/// socket error or a frame that does not decode.
pub fn read_handshake_frame(stream: &mut std::net::TcpStream) -> Result<Handshake, String> {
    use std::io::Read;
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).map_err(|e| e.to_string())?;
    let len = u32::from_le_bytes(prefix) as usize;
    if !(4..=4096).contains(&len) {
        return Err(format!("frame of {len} bytes"));
    }
    let mut frame = prefix.to_vec();
    frame.resize(len, 0);
    stream
        .read_exact(&mut frame[4..])
        .map_err(|e| e.to_string())?;
    ordo_net::wire::decode_frame(Bytes::from(frame), 4096).map_err(|e| e.to_string())
}

/// Writes handshake frames on a blocking socket.
pub fn write_handshake(stream: &mut std::net::TcpStream, frames: &[Handshake]) {
    use std::io::Write;
    let mut bytes = Vec::new();
    for frame in frames {
        bytes.extend(ordo_net::wire::encode_to_vec(frame, 4096).unwrap());
    }
    stream.write_all(&bytes).unwrap();
}

/// The dialer's side of a handshake on a blocking socket: hello and nonce,
/// then, if challenged, the proof `sign` makes for the dialer transcript.
/// Returns the challenge (if any) and the acceptor's last answer.
pub fn raw_dial(
    stream: &mut std::net::TcpStream,
    hello: Hello,
    sign: impl Fn(&[u8]) -> auth::Signature,
) -> (Option<HelloChallenge>, Handshake) {
    let nonce = [0x5a; 32];
    write_handshake(
        stream,
        &[
            Handshake::Hello(hello),
            Handshake::Nonce(HelloNonce { nonce }),
        ],
    );
    let answer = read_handshake_frame(stream).expect("an answer to the hello");
    let Handshake::Challenge(challenge) = answer else {
        return (None, answer);
    };
    let transcript = auth::transcript(
        auth::Side::Dialer,
        hello.role,
        challenge.cluster_id,
        hello.node_id,
        challenge.node_id,
        &nonce,
        &challenge.nonce,
    );
    write_handshake(
        stream,
        &[Handshake::Proof(HelloProof {
            signature: sign(&transcript),
        })],
    );
    let answer = read_handshake_frame(stream).expect("an answer to the proof");
    (Some(challenge), answer)
}

/// The acceptor's side of a handshake without authentication on a
/// blocking socket: reads hello and nonce, challenges with a zero
/// signature, reads the proof and acks as `node_id` of `cluster_id`.
pub fn raw_accept(stream: &mut std::net::TcpStream, cluster_id: u64, node_id: u64) -> Hello {
    let Ok(Handshake::Hello(hello)) = read_handshake_frame(stream) else {
        panic!("expected a hello");
    };
    assert!(matches!(
        read_handshake_frame(stream),
        Ok(Handshake::Nonce(_))
    ));
    write_handshake(
        stream,
        &[Handshake::Challenge(HelloChallenge {
            cluster_id,
            node_id,
            nonce: [7; 32],
            signature: [0; 64],
        })],
    );
    assert!(matches!(
        read_handshake_frame(stream),
        Ok(Handshake::Proof(_))
    ));
    write_handshake(
        stream,
        &[Handshake::Ack(HelloAck {
            cluster_id,
            node_id,
            protocol_version: PROTOCOL_VERSION,
        })],
    );
    hello
}

/// A batch of `count` entries at `first_index` in `term`.
pub fn batch(term: u64, first_index: u64, payloads: &[Vec<u8>]) -> Batch {
    let entries = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| EntryOut {
            client_id: 7,
            seq: i as u64,
            payload: p,
        })
        .collect();
    Batch::encode(
        BatchMeta {
            kind: BatchKind::Entries,
            term,
            first_index,
            first_id: first_index,
            first_ts: 1_000_000 + first_index,
        },
        entries,
    )
}

pub fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

pub fn arb_log_id() -> impl Strategy<Value = LogId> {
    (any::<u64>(), any::<u64>()).prop_map(|(term, index)| LogId::new(term, index))
}

fn arb_propose_error() -> impl Strategy<Value = ProposeError> {
    prop_oneof![
        any::<u64>().prop_map(|leader| ProposeError::NotLeader { leader }),
        any::<u64>().prop_map(|leader| ProposeError::Unknown { leader }),
        any::<u64>().prop_map(|leader| ProposeError::Busy { leader }),
        (any::<u64>(), any::<u64>()).prop_map(|(bytes, max)| ProposeError::TooLarge { bytes, max }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(client_id, seq)| ProposeError::SessionExpired { client_id, seq }),
        Just(ProposeError::Stopped),
    ]
}

pub fn arb_propose_result() -> impl Strategy<Value = ProposeResult> {
    prop_oneof![
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(id, index, term, ts)| Ok(Committed {
                id,
                index,
                term,
                ts
            })
        ),
        arb_propose_error().prop_map(Err),
    ]
}

fn arb_read_error() -> impl Strategy<Value = ReadError> {
    prop_oneof![
        any::<u64>().prop_map(|leader| ReadError::NotLeader { leader }),
        any::<u64>().prop_map(|leader| ReadError::Busy { leader }),
        Just(ReadError::Stopped),
    ]
}

/// Consecutive batches after `prev` in non-decreasing terms up to `term`.
fn arb_append() -> impl Strategy<Value = AppendRequest> {
    (
        1u64..1_000,
        0u64..1_000_000,
        any::<u64>(),
        prop::collection::vec(
            (
                0u64..3,
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..6),
            ),
            0..4,
        ),
    )
        .prop_map(|(prev_term, prev_index, commit, shapes)| {
            let mut next = prev_index + 1;
            let mut term = prev_term.max(1);
            let mut batches = Vec::new();
            for (bump, payloads) in shapes {
                term += bump;
                let b = batch(term, next, &payloads);
                next = b.last_index() + 1;
                batches.push(b);
            }
            AppendRequest {
                term: term + 1,
                prev: LogId::new(prev_term, prev_index),
                commit,
                batches,
            }
        })
}

pub fn arb_raft_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u64>(), arb_log_id(), any::<bool>(), any::<bool>()).prop_map(
            |(term, last, pre_vote, transfer)| Message::Vote(VoteRequest {
                term,
                last,
                pre_vote,
                transfer
            })
        ),
        (any::<u64>(), any::<bool>(), any::<bool>()).prop_map(|(term, granted, pre_vote)| {
            Message::VoteResponse(VoteResponse {
                term,
                granted,
                pre_vote,
                repairing: false,
            })
        }),
        arb_append().prop_map(Message::Append),
        (
            any::<u64>(),
            prop_oneof![
                any::<u64>().prop_map(|match_index| AppendResult::Success { match_index }),
                (any::<u64>(), arb_log_id())
                    .prop_map(|(rejected, hint)| AppendResult::Conflict { rejected, hint }),
            ]
        )
            .prop_map(|(term, result)| Message::AppendResponse(AppendResponse {
                term,
                repairing: term % 3 == 0,
                result
            })),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(term, commit, read_round, last_index)| {
                Message::Heartbeat(Heartbeat {
                    term,
                    commit,
                    read_round,
                    last_index,
                })
            }
        ),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(term, read_round, last_index)| {
            Message::HeartbeatResponse(HeartbeatResponse {
                term,
                read_round,
                last_index,
                repairing: read_round % 2 == 1,
            })
        }),
        (
            any::<u64>(),
            prop::collection::vec(
                (any::<u64>(), any::<u64>(), any::<u64>(), arb_bytes(3000)),
                0..8
            )
        )
            .prop_map(|(term, ps)| Message::Forward(ForwardRequest {
                term,
                proposals: ps
                    .into_iter()
                    .map(|(request_id, client_id, seq, payload)| ForwardedProposal {
                        request_id,
                        client_id,
                        seq,
                        payload
                    })
                    .collect(),
            })),
        (
            any::<u64>(),
            prop::collection::vec((any::<u64>(), arb_propose_result()), 0..8),
        )
            .prop_map(|(term, results)| Message::ForwardResults(ForwardResults { term, results })),
        (any::<u64>(), prop::collection::vec(any::<u64>(), 0..8)).prop_map(
            |(term, request_ids)| Message::ReadIndex(ReadIndexRequest { term, request_ids })
        ),
        (
            any::<u64>(),
            prop::collection::vec(any::<u64>(), 0..8),
            prop_oneof![any::<u64>().prop_map(Ok), arb_read_error().prop_map(Err)]
        )
            .prop_map(|(term, request_ids, result)| Message::ReadIndexResponse(
                ReadIndexResponse {
                    term,
                    request_ids,
                    result
                }
            )),
        (
            any::<u64>(),
            arb_log_id(),
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(any::<u64>(), 0..7),
            arb_bytes(5000)
        )
            .prop_map(|(term, last, last_id, last_ts, voters, core_state)| {
                Message::InstallSnapshot(InstallSnapshot {
                    term,
                    meta: SnapshotMeta {
                        last,
                        last_id,
                        last_ts,
                        voters,
                        core_state,
                    },
                })
            }),
        any::<u64>().prop_map(|term| Message::TimeoutNow(TimeoutNow { term })),
    ]
}

pub fn arb_peer_message() -> impl Strategy<Value = PeerMessage> {
    prop_oneof![
        6 => arb_raft_message().prop_map(PeerMessage::Raft),
        1 => (any::<u64>(), arb_log_id(), any::<u64>(), arb_bytes(5000), any::<bool>()).prop_map(|(term, last, offset, data, done)| PeerMessage::SnapshotChunk(SnapshotChunk { term, last, offset, data, done })),
        1 => (any::<u64>(), arb_log_id(), any::<u64>(), any::<bool>()).prop_map(|(term, last, next_offset, ok)| PeerMessage::SnapshotAck(SnapshotAck { term, last, next_offset, ok })),
        1 => (any::<u64>(), prop::collection::vec(any::<u8>(), 0..300)).prop_map(|(term, statement)| PeerMessage::Certificate(Certificate { term, statement })),
        1 => (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(term, from_index, to_index, floor_index)| PeerMessage::CertificateRequest(CertificateRequest { term, from_index, to_index, floor_index })),
        1 => (any::<u64>(), prop::collection::vec((any::<u64>(), prop::collection::vec(any::<u8>(), 0..200)), 0..8)).prop_map(|(term, tokens)| PeerMessage::ForwardTokens(ForwardTokens { term, tokens })),
    ]
}

pub fn arb_client_request() -> impl Strategy<Value = ClientRequest> {
    prop_oneof![
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            arb_bytes(5000),
            any::<bool>()
        )
            .prop_map(|(request_id, client_id, seq, payload, redirect)| {
                ClientRequest::Propose(ProposeRequest {
                    request_id,
                    client_id,
                    seq,
                    payload,
                    redirect,
                })
            }),
        any::<u64>().prop_map(|request_id| ClientRequest::Read(ReadRequest { request_id })),
        any::<u64>().prop_map(|request_id| ClientRequest::Status(StatusRequest { request_id })),
        (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(request_id, from_id, follow)| {
            ClientRequest::Log(LogRequest {
                request_id,
                from_id,
                follow,
            })
        }),
    ]
}

fn arb_leader() -> impl Strategy<Value = LeaderHint> {
    (any::<u64>(), "[a-z0-9.:]{0,24}").prop_map(|(id, client_addr)| LeaderHint { id, client_addr })
}

fn arb_role() -> impl Strategy<Value = NodeRole> {
    prop_oneof![
        Just(NodeRole::Follower),
        Just(NodeRole::PreCandidate),
        Just(NodeRole::Candidate),
        Just(NodeRole::Leader),
        Just(NodeRole::Learner),
        Just(NodeRole::Gossip)
    ]
}

pub fn arb_client_response() -> impl Strategy<Value = ClientResponse> {
    prop_oneof![
        (
            any::<u64>(),
            arb_propose_result(),
            arb_leader(),
            prop::collection::vec(any::<u8>(), 0..600)
        )
            .prop_map(|(request_id, result, leader, token)| {
                ClientResponse::Propose(ProposeResponse {
                    request_id,
                    result,
                    leader,
                    token,
                })
            }),
        (
            any::<u64>(),
            prop_oneof![any::<u64>().prop_map(Ok), arb_read_error().prop_map(Err)],
            arb_leader()
        )
            .prop_map(
                |(request_id, result, leader)| ClientResponse::Read(ReadResponse {
                    request_id,
                    result,
                    leader
                })
            ),
        (
            any::<u64>(),
            (
                any::<u64>(),
                arb_role(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>()
            ),
            arb_leader()
        )
            .prop_map(
                |(
                    request_id,
                    (
                        id,
                        role,
                        term,
                        leader_id,
                        commit_index,
                        last_index,
                        durable_index,
                        applied_index,
                    ),
                    leader,
                )| ClientResponse::Status(StatusResponse {
                    request_id,
                    status: NodeStatus {
                        id,
                        role,
                        term,
                        leader: leader_id,
                        commit_index,
                        last_index,
                        durable_index,
                        applied_index,
                        repairing: applied_index % 2 == 0,
                        repair: String::new(),
                        peers_repairing: Vec::new(),
                    },
                    leader,
                })
            ),
        (
            any::<u64>(),
            prop::collection::vec(
                (
                    any::<u64>(),
                    any::<u64>(),
                    any::<u64>(),
                    any::<u64>(),
                    arb_bytes(2000),
                    arb_bytes(200)
                ),
                0..6
            ),
            any::<bool>()
        )
            .prop_map(|(request_id, ms, done)| ClientResponse::Log(LogResponse {
                request_id,
                messages: ms
                    .into_iter()
                    .map(|(id, index, term, ts, payload, token)| CommittedMessage {
                        id,
                        index,
                        term,
                        ts,
                        payload,
                        token
                    })
                    .collect(),
                done,
            })),
        (
            any::<u64>(),
            prop_oneof![
                any::<u64>().prop_map(|first_id| ClientError::Compacted { first_id }),
                Just(ClientError::Busy),
                Just(ClientError::Stopped),
                "[ -~]{0,40}".prop_map(|reason| ClientError::BadRequest { reason }),
                (any::<u64>(), "[ -~]{0,40}")
                    .prop_map(|(id, reason)| ClientError::Stalled { id, reason }),
            ],
            arb_leader()
        )
            .prop_map(
                |(request_id, error, leader)| ClientResponse::Error(ErrorResponse {
                    request_id,
                    error,
                    leader
                })
            ),
    ]
}

pub fn arb_handshake() -> impl Strategy<Value = Handshake> {
    let role = prop_oneof![
        Just(ConnectionRole::Peer),
        Just(ConnectionRole::Client),
        Just(ConnectionRole::Gossip)
    ];
    let reason = prop_oneof![
        Just(RejectReason::ClusterMismatch),
        Just(RejectReason::VersionMismatch),
        Just(RejectReason::RoleMismatch),
        Just(RejectReason::DialRule),
        Just(RejectReason::Unavailable),
        Just(RejectReason::Unauthenticated),
    ];
    prop_oneof![
        (any::<u64>(), any::<u64>(), any::<u16>(), role).prop_map(
            |(cluster_id, node_id, protocol_version, role)| Handshake::Hello(Hello {
                cluster_id,
                node_id,
                protocol_version,
                role
            })
        ),
        (any::<u64>(), any::<u64>(), any::<u16>()).prop_map(
            |(cluster_id, node_id, protocol_version)| Handshake::Ack(HelloAck {
                cluster_id,
                node_id,
                protocol_version
            })
        ),
        (reason, any::<u16>(), "[ -~]{0,40}").prop_map(|(reason, protocol_version, detail)| {
            Handshake::Reject(HelloReject {
                reason,
                protocol_version,
                detail,
            })
        }),
        any::<[u8; 32]>().prop_map(|nonce| Handshake::Nonce(HelloNonce { nonce })),
        (
            any::<u64>(),
            any::<u64>(),
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            any::<[u8; 32]>()
        )
            .prop_map(|(cluster_id, node_id, nonce, low, high)| {
                let mut signature = [0u8; 64];
                signature[..32].copy_from_slice(&low);
                signature[32..].copy_from_slice(&high);
                Handshake::Challenge(HelloChallenge {
                    cluster_id,
                    node_id,
                    nonce,
                    signature,
                })
            }),
        (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(low, high)| {
            let mut signature = [0u8; 64];
            signature[..32].copy_from_slice(&low);
            signature[32..].copy_from_slice(&high);
            Handshake::Proof(HelloProof { signature })
        }),
    ]
}

pub fn arb_gossip_message() -> impl Strategy<Value = GossipMessage> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        arb_bytes(300),
        arb_bytes(600),
    )
        .prop_map(|(id, index, term, ts, payload, token)| GossipMessage {
            id,
            index,
            term,
            ts,
            payload,
            token,
        })
}

pub fn arb_gossip_wire() -> impl Strategy<Value = Wire> {
    prop_oneof![
        arb_bytes(1400).prop_map(Wire::Membership),
        any::<bool>().prop_map(|urgent| Wire::Neighbor { urgent }),
        any::<bool>().prop_map(|accepted| Wire::NeighborReply { accepted }),
        Just(Wire::Disconnect),
        (arb_gossip_message(), any::<u16>(), any::<bool>()).prop_map(|(message, hops, repair)| {
            Wire::Push {
                message,
                hops,
                repair,
            }
        }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(delivered, above)| Wire::IHave { delivered, above }),
        (any::<u64>(), any::<u64>()).prop_map(|(from, to)| Wire::Graft { from, to }),
        Just(Wire::Prune),
        (any::<u64>(), any::<u64>()).prop_map(|(from, to)| Wire::Pull { from, to }),
        (
            prop::collection::vec(arb_gossip_message(), 0..6),
            any::<u64>()
        )
            .prop_map(|(messages, delivered)| Wire::PullReply {
                messages,
                delivered
            }),
        prop::collection::vec(arb_bytes(600), 0..5).prop_map(|links| Wire::Chain { links }),
    ]
}

pub fn arb_gossip_frame() -> impl Strategy<Value = GossipFrame> {
    let addr = prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| std::net::SocketAddr::from((ip, port))),
        (any::<[u16; 8]>(), any::<u16>())
            .prop_map(|(ip, port)| std::net::SocketAddr::from((ip, port))),
    ];
    prop_oneof![
        1 => addr.prop_map(|listen_addr| GossipFrame::Intro(GossipIntro { listen_addr })),
        6 => arb_gossip_wire().prop_map(GossipFrame::Wire),
    ]
}

pub fn arb_any_message() -> impl Strategy<Value = wire::AnyMessage> {
    prop_oneof![
        4 => arb_peer_message().prop_map(wire::AnyMessage::Peer),
        2 => arb_client_request().prop_map(wire::AnyMessage::ClientRequest),
        2 => arb_client_response().prop_map(wire::AnyMessage::ClientResponse),
        1 => arb_handshake().prop_map(wire::AnyMessage::Handshake),
        2 => arb_gossip_frame().prop_map(wire::AnyMessage::Gossip),
    ]
}
