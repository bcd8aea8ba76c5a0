//! Real `ordo` processes (issue 21): `ordo log` reads back everything that
//! was acknowledged, from every node, whatever the message sizes and
//! whichever node took the proposals. Each test uses its own port range;
//! they run one at a time (each moves hundreds of MB through 3 nodes on a
//! 2-core machine).

use std::sync::Mutex;
use std::time::Duration;

use ordo_tests::procs::{ProcCluster, free_base_port, lines};
use serde_json::Value;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Reads node `id`'s whole log and checks it against the acknowledgements
/// (dense ids from 1, each acknowledged message at its id with its
/// payload), then verifies every line's token offline.
fn read_and_check(cluster: &ProcCluster, id: u64, acks: &[Value], payloads: &[&str]) {
    let output = cluster.ordo(&["log", "--node", &cluster.addr(id), "--from", "1"], None);
    assert!(output.ok, "ordo log on node {id}: {}", output.stderr);
    let log = output.json_lines();
    assert_eq!(log.len(), acks.len(), "node {id} serves every message");
    for (i, line) in log.iter().enumerate() {
        assert_eq!(line["id"], i as u64 + 1, "node {id}: ids are dense");
        assert!(
            !line["token"].as_str().unwrap_or("").is_empty(),
            "node {id}: id {} served without a token",
            i + 1
        );
    }
    for (ack, payload) in acks.iter().zip(payloads) {
        let at = ack["id"].as_u64().unwrap() as usize - 1;
        assert_eq!(log[at]["index"], ack["index"], "node {id}, id {}", at + 1);
        assert_eq!(
            log[at]["payload"].as_str(),
            Some(*payload),
            "node {id}, id {}",
            at + 1
        );
    }
    let verified = cluster.ordo(
        &["verify", "--keys", cluster.keys().to_str().unwrap()],
        Some(&output.stdout),
    );
    assert!(verified.ok, "node {id}'s log verifies: {}", verified.stderr);
    // A read that starts mid-log sees the same tail.
    let from = acks.len() * 9 / 10;
    let tail = cluster.ordo(
        &[
            "log",
            "--node",
            &cluster.addr(id),
            "--from",
            &from.to_string(),
        ],
        None,
    );
    assert!(
        tail.ok,
        "ordo log --from {from} on node {id}: {}",
        tail.stderr
    );
    assert_eq!(tail.json_lines(), log[from - 1..], "node {id} from {from}");
}

/// Waits until node `id` has applied `index` (a follower learns the commit
/// index a little after the leader answered).
fn wait_applied(cluster: &ProcCluster, id: u64, index: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let applied = cluster
            .status(id)
            .and_then(|s| s["applied_index"].as_u64())
            .unwrap_or(0);
        if applied >= index {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node {id} applied {applied} of {index} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends half of the messages through a follower and half through the
/// leader, then reads the whole log back from every node.
fn through_follower_and_leader(base_port: u16, count: usize, bytes: usize) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = ProcCluster::start(3, base_port);
    let (leader, _) = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .expect("a leader");
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let first = lines("f", count / 2, bytes);
    let second = lines("l", count - count / 2, bytes);
    let mut acks = cluster.send_lines(follower, &first);
    acks.extend(cluster.send_lines(leader, &second));
    let payloads: Vec<&str> = first.lines().chain(second.lines()).collect();
    let last_index = acks
        .iter()
        .filter_map(|a| a["index"].as_u64())
        .max()
        .unwrap();
    for id in 1..=3 {
        wait_applied(&cluster, id, last_index);
        read_and_check(&cluster, id, &acks, &payloads);
    }
}

/// The report's case: 3,000 messages of about 65 KB (195 MB). A response
/// of 256 of them did not fit the 16 MiB frame, and the stream ended in
/// silence.
#[test]
fn large_messages_read_back_from_every_node() {
    through_follower_and_leader(free_base_port(), 3_000, 65_000);
}

/// Messages of 64 KiB exactly.
#[test]
fn messages_of_64_kib_read_back_from_every_node() {
    through_follower_and_leader(free_base_port(), 600, 64 << 10);
}

/// Messages just under the proposal maximum (1 MiB): one per response.
#[test]
fn messages_just_under_the_proposal_maximum_read_back_from_every_node() {
    through_follower_and_leader(free_base_port(), 40, (1 << 20) - 1);
}

/// Many small messages: 200,000 of 64 B.
#[test]
fn many_small_messages_read_back_from_every_node() {
    through_follower_and_leader(free_base_port(), 200_000, 64);
}
