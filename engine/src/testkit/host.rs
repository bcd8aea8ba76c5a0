//! A node without a runtime: the real core over an in-memory log or the
//! real disk log on a simulated disk (`host_log.rs`), whose effects
//! (messages, syncs, hard-state writes, snapshot transfers) are handed to a
//! driver that decides when they happen. The in-memory cluster delivers
//! them at once; the simulator delays, drops and crashes them.

use std::collections::VecDeque;

use bytes::Bytes;
use ordo_net::{Message, ProposeResult, ReadError, SnapshotMeta};
use ordo_storage::disk::SimDisk;
use ordo_storage::{
    BatchKind, EntryView, HardState, Index, LogId, MemLog, MessageId, NodeId, Term, TimestampUs,
};

use super::host_log::{HostLog, HostSyncPoint, SIM_LOG_DIR, SimDiskLog};
use crate::core::{Command, CoreConfig, Event, LogTail, Now, Raft, RaftState, RestoredLog, Role};
use crate::node::durability::{ACKED_SAVE_INTERVAL, assess_loss};

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

impl From<&EntryView<'_>> for AppliedEntry {
    fn from(entry: &EntryView<'_>) -> Self {
        Self {
            kind: entry.kind,
            index: entry.index,
            term: entry.term,
            id: entry.id,
            ts: entry.ts,
            client_id: entry.client_id,
            seq: entry.seq,
            payload: Bytes::copy_from_slice(entry.payload),
        }
    }
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

/// The real core over a [`MemLog`] or the disk log on a [`SimDisk`], with
/// a state machine that records what it applied.
pub struct Host {
    /// The node's id.
    pub id: NodeId,
    voters: Vec<NodeId>,
    config: CoreConfig,
    /// The core.
    pub raft: Raft,
    /// The log, with its crash model.
    pub log: HostLog,
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
    /// Answers to membership changes, in the order given.
    pub membership_results: VecDeque<(u64, Result<Index, crate::core::ChangeError>)>,
    /// Answers to leadership transfers, in the order given.
    pub transfer_results: VecDeque<(u64, Result<NodeId, crate::core::TransferError>)>,
    /// Configurations put in force, in order: `(entry index, voters,
    /// learners)`.
    pub memberships: Vec<(Index, Vec<NodeId>, Vec<NodeId>)>,
    /// A loss not yet repaired: durable, as the node's `repair` record
    /// (`node/durability.rs`), so every restart until the core reports
    /// `Repaired` repairs again.
    pub pending_loss: Option<crate::core::Loss>,
    /// The acknowledgement watermark as last saved, and when (the node's
    /// `data_dir/acked`, saved every [`ACKED_SAVE_INTERVAL`] while it
    /// moves): with the disk log, recovery's cuts are judged against it.
    pub acked_saved: Index,
    acked_saved_at_us: u64,
    /// Disk log starts that found a loss (a cut or lost hard state).
    pub losses_found: u64,
    /// The lowest index the log wrote (appended or truncated) since
    /// [`Host::take_written_from`] last took it; `Some(0)` after a restart,
    /// whose recovery may have changed anything.
    written_from: Option<Index>,
    commands: Vec<Command>,
}

impl Host {
    /// A fresh node.
    pub fn new(id: NodeId, voters: &[NodeId], config: CoreConfig, seed: u64, now: Now) -> Self {
        Self::with_log(
            id,
            voters,
            config,
            seed,
            now,
            HostLog::Memory(MemLog::new()),
        )
    }

    /// A fresh node whose log is the real disk log on `disk` (empty).
    pub fn on_disk(
        id: NodeId,
        voters: &[NodeId],
        config: CoreConfig,
        seed: u64,
        now: Now,
        disk: SimDisk,
    ) -> Self {
        let log = SimDiskLog::open(disk).expect("a new disk log opens");
        Self::with_log(id, voters, config, seed, now, HostLog::Disk(Box::new(log)))
    }

    fn with_log(
        id: NodeId,
        voters: &[NodeId],
        config: CoreConfig,
        seed: u64,
        now: Now,
        log: HostLog,
    ) -> Self {
        let raft = Self::checked(
            Raft::new(id, voters, config.clone(), fresh_state(), seed, now).expect("valid config"),
        );
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
            membership_results: VecDeque::new(),
            transfer_results: VecDeque::new(),
            memberships: Vec::new(),
            pending_loss: None,
            acked_saved: 0,
            acked_saved_at_us: now.mono_us,
            losses_found: 0,
            written_from: None,
            commands: Vec::new(),
        }
    }

    /// The lowest index this node's log wrote since the last call (`0`:
    /// anything, after a restart), or `None` if it wrote nothing: a driver
    /// checking what the log holds reads only from there.
    pub fn take_written_from(&mut self) -> Option<Index> {
        self.written_from.take()
    }

    fn note_written(&mut self, from: Index) {
        self.written_from = Some(self.written_from.map_or(from, |known| known.min(from)));
    }

    /// `raft`, checking every invariant after every turn in any build.
    fn checked(mut raft: Raft) -> Raft {
        raft.check_invariants_every_turn();
        raft
    }

    /// Restarts the node from what its log and snapshot hold after a crash
    /// that kept `keep_unsynced` unsynced batches (the in-memory log) or
    /// what the simulated disk kept, sector by sector (the disk log, whose
    /// recovery then runs).
    pub fn crash_and_restart(&mut self, keep_unsynced: usize, seed: u64, now: Now) {
        if let HostLog::Disk(disk) = &self.log {
            disk.disk.crash();
        }
        self.restart_after(keep_unsynced, seed, now);
    }

    /// Restarts the node on its disk log after the driver crashed (and
    /// maybe damaged) its simulated disk itself.
    pub fn restart_on_crashed_disk(&mut self, seed: u64, now: Now) {
        self.restart_after(0, seed, now);
    }

    /// Restarts the node on a blank disk (log, hard state and snapshot
    /// gone), as a node whose data directory was wiped: it starts with a
    /// [`crate::core::Loss`] and repairs before it takes part.
    pub fn wipe_and_restart(&mut self, seed: u64, now: Now) {
        match &self.log {
            HostLog::Memory(_) => self.log = HostLog::Memory(MemLog::new()),
            HostLog::Disk(disk) => disk.disk.wipe(),
        }
        self.snapshot = None;
        self.acked_saved = 0;
        self.pending_loss = Some(crate::core::Loss {
            held_through: 0,
            hard_state_lost: true,
            reason: "the simulator wiped this node's disk".into(),
        });
        self.restart_after(0, seed, now);
    }

    /// Saves the acknowledgement watermark if it moved and the interval
    /// passed, as the node's saver task does.
    fn save_acked(&mut self, now: Now) {
        if now.mono_us >= self.acked_saved_at_us + ACKED_SAVE_INTERVAL.as_micros() as u64 {
            self.acked_saved = self.raft.status().durable_index;
            self.acked_saved_at_us = now.mono_us;
        }
    }

    fn restart_after(&mut self, keep_unsynced: usize, seed: u64, now: Now) {
        match &mut self.log {
            HostLog::Memory(log) => log.crash(keep_unsynced),
            HostLog::Disk(_) => self.reopen_disk_log(),
        }
        let loss = self.pending_loss.clone();
        let (snapshot_meta, data) = self.snapshot.clone().unwrap_or_default();
        // The node's own restore (`node/restore.rs`).
        let mut raft_state = super::host_log::ready(crate::node::restore::raft_state(
            &self.log,
            Some(snapshot_meta),
        ))
        .expect("the log reads back what it recovered");
        raft_state.loss = loss;
        self.acked_saved_at_us = now.mono_us;
        self.raft = Self::checked(
            Raft::new(
                self.id,
                &self.voters,
                self.config.clone(),
                raft_state,
                seed,
                now,
            )
            .expect("restart"),
        );
        self.applied = data;
        self.received_snapshot = None;
        self.responses.clear();
        self.read_results.clear();
        self.commands.clear();
        self.note_written(0);
    }

    /// Reopens the disk log after a crash or wipe, as the node does
    /// (`node/start.rs`): a log recovery refuses is set aside and the node
    /// starts empty; then the loss it finds (`node/durability.rs`) is
    /// recorded until repaired.
    fn reopen_disk_log(&mut self) {
        let HostLog::Disk(old) = &self.log else {
            return;
        };
        let disk = old.disk.clone();
        let opened = match SimDiskLog::open(disk.clone()) {
            Ok(log) => log,
            Err(ordo_storage::StorageError::Corrupt { .. }) => {
                for path in disk.files() {
                    if path.starts_with(SIM_LOG_DIR) {
                        let _ = ordo_storage::disk::vfs::Vfs::remove_file(&disk, &path);
                    }
                }
                crate::testkit::host_log::ready(ordo_storage::disk::vfs::Vfs::sync_dir(
                    &disk,
                    std::path::Path::new(SIM_LOG_DIR),
                ))
                .expect("simulated directory sync");
                SimDiskLog::open(disk).expect("an emptied log opens")
            }
            Err(error) => panic!("node {}: the disk log does not open: {error}", self.id),
        };
        self.log = HostLog::Disk(Box::new(opened));
        let recovery = self.log.recovery();
        let wiped = recovery
            .fresh
            .then(|| "the node ran here, but its log and hard state are gone".to_string());
        let found = assess_loss(
            self.pending_loss.take(),
            &recovery,
            self.acked_saved,
            self.log.state_now().last.index,
            wiped,
            "the acknowledgement watermark",
        );
        if found.is_some() {
            self.losses_found += 1;
        }
        self.pending_loss = found;
    }

    /// One runtime turn: every event, then the end of the turn; returns the
    /// effects in order. Log writes happen at once (they become durable only
    /// through [`Host::complete_sync`]).
    pub fn turn(&mut self, now: Now, events: impl IntoIterator<Item = Event>) -> Vec<Effect> {
        for event in events {
            self.raft.step(now, event);
        }
        // `end_turn` checks every invariant, whatever the build profile
        // (`Raft::check_invariants_every_turn`, set by `Host::checked`).
        self.raft.end_turn(now, &mut self.commands);
        self.save_acked(now);
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
            Command::Truncate { from } => {
                self.note_written(from);
                self.log
                    .truncate_suffix_now(from)
                    .expect("core truncates within its log")
            }
            Command::Append { batches } => {
                if let Some(first) = batches.first() {
                    self.note_written(first.first_index());
                }
                self.log
                    .append_now(&batches)
                    .expect("core appends contiguously")
            }
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
                    self.applied.push(AppliedEntry::from(&entry));
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
            Command::CompactLog { upto } => self
                .log
                .compact_prefix_now(upto)
                .expect("compaction within the log"),
            Command::SendSnapshot { to, meta, term } => {
                effects.push(Effect::SendSnapshot { to, meta, term })
            }
            Command::RestoreSnapshot(meta) => {
                if let Some((received, data)) = self.received_snapshot.take()
                    && received.last == meta.last
                {
                    self.log.reset_now(meta.last).expect("log reset");
                    self.applied = data.clone();
                    self.snapshot = Some((meta.clone(), data));
                    effects.push(Effect::Complete(Event::SnapshotRestored(meta)));
                }
            }
            Command::RoleChanged { .. } => {}
            Command::MembershipChanged { index, membership } => {
                self.memberships
                    .push((index, membership.voters(), membership.learners()))
            }
            Command::MembershipResult { request_id, result } => {
                self.membership_results.push_back((request_id, result))
            }
            Command::TransferResult { request_id, result } => {
                self.transfer_results.push_back((request_id, result))
            }
        }
    }

    fn snapshot_index(&self) -> Index {
        self.snapshot
            .as_ref()
            .map_or(0, |(meta, _)| meta.last.index)
    }

    /// Completes a sync: everything appended so far becomes durable.
    pub fn complete_sync(&mut self) -> Event {
        Event::LogSynced {
            last: self.log.sync_now().expect("log sync"),
        }
    }

    /// Begins a sync that completes later ([`Host::end_sync`]): like the
    /// disk log's, it covers only what was written before it began.
    pub fn begin_sync(&mut self) -> HostSyncPoint {
        self.log.sync_begin()
    }

    /// Completes the sync begun at `point`.
    pub fn end_sync(&mut self, point: HostSyncPoint) -> Event {
        Event::LogSynced {
            last: self.log.sync_end(point).expect("log sync"),
        }
    }

    /// Completes a hard-state write.
    pub fn complete_hard_state(&mut self, hard_state: HardState) -> Event {
        self.log
            .save_hard_state_now(hard_state)
            .expect("hard-state save");
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
            tail: LogTail::START,
            prev_tail: LogTail::START,
            ..RestoredLog::default()
        },
        ..RaftState::default()
    }
}
