//! Simulated clients: closed-loop proposers that pick a node, follow leader
//! hints, and retry with their session `(client_id, seq)` whenever the
//! outcome is unknown, exactly as the Rust client does. A session client
//! keeps up to its window of sequence numbers in flight at once (the Rust
//! client pipelines 64), so proposals of one session arrive, commit and
//! are retried out of order. One client has no session: one proposal at a
//! time, and it never retries an unknown outcome (that could duplicate).

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
    /// Request ids of every attempt still unanswered (a late answer to a
    /// timed-out attempt still counts).
    pub attempts: Vec<u64>,
    /// The attempt in flight: the latest one, until it is answered or its
    /// deadline passes. An older attempt that never got its answer (the
    /// node crashed with it) does not hold the next retry back.
    pub in_flight: Option<u64>,
    /// When to give up on the current attempt.
    pub deadline_us: u64,
    /// With no attempt in flight: when to send the next one.
    pub retry_at_us: u64,
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
    /// What it waits on, by sequence number.
    pub outstanding: Vec<Outstanding>,
    /// How many proposals it keeps in flight.
    pub window: usize,
    /// The leader it believes in.
    pub leader_hint: NodeId,
    /// Proposals acknowledged.
    pub acknowledged: u64,
}

impl Client {
    /// A client that will make `budget` proposals, `window` at a time (one
    /// without a session).
    pub fn new(client_id: ClientId, budget: u64, window: usize) -> Self {
        Self {
            client_id,
            next_seq: 1,
            budget,
            outstanding: Vec::new(),
            window: if client_id == 0 { 1 } else { window.max(1) },
            leader_hint: 0,
            acknowledged: 0,
        }
    }

    /// Whether it has proposals left or outstanding.
    pub fn busy(&self) -> bool {
        self.budget > 0 || !self.outstanding.is_empty()
    }

    /// Starts the next proposal if one is left and the window has room;
    /// returns its sequence number. As the Rust client, it never runs more
    /// than `window` sequence numbers past its oldest unanswered one, so a
    /// retry always finds its answer in the session (whose
    /// `session_results_max` is at least the window).
    pub fn start_next(&mut self, now_us: u64) -> Option<Seq> {
        let oldest = self.outstanding.iter().map(|o| o.seq).min();
        if self.outstanding.len() >= self.window
            || self.budget == 0
            || oldest.is_some_and(|oldest| self.next_seq >= oldest + self.window as u64)
        {
            return None;
        }
        self.budget -= 1;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.outstanding.push(Outstanding {
            seq,
            payload: format!("client-{}-{}-seq-{seq}", self.client_id, self.budget).into_bytes(),
            attempts: Vec::new(),
            in_flight: None,
            deadline_us: now_us + ANSWER_TIMEOUT_US,
            retry_at_us: now_us,
        });
        Some(seq)
    }

    /// The proposals to send now: those with no attempt in flight whose
    /// retry time came, and those whose attempt timed out (a node crashed,
    /// a message was lost). A sessionless proposal that timed out with an
    /// attempt in flight is given up (its outcome stays unknown).
    pub fn due(&mut self, now_us: u64) -> Vec<Seq> {
        let sessionless = self.client_id == 0;
        self.outstanding
            .retain(|o| !(sessionless && !o.attempts.is_empty() && now_us >= o.deadline_us));
        self.outstanding
            .iter()
            .filter(|o| {
                (o.in_flight.is_none() && now_us >= o.retry_at_us) || now_us >= o.deadline_us
            })
            .map(|o| o.seq)
            .collect()
    }

    /// When it next has something to do (a retry or a deadline).
    pub fn next_wake(&self) -> Option<u64> {
        self.outstanding
            .iter()
            .map(|o| {
                if o.in_flight.is_none() {
                    o.retry_at_us
                } else {
                    o.deadline_us
                }
            })
            .min()
    }

    /// The outstanding proposal `seq`.
    pub fn get(&self, seq: Seq) -> Option<&Outstanding> {
        self.outstanding.iter().find(|o| o.seq == seq)
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

    /// Records an attempt at `seq` sent with `request_id`.
    pub fn sent(&mut self, seq: Seq, request_id: u64, now_us: u64) {
        if let Some(outstanding) = self.outstanding.iter_mut().find(|o| o.seq == seq) {
            outstanding.attempts.push(request_id);
            outstanding.in_flight = Some(request_id);
            outstanding.deadline_us = now_us + ANSWER_TIMEOUT_US;
        }
    }

    /// An answer to `request_id` at time `now_us`.
    pub fn answered(
        &mut self,
        request_id: u64,
        result: ProposeResult,
        rng: &mut Rng,
        now_us: u64,
    ) -> Outcome {
        let Some(position) = self
            .outstanding
            .iter()
            .position(|o| o.attempts.contains(&request_id))
        else {
            return Outcome::Stale;
        };
        let outstanding = &mut self.outstanding[position];
        outstanding.attempts.retain(|&id| id != request_id);
        if outstanding.in_flight == Some(request_id) {
            outstanding.in_flight = None;
        }
        match result {
            Ok(committed) => {
                let done = self.outstanding.remove(position);
                self.acknowledged += 1;
                Outcome::Acknowledged(done.seq, done.payload, committed)
            }
            Err(error) => {
                // A node that knows no leader (one outside the cluster,
                // say, that never will) makes the hint worthless.
                self.leader_hint = error.leader_hint();
                let retry = |outstanding: &mut Outstanding, rng: &mut Rng| {
                    let after = rng.range(1_000, 20_000);
                    outstanding.retry_at_us = now_us + after;
                    Outcome::Retry(after)
                };
                match error {
                    ProposeError::NotLeader { .. }
                    | ProposeError::Busy { .. }
                    | ProposeError::Stopped => retry(&mut self.outstanding[position], rng),
                    ProposeError::Unknown { .. } if self.client_id != 0 => {
                        retry(&mut self.outstanding[position], rng)
                    }
                    ProposeError::Unknown { .. } => {
                        // Retrying without a session could commit it twice.
                        self.outstanding.remove(position);
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
}
