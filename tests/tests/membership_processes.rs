//! Membership changes and leadership transfer with real `ordo` processes
//! (issue 17): the CLI contract, end to end.

use std::collections::BTreeMap;
use std::time::Duration;

use ordo_tests::procs::{ProcCluster, free_base_port};
use serde_json::Value;

fn payloads(prefix: &str, count: usize) -> String {
    (0..count).map(|i| format!("{prefix}-{i}\n")).collect()
}

/// `ordo member list` at node `via`, by id.
fn members(cluster: &ProcCluster, via: u64) -> BTreeMap<u64, Value> {
    let out = cluster.ordo(&["member", "list", "--node", &cluster.addr(via)], None);
    assert!(out.ok, "member list: {}", out.stderr);
    out.json_lines()
        .into_iter()
        .map(|m| (m["id"].as_u64().unwrap(), m))
        .collect()
}

/// Runs an `ordo member` or `ordo transfer` command; returns its one JSON
/// line, or its error text.
fn admin(cluster: &ProcCluster, args: &[&str]) -> Result<Value, String> {
    let out = cluster.ordo(args, None);
    if out.ok {
        Ok(out.json_lines().pop().expect("one JSON line"))
    } else {
        Err(out.stderr)
    }
}

/// `ordo member add --learner` of node `id` (laid out in the cluster's
/// directory), asked of node `via`.
fn add_learner(cluster: &ProcCluster, via: u64, id: u64) -> Value {
    admin(
        cluster,
        &[
            "member",
            "add",
            "--node",
            &cluster.addr(via),
            "--dir",
            cluster.dir.to_str().unwrap(),
            "--id",
            &id.to_string(),
            "--learner",
        ],
    )
    .expect("member add")
}

/// Every acknowledged message is on node `id` at its id with its payload,
/// and `ordo log --chain` of it verifies with the original `cluster.keys`.
fn check_acknowledged_and_verified(cluster: &ProcCluster, id: u64, acks: &[Value]) -> Vec<Value> {
    let log = cluster.wait_log_len(id, acks.len(), Duration::from_secs(30));
    let by_id: BTreeMap<u64, &Value> = log
        .iter()
        .map(|line| (line["id"].as_u64().unwrap(), line))
        .collect();
    for ack in acks {
        let ack_id = ack["id"].as_u64().expect("acknowledged");
        assert_eq!(
            by_id.get(&ack_id).map(|e| &e["payload"]),
            Some(&ack["payload"]),
            "node {id}, id {ack_id}"
        );
    }
    let whole = cluster.ordo(&["log", "--chain", "--node", &cluster.addr(id)], None);
    assert!(whole.ok, "{}", whole.stderr);
    let keys = cluster.keys();
    let verified = cluster.ordo(
        &["verify", "--keys", keys.to_str().unwrap()],
        Some(&whole.stdout),
    );
    assert!(verified.ok, "node {id}: {}", verified.stderr);
    log
}

/// Every acknowledged message is on node `id`, at its id, and its log
/// verifies against the original `cluster.keys` once `ordo verify` has
/// followed the chain of configuration changes.
fn check_node(cluster: &ProcCluster, id: u64, acks: &[Value]) {
    let log = check_acknowledged_and_verified(cluster, id, acks);
    let text: String = log.iter().map(|l| format!("{l}\n")).collect();
    let keys = cluster.keys();
    let keys = keys.to_str().unwrap();
    // Node 4 led after the transfer: its statements verify only through
    // the configuration change that added it.
    let bare = cluster.ordo(&["verify", "--keys", keys], Some(&text));
    assert!(
        !bare.ok,
        "node {id}: node 4's tokens verified without the chain"
    );
    assert!(bare.stderr.contains("node 4"), "{}", bare.stderr);
    // The chain of configuration changes: add 4, promote it, remove 1.
    let chain = cluster.ordo(&["chain", "--node", &cluster.addr(id)], None);
    assert!(chain.ok, "ordo chain on node {id}: {}", chain.stderr);
    let links = chain.json_lines();
    let voters: Vec<Value> = links.iter().map(|l| l["voters"].clone()).collect();
    assert_eq!(
        voters,
        vec![
            serde_json::json!([1, 2, 3]),
            serde_json::json!([1, 2, 3, 4]),
            serde_json::json!([2, 3, 4])
        ],
        "node {id}'s chain"
    );
    let verified = cluster.ordo(
        &["verify", "--keys", keys],
        Some(&format!("{}{text}", chain.stdout)),
    );
    assert!(
        verified.ok,
        "node {id}'s log does not verify: {}",
        verified.stderr
    );
}

/// The scenario: add a learner and promote it, transfer leadership
/// to it, remove an original voter, SIGKILL the new leader; every
/// acknowledged message is on every final member, and every final log
/// verifies with the original `cluster.keys`.
#[test]
fn a_learner_is_added_promoted_given_leadership_and_an_original_voter_removed() {
    let mut cluster = ProcCluster::start(3, free_base_port());
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .expect("a leader");
    let mut acks = cluster.send_lines(2, &payloads("before", 50));

    // 1. Add node 4 as a learner (asking a follower: it redirects), then
    // promote it.
    cluster.add_node(4);
    let added = add_learner(&cluster, 3, 4);
    assert_eq!(added["id"], 4);
    assert_eq!(added["role"], "learner");
    assert!(added["index"].as_u64().unwrap() > 50);
    let listed = members(&cluster, 1);
    assert_eq!(listed[&4]["role"], "learner");
    assert_eq!(listed[&4]["client_addr"], cluster.addr(4));
    acks.extend(cluster.send_lines(4, &payloads("via-learner", 20)));
    let promoted = admin(
        &cluster,
        &["member", "promote", "--node", &cluster.addr(1), "--id", "4"],
    )
    .expect("member promote");
    assert_eq!(promoted["role"], "voter");
    let listed = members(&cluster, 2);
    assert_eq!(listed.len(), 4);
    assert!(listed.values().all(|m| m["role"] == "voter"));

    // 2. Hand leadership to it.
    let transferred = admin(
        &cluster,
        &["transfer", "--node", &cluster.addr(2), "--to", "4"],
    )
    .expect("transfer");
    assert_eq!(transferred["leader"], 4);
    assert_eq!(cluster.status(4).unwrap()["role"], "leader");
    acks.extend(cluster.send_lines(1, &payloads("under-4", 20)));

    // 3. Remove original voter 1: it stops on its own.
    let removed = admin(
        &cluster,
        &["member", "remove", "--node", &cluster.addr(2), "--id", "1"],
    )
    .expect("member remove");
    assert_eq!(removed["id"], 1);
    assert_eq!(
        cluster.wait_exit(1, Duration::from_secs(10)),
        Some(true),
        "a removed node stops cleanly"
    );
    let listed = members(&cluster, 3);
    assert_eq!(listed.keys().copied().collect::<Vec<_>>(), vec![2, 3, 4]);

    // ... then SIGKILL the new leader: 2 and 3 carry on.
    cluster.kill(4);
    cluster
        .wait_leader(&[2, 3], Duration::from_secs(10))
        .expect("a leader among 2 and 3");
    acks.extend(cluster.send_lines(3, &payloads("after-kill", 20)));
    cluster.start_node(4);

    // 4. Every final member holds every acknowledged message, and its log
    // verifies with the original keys.
    for id in [2, 3, 4] {
        check_node(&cluster, id, &acks);
    }
}

/// Each refusal exits non-zero and says why.
#[test]
fn refused_changes_exit_non_zero_with_a_clear_error() {
    let mut cluster = ProcCluster::start_with(1, free_base_port(), |config| {
        config.raft.learner_promote_lag_max = 100;
    });
    cluster
        .wait_leader(&[1], Duration::from_secs(10))
        .expect("a leader");
    let node = cluster.addr(1);
    let unknown = admin(
        &cluster,
        &["member", "remove", "--node", &node, "--id", "9"],
    );
    assert!(unknown.unwrap_err().contains("node 9 is not a member"));
    let last = admin(
        &cluster,
        &["member", "remove", "--node", &node, "--id", "1"],
    );
    assert!(last.unwrap_err().contains("node 1 is the last voter"));
    let not_laid_out = admin(
        &cluster,
        &[
            "member",
            "add",
            "--node",
            &node,
            "--dir",
            cluster.dir.to_str().unwrap(),
            "--id",
            "5",
        ],
    );
    assert!(not_laid_out.unwrap_err().contains("unknown node 5"));
    // A learner that is down falls behind and is not promoted.
    cluster.add_node(2);
    admin(
        &cluster,
        &[
            "member",
            "add",
            "--node",
            &node,
            "--dir",
            cluster.dir.to_str().unwrap(),
            "--id",
            "2",
            "--learner",
        ],
    )
    .expect("member add");
    cluster.kill(2);
    cluster.send_lines(1, &payloads("x", 150));
    let behind = admin(
        &cluster,
        &["member", "promote", "--node", &node, "--id", "2"],
    );
    let error = behind.unwrap_err();
    assert!(
        error.contains("learner 2 is") && error.contains("entries behind"),
        "{error}"
    );
    let transfer = admin(&cluster, &["transfer", "--node", &node, "--to", "2"]);
    assert!(transfer.unwrap_err().contains("node 2 is not a voter"));
}

/// docs/operations.md "Replace a machine", exactly: node 3's disk dies;
/// `ordo member remove` it, lay out node 4 with `ordo init --add`, start
/// it, `ordo member add --learner`, wait until `ordo member list` shows it
/// caught up, `ordo member promote`. Every acknowledged message is on the
/// final members, whose logs verify with the original `cluster.keys`.
#[test]
fn a_machine_whose_disk_died_is_replaced_as_the_operations_guide_says() {
    let mut cluster = ProcCluster::start(3, free_base_port());
    let (leader, _) = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .expect("a leader");
    let via = if leader == 3 { 1 } else { leader };
    let mut acks = cluster.send_lines(via, &payloads("before", 50));
    // The disk of node 3 dies with the machine.
    cluster.kill(3);
    std::fs::remove_dir_all(cluster.dir.join("node3/data")).unwrap();
    acks.extend(cluster.send_lines(via, &payloads("degraded", 20)));
    // 1. Remove the dead member.
    admin(
        &cluster,
        &["member", "remove", "--node", &cluster.addr(1), "--id", "3"],
    )
    .expect("member remove");
    // 2. Lay out and start the new machine (a new id, a new key).
    cluster.add_node(4);
    // 3. Add it as a learner, wait until it caught up, promote it.
    let added = add_learner(&cluster, 2, 4);
    let added_at = added["index"].as_u64().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed = members(&cluster, 1);
        if listed[&4]["match_index"]
            .as_u64()
            .is_some_and(|m| m >= added_at)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node 4 never caught up: {listed:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    admin(
        &cluster,
        &["member", "promote", "--node", &cluster.addr(1), "--id", "4"],
    )
    .expect("member promote");
    let listed = members(&cluster, 2);
    assert_eq!(listed.keys().copied().collect::<Vec<_>>(), vec![1, 2, 4]);
    assert!(listed.values().all(|m| m["role"] == "voter"));
    // The new voter counts: with node 1 down, 2 and 4 commit.
    cluster.kill(1);
    cluster
        .wait_leader(&[2, 4], Duration::from_secs(10))
        .expect("a leader among 2 and 4");
    acks.extend(cluster.send_lines(2, &payloads("replaced", 20)));
    cluster.start_node(1);
    for id in [1, 2, 4] {
        check_acknowledged_and_verified(&cluster, id, &acks);
    }
}
