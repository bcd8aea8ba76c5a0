//! Answering waiters: every proposal and read the group took is answered
//! once, to whoever waits for it (a client of shard 0, a client of another
//! shard through that shard's batch of replies, or a caller of the
//! embedding API), with the commit token the answer carries.

use std::time::Duration;

use bytes::Bytes;
use futures_lite::future;
use ordo_net::transport::ClientConn;
use ordo_net::{
    ClientResponse, Committed, LeaderHint, NodeRole, NodeStatus, ProposeError, ProposeResponse,
    ProposeResult, ReadError, ReadResponse,
};
use ordo_storage::{Index, LogStore};

use super::Group;
use crate::core::{Role, Status};
use crate::node::Receipt;
use crate::node::feed;
use crate::node::input::Reply;
use crate::node::shards::ShardReply;

/// A proposal's session: `(client_id, seq)`.
type Session = (u64, u64);

/// Who waits for an answer of type `T` (a proposal's receipt, a read
/// index): a client of this shard, a client of another shard (its answer
/// rides in that shard's batch of replies), or a caller of the embedding
/// API.
pub(super) enum Responder<T> {
    /// A client connected to shard 0; `request_id` is the client's.
    Client { conn: ClientConn, request_id: u64 },
    /// A client of client shard `shard`, which matches the answer back
    /// to it by `tag`; `request_id` is the client's.
    Shard {
        shard: usize,
        tag: u64,
        request_id: u64,
    },
    /// A caller of the embedding API ([`crate::node::NodeHandle`]).
    Api(Reply<T>),
}

/// Who waits for the answer to a proposal, and the proposal's session.
pub(super) struct ProposalWaiter {
    pub(super) responder: Responder<Result<Receipt, ProposeError>>,
    pub(super) session: Session,
}

/// An answer whose token [`Group::find_token`] built: the request, its
/// result, the token.
pub(super) type TokenFound = (u64, ProposeResult, Vec<u8>);

impl<S: LogStore + 'static> Group<S> {
    /// The leader hint every answer carries, rebuilt only when the leader
    /// changes.
    pub(super) fn leader_hint(&self) -> LeaderHint {
        let leader = self.raft.leader();
        let mut hint = self.leader_hint.borrow_mut();
        if hint.id != leader {
            *hint = LeaderHint {
                id: leader,
                client_addr: self
                    .directory
                    .client_addr(&self.config, leader)
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
            };
        }
        hint.clone()
    }

    pub(super) fn respond(&mut self, request_id: u64, result: ProposeResult) {
        let token = match &result {
            Ok(committed) => match self.certificates.token_for(committed) {
                Some(token) => token,
                None if self.certificates.enabled() => {
                    // Not among the recent statements (an answer from the
                    // session table, or a statement that has not arrived):
                    // never answer without it.
                    return self.find_token(request_id, *committed);
                }
                None => Vec::new(),
            },
            Err(_) => Vec::new(),
        };
        self.answer(request_id, result, token);
    }

    /// Builds the token of `committed` from the log and its stored
    /// statement, waiting up to [`feed::TOKEN_WAIT_MAX`] for a statement
    /// still missing (the certificate repair fetches it); then answers.
    /// Past the wait the answer is `Unknown`: the proposer retries with
    /// its session and gets the receipt with its token once it exists.
    fn find_token(&mut self, request_id: u64, committed: ordo_net::Committed) {
        let Some(waiter) = self.responders.get(&request_id) else {
            return;
        };
        let (client_id, seq) = waiter.session;
        if committed.index < self.log.store().state().first_index() && client_id != 0 {
            // An answer from the session table for an entry compacted
            // since: no token can be cut for it any more. It committed;
            // that is what the session can still say.
            let expired = ProposeError::SessionExpired { client_id, seq };
            return self.answer(request_id, Err(expired), Vec::new());
        }
        let store = self.log.store().clone();
        let certificates = self.certificates.clone();
        let found = self.tokens_found.clone();
        let local = self.local.clone();
        let clock = self.clock;
        crate::node::env::spawn(async move {
            let started = clock.mono_us();
            let wait_us = feed::TOKEN_WAIT_MAX.as_micros() as u64;
            let answer = loop {
                let generation = certificates.stored.generation();
                match certificates.token_at(&*store, committed.index).await {
                    Ok(token) => break (Ok(committed), token.to_vec()),
                    Err(crate::node::TokenError::Missing { .. }) => {
                        let waited = clock.mono_us().saturating_sub(started);
                        if waited >= wait_us {
                            break (Err(ProposeError::Unknown { leader: 0 }), Vec::new());
                        }
                        future::or(
                            certificates.stored.wait(generation),
                            crate::node::env::sleep(Duration::from_micros(wait_us - waited)),
                        )
                        .await;
                    }
                    Err(error) => {
                        tracing::warn!(%error, index = committed.index, "cannot build the token of an answer");
                        break (Err(ProposeError::Unknown { leader: 0 }), Vec::new());
                    }
                }
            };
            found.borrow_mut().push((request_id, answer.0, answer.1));
            local.0.notify.notify();
        });
    }

    /// Sends the answers [`Group::find_token`] completed.
    pub(super) fn answer_tokens_found(&mut self) {
        if self.tokens_found.borrow().is_empty() {
            return;
        }
        let found = std::mem::take(&mut *self.tokens_found.borrow_mut());
        for (request_id, result, token) in found {
            let result = result.map_err(|error| match error {
                ProposeError::Unknown { .. } => ProposeError::Unknown {
                    leader: self.raft.leader(),
                },
                other => other,
            });
            self.answer(request_id, result, token);
        }
    }

    /// Answers the proposal `request_id` with `result` and its `token`.
    fn answer(&mut self, request_id: u64, result: ProposeResult, token: Vec<u8>) {
        let Some(waiter) = self.responders.remove(&request_id) else {
            return;
        };
        self.observer.answered(request_id);
        if let (Some(gossip), Ok(committed)) = (&self.gossip, &result) {
            gossip.answered(committed, &token);
        }
        self.deliver(
            waiter.responder,
            (result, token),
            |(result, token), request_id, leader| {
                ClientResponse::Propose(ProposeResponse {
                    request_id,
                    result,
                    leader,
                    token,
                })
            },
            |(result, token)| {
                result.map(
                    |Committed {
                         id,
                         index,
                         term,
                         ts,
                     }| Receipt {
                        id,
                        index,
                        term,
                        ts,
                        token: Bytes::from(token),
                    },
                )
            },
        );
    }

    pub(super) fn answer_read(&mut self, request_id: u64, result: Result<Index, ReadError>) {
        let Some(responder) = self.read_responders.remove(&request_id) else {
            return;
        };
        self.deliver(
            responder,
            result,
            |result, request_id, leader| {
                ClientResponse::Read(ReadResponse {
                    request_id,
                    result,
                    leader,
                })
            },
            |result| result,
        );
    }

    /// Hands `answer` to whoever waits for it: a client gets it as
    /// `wire(answer, its request id, the leader hint)`, a caller of the
    /// embedding API as `api(answer)`.
    fn deliver<A, T>(
        &mut self,
        responder: Responder<T>,
        answer: A,
        wire: impl FnOnce(A, u64, LeaderHint) -> ClientResponse,
        api: impl FnOnce(A) -> T,
    ) {
        match responder {
            Responder::Client { conn, request_id } => {
                let response = wire(answer, request_id, self.leader_hint());
                if conn.try_send(&response).is_err() {
                    // A client that does not read its answers loses them;
                    // it retries with its session and gets the same answer.
                    tracing::debug!("client answer dropped: connection full or closed");
                }
            }
            Responder::Shard {
                shard,
                tag,
                request_id,
            } => {
                let response = wire(answer, request_id, self.leader_hint());
                self.shard_out[shard].push(ShardReply { tag, response });
            }
            Responder::Api(reply) => {
                // The asker may have given up; nothing to answer then.
                let _ = reply.send(api(answer));
            }
        }
    }

    /// On shutdown or failure, everything still waiting gets an answer.
    pub(super) fn fail_everything(&mut self) {
        let ids: Vec<u64> = self.responders.keys().copied().collect();
        for id in ids {
            self.respond(id, Err(ProposeError::Stopped));
        }
        let reads: Vec<u64> = self.read_responders.keys().copied().collect();
        for id in reads {
            self.answer_read(id, Err(ReadError::Stopped));
        }
        self.read_waiters.clear();
        self.flush_shard_replies();
    }

    /// Sends each client shard the answers gathered this turn, one message
    /// per shard.
    pub(super) fn flush_shard_replies(&mut self) {
        for (shard, out) in self.shard_out.iter_mut().enumerate() {
            if !out.is_empty() {
                // Unbounded: fails only once the shard has stopped, and its clients with it.
                let _ = self.shard_replies[shard].try_send(std::mem::take(out));
            }
        }
    }
}

/// The wire form of the core's status; `repair` says why it is repairing
/// ([`crate::core::Raft::repair_reason`]).
pub fn node_status(status: &Status, repair: Option<&str>, peers_repairing: Vec<u64>) -> NodeStatus {
    NodeStatus {
        id: status.id,
        role: match status.role {
            Role::Follower => NodeRole::Follower,
            Role::PreCandidate => NodeRole::PreCandidate,
            Role::Candidate => NodeRole::Candidate,
            Role::Leader => NodeRole::Leader,
        },
        term: status.term,
        leader: status.leader,
        commit_index: status.commit_index,
        last_index: status.last_index,
        durable_index: status.durable_index,
        applied_index: status.applied_index,
        repairing: status.repairing,
        repair: repair.unwrap_or_default().to_string(),
        peers_repairing,
    }
}
