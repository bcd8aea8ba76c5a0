//! Authenticated connections between real `ordo` processes (issue 18): a
//! process that knows the cluster id (it is in every `ordo.toml`) but holds
//! no voter key cannot get a voter to take an AppendEntries or a vote
//! request; gossip endpoints and client ports refuse processes without the
//! cluster's secrets, and the `ordo` commands say what is missing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use ordo_engine::auth::PeerKeys;
use ordo_engine::node::NodeConfig;
use ordo_engine::token::{ClusterKeys, NodeKey};
use ordo_net::auth::{Authenticator, Credential, Side, Signature, transcript};
use ordo_net::wire::{decode_frame, encode_to_vec};
use ordo_net::*;
use ordo_storage::LogId;
use ordo_tests::procs::{ProcCluster, free_base_port, ordo_binary};

fn read_handshake(stream: &mut TcpStream) -> Result<Handshake, String> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).map_err(|e| e.to_string())?;
    let len = u32::from_le_bytes(prefix) as usize;
    if !(4..=4096).contains(&len) {
        return Err(format!("a frame of {len} bytes"));
    }
    let mut frame = prefix.to_vec();
    frame.resize(len, 0);
    stream
        .read_exact(&mut frame[4..])
        .map_err(|e| e.to_string())?;
    decode_frame(Bytes::from(frame), 4096).map_err(|e| e.to_string())
}

fn frames(messages: &[Handshake]) -> Vec<u8> {
    messages
        .iter()
        .flat_map(|m| encode_to_vec(m, 4096).unwrap())
        .collect()
}

/// What an attacker sends once it believes it is in: a vote request and an
/// AppendEntries, both in a far higher term.
fn raft_frames(term: u64) -> Vec<u8> {
    let vote = PeerMessage::Raft(Message::Vote(VoteRequest {
        term,
        last: LogId::new(term, 1_000_000),
        pre_vote: false,
        transfer: true,
    }));
    let append = PeerMessage::Raft(Message::Append(AppendRequest {
        term,
        prev: LogId::new(0, 0),
        commit: 0,
        batches: Vec::new(),
    }));
    [
        encode_to_vec(&vote, 1 << 20).unwrap(),
        encode_to_vec(&append, 1 << 20).unwrap(),
    ]
    .concat()
}

/// Makes the dialer's proof from the dialer transcript.
type Prover<'a> = dyn Fn(&[u8]) -> Signature + 'a;

/// Dials `port` as `hello`, answers a challenge with `sign`'s proof, then
/// sends `after` regardless. Returns every handshake frame the node sent
/// before it closed the connection.
fn attack(port: u16, hello: Hello, sign: Option<&Prover<'_>>, after: &[u8]) -> Vec<Handshake> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let nonce = [0x42; 32];
    let mut answers = Vec::new();
    match sign {
        None => {
            // No nonce, no proof: straight to the Raft frames.
            stream
                .write_all(&frames(&[Handshake::Hello(hello)]))
                .unwrap();
        }
        Some(sign) => {
            stream
                .write_all(&frames(&[
                    Handshake::Hello(hello),
                    Handshake::Nonce(HelloNonce { nonce }),
                ]))
                .unwrap();
            let answer = read_handshake(&mut stream).expect("a challenge");
            let Handshake::Challenge(challenge) = answer else {
                panic!("expected a challenge, got {answer:?}");
            };
            let proof = transcript(
                Side::Dialer,
                hello.role,
                challenge.cluster_id,
                hello.node_id,
                challenge.node_id,
                &nonce,
                &challenge.nonce,
            );
            answers.push(Handshake::Challenge(challenge));
            stream
                .write_all(&frames(&[Handshake::Proof(HelloProof {
                    signature: sign(&proof),
                })]))
                .unwrap();
        }
    }
    // Written at once, as if accepted: none of it may be read as Raft.
    let _ = stream.write_all(after);
    while let Ok(frame) = read_handshake(&mut stream) {
        answers.push(frame);
    }
    answers
}

fn status_of(cluster: &ProcCluster, id: u64) -> (u64, u64, String) {
    let status = cluster.status(id).expect("node answers");
    (
        status["term"].as_u64().unwrap(),
        status["last_index"].as_u64().unwrap(),
        status["role"].as_str().unwrap().to_string(),
    )
}

fn refused_unauthenticated(answers: &[Handshake]) -> bool {
    matches!(
        answers.last(),
        Some(Handshake::Reject(HelloReject {
            reason: RejectReason::Unauthenticated,
            ..
        }))
    ) && !answers.iter().any(|a| matches!(a, Handshake::Ack(_)))
}

#[test]
fn a_process_without_a_voter_key_cannot_append_or_win_a_vote() {
    let cluster = ProcCluster::start(3, free_base_port());
    let (leader, term) = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .expect("a leader");
    cluster.send_lines(leader, "before-1\nbefore-2\n");
    let dir = cluster.keys().parent().unwrap().to_path_buf();
    let config = NodeConfig::load(&dir.join("node3/ordo.toml")).unwrap();
    let keys = ClusterKeys::load(&cluster.keys()).unwrap();
    let (term_before, last_before, _) = status_of(&cluster, 3);
    let peer_port = config.peer_addr.port();
    // The attacker knows the cluster id and claims to be node 1 (a lower
    // id may dial node 3).
    let hello = Hello {
        cluster_id: config.cluster_id,
        node_id: 1,
        protocol_version: PROTOCOL_VERSION,
        role: ConnectionRole::Peer,
    };
    let raft = raft_frames(term + 1_000);
    // 1. No proof at all: Raft frames right after the hello.
    let answers = attack(peer_port, hello, None, &raft);
    assert!(
        !answers.iter().any(|a| matches!(a, Handshake::Ack(_))),
        "{answers:?}"
    );
    // 2. An absent (zero) proof.
    let zero = |_: &[u8]| [0u8; 64];
    let answers = attack(peer_port, hello, Some(&zero), &raft);
    assert!(refused_unauthenticated(&answers), "{answers:?}");
    // 3. A real ed25519 signature by a key the cluster does not list.
    let stranger = PeerKeys::new(NodeKey::generate().unwrap(), &keys);
    let forged = |t: &[u8]| stranger.sign(t);
    let answers = attack(peer_port, hello, Some(&forged), &raft);
    assert!(refused_unauthenticated(&answers), "{answers:?}");
    // The challenge itself was signed by node 3's key: the attacker could
    // check whom it reached.
    let Some(Handshake::Challenge(challenge)) = answers.first() else {
        panic!("{answers:?}");
    };
    let acceptor = transcript(
        Side::Acceptor,
        ConnectionRole::Peer,
        challenge.cluster_id,
        1,
        3,
        &[0x42; 32],
        &challenge.nonce,
    );
    assert!(stranger.verify(3, &acceptor, &challenge.signature).is_ok());
    // 4. The gossip port and the client port do not take Raft frames from
    //    a peer hello either.
    let gossip_port = config.gossip_addr.unwrap().port();
    let answers = attack(gossip_port, hello, None, &raft);
    assert!(
        !answers.iter().any(|a| matches!(a, Handshake::Ack(_))),
        "{answers:?}"
    );
    // Nothing reached the Raft core: after more than an election timeout,
    // node 3 is in the same term with the same log, and the leader leads.
    std::thread::sleep(Duration::from_millis(1500));
    let (term_after, last_after, _) = status_of(&cluster, 3);
    assert_eq!(term_after, term_before, "node 3's term moved");
    assert_eq!(last_after, last_before, "node 3's log moved");
    let (still, term_now) = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(5))
        .expect("a leader");
    assert_eq!((still, term_now), (leader, term));
    // The cluster still works, and node 3 says why it refused.
    cluster.send_lines(leader, "after\n");
    let log = std::fs::read_to_string(dir.join("node3.log")).unwrap_or_default();
    assert!(
        log.contains("refusing peer connection"),
        "node 3 logs the refusals"
    );
}

#[test]
fn gossip_and_client_ports_require_the_cluster_secrets() {
    let cluster = ProcCluster::start(1, free_base_port());
    cluster
        .wait_leader(&[1], Duration::from_secs(10))
        .expect("a leader");
    let dir = cluster.keys().parent().unwrap().to_path_buf();
    let config = NodeConfig::load(&dir.join("node1/ordo.toml")).unwrap();
    // A gossip member without the gossip secret.
    let hello = Hello {
        cluster_id: config.cluster_id,
        node_id: 0,
        protocol_version: PROTOCOL_VERSION,
        role: ConnectionRole::Gossip,
    };
    let zero = |_: &[u8]| [0u8; 64];
    let answers = attack(config.gossip_addr.unwrap().port(), hello, Some(&zero), &[]);
    assert!(refused_unauthenticated(&answers), "{answers:?}");
    // With the secret, the same dial is accepted.
    let secret = ordo_engine::auth::Secret::load(&dir.join("gossip.secret")).unwrap();
    let member = ordo_engine::auth::SecretAuth::mutual(secret);
    let signed = |t: &[u8]| member.sign(t);
    let answers = attack(
        config.gossip_addr.unwrap().port(),
        hello,
        Some(&signed),
        &[],
    );
    assert!(
        matches!(answers.last(), Some(Handshake::Ack(_))),
        "{answers:?}"
    );
    // Client connections are encrypted (`ordo init` turns `[tls] clients`
    // on): an `ordo` command without the cluster CA is told to give it.
    let ca = dir.join(ordo_engine::auth::CA_CERT_FILE);
    let plain = Command::new(ordo_binary())
        .env_remove(ordo_engine::auth::CLIENT_SECRET_ENV)
        .env_remove(ordo_engine::auth::TLS_CA_ENV)
        .args(["status", "--node", &cluster.addr(1), "--timeout", "2"])
        .output()
        .unwrap();
    assert!(!plain.status.success());
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(stderr.contains("--tls-ca"), "{stderr}");
    // With the CA but without the client secret it fails at once, naming
    // what is missing; with both (the CA found beside the secret), it works.
    let without = Command::new(ordo_binary())
        .env_remove(ordo_engine::auth::CLIENT_SECRET_ENV)
        .env_remove(ordo_engine::auth::TLS_CA_ENV)
        .args([
            "status",
            "--node",
            &cluster.addr(1),
            "--timeout",
            "5",
            "--tls-ca",
        ])
        .arg(&ca)
        .output()
        .unwrap();
    assert!(!without.status.success());
    let stderr = String::from_utf8_lossy(&without.stderr);
    assert!(
        stderr.contains("client secret") && stderr.contains("ORDO_CLIENT_SECRET"),
        "{stderr}"
    );
    let secret = dir.join("client.secret");
    let with = Command::new(ordo_binary())
        .env_remove(ordo_engine::auth::CLIENT_SECRET_ENV)
        .env_remove(ordo_engine::auth::TLS_CA_ENV)
        .args(["status", "--node", &cluster.addr(1), "--client-secret"])
        .arg(&secret)
        .output()
        .unwrap();
    assert!(
        with.status.success(),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
    // The Rust client: refused without the secret, served with it; a
    // client that trusts another cluster's CA fails at once.
    let addr: std::net::SocketAddr = cluster.addr(1).parse().unwrap();
    let credential = ordo_engine::auth::client_credential(Some(&secret)).unwrap();
    let tls = ordo_engine::auth::client_tls(0, Some(&ca), None, false).unwrap();
    assert!(tls.is_some());
    let stranger_dir = tempfile::tempdir().unwrap();
    ordo_engine::auth::ClusterCa::generate(1)
        .unwrap()
        .save(stranger_dir.path())
        .unwrap();
    let stranger_ca = stranger_dir.path().join(ordo_engine::auth::CA_CERT_FILE);
    let stranger = ordo_engine::auth::client_tls(0, Some(&stranger_ca), None, false).unwrap();
    let (refused, served, untrusted) =
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(512 << 10)
            .spawn(move || async move {
                use ordo_engine::client::{Client, ClientError, ClientOptions};
                let bare = ClientOptions {
                    tls: tls.clone(),
                    ..ClientOptions::default()
                };
                let mut bare = Client::new(vec![addr], bare).unwrap();
                let refused = matches!(bare.status().await, Err(ClientError::Unauthenticated(_)));
                let options = ClientOptions {
                    credential: Credential::clone(&credential),
                    tls,
                    ..ClientOptions::default()
                };
                let mut client = Client::new(vec![addr], options).unwrap();
                let served = client.status().await.is_ok();
                let options = ClientOptions {
                    credential: Credential::clone(&credential),
                    tls: stranger,
                    timeout: std::time::Duration::from_secs(30),
                    ..ClientOptions::default()
                };
                let started = std::time::Instant::now();
                let mut client = Client::new(vec![addr], options).unwrap();
                let untrusted = matches!(client.status().await, Err(ClientError::Tls(_)))
                    && started.elapsed() < std::time::Duration::from_secs(5);
                (refused, served, untrusted)
            })
            .unwrap()
            .join()
            .unwrap();
    assert!(refused, "a client without the secret is refused");
    assert!(served, "a client with the secret and the CA is served");
    assert!(
        untrusted,
        "a client that trusts another CA fails at once, saying why"
    );
}
