//! A voter assembled for the deterministic simulator from the runtime's
//! own parts: the group loop (`group/`: command execution, waiters,
//! tokens, forwarding, read barriers, snapshot install order), the log
//! writer with group commit (`log_io.rs`), snapshot transfers
//! (`snapshots.rs`), log streams (`feed.rs`), certificates (`tokens.rs`)
//! and the start path's storage opening (`start.rs`: recovery, setting
//! damage aside, the loss assessment of `durability.rs`).
//!
//! What differs from [`super::Node`] is only what surrounds it, as in
//! TigerBeetle's replica, generic over its message bus, storage and time:
//! - the executor and the clocks are the simulator's ([`super::env`]);
//! - the disk is a [`SimDisk`](ordo_storage::disk::SimDisk) (any
//!   [`Vfs`]);
//! - peers are [`SimPeers`]: the simulator's network carries, delays,
//!   drops and duplicates every message;
//! - clients use the embedding handle ([`super::NodeHandle`]); no sockets;
//! - the durable records outside the log (the acknowledgement watermark,
//!   an unfinished repair, the membership marker) are the simulator's to
//!   keep: it passes what they hold at each start, and is told when a
//!   repair ends;
//! - certificates live in memory: a restart loses them, and the node must
//!   fetch them from its peers before it serves an entry.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::Path;
use std::rc::Rc;

use ordo_net::transport::PeerEvent;
use ordo_storage::disk::vfs::Vfs;
use ordo_storage::{DiskLog, DiskLogConfig, Index, LogStore, NodeId, TermRun};

use super::clock::Clock;
use super::config::NodeConfig;
use super::durability::{DurabilityError, assess_loss};
use super::group::Group;
use super::group::LogFailed;
use super::inbox::inbox;
use super::input::InputSender;
use super::log_io::LogIo;
use super::peers::{InprocFrame, Peers, SimPeers};
use super::snapshots::SnapshotIo;
use super::start::{LossRecorder, Storage, initial_status, open_storage};
use super::start::{OpenStorageError, Resume, StartError, restore_snapshot};
use super::tokens::Certificates;
use super::{NodeHandle, StateMachine, restore};
use crate::core::{Loss, Raft, Status};
use crate::token::{ClusterKeys, NodeKey};

/// What a simulated start needs besides its disk.
pub struct SimStart {
    /// The node's configuration (addresses are unused; `data_dir` is a
    /// path on the simulated disk; `keys_file` set turns tokens on).
    pub config: NodeConfig,
    /// The disk log's knobs.
    pub log_config: DiskLogConfig,
    /// The node's signing key (`None`: it signs nothing).
    pub key: Option<NodeKey>,
    /// The cluster's keys (`cluster.keys`).
    pub keys: ClusterKeys,
    /// The acknowledgement watermark as last saved.
    pub acked: Index,
    /// A repair recorded and not finished.
    pub pending: Option<Loss>,
    /// The node ran on this disk before (its membership marker says
    /// "started"): a fresh log then means a lost disk.
    pub started_before: bool,
    /// The core's random seed.
    pub seed: u64,
    /// Called when the core reports the repair finished (the simulator
    /// forgets its repair record).
    pub on_repaired: Box<dyn Fn()>,
    /// Records a loss durably, where a real node writes `data/repair`:
    /// before damaged storage is set aside, and once the start assessed
    /// its storage (`durability::detect_loss`), before it goes on.
    pub record_loss: Rc<dyn Fn(&Loss)>,
    /// Records the membership marker ("this node ran here"), where a real
    /// start writes `data/member` once it assessed its storage.
    pub mark_started: Box<dyn FnOnce()>,
    /// Most messages waiting for the network before sends see `Full`.
    pub outbox_max: usize,
    /// The commit statements its certificates file held (a crash of the
    /// process keeps them; a wiped disk does not).
    pub statements: Vec<crate::token::SignedStatement>,
    /// The configuration links its chain file held.
    pub links: Vec<crate::token::ConfigLink>,
    /// The configurations its chain file recorded.
    pub configs: Vec<(Index, bytes::Bytes)>,
}

/// The simulator's durable records ([`SimStart::record_loss`]), as a
/// start writes them before it changes storage.
struct SimRecorder<'a> {
    record_loss: &'a dyn Fn(&Loss),
    /// A loss is recorded (an unfinished repair is kept, not replaced).
    recorded: std::cell::Cell<bool>,
    acked: Index,
    started_before: bool,
}

impl SimRecorder<'_> {
    fn record(&self, reason: String) {
        self.record_once(Loss {
            held_through: self.acked,
            hard_state_lost: true,
            reason,
        });
    }

    fn record_once(&self, loss: Loss) {
        if !self.recorded.replace(true) {
            (self.record_loss)(&loss);
        }
    }
}

impl LossRecorder for SimRecorder<'_> {
    fn setting_aside(&self, reason: &str) -> Result<(), DurabilityError> {
        self.record(reason.to_string());
        Ok(())
    }

    fn creating_log(&self) -> Result<(), DurabilityError> {
        if self.started_before {
            self.record("this node ran here, but its log and hard state are gone".into());
        }
        Ok(())
    }

    fn cutting(&self, cut: &ordo_storage::LogCut) -> Result<(), DurabilityError> {
        if cut.durable || cut.from_index <= self.acked {
            self.record_once(Loss {
                held_through: cut.held_through.max(self.acked),
                hard_state_lost: false,
                reason: cut.to_string(),
            });
        }
        Ok(())
    }
}

/// A running simulated voter: what the simulator talks to and looks at.
/// Dropping the executor its tasks run on is a crash.
pub struct SimulatedNode {
    /// The node's id.
    pub id: NodeId,
    /// Proposals, reads and subscriptions, as an embedder makes them.
    pub handle: NodeHandle,
    /// The status the group publishes after every turn.
    pub status: Rc<Cell<Status>>,
    /// Messages for peers, waiting for the network.
    pub outbox: Rc<RefCell<VecDeque<InprocFrame>>>,
    /// Where the network delivers.
    pub inbox: async_channel::Sender<PeerEvent>,
    /// The log, for the checker (log matching).
    pub log: Rc<DiskLog>,
    /// The loss this start found (it repairs before it takes part).
    pub loss: Option<Loss>,
    /// The group's end: `Some` once its loop returned.
    pub ended: Rc<RefCell<Option<Result<(), LogFailed>>>>,
    certificates: Rc<Certificates>,
}

impl SimulatedNode {
    /// Starts a voter on `vfs` under the current [`super::env`]: opens its
    /// storage as a real start does, and spawns its group loop.
    pub async fn start(
        vfs: Rc<dyn Vfs>,
        start: SimStart,
        mut machine: Box<dyn StateMachine>,
    ) -> Result<SimulatedNode, StartError> {
        let SimStart {
            config,
            log_config,
            key,
            keys,
            acked,
            pending,
            started_before,
            seed,
            on_repaired,
            record_loss,
            mark_started,
            outbox_max,
            statements,
            links,
            configs,
        } = start;
        let config = Rc::new(config);
        vfs.create_dir_all(&config.data_dir)
            .map_err(|source| OpenStorageError::DataDir {
                dir: config.data_dir.clone(),
                source,
            })?;
        let recorder = SimRecorder {
            record_loss: &*record_loss,
            recorded: std::cell::Cell::new(pending.is_some()),
            acked,
            started_before,
        };
        let Storage {
            snapshot_store,
            latest,
            log,
        } = open_storage(&vfs, &config.data_dir, Some(log_config), &recorder).await?;
        let log = log.expect("a disk log was asked for");
        let recovery = log.recovery();
        let wiped = started_before.then(|| {
            format!(
                "{} says this node ran here, but its log and hard state are gone",
                Path::new(&config.data_dir).join("member").display()
            )
        });
        let loss = assess_loss(
            pending,
            recovery,
            acked,
            log.state().last.index,
            wiped,
            "the acknowledgement watermark",
        );
        if let Some(loss) = &loss {
            record_loss(loss);
        }
        mark_started();
        let (snapshot_meta, snapshot_links) = match latest {
            Some((meta, data)) => {
                let links = restore_snapshot(&mut *machine, &meta, data)?;
                (Some(meta), links)
            }
            None => (None, Vec::new()),
        };
        let store = Rc::new(log);
        let mut state = restore::raft_state(&*store, snapshot_meta)
            .await
            .map_err(StartError::ReadLog)?;
        state.loss = loss.clone();
        let resume = Resume::of(&state);
        let applied = resume.applied;
        let mut raft = Raft::new(
            config.id,
            &config.voters(),
            config.raft.clone(),
            state,
            seed,
            Clock::new().now(),
        )
        .map_err(StartError::Raft)?;
        // The simulator checks every invariant after every turn, in
        // release runs too.
        raft.check_invariants_every_turn();
        let local = InputSender::default();
        let log_io = LogIo::start(store.clone(), local.clone());
        let outbox: Rc<RefCell<VecDeque<InprocFrame>>> = Rc::default();
        let (inbox_tx, inbox_rx) = async_channel::unbounded();
        let peers = Rc::new(Peers::Sim(SimPeers {
            outbox: outbox.clone(),
            outbox_max,
            inbox: inbox_rx,
        }));
        let certificates = Rc::new(Certificates::in_memory(
            &config,
            key,
            Some(&keys),
            statements,
            links,
            configs,
        ));
        let feed = resume.start(&certificates, snapshot_links);
        let snapshots = Rc::new(SnapshotIo::new(
            snapshot_store,
            peers.clone(),
            local.clone(),
        ));
        let status = Rc::new(Cell::new(initial_status(
            config.id,
            applied,
            loss.is_some(),
        )));
        let (external_tx, external_rx) = inbox(config.runtime.input_queue_max);
        let group = Group::new(
            raft,
            config.clone(),
            log_io,
            local,
            peers,
            None,
            external_rx,
            machine,
            feed,
            certificates.clone(),
            snapshots,
            status.clone(),
            Vec::new(),
        )
        .with_repaired_hook(on_repaired);
        let ended: Rc<RefCell<Option<Result<(), LogFailed>>>> = Rc::default();
        let end = ended.clone();
        super::env::spawn(async move {
            let result = group.run().await;
            *end.borrow_mut() = Some(result);
        });
        Ok(SimulatedNode {
            id: config.id,
            handle: NodeHandle {
                id: config.id,
                external: external_tx,
            },
            status,
            outbox,
            inbox: inbox_tx,
            log: store,
            loss,
            ended,
            certificates,
        })
    }

    /// The configuration links it holds (what its chain file would).
    pub fn links(&self) -> Vec<crate::token::ConfigLink> {
        self.certificates.links_held()
    }

    /// The configurations it recorded (what its chain file would).
    pub fn configs(&self) -> Vec<(Index, bytes::Bytes)> {
        self.certificates.configs_held()
    }

    /// The commit statements it holds (what its certificates file would).
    pub fn statements(&self) -> Vec<crate::token::SignedStatement> {
        self.certificates.statements_held()
    }

    /// The log's term runs (for the log-matching check).
    pub fn term_runs(&self) -> Vec<TermRun> {
        self.log.term_runs()
    }
}
