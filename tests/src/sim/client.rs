//! Simulated clients: closed-loop proposers that pick a node, follow leader
//! hints, and retry with their session `(client_id, seq)` whenever the
//! outcome is unknown, exactly as the Rust client does. One client has no
//! session: it never retries an unknown outcome (that could duplicate).

use ordo_engine::core::Rng;
use ordo_net::{Committed, ProposeError, ProposeResult};
use ordo_storage::{ClientId, NodeId, Seq};

/// How long a client waits for an answer before retrying elsewhere.
pub const ANSWER_TIMEOUT_US: u64 = 2_000_000;

/// The proposal a client is waiting on.
#[derive(Clone, Debug)]
pub struct Outstanding {
    /// Its sequence number.
    pub seq: Seq,
    /// Its payload (unique per run).
    pub payload: Vec<u8>,
    /// Request ids of every attempt still unanswered.
    pub attempts: Vec<u64>,
    /// When to give up on the current attempt.
    pub deadline_us: u64,
}

/// What a client decided after an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The proposal committed.
    Acknowledged(Seq, Vec<u8>, Committed),
    /// Retry the same proposal after this long.
    Retry(u64),
    /// The outcome stays unknown (sessionless client): move on.
    GaveUp,
    /// An answer to an attempt that no longer matters.
    Stale,
}

/// One client.
#[derive(Clone, Debug)]
pub struct Client {
    /// Session id; `0` for the sessionless client.
    pub client_id: ClientId,
    next_seq: Seq,
    budget: u64,
    /// What it waits on.
    pub outstanding: Option<Outstanding>,
    /// The leader it believes in.
    pub leader_hint: NodeId,
    /// Proposals acknowledged.
    pub acknowledged: u64,
}

impl Client {
    /// A client that will make `budget` proposals.
    pub fn new(client_id: ClientId, budget: u64) -> Self {
        Self {
            client_id,
            next_seq: 1,
            budget,
            outstanding: None,
            leader_hint: 0,
            acknowledged: 0,
        }
    }

    /// Whether it has proposals left or one outstanding.
    pub fn busy(&self) -> bool {
        self.budget > 0 || self.outstanding.is_some()
    }

    /// Starts the next proposal, if any is left; returns it.
    pub fn start_next(&mut self, now_us: u64) -> Option<&Outstanding> {
        if self.outstanding.is_some() || self.budget == 0 {
            return None;
        }
        self.budget -= 1;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.outstanding = Some(Outstanding {
            seq,
            payload: format!("client-{}-{}-seq-{seq}", self.client_id, self.budget).into_bytes(),
            attempts: Vec::new(),
            deadline_us: now_us + ANSWER_TIMEOUT_US,
        });
        self.outstanding.as_ref()
    }

    /// Picks the node for the next attempt: the leader hint if it is up,
    /// otherwise any node that is up.
    pub fn pick_node(&self, rng: &mut Rng, up: &[NodeId]) -> Option<NodeId> {
        if up.is_empty() {
            return None;
        }
        if self.leader_hint != 0 && up.contains(&self.leader_hint) && rng.chance(3, 4) {
            return Some(self.leader_hint);
        }
        Some(up[rng.range(0, up.len() as u64) as usize])
    }

    /// Records an attempt sent with `request_id`.
    pub fn sent(&mut self, request_id: u64, now_us: u64) {
        if let Some(outstanding) = &mut self.outstanding {
            outstanding.attempts.push(request_id);
            outstanding.deadline_us = now_us + ANSWER_TIMEOUT_US;
        }
    }

    /// An answer to `request_id`.
    pub fn answered(&mut self, request_id: u64, result: ProposeResult, rng: &mut Rng) -> Outcome {
        let Some(outstanding) = &mut self.outstanding else {
            return Outcome::Stale;
        };
        let Some(at) = outstanding.attempts.iter().position(|&id| id == request_id) else {
            return Outcome::Stale;
        };
        outstanding.attempts.remove(at);
        match result {
            Ok(committed) => {
                let done = self.outstanding.take().expect("checked");
                self.acknowledged += 1;
                Outcome::Acknowledged(done.seq, done.payload, committed)
            }
            Err(error) => {
                if error.leader_hint() != 0 {
                    self.leader_hint = error.leader_hint();
                }
                match error {
                    ProposeError::NotLeader { .. }
                    | ProposeError::Busy { .. }
                    | ProposeError::Stopped => Outcome::Retry(rng.range(1_000, 20_000)),
                    ProposeError::Unknown { .. } if self.client_id != 0 => {
                        Outcome::Retry(rng.range(1_000, 20_000))
                    }
                    ProposeError::Unknown { .. } => {
                        // Retrying without a session could commit it twice.
                        self.outstanding = None;
                        Outcome::GaveUp
                    }
                    ProposeError::SessionExpired { .. } | ProposeError::TooLarge { .. } => {
                        // Neither can happen with the simulator's windows and
                        // payloads; the world reports them as failures.
                        Outcome::GaveUp
                    }
                }
            }
        }
    }

    /// The current attempt timed out (a node crashed, a message was lost).
    pub fn timed_out(&mut self, now_us: u64) -> bool {
        let Some(outstanding) = &self.outstanding else {
            return false;
        };
        if now_us < outstanding.deadline_us {
            return false;
        }
        if self.client_id == 0 {
            if outstanding.attempts.is_empty() {
                return true;
            }
            // Unknown outcome without a session: give up.
            self.outstanding = None;
            return false;
        }
        true
    }
}
