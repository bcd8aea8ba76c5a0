//! Retention (`storage.retain_bytes`) on real processes: the log's disk
//! and the certificates file stay under the bound while messages keep
//! coming, a reader asking for a message no longer retained is told the
//! first id that is, and what is retained still verifies.

use std::time::Duration;

use ordo_tests::gossip_procs::GossipCluster;
use ordo_tests::procs::{Output, ProcCluster, free_base_port};

const SEGMENT_BYTES: u64 = 1 << 20;
const RETAIN_BYTES: u64 = 12 << 20;

/// Bytes the files directly in `dir` occupy on disk.
fn allocated(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.blocks() * 512)
                .sum()
        })
        .unwrap_or(0)
}

/// The first retained message id an `ordo log --from` refusal names.
fn first_retained(stderr: &str) -> Option<u64> {
    stderr
        .split("the first retained message id is ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
}

/// `ordo log` of the node at `addr` from the first message it retains:
/// that id (named by the refusal of `--from 1`) and the output. A node
/// still applying may drop more meanwhile: the read follows the first id
/// its refusal names until it succeeds.
/// `gossip`: `addr` is a gossip node's, which serves clients in plain TCP.
fn log_from_first_retained(cluster: &ProcCluster, addr: &str, gossip: bool) -> (u64, Output) {
    let mut first = 1;
    loop {
        let from = first.to_string();
        let mut args = vec!["log", "--node", addr, "--from", &from];
        if gossip {
            args.push("--no-tls");
        }
        let output = cluster.ordo(&args, None);
        match first_retained(&output.stderr) {
            Some(later) if !output.ok && later > first => first = later,
            _ => return (first, output),
        }
    }
}

#[test]
fn the_log_stays_under_its_bound_and_readers_are_told_what_is_gone() {
    let mut cluster = ProcCluster::start_with(3, free_base_port(), |config| {
        config.storage.segment_bytes = SEGMENT_BYTES;
        config.storage.retain_bytes = RETAIN_BYTES;
    });
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .expect("a leader");
    // 12 rounds of 2,000 messages of 1 KiB: about 3 times the bound.
    let payload = "x".repeat(1024);
    let mut peak = [0u64; 3];
    let mut acks = Vec::new();
    for round in 0..12 {
        let text: String = (0..2_000)
            .map(|i| format!("{round}-{i}-{payload}\n"))
            .collect();
        acks = cluster.send_lines(1 + round % 3, &text);
        std::thread::sleep(Duration::from_millis(300));
        for id in 1..=3u64 {
            let log = cluster.dir.join(format!("node{id}/data/log"));
            let used = allocated(&log);
            peak[id as usize - 1] = peak[id as usize - 1].max(used);
            assert!(
                used <= RETAIN_BYTES,
                "node {id}'s log uses {used} bytes, over its bound of {RETAIN_BYTES}"
            );
        }
    }
    let last_id = acks.last().unwrap()["id"].as_u64().unwrap();
    for id in 1..=3u64 {
        // The beginning is gone, and the reader is told where the log now
        // starts; from there on everything is served, and verifies.
        let (first, output) = log_from_first_retained(&cluster, &cluster.addr(id), false);
        assert!(first > 1 && first <= last_id, "node {id}: first {first}");
        assert!(output.ok, "node {id}: {}", output.stderr);
        let lines = output.json_lines();
        assert_eq!(lines.first().unwrap()["id"].as_u64(), Some(first));
        assert!(lines.last().unwrap()["id"].as_u64().unwrap() >= last_id);
        let keys = cluster.keys();
        let verified = cluster.ordo(
            &["verify", "--keys", keys.to_str().unwrap()],
            Some(&output.stdout),
        );
        assert!(verified.ok, "node {id}: {}", verified.stderr);
        // The certificates file's dead prefix was freed too.
        let certificates = cluster.dir.join(format!("node{id}/data/certificates"));
        let apparent = std::fs::metadata(&certificates).unwrap().len();
        let used = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(&certificates).unwrap().blocks() * 512
        };
        assert!(
            used < apparent,
            "node {id}: certificates use {used} of {apparent} bytes"
        );
    }
    eprintln!("peak log bytes per node: {peak:?} (bound {RETAIN_BYTES})");
    // A restarted node starts from what it retained, and serves it.
    cluster.kill(2);
    cluster.start_node(2);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let output = cluster.ordo(
            &[
                "log",
                "--node",
                &cluster.addr(2),
                "--from",
                &last_id.to_string(),
            ],
            None,
        );
        if output.ok && !output.json_lines().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the restarted node does not serve its retained log: {}\nits log ends: {}",
            output.stderr,
            std::fs::read_to_string(cluster.logs.join("node2.log"))
                .unwrap_or_default()
                .lines()
                .rev()
                .take(8)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `ordo gossip --retain-bytes`: a gossip node's delivered messages stay
/// under the bound too, and its readers are told the first id it holds.
#[test]
fn a_gossip_node_keeps_its_delivered_file_under_its_bound() {
    const GOSSIP_RETAIN: u64 = 1 << 20;
    let mut cluster = GossipCluster::start(3, 0, free_base_port());
    cluster.extra_args = vec!["--retain-bytes".into(), GOSSIP_RETAIN.to_string()];
    cluster.start_gossip(1);
    cluster
        .voters
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .expect("a leader");
    let payload = "g".repeat(1024);
    let mut last_id = 0;
    for round in 0..4 {
        let text: String = (0..2_000)
            .map(|i| format!("{round}-{i}-{payload}\n"))
            .collect();
        let acks = cluster.voters.send_lines(1, &text);
        last_id = acks.last().unwrap()["id"].as_u64().unwrap();
    }
    let file = cluster.gossip_dir(1).join("delivered.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let first = loop {
        let output = cluster.voters.ordo(
            &[
                "log",
                "--no-tls",
                "--node",
                &cluster.gossip_addr(1),
                "--from",
                "1",
            ],
            None,
        );
        let first = first_retained(&output.stderr);
        let tail = cluster.voters.ordo(
            &[
                "log",
                "--no-tls",
                "--node",
                &cluster.gossip_addr(1),
                "--from",
                &last_id.to_string(),
            ],
            None,
        );
        if let Some(first) = first
            && tail.ok
            && !tail.json_lines().is_empty()
        {
            break first;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gossip node did not deliver and drop: {} / {}",
            output.stderr,
            tail.stderr
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(first > 1 && first <= last_id);
    let used = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&file).unwrap().blocks() * 512
    };
    assert!(
        used <= GOSSIP_RETAIN + (64 << 10),
        "the gossip node's delivered file uses {used} bytes, over {GOSSIP_RETAIN}"
    );
    // The node may still be delivering (and dropping): read from the
    // first id it names when asked.
    let (first, output) = log_from_first_retained(&cluster.voters, &cluster.gossip_addr(1), true);
    assert!(output.ok, "{}", output.stderr);
    let lines = output.json_lines();
    assert_eq!(lines.first().unwrap()["id"].as_u64(), Some(first));
    cluster
        .verify(&lines)
        .expect("what the gossip node kept verifies");
}

/// A node that joins after retention dropped the early configuration
/// changes gets them with the snapshot it installs: its chain still
/// reaches `cluster.keys`, and what it serves verifies.
#[test]
fn a_node_that_joins_from_a_snapshot_serves_the_whole_chain() {
    let mut cluster = ProcCluster::start_with(3, free_base_port(), |config| {
        config.storage.segment_bytes = SEGMENT_BYTES;
        config.storage.retain_bytes = RETAIN_BYTES;
    });
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .expect("a leader");
    let dir = cluster.dir.to_str().unwrap().to_string();
    let add = |cluster: &ProcCluster, id: &str| {
        let out = cluster.ordo(
            &[
                "member",
                "add",
                "--node",
                &cluster.addr(1),
                "--dir",
                &dir,
                "--id",
                id,
                "--learner",
            ],
            None,
        );
        assert!(out.ok, "member add {id}: {}", out.stderr);
    };
    // A change early on, then three times the bound of messages.
    cluster.add_node(4);
    add(&cluster, "4");
    let payload = "z".repeat(1024);
    for round in 0..12 {
        let text: String = (0..2_000)
            .map(|i| format!("{round}-{i}-{payload}\n"))
            .collect();
        cluster.send_lines(1 + round % 3, &text);
    }
    // Node 5 joins: the entry that added node 4 is long gone from the
    // leader's log, so node 5 starts from a snapshot.
    cluster.add_node(5);
    add(&cluster, "5");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let links = loop {
        let chain = cluster.ordo(&["chain", "--node", &cluster.addr(5)], None);
        let links = if chain.ok {
            chain.json_lines()
        } else {
            Vec::new()
        };
        if links.len() >= 2 {
            break links;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node 5's chain: {} {}",
            chain.stdout,
            chain.stderr
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(links[0]["learners"], serde_json::json!([4]));
    assert_eq!(links[1]["learners"], serde_json::json!([4, 5]));
    let (first, _) = log_from_first_retained(&cluster, &cluster.addr(5), false);
    assert!(first > 1, "node 5 holds message 1");
    let output = cluster.ordo(
        &[
            "log",
            "--chain",
            "--node",
            &cluster.addr(5),
            "--from",
            &first.to_string(),
        ],
        None,
    );
    assert!(output.ok, "{}", output.stderr);
    let keys = cluster.keys();
    let verified = cluster.ordo(
        &["verify", "--keys", keys.to_str().unwrap()],
        Some(&output.stdout),
    );
    assert!(verified.ok, "node 5: {}", verified.stderr);
}
