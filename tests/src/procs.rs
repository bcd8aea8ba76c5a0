//! Real `ordo` processes on 127.0.0.1 for integration tests: a cluster laid
//! out by `ordo init`, nodes started, stopped, killed and paused with
//! signals, and the CLI commands run against them.

use ordo_engine::auth::CLIENT_SECRET_ENV;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `ordo` binary built alongside the tests (`cargo test --workspace`
/// builds it into the same target directory).
pub fn ordo_binary() -> PathBuf {
    if let Ok(path) = std::env::var("ORDO_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let target = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let binary = target.join("ordo");
    if !binary.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "ordo-engine", "--bin", "ordo"])
            .status()
            .expect("cargo build");
        assert!(status.success(), "building the ordo binary failed");
    }
    binary
}

/// `count` lines of `bytes` bytes each (newline excluded), each starting
/// with `prefix` and its number, for `ProcCluster::send_lines`.
pub fn lines(prefix: &str, count: usize, bytes: usize) -> String {
    let mut text = String::with_capacity(count * (bytes + 1));
    for i in 0..count {
        let head = format!("{prefix}{i:07}-");
        text.push_str(&head);
        text.extend(std::iter::repeat_n('x', bytes.saturating_sub(head.len())));
        text.push('\n');
    }
    text
}

/// A base port `P` for a cluster laid out by `ordo init --base-port P`
/// (and `ordo cluster`): every port of the layout (`P + k`, `P + 100 + k`,
/// `P + 200 + k`, `P + 300 + k` and `P + 400 + k` for `k < 16`) is free
/// now and handed to no other test of this process.
///
/// The ports are drawn below Linux's ephemeral range (32768 on): a port
/// the OS hands out for `bind(0)` is also one it may give an outgoing
/// connection as its source port, and a node that then binds it fails.
/// Free ports are checked by binding them; tests running at once in other
/// processes draw other bases with high probability, and a clash fails
/// the node's start with an error naming the port, not a shared listener.
pub fn free_base_port() -> u16 {
    use std::sync::Mutex;
    static TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut seed = std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
    seed ^= std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    for _ in 0..1_000 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // [10_000, 32_000), in steps of 32 so that bases never overlap.
        let base = 10_000 + ((seed >> 33) % 687) as u16 * 32;
        if taken.iter().any(|&t| t.abs_diff(base) < 32) {
            continue;
        }
        let free = (0..5u16)
            .flat_map(|offset| (0..16u16).map(move |k| base + offset * 100 + k))
            .all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
        if free {
            taken.push(base);
            return base;
        }
    }
    panic!("no free base port found")
}

/// Kills a process group when dropped: a test that fails (panics) stops
/// every process it started, children of `ordo cluster` included.
pub struct GroupGuard {
    pgid: i32,
}

impl GroupGuard {
    /// Guards `child`, which must have been spawned as a process group
    /// leader (`CommandExt::process_group(0)`).
    pub fn new(child: &Child) -> Self {
        Self {
            pgid: child.id() as i32,
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        // The group may be gone already (ESRCH): nothing left to stop.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// The longest any `ordo` command of a test may run.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(180);

/// A cluster of `ordo node` processes.
pub struct ProcCluster {
    /// Where `ordo init` wrote the cluster.
    pub dir: PathBuf,
    /// Node i's client port is `base_port + i - 1`.
    pub base_port: u16,
    /// Where each node's stderr goes (`node<ID>.log`).
    pub logs: PathBuf,
    nodes: Vec<Option<Child>>,
    binary: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

/// One CLI run's outcome.
#[derive(Debug)]
pub struct Output {
    /// Exit status success.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Standard output parsed as JSON lines.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
}

impl ProcCluster {
    /// Lays out `n` voters with `ordo init` and starts them.
    pub fn start(n: usize, base_port: u16) -> Self {
        Self::start_with(n, base_port, |_| {})
    }

    /// [`ProcCluster::start`], with `edit` applied to each node's config
    /// before it starts.
    pub fn start_with(
        n: usize,
        base_port: u16,
        edit: impl Fn(&mut ordo_engine::node::NodeConfig),
    ) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().join("cluster");
        let logs = dir.clone();
        Self::start_at(dir, logs, Some(temp), n, base_port, edit)
    }

    /// [`ProcCluster::start_with`] laid out in `dir` (which must not exist
    /// yet, e.g. inside a test file system's mount), with the nodes' logs
    /// in `logs`; neither is removed after the test.
    pub fn start_in(
        dir: PathBuf,
        logs: PathBuf,
        n: usize,
        base_port: u16,
        edit: impl Fn(&mut ordo_engine::node::NodeConfig),
    ) -> Self {
        Self::start_at(dir, logs, None, n, base_port, edit)
    }

    fn start_at(
        dir: PathBuf,
        logs: PathBuf,
        temp: Option<tempfile::TempDir>,
        n: usize,
        base_port: u16,
        edit: impl Fn(&mut ordo_engine::node::NodeConfig),
    ) -> Self {
        let binary = ordo_binary();
        let init = Command::new(&binary)
            .args(["init", "--nodes", &n.to_string(), "--dir"])
            .arg(&dir)
            .args(["--base-port", &base_port.to_string()])
            .output()
            .expect("ordo init");
        assert!(
            init.status.success(),
            "ordo init failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let mut cluster = Self {
            dir,
            logs,
            base_port,
            nodes: (0..n).map(|_| None).collect(),
            binary,
            _temp: temp,
        };
        for id in 1..=n as u64 {
            let path = cluster.dir.join(format!("node{id}/ordo.toml"));
            let mut config =
                ordo_engine::node::NodeConfig::load(&path).expect("init wrote a valid config");
            let (data_dir, keys_file) = (config.data_dir.clone(), config.keys_file.clone());
            edit(&mut config);
            // `load` made the paths absolute; keep them as they were edited.
            if config.data_dir == data_dir && config.keys_file == keys_file {
                std::fs::write(&path, config.to_toml()).expect("rewrite config");
            }
            cluster.start_node(id);
        }
        cluster
    }

    /// Voters in the cluster.
    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// Node `id`'s client address.
    pub fn addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.base_port as u64 + id - 1)
    }

    /// The cluster's public keys file.
    pub fn keys(&self) -> PathBuf {
        self.dir.join("cluster.keys")
    }

    /// The cluster's client secret (`ordo init` writes it); the `ordo`
    /// commands run by [`ProcCluster::ordo`] and [`ProcCluster::spawn`]
    /// present it.
    pub fn client_secret(&self) -> PathBuf {
        self.dir.join(ordo_engine::auth::CLIENT_SECRET_FILE)
    }

    /// Starts (or restarts) node `id` with the same config.
    pub fn start_node(&mut self, id: u64) {
        let config = self.dir.join(format!("node{id}/ordo.toml"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("node{id}.log")))
            .expect("node log file");
        let child = Command::new(&self.binary)
            .args(["node", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("ordo node");
        self.nodes[id as usize - 1] = Some(child);
    }

    /// Lays out node `id` with `ordo init --add` and starts it: outside
    /// the cluster until `ordo member add` adds it.
    pub fn add_node(&mut self, id: u64) {
        let init = Command::new(&self.binary)
            .args(["init", "--add", &id.to_string(), "--dir"])
            .arg(&self.dir)
            .args(["--base-port", &self.base_port.to_string()])
            .output()
            .expect("ordo init --add");
        assert!(
            init.status.success(),
            "ordo init --add failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        if self.nodes.len() < id as usize {
            self.nodes.resize_with(id as usize, || None);
        }
        self.start_node(id);
    }

    /// Waits up to `timeout` for node `id`'s process to exit on its own;
    /// returns whether it did (and whether cleanly).
    pub fn wait_exit(&mut self, id: u64, timeout: Duration) -> Option<bool> {
        let deadline = Instant::now() + timeout;
        let child = self.nodes[id as usize - 1].as_mut()?;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.nodes[id as usize - 1] = None;
                return Some(status.success());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Node `id`'s process id.
    pub fn pid(&self, id: u64) -> i32 {
        self.nodes[id as usize - 1]
            .as_ref()
            .expect("node running")
            .id() as i32
    }

    /// Sends `signal` to node `id`'s process.
    pub fn signal(&self, id: u64, signal: i32) {
        let child = self.nodes[id as usize - 1].as_ref().expect("node running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let signal = nix::sys::signal::Signal::try_from(signal).expect("a signal number");
        nix::sys::signal::kill(pid, signal).unwrap_or_else(|e| panic!("kill({signal}): {e}"));
    }

    /// SIGKILLs node `id` and reaps it.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.nodes[id as usize - 1].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERMs node `id` and waits for it to exit; returns whether it
    /// exited cleanly.
    pub fn stop(&mut self, id: u64) -> bool {
        let Some(mut child) = self.nodes[id as usize - 1].take() else {
            return true;
        };
        // A failure means it already exited, which the wait below sees.
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

    /// Starts an `ordo` command with piped stdin, stdout and stderr.
    pub fn spawn(&self, args: &[&str]) -> Child {
        Command::new(&self.binary)
            .env(CLIENT_SECRET_ENV, self.client_secret())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ordo")
    }

    /// Runs an `ordo` command with `stdin` as its input.
    pub fn ordo(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = Command::new(&self.binary);
        command
            .env(CLIENT_SECRET_ENV, self.client_secret())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = command.spawn().expect("ordo command");
        if let Some(input) = stdin {
            use std::io::Write;
            let mut pipe = child.stdin.take().expect("stdin");
            let input = input.to_string();
            std::thread::spawn(move || {
                let _ = pipe.write_all(input.as_bytes());
            });
        }
        // No command may hang a test: past the deadline it is killed, and
        // the output says so.
        let pid = child.id() as i32;
        let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watchdog = {
            let finished = finished.clone();
            std::thread::spawn(move || {
                let deadline = Instant::now() + COMMAND_DEADLINE;
                while Instant::now() < deadline {
                    if finished.load(std::sync::atomic::Ordering::Acquire) {
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                // Our own child. It is reaped only by the waiter, which sets
                // `finished` just after; a pid reused in that instant is the
                // one (remote) risk. A failure means it exited already.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                true
            })
        };
        let output = child.wait_with_output().expect("ordo output");
        finished.store(true, std::sync::atomic::Ordering::Release);
        let killed = watchdog.join().unwrap_or(false);
        assert!(
            !killed,
            "`ordo {}` did not finish within {COMMAND_DEADLINE:?}",
            args.join(" ")
        );
        Output {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Sends `text` through node `via` with `ordo send --stdin` (one
    /// message per line) and returns the acknowledgements, one per line.
    pub fn send_lines(&self, via: u64, text: &str) -> Vec<Value> {
        let sent = self.ordo(&["send", "--node", &self.addr(via), "--stdin"], Some(text));
        assert!(sent.ok, "ordo send via node {via}: {}", sent.stderr);
        let acks = sent.json_lines();
        assert_eq!(acks.len(), text.lines().count(), "every line acknowledged");
        acks
    }

    /// `ordo status` of node `id`, if it answers within a second.
    pub fn status(&self, id: u64) -> Option<Value> {
        let output = self.ordo(
            &["status", "--node", &self.addr(id), "--timeout", "1"],
            None,
        );
        if !output.ok {
            return None;
        }
        output.json_lines().into_iter().next()
    }

    /// Waits until some live node reports itself leader; returns its id and
    /// term.
    pub fn wait_leader(&self, among: &[u64], timeout: Duration) -> Option<(u64, u64)> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            for &id in among {
                if let Some(status) = self.status(id)
                    && status["role"] == "leader"
                {
                    return Some((id, status["term"].as_u64().unwrap_or(0)));
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        None
    }

    /// Every committed message on node `id`, as `ordo log` prints them.
    pub fn log(&self, id: u64) -> Vec<Value> {
        let output = self.ordo(&["log", "--node", &self.addr(id)], None);
        assert!(output.ok, "ordo log on node {id} failed: {}", output.stderr);
        output.json_lines()
    }

    /// Waits until node `id`'s log has at least `count` messages.
    pub fn wait_log_len(&self, id: u64, count: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log(id);
            if log.len() >= count || Instant::now() >= deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ProcCluster {
    fn drop(&mut self) {
        for id in 1..=self.nodes.len() as u64 {
            self.kill(id);
        }
    }
}
