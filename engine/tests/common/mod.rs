//! Driving one Raft core by hand: the harness of the paper tests.
//!
//! A [`Node`] is the real core over a [`MemLog`] that mirrors the core's log
//! writes, so that log reads (`Command::ReadLog`) can be served. Nothing
//! completes on its own: a test feeds exact messages with [`Node::receive`],
//! inspects the commands that come out, and decides when storage completes
//! with [`Node::settle`] (every sync, hard-state write and log read
//! requested so far completes, and so on until the core asks for nothing
//! more).

#![allow(dead_code)] // each test crate uses a different part

use bytes::Bytes;
use ordo_engine::core::{
    Command, CoreConfig, Event, LogTail, Now, Proposal, Raft, RaftState, RestoredLog, Role,
};
use ordo_engine::testkit::WALL_START_US;
use ordo_net::{
    AppendRequest, AppendResponse, AppendResult, Heartbeat, HeartbeatResponse, Message,
    VoteRequest, VoteResponse,
};
use ordo_storage::{
    Batch, BatchKind, BatchMeta, EntryOut, HardState, Index, LogId, MemLog, NodeId, Term,
};

/// The first instant of every test.
pub const START: Now = Now {
    mono_us: 1_000_000,
    wall_us: WALL_START_US,
};

/// The configuration of the Raft paper: no pre-vote, no check-quorum (both
/// are thesis §9.6 additions that change what a vote request does).
pub fn paper_config() -> CoreConfig {
    CoreConfig {
        pre_vote: false,
        check_quorum: false,
        ..CoreConfig::default()
    }
}

/// `1..=n`.
pub fn ids(n: u64) -> Vec<NodeId> {
    (1..=n).collect()
}

/// One entry as the state machine received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Log index.
    pub index: Index,
    /// Term.
    pub term: Term,
    /// Entry kind (no-op or user entry).
    pub kind: BatchKind,
    /// Message id (`0` for no-ops).
    pub id: u64,
    /// Payload.
    pub payload: Vec<u8>,
}

/// One core, its mirrored log and its clock.
pub struct Node {
    /// The core under test.
    pub raft: Raft,
    /// What the core's `Append`/`Truncate` commands wrote.
    pub store: MemLog,
    /// The node's clock.
    pub now: Now,
    /// Everything the core handed to the state machine, in order.
    pub applied: Vec<Applied>,
}

impl Node {
    /// A fresh node: empty log, term 0.
    pub fn new(id: NodeId, voters: &[NodeId], config: CoreConfig) -> Self {
        Self::restore(id, voters, config, HardState::default(), &[])
    }

    /// A node restarted over a durable log whose entry `i + 1` has term
    /// `terms[i]` (one batch per run of equal terms, built by
    /// `ordo_storage::conformance::batch`: ids equal indexes, a batch's
    /// first entry has `ts = 10 * index` and the next ones follow by 1 µs)
    /// and the hard state `hard_state`.
    pub fn restore(
        id: NodeId,
        voters: &[NodeId],
        config: CoreConfig,
        hard_state: HardState,
        terms: &[Term],
    ) -> Self {
        Self::restore_after_loss(id, voters, config, hard_state, terms, None)
    }

    /// [`Node::restore`] for a node whose storage found `loss` (it starts
    /// repairing).
    pub fn restore_after_loss(
        id: NodeId,
        voters: &[NodeId],
        config: CoreConfig,
        hard_state: HardState,
        terms: &[Term],
        loss: Option<ordo_engine::core::Loss>,
    ) -> Self {
        let store = MemLog::new();
        store
            .append_now(&log_batches(terms))
            .expect("contiguous log");
        store.sync_now().expect("memory sync");
        store.save_hard_state_now(hard_state);
        let state = store.state_now();
        let last_batch = (state.last.index > state.prev.index)
            .then(|| store.read_now(state.last.index, 1).ok())
            .flatten()
            .and_then(|mut batches| batches.pop());
        let tail = state
            .last_header
            .map_or(LogTail::START, |h| LogTail::after(&h));
        let restored = RestoredLog {
            prev: state.prev,
            last: state.last,
            term_runs: store.term_runs_now(),
            tail,
            prev_tail: LogTail::START,
            last_batch,
            commit: hard_state.commit,
            applied: 0,
        };
        let raft_state = RaftState {
            hard_state,
            log: restored,
            snapshot: Default::default(),
            loss,
            configs: Vec::new(),
        };
        let raft =
            Raft::new(id, voters, config, raft_state, 0x5EED ^ id, START).expect("valid config");
        Self {
            raft,
            store,
            now: START,
            applied: Vec::new(),
        }
    }

    /// One runtime turn: every event, then `end_turn`. Log writes are
    /// mirrored into `store` (they become durable only through `settle`).
    pub fn turn(&mut self, events: impl IntoIterator<Item = Event>) -> Vec<Command> {
        for event in events {
            self.raft.step(self.now, event);
        }
        let mut commands = Vec::new();
        self.raft.end_turn(self.now, &mut commands);
        for command in &commands {
            match command {
                Command::Truncate { from } => self
                    .store
                    .truncate_suffix_now(*from)
                    .expect("truncate within the log"),
                Command::Append { batches } => {
                    self.store.append_now(batches).expect("contiguous append")
                }
                Command::Apply(apply) => {
                    for entry in apply.entries() {
                        self.applied.push(Applied {
                            index: entry.index,
                            term: entry.term,
                            kind: entry.kind,
                            id: entry.id,
                            payload: entry.payload.to_vec(),
                        });
                    }
                }
                _ => {}
            }
        }
        commands
    }

    /// A message from `from`, in a turn of its own.
    pub fn receive(&mut self, from: NodeId, message: Message) -> Vec<Command> {
        self.turn([Event::Message { from, message }])
    }

    /// A client proposal without a session, in a turn of its own.
    pub fn propose(&mut self, request_id: u64, payload: &[u8]) -> Vec<Command> {
        self.turn([propose_event(request_id, payload)])
    }

    /// Moves the clock forward by `ms` and ticks.
    pub fn advance(&mut self, ms: u64) -> Vec<Command> {
        self.now.mono_us += ms * 1_000;
        self.now.wall_us += ms * 1_000;
        self.turn([Event::Tick])
    }

    /// Moves the clock to `mono_us` (never backwards) and ticks.
    pub fn tick_at(&mut self, mono_us: u64) -> Vec<Command> {
        let delta = mono_us.saturating_sub(self.now.mono_us);
        self.now.mono_us += delta;
        self.now.wall_us += delta;
        self.turn([Event::Tick])
    }

    /// Lets the election timer fire: moves the clock to the core's next
    /// deadline and ticks.
    pub fn fire_election(&mut self) -> Vec<Command> {
        assert_ne!(self.raft.role(), Role::Leader);
        self.tick_at(self.raft.next_deadline_us())
    }

    /// Completes every storage request in `commands` (hard-state writes,
    /// syncs, log reads), feeds the completions back, and repeats until the
    /// core requests nothing more. Returns `commands` followed by every
    /// command the completions produced.
    pub fn settle(&mut self, commands: Vec<Command>) -> Vec<Command> {
        let mut all = commands;
        let mut seen = 0;
        for _ in 0..1_000 {
            let events = self.completions(&all[seen..]);
            seen = all.len();
            if events.is_empty() {
                return all;
            }
            let more = self.turn(events);
            all.extend(more);
        }
        panic!("node {} never settled", self.raft.id());
    }

    /// The completion events of the storage requests in `commands`.
    pub fn completions(&mut self, commands: &[Command]) -> Vec<Event> {
        let mut events = Vec::new();
        for command in commands {
            match command {
                Command::PersistHardState(hard_state) => {
                    self.store.save_hard_state_now(*hard_state);
                    events.push(Event::HardStatePersisted(*hard_state));
                }
                Command::Sync => {
                    self.store.sync_now().expect("memory sync");
                    events.push(Event::LogSynced {
                        last: self.store.state_now().last,
                    });
                }
                Command::ReadLog {
                    purpose,
                    from,
                    bytes_max,
                } => {
                    let batches = self.store.read_now(*from, *bytes_max).unwrap_or_default();
                    events.push(Event::LogRead {
                        purpose: *purpose,
                        batches,
                    });
                }
                _ => {}
            }
        }
        events
    }

    /// Makes this node leader of the next term: its election timer fires,
    /// its hard state becomes durable, and the other voters grant (pre-)votes
    /// one by one until it wins. Returns every command on the way.
    pub fn elect(&mut self) -> Vec<Command> {
        let fired = self.fire_election();
        let mut all = self.settle(fired);
        let peers: Vec<NodeId> = self
            .raft
            .voters()
            .iter()
            .copied()
            .filter(|&v| v != self.raft.id())
            .collect();
        for &peer in &peers {
            if self.raft.role() != Role::PreCandidate {
                break;
            }
            let response = VoteResponse {
                term: self.raft.term() + 1,
                granted: true,
                pre_vote: true,
                repairing: false,
            };
            let more = self.receive(peer, Message::VoteResponse(response));
            all.extend(self.settle(more));
        }
        for &peer in &peers {
            if self.raft.role() == Role::Leader {
                break;
            }
            let response = VoteResponse {
                term: self.raft.term(),
                granted: true,
                pre_vote: false,
                repairing: false,
            };
            let more = self.receive(peer, Message::VoteResponse(response));
            all.extend(self.settle(more));
        }
        assert_eq!(
            self.raft.role(),
            Role::Leader,
            "node {} did not win",
            self.raft.id()
        );
        all
    }

    /// As leader, has every follower accept every append in `commands`
    /// (each in a turn of its own), then settles. Returns what followed.
    pub fn accept_all(&mut self, commands: &[Command]) -> Vec<Command> {
        let mut all = Vec::new();
        for (to, request) in appends(commands) {
            let more = self.receive(to, accept(&request));
            all.extend(self.settle(more));
        }
        all
    }

    /// [`Node::elect`], then every follower accepts the no-op, so that the
    /// leader takes proposals.
    pub fn elect_and_commit_noop(&mut self) {
        let commands = self.elect();
        self.accept_all(&commands);
        let last = self.raft.log().last_index();
        assert_eq!(self.raft.log().commit(), last, "the no-op committed");
        assert_eq!(self.raft.log().applied(), last, "the no-op applied");
    }

    /// The terms of the log, index 1 first (what the core's view says).
    pub fn log_terms(&self) -> Vec<Term> {
        let log = self.raft.log();
        (log.first_index()..=log.last_index())
            .map(|index| log.term_at(index).expect("held"))
            .collect()
    }

    /// Every entry the store holds, flattened: `(index, term, id, ts,
    /// payload)`.
    pub fn stored_entries(&self) -> Vec<(Index, Term, u64, u64, Vec<u8>)> {
        let state = self.store.state_now();
        if state.last.index == state.prev.index {
            return Vec::new();
        }
        let batches = self
            .store
            .read_now(state.prev.index + 1, usize::MAX)
            .expect("read");
        batches
            .iter()
            .flat_map(|b| {
                b.entries()
                    .map(|e| (e.index, e.term, e.id, e.ts, e.payload.to_vec()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// A proposal event without a session.
pub fn propose_event(request_id: u64, payload: &[u8]) -> Event {
    Event::Propose(Proposal {
        request_id,
        client_id: 0,
        seq: 0,
        payload: Bytes::copy_from_slice(payload),
        redirect: false,
    })
}

/// One batch per run of equal terms in `terms` (entry `i + 1` has term
/// `terms[i]`).
pub fn log_batches(terms: &[Term]) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < terms.len() {
        let term = terms[start];
        let end = terms[start..]
            .iter()
            .position(|&t| t != term)
            .map_or(terms.len(), |n| start + n);
        out.push(ordo_storage::conformance::batch(
            term,
            start as u64 + 1,
            (end - start) as u32,
        ));
        start = end;
    }
    out
}

/// A user batch of `term` from `first_index` with the given payloads (ids
/// equal indexes, timestamps from `10 * first_index` by 1 µs).
pub fn user_batch(term: Term, first_index: Index, payloads: &[&[u8]]) -> Batch {
    let entries = payloads
        .iter()
        .map(|payload| EntryOut {
            client_id: 0,
            seq: 0,
            payload,
        })
        .collect();
    Batch::encode(
        BatchMeta {
            kind: BatchKind::Entries,
            term,
            first_index,
            first_id: first_index,
            first_ts: first_index * 10,
        },
        entries,
    )
}

/// An AppendEntries request.
pub fn append(term: Term, prev: LogId, commit: Index, batches: Vec<Batch>) -> Message {
    Message::Append(AppendRequest {
        term,
        prev,
        commit,
        batches,
    })
}

/// A heartbeat.
pub fn heartbeat(term: Term, commit: Index) -> Message {
    Message::Heartbeat(Heartbeat {
        term,
        commit,
        read_round: 0,
        last_index: commit,
    })
}

/// A (real) vote request.
pub fn vote(term: Term, last: LogId) -> Message {
    Message::Vote(VoteRequest {
        term,
        last,
        pre_vote: false,
        transfer: false,
    })
}

/// A (real) vote answer.
pub fn vote_response(term: Term, granted: bool) -> Message {
    Message::VoteResponse(VoteResponse {
        term,
        granted,
        pre_vote: false,
        repairing: false,
    })
}

/// A successful append answer.
pub fn append_ok(term: Term, match_index: Index) -> Message {
    Message::AppendResponse(AppendResponse {
        repairing: false,
        term,
        result: AppendResult::Success { match_index },
    })
}

/// A heartbeat answer.
pub fn heartbeat_response(term: Term, last_index: Index) -> Message {
    Message::HeartbeatResponse(HeartbeatResponse {
        repairing: false,
        term,
        read_round: 0,
        last_index,
    })
}

/// The follower's acceptance of `request` (it holds everything it carried,
/// durably).
pub fn accept(request: &AppendRequest) -> Message {
    append_ok(request.term, request.last_index())
}

/// Every message sent, in order.
///
/// Heartbeats come with their read round zeroed: every heartbeat takes a
/// fresh round (so that its answer can be ordered against
/// acknowledgements), and the read tests check rounds through the reads
/// they confirm.
pub fn sends(commands: &[Command]) -> Vec<(NodeId, Message)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Send {
                to,
                message: Message::Heartbeat(heartbeat),
            } => Some((
                *to,
                Message::Heartbeat(Heartbeat {
                    read_round: 0,
                    ..heartbeat.clone()
                }),
            )),
            Command::Send { to, message } => Some((*to, message.clone())),
            _ => None,
        })
        .collect()
}

/// Every AppendEntries request sent, in order.
pub fn appends(commands: &[Command]) -> Vec<(NodeId, AppendRequest)> {
    sends(commands)
        .into_iter()
        .filter_map(|(to, m)| match m {
            Message::Append(request) => Some((to, request)),
            _ => None,
        })
        .collect()
}

/// Every vote request sent (pre-votes included), in order.
pub fn vote_requests(commands: &[Command]) -> Vec<(NodeId, VoteRequest)> {
    sends(commands)
        .into_iter()
        .filter_map(|(to, m)| match m {
            Message::Vote(request) => Some((to, request)),
            _ => None,
        })
        .collect()
}

/// Every vote answer sent, in order.
pub fn vote_responses(commands: &[Command]) -> Vec<(NodeId, VoteResponse)> {
    sends(commands)
        .into_iter()
        .filter_map(|(to, m)| match m {
            Message::VoteResponse(response) => Some((to, response)),
            _ => None,
        })
        .collect()
}

/// Every append answer sent, in order.
pub fn append_responses(commands: &[Command]) -> Vec<(NodeId, AppendResponse)> {
    sends(commands)
        .into_iter()
        .filter_map(|(to, m)| match m {
            Message::AppendResponse(response) => Some((to, response)),
            _ => None,
        })
        .collect()
}

/// The hard states the core asked to persist, in order.
pub fn hard_states(commands: &[Command]) -> Vec<HardState> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::PersistHardState(hard_state) => Some(*hard_state),
            _ => None,
        })
        .collect()
}

/// The batches of every `Append` command, in order.
pub fn appended(commands: &[Command]) -> Vec<Batch> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Append { batches } => Some(batches.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// The `from` of every `Truncate` command, in order.
pub fn truncations(commands: &[Command]) -> Vec<Index> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Truncate { from } => Some(*from),
            _ => None,
        })
        .collect()
}

/// Whether `commands` ask for a sync.
pub fn syncs(commands: &[Command]) -> bool {
    commands.iter().any(|c| matches!(c, Command::Sync))
}
