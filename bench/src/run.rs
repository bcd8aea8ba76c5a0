//! One run from start to end: lay out the cluster, measure the floor on its
//! filesystem, start the nodes, drive the load while a monitor thread
//! shows progress and samples memory, stop the nodes, report.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cluster::{Layout, Running, cpu_seconds, rss_mib};
use crate::load::{self, Load, Phases};
use crate::report::{Memory, RunOutcome, RunResult};
use crate::spec::{RunSpec, TransportKind};

/// How often the monitor samples memory and redraws progress.
const MONITOR_INTERVAL: Duration = Duration::from_millis(200);

/// Runs `spec` once. `progress`: draw a progress bar on stderr.
pub fn run_one(spec: &RunSpec, progress: bool) -> Result<RunOutcome, String> {
    if spec.fsync == "none" && spec.storage == crate::spec::StorageKind::Disk {
        eprintln!(
            "ordo-bench: WARNING fsync none: the log never calls fdatasync, so \
             'committed' here is not durable. For measuring only."
        );
    }
    let layout = Layout::new(spec)?;
    let floor = crate::floor::measure(layout.dir.path())?;
    let answered = Arc::new(AtomicU64::new(0));
    let window = Arc::new(std::sync::OnceLock::new());
    let load = Load {
        concurrency: spec.concurrency,
        connections: spec.connections,
        payload: Bytes::from(vec![0x6Fu8; spec.payload_bytes]),
        warmup: spec.warmup,
        duration: spec.duration,
        answered: answered.clone(),
        window: window.clone(),
        access: layout.access.clone(),
        rate: spec.rate,
    };
    let (mut running, pids) = match (spec.transport, spec.procs) {
        (TransportKind::Inproc, _) => (None, Vec::new()),
        (TransportKind::Tcp, false) => (Some(Running::threads(&layout)?), Vec::new()),
        (TransportKind::Tcp, true) => {
            let running = Running::procs(&layout)?;
            let pids = running.pids();
            (Some(running), pids)
        }
    };
    let transfers = spec.transfer_every.map(|every| {
        transfer_loop(
            every,
            layout.client_addrs(),
            layout.cluster_id(),
            layout.access.clone(),
            window.clone(),
        )
    });
    let changes = spec.change_every.map(|every| {
        change_loop(
            every,
            spec.nodes as u64 + 1,
            layout.client_addrs(),
            layout.cluster_id(),
            layout.access.clone(),
            window.clone(),
        )
    });
    let monitor = Monitor::start(
        spec,
        pids,
        layout.dir.path().to_path_buf(),
        answered,
        window,
        progress,
    );
    let tally = match spec.transport {
        TransportKind::Inproc => load::inproc(layout.configs.clone(), load),
        TransportKind::Tcp => load::tcp(layout.client_addrs(), layout.cluster_id(), load),
    };
    let memory = monitor.stop();
    let transfers = match transfers {
        Some(thread) => thread
            .join()
            .map_err(|_| "the transfer thread panicked".to_string())??,
        None => 0,
    };
    let changes = match changes {
        Some(thread) => thread
            .join()
            .map_err(|_| "the membership thread panicked".to_string())??,
        None => 0,
    };
    let alive = match running.as_mut() {
        Some(running) => running.check_alive(layout.dir.path()),
        None => Ok(()),
    };
    let stopped = running.map_or(Ok(()), Running::stop);
    let tally = tally?;
    alive?;
    stopped?;
    let timeline = memory.timeline.clone();
    let mut result = RunResult::new(spec, floor, &tally, memory);
    result.transfers = transfers;
    result.changes = changes;
    Ok(RunOutcome {
        result,
        histogram: tally.histogram,
        timeline,
    })
}

/// `--transfer-every`: from the start of the measured window to its end,
/// hands leadership to the voter after the current leader every `every`,
/// as `ordo transfer` does; returns how many transfers succeeded.
fn transfer_loop(
    every: Duration,
    addrs: Vec<std::net::SocketAddr>,
    cluster_id: u64,
    access: crate::cluster::ClientAccess,
    window: Arc<std::sync::OnceLock<Phases>>,
) -> std::thread::JoinHandle<Result<u64, String>> {
    let nodes = addrs.len() as u64;
    admin_loop(
        "transfer",
        false,
        every,
        addrs,
        cluster_id,
        access,
        window,
        move |_| {
            Box::new(move |client: &mut Client| {
                Box::pin(async move {
                    let (_, leader) = client.status().await.map_err(|e| e.to_string())?;
                    let to = leader.id % nodes + 1;
                    client
                        .admin(AdminCommand::TransferLeadership { to })
                        .await
                        .map(|_| ())
                        .map_err(|error| format!("transfer to node {to}: {error}"))
                })
            })
        },
    )
}

/// `--change-every`: from the start of the measured window to its end,
/// alternately adds node `id` as a learner and removes it, every `every`,
/// as `ordo member add --learner` and `ordo member remove` do; returns how
/// many changes committed (the last add is undone after the window). Node
/// `id` is never started: the change is the configuration entry committed
/// under load (and the leader's probes of an unreachable learner), not a
/// learner's catch-up.
fn change_loop(
    every: Duration,
    id: u64,
    addrs: Vec<std::net::SocketAddr>,
    cluster_id: u64,
    access: crate::cluster::ClientAccess,
    window: Arc<std::sync::OnceLock<Phases>>,
) -> std::thread::JoinHandle<Result<u64, String>> {
    // Port 1 on loopback: nothing listens, the leader's connection
    // attempts fail at once.
    let info = ordo_engine::node::members::MemberInfo {
        peer_addr: "127.0.0.1:1".parse().expect("an address"),
        client_addr: "127.0.0.1:1".parse().expect("an address"),
        gossip_addr: None,
        public_key: [0; 32],
    }
    .encode()
    .to_vec();
    admin_loop(
        "members",
        true,
        every,
        addrs,
        cluster_id,
        access,
        window,
        move |n| {
            let command = match n % 2 {
                0 => AdminCommand::AddMember {
                    id,
                    learner: true,
                    info: info.clone(),
                },
                _ => AdminCommand::RemoveMember { id },
            };
            Box::new(move |client: &mut Client| {
                Box::pin(async move {
                    client
                        .admin(command)
                        .await
                        .map(|_| ())
                        .map_err(|error| format!("membership change: {error}"))
                })
            })
        },
    )
}

type Client = ordo_engine::client::Client;
type AdminCommand = ordo_engine::client::AdminCommand;
/// One administrative action on a client.
type AdminStep = Box<
    dyn for<'a> FnOnce(
        &'a mut Client,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), String>> + 'a>,
    >,
>;

/// Runs `step(n)` for n = 0, 1, … every `every` from the start of the
/// measured window (half an interval in) to its end, on a thread and
/// executor of its own (`name`); each action that fails is reported and
/// not counted. With `pairs`, one more action runs after the window if
/// the count is odd (`--change-every` removes the learner it added last).
/// Returns how many actions succeeded.
#[allow(clippy::too_many_arguments)]
fn admin_loop(
    name: &'static str,
    pairs: bool,
    every: Duration,
    addrs: Vec<std::net::SocketAddr>,
    cluster_id: u64,
    access: crate::cluster::ClientAccess,
    window: Arc<std::sync::OnceLock<Phases>>,
    mut step: impl FnMut(u64) -> AdminStep + Send + 'static,
) -> std::thread::JoinHandle<Result<u64, String>> {
    std::thread::spawn(move || {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .name(&format!("ordo-bench-{name}"))
            .io_memory(256 << 10)
            .spawn(move || async move {
                let phases = loop {
                    if let Some(phases) = window.get() {
                        break *phases;
                    }
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                };
                let options = ordo_engine::client::ClientOptions {
                    cluster_id,
                    credential: access.credential,
                    tls: access.tls,
                    timeout: Duration::from_secs(5),
                    ..Default::default()
                };
                let mut client = Client::new(addrs, options).map_err(|e| e.to_string())?;
                let mut done = 0;
                loop {
                    let now = Instant::now();
                    let at = if now < phases.measure_start {
                        phases.measure_start + every / 2
                    } else {
                        now + every
                    };
                    if at >= phases.end {
                        break;
                    }
                    glommio::timer::sleep(at - now).await;
                    match step(done)(&mut client).await {
                        Ok(()) => done += 1,
                        Err(error) => eprintln!("ordo-bench: {error}"),
                    }
                }
                if pairs
                    && done % 2 == 1
                    && let Err(error) = step(done)(&mut client).await
                {
                    eprintln!("ordo-bench: {error}");
                }
                Ok(done)
            })
            .map_err(|e| format!("cannot start the {name} executor: {e}"))?
            .join()
            .map_err(|e| format!("the {name} executor failed: {e}"))?
    })
}

/// The thread that draws progress and samples resident memory.
struct Monitor {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Memory>,
}

impl Monitor {
    fn start(
        spec: &RunSpec,
        pids: Vec<u32>,
        data_dir: std::path::PathBuf,
        answered: Arc<AtomicU64>,
        window: Arc<std::sync::OnceLock<Phases>>,
        progress: bool,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let total = spec.warmup + spec.duration;
        let label = spec.label();
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let bar = if progress {
                    let bar = ProgressBar::new(total.as_millis() as u64);
                    bar.set_style(
                        ProgressStyle::with_template("{prefix} [{bar:30}] {elapsed_precise} {msg}")
                            .expect("a valid template")
                            .progress_chars("=> "),
                    );
                    bar.set_prefix(label);
                    bar
                } else {
                    ProgressBar::hidden()
                };
                let start = Instant::now();
                let mut memory: Option<Memory> = None;
                let mut cpu_first: Option<(Instant, f64)> = None;
                let mut cpu_last: Option<(Instant, f64)> = None;
                let mut writes_first: Option<(Instant, u64)> = None;
                let mut writes_last: Option<(Instant, u64)> = None;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(MONITOR_INTERVAL);
                    let elapsed = start.elapsed();
                    // Memory is sampled inside the load's measured window
                    // only (it starts once the cluster has a leader).
                    let measuring = window.get().is_some_and(|phases| {
                        let now = Instant::now();
                        now >= phases.measure_start && now <= phases.end
                    });
                    if measuring {
                        let sample = if pids.is_empty() {
                            rss_mib(None)
                        } else {
                            pids.iter()
                                .filter_map(|&pid| rss_mib(Some(pid)))
                                .reduce(f64::max)
                        };
                        if let Some(mib) = sample {
                            let m = memory.get_or_insert(Memory {
                                cpu_cores: None,
                                disk_writes_per_s: None,
                                timeline: Vec::new(),
                                samples_mib: Vec::new(),
                                start_mib: mib,
                                end_mib: mib,
                                max_mib: mib,
                            });
                            m.samples_mib.push(mib);
                            if let Some(phases) = window.get() {
                                m.timeline.push((
                                    Instant::now()
                                        .saturating_duration_since(phases.measure_start)
                                        .as_secs_f64(),
                                    answered.load(Ordering::Relaxed),
                                    mib,
                                ));
                            }
                            m.end_mib = mib;
                            m.max_mib = m.max_mib.max(mib);
                        }
                        // CPU of every process of the run: the node
                        // processes with `--procs`, and this one (the load,
                        // and the nodes too without `--procs`).
                        let cpu = pids
                            .iter()
                            .map(|&pid| cpu_seconds(Some(pid)))
                            .chain(std::iter::once(cpu_seconds(None)))
                            .sum::<Option<f64>>();
                        if let Some(cpu) = cpu {
                            let now = Instant::now();
                            cpu_first.get_or_insert((now, cpu));
                            cpu_last = Some((now, cpu));
                        }
                        if let Some(writes) = crate::floor::device_writes(&data_dir) {
                            let now = Instant::now();
                            writes_first.get_or_insert((now, writes));
                            writes_last = Some((now, writes));
                        }
                    }
                    let answers = answered.load(Ordering::Relaxed);
                    bar.set_position(elapsed.min(total).as_millis() as u64);
                    bar.set_message(format!(
                        "{} answers, {:.0}/s",
                        answers,
                        answers as f64 / elapsed.as_secs_f64().max(1e-3)
                    ));
                }
                bar.finish_and_clear();
                let mut memory = memory.unwrap_or_default();
                if let (Some((t0, cpu0)), Some((t1, cpu1))) = (cpu_first, cpu_last)
                    && t1 > t0
                {
                    memory.cpu_cores = Some((cpu1 - cpu0) / (t1 - t0).as_secs_f64());
                }
                if let (Some((t0, w0)), Some((t1, w1))) = (writes_first, writes_last)
                    && t1 > t0
                {
                    memory.disk_writes_per_s =
                        Some(w1.saturating_sub(w0) as f64 / (t1 - t0).as_secs_f64());
                }
                memory
            }
        });
        Self { stop, thread }
    }

    fn stop(self) -> Memory {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}
