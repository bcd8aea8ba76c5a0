//! Closed-loop proposers: each keeps exactly one proposal in flight, and
//! proposes again as soon as the answer arrives. Latency is measured at the
//! proposer, from the moment it hands the proposal over to the moment it
//! holds the answer.
//!
//! Open loop (`--rate R`, TCP): proposals are due at a fixed rate, the k-th
//! at `k / R` seconds, whether or not earlier ones were answered, and each
//! one's latency counts from when it was due, not from when it could be
//! sent. A stall therefore shows in every proposal that waited behind it
//! (no coordinated omission), and a rate above what the cluster sustains
//! shows as latency growing with the queue.
//!
//! Two drivers: [`tcp`] speaks the client protocol to the leader's client
//! port (what a real client pays: encode, socket, the node's client path,
//! answer), and [`inproc`] runs the whole cluster and its proposers on one
//! executor, proposing through the embedding handle (the engine-only mode).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future;
use hdrhistogram::Histogram;
use ordo_engine::core::Role;
use ordo_engine::node::{
    InprocPeers, LocalNode, NodeConfig, NodeHandle, NullStateMachine, StartOptions,
};
use ordo_net::client::{ClientRequest, ClientResponse, NodeRole, ProposeRequest, StatusRequest};
use ordo_net::transport::ClientConnection;

use crate::floor::{new_histogram, record};

/// How long a cluster may take to elect its first leader.
const LEADER_WAIT: Duration = Duration::from_secs(15);
/// How long proposals still in flight at the end may take to answer.
const DRAIN_WAIT: Duration = Duration::from_secs(10);
/// Bits of a request id that name the proposer slot on its connection.
const SLOT_BITS: u32 = 20;
/// Messages each in-process peer channel holds.
const INPROC_CHANNEL_MESSAGES: usize = 1 << 16;
/// Open loop: proposals sent and not yet answered, over all connections.
/// Past it the sender waits (the waiting still counts in their latency),
/// so an overloaded cluster costs the benchmark bounded memory.
const OPEN_LOOP_OUTSTANDING_MAX: usize = 1 << 20;

/// When a run measures.
#[derive(Clone, Copy, Debug)]
pub struct Phases {
    /// Proposals that start before this are warm-up: not recorded.
    pub measure_start: Instant,
    /// No proposal starts at or after this; answers after it are not
    /// recorded.
    pub end: Instant,
}

impl Phases {
    /// Warm-up from now, then `duration` of measurement.
    pub fn starting_now(warmup: Duration, duration: Duration) -> Self {
        let measure_start = Instant::now() + warmup;
        Self {
            measure_start,
            end: measure_start + duration,
        }
    }
}

/// What the proposers saw in the measured window.
pub struct Tally {
    /// Commit latency in nanoseconds.
    pub histogram: Histogram<u64>,
    /// Proposals that started and committed inside the window.
    pub commits: u64,
    /// Proposals that failed inside the window.
    pub errors: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            histogram: new_histogram(),
            commits: 0,
            errors: 0,
            first_error: None,
        }
    }
}

impl Tally {
    /// Records a proposal that started at `start` and was answered at `end`.
    fn finish(
        &mut self,
        phases: &Phases,
        start: Instant,
        end: Instant,
        outcome: Result<(), String>,
    ) {
        if end > phases.end {
            return;
        }
        self.finish_started(phases, start, end, outcome);
    }

    /// Records a proposal due at `start` inside the window, however late
    /// its answer (open loop: dropping the slow ones would hide them).
    fn finish_started(
        &mut self,
        phases: &Phases,
        start: Instant,
        end: Instant,
        outcome: Result<(), String>,
    ) {
        if start < phases.measure_start || start >= phases.end {
            return;
        }
        match outcome {
            Ok(()) => {
                self.commits += 1;
                record(&mut self.histogram, end - start);
            }
            Err(error) => {
                self.errors += 1;
                self.first_error.get_or_insert(error);
            }
        }
    }

    /// Adds another tally's counts.
    pub fn merge(&mut self, other: Tally) {
        self.histogram
            .add(&other.histogram)
            .expect("histograms with the same bounds");
        self.commits += other.commits;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// The load's shape.
#[derive(Clone, Debug)]
pub struct Load {
    /// Proposers.
    pub concurrency: usize,
    /// Client connections they share (TCP).
    pub connections: usize,
    /// The payload every proposal carries.
    pub payload: Bytes,
    /// Warm-up.
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
    /// Answers so far (for the progress bar).
    pub answered: Arc<AtomicU64>,
    /// The measured window, set once the cluster has a leader and the load
    /// starts (the monitor samples memory inside it).
    pub window: Arc<std::sync::OnceLock<Phases>>,
    /// What the load's clients present and trust.
    pub access: crate::cluster::ClientAccess,
    /// Open loop: proposals per second offered, over all connections
    /// (`None`: closed loop, `concurrency` proposers).
    pub rate: Option<u64>,
}

/// Runs the load over TCP against the cluster at `addrs` on an executor of
/// its own; returns when every proposal has been answered (or given up on).
pub fn tcp(addrs: Vec<SocketAddr>, cluster_id: u64, load: Load) -> Result<Tally, String> {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("ordo-bench-load")
        .io_memory(512 << 10)
        .spawn(move || async move { tcp_on_executor(addrs, cluster_id, load).await })
        .map_err(|e| format!("cannot start the load executor: {e}"))?
        .join()
        .map_err(|e| format!("the load executor failed: {e}"))?
}

async fn tcp_on_executor(
    addrs: Vec<SocketAddr>,
    cluster_id: u64,
    load: Load,
) -> Result<Tally, String> {
    let leader = find_leader_tcp(&addrs, cluster_id, &load.access).await?;
    let mut connections = Vec::new();
    for k in 0..load.connections {
        // Proposers spread evenly: connection k gets every k-th one.
        let proposers = (load.concurrency + load.connections - 1 - k) / load.connections;
        let config = load.access.config(cluster_id);
        let connection = ClientConnection::connect(leader, &config)
            .await
            .map_err(|e| format!("cannot connect to the leader at {leader}: {e}"))?;
        connections.push((connection, proposers));
    }
    let phases = Phases::starting_now(load.warmup, load.duration);
    let _ = load.window.set(phases);
    let tasks: Vec<_> = connections
        .into_iter()
        .map(|(connection, proposers)| {
            let load = load.clone();
            match load.rate {
                Some(rate) => {
                    let share = rate as f64 / load.connections as f64;
                    let outstanding_max = OPEN_LOOP_OUTSTANDING_MAX / load.connections;
                    glommio::spawn_local(drive_open_loop(
                        connection,
                        share,
                        outstanding_max,
                        load,
                        phases,
                    ))
                    .detach()
                }
                None => glommio::spawn_local(drive_connection(connection, proposers, load, phases))
                    .detach(),
            }
        })
        .collect();
    let mut tally = Tally::default();
    for task in tasks {
        match task.await {
            Some(Ok(part)) => tally.merge(part),
            Some(Err(error)) => return Err(error),
            None => return Err("a connection task was cancelled".into()),
        }
    }
    Ok(tally)
}

/// Asks every node for its status until one says it leads; returns the
/// leader's client address.
async fn find_leader_tcp(
    addrs: &[SocketAddr],
    cluster_id: u64,
    access: &crate::cluster::ClientAccess,
) -> Result<SocketAddr, String> {
    let deadline = Instant::now() + LEADER_WAIT;
    let mut last = String::from("no node answered");
    while Instant::now() < deadline {
        for &addr in addrs {
            let mut config = access.config(cluster_id);
            config.connect_timeout = Duration::from_millis(300);
            let answer = match ClientConnection::connect(addr, &config).await {
                Ok(connection) => connection
                    .call(&ClientRequest::Status(StatusRequest { request_id: 1 }))
                    .await
                    .map_err(|e| format!("{addr}: {e}")),
                Err(e) => Err(format!("{addr}: {e}")),
            };
            match answer {
                Ok(ClientResponse::Status(status)) if status.status.role == NodeRole::Leader => {
                    return Ok(addr);
                }
                Ok(_) => last = format!("{addr} does not lead"),
                Err(error) => last = error,
            }
        }
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
    Err(format!(
        "no leader within {} s ({last})",
        LEADER_WAIT.as_secs()
    ))
}

/// `proposers` closed loops over one connection. A writer task sends
/// whatever proposals are queued in one `sendmsg`; this task reads answers
/// and queues each proposer's next proposal, so the proposals answered by
/// one read go out in one write.
async fn drive_connection(
    connection: ClientConnection,
    proposers: usize,
    load: Load,
    phases: Phases,
) -> Result<Tally, String> {
    let connection = Rc::new(connection);
    let (queue, queued) = async_channel::unbounded::<ClientRequest>();
    let writer = glommio::spawn_local({
        let connection = connection.clone();
        async move {
            let mut batch = Vec::new();
            while let Ok(first) = queued.recv().await {
                batch.push(first);
                while let Ok(more) = queued.try_recv() {
                    batch.push(more);
                }
                connection
                    .send_many(&batch)
                    .await
                    .map_err(|e| format!("sending proposals: {e}"))?;
                batch.clear();
            }
            Ok::<(), String>(())
        }
    })
    .detach();
    let mut counter = 0u64;
    let mut next_request = |slot: usize| {
        counter += 1;
        ClientRequest::Propose(ProposeRequest {
            request_id: (counter << SLOT_BITS) | slot as u64,
            // No session: the benchmark never retries, so it needs no
            // deduplication (a retrying client pays one session lookup more).
            client_id: 0,
            seq: 0,
            payload: load.payload.clone(),
            redirect: false,
        })
    };
    let mut starts = vec![Instant::now(); proposers];
    for (slot, start) in starts.iter_mut().enumerate() {
        *start = Instant::now();
        let _ = queue.try_send(next_request(slot));
    }
    let mut tally = Tally::default();
    let mut outstanding = proposers;
    let give_up = phases.end + DRAIN_WAIT;
    while outstanding > 0 {
        let (request_id, outcome) = match next_answer(&connection, give_up).await? {
            Answer::Proposal(request_id, outcome) => (request_id, outcome),
            Answer::Other => continue,
            Answer::GaveUp => {
                tally.errors += outstanding as u64;
                tally
                    .first_error
                    .get_or_insert(format!("{outstanding} proposals unanswered at the end"));
                break;
            }
        };
        let slot = (request_id & ((1 << SLOT_BITS) - 1)) as usize;
        let Some(start) = starts.get_mut(slot) else {
            return Err(format!("an answer to unknown request {request_id}"));
        };
        let now = Instant::now();
        ordo_engine::node::timeline::mark(0, "client.answer", 0, 0);
        tally.finish(&phases, *start, now, outcome);
        load.answered.fetch_add(1, Ordering::Relaxed);
        if now < phases.end {
            *start = now;
            ordo_engine::node::timeline::mark(0, "client.send", 0, 0);
            let _ = queue.try_send(next_request(slot));
        } else {
            outstanding -= 1;
        }
    }
    drop(queue);
    if let Some(Err(error)) = writer.await {
        return Err(error);
    }
    Ok(tally)
}

/// The next frame from the leader, as a proposer sees it.
enum Answer {
    /// The answer to a proposal: its request id and outcome (an error
    /// response is a failed proposal: a request the node could not serve).
    Proposal(u64, Result<(), String>),
    /// Any other frame (skipped).
    Other,
    /// Nothing came before `give_up`.
    GaveUp,
}

/// Reads the next frame, waiting at most until `give_up`; an error when
/// the connection fails.
async fn next_answer(connection: &ClientConnection, give_up: Instant) -> Result<Answer, String> {
    let wait = give_up.saturating_duration_since(Instant::now());
    let answer = future::or(async { Some(connection.recv().await) }, async {
        glommio::timer::sleep(wait).await;
        None
    })
    .await;
    Ok(match answer {
        Some(Ok(ClientResponse::Propose(response))) => Answer::Proposal(
            response.request_id,
            response.result.map(|_| ()).map_err(|e| e.to_string()),
        ),
        Some(Ok(ClientResponse::Error(error))) => {
            Answer::Proposal(error.request_id, Err(error.error.to_string()))
        }
        Some(Ok(_)) => Answer::Other,
        Some(Err(error)) => return Err(format!("the leader's connection failed: {error}")),
        None => Answer::GaveUp,
    })
}

/// Open loop over one connection: proposals due at `rate` per second from
/// now until the window's end, each sent at once when due (the sender
/// catches up in one `sendmsg` when it fell behind), each answer's latency
/// counted from when its proposal was due.
async fn drive_open_loop(
    connection: ClientConnection,
    rate: f64,
    outstanding_max: usize,
    load: Load,
    phases: Phases,
) -> Result<Tally, String> {
    let connection = Rc::new(connection);
    let origin = Instant::now();
    let due = move |k: u64| origin + Duration::from_secs_f64(k as f64 / rate);
    // Every proposal due before the end is sent, however late: the total
    // is known now, and the reader stops once it has that many answers.
    let total = (phases.end.saturating_duration_since(origin).as_secs_f64() * rate).ceil() as u64;
    let total = (0..=total)
        .rev()
        .find(|&k| k == 0 || due(k - 1) < phases.end)
        .unwrap_or(0);
    // Request id → when it was due.
    let intended: Rc<RefCell<std::collections::HashMap<u64, Instant>>> = Rc::default();
    let sender = glommio::spawn_local({
        let (connection, intended, payload) =
            (connection.clone(), intended.clone(), load.payload.clone());
        async move {
            let mut sent = 0u64;
            let mut batch = Vec::new();
            while sent < total {
                let now = Instant::now();
                while sent < total && due(sent) <= now && intended.borrow().len() < outstanding_max
                {
                    let request_id = sent + 1;
                    intended.borrow_mut().insert(request_id, due(sent));
                    batch.push(ClientRequest::Propose(ProposeRequest {
                        request_id,
                        client_id: 0,
                        seq: 0,
                        payload: payload.clone(),
                        redirect: false,
                    }));
                    sent += 1;
                }
                if !batch.is_empty() {
                    connection
                        .send_many(&batch)
                        .await
                        .map_err(|e| format!("sending proposals: {e}"))?;
                    batch.clear();
                }
                if sent < total {
                    // The next one's due time, or a short pause while the
                    // outstanding bound holds the sender back.
                    let wait = due(sent)
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_micros(20));
                    glommio::timer::sleep(wait).await;
                }
            }
            Ok::<(), String>(())
        }
    })
    .detach();
    let mut tally = Tally::default();
    let mut answered = 0u64;
    let give_up = phases.end + DRAIN_WAIT;
    while answered < total {
        let (request_id, outcome) = match next_answer(&connection, give_up).await? {
            Answer::Proposal(request_id, outcome) => (request_id, outcome),
            Answer::Other => continue,
            Answer::GaveUp => {
                let unanswered = total - answered;
                tally.errors += unanswered;
                tally
                    .first_error
                    .get_or_insert(format!("{unanswered} proposals unanswered at the end"));
                break;
            }
        };
        let Some(start) = intended.borrow_mut().remove(&request_id) else {
            return Err(format!("an answer to unknown request {request_id}"));
        };
        answered += 1;
        tally.finish_started(&phases, start, Instant::now(), outcome);
        load.answered.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(Err(error)) = sender.await {
        return Err(error);
    }
    Ok(tally)
}

/// The engine-only mode: every node of `configs` and every proposer on one
/// executor of this thread, peers linked by in-process channels, proposals
/// through the embedding handle. No sockets; with `storage = memory` no
/// disk either.
pub fn inproc(configs: Vec<NodeConfig>, load: Load) -> Result<Tally, String> {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("ordo-bench-inproc")
        .io_memory(512 << 10)
        .spawn(move || async move { inproc_on_executor(configs, load).await })
        .map_err(|e| format!("cannot start the executor: {e}"))?
        .join()
        .map_err(|e| format!("the executor failed: {e}"))?
}

async fn inproc_on_executor(configs: Vec<NodeConfig>, load: Load) -> Result<Tally, String> {
    let ids: Vec<u64> = configs.iter().map(|c| c.id).collect();
    let meshes = InprocPeers::mesh(&ids, INPROC_CHANNEL_MESSAGES);
    let mut nodes = Vec::new();
    for (config, peers) in configs.into_iter().zip(meshes) {
        let options = StartOptions {
            inproc: Some(peers),
            no_client_server: true,
            ..StartOptions::default()
        };
        let node = LocalNode::start(config, || Box::new(NullStateMachine), options)
            .await
            .map_err(|e| e.to_string())?;
        nodes.push(node);
    }
    let handles: Vec<NodeHandle> = nodes.iter().map(LocalNode::handle).collect();
    let leader = find_leader_inproc(&handles).await?;
    let phases = Phases::starting_now(load.warmup, load.duration);
    let _ = load.window.set(phases);
    let tally = Rc::new(RefCell::new(Tally::default()));
    let proposers: Vec<_> = (0..load.concurrency)
        .map(|_| {
            let (leader, tally, load) = (leader.clone(), tally.clone(), load.clone());
            glommio::spawn_local(async move {
                // Closed loop: the next proposal starts when the answer is
                // held, so one clock read serves as both (in this mode the
                // proposers share the cluster's thread, and a second read
                // per proposal was ~3 % of it).
                let mut start = Instant::now();
                while start < phases.end {
                    let outcome = leader.propose(load.payload.clone()).await;
                    let outcome = outcome.map(|_| ()).map_err(|e| e.to_string());
                    let end = Instant::now();
                    tally.borrow_mut().finish(&phases, start, end, outcome);
                    load.answered.fetch_add(1, Ordering::Relaxed);
                    start = end;
                }
            })
            .detach()
        })
        .collect();
    for proposer in proposers {
        proposer.await;
    }
    for node in nodes {
        node.shutdown().await.map_err(|e| e.to_string())?;
    }
    let tally = std::mem::take(&mut *tally.borrow_mut());
    Ok(tally)
}

async fn find_leader_inproc(handles: &[NodeHandle]) -> Result<NodeHandle, String> {
    let deadline = Instant::now() + LEADER_WAIT;
    while Instant::now() < deadline {
        for handle in handles {
            if let Ok(status) = handle.status().await
                && status.role == Role::Leader
            {
                return Ok(handle.clone());
            }
        }
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("no leader within {} s", LEADER_WAIT.as_secs()))
}
