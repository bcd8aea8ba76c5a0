//! Real `ordo` processes whose disks lose or damage what they acknowledged
//! (issue 16): nothing acknowledged is lost, a damaged node repairs itself
//! without an operator and without new proposals, and every entry it
//! serves carries a token that verifies. Each test uses its own ports and
//! runs alone (they kill and pause processes on a 2-core machine).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ordo_tests::procs::{ProcCluster, free_base_port, lines};
use serde_json::Value;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn data_dir(cluster: &ProcCluster, id: u64) -> PathBuf {
    cluster.dir.join(format!("node{id}/data"))
}

/// Waits until node `id` reports `repairing: false` and has applied
/// `index`; returns how long it took.
fn wait_repaired(cluster: &ProcCluster, id: u64, index: u64, timeout: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if let Some(status) = cluster.status(id)
            && status["repairing"] == false
            && status["applied_index"].as_u64().unwrap_or(0) >= index
        {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "node {id} not repaired within {timeout:?}: {:?}",
            cluster.status(id)
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Every acknowledged message is in node `id`'s log at its id with its
/// payload and index, ids are dense, and every line verifies offline.
fn check_node(cluster: &ProcCluster, id: u64, acks: &[Value]) {
    let output = cluster.ordo(&["log", "--node", &cluster.addr(id)], None);
    assert!(output.ok, "ordo log on node {id}: {}", output.stderr);
    let log = output.json_lines();
    for (i, line) in log.iter().enumerate() {
        assert_eq!(line["id"], i as u64 + 1, "node {id}: dense ids");
        assert!(
            !line["token"].as_str().unwrap_or("").is_empty(),
            "node {id} served id {} without a token",
            i + 1
        );
    }
    for ack in acks {
        let at = ack["id"].as_u64().unwrap() as usize;
        let line = log
            .get(at - 1)
            .unwrap_or_else(|| panic!("node {id} lacks acknowledged id {at}"));
        assert_eq!(line["payload"], ack["payload"], "node {id}, id {at}");
        assert_eq!(line["index"], ack["index"], "node {id}, id {at}");
    }
    let verified = cluster.ordo(
        &["verify", "--keys", cluster.keys().to_str().unwrap()],
        Some(&output.stdout),
    );
    assert!(verified.ok, "node {id}'s log verifies: {}", verified.stderr);
}

/// Node `id`'s first (lowest-index) log segment.
fn first_segment(cluster: &ProcCluster, id: u64) -> PathBuf {
    std::fs::read_dir(data_dir(cluster, id).join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .min()
        .expect("a segment")
}

fn node_log(cluster: &ProcCluster, id: u64) -> String {
    std::fs::read_to_string(cluster.dir.join(format!("node{id}.log"))).unwrap_or_default()
}

fn last_index(acks: &[Value]) -> u64 {
    acks.iter()
        .filter_map(|a| a["index"].as_u64())
        .max()
        .unwrap()
}

/// Issue 16, case 1: a byte flipped in the middle of a stopped follower's
/// segment. It used to cut everything after it as a torn tail, serve 1,986
/// of 4,000 messages, and catch up only when new proposals came.
#[test]
fn a_follower_with_a_flipped_byte_mid_log_repairs_without_new_proposals() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = ProcCluster::start(3, free_base_port());
    let (leader, _) = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .expect("a leader");
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let acks = cluster.send_lines(leader, &lines("m", 4_000, 200));
    let last = last_index(&acks);
    wait_repaired(&cluster, follower, last, Duration::from_secs(10));
    assert!(cluster.stop(follower), "clean stop");
    let segment = first_segment(&cluster, follower);
    let mut bytes = std::fs::read(&segment).unwrap();
    let written = bytes.iter().rposition(|&b| b != 0).unwrap();
    bytes[written / 2] ^= 0xFF;
    std::fs::write(&segment, &bytes).unwrap();
    cluster.start_node(follower);
    let took = wait_repaired(&cluster, follower, last, Duration::from_secs(20));
    let log = node_log(&cluster, follower);
    assert!(log.contains("lost state it may have acknowledged"), "{log}");
    assert!(log.contains("repaired"), "{log}");
    println!("repaired in {took:?} after the restart answered");
    for id in 1..=3 {
        check_node(&cluster, id, &acks);
    }
}

/// A follower whose first segment's header (both copies) is unreadable:
/// recovery cannot know where the log starts, so the node moves the log
/// aside and repairs from the cluster as after a wiped disk, with no
/// operator step, and serves every acknowledged message afterwards.
#[test]
fn a_follower_whose_first_segment_header_is_unreadable_moves_the_log_aside_and_repairs() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = ProcCluster::start(3, free_base_port());
    let (leader, _) = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .expect("a leader");
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let acks = cluster.send_lines(leader, &lines("h", 1_000, 200));
    let last = last_index(&acks);
    wait_repaired(&cluster, follower, last, Duration::from_secs(10));
    assert!(cluster.stop(follower), "clean stop");
    let segment = first_segment(&cluster, follower);
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[0] ^= 0xFF;
    bytes[2048] ^= 0xFF;
    std::fs::write(&segment, &bytes).unwrap();
    cluster.start_node(follower);
    let took = wait_repaired(&cluster, follower, last, Duration::from_secs(30));
    let log = node_log(&cluster, follower);
    assert!(log.contains("moved it aside"), "{log}");
    assert!(log.contains("lost state it may have acknowledged"), "{log}");
    assert!(
        data_dir(&cluster, follower).join("log.damaged").is_dir(),
        "the damaged log is kept for inspection"
    );
    println!("repaired in {took:?} after the restart answered");
    for id in 1..=3 {
        check_node(&cluster, id, &acks);
    }
}

/// A follower whose latest snapshot is damaged (a flipped byte in its
/// data): it cannot restore its state machine from it, and its log is
/// compacted past what it covered, so it sets both aside and repairs from
/// the leader (an InstallSnapshot) as after a lost disk, with no operator
/// step, instead of refusing to start.
#[test]
fn a_follower_with_a_damaged_snapshot_sets_it_aside_and_repairs() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = ProcCluster::start_with(3, free_base_port(), |config| {
        config.storage.retain_log = false;
        config.raft.snapshot_entries_threshold = 300;
    });
    let (leader, _) = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .expect("a leader");
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let acks = cluster.send_lines(leader, &lines("s", 2_000, 100));
    let last = last_index(&acks);
    wait_repaired(&cluster, follower, last, Duration::from_secs(10));
    assert!(cluster.stop(follower), "clean stop");
    let snapshots = data_dir(&cluster, follower).join("snapshots");
    let snapshot = std::fs::read_dir(&snapshots)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "snap"))
        .expect("the follower took a snapshot");
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let at = 64 + (bytes.len() - 64) / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&snapshot, &bytes).unwrap();
    cluster.start_node(follower);
    let took = wait_repaired(&cluster, follower, last, Duration::from_secs(30));
    let log = node_log(&cluster, follower);
    assert!(log.contains("the latest snapshot is damaged"), "{log}");
    assert!(log.contains("lost state it may have acknowledged"), "{log}");
    assert!(
        data_dir(&cluster, follower)
            .join("snapshots.damaged")
            .is_dir()
    );
    println!("repaired in {took:?} after the restart answered");
    // It takes part again: a write commits and it applies it.
    let after = cluster.send_lines(leader, &lines("after", 10, 100));
    wait_repaired(
        &cluster,
        follower,
        last_index(&after),
        Duration::from_secs(10),
    );
}

/// Issue 16, case 2: a wiped follower and a lagging one must not elect
/// each other over the acknowledged messages only the stopped leader and
/// the wiped follower held.
#[test]
fn a_wiped_follower_and_a_lagging_one_do_not_elect_a_leader_without_acknowledged_messages() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = ProcCluster::start(3, free_base_port());
    let (leader, _) = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .expect("a leader");
    let a = leader % 3 + 1;
    let b = a % 3 + 1;
    cluster.signal(b, libc::SIGSTOP);
    let acks = cluster.send_lines(leader, &lines("k", 1_600, 16 << 10));
    cluster.kill(a);
    std::fs::remove_dir_all(data_dir(&cluster, a).join("log")).unwrap();
    cluster.kill(leader);
    cluster.start_node(a);
    cluster.signal(b, libc::SIGCONT);
    // A knows it lost its disk and grants no vote: no leader, no writes.
    std::thread::sleep(Duration::from_secs(3));
    let status = cluster.status(a).expect("A answers status");
    assert_eq!(status["repairing"], true, "{status}");
    let repair = status["repair"].as_str().unwrap_or("");
    assert!(repair.contains("gone"), "status says what A lost: {status}");
    for id in [a, b] {
        let status = cluster.status(id).expect("status");
        assert_ne!(status["role"], "leader", "node {id} leads: {status}");
    }
    let refused = cluster.ordo(
        &[
            "send",
            "--node",
            &cluster.addr(b),
            "--timeout",
            "2",
            "during",
        ],
        None,
    );
    assert!(!refused.ok, "a write was taken: {}", refused.stdout);
    assert!(
        refused.stderr.contains(&format!("node {b} sees no leader"))
            && refused
                .stderr
                .contains(&format!("node(s) {a} answered that they are repairing")),
        "the error says why, naming the repairing node: {}",
        refused.stderr
    );
    // Asked of A, the error names A and what it lost.
    let refused = cluster.ordo(
        &[
            "send",
            "--node",
            &cluster.addr(a),
            "--timeout",
            "2",
            "during",
        ],
        None,
    );
    assert!(!refused.ok, "a write was taken: {}", refused.stdout);
    assert!(
        refused.stderr.contains(&format!("node {a} is repairing"))
            && refused.stderr.contains("gone"),
        "the error names the node and its loss: {}",
        refused.stderr
    );
    // The old leader returns: it leads, A repairs, nothing is lost.
    cluster.start_node(leader);
    let last = last_index(&acks);
    wait_repaired(&cluster, a, last, Duration::from_secs(30));
    wait_repaired(&cluster, b, last, Duration::from_secs(30));
    for id in 1..=3 {
        check_node(&cluster, id, &acks);
    }
}

/// A leader whose data directory is wiped comes back as a repairing
/// follower; the other two keep the cluster going and repair it.
#[test]
fn a_wiped_leader_rejoins_as_a_repairing_follower_and_loses_nothing() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = ProcCluster::start(3, free_base_port());
    let (leader, _) = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .expect("a leader");
    let mut acks = cluster.send_lines(leader, &lines("w", 2_000, 100));
    cluster.kill(leader);
    std::fs::remove_dir_all(data_dir(&cluster, leader).join("log")).unwrap();
    std::fs::remove_file(data_dir(&cluster, leader).join("acked")).unwrap();
    let others: Vec<u64> = (1..=3).filter(|&i| i != leader).collect();
    let (next, _) = cluster
        .wait_leader(&others, Duration::from_secs(10))
        .expect("the other two elect a leader");
    cluster.start_node(leader);
    acks.extend(cluster.send_lines(next, &lines("after", 500, 100)));
    let took = wait_repaired(&cluster, leader, last_index(&acks), Duration::from_secs(30));
    println!("the wiped leader was repaired {took:?} after the writes");
    let log = node_log(&cluster, leader);
    assert!(
        log.contains("ran here, but its log and hard state are gone"),
        "{log}"
    );
    for id in 1..=3 {
        check_node(&cluster, id, &acks);
    }
}
