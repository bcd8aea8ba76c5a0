//! Encrypted client connections over real sockets: payloads larger than a
//! TLS record go through intact both ways, pipelined, across a KeyUpdate;
//! a client that does not trust the cluster's CA, or expects another
//! cluster's name, is refused; a plain client on a TLS port (and a TLS
//! client on a plain port) fails with an error that says so, and the node
//! keeps serving.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use ordo_net::tls::{TlsClientConfig, TlsServerConfig, cluster_server_name};
use ordo_net::transport::*;
use ordo_net::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

const CLUSTER: u64 = 0x7150;

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A cluster CA and one node certificate for `names`: (CA PEM, node
/// certificate PEM, node key PEM).
fn cluster_ca(names: Vec<String>) -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test cluster CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let node_key = KeyPair::generate().unwrap();
    let node_cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&node_key, &issuer)
        .unwrap();
    (ca_cert.pem(), node_cert.pem(), node_key.serialize_pem())
}

/// A server on `tls` that answers each proposal with its payload, as an
/// admin failure's message (a response as large as the request).
fn echo_server(tls: Option<TlsServerConfig>) -> (ClientServer, SocketAddr) {
    let mut config = ClientServerConfig::new(CLUSTER, 4, local());
    config.tls = tls;
    let (server, inbox) = ClientServer::start(config).unwrap();
    let addr = server.local_addr();
    glommio::spawn_local(async move {
        while let Some(ClientCall { conn, request }) = inbox.recv().await {
            let ClientRequest::Propose(propose) = request else {
                continue;
            };
            let echo = ClientResponse::Admin(AdminResponse {
                request_id: propose.request_id,
                result: Err(AdminFailure {
                    not_leader: false,
                    message: String::from_utf8(propose.payload.to_vec()).unwrap(),
                }),
                leader: LeaderHint::default(),
            });
            if conn.send(&echo).await.is_err() {
                break;
            }
        }
    })
    .detach();
    (server, addr)
}

fn propose(request_id: u64, payload: String) -> ClientRequest {
    ClientRequest::Propose(ProposeRequest {
        request_id,
        client_id: 1,
        seq: request_id,
        payload: Bytes::from(payload),
        redirect: false,
    })
}

/// Payload `i`: sizes from a few bytes to well over one 16 KiB record.
fn payload(i: u64) -> String {
    let size = [5usize, 700, 16_000, 16_384, 16_385, 70_000, 300_000][i as usize % 7];
    (0..size)
        .map(|k| (b'a' + ((k as u64 + i) % 26) as u8) as char)
        .collect()
}

async fn expect_echo(client: &ClientConnection, request_id: u64) {
    match client.recv().await.unwrap() {
        ClientResponse::Admin(AdminResponse {
            request_id: id,
            result: Err(failure),
            ..
        }) => {
            assert_eq!(id, request_id);
            assert_eq!(failure.message, payload(request_id), "echo {request_id}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn tls_pair(names: Vec<String>) -> (TlsServerConfig, String) {
    let (ca, cert, key) = cluster_ca(names);
    let server = TlsServerConfig::from_pem(cert.as_bytes(), key.as_bytes(), "test").unwrap();
    (server, ca)
}

#[test]
fn frames_of_every_size_cross_tls_both_ways_across_a_key_update() {
    on_executor("tls-echo", || async {
        let (server_tls, ca) = tls_pair(vec![cluster_server_name(CLUSTER)]);
        let (server, addr) = echo_server(Some(server_tls));
        let mut config = ClientConfig::new(CLUSTER);
        config.tls = Some(TlsClientConfig::from_pem(ca.as_bytes(), CLUSTER, "test").unwrap());
        let client = ClientConnection::connect(addr, &config).await.unwrap();
        assert!(client.is_encrypted());
        assert_eq!(client.node_id(), 4);
        // Pipelined: all requests in one write, then the answers.
        let requests: Vec<ClientRequest> = (0..21).map(|i| propose(i, payload(i))).collect();
        client.send_many(&requests).await.unwrap();
        for i in 0..21 {
            expect_echo(&client, i).await;
        }
        // New traffic keys mid-connection: both sides go on.
        client.refresh_traffic_keys().unwrap();
        for i in 21..35 {
            client.send(&propose(i, payload(i))).await.unwrap();
            expect_echo(&client, i).await;
        }
        server.shutdown().await;
    })
    .join()
    .unwrap();
}

#[test]
fn untrusted_or_misnamed_nodes_and_plain_peers_are_refused() {
    on_executor("tls-refusals", || async {
        let (server_tls, ca) = tls_pair(vec![cluster_server_name(CLUSTER)]);
        let (server, addr) = echo_server(Some(server_tls));

        // Another CA: the node's certificate is not trusted.
        let (other_ca, _, _) = cluster_ca(vec![cluster_server_name(CLUSTER)]);
        let mut config = ClientConfig::new(CLUSTER);
        config.tls = Some(TlsClientConfig::from_pem(other_ca.as_bytes(), CLUSTER, "x").unwrap());
        match ClientConnection::connect(addr, &config).await {
            Err(ConnectionError::Tls(reason)) => {
                assert!(reason.contains("certificate"), "{reason}")
            }
            other => panic!("untrusted CA accepted: {:?}", other.map(|_| ())),
        }

        // The right CA, but the name of another cluster.
        let mut config = ClientConfig::new(CLUSTER);
        config.tls = Some(TlsClientConfig::from_pem(ca.as_bytes(), CLUSTER + 1, "x").unwrap());
        assert!(matches!(
            ClientConnection::connect(addr, &config).await,
            Err(ConnectionError::Tls(_))
        ));

        // A plain client on the TLS port: told why.
        match ClientConnection::connect(addr, &ClientConfig::new(CLUSTER)).await {
            Err(ConnectionError::Handshake(reason)) => {
                assert!(reason.contains("--tls-ca"), "{reason}")
            }
            other => panic!("plain client accepted: {:?}", other.map(|_| ())),
        }

        // The node still serves a client that does it right.
        let mut config = ClientConfig::new(CLUSTER);
        config.tls = Some(TlsClientConfig::from_pem(ca.as_bytes(), CLUSTER, "x").unwrap());
        let client = ClientConnection::connect(addr, &config).await.unwrap();
        client.send(&propose(2, payload(2))).await.unwrap();
        expect_echo(&client, 2).await;

        // A TLS client on a plain port.
        let (plain, plain_addr) = echo_server(None);
        assert!(matches!(
            ClientConnection::connect(plain_addr, &config).await,
            Err(ConnectionError::Tls(_))
        ));
        plain.shutdown().await;
        server.shutdown().await;
    })
    .join()
    .unwrap();
}

#[test]
fn bad_pem_is_an_error_that_names_the_file() {
    let error = TlsServerConfig::from_pem(b"not pem", b"nor this", "node7/tls.crt").unwrap_err();
    assert!(error.to_string().contains("node7/tls.crt"), "{error}");
    let error = TlsClientConfig::from_pem(b"", CLUSTER, "ca.crt").unwrap_err();
    assert!(error.to_string().contains("ca.crt"), "{error}");
    let (ca, cert, _) = cluster_ca(vec!["x".into()]);
    // A certificate with the key of another.
    let (_, _, other_key) = cluster_ca(vec!["x".into()]);
    assert!(TlsServerConfig::from_pem(cert.as_bytes(), other_key.as_bytes(), "mismatch").is_err());
    assert!(TlsClientConfig::from_pem(ca.as_bytes(), CLUSTER, "ca").is_ok());
}
