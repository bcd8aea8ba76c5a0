//! The `ordo` CLI against real processes (issue 18): `send --stdin`
//! streams, and `--node` takes a list of addresses. Each test uses its own
//! port range.

use std::io::{BufRead, BufReader, Write};
use std::process::Child;
use std::sync::mpsc;
use std::time::Duration;

use ordo_tests::procs::{ProcCluster, free_base_port};
use serde_json::Value;

/// How long one line may take to commit and come back.
const LINE_TIMEOUT: Duration = Duration::from_secs(30);

/// Kills the child if the test fails before it exits.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A client port nothing listens on (below the cluster's peer ports).
fn dead_addr(cluster: &ProcCluster) -> String {
    format!("127.0.0.1:{}", cluster.base_port + 99)
}

#[test]
fn send_stdin_answers_each_line_before_the_next_is_written() {
    let cluster = ProcCluster::start(3, free_base_port());
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .expect("a leader");
    let nodes = format!("{},{}", cluster.addr(1), cluster.addr(2));
    let mut child = Reaped(cluster.spawn(&["send", "--node", &nodes, "--stdin"]));
    let mut stdin = child.0.stdin.take().expect("stdin");
    let stdout = child.0.stdout.take().expect("stdout");
    let (lines, answers) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    // Stdin stays open throughout: each answer must come while the
    // command still waits for more input (as behind `tail -f`).
    for i in 1..=5u64 {
        writeln!(stdin, "line-{i}").expect("write a line");
        stdin.flush().expect("flush");
        let answer = answers
            .recv_timeout(LINE_TIMEOUT)
            .unwrap_or_else(|_| panic!("no answer to line {i} while stdin is open"));
        let answer: Value = serde_json::from_str(&answer).expect("a JSON line");
        assert_eq!(answer["payload"], format!("line-{i}"), "{answer}");
        assert_eq!(answer["id"], i, "{answer}");
        assert!(!answer["token"].as_str().unwrap_or("").is_empty());
    }
    drop(stdin);
    let status = child.0.wait().expect("send exits");
    assert!(status.success(), "ordo send --stdin exited with {status}");
    assert!(answers.recv_timeout(LINE_TIMEOUT).is_err(), "one line each");
}

#[test]
fn a_node_list_whose_first_address_is_dead_still_works() {
    let cluster = ProcCluster::start(3, free_base_port());
    let (leader, _) = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .expect("a leader");
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let nodes = format!("{},{}", dead_addr(&cluster), cluster.addr(follower));
    let run = |args: &[&str], stdin: Option<&str>| {
        let output = cluster.ordo(args, stdin);
        assert!(output.ok, "ordo {}: {}", args.join(" "), output.stderr);
        output.json_lines()
    };
    let sent = run(&["send", "--node", &nodes, "one"], None);
    assert_eq!(sent[0]["id"], 1);
    assert_eq!(sent[0]["leader"], leader);
    let sent = run(&["send", "--node", &nodes, "--stdin"], Some("two\nthree\n"));
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1]["payload"], "three");
    let status = run(&["status", "--node", &nodes], None);
    assert_eq!(status[0]["id"], follower);
    let log = run(&["log", "--node", &nodes], None);
    let payloads: Vec<&str> = log.iter().filter_map(|l| l["payload"].as_str()).collect();
    assert_eq!(payloads, ["one", "two", "three"]);
    // No membership change yet: the chain may be empty, but it answers.
    run(&["chain", "--node", &nodes], None);
    let members = run(&["member", "list", "--node", &nodes], None);
    assert_eq!(members.len(), 3);
    // Leadership moves through the list too (the hint is followed).
    let to = (1..=3).find(|&i| i != leader && i != follower).unwrap();
    let transferred = cluster.ordo(
        &["transfer", "--node", &nodes, "--to", &to.to_string()],
        None,
    );
    assert!(transferred.ok, "{}", transferred.stderr);
    // Only dead addresses: an error that names them.
    let dead = format!("{},{}", dead_addr(&cluster), dead_addr(&cluster));
    let failed = cluster.ordo(&["status", "--node", &dead, "--timeout", "1"], None);
    assert!(!failed.ok);
    assert!(
        failed.stderr.contains(&dead_addr(&cluster)),
        "{}",
        failed.stderr
    );
}
