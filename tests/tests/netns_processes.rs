//! Three voters on three "machines": network namespaces joined by veth
//! pairs to a bridge, each with its own address, laid out by
//! `ordo init --hosts`. A partition is a link set down (`tc netem` is not
//! available on these machines). Needs root and `ip` (iproute2); the test
//! creates the namespaces, the bridge and the links, and removes them.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ordo_tests::procs::{GroupGuard, free_base_port, ordo_binary};
use serde_json::Value;

/// The namespaces, bridge and links of one test; removed on drop.
struct Net {
    tag: String,
    subnet: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Net {
    fn new() -> Net {
        let pid = std::process::id();
        let net = Net {
            tag: format!("o{}", pid % 100_000),
            subnet: format!("10.213.{}", pid % 250),
        };
        let bridge = net.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}.254/24", net.subnet),
            "dev",
            &bridge,
        ]);
        ip(&["link", "set", &bridge, "up"]);
        for i in 1..=3 {
            let ns = net.ns(i);
            let (inside, outside) = (net.veth(i, 'a'), net.veth(i, 'b'));
            ip(&["netns", "add", &ns]);
            ip(&[
                "link", "add", &inside, "type", "veth", "peer", "name", &outside,
            ]);
            ip(&["link", "set", &inside, "netns", &ns]);
            ip(&["link", "set", &outside, "master", &bridge]);
            ip(&["link", "set", &outside, "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", net.host(i)),
                "dev",
                &inside,
            ]);
            ip(&["-n", &ns, "link", "set", &inside, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        net
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    fn ns(&self, i: u64) -> String {
        format!("{}ns{i}", self.tag)
    }

    fn veth(&self, i: u64, side: char) -> String {
        format!("{}v{i}{side}", self.tag)
    }

    fn host(&self, i: u64) -> String {
        format!("{}.{i}", self.subnet)
    }

    /// Cuts (or restores) machine `i`'s only link.
    fn link(&self, i: u64, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["link", "set", &self.veth(i, 'b'), state]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 1..=3 {
            // Deleting a namespace deletes its end of the pair, and with
            // it the other end. A failed delete leaves nothing to undo.
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(i)])
                .output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge()])
            .output();
    }
}

/// The cluster's client secret, for the `ordo` commands (set once the
/// cluster is laid out).
static CLIENT_SECRET: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

fn ordo_command() -> Command {
    let mut command = Command::new(ordo_binary());
    if let Some(secret) = CLIENT_SECRET.get() {
        command.env("ORDO_CLIENT_SECRET", secret);
    }
    command
}

fn ordo(args: &[&str]) -> (bool, String, String) {
    let out = ordo_command().args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn start_node(net: &Net, dir: &Path, i: u64) -> (Child, GroupGuard) {
    let log = std::fs::File::create(dir.join(format!("node{i}.log"))).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &net.ns(i)])
        .arg(ordo_binary())
        .args(["node", "--config"])
        .arg(dir.join(format!("node{i}/ordo.toml")))
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap();
    let guard = GroupGuard::new(&child);
    (child, guard)
}

fn send(addr: &str, prefix: &str, count: usize) -> Vec<Value> {
    let text: String = (0..count).map(|i| format!("{prefix}-{i}\n")).collect();
    let mut child = ordo_command()
        .args(["send", "--node", addr, "--stdin", "--timeout", "20"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.iter().all(|l| l.get("error").is_none()),
        "{lines:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    lines
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

fn status(addr: &str) -> Option<Value> {
    let (ok, out, _) = ordo(&["status", "--node", addr, "--timeout", "2"]);
    ok.then(|| serde_json::from_str(out.trim()).ok()).flatten()
}

fn log_len(addr: &str) -> usize {
    let (_, out, _) = ordo(&["log", "--node", addr, "--timeout", "3"]);
    out.lines().count()
}

#[test]
fn three_voters_on_three_hosts_survive_a_partition() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test creates network namespaces and needs root");
    }
    let net = Net::new();
    let temp = tempfile::tempdir().unwrap();
    let dir: PathBuf = temp.path().join("cluster");
    let base = free_base_port();
    let hosts = format!("{},{},{}", net.host(1), net.host(2), net.host(3));
    let (ok, _, err) = ordo(&[
        "init",
        "--hosts",
        &hosts,
        "--base-port",
        &base.to_string(),
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    CLIENT_SECRET.set(dir.join("client.secret")).unwrap();
    let written = std::fs::read_to_string(dir.join("node2/ordo.toml")).unwrap();
    assert!(
        written.contains(&format!("client_addr = \"{}:{base}\"", net.host(2))),
        "{written}"
    );
    let mut nodes: Vec<(Child, GroupGuard)> = (1..=3).map(|i| start_node(&net, &dir, i)).collect();
    let client = |i: u64| format!("{}:{base}", net.host(i));
    let sent = send(&client(1), "before", 100);
    assert_eq!(sent.len(), 100);
    // Find the leader, cut a follower off, keep committing with two.
    let deadline = Instant::now() + Duration::from_secs(10);
    let leader = loop {
        if let Some(s) = status(&client(1))
            && s["leader"].as_u64().unwrap_or(0) > 0
        {
            break s["leader"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "no leader");
        std::thread::sleep(Duration::from_millis(100));
    };
    let cut = if leader == 3 { 2 } else { 3 };
    let other = (1..=3).find(|&i| i != leader && i != cut).unwrap();
    net.link(cut, false);
    let during = send(&client(other), "during", 100);
    assert_eq!(during.len(), 100);
    assert!(during.iter().all(|l| l["leader"].as_u64() == Some(leader)));
    assert!(status(&client(cut)).is_none(), "node {cut} is unreachable");
    // Then cut the leader off and bring the follower back: the two that
    // reach each other are a quorum, elect a new leader and commit.
    net.link(leader, false);
    net.link(cut, true);
    let after = send(&client(cut), "after", 50);
    assert_eq!(after.len(), 50);
    let new_leader = after[0]["leader"].as_u64().unwrap();
    assert_ne!(new_leader, leader, "a partitioned leader is replaced");
    net.link(leader, true);
    // Every voter ends with every message: 250 plus the leaders' entries.
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in 1..=3 {
        loop {
            let n = log_len(&client(i));
            if n == 250 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} holds {n} of 250 messages"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // Metrics on each host's own address.
    for i in 1..=3 {
        let addr = format!("{}:{}", net.host(i), base + 400);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let body = http_get(&addr, "/health").unwrap_or_default();
            if body.contains("\"healthy\":true") {
                break;
            }
            assert!(Instant::now() < deadline, "node {i}: {body}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    for (child, _) in &mut nodes {
        let _ = child.kill();
        let _ = child.wait();
    }
}
