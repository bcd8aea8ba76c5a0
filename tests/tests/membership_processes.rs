//! Membership changes and leadership transfer with real `ordo` processes
//! (issue 17): the CLI contract, end to end.

use std::collections::BTreeMap;
use std::time::Duration;

use ordo_tests::procs::ProcCluster;
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

/// Every acknowledged message is on node `id`, at its id, and its log
/// verifies against the original `cluster.keys` once `ordo verify` has
/// followed the chain of configuration changes.
fn check_node(cluster: &ProcCluster, id: u64, acks: &[Value]) {
    let log = cluster.wait_log_len(id, acks.len(), Duration::from_secs(30));
    let by_id: BTreeMap<u64, &Value> = log
        .iter()
        .map(|line| (line["id"].as_u64().unwrap(), line))
        .collect();
    for ack in acks {
        let ack_id = ack["id"].as_u64().expect("acknowledged");
        let entry = by_id
            .get(&ack_id)
            .unwrap_or_else(|| panic!("node {id} lacks acknowledged id {ack_id}"));
        assert_eq!(entry["payload"], ack["payload"], "node {id}, id {ack_id}");
    }
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
    // So does `ordo log --chain`, whole.
    let whole = cluster.ordo(&["log", "--chain", "--node", &cluster.addr(id)], None);
    assert!(whole.ok, "{}", whole.stderr);
    let verified = cluster.ordo(&["verify", "--keys", keys], Some(&whole.stdout));
    assert!(verified.ok, "node {id}: {}", verified.stderr);
}

/// The scenario: add a learner and promote it, transfer leadership
/// to it, remove an original voter, SIGKILL the new leader; every
/// acknowledged message is on every final member, and every final log
/// verifies with the original `cluster.keys`.
#[test]
fn a_learner_is_added_promoted_given_leadership_and_an_original_voter_removed() {
    let mut cluster = ProcCluster::start(3, 27_000);
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .expect("a leader");
    let mut acks = cluster.send_lines(2, &payloads("before", 50));

    // 1. Add node 4 as a learner (asking a follower: it redirects), then
    // promote it.
    cluster.add_node(4);
    let added = admin(
        &cluster,
        &[
            "member",
            "add",
            "--node",
            &cluster.addr(3),
            "--dir",
            cluster.dir.to_str().unwrap(),
            "--id",
            "4",
            "--learner",
        ],
    )
    .expect("member add");
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
    let mut cluster = ProcCluster::start_with(1, 27_400, |config| {
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
