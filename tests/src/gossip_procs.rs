//! Real `ordo gossip` processes beside a [`ProcCluster`] of voters: gossip
//! nodes started, SIGKILLed and restarted with their data directories, and
//! what they deliver read back with `ordo log` and checked with
//! `ordo verify`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::procs::{ProcCluster, ordo_binary};

/// Gossip node `j` listens on `base_port + GOSSIP_NODE_PORT_OFFSET + j - 1`
/// (as `ordo cluster` lays them out).
pub const GOSSIP_NODE_PORT_OFFSET: u16 = 300;
/// A voter's gossip port is `base_port + VOTER_GOSSIP_PORT_OFFSET + i - 1`
/// (`ordo init`).
pub const VOTER_GOSSIP_PORT_OFFSET: u16 = 200;

/// Voters and gossip nodes.
pub struct GossipCluster {
    /// The voters (and the CLI runner).
    pub voters: ProcCluster,
    gossip: Vec<Option<Child>>,
    /// Seeds every gossip node starts with (the voters' gossip addresses,
    /// unless a test says otherwise).
    pub seeds: Vec<String>,
    /// More arguments for `ordo gossip` (e.g. `--retain-bytes`), used by
    /// the next [`GossipCluster::start_gossip`].
    pub extra_args: Vec<String>,
    binary: PathBuf,
}

impl GossipCluster {
    /// Starts `voters` voters and `gossip` gossip nodes (each with a data
    /// directory), all seeded by the voters' gossip addresses.
    pub fn start(voters: usize, gossip: usize, base_port: u16) -> Self {
        let cluster = ProcCluster::start(voters, base_port);
        let seeds = (1..=voters as u16)
            .map(|i| format!("127.0.0.1:{}", base_port + VOTER_GOSSIP_PORT_OFFSET + i - 1))
            .collect();
        let mut this = Self {
            voters: cluster,
            gossip: (0..gossip).map(|_| None).collect(),
            seeds,
            extra_args: Vec::new(),
            binary: ordo_binary(),
        };
        for j in 1..=gossip {
            this.start_gossip(j);
        }
        this
    }

    /// Gossip node `j`'s address (gossip and clients).
    pub fn gossip_addr(&self, j: usize) -> String {
        format!(
            "127.0.0.1:{}",
            self.voters.base_port + GOSSIP_NODE_PORT_OFFSET + j as u16 - 1
        )
    }

    /// Gossip node `j`'s data directory.
    pub fn gossip_dir(&self, j: usize) -> PathBuf {
        self.voters.dir.join(format!("gossip{j}"))
    }

    /// Gossip node `j`'s log file (its stderr).
    pub fn gossip_log_file(&self, j: usize) -> PathBuf {
        self.voters.dir.join(format!("gossip{j}.log"))
    }

    /// Starts (or restarts) gossip node `j` with its data directory.
    pub fn start_gossip(&mut self, j: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.gossip_log_file(j))
            .expect("gossip log file");
        let child = Command::new(&self.binary)
            .args(["gossip", "--listen", &self.gossip_addr(j), "--seeds"])
            .arg(self.seeds.join(","))
            .arg("--keys")
            .arg(self.voters.keys())
            .arg("--data-dir")
            .arg(self.gossip_dir(j))
            .args(&self.extra_args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("ordo gossip");
        if self.gossip.len() < j {
            self.gossip.resize_with(j, || None);
        }
        self.gossip[j - 1] = Some(child);
    }

    /// SIGKILLs gossip node `j` and reaps it.
    pub fn kill_gossip(&mut self, j: usize) {
        if let Some(mut child) = self.gossip.get_mut(j - 1).and_then(Option::take) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERMs gossip node `j` and waits for it; whether it exited
    /// cleanly.
    pub fn stop_gossip(&mut self, j: usize) -> bool {
        let Some(mut child) = self.gossip.get_mut(j - 1).and_then(Option::take) else {
            return true;
        };
        // A child this harness started and has not reaped; a failure means
        // it already exited, which the wait below sees.
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Every message gossip node `j` delivered, as `ordo log` prints them
    /// (`None` if it does not answer). Gossip nodes serve clients in plain
    /// TCP (docs/operations.md, "Encryption").
    pub fn gossip_log(&self, j: usize) -> Option<Vec<Value>> {
        let output = self.voters.ordo(
            &[
                "log",
                "--no-tls",
                "--node",
                &self.gossip_addr(j),
                "--timeout",
                "2",
            ],
            None,
        );
        output.ok.then(|| output.json_lines())
    }

    /// Waits until gossip node `j` delivered at least `count` messages.
    pub fn wait_gossip_log(&self, j: usize, count: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.gossip_log(j).unwrap_or_default();
            if log.len() >= count || Instant::now() >= deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `ordo verify` on log lines; its stderr on failure.
    pub fn verify(&self, lines: &[Value]) -> Result<(), String> {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let keys = self.voters.keys();
        let output = self.voters.ordo(
            &["verify", "--keys", keys.to_str().expect("utf-8 path")],
            Some(&text),
        );
        if output.ok {
            Ok(())
        } else {
            Err(output.stderr)
        }
    }

    /// The last `gossip stats` counters gossip node `j` logged (it logs
    /// them every 10 s and when it stops), by name.
    pub fn gossip_stats(&self, j: usize) -> Option<std::collections::BTreeMap<String, u64>> {
        let text = std::fs::read_to_string(self.gossip_log_file(j)).ok()?;
        let line = text.lines().rev().find(|l| l.contains("gossip stats"))?;
        Some(parse_fields(line))
    }
}

/// `key=value` fields of a log line whose values are numbers (ANSI colour
/// codes, if any, removed).
pub fn parse_fields(line: &str) -> std::collections::BTreeMap<String, u64> {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
        .split_whitespace()
        .filter_map(|field| {
            let (key, value) = field.split_once('=')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

impl Drop for GossipCluster {
    fn drop(&mut self) {
        for j in 1..=self.gossip.len() {
            self.kill_gossip(j);
        }
    }
}
