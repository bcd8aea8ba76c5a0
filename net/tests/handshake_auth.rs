//! The authenticated handshake over real sockets: the right key connects,
//! a wrong or absent one is refused (both ways), a replayed proof is
//! refused, and broken handshake frames close the connection without
//! harming the acceptor. The keys here are a toy keyed hash: what is
//! tested is the protocol, not the signature scheme (the engine's ed25519
//! and keyed-blake3 authenticators have their own tests).

mod common;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use futures_lite::future::or;
use ordo_net::auth::{AuthRefusal, Authenticator, Credential, Signature};
use ordo_net::transport::*;
use ordo_net::wire::encode_to_vec;
use ordo_net::*;
use ordo_storage::{LogId, NodeId};

const CLUSTER: u64 = 0xa17;

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn toy_sign(secret: u64, transcript: &[u8]) -> Signature {
    let mut signature = [0u8; 64];
    for (i, chunk) in signature.chunks_mut(8).enumerate() {
        let mut hasher = DefaultHasher::new();
        (secret, i, transcript).hash(&mut hasher);
        chunk.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    signature
}

/// Node `n`'s secret is `secret_of(n)`; a node knows the secrets of the
/// nodes in `known`.
struct ToyKeys {
    own: u64,
    known: HashMap<NodeId, u64>,
}

fn secret_of(node: NodeId) -> u64 {
    0x5eed_0000 + node
}

impl Authenticator for ToyKeys {
    fn sign(&self, transcript: &[u8]) -> Signature {
        toy_sign(self.own, transcript)
    }

    fn verify(
        &self,
        node: NodeId,
        transcript: &[u8],
        signature: &Signature,
    ) -> Result<(), AuthRefusal> {
        let secret = self
            .known
            .get(&node)
            .ok_or_else(|| AuthRefusal(format!("no key known for node {node}")))?;
        if toy_sign(*secret, transcript) == *signature {
            Ok(())
        } else {
            Err(AuthRefusal("signature does not verify".into()))
        }
    }
}

fn keys(own_secret: u64, known: &[NodeId]) -> Credential {
    Credential::new(Arc::new(ToyKeys {
        own: own_secret,
        known: known.iter().map(|&n| (n, secret_of(n))).collect(),
    }))
}

fn peer_config(node: NodeId, auth: Credential) -> TransportConfig {
    let mut config = TransportConfig::new(CLUSTER, node, local());
    config.auth = auth;
    config
}

fn vote(term: u64) -> PeerMessage {
    PeerMessage::Raft(Message::Vote(VoteRequest {
        term,
        last: LogId::new(1, 1),
        pre_vote: false,
        transfer: false,
    }))
}

async fn within<T>(limit: Duration, future: impl std::future::Future<Output = T>) -> Option<T> {
    or(async { Some(future.await) }, async {
        glommio::timer::sleep(limit).await;
        None
    })
    .await
}

/// What the acceptor received.
type Received = std::thread::JoinHandle<Vec<(NodeId, PeerMessage)>>;

/// Starts node 2 (an acceptor that knows node 1's key) on its own
/// executor; it reports its address, then every message it receives until
/// `stop` is sent, then how many it got.
fn acceptor(auth: Credential) -> (SocketAddr, mpsc::Sender<()>, Received) {
    let (addr_tx, addr_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let handle = on_executor("acceptor", move || async move {
        let (transport, inbox) = PeerTransport::start(peer_config(2, auth)).unwrap();
        addr_tx.send(transport.local_addr()).unwrap();
        let mut received = Vec::new();
        while stop_rx.try_recv().is_err() {
            if let Some(Some(PeerEvent::Message { from, message })) =
                within(Duration::from_millis(20), inbox.recv()).await
            {
                received.push((from, message));
            }
        }
        transport.shutdown().await;
        received
    });
    (addr_rx.recv().unwrap(), stop_tx, handle)
}

fn dial_with(auth: Credential, addr: SocketAddr, wait: Duration) -> PeerStats {
    on_executor("dialer", move || async move {
        let (transport, _inbox) = PeerTransport::start(peer_config(1, auth)).unwrap();
        transport.add_peer(2, addr).unwrap();
        let deadline = Instant::now() + wait;
        transport.send(2, &vote(7)).await.unwrap();
        while Instant::now() < deadline && transport.peer_stats(2).unwrap().queue.frames_sent == 0 {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        let stats = transport.peer_stats(2).unwrap();
        transport.shutdown().await;
        stats
    })
    .join()
    .unwrap()
}

#[test]
fn the_right_key_connects_and_delivers() {
    let (addr, stop, acceptor) = acceptor(keys(secret_of(2), &[1]));
    let stats = dial_with(keys(secret_of(1), &[2]), addr, Duration::from_secs(10));
    assert_eq!(stats.queue.frames_sent, 1, "{stats:?}");
    std::thread::sleep(Duration::from_millis(100));
    stop.send(()).unwrap();
    let received = acceptor.join().unwrap();
    assert_eq!(received, vec![(1, vote(7))]);
}

#[test]
fn a_wrong_key_is_refused_and_delivers_nothing() {
    let (addr, stop, acceptor) = acceptor(keys(secret_of(2), &[1]));
    // Node 1's id, another key.
    let stats = dial_with(keys(0xbad, &[2]), addr, Duration::from_millis(500));
    assert_eq!(stats.queue.frames_sent, 0, "{stats:?}");
    assert_ne!(stats.state, LinkState::Connected);
    // No proof at all (authentication off on the dialer).
    let stats = dial_with(Credential::none(), addr, Duration::from_millis(500));
    assert_eq!(stats.queue.frames_sent, 0, "{stats:?}");
    stop.send(()).unwrap();
    assert!(acceptor.join().unwrap().is_empty());
}

#[test]
fn the_dialer_refuses_an_acceptor_that_cannot_prove_its_key() {
    // An acceptor without authentication signs with zeros: node 1 must
    // not take it for node 2.
    let (addr, stop, acceptor) = acceptor(Credential::none());
    let stats = dial_with(keys(secret_of(1), &[2]), addr, Duration::from_millis(500));
    assert_eq!(stats.queue.frames_sent, 0, "{stats:?}");
    stop.send(()).unwrap();
    assert!(acceptor.join().unwrap().is_empty());
}

fn peer_hello(node_id: NodeId) -> Hello {
    Hello {
        cluster_id: CLUSTER,
        node_id,
        protocol_version: PROTOCOL_VERSION,
        role: ConnectionRole::Peer,
    }
}

/// After a refused handshake the raw dialer sends a vote anyway; the
/// acceptor must have closed the connection.
fn refused_then_closed(stream: &mut TcpStream, answer: &Handshake) {
    assert!(
        matches!(
            answer,
            Handshake::Reject(HelloReject {
                reason: RejectReason::Unauthenticated,
                ..
            })
        ),
        "{answer:?}"
    );
    // Whatever follows is never read.
    let _ = stream.write_all(&encode_to_vec(&vote(99), 1 << 20).unwrap());
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(read_handshake_frame(stream).is_err(), "connection closed");
}

#[test]
fn a_forged_or_replayed_proof_is_refused() {
    let (addr, stop, acceptor) = acceptor(keys(secret_of(2), &[1]));
    // A zero proof.
    let mut stream = TcpStream::connect(addr).unwrap();
    let (challenge, answer) = raw_dial(&mut stream, peer_hello(1), |_| [0; 64]);
    assert!(challenge.is_some());
    refused_then_closed(&mut stream, &answer);
    // A proof signed with another key.
    let mut stream = TcpStream::connect(addr).unwrap();
    let (_, answer) = raw_dial(&mut stream, peer_hello(1), |t| toy_sign(0xbad, t));
    refused_then_closed(&mut stream, &answer);
    // The right key: accepted; the proof is recorded...
    let mut stream = TcpStream::connect(addr).unwrap();
    let recorded = std::cell::Cell::new([0u8; 64]);
    let (first, answer) = raw_dial(&mut stream, peer_hello(1), |t| {
        recorded.set(toy_sign(secret_of(1), t));
        recorded.get()
    });
    assert!(matches!(answer, Handshake::Ack(_)), "{answer:?}");
    drop(stream);
    // ... and replayed on a new connection (same dialer nonce): the
    // acceptor's nonce is fresh, so the proof no longer verifies.
    let mut stream = TcpStream::connect(addr).unwrap();
    let (second, answer) = raw_dial(&mut stream, peer_hello(1), |_| recorded.get());
    assert_ne!(first.unwrap().nonce, second.unwrap().nonce);
    refused_then_closed(&mut stream, &answer);
    // A higher id is refused before any proof (the dial rule).
    let mut stream = TcpStream::connect(addr).unwrap();
    let (_, answer) = raw_dial(&mut stream, peer_hello(0x7fff_0000), |t| {
        toy_sign(secret_of(0x7fff_0000), t)
    });
    assert!(
        matches!(answer, Handshake::Reject(ref r) if r.reason == RejectReason::DialRule),
        "{answer:?}"
    );
    stop.send(()).unwrap();
    let received = acceptor.join().unwrap();
    assert!(received.is_empty(), "{received:?}");
}

#[test]
fn broken_handshake_frames_close_the_connection_and_nothing_else() {
    let (addr, stop, acceptor) = acceptor(keys(secret_of(2), &[1]));
    let hello = encode_to_vec(&Handshake::Hello(peer_hello(1)), 4096).unwrap();
    let nonce = encode_to_vec(&Handshake::Nonce(HelloNonce { nonce: [1; 32] }), 4096).unwrap();
    let cases: Vec<Vec<u8>> = vec![
        // A truncated nonce, then the end of the stream.
        [&hello[..], &nonce[..nonce.len() - 3]].concat(),
        // Garbage instead of the nonce.
        [&hello[..], &[0xff; 64][..]].concat(),
        // A vote instead of the nonce.
        [&hello[..], &encode_to_vec(&vote(50), 1 << 20).unwrap()[..]].concat(),
        // A nonce with a corrupted CRC.
        {
            let mut bad = nonce.clone();
            bad[5] ^= 1;
            [&hello[..], &bad[..]].concat()
        },
        // A proof before being challenged.
        [
            &hello[..],
            &encode_to_vec(&Handshake::Proof(HelloProof { signature: [3; 64] }), 4096).unwrap()[..],
        ]
        .concat(),
    ];
    for case in cases {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(&case).unwrap();
        let _ = stream.shutdown(std::net::Shutdown::Write);
        // At most a refusal, then the close.
        loop {
            match read_handshake_frame(&mut stream) {
                Ok(Handshake::Reject(_)) => continue,
                Ok(other) if !matches!(other, Handshake::Challenge(_)) => {
                    panic!("unexpected {other:?}")
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
    // A truncated proof after a real challenge.
    let mut stream = TcpStream::connect(addr).unwrap();
    write_handshake(
        &mut stream,
        &[
            Handshake::Hello(peer_hello(1)),
            Handshake::Nonce(HelloNonce { nonce: [2; 32] }),
        ],
    );
    assert!(matches!(
        read_handshake_frame(&mut stream),
        Ok(Handshake::Challenge(_))
    ));
    let proof = encode_to_vec(&Handshake::Proof(HelloProof { signature: [9; 64] }), 4096).unwrap();
    stream.write_all(&proof[..20]).unwrap();
    let _ = stream.shutdown(std::net::Shutdown::Write);
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(read_handshake_frame(&mut stream).is_err());
    // The acceptor still takes a good peer.
    let stats = dial_with(keys(secret_of(1), &[2]), addr, Duration::from_secs(10));
    assert_eq!(stats.queue.frames_sent, 1, "{stats:?}");
    std::thread::sleep(Duration::from_millis(100));
    stop.send(()).unwrap();
    assert_eq!(acceptor.join().unwrap(), vec![(1, vote(7))]);
}

#[test]
fn a_client_without_the_secret_is_told_what_is_missing() {
    on_executor("client-auth", || async {
        let mut config = ClientServerConfig::new(CLUSTER, 3, local());
        config.auth = Credential::new(Arc::new(ToyKeys {
            own: 42,
            known: HashMap::from([(0, 42)]),
        }));
        let (server, _inbox) = ClientServer::start(config).unwrap();
        let addr = server.local_addr();
        let refused = ClientConnection::connect(addr, &ClientConfig::new(CLUSTER)).await;
        match refused {
            Err(ConnectionError::Unauthenticated(detail)) => {
                assert!(detail.contains("client secret"), "{detail}")
            }
            Err(other) => panic!("refused for another reason: {other}"),
            Ok(_) => panic!("a client without the secret was accepted"),
        }
        let mut with_secret = ClientConfig::new(CLUSTER);
        with_secret.auth = Credential::new(Arc::new(ToyKeys {
            own: 42,
            known: HashMap::from([(3, 42)]),
        }));
        let conn = ClientConnection::connect(addr, &with_secret).await.unwrap();
        assert_eq!(conn.node_id(), 3);
        drop(conn);
        server.shutdown().await;
    })
    .join()
    .unwrap();
}
