//! The transport over real loopback sockets, with glommio executors.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures_lite::future::or;
use ordo_net::transport::*;
use ordo_net::wire::{Decode, FrameSplitter, encode_to_vec};
use ordo_net::*;
use ordo_storage::LogId;

const CLUSTER: u64 = 0x0bd0;
const RECEIVER: u64 = 100;
const GOOD: u64 = 1;

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn append(index: u64, payload_bytes: usize) -> PeerMessage {
    let payloads: Vec<Vec<u8>> = (0..4)
        .map(|i| vec![(index + i) as u8; payload_bytes])
        .collect();
    PeerMessage::Raft(Message::Append(AppendRequest {
        term: 5,
        prev: LogId::new(5, index * 4),
        commit: index,
        batches: vec![batch(5, index * 4 + 1, &payloads)],
    }))
}

fn heartbeat(round: u64) -> PeerMessage {
    PeerMessage::Raft(Message::Heartbeat(Heartbeat {
        term: 5,
        commit: round,
        read_round: round,
        last_index: round,
    }))
}

/// Waits for `future` at most `limit`.
async fn within<T>(limit: Duration, future: impl std::future::Future<Output = T>) -> Option<T> {
    or(async { Some(future.await) }, async {
        glommio::timer::sleep(limit).await;
        None
    })
    .await
}

// ---------------------------------------------------------------------------
// Hostile connections, from plain threads with std sockets.

fn peer_hello(node_id: u64, cluster_id: u64) -> Hello {
    Hello {
        cluster_id,
        node_id,
        protocol_version: PROTOCOL_VERSION,
        role: ConnectionRole::Peer,
    }
}

fn hello(node_id: u64, cluster_id: u64) -> Vec<u8> {
    encode_to_vec(&Handshake::Hello(peer_hello(node_id, cluster_id)), 4096).unwrap()
}

/// Reads one frame with blocking reads.
fn read_handshake(stream: &mut TcpStream) -> Handshake {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).unwrap();
    let len = u32::from_le_bytes(prefix) as usize;
    let mut frame = prefix.to_vec();
    frame.resize(len, 0);
    stream.read_exact(&mut frame[4..]).unwrap();
    ordo_net::wire::decode_frame(Bytes::from(frame), 4096).unwrap()
}

/// Whether the other side closes the connection within a few seconds
/// (reads return EOF or a reset), draining anything it sends first.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Hostile {
    GarbageWithoutHandshake,
    WrongCluster,
    GarbageAfterHandshake,
    TruncatedFrame,
    HugeLengthPrefix,
    WrongCrc,
    CorruptBatch,
}

/// One hostile connection as `node_id`; returns whether the server closed
/// it.
fn hostile(addr: SocketAddr, node_id: u64, behaviour: Hostile, seed: u64) -> bool {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut stream = TcpStream::connect(addr).unwrap();
    let valid = encode_to_vec(&append(7, 32), 1 << 20).unwrap();
    let handshake = |stream: &mut TcpStream| {
        let (_, answer) = raw_dial(stream, peer_hello(node_id, CLUSTER), |_| [0; 64]);
        assert!(
            matches!(answer, Handshake::Ack(_)),
            "{behaviour:?}: handshake refused"
        );
    };
    // Writes may fail once the server has closed: that is the point.
    let _ = match behaviour {
        Hostile::GarbageWithoutHandshake => {
            let garbage: Vec<u8> = (0..10_000).map(|_| rng.u8(..)).collect();
            stream.write_all(&garbage)
        }
        Hostile::WrongCluster => {
            stream.write_all(&hello(node_id, CLUSTER + 1)).unwrap();
            assert!(matches!(
                read_handshake(&mut stream),
                Handshake::Reject(HelloReject {
                    reason: RejectReason::ClusterMismatch,
                    ..
                })
            ));
            Ok(())
        }
        Hostile::GarbageAfterHandshake => {
            handshake(&mut stream);
            let garbage: Vec<u8> = (0..10_000).map(|_| rng.u8(..)).collect();
            stream.write_all(&garbage)
        }
        Hostile::TruncatedFrame => {
            handshake(&mut stream);
            let cut = 1 + rng.usize(..valid.len() - 1);
            let result = stream.write_all(&valid[..cut]);
            let _ = stream.shutdown(Shutdown::Write);
            result
        }
        Hostile::HugeLengthPrefix => {
            handshake(&mut stream);
            let mut frame = valid.clone();
            frame[0..4].copy_from_slice(&(0xFFFF_FFF0u32).to_le_bytes());
            stream.write_all(&frame)
        }
        Hostile::WrongCrc => {
            handshake(&mut stream);
            let mut frame = valid.clone();
            frame[4] ^= 0x01;
            stream.write_all(&frame)
        }
        Hostile::CorruptBatch => {
            handshake(&mut stream);
            // The last byte belongs to the batch attachment, which the frame
            // CRC leaves to the batch's own CRC.
            let mut frame = valid.clone();
            *frame.last_mut().unwrap() ^= 0x80;
            stream.write_all(&frame)
        }
    };
    closed_by_server(&mut stream)
}

#[test]
fn good_stream_is_delivered_intact_while_hostile_connections_are_closed() {
    const MESSAGES: u64 = 3000;
    let (addr_tx, addr_rx) = mpsc::channel();
    let receiver = on_executor("receiver", move || async move {
        let mut config = TransportConfig::new(CLUSTER, RECEIVER, local());
        config.limits.frame_bytes_max = 1 << 20;
        config.limits.bulk_queue_bytes_max = 1 << 20;
        config.inbox_bytes_max = 1 << 20;
        let (transport, inbox) = PeerTransport::start(config).unwrap();
        addr_tx.send(transport.local_addr()).unwrap();
        let mut received = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while (received.len() as u64) < MESSAGES && Instant::now() < deadline {
            match within(Duration::from_millis(200), inbox.recv()).await {
                Some(Some(PeerEvent::Message { from, message })) => {
                    assert_eq!(from, GOOD, "only the good peer delivers messages");
                    received.push(message);
                }
                Some(Some(PeerEvent::Unreachable { .. })) | None => {}
                Some(None) => break,
            }
        }
        transport.shutdown().await;
        received
    });
    let addr = addr_rx.recv().unwrap();

    let sent: Vec<PeerMessage> = (0..MESSAGES)
        .map(|i| {
            if i % 3 == 0 {
                heartbeat(i)
            } else {
                append(i, 16 + (i as usize % 200))
            }
        })
        .collect();
    let to_send = sent.clone();
    let sender = on_executor("good-sender", move || async move {
        let (transport, _inbox) =
            PeerTransport::start(TransportConfig::new(CLUSTER, GOOD, local())).unwrap();
        transport.add_peer(RECEIVER, addr).unwrap();
        for (i, message) in to_send.iter().enumerate() {
            transport.send(RECEIVER, message).await.unwrap();
            if i % 100 == 0 {
                // Let the hostile connections interleave with the stream.
                glommio::timer::sleep(Duration::from_millis(2)).await;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while transport.peer_stats(RECEIVER).unwrap().queue.frames_sent < MESSAGES
            && Instant::now() < deadline
        {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        let stats = transport.peer_stats(RECEIVER).unwrap();
        transport.shutdown().await;
        stats
    });

    let behaviours = [
        Hostile::GarbageWithoutHandshake,
        Hostile::WrongCluster,
        Hostile::GarbageAfterHandshake,
        Hostile::TruncatedFrame,
        Hostile::HugeLengthPrefix,
        Hostile::WrongCrc,
        Hostile::CorruptBatch,
    ];
    let hostiles: Vec<_> = behaviours
        .iter()
        .enumerate()
        .map(|(i, &behaviour)| {
            std::thread::spawn(move || {
                (0..5u64)
                    .map(|round| hostile(addr, 2 + i as u64, behaviour, round * 31 + i as u64))
                    .collect::<Vec<bool>>()
            })
        })
        .collect();
    for (behaviour, handle) in behaviours.iter().zip(hostiles) {
        let closed = handle.join().unwrap();
        assert!(
            closed.iter().all(|c| *c),
            "{behaviour:?}: server left a bad connection open: {closed:?}"
        );
    }

    let stats = sender.join().unwrap();
    assert_eq!(stats.queue.frames_sent, MESSAGES, "{stats:?}");
    assert_eq!(
        stats.connections, 1,
        "the good connection was never dropped"
    );
    let received = receiver.join().unwrap();
    assert_eq!(received.len() as u64, MESSAGES);
    // Each lane keeps its order; heartbeats may overtake appends.
    let lane = |messages: &[PeerMessage], heartbeats: bool| -> Vec<PeerMessage> {
        messages
            .iter()
            .filter(|m| matches!(m, PeerMessage::Raft(Message::Heartbeat(_))) == heartbeats)
            .cloned()
            .collect()
    };
    assert_eq!(
        lane(&received, false),
        lane(&sent, false),
        "appends intact and in order"
    );
    assert_eq!(
        lane(&received, true),
        lane(&sent, true),
        "heartbeats intact and in order"
    );
}

// ---------------------------------------------------------------------------
// A peer that stops reading.

#[test]
fn a_stuck_peer_cannot_grow_the_senders_memory() {
    let limits = ConnectionLimits {
        frame_bytes_max: 1 << 20,
        priority_queue_bytes_max: 64 << 10,
        bulk_queue_frames_max: 64,
        bulk_queue_bytes_max: 1 << 20,
        write_coalesce_bytes_max: 128 << 10,
        ..ConnectionLimits::default()
    };
    // The stuck peer: handshakes, then reads nothing until told to.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let peer = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        raw_accept(&mut stream, CLUSTER, 2);
        go_rx.recv().unwrap();
        // Now read and count every frame until the sender closes.
        let mut splitter = FrameSplitter::new(256 << 10, 1 << 20);
        let mut frames = 0u64;
        loop {
            let space = splitter.unfilled().unwrap();
            let n = stream.read(space).unwrap();
            if n == 0 {
                return frames;
            }
            splitter.advance(n);
            while let Some(frame) = splitter.next_frame().unwrap() {
                PeerMessage::decode(&frame).unwrap();
                frames += 1;
            }
        }
    });

    let bounds = limits.clone();
    let sender = on_executor("sender", move || async move {
        let mut config = TransportConfig::new(CLUSTER, 1, local());
        config.limits = bounds.clone();
        let (transport, _inbox) = PeerTransport::start(config).unwrap();
        transport.add_peer(2, addr).unwrap();
        while transport.peer_stats(2).unwrap().state != LinkState::Connected {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        // Offer 64 KiB appends as fast as the queue takes them, yielding so
        // the writer can fill the kernel's socket buffers, until the queue
        // has refused for a while.
        let mut accepted = 0u64;
        let mut refusals = 0;
        let mut index = 0;
        while refusals < 200 {
            match transport.try_send(2, &append(index, 16 << 10)) {
                Ok(()) => {
                    accepted += 1;
                    index += 1;
                }
                Err(SendError::Full {
                    lane: ordo_net::wire::Lane::Bulk,
                }) => {
                    refusals += 1;
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                Err(other) => panic!("unexpected {other}"),
            }
            assert!(index < 100_000, "the queue never filled");
        }
        let stuck = transport.peer_stats(2).unwrap().queue;
        // Control traffic still gets through while the bulk lane is full.
        transport.try_send(2, &heartbeat(1)).unwrap();
        go_tx.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while transport.peer_stats(2).unwrap().queue.frames_sent < accepted + 1
            && Instant::now() < deadline
        {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        let drained = transport.peer_stats(2).unwrap();
        transport.shutdown().await;
        (accepted, stuck, drained)
    });
    let (accepted, stuck, drained) = sender.join().unwrap();
    let frames = peer.join().unwrap();

    // Bound: both lanes' limits plus one write in flight.
    let bound = limits.priority_queue_bytes_max
        + limits.bulk_queue_bytes_max
        + limits.priority_queue_bytes_max
        + limits.write_coalesce_bytes_max.max(70 << 10);
    assert!(
        stuck.held_bytes_peak <= bound,
        "peak {} above bound {bound}: {stuck:?}",
        stuck.held_bytes_peak
    );
    assert!(stuck.bulk_bytes <= limits.bulk_queue_bytes_max);
    assert!(stuck.frames_refused >= 200);
    assert_eq!(drained.queue.frames_sent, accepted + 1, "{drained:?}");
    assert_eq!(drained.queue.frames_dropped, 0);
    assert_eq!(
        frames,
        accepted + 1,
        "the peer received every accepted frame"
    );
    assert!(
        drained.queue.writes < drained.queue.frames_sent,
        "writes were coalesced: {drained:?}"
    );
}

// ---------------------------------------------------------------------------
// Both directions, reconnects and unreachability, on one executor.

#[test]
fn peers_talk_both_ways_and_recover_from_a_restart() {
    on_executor("pair", || async {
        let (one, one_inbox) =
            PeerTransport::start(TransportConfig::new(CLUSTER, 1, local())).unwrap();
        let (two, two_inbox) =
            PeerTransport::start(TransportConfig::new(CLUSTER, 2, local())).unwrap();
        let two_addr = two.local_addr();
        one.add_peer(2, two_addr).unwrap();
        two.add_peer(1, one.local_addr()).unwrap();

        one.send(2, &heartbeat(1)).await.unwrap();
        let got = within(Duration::from_secs(5), two_inbox.recv())
            .await
            .flatten();
        assert_eq!(
            got,
            Some(PeerEvent::Message {
                from: 1,
                message: heartbeat(1)
            })
        );
        // The higher id answers over the connection the lower id dialed.
        two.send(1, &append(3, 10)).await.unwrap();
        let got = within(Duration::from_secs(5), one_inbox.recv())
            .await
            .flatten();
        assert_eq!(
            got,
            Some(PeerEvent::Message {
                from: 2,
                message: append(3, 10)
            })
        );
        assert_eq!(one.peer_stats(2).unwrap().connections, 1);

        // Node 2 goes away: node 1 learns it is unreachable.
        two.shutdown().await;
        assert_eq!(
            within(Duration::from_secs(5), two_inbox.recv()).await,
            Some(None),
            "inbox ends after shutdown"
        );
        let event = within(Duration::from_secs(5), one_inbox.recv())
            .await
            .flatten();
        assert_eq!(event, Some(PeerEvent::Unreachable { peer: 2 }));

        // It comes back on the same address: node 1 redials by itself.
        let mut config = TransportConfig::new(CLUSTER, 2, two_addr);
        config.listen_addr = two_addr;
        let (two, two_inbox) = PeerTransport::start(config).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while one.peer_stats(2).unwrap().state != LinkState::Connected {
            assert!(
                Instant::now() < deadline,
                "no reconnect: {:?}",
                one.peer_stats(2)
            );
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        one.send(2, &heartbeat(2)).await.unwrap();
        let got = within(Duration::from_secs(5), two_inbox.recv())
            .await
            .flatten();
        assert_eq!(
            got,
            Some(PeerEvent::Message {
                from: 1,
                message: heartbeat(2)
            })
        );
        assert!(one.peer_stats(2).unwrap().connections >= 2);

        // Unknown peers and a shut transport are typed errors.
        assert_eq!(
            one.try_send(9, &heartbeat(0)),
            Err(SendError::UnknownPeer(9))
        );
        one.shutdown().await;
        two.shutdown().await;
    })
    .join()
    .unwrap();
}

#[test]
fn the_higher_id_may_not_dial_and_strangers_are_refused() {
    on_executor("dial-rule", || async {
        let (low, _low_inbox) =
            PeerTransport::start(TransportConfig::new(CLUSTER, 1, local())).unwrap();
        let addr = low.local_addr();
        let thread = std::thread::spawn(move || {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.write_all(&hello(5, CLUSTER)).unwrap();
            let answer = read_handshake(&mut stream);
            (answer, closed_by_server(&mut stream))
        });
        // Keep the executor serving while the thread talks to it.
        while !thread.is_finished() {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        let (answer, closed) = thread.join().unwrap();
        assert!(
            matches!(
                answer,
                Handshake::Reject(HelloReject {
                    reason: RejectReason::DialRule,
                    ..
                })
            ),
            "{answer:?}"
        );
        assert!(closed);
        low.shutdown().await;
    })
    .join()
    .unwrap();
}

// ---------------------------------------------------------------------------
// The client protocol end to end.

#[test]
fn clients_propose_read_status_and_stream_the_log() {
    on_executor("client", || async {
        let (server, inbox) =
            ClientServer::start(ClientServerConfig::new(CLUSTER, 3, local())).unwrap();
        let addr = server.local_addr();
        let leader = LeaderHint {
            id: 3,
            client_addr: addr.to_string(),
        };
        // A toy runtime: commits proposals in arrival order.
        let handler = glommio::spawn_local({
            let leader = leader.clone();
            async move {
                let mut next_id = 1;
                let mut log: Vec<CommittedMessage> = Vec::new();
                while let Some(ClientCall { conn, request }) = inbox.recv().await {
                    let response = match request {
                        ClientRequest::Propose(p) => {
                            let committed = Committed {
                                id: next_id,
                                index: next_id + 1,
                                term: 2,
                                ts: 100 + next_id,
                            };
                            log.push(CommittedMessage {
                                id: next_id,
                                index: next_id + 1,
                                term: 2,
                                ts: 100 + next_id,
                                payload: p.payload,
                                token: Bytes::from_static(b"token"),
                            });
                            next_id += 1;
                            ClientResponse::Propose(ProposeResponse {
                                request_id: p.request_id,
                                result: Ok(committed),
                                leader: leader.clone(),
                                token: Vec::new(),
                            })
                        }
                        ClientRequest::Read(r) => ClientResponse::Read(ReadResponse {
                            request_id: r.request_id,
                            result: Ok(next_id),
                            leader: leader.clone(),
                        }),
                        ClientRequest::Admin(a) => ClientResponse::Admin(ordo_net::AdminResponse {
                            request_id: a.request_id,
                            result: Err(ordo_net::AdminFailure {
                                not_leader: false,
                                message: format!("{:?}", a.command),
                            }),
                            leader: leader.clone(),
                        }),
                        ClientRequest::Status(r) => ClientResponse::Status(StatusResponse {
                            request_id: r.request_id,
                            status: NodeStatus {
                                id: 3,
                                role: NodeRole::Leader,
                                term: 2,
                                leader: 3,
                                commit_index: next_id,
                                last_index: next_id,
                                durable_index: next_id,
                                applied_index: next_id,
                                repairing: false,
                                repair: String::new(),
                                peers_repairing: Vec::new(),
                            },
                            leader: leader.clone(),
                        }),
                        ClientRequest::Log(l) => {
                            let from = l.from_id.max(1) as usize - 1;
                            for chunk in log[from.min(log.len())..].chunks(2) {
                                conn.send(&ClientResponse::Log(LogResponse {
                                    request_id: l.request_id,
                                    messages: chunk.to_vec(),
                                    done: false,
                                }))
                                .await
                                .unwrap();
                            }
                            ClientResponse::Log(LogResponse {
                                request_id: l.request_id,
                                messages: vec![],
                                done: true,
                            })
                        }
                    };
                    conn.send(&response).await.unwrap();
                }
            }
        });

        let client = ClientConnection::connect(addr, &ClientConfig::new(CLUSTER))
            .await
            .unwrap();
        assert_eq!(client.node_id(), 3);
        // Pipeline five proposals in one write (an inlined payload first,
        // then payloads sent from their own buffers), then collect the
        // answers; the log stream below checks the payloads' bytes.
        let proposals: Vec<ClientRequest> = (0..5u64)
            .map(|seq| {
                ClientRequest::Propose(ProposeRequest {
                    request_id: seq,
                    client_id: 9,
                    seq,
                    payload: Bytes::from(vec![seq as u8; 100 + 3000 * seq as usize]),
                    redirect: false,
                })
            })
            .collect();
        client.send_many(&proposals).await.unwrap();
        for seq in 0..5u64 {
            match client.recv().await.unwrap() {
                ClientResponse::Propose(r) => {
                    assert_eq!(r.request_id, seq);
                    assert_eq!(r.result.unwrap().id, seq + 1);
                    assert_eq!(r.leader, leader);
                }
                other => panic!("{other:?}"),
            }
        }
        let status = client
            .call(&ClientRequest::Status(StatusRequest { request_id: 10 }))
            .await
            .unwrap();
        assert!(matches!(
            status,
            ClientResponse::Status(StatusResponse {
                status: NodeStatus {
                    role: NodeRole::Leader,
                    ..
                },
                ..
            })
        ));
        let read = client
            .call(&ClientRequest::Read(ReadRequest { request_id: 11 }))
            .await
            .unwrap();
        assert_eq!(
            read,
            ClientResponse::Read(ReadResponse {
                request_id: 11,
                result: Ok(6),
                leader: leader.clone()
            })
        );
        client
            .send(&ClientRequest::Log(LogRequest {
                request_id: 12,
                from_id: 2,
                follow: false,
            }))
            .await
            .unwrap();
        let mut streamed = Vec::new();
        loop {
            let ClientResponse::Log(part) = client.recv().await.unwrap() else {
                panic!("not a log response")
            };
            assert_eq!(part.request_id, 12);
            streamed.extend(part.messages);
            if part.done {
                break;
            }
        }
        let ids: Vec<u64> = streamed.iter().map(|m| m.id).collect();
        assert_eq!(ids, vec![2, 3, 4, 5]);
        for (message, seq) in streamed.iter().zip(1u64..) {
            let expected = vec![seq as u8; 100 + 3000 * seq as usize];
            assert_eq!(
                message.payload,
                Bytes::from(expected),
                "payload of id {}",
                message.id
            );
        }

        // Another cluster's client is refused in the handshake.
        let stranger = ClientConnection::connect(addr, &ClientConfig::new(CLUSTER + 1)).await;
        assert!(matches!(stranger, Err(ConnectionError::Handshake(_))));

        // Garbage after a good handshake closes that connection only.
        let thread = std::thread::spawn(move || {
            let mut stream = TcpStream::connect(addr).unwrap();
            let hello = Hello {
                cluster_id: CLUSTER,
                node_id: 0,
                protocol_version: PROTOCOL_VERSION,
                role: ConnectionRole::Client,
            };
            let (_, answer) = raw_dial(&mut stream, hello, |_| [0; 64]);
            assert!(matches!(answer, Handshake::Ack(_)));
            let _ = stream.write_all(&[
                0x10, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 16, 0, 0, 0, 0, 0, 0, 0,
            ]);
            closed_by_server(&mut stream)
        });
        while !thread.is_finished() {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        assert!(thread.join().unwrap(), "bad client connection closed");
        let still = client
            .call(&ClientRequest::Read(ReadRequest { request_id: 13 }))
            .await
            .unwrap();
        assert_eq!(still.request_id(), 13);

        drop(client);
        server.shutdown().await;
        handler.await;
    })
    .join()
    .unwrap();
}
