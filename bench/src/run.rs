//! One run from start to end: lay out the cluster, measure the floor on its
//! filesystem, start the nodes, drive the load while a monitor thread
//! shows progress and samples memory, stop the nodes, report.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cluster::{Layout, Running, rss_mib};
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
            window.clone(),
        )
    });
    let monitor = Monitor::start(spec, pids, answered, window, progress);
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
    let alive = match running.as_mut() {
        Some(running) => running.check_alive(layout.dir.path()),
        None => Ok(()),
    };
    let stopped = running.map_or(Ok(()), Running::stop);
    let tally = tally?;
    alive?;
    stopped?;
    let mut result = RunResult::new(spec, floor, &tally, memory);
    result.transfers = transfers;
    Ok(RunOutcome {
        result,
        histogram: tally.histogram,
    })
}

/// `--transfer-every`: from the start of the measured window to its end,
/// hands leadership to the voter after the current leader every `every`,
/// as `ordo transfer` does; returns how many transfers succeeded.
fn transfer_loop(
    every: Duration,
    addrs: Vec<std::net::SocketAddr>,
    cluster_id: u64,
    window: Arc<std::sync::OnceLock<Phases>>,
) -> std::thread::JoinHandle<Result<u64, String>> {
    std::thread::spawn(move || {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .name("ordo-bench-transfer")
            .io_memory(256 << 10)
            .spawn(move || async move {
                let phases = loop {
                    if let Some(phases) = window.get() {
                        break *phases;
                    }
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                };
                let nodes = addrs.len() as u64;
                let options = ordo_engine::client::ClientOptions {
                    cluster_id,
                    timeout: Duration::from_secs(5),
                    ..Default::default()
                };
                let mut client =
                    ordo_engine::client::Client::new(addrs, options).map_err(|e| e.to_string())?;
                let mut done = 0;
                loop {
                    let now = Instant::now();
                    let at = if now < phases.measure_start {
                        phases.measure_start + every / 2
                    } else {
                        now + every
                    };
                    if at >= phases.end {
                        return Ok(done);
                    }
                    glommio::timer::sleep(at - now).await;
                    let (_, leader) = client.status().await.map_err(|e| e.to_string())?;
                    let to = leader.id % nodes + 1;
                    let command = ordo_engine::client::AdminCommand::TransferLeadership { to };
                    match client.admin(command).await {
                        Ok(_) => done += 1,
                        Err(error) => {
                            eprintln!("ordo-bench: transfer to node {to} failed: {error}")
                        }
                    }
                }
            })
            .map_err(|e| format!("cannot start the transfer executor: {e}"))?
            .join()
            .map_err(|e| format!("the transfer executor failed: {e}"))?
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
                                samples_mib: Vec::new(),
                                start_mib: mib,
                                end_mib: mib,
                                max_mib: mib,
                            });
                            m.samples_mib.push(mib);
                            m.end_mib = mib;
                            m.max_mib = m.max_mib.max(mib);
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
                memory.unwrap_or_default()
            }
        });
        Self { stop, thread }
    }

    fn stop(self) -> Memory {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}
