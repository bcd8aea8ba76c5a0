//! The simulated network: per-message delay (so messages reorder), loss and
//! duplication, and partitions, symmetric or not.

use std::collections::BTreeSet;

use ordo_engine::core::Rng;
use ordo_storage::NodeId;

/// What happens to one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Dropped.
    Lost,
    /// Delivered after each of these delays (two for a duplicate).
    Delivered(Vec<u64>),
}

/// The network's state.
#[derive(Clone, Debug, Default)]
pub struct Network {
    /// Directed links `(from, to)` that drop everything.
    pub blocked: BTreeSet<(NodeId, NodeId)>,
    /// Whether loss, duplication and partitions are on.
    pub faulty: bool,
    drop_ppm: u64,
    duplicate_ppm: u64,
    delay_us: (u64, u64),
}

impl Network {
    /// A network with these fault rates (active while `faulty`).
    pub fn new(drop_ppm: u64, duplicate_ppm: u64, delay_us: (u64, u64)) -> Self {
        Self {
            blocked: BTreeSet::new(),
            faulty: true,
            drop_ppm,
            duplicate_ppm,
            delay_us,
        }
    }

    /// Decides the fate of a message from `from` to `to`.
    pub fn fate(&self, rng: &mut Rng, from: NodeId, to: NodeId) -> Fate {
        if self.blocked.contains(&(from, to)) {
            return Fate::Lost;
        }
        if self.faulty && rng.chance(self.drop_ppm, 1_000_000) {
            return Fate::Lost;
        }
        let mut delays = vec![self.delay(rng)];
        if self.faulty && rng.chance(self.duplicate_ppm, 1_000_000) {
            delays.push(self.delay(rng));
        }
        Fate::Delivered(delays)
    }

    fn delay(&self, rng: &mut Rng) -> u64 {
        let (low, high) = if self.faulty {
            self.delay_us
        } else {
            (50, 500)
        };
        // Mostly short, sometimes long: long ones overtake nothing but get
        // overtaken, which is how reordering shows up.
        if rng.chance(1, 10) {
            rng.range(low, high * 4)
        } else {
            rng.range(low, high)
        }
    }

    /// Heals every partition and stops loss and duplication.
    pub fn heal(&mut self) {
        self.blocked.clear();
        self.faulty = false;
    }

    /// Cuts `node` off from every other node, both ways.
    pub fn isolate(&mut self, node: NodeId, nodes: &[NodeId]) {
        self.blocked.clear();
        for &other in nodes {
            if other != node {
                self.blocked.insert((node, other));
                self.blocked.insert((other, node));
            }
        }
    }

    /// Draws a new partition over `nodes`: none, one node isolated, a split
    /// into two groups, or a one-way cut.
    pub fn repartition(&mut self, rng: &mut Rng, nodes: &[NodeId]) -> String {
        self.blocked.clear();
        match rng.range(0, 5) {
            0 => "no partition".into(),
            1 => {
                let isolated = nodes[rng.range(0, nodes.len() as u64) as usize];
                for &other in nodes {
                    if other != isolated {
                        self.blocked.insert((isolated, other));
                        self.blocked.insert((other, isolated));
                    }
                }
                format!("node {isolated} isolated")
            }
            2 => {
                let side: Vec<bool> = nodes.iter().map(|_| rng.chance(1, 2)).collect();
                for (i, &a) in nodes.iter().enumerate() {
                    for (j, &b) in nodes.iter().enumerate() {
                        if side[i] != side[j] {
                            self.blocked.insert((a, b));
                        }
                    }
                }
                format!("split {side:?}")
            }
            3 => {
                let a = nodes[rng.range(0, nodes.len() as u64) as usize];
                for &b in nodes {
                    if a != b && rng.chance(1, 2) {
                        self.blocked.insert((a, b));
                    }
                }
                format!("node {a} cannot send to some peers")
            }
            _ => {
                let a = nodes[rng.range(0, nodes.len() as u64) as usize];
                for &b in nodes {
                    if a != b && rng.chance(1, 2) {
                        self.blocked.insert((b, a));
                    }
                }
                format!("node {a} cannot hear some peers")
            }
        }
    }
}
