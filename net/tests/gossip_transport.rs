//! The gossip transport over real loopback sockets: one-way connections
//! named by the dialer's intro, clients on the same port, unreachable
//! peers, and hostile connections.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_lite::future::or;
use ordo_net::transport::*;
use ordo_net::wire::encode_to_vec;
use ordo_net::*;

const CLUSTER: u64 = 0x905;

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn within<T>(limit: Duration, future: impl std::future::Future<Output = T>) -> Option<T> {
    or(async { Some(future.await) }, async {
        glommio::timer::sleep(limit).await;
        None
    })
    .await
}

fn push(id: u64) -> Wire {
    Wire::Push {
        message: GossipMessage {
            id,
            index: id + 3,
            term: 2,
            ts: 77 + id,
            payload: Bytes::from(vec![id as u8; 3000]),
            token: Bytes::from(vec![9; 200]),
        },
        hops: 1,
        repair: false,
    }
}

#[test]
fn messages_flow_both_ways_and_clients_share_the_gossip_port() {
    on_executor("gossip-flow", || async {
        let a =
            GossipTransport::start(GossipTransportConfig::new(CLUSTER, 0, local()), None).unwrap();
        let b = GossipTransport::start(
            GossipTransportConfig::new(CLUSTER, 0, local()),
            Some(ClientServerConfig::new(CLUSTER, 0, local())),
        )
        .unwrap();
        let (a_addr, b_addr) = (a.transport.local_addr(), b.transport.local_addr());
        for id in 1..=50 {
            a.transport.try_send(b_addr, push(id)).unwrap();
        }
        for id in 1..=50 {
            let event = within(Duration::from_secs(5), b.inbox.recv())
                .await
                .flatten();
            assert_eq!(
                event,
                Some(GossipEvent::Message {
                    from: a_addr,
                    message: push(id)
                }),
                "in order, named by the dialer's listen address"
            );
        }
        b.transport
            .try_send(
                a_addr,
                Wire::IHave {
                    delivered: 50,
                    above: 1,
                },
            )
            .unwrap();
        let event = within(Duration::from_secs(5), a.inbox.recv())
            .await
            .flatten();
        assert_eq!(
            event,
            Some(GossipEvent::Message {
                from: b_addr,
                message: Wire::IHave {
                    delivered: 50,
                    above: 1
                }
            })
        );
        // One outbound connection each way.
        assert_eq!(a.transport.stats().outbound_peers, 1);
        assert_eq!(b.transport.stats().inbound_connections, 1);
        // A client on the gossip port reaches b's client server.
        let (server, clients) = b.clients.unwrap();
        let client = ClientConnection::connect(b_addr, &ClientConfig::new(0))
            .await
            .unwrap();
        client
            .send(&ClientRequest::Status(StatusRequest { request_id: 4 }))
            .await
            .unwrap();
        let call = within(Duration::from_secs(5), clients.recv())
            .await
            .flatten()
            .unwrap();
        assert_eq!(call.request.request_id(), 4);
        // a has no client server: a client is refused.
        assert!(
            ClientConnection::connect(a_addr, &ClientConfig::new(0))
                .await
                .is_err()
        );
        server.shutdown().await;
        a.transport.shutdown().await;
        b.transport.shutdown().await;
    })
    .join()
    .unwrap();
}

#[test]
fn an_unreachable_peer_is_reported_once_and_then_fails_fast() {
    on_executor("gossip-unreachable", || async {
        let a =
            GossipTransport::start(GossipTransportConfig::new(CLUSTER, 0, local()), None).unwrap();
        // A port nobody listens on.
        let dead: SocketAddr = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        a.transport.try_send(dead, Wire::Prune).unwrap();
        let event = within(Duration::from_secs(5), a.inbox.recv())
            .await
            .flatten();
        assert_eq!(event, Some(GossipEvent::Unreachable { peer: dead }));
        assert!(matches!(
            a.transport.try_send(dead, Wire::Prune),
            Err(SendError::Closed)
        ));
        assert!(a.inbox.is_empty());
        a.transport.shutdown().await;
    })
    .join()
    .unwrap();
}

fn frame<M: wire::Encode>(message: &M) -> Vec<u8> {
    encode_to_vec(message, 1 << 20).unwrap()
}

fn read_handshake(stream: &mut TcpStream) -> Handshake {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).unwrap();
    let len = u32::from_le_bytes(prefix) as usize;
    let mut bytes = prefix.to_vec();
    bytes.resize(len, 0);
    stream.read_exact(&mut bytes[4..]).unwrap();
    wire::decode_frame(Bytes::from(bytes), 4096).unwrap()
}

fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut sink = [0u8; 256];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Dials `addr` as a gossip peer of `cluster` and returns the stream after
/// the handshake (or `None` if refused).
fn gossip_dial(addr: SocketAddr, cluster: u64) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(addr).unwrap();
    let hello = Hello {
        cluster_id: cluster,
        node_id: 0,
        protocol_version: PROTOCOL_VERSION,
        role: ConnectionRole::Gossip,
    };
    match raw_dial(&mut stream, hello, |_| [0; 64]).1 {
        Handshake::Ack(_) => Some(stream),
        _ => None,
    }
}

#[test]
fn hostile_gossip_connections_are_closed_and_deliver_nothing() {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let server = on_executor("gossip-hostile", move || async move {
        let b =
            GossipTransport::start(GossipTransportConfig::new(CLUSTER, 0, local()), None).unwrap();
        addr_tx.send(b.transport.local_addr()).unwrap();
        // Wait for the hostile clients, then count what reached the inbox.
        loop {
            if done_rx.try_recv().is_ok() {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        let mut received = Vec::new();
        while let Some(event) = b.inbox.try_recv() {
            received.push(event);
        }
        b.transport.shutdown().await;
        received
    });
    let addr = addr_rx.recv().unwrap();
    // Another cluster: refused in the handshake.
    assert!(gossip_dial(addr, CLUSTER + 1).is_none());
    // A frame before the intro.
    let mut stream = gossip_dial(addr, CLUSTER).unwrap();
    stream
        .write_all(&frame(&GossipFrame::Wire(push(1))))
        .unwrap();
    assert!(closed_by_server(&mut stream));
    // An intro claiming another host.
    let mut stream = gossip_dial(addr, CLUSTER).unwrap();
    let intro = GossipFrame::Intro(GossipIntro {
        listen_addr: "10.9.9.9:4000".parse().unwrap(),
    });
    stream.write_all(&frame(&intro)).unwrap();
    stream
        .write_all(&frame(&GossipFrame::Wire(push(2))))
        .unwrap();
    assert!(closed_by_server(&mut stream));
    // A good intro, then garbage: the valid frame before it arrives, the
    // connection closes at the garbage.
    let mut stream = gossip_dial(addr, CLUSTER).unwrap();
    let intro = GossipFrame::Intro(GossipIntro {
        listen_addr: "127.0.0.1:4001".parse().unwrap(),
    });
    stream.write_all(&frame(&intro)).unwrap();
    stream
        .write_all(&frame(&GossipFrame::Wire(push(3))))
        .unwrap();
    stream.write_all(&[0x30, 0, 0, 0, 1, 2, 3, 4]).unwrap();
    stream.write_all(&[0xee; 0x30]).unwrap();
    assert!(closed_by_server(&mut stream));
    // A client on a transport without a client server: role refused.
    let mut stream = TcpStream::connect(addr).unwrap();
    let hello = Handshake::Hello(Hello {
        cluster_id: 0,
        node_id: 0,
        protocol_version: PROTOCOL_VERSION,
        role: ConnectionRole::Client,
    });
    stream.write_all(&frame(&hello)).unwrap();
    assert!(matches!(
        read_handshake(&mut stream),
        Handshake::Reject(HelloReject {
            reason: RejectReason::RoleMismatch,
            ..
        })
    ));
    done_tx.send(()).unwrap();
    let received = server.join().unwrap();
    assert_eq!(
        received,
        vec![GossipEvent::Message {
            from: "127.0.0.1:4001".parse().unwrap(),
            message: push(3)
        }]
    );
}
