//! The deterministic gossip simulation: the real gossip core on 100 gossip
//! nodes (or any number) and a few voters that publish committed messages,
//! over a simulated network with delay, reordering and loss; gossip nodes
//! crash, some restart from their persisted watermark; forged messages are
//! injected. Everything derives from one seed.
//!
//! A run has a fault phase (publishing, loss, crashes, forgeries), then a
//! healed liveness phase in which every live node must end with every
//! message within [`Plan::liveness_bound_us`]. Named invariants
//! ([`checker`]) run on every delivery and every send; a violation stops
//! the run with the seed and the command that replays it. The run also
//! measures delivery latency and redundancy ([`Summary`]).

pub mod checker;
pub mod world;

use ordo_engine::core::Rng;
use ordo_engine::gossip::GossipConfig;

pub use world::World;

/// Everything a run is parameterised by, derived from its seed.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The seed everything derives from.
    pub seed: u64,
    /// Gossip nodes.
    pub gossip_nodes: usize,
    /// Voters (message sources and last-resort pull targets).
    pub voters: usize,
    /// The gossip core's knobs (small caches and windows in some seeds, so
    /// the bounds are exercised).
    pub config: GossipConfig,
    /// Gossip nodes join at a random time in `[0, join_us)`.
    pub join_us: u64,
    /// Publishing starts here (membership has formed by then).
    pub publish_start_us: u64,
    /// Messages published, ids 1..=messages.
    pub messages: u64,
    /// Time between two publications, drawn in this range.
    pub publish_gap_us: (u64, u64),
    /// Probability (per million) that a message is dropped in the fault
    /// phase.
    pub drop_ppm: u64,
    /// Probability (per million) that a message is duplicated in the fault
    /// phase.
    pub duplicate_ppm: u64,
    /// Network delay bounds (a tenth of the messages take up to 4x more).
    pub delay_us: (u64, u64),
    /// Gossip nodes that crash during the fault phase.
    pub crashes: usize,
    /// ... of which restart (with their persisted watermark) after a
    /// downtime drawn in `downtime_us`.
    pub restarts: usize,
    /// Downtime of a restarting node.
    pub downtime_us: (u64, u64),
    /// Forged messages injected.
    pub forgeries: u64,
    /// How long a persisted watermark takes to become durable.
    pub persist_us: (u64, u64),
    /// After the faults heal, every live node must have every message
    /// within this long.
    pub liveness_bound_us: u64,
}

impl Plan {
    /// The plan for `seed`: 100 gossip nodes, 3 voters, 5% loss, 10% of the
    /// nodes crashing (half of them restarting), forgeries; knobs drawn
    /// from the seed.
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0x6055_1B00);
        let mut config = GossipConfig::default();
        if rng.chance(1, 3) {
            // Small bounds: the reorder window, cache and pull size are
            // hit all the time.
            config.reorder_messages_max = rng.range(4, 64);
            config.cache_messages_max = rng.range(16, 128) as usize;
            config.pull_messages_max = rng.range(1, 32);
        }
        Self {
            seed,
            gossip_nodes: 100,
            voters: 3,
            config,
            join_us: 1_000_000,
            publish_start_us: 3_000_000,
            messages: rng.range(150, 400),
            publish_gap_us: (1_000, rng.range(10_000, 40_000)),
            drop_ppm: 50_000,
            duplicate_ppm: rng.range(0, 10_000),
            delay_us: (200, rng.range(1_000, 5_000)),
            crashes: 10,
            restarts: 5,
            downtime_us: (500_000, 4_000_000),
            forgeries: rng.range(20, 60),
            persist_us: (100, 5_000),
            liveness_bound_us: 30_000_000,
        }
    }

    /// A plan for measurements: `gossip_nodes` nodes, faults on or off,
    /// fixed knobs (defaults) and a steady publication rate.
    pub fn measure(seed: u64, gossip_nodes: usize, faults: bool) -> Self {
        let crashes = if faults { gossip_nodes / 10 } else { 0 };
        Self {
            seed,
            gossip_nodes,
            voters: 3,
            config: GossipConfig::default(),
            join_us: 1_000_000,
            publish_start_us: 3_000_000,
            messages: 1_000,
            publish_gap_us: (1_000, 19_000),
            drop_ppm: if faults { 50_000 } else { 0 },
            duplicate_ppm: 0,
            delay_us: (200, 2_000),
            crashes,
            restarts: crashes / 2,
            downtime_us: (500_000, 4_000_000),
            forgeries: if faults { 50 } else { 0 },
            persist_us: (100, 5_000),
            liveness_bound_us: 30_000_000,
        }
    }
}

pub use crate::Failure;

/// What a passing run did and measured.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Messages published.
    pub messages: u64,
    /// Gossip nodes alive at the end (each delivered every message).
    pub live_nodes: usize,
    /// Crashes injected.
    pub crashes: usize,
    /// Restarts.
    pub restarts: usize,
    /// Forged messages injected / rejected by verification (the others
    /// were dropped earlier as duplicates of an id already held).
    pub forgeries: u64,
    /// Verification failures over all nodes.
    pub rejected: u64,
    /// Per message, publish to its delivery at the last node that never
    /// crashed (µs): p50, p99, max.
    pub last_node_latency_us: (u64, u64, u64),
    /// Publish to each delivery at nodes that never crashed (µs): p50,
    /// p99.
    pub delivery_latency_us: (u64, u64),
    /// Full messages received per message delivered, minus one, over all
    /// gossip nodes and their whole run.
    pub redundancy: f64,
    /// The same, counting only pushes of the tree (no pulls).
    pub push_redundancy: f64,
    /// Control messages (announcements, grafts, prunes, pulls, overlay)
    /// received per message delivered.
    pub control_per_delivery: f64,
    /// SWIM packets received per node per second.
    pub membership_per_node_s: f64,
    /// Grafts, gossip-peer pulls and voter pulls sent.
    pub repairs: (u64, u64, u64),
    /// Largest hop count.
    pub hops_max: u16,
    /// Virtual time the run took (µs).
    pub duration_us: u64,
    /// Simulated events processed.
    pub events: u64,
}

/// Runs the simulation for `seed`.
pub fn run(seed: u64) -> Result<Summary, Failure> {
    World::new(Plan::from_seed(seed)).run()
}

/// The `q`-quantile (0..=1) of sorted values.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let at = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}
