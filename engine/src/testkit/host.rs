//! A node without a runtime: the real core over an in-memory log, whose
//! effects (messages, syncs, hard-state writes, snapshot transfers) are
//! handed to a driver that decides when they happen. The in-memory cluster
//! delivers them at once; the simulator delays, drops and crashes them.

use std::collections::VecDeque;

use bytes::Bytes;
use ordo_net::{Message, ProposeResult, ReadError, SnapshotMeta};
use ordo_storage::{
    BatchKind, HardState, Index, LogId, MemLog, MessageId, NodeId, Term, TimestampUs,
};

use crate::core::{Command, CoreConfig, Event, Now, Raft, RaftState, RestoredLog, Role};

/// One entry as the state machine saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedEntry {
    /// What the entry is.
    pub kind: BatchKind,
    /// Log index.
    pub index: Index,
    /// Term.
    pub term: Term,
    /// Message id (`0` for internal entries).
    pub id: MessageId,
    /// Timestamp.
    pub ts: TimestampUs,
    /// Session.
    pub client_id: u64,
    /// Sequence number.
    pub seq: u64,
    /// Payload.
    pub payload: Bytes,
}

/// Something the node asks its environment to do; the driver chooses when.
#[derive(Clone, Debug)]
pub enum Effect {
    /// Deliver a message to a peer.
    Send {
        /// The peer.
        to: NodeId,
        /// The message.
        message: Message,
    },
    /// A sync was requested: call [`Host::complete_sync`] when it completes.
    Sync,
    /// A hard-state write was requested: call [`Host::complete_hard_state`].
    PersistHardState(HardState),
    /// Stream the snapshot `meta` (held by this host) to `to`.
    SendSnapshot {
        /// The follower.
        to: NodeId,
        /// The snapshot.
        meta: SnapshotMeta,
        /// The leader's term.
        term: Term,
    },
    /// An event to feed back to this node (log reads, snapshot completions).
    Complete(Event),
}

/// The real core over a [`MemLog`], with a state machine that records what
/// it applied.
pub struct Host {
    /// The node's id.
    pub id: NodeId,
    voters: Vec<NodeId>,
    config: CoreConfig,
    /// The core.
    pub raft: Raft,
    /// The log, with its crash model.
    pub log: MemLog,
    /// Entries applied, in order, since the state machine's snapshot.
    pub applied: Vec<AppliedEntry>,
    /// The state machine's durable snapshot: what it covers and its data
    /// (every entry applied up to it).
    pub snapshot: Option<(SnapshotMeta, Vec<AppliedEntry>)>,
    /// A snapshot received from a leader, waiting to be restored.
    pub received_snapshot: Option<(SnapshotMeta, Vec<AppliedEntry>)>,
    /// Whether applied entries are recorded in `applied` (benchmarks turn it
    /// off and only count).
    pub record_applied: bool,
    /// Entries applied (counted even when not recorded).
    pub applied_count: u64,
    /// Answers to local proposals, in the order given.
    pub responses: VecDeque<(u64, ProposeResult)>,
    /// Answers to local reads.
    pub read_results: VecDeque<(u64, Result<Index, ReadError>)>,
    /// A loss not yet repaired: durable, as the node's `repair` record
    /// (`node/durability.rs`), so every restart until the core reports
    /// `Repaired` repairs again.
    pub pending_loss: Option<crate::core::Loss>,
    commands: Vec<Command>,
}

impl Host {
    /// A fresh node.
    pub fn new(id: NodeId, voters: &[NodeId], config: CoreConfig, seed: u64, now: Now) -> Self {
        let log = MemLog::new();
        let raft =
            Raft::new(id, voters, config.clone(), fresh_state(), seed, now).expect("valid config");
        Self {
            id,
            voters: voters.to_vec(),
            config,
            raft,
            log,
            applied: Vec::new(),
            snapshot: None,
            received_snapshot: None,
            record_applied: true,
            applied_count: 0,
            responses: VecDeque::new(),
            read_results: VecDeque::new(),
            pending_loss: None,
            commands: Vec::new(),
        }
    }

    /// Restarts the node from what its log and snapshot hold after a crash
    /// that kept `keep_unsynced` unsynced batches.
    pub fn crash_and_restart(&mut self, keep_unsynced: usize, seed: u64, now: Now) {
        self.restart_after(keep_unsynced, seed, now);
    }

    /// Restarts the node on a blank disk (log, hard state and snapshot
    /// gone), as a node whose data directory was wiped: it starts with a
    /// [`crate::core::Loss`] and repairs before it takes part.
    pub fn wipe_and_restart(&mut self, seed: u64, now: Now) {
        self.log = MemLog::new();
        self.snapshot = None;
        self.pending_loss = Some(crate::core::Loss {
            held_through: 0,
            hard_state_lost: true,
            reason: "the simulator wiped this node's disk".into(),
        });
        self.restart_after(0, seed, now);
    }

    fn restart_after(&mut self, keep_unsynced: usize, seed: u64, now: Now) {
        let loss = self.pending_loss.clone();
        self.log.crash(keep_unsynced);
        let state = self.log.state_now();
        let (snapshot_meta, data) = self.snapshot.clone().unwrap_or_default();
        let last_batch = (state.last.index > state.prev.index)
            .then(|| self.log.read_now(state.last.index, 1).ok())
            .flatten()
            .and_then(|mut b| b.pop());
        let prev_tail = if state.prev == snapshot_meta.last {
            (snapshot_meta.last_id + 1, snapshot_meta.last_ts)
        } else {
            (1, 0)
        };
        let tail = state
            .last_header
            .map(|h| {
                let batch = last_batch
                    .as_ref()
                    .expect("a non-empty log has a last batch");
                debug_assert_eq!(batch.header(), &h);
                (h.next_id(), h.last_ts())
            })
            .unwrap_or(prev_tail);
        let restored = RestoredLog {
            prev: state.prev,
            last: state.last,
            term_runs: self.log.term_runs_now(),
            tail,
            prev_tail,
            last_batch,
            commit: self.log_hard_state().commit,
            applied: snapshot_meta.last.index,
        };
        let raft_state = RaftState {
            hard_state: self.log_hard_state(),
            log: restored,
            snapshot: snapshot_meta,
            loss,
        };
        self.raft = Raft::new(
            self.id,
            &self.voters,
            self.config.clone(),
            raft_state,
            seed,
            now,
        )
        .expect("restart");
        self.applied = data;
        self.received_snapshot = None;
        self.responses.clear();
        self.read_results.clear();
        self.commands.clear();
    }

    fn log_hard_state(&self) -> HardState {
        ordo_storage::LogStore::hard_state(&self.log)
    }

    /// One runtime turn: every event, then the end of the turn; returns the
    /// effects in order. Log writes happen at once (they become durable only
    /// through [`Host::complete_sync`]).
    pub fn turn(&mut self, now: Now, events: impl IntoIterator<Item = Event>) -> Vec<Effect> {
        for event in events {
            self.raft.step(now, event);
        }
        self.raft.end_turn(now, &mut self.commands);
        // Every invariant after every turn, whatever the build profile
        // (`end_turn` checks them only with debug assertions).
        self.raft.check_invariants();
        let commands = std::mem::take(&mut self.commands);
        let mut effects = Vec::new();
        for command in commands {
            self.execute(command, &mut effects);
        }
        effects
    }

    fn execute(&mut self, command: Command, effects: &mut Vec<Effect>) {
        match command {
            Command::Send { to, message } => effects.push(Effect::Send { to, message }),
            // Durably forgotten, as the node runtime removes its record.
            Command::Repaired => self.pending_loss = None,
            Command::PersistHardState(hard_state) => {
                effects.push(Effect::PersistHardState(hard_state))
            }
            Command::Truncate { from } => self
                .log
                .truncate_suffix_now(from)
                .expect("core truncates within its log"),
            Command::Append { batches } => self
                .log
                .append_now(&batches)
                .expect("core appends contiguously"),
            Command::Sync => effects.push(Effect::Sync),
            Command::ReadLog {
                purpose,
                from,
                bytes_max,
            } => {
                let batches = self.log.read_now(from, bytes_max).unwrap_or_default();
                effects.push(Effect::Complete(Event::LogRead { purpose, batches }));
            }
            Command::Apply(apply) => {
                self.applied_count += apply.last_index - apply.first_index + 1;
                if !self.record_applied {
                    return;
                }
                for entry in apply.entries() {
                    let expected = self
                        .applied
                        .last()
                        .map_or(self.snapshot_index() + 1, |e| e.index + 1);
                    assert_eq!(
                        entry.index, expected,
                        "node {} applied out of order",
                        self.id
                    );
                    self.applied.push(AppliedEntry {
                        kind: entry.kind,
                        index: entry.index,
                        term: entry.term,
                        id: entry.id,
                        ts: entry.ts,
                        client_id: entry.client_id,
                        seq: entry.seq,
                        payload: Bytes::copy_from_slice(entry.payload),
                    });
                }
            }
            Command::Respond { request_id, result } => {
                self.responses.push_back((request_id, result))
            }
            Command::ReadReady { request_id, result } => {
                self.read_results.push_back((request_id, result))
            }
            Command::CreateSnapshot(meta) => {
                let upto = meta.last.index;
                let data: Vec<AppliedEntry> = self
                    .applied
                    .iter()
                    .filter(|e| e.index <= upto)
                    .cloned()
                    .collect();
                if self.record_applied {
                    assert_eq!(
                        data.last().map(|e| e.index),
                        Some(upto),
                        "snapshot taken after applying its index"
                    );
                }
                self.snapshot = Some((meta.clone(), data));
                effects.push(Effect::Complete(Event::SnapshotCreated(meta)));
            }
            Command::CompactLog { upto } => self.log.compact_prefix_now(upto),
            Command::SendSnapshot { to, meta, term } => {
                effects.push(Effect::SendSnapshot { to, meta, term })
            }
            Command::RestoreSnapshot(meta) => {
                if let Some((received, data)) = self.received_snapshot.take()
                    && received.last == meta.last
                {
                    self.log.reset_now(meta.last);
                    self.applied = data.clone();
                    self.snapshot = Some((meta.clone(), data));
                    effects.push(Effect::Complete(Event::SnapshotRestored(meta)));
                }
            }
            Command::RoleChanged { .. } => {}
        }
    }

    fn snapshot_index(&self) -> Index {
        self.snapshot
            .as_ref()
            .map_or(0, |(meta, _)| meta.last.index)
    }

    /// Completes a sync: everything appended so far becomes durable.
    pub fn complete_sync(&mut self) -> Event {
        self.log.sync_now().expect("memory sync");
        Event::LogSynced {
            last: self.log.state_now().last,
        }
    }

    /// Begins a sync that completes later ([`Host::end_sync`]): like the
    /// disk log's, it covers only what was written before it began.
    pub fn begin_sync(&mut self) -> ordo_storage::SyncPoint {
        self.log.sync_begin()
    }

    /// Completes the sync begun at `point`.
    pub fn end_sync(&mut self, point: ordo_storage::SyncPoint) -> Event {
        Event::LogSynced {
            last: self.log.sync_end(point),
        }
    }

    /// Completes a hard-state write.
    pub fn complete_hard_state(&mut self, hard_state: HardState) -> Event {
        self.log.save_hard_state_now(hard_state);
        Event::HardStatePersisted(hard_state)
    }

    /// The snapshot this host would stream for `meta`, if it still has it.
    pub fn snapshot_data(&self, meta: &SnapshotMeta) -> Option<Vec<AppliedEntry>> {
        self.snapshot
            .as_ref()
            .filter(|(held, _)| held.last == meta.last)
            .map(|(_, data)| data.clone())
    }

    /// Every entry the state machine holds: its snapshot's and those applied
    /// since.
    pub fn state_machine(&self) -> &[AppliedEntry] {
        &self.applied
    }

    /// The core's role.
    pub fn role(&self) -> Role {
        self.raft.role()
    }

    /// Last log position.
    pub fn last(&self) -> LogId {
        self.raft.log().last()
    }
}

fn fresh_state() -> RaftState {
    RaftState {
        log: RestoredLog {
            tail: (1, 0),
            prev_tail: (1, 0),
            ..RestoredLog::default()
        },
        ..RaftState::default()
    }
}
