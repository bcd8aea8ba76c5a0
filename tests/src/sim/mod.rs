//! The deterministic simulator: the real Raft core on 3 or 5 nodes over a
//! simulated network (delay, loss, duplication, reordering, symmetric and
//! asymmetric partitions) and simulated disks (syncs that take time, crashes
//! that lose what was not synced), with drifting clocks and concurrent
//! clients that retry with their sessions. Everything is driven by one seed.
//!
//! A run has a fault phase, then a healed liveness phase that must commit
//! every outstanding proposal within [`Plan::liveness_bound_us`]. Named
//! invariants ([`checker`]) run after every step; a violation stops the run
//! with the seed and the command that replays it.

pub mod checker;
pub mod client;
pub mod network;
pub mod world;

use ordo_engine::core::{CoreConfig, Rng};

pub use world::World;

/// Everything a run is parameterised by, derived from its seed.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The seed everything derives from.
    pub seed: u64,
    /// Voters.
    pub nodes: u64,
    /// The core's knobs for this run (randomised within valid bounds so that
    /// small windows, batches and caches are exercised too).
    pub config: CoreConfig,
    /// Clients proposing concurrently.
    pub clients: u64,
    /// Proposals per client.
    pub proposals_per_client: u64,
    /// Length of the fault phase.
    pub fault_phase_us: u64,
    /// After the faults heal, every outstanding proposal must commit within
    /// this long.
    pub liveness_bound_us: u64,
    /// Probability (per million) that a message is dropped in the fault phase.
    pub drop_ppm: u64,
    /// Probability (per million) that a message is duplicated.
    pub duplicate_ppm: u64,
    /// Network delay bounds.
    pub delay_us: (u64, u64),
    /// Mean time between partition changes in the fault phase.
    pub partition_every_us: u64,
    /// Mean time between crashes in the fault phase (0: no crashes).
    pub crash_every_us: u64,
    /// Chance (per million) that a crashed node restarts on a wiped disk
    /// (never while another node is still repairing: a majority that lost
    /// the same acknowledged entry cannot be repaired).
    pub wipe_ppm: u64,
    /// Disk sync latency bounds.
    pub sync_us: (u64, u64),
    /// Largest clock drift, in parts per million.
    pub drift_ppm_max: u64,
    /// The nodes' logs: in memory, or the real disk log on simulated disks.
    pub log: LogKind,
    /// Chance (per million) that a client's request or a node's answer
    /// to it is lost in the fault phase; with it on, each repartition also
    /// cuts every client off from a random third of the nodes. `0`:
    /// clients talk to nodes over a perfect network.
    pub client_drop_ppm: u64,
    /// Proposals each session client keeps in flight (its own sequence
    /// numbers, out of order); the sessionless client keeps one.
    pub client_window: usize,
    /// Chance (per million) that a restart (not a wipe) finds one synced
    /// byte of the node's log directory flipped (never while another node
    /// is repairing, as for wipes). Disk logs only.
    pub corrupt_ppm: u64,
    /// Nodes beyond `nodes` that start outside the cluster, waiting to be
    /// added (ids `nodes + 1 ..= nodes + spares`).
    pub spares: u64,
    /// Mean time between membership changes and leadership transfers in
    /// the fault phase (0: none).
    pub reconfigure_every_us: u64,
}

/// The log every node of a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogKind {
    /// [`ordo_storage::MemLog`]: whole unsynced batches lost or kept.
    Memory,
    /// The real [`ordo_storage::DiskLog`] on a [`ordo_storage::disk::SimDisk`]
    /// that keeps each unsynced sector with probability `keep_ppm`.
    Disk {
        /// Chance (per million) that a crash keeps an unsynced sector.
        keep_ppm: u32,
    },
}

impl Plan {
    /// The plan for `seed`: 3 or 5 nodes and fault rates drawn from the seed.
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0x5EED_0F0F);
        let nodes = if rng.chance(1, 3) { 5 } else { 3 };
        let heartbeat = rng.range(20, 40);
        let election_min = heartbeat * rng.range(4, 8);
        let config = CoreConfig {
            election_timeout_ms_min: election_min,
            election_timeout_ms_max: election_min * 2,
            heartbeat_interval_ms: heartbeat,
            pre_vote: !rng.chance(1, 5),
            check_quorum: !rng.chance(1, 5),
            batch_entries_max: [1, 3, 16, 4096][rng.range(0, 4) as usize],
            batch_bytes_max: [64, 1 << 20][rng.range(0, 2) as usize],
            inflight_messages_max: [1, 2, 8, 64][rng.range(0, 4) as usize],
            inflight_bytes_max: 1 << 20,
            append_bytes_max: [256, 1 << 20][rng.range(0, 2) as usize],
            uncommitted_bytes_max: 1 << 20,
            proposal_queue_max: 64,
            forward_inflight_max: 64,
            reads_pending_max: 64,
            log_cache_bytes_max: [512, 64 << 20][rng.range(0, 2) as usize],
            snapshot_entries_threshold: [20, 80, 1_000_000][rng.range(0, 3) as usize],
            sessions_max: 64,
            session_results_max: 16,
            session_ttl_ms: 3_600_000,
            // Half the seeds compact to the snapshot before the latest
            // (`ordo`'s retention); drawn from a sequence of its own, so
            // that every other draw stays what it was.
            compact_to_previous_snapshot: Rng::new(seed ^ 0x00C0_4BAC_1E11).chance(1, 2),
            ..CoreConfig::default()
        };
        let fault_phase_us = rng.range(2_000_000, 5_000_000);
        let mut plan = Self {
            seed,
            nodes,
            config,
            clients: rng.range(2, 9),
            proposals_per_client: rng.range(10, 60),
            fault_phase_us,
            liveness_bound_us: 30_000_000,
            drop_ppm: rng.range(0, 100_000),
            duplicate_ppm: rng.range(0, 30_000),
            delay_us: (20, rng.range(200, 3_000)),
            partition_every_us: rng.range(100_000, 500_000),
            crash_every_us: if rng.chance(1, 8) {
                0
            } else {
                rng.range(150_000, 800_000)
            },
            // Disks slower than the network, as in a LAN: the windows in
            // which data is acknowledged but not yet durable are wide.
            sync_us: (100, rng.range(1_000, 10_000)),
            drift_ppm_max: 2_000,
            wipe_ppm: 0,
            log: LogKind::Memory,
            corrupt_ppm: 0,
            client_drop_ppm: 0,
            client_window: 1,
            spares: 0,
            reconfigure_every_us: 0,
        };
        // Drawn last, so that the draws above (and the runs the regression
        // seeds replay) stay what they were before this knob existed.
        plan.config.commit_notify_delay_us = [0, 1_000, 20_000][rng.range(0, 3) as usize];
        // Wipes draw from a generator of their own, so that seeds without
        // them run exactly as before.
        let mut wipes = Rng::new(seed ^ WIPE_SEED_SALT);
        plan.wipe_ppm = if wipes.chance(1, 2) {
            0
        } else {
            wipes.range(100_000, 300_000)
        };
        // So do the disks: half the seeds run the real disk log.
        let mut disks = Rng::new(seed ^ DISK_SEED_SALT);
        if disks.chance(1, 2) {
            plan.log = LogKind::Disk {
                keep_ppm: disks.range(0, 1_000_001) as u32,
            };
            plan.corrupt_ppm = if disks.chance(1, 2) {
                0
            } else {
                disks.range(100_000, 400_000)
            };
        }
        // And the clients' network: half the seeds lose and cut off client
        // traffic too.
        let mut clients = Rng::new(seed ^ CLIENT_SEED_SALT);
        if clients.chance(1, 2) {
            plan.client_drop_ppm = clients.range(10_000, 150_000);
        }
        if clients.chance(1, 2) {
            plan.client_window = clients.range(2, 9) as usize;
        }
        // And membership: half the seeds add, promote and remove members
        // and transfer leadership while the faults run.
        let mut members = Rng::new(seed ^ MEMBERSHIP_SEED_SALT);
        if members.chance(1, 2) {
            plan.spares = members.range(1, 3);
            plan.reconfigure_every_us = members.range(100_000, 600_000);
        }
        plan
    }

    /// The same plan with every node's log in memory (how the regression
    /// seeds found before the disk log ran in the simulator replay).
    pub fn in_memory(mut self) -> Self {
        self.log = LogKind::Memory;
        self.corrupt_ppm = 0;
        self.client_drop_ppm = 0;
        self.client_window = 1;
        self.spares = 0;
        self.reconfigure_every_us = 0;
        self
    }
}

/// Mixed into the seed for the membership changes' own generator.
pub const MEMBERSHIP_SEED_SALT: u64 = 0x00C0_4F16_0F0F;

/// Mixed into the seed for the client network's own generator.
pub const CLIENT_SEED_SALT: u64 = 0x00C1_1E47_0F0F;

/// Mixed into the seed for the disk decisions' own generator.
pub const DISK_SEED_SALT: u64 = 0x00D1_5C0D_15C5;

/// Mixed into the seed for the wipe decisions' own generator.
pub const WIPE_SEED_SALT: u64 = 0x0057_1FE0_D15C;

pub use crate::Failure;

/// What a passing run did, for reports.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Proposals acknowledged to clients.
    pub acknowledged: u64,
    /// Entries in the final committed log.
    pub committed: u64,
    /// Leaders elected.
    pub elections: u64,
    /// Crashes injected.
    pub crashes: u64,
    /// Crashes whose node restarted on a wiped disk.
    pub wipes: u64,
    /// Restarts that found a synced byte of the log flipped.
    pub corruptions: u64,
    /// Restarts whose disk log recovery found a loss (a cut of
    /// acknowledged entries, or a lost hard state).
    pub losses_found: u64,
    /// Snapshots installed on followers.
    pub snapshots_installed: u64,
    /// Membership changes committed.
    pub membership_changes: u64,
    /// Leadership transfers that completed.
    pub transfers: u64,
    /// Linearizable reads checked.
    pub reads: u64,
    /// Virtual time the run took (µs).
    pub duration_us: u64,
    /// Steps (node turns) executed.
    pub steps: u64,
}

/// Runs the simulation for `seed`.
pub fn run(seed: u64) -> Result<Summary, Failure> {
    run_plan(Plan::from_seed(seed))
}

/// Runs the simulation for `plan`.
pub fn run_plan(plan: Plan) -> Result<Summary, Failure> {
    World::new(plan).run()
}
