//! Real `ordo` processes on 127.0.0.1 (issue 5): what a user of the binary
//! relies on. Each test uses its own port range.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use ordo_tests::procs::{ProcCluster, free_base_port};
use serde_json::Value;

/// Election timeout upper bound of the default config (ms).
const ELECTION_TIMEOUT_MS_MAX: u64 = 600;

fn payloads(prefix: &str, count: usize) -> String {
    (0..count).map(|i| format!("{prefix}-{i}\n")).collect()
}

/// Checks what every log must satisfy and returns it keyed by id.
fn check_log(log: &[Value]) -> BTreeMap<u64, Value> {
    let mut by_id = BTreeMap::new();
    let mut previous_ts = 0;
    for (i, line) in log.iter().enumerate() {
        let id = line["id"].as_u64().unwrap();
        assert_eq!(id, i as u64 + 1, "ids are dense from 1");
        let ts = line["ts"].as_u64().unwrap();
        assert!(
            ts > previous_ts,
            "timestamps strictly increase along the log"
        );
        previous_ts = ts;
        by_id.insert(id, line.clone());
    }
    by_id
}

/// Every acknowledged message is in `log` at its id, with its index, term,
/// ts and payload.
fn check_acknowledged(acks: &[Value], log: &BTreeMap<u64, Value>, node: u64) {
    for ack in acks {
        let id = ack["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("a failed send: {ack}"));
        let entry = log
            .get(&id)
            .unwrap_or_else(|| panic!("node {node} lacks acknowledged id {id}"));
        for field in ["index", "term", "ts", "payload"] {
            assert_eq!(
                entry[field], ack[field],
                "node {node}, id {id}, field {field}"
            );
        }
    }
}

#[test]
fn a_message_sent_to_a_follower_commits_and_verifies_everywhere() {
    let cluster = ProcCluster::start(3, free_base_port());
    let (leader, _) = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .expect("a leader");
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let sent = cluster.ordo(
        &["send", "--node", &cluster.addr(follower), "via-follower"],
        None,
    );
    assert!(sent.ok, "{}", sent.stderr);
    let line = &sent.json_lines()[0];
    assert_eq!(line["id"], 1);
    assert_eq!(line["leader"], leader);
    assert!(!line["token"].as_str().unwrap().is_empty());
    for key in ["id", "index", "term", "ts", "token", "node", "leader"] {
        assert!(line.get(key).is_some(), "send prints {key}");
    }
    // --redirect: the answer names the leader, and it is the leader that
    // answered.
    let other = (1..=3).find(|&i| i != leader && i != follower).unwrap();
    let redirected = cluster.ordo(
        &[
            "send",
            "--node",
            &cluster.addr(other),
            "--redirect",
            "redirected",
        ],
        None,
    );
    assert!(redirected.ok, "{}", redirected.stderr);
    let line = &redirected.json_lines()[0];
    assert_eq!(line["leader"], leader);
    assert_eq!(line["node"], leader);
    // The same log everywhere, and it verifies.
    let first = cluster.wait_log_len(1, 2, Duration::from_secs(5));
    for id in 1..=3 {
        let log = cluster.wait_log_len(id, 2, Duration::from_secs(5));
        assert_eq!(log, first, "node {id}'s log");
        let text: String = log.iter().map(|l| format!("{l}\n")).collect();
        let verified = cluster.ordo(
            &["verify", "--keys", cluster.keys().to_str().unwrap()],
            Some(&text),
        );
        assert!(verified.ok, "node {id}: {}", verified.stderr);
    }
    assert_eq!(first[0]["payload"], "via-follower");
    assert_eq!(first[1]["payload"], "redirected");
    // A tampered line fails, naming the line.
    let mut tampered = first.clone();
    tampered[1]["payload"] = Value::String("redirecteD".into());
    let text: String = tampered.iter().map(|l| format!("{l}\n")).collect();
    let verified = cluster.ordo(
        &["verify", "--keys", cluster.keys().to_str().unwrap()],
        Some(&text),
    );
    assert!(!verified.ok);
    assert!(verified.stderr.contains("line 2"), "{}", verified.stderr);
    // A send line verifies on its own too.
    let text = format!("{}\n", sent.stdout.trim());
    let verified = cluster.ordo(
        &["verify", "--keys", cluster.keys().to_str().unwrap()],
        Some(&text),
    );
    assert!(verified.ok, "{}", verified.stderr);
}

#[test]
fn concurrent_senders_to_every_node_get_dense_ids_and_increasing_timestamps() {
    let cluster = ProcCluster::start(3, free_base_port());
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .expect("a leader");
    let acks: Vec<Vec<Value>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..=3u64)
            .map(|node| {
                let cluster = &cluster;
                scope.spawn(move || {
                    let input = payloads(&format!("sender{node}"), 500);
                    let output = cluster.ordo(
                        &["send", "--node", &cluster.addr(node), "--stdin"],
                        Some(&input),
                    );
                    assert!(output.ok, "sender {node}: {}", output.stderr);
                    let lines = output.json_lines();
                    assert_eq!(lines.len(), 500);
                    for (i, line) in lines.iter().enumerate() {
                        assert_eq!(
                            line["payload"],
                            format!("sender{node}-{i}"),
                            "answers in input order"
                        );
                    }
                    lines
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ids: Vec<u64> = acks
        .iter()
        .flatten()
        .map(|l| l["id"].as_u64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (1..=1500).collect::<Vec<_>>(),
        "ids are dense and unique"
    );
    let log = check_log(&cluster.wait_log_len(1, 1500, Duration::from_secs(10)));
    for lines in &acks {
        check_acknowledged(lines, &log, 1);
    }
}

#[test]
fn a_killed_leader_is_replaced_and_loses_nothing_acknowledged() {
    let mut cluster = ProcCluster::start(3, free_base_port());
    let (leader, term) = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .expect("a leader");
    let sender = (1..=3).find(|&i| i != leader).unwrap();
    let survivors: Vec<u64> = (1..=3).filter(|&i| i != leader).collect();
    let (acks, elected_within) = std::thread::scope(|scope| {
        let cluster_ref = &cluster;
        let stream = scope.spawn(move || {
            let input = payloads("stream", 5_000);
            cluster_ref.ordo(
                &[
                    "send",
                    "--node",
                    &cluster_ref.addr(sender),
                    "--stdin",
                    "--timeout",
                    "30",
                ],
                Some(&input),
            )
        });
        std::thread::sleep(Duration::from_millis(300));
        let killed_at = Instant::now();
        cluster_ref.signal(leader, libc::SIGKILL);
        let new_leader = cluster_ref.wait_leader(&survivors, Duration::from_secs(10));
        let elected_within = killed_at.elapsed();
        let output = stream.join().unwrap();
        assert!(
            output.ok,
            "the stream survives the leader's death: {}",
            output.stderr
        );
        let (new_leader, new_term) = new_leader.expect("a new leader");
        assert_ne!(new_leader, leader);
        assert!(new_term > term);
        (output.json_lines(), elected_within)
    });
    assert!(
        elected_within < Duration::from_millis(2 * ELECTION_TIMEOUT_MS_MAX + 400),
        "a new leader took {elected_within:?}"
    );
    assert_eq!(acks.len(), 5_000);
    for &node in &survivors {
        let log = check_log(&cluster.wait_log_len(node, 5_000, Duration::from_secs(10)));
        check_acknowledged(&acks, &log, node);
    }
    // The killed node restarts with the same config and catches up.
    cluster.kill(leader);
    cluster.start_node(leader);
    let reference = cluster.log(survivors[0]);
    let caught_up = cluster.wait_log_len(leader, reference.len(), Duration::from_secs(15));
    // The same entries. Tokens may differ: the restarted node keeps the
    // statements it signed before it died, which the survivors may never
    // have received (they then signed those entries again); both verify.
    let entries = |log: &[Value]| -> Vec<Value> {
        log.iter()
            .map(|line| {
                let mut line = line.clone();
                line.as_object_mut().expect("an object").remove("token");
                line
            })
            .collect()
    };
    assert_eq!(
        entries(&caught_up[..reference.len()]),
        entries(&reference),
        "the restarted node has the same log"
    );
    let text: String = caught_up.iter().map(|l| format!("{l}\n")).collect();
    let keys = cluster.keys();
    let verified = cluster.ordo(&["verify", "--keys", keys.to_str().unwrap()], Some(&text));
    assert!(
        verified.ok,
        "the restarted node's tokens: {}",
        verified.stderr
    );
}

#[test]
fn a_paused_leader_steps_down_and_no_term_has_two_leaders() {
    let mut cluster = ProcCluster::start(3, free_base_port());
    let (leader, _) = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .expect("a leader");
    let others: Vec<u64> = (1..=3).filter(|&i| i != leader).collect();
    let before = cluster.ordo(
        &["send", "--node", &cluster.addr(others[0]), "--stdin"],
        Some(&payloads("before", 200)),
    );
    assert!(before.ok, "{}", before.stderr);
    cluster.signal(leader, libc::SIGSTOP);
    // Watch who claims leadership in which term while the leader is frozen.
    let mut leaders: HashMap<u64, u64> = HashMap::new();
    let pause = Instant::now();
    let mut during = None;
    while pause.elapsed() < Duration::from_millis(3 * ELECTION_TIMEOUT_MS_MAX) {
        for &id in &others {
            if let Some(status) = cluster.status(id)
                && status["role"] == "leader"
            {
                let term = status["term"].as_u64().unwrap();
                assert_eq!(
                    *leaders.entry(term).or_insert(id),
                    id,
                    "two leaders in term {term}"
                );
            }
        }
        if during.is_none() && !leaders.is_empty() {
            let output = cluster.ordo(
                &["send", "--node", &cluster.addr(others[1]), "--stdin"],
                Some(&payloads("during", 200)),
            );
            assert!(
                output.ok,
                "writes go on without the frozen leader: {}",
                output.stderr
            );
            during = Some(output);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let during = during.expect("a new leader was elected while the old one was frozen");
    cluster.signal(leader, libc::SIGCONT);
    // The old leader steps down once it hears the newer term.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut stepped_down = false;
    while Instant::now() < deadline {
        if let Some(status) = cluster.status(leader) {
            if status["role"] != "leader" {
                stepped_down = true;
                break;
            }
            let term = status["term"].as_u64().unwrap();
            assert_eq!(
                *leaders.entry(term).or_insert(leader),
                leader,
                "two leaders in term {term}"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(stepped_down, "the old leader still claims leadership");
    let after = cluster.ordo(
        &["send", "--node", &cluster.addr(leader), "--stdin"],
        Some(&payloads("after", 200)),
    );
    assert!(after.ok, "{}", after.stderr);
    for id in 1..=3 {
        let log = check_log(&cluster.wait_log_len(id, 600, Duration::from_secs(10)));
        for acks in [&before, &during, &after] {
            check_acknowledged(&acks.json_lines(), &log, id);
        }
    }
    // Every term's entries came from one leader: within a term the log's
    // entries were all created by that term's single leader, so no acked
    // entry of a term can be missing from the final log (checked above).
    let _ = cluster.stop(leader);
}

#[test]
fn client_shards_accept_connections_and_hand_proposals_to_the_group() {
    let cluster = ProcCluster::start_with(3, free_base_port(), |config| config.runtime.shards = 2);
    let (leader, _) = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .expect("a leader");
    // Many short-lived connections: the kernel spreads them over both
    // listeners of each node (SO_REUSEPORT).
    let acks: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8u64)
            .map(|k| {
                let cluster = &cluster;
                scope.spawn(move || {
                    let node = k % 3 + 1;
                    let input = payloads(&format!("shard-sender{k}"), 50);
                    let output = cluster.ordo(
                        &["send", "--node", &cluster.addr(node), "--stdin"],
                        Some(&input),
                    );
                    assert!(output.ok, "sender {k}: {}", output.stderr);
                    output.json_lines()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(acks.len(), 400);
    for id in 1..=3 {
        // Status and log are served whichever shard takes the connection.
        for _ in 0..4 {
            let status = cluster.status(id).expect("status through any shard");
            assert_eq!(status["leader"], leader);
        }
        let log = check_log(&cluster.wait_log_len(id, 400, Duration::from_secs(10)));
        check_acknowledged(&acks, &log, id);
    }
}

#[test]
fn commands_that_reach_no_leader_exit_non_zero_naming_what_they_tried() {
    let mut cluster = ProcCluster::start(3, free_base_port());
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .expect("a leader");
    // Nothing listens here.
    let nowhere = "127.0.0.1:23099";
    let output = cluster.ordo(&["send", "--node", nowhere, "--timeout", "1", "lost"], None);
    assert!(!output.ok, "{output:?}");
    // The message's line says why it has no id (send keeps one line per
    // message, in input order).
    let lines = output.json_lines();
    assert_eq!(lines.len(), 1, "{output:?}");
    assert!(
        lines[0].get("id").is_none() && lines[0]["error"].is_string(),
        "{output:?}"
    );
    assert!(
        output.stderr.contains("no leader reachable") && output.stderr.contains(nowhere),
        "{}",
        output.stderr
    );
    // A node without a quorum: it answers, but nobody leads.
    cluster.kill(2);
    cluster.kill(3);
    let node1 = cluster.addr(1);
    let output = cluster.ordo(&["send", "--node", &node1, "--timeout", "2", "lost"], None);
    assert!(!output.ok, "{output:?}");
    assert!(output.json_lines()[0].get("id").is_none(), "{output:?}");
    assert!(
        output.stderr.contains("no leader reachable"),
        "{}",
        output.stderr
    );
    let output = cluster.ordo(&["log", "--node", nowhere, "--timeout", "1"], None);
    assert!(!output.ok, "{output:?}");
    // A missing config names the file.
    let output = cluster.ordo(&["node", "--config", "/nonexistent/ordo.toml"], None);
    assert!(!output.ok, "{output:?}");
    assert!(
        output.stderr.contains("/nonexistent/ordo.toml"),
        "{}",
        output.stderr
    );
}
