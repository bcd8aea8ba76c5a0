//! Power loss on a file system that really loses unsynced writes (issue 16).
//!
//! SIGKILL alone tests nothing about durability: the kernel completes every
//! write it accepted. Here three real `ordo` voters keep their data
//! directories on a [`PowerLossFs`] (FUSE, mounted by this test, needs root
//! and `/dev/fuse`): while a client streams proposals, every node is
//! SIGKILLed at once and the file system drops everything no fsync made
//! durable, as a machine room that lost power. The cluster restarts on what
//! is left, several times over. Every message acknowledged before any cut
//! must still be there, at its id, with a token that verifies, on every
//! node; and the cluster must elect and take writes again (a whole-cluster
//! power loss must not leave it believing it lost acknowledged entries).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ordo_tests::power_loss_fs::PowerLossFs;
use ordo_tests::procs::{ProcCluster, free_base_port};
use serde_json::Value;

/// Why the test cannot run here, if it cannot.
fn unsupported() -> Option<&'static str> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("mounting needs root");
    }
    if !Path::new("/dev/fuse").exists() {
        return Some("no /dev/fuse");
    }
    None
}

/// Streams `count` proposals to `node`; returns the acknowledgements seen
/// when `cut` (which kills the nodes and drops the power) has run,
/// `after` into the stream.
fn stream_and_cut(
    cluster: &mut ProcCluster,
    node: u64,
    round: usize,
    count: usize,
    after: Duration,
    cut: impl FnOnce(&mut ProcCluster),
) -> Vec<Value> {
    let mut sender = cluster.spawn(&[
        "send",
        "--node",
        &cluster.addr(node),
        "--stdin",
        "--timeout",
        "5",
    ]);
    let mut stdin = sender.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || {
        for i in 0..count {
            if writeln!(stdin, "power-{round}-{i:06}").is_err() {
                break;
            }
        }
    });
    let stdout = sender.stdout.take().expect("piped stdout");
    let acks = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let acks = acks.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(value) = serde_json::from_str::<Value>(&line)
                    && value.get("id").is_some()
                {
                    acks.lock().unwrap().push(value);
                }
            }
        })
    };
    std::thread::sleep(after);
    // What the client printed before the cut was acknowledged before it.
    let acked: Vec<Value> = acks.lock().unwrap().clone();
    cut(cluster);
    let _ = sender.kill();
    let _ = sender.wait();
    let _ = writer.join();
    let _ = reader.join();
    acked
}

/// Every message in `acks` is in node `id`'s log at its id, with its
/// payload, ids are dense, and the whole log verifies offline.
fn check_node(cluster: &ProcCluster, id: u64, acks: &[Value]) {
    let output = cluster.ordo(
        &["log", "--node", &cluster.addr(id), "--timeout", "20"],
        None,
    );
    assert!(output.ok, "ordo log on node {id}: {}", output.stderr);
    let log = output.json_lines();
    for (i, line) in log.iter().enumerate() {
        assert_eq!(line["id"], i as u64 + 1, "node {id}: dense ids");
    }
    for ack in acks {
        let at = ack["id"].as_u64().unwrap() as usize;
        let line = log.get(at - 1).unwrap_or_else(|| {
            panic!(
                "node {id} lacks acknowledged id {at} after the power losses (its log ends at {})",
                log.len()
            )
        });
        assert_eq!(line["payload"], ack["payload"], "node {id}, id {at}");
    }
    let verified = cluster.ordo(
        &["verify", "--keys", cluster.keys().to_str().unwrap()],
        Some(&output.stdout),
    );
    assert!(verified.ok, "node {id}'s log verifies: {}", verified.stderr);
}

fn wait_all_applied(cluster: &ProcCluster, index: u64, timeout: Duration) {
    let start = Instant::now();
    for id in 1..=3 {
        loop {
            if let Some(status) = cluster.status(id)
                && status["applied_index"].as_u64().unwrap_or(0) >= index
                && status["repairing"] == false
            {
                break;
            }
            assert!(
                start.elapsed() < timeout,
                "node {id} did not apply {index}: {:?}",
                cluster.status(id)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn a_whole_cluster_power_loss_mid_stream_loses_no_acknowledged_message() {
    if let Some(why) = unsupported() {
        eprintln!("skipped: {why}");
        return;
    }
    let mount = tempfile::tempdir().expect("mount point");
    // `ORDO_POWER_LOSS_LOGS=DIR` keeps the nodes' logs for a post-mortem.
    let logs = tempfile::tempdir().expect("logs");
    let logs_dir: std::path::PathBuf =
        std::env::var_os("ORDO_POWER_LOSS_LOGS").map_or_else(|| logs.path().into(), Into::into);
    let power = match PowerLossFs::mount(mount.path()) {
        Ok(power) => power,
        // A container without CAP_SYS_ADMIN: the machine cannot mount.
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("skipped: mounting FUSE is not permitted here: {error}");
            return;
        }
        Err(error) => panic!("mount the power-loss file system: {error}"),
    };
    let mut cluster = ProcCluster::start_in(
        mount.path().join("cluster"),
        logs_dir,
        3,
        free_base_port(),
        |_| {},
    );
    let mut acked: Vec<Value> = Vec::new();
    let rounds = 3;
    for round in 0..rounds {
        let (leader, _) = cluster
            .wait_leader(&[1, 2, 3], Duration::from_secs(30))
            .unwrap_or_else(|| panic!("no leader before round {round}"));
        // Cut at different depths into the stream.
        let after = Duration::from_millis(3_000 + 300 * round as u64);
        let acks = stream_and_cut(&mut cluster, leader, round, 200_000, after, |cluster| {
            for id in 1..=3 {
                cluster.kill(id);
            }
            power.cut();
        });
        assert!(
            !acks.is_empty(),
            "round {round}: nothing was acknowledged before the cut"
        );
        println!(
            "round {round}: {} messages acknowledged before the power loss",
            acks.len()
        );
        acked.extend(acks);
        for id in 1..=3 {
            cluster.start_node(id);
        }
    }
    // The cluster elects and takes writes again, and holds everything.
    let (leader, _) = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .expect("a leader after the last power loss");
    let after = cluster.ordo(
        &["send", "--node", &cluster.addr(leader), "after-the-storms"],
        None,
    );
    assert!(after.ok, "a write after the power losses: {}", after.stderr);
    let last: Value = serde_json::from_str(after.stdout.lines().next().unwrap()).unwrap();
    wait_all_applied(
        &cluster,
        last["index"].as_u64().unwrap(),
        Duration::from_secs(60),
    );
    for id in 1..=3 {
        check_node(&cluster, id, &acked);
    }
    let (syncs, cuts) = power.counters();
    println!(
        "{} acknowledged messages survived {cuts} power losses ({syncs} syncs reached the file system)",
        acked.len()
    );
    drop(cluster);
}
