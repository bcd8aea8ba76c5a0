//! Real `ordo` voters and `ordo gossip` nodes on 127.0.0.1 (issue 7):
//! every surviving gossip node delivers every committed message, verified,
//! in order, exactly once, across SIGKILLs and a restart; forged messages
//! injected over the gossip wire are rejected and never forwarded. Each
//! test uses its own port range (23000 and up).

use std::time::{Duration, Instant};

use ordo_tests::gossip_procs::{GossipCluster, parse_fields};
use ordo_tests::procs::free_base_port;
use serde_json::Value;

/// Fields every copy of a committed message must agree on.
const FIELDS: [&str; 5] = ["id", "index", "term", "ts", "payload"];

fn payloads(prefix: &str, count: usize) -> String {
    (0..count).map(|i| format!("{prefix}-{i}\n")).collect()
}

/// `log` holds ids 1..=expected.len() exactly once each, in order, each
/// equal to the voters' copy.
fn check_same_messages(node: &str, log: &[Value], expected: &[Value]) {
    assert_eq!(
        log.len(),
        expected.len(),
        "{node}: {} messages, expected {}",
        log.len(),
        expected.len()
    );
    for (i, (got, want)) in log.iter().zip(expected).enumerate() {
        assert_eq!(
            got["id"],
            i as u64 + 1,
            "{node}: ids dense from 1, once each"
        );
        for field in FIELDS {
            assert_eq!(got[field], want[field], "{node}: id {}, {field}", i + 1);
        }
    }
}

/// The `delivered=` of each "gossip node started" line of a node's log.
fn starts(cluster: &GossipCluster, j: usize) -> Vec<u64> {
    let text = std::fs::read_to_string(cluster.gossip_log_file(j)).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("gossip node started"))
        .map(|l| parse_fields(l).get("delivered").copied().unwrap_or(0))
        .collect()
}

#[test]
fn every_live_gossip_node_delivers_every_message_across_kills_and_a_restart() {
    let began = Instant::now();
    let mut cluster = GossipCluster::start(3, 8, free_base_port());
    cluster
        .voters
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .expect("a leader");
    // A stream of 15 chunks of 20 messages, to each voter in turn. Gossip
    // nodes 7 and 8 are SIGKILLed after chunk 5; node 8 restarts with its
    // data directory after chunk 10; node 7 stays down.
    let chunks = 15;
    let chunk_len = 20;
    for chunk in 0..chunks {
        if chunk == 5 {
            // Mid-stream: once they have delivered (and stored) part of it.
            for j in [7, 8] {
                let log = cluster.wait_gossip_log(j, 60, Duration::from_secs(10));
                assert!(log.len() >= 60, "gossip node {j} got the first chunks");
            }
            cluster.kill_gossip(7);
            cluster.kill_gossip(8);
        }
        if chunk == 10 {
            cluster.start_gossip(8);
        }
        let voter = (chunk % 3) as u64 + 1;
        let sent = cluster.voters.ordo(
            &["send", "--node", &cluster.voters.addr(voter), "--stdin"],
            Some(&payloads(&format!("chunk{chunk}"), chunk_len)),
        );
        assert!(sent.ok, "chunk {chunk}: {}", sent.stderr);
        std::thread::sleep(Duration::from_millis(30));
    }
    let total = chunks * chunk_len;
    let expected = cluster
        .voters
        .wait_log_len(1, total, Duration::from_secs(10));
    assert_eq!(expected.len(), total, "the voters committed every message");
    for j in (1..=6).chain([8]) {
        let log = cluster.wait_gossip_log(j, total, Duration::from_secs(20));
        let name = format!("gossip node {j}");
        check_same_messages(&name, &log, &expected);
        cluster
            .verify(&log)
            .unwrap_or_else(|e| panic!("{name}: ordo verify: {e}"));
    }
    // Node 8 resumed from what it had made durable before its SIGKILL, and
    // its second life delivered exactly the rest: no gap, no duplicate.
    assert!(cluster.stop_gossip(8), "gossip node 8 stops cleanly");
    let lives = starts(&cluster, 8);
    assert_eq!(lives.len(), 2, "gossip node 8 started twice: {lives:?}");
    assert_eq!(lives[0], 0);
    let resumed = lives[1];
    assert!(resumed > 0, "it kept what it delivered before the kill");
    let stats = cluster.gossip_stats(8).expect("gossip node 8's stats");
    assert_eq!(
        stats.get("delivered").copied(),
        Some(total as u64 - resumed),
        "the second life delivered ids {}..={total} once each: {stats:?}",
        resumed + 1
    );
    // Nothing forged was ever seen.
    for j in (1..=6).chain([8]) {
        if j != 8 {
            assert!(cluster.stop_gossip(j), "gossip node {j} stops cleanly");
        }
        let stats = cluster.gossip_stats(j).expect("stats");
        assert_eq!(
            stats.get("rejected").copied(),
            Some(0),
            "node {j}: {stats:?}"
        );
    }
    eprintln!("took {:?}", began.elapsed());
}

mod forgery {
    use std::net::SocketAddr;
    use std::sync::mpsc;

    use bytes::Bytes;
    use ordo_engine::token::{ClusterKeys, NodeKey, Signer, Token, TokenHash, leaf};
    use ordo_net::transport::{GossipEvent, GossipTransport, GossipTransportConfig};
    use ordo_net::{GossipMessage, Wire};

    use super::*;

    fn message_of(line: &Value) -> GossipMessage {
        let token = Token::from_text(line["token"].as_str().unwrap()).unwrap();
        GossipMessage {
            id: line["id"].as_u64().unwrap(),
            index: line["index"].as_u64().unwrap(),
            term: line["term"].as_u64().unwrap(),
            ts: line["ts"].as_u64().unwrap(),
            payload: Bytes::from(line["payload"].as_str().unwrap().to_string()),
            token: Bytes::from(token.to_bytes()),
        }
    }

    /// The same entry signed by a key that is not in `cluster.keys`.
    fn signed_by_stranger(keys: &ClusterKeys, m: &GossipMessage) -> GossipMessage {
        let signer = Signer::new(keys.cluster_id(), 1, NodeKey::generate().unwrap());
        let proof = signer
            .sign_leaves(
                m.term,
                m.index,
                vec![leaf::<TokenHash>(m.index, m.term, m.id, m.ts, &m.payload)],
            )
            .unwrap();
        GossipMessage {
            token: Bytes::from(proof.token(m.index).unwrap().to_bytes()),
            ..m.clone()
        }
    }

    /// What the probes saw: every message pushed or pulled to them by the
    /// gossip node.
    #[derive(Default, Debug)]
    struct Seen {
        /// Which probes (0: A, 1: B) the gossip node took as neighbours.
        accepted_as_neighbor: [bool; 2],
        messages: Vec<GossipMessage>,
    }

    fn collect(probe: usize, event: GossipEvent, seen: &mut Seen) {
        if let GossipEvent::Message { message, .. } = event {
            match message {
                Wire::NeighborReply { accepted: true } => seen.accepted_as_neighbor[probe] = true,
                Wire::Push { message, .. } => seen.messages.push(message),
                Wire::PullReply { messages, .. } => seen.messages.extend(messages),
                _ => {}
            }
        }
    }

    #[test]
    fn forged_messages_are_rejected_and_never_forwarded() {
        let base = free_base_port();
        let mut cluster = GossipCluster::start(3, 0, base);
        cluster
            .voters
            .wait_leader(&[1, 2, 3], Duration::from_secs(10))
            .expect("a leader");
        let sent = cluster.voters.ordo(
            &["send", "--node", &cluster.voters.addr(1), "--stdin"],
            Some(&payloads("genuine", 5)),
        );
        assert!(sent.ok, "{}", sent.stderr);
        let genuine: Vec<GossipMessage> = cluster
            .voters
            .wait_log_len(1, 5, Duration::from_secs(5))
            .iter()
            .map(message_of)
            .collect();
        assert_eq!(genuine.len(), 5);
        let keys = ClusterKeys::load(&cluster.voters.keys()).unwrap();
        let transport_id = keys.cluster_id().transport_id();
        // The probes hold the gossip secret (what is tested here is that
        // publications are verified, not who may connect).
        let gossip_secret = ordo_engine::auth::Secret::load(
            &cluster
                .voters
                .keys()
                .with_file_name(ordo_engine::auth::GOSSIP_SECRET_FILE),
        )
        .unwrap();
        let probe_auth = ordo_net::auth::Credential::new(std::sync::Arc::new(
            ordo_engine::auth::SecretAuth::mutual(gossip_secret),
        ));
        let probe_config = move |addr| {
            let mut config = GossipTransportConfig::new(transport_id, 0, addr);
            config.auth = probe_auth.clone();
            config
        };
        // Two probes speak gossip to one gossip node, which knows nobody
        // else: probe A injects, probe B listens for what it forwards.
        let probe_a: SocketAddr = format!("127.0.0.1:{}", base + 350).parse().unwrap();
        let probe_b: SocketAddr = format!("127.0.0.1:{}", base + 351).parse().unwrap();
        cluster.seeds = vec![probe_a.to_string()];
        cluster.start_gossip(1);
        let target: SocketAddr = cluster.gossip_addr(1).parse().unwrap();
        let mut forged = Vec::new();
        let mut altered = genuine[0].clone();
        altered.payload = Bytes::from_static(b"genuine-0 but altered");
        forged.push(altered);
        let mut altered = genuine[1].clone();
        altered.id += 1;
        forged.push(altered);
        let mut altered = genuine[2].clone();
        altered.ts += 1;
        forged.push(altered);
        forged.push(signed_by_stranger(&keys, &genuine[3]));
        let mut altered = genuine[4].clone();
        altered.payload = Bytes::from_static(b"pulled and altered");
        let forged_pull = altered;
        let (done_tx, done_rx) = mpsc::channel();
        let genuine_for_probe = genuine.clone();
        let forged_for_probe = forged.clone();
        let probe = std::thread::spawn(move || {
            glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .name("probe")
                .io_memory(512 << 10)
                .make()
                .unwrap()
                .run(async move {
                    let a = GossipTransport::start(probe_config(probe_a), None).unwrap();
                    let b = GossipTransport::start(probe_config(probe_b), None).unwrap();
                    let mut seen = Seen::default();
                    let pump = |seen: &mut Seen| {
                        while let Some(event) = a.inbox.try_recv() {
                            collect(0, event, seen);
                        }
                        while let Some(event) = b.inbox.try_recv() {
                            collect(1, event, seen);
                        }
                    };
                    // The gossip node may not be listening yet: ask until
                    // both probes are its neighbours.
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while seen.accepted_as_neighbor != [true; 2] && Instant::now() < deadline {
                        if !seen.accepted_as_neighbor[0] {
                            let _ = a
                                .transport
                                .try_send(target, Wire::Neighbor { urgent: true });
                        }
                        if !seen.accepted_as_neighbor[1] {
                            let _ = b
                                .transport
                                .try_send(target, Wire::Neighbor { urgent: true });
                        }
                        glommio::timer::sleep(Duration::from_millis(100)).await;
                        pump(&mut seen);
                    }
                    assert_eq!(
                        seen.accepted_as_neighbor, [true; 2],
                        "both probes are neighbours"
                    );
                    // Connections that failed while it was starting are
                    // backing off; let them come back.
                    glommio::timer::sleep(Duration::from_millis(300)).await;
                    // The forgeries: as pushes, repair pushes and a pull
                    // reply.
                    for (i, message) in forged_for_probe.iter().enumerate() {
                        a.transport
                            .try_send(
                                target,
                                Wire::Push {
                                    message: message.clone(),
                                    hops: 1,
                                    repair: i % 2 == 1,
                                },
                            )
                            .unwrap();
                    }
                    a.transport
                        .try_send(
                            target,
                            Wire::PullReply {
                                messages: vec![forged_pull],
                                delivered: 5,
                            },
                        )
                        .unwrap();
                    glommio::timer::sleep(Duration::from_millis(500)).await;
                    pump(&mut seen);
                    let after_forgeries = seen.messages.len();
                    // Then the genuine messages, which it must take and
                    // pass on to probe B.
                    for message in &genuine_for_probe {
                        a.transport
                            .try_send(
                                target,
                                Wire::Push {
                                    message: message.clone(),
                                    hops: 1,
                                    repair: false,
                                },
                            )
                            .unwrap();
                    }
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while seen.messages.len() < after_forgeries + genuine_for_probe.len()
                        && Instant::now() < deadline
                    {
                        glommio::timer::sleep(Duration::from_millis(50)).await;
                        pump(&mut seen);
                    }
                    done_tx.send(()).unwrap();
                    a.transport.shutdown().await;
                    b.transport.shutdown().await;
                    (after_forgeries, seen.messages)
                })
        });
        let _ = done_rx.recv_timeout(Duration::from_secs(30));
        let (after_forgeries, forwarded) = probe.join().unwrap();
        assert_eq!(after_forgeries, 0, "nothing forwarded after the forgeries");
        for message in &forwarded {
            assert!(
                genuine.contains(message),
                "forwarded something not genuine: {message:?}"
            );
        }
        assert!(
            !forwarded.is_empty(),
            "the genuine messages were forwarded to the other neighbour; its log:\n{}",
            std::fs::read_to_string(cluster.gossip_log_file(1)).unwrap_or_default()
        );
        // It delivered exactly the genuine messages, and they verify.
        let log = cluster.wait_gossip_log(1, 5, Duration::from_secs(5));
        let expected = cluster.voters.log(1);
        check_same_messages("gossip node", &log, &expected);
        cluster.verify(&log).expect("its log verifies");
        assert!(cluster.stop_gossip(1));
        let stats = cluster.gossip_stats(1).expect("stats");
        let rejected = stats.get("rejected").copied().unwrap_or(0);
        assert!(
            rejected > forged.len() as u64,
            "every forgery (and the forged pull reply) was rejected: {stats:?}"
        );
    }
}

mod launcher {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    use ordo_tests::procs::{GroupGuard, ordo_binary};

    use super::*;

    /// The launched cluster's client secret, which the `ordo` commands
    /// present (set once the test knows its directory).
    static CLIENT_SECRET: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

    fn ordo(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut command = Command::new(ordo_binary());
        if let Some(secret) = CLIENT_SECRET.get() {
            command.env("ORDO_CLIENT_SECRET", secret);
        }
        let mut child = command
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ordo");
        if let Some(input) = stdin {
            use std::io::Write;
            let mut pipe = child.stdin.take().unwrap();
            let input = input.to_string();
            std::thread::spawn(move || {
                let _ = pipe.write_all(input.as_bytes());
            });
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn ordo_cluster_runs_voters_and_gossip_nodes_and_stops_them_all() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("cluster");
        let base = super::free_base_port();
        let at = |offset: u16| format!("127.0.0.1:{}", base + offset);
        CLIENT_SECRET.set(dir.join("client.secret")).unwrap();
        let mut launcher = Command::new(ordo_binary())
            .args([
                "cluster",
                "--nodes",
                "3",
                "--gossip",
                "2",
                "--base-port",
                &base.to_string(),
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("ordo cluster");
        // A failed assertion below stops the launcher and its children.
        let _guard = GroupGuard::new(&launcher);
        let stdout = launcher.stdout.take().unwrap();
        let (lines_tx, lines_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = lines_tx.send(line);
            }
        });
        let mut printed = Vec::new();
        while let Ok(line) = lines_rx.recv_timeout(Duration::from_secs(10)) {
            let last = line.contains("running");
            printed.push(line);
            if last {
                break;
            }
        }
        assert_eq!(
            printed.len(),
            8,
            "every address, the keys, the client secret, then running: {printed:?}"
        );
        let voter1 = format!("voter 1: client {} gossip {}", at(0), at(200));
        assert!(printed[0].starts_with(&voter1), "{printed:?}");
        assert!(printed[3].starts_with(&format!("gossip 1: {}", at(300))));
        // Send through a voter once one leads, read from a gossip node.
        let deadline = Instant::now() + Duration::from_secs(10);
        let sent = loop {
            let sent = ordo(
                &["send", "--node", &at(1), "--stdin"],
                Some(&payloads("launched", 10)),
            );
            if sent.0 || Instant::now() >= deadline {
                break sent;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(sent.0, "{}", sent.2);
        let deadline = Instant::now() + Duration::from_secs(10);
        let log = loop {
            let (ok, out, _) = ordo(&["log", "--no-tls", "--node", &at(301)], None);
            let lines: Vec<Value> = out
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            if (ok && lines.len() >= 10) || Instant::now() >= deadline {
                break lines;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(log.len(), 10);
        let text: String = log.iter().map(|l| format!("{l}\n")).collect();
        let keys = dir.join("cluster.keys");
        let verified = ordo(&["verify", "--keys", keys.to_str().unwrap()], Some(&text));
        assert!(verified.0, "{}", verified.2);
        // --follow streams what it has, then every new message.
        let mut follower = Command::new(ordo_binary())
            .env("ORDO_CLIENT_SECRET", dir.join("client.secret"))
            .args([
                "log",
                "--no-tls",
                "--node",
                &at(300),
                "--from",
                "9",
                "--follow",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ordo log --follow");
        let follow_out = follower.stdout.take().unwrap();
        let (follow_tx, follow_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(follow_out)
                .lines()
                .map_while(Result::ok)
            {
                let _ = follow_tx.send(line);
            }
        });
        let more = ordo(&["send", "--node", &at(0), "one-more"], None);
        assert!(more.0, "{}", more.2);
        let followed: Vec<Value> = (0..3)
            .filter_map(|_| follow_rx.recv_timeout(Duration::from_secs(10)).ok())
            .map(|l| serde_json::from_str(&l).unwrap())
            .collect();
        let _ = follower.kill();
        let _ = follower.wait();
        let ids: Vec<u64> = followed.iter().map(|l| l["id"].as_u64().unwrap()).collect();
        assert_eq!(
            ids,
            vec![9, 10, 11],
            "followed from id 9 into the new message"
        );
        assert_eq!(followed[2]["payload"], "one-more");
        let (ok, status, _) = ordo(&["status", "--no-tls", "--node", &at(300)], None);
        assert!(ok && status.contains("\"role\":\"gossip\""), "{status}");
        // SIGTERM stops the launcher and every process it started.
        // SAFETY: signalling the child this test started.
        unsafe { libc::kill(launcher.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = launcher.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = launcher.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.is_some_and(|s| s.success()),
            "the launcher exits cleanly"
        );
        for addr in [at(0), at(2), at(300), at(301)] {
            assert!(
                std::net::TcpStream::connect(&addr).is_err(),
                "{addr} still listens after the launcher stopped"
            );
        }
    }
}
