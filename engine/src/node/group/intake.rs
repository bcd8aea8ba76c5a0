//! Intake: what reaches the group besides completions of its own
//! commands. Peer frames go to the core (Raft messages), the snapshot
//! transfer or the certificates; client calls and the embedding API's
//! requests (and client shards' batches) become core events, each with the
//! waiter its answer goes to (answers.rs), or are answered at once.

use ordo_net::transport::{ClientCall, PeerEvent};
use ordo_net::{
    ClientRequest, ClientResponse, PeerMessage, ProposeError, ProposeResponse, StatusResponse,
};
use ordo_storage::LogStore;

use super::Group;
use super::admin::{AdminSink, AdminWaiter};
use super::answers::{ProposalWaiter, Responder, node_status};
use crate::core::{Event, Proposal};
use crate::node::input::External;
use crate::node::shards::ShardBatch;

impl<S: LogStore + 'static> Group<S> {
    pub(super) fn peer_event(&mut self, now: crate::core::Now, event: PeerEvent) {
        match event {
            PeerEvent::Message { from, message } => match message {
                PeerMessage::Raft(message) => {
                    if crate::node::timeline::enabled()
                        && let Some(hop) = super::execute::send_hop(&message)
                    {
                        let index = super::execute::message_index(&message);
                        // "send.append" → "recv.append".
                        let hop = if hop == "send.append" {
                            "recv.append"
                        } else {
                            "recv.append_response"
                        };
                        crate::node::timeline::mark(self.config.id, hop, from, index);
                    }
                    self.raft.step(now, Event::Message { from, message })
                }
                PeerMessage::ForwardTokens(tokens) => {
                    self.certificates.absorb_forward_tokens(tokens)
                }
                PeerMessage::SnapshotChunk(chunk) => self.snapshots.chunk_received(from, chunk),
                PeerMessage::SnapshotAck(ack) => self.snapshots.ack_received(from, ack),
                PeerMessage::Certificate(certificate) => self.certificates.received(certificate),
                PeerMessage::CertificateRequest(request) => self.serve_certificates(from, request),
            },
            PeerEvent::Unreachable { peer } => self.raft.step(now, Event::Unreachable { to: peer }),
        }
    }

    pub(super) fn client_call(&mut self, now: crate::core::Now, call: ClientCall) {
        let ClientCall { conn, request } = call;
        match request {
            ClientRequest::Propose(propose) => {
                crate::node::timeline::mark(self.config.id, "client.call", 0, 0);
                if self.shutting_down {
                    let response = ClientResponse::Propose(ProposeResponse {
                        request_id: propose.request_id,
                        result: Err(ProposeError::Stopped),
                        leader: self.leader_hint(),
                        token: Vec::new(),
                    });
                    // A client that does not read loses the answer; it retries with its session.
                    let _ = conn.try_send(&response);
                    return;
                }
                let request_id = self.request_id();
                self.observer.proposed(1);
                self.responders.insert(
                    request_id,
                    ProposalWaiter {
                        responder: Responder::Client {
                            conn,
                            request_id: propose.request_id,
                        },
                        session: (propose.client_id, propose.seq),
                    },
                );
                self.raft.step(
                    now,
                    Event::Propose(Proposal {
                        request_id,
                        client_id: propose.client_id,
                        seq: propose.seq,
                        payload: propose.payload,
                        redirect: propose.redirect,
                    }),
                );
            }
            ClientRequest::Read(read) => {
                let request_id = self.request_id();
                self.read_responders.insert(
                    request_id,
                    Responder::Client {
                        conn,
                        request_id: read.request_id,
                    },
                );
                self.raft.step(now, Event::Read { request_id });
            }
            ClientRequest::Status(status) => {
                let response = ClientResponse::Status(StatusResponse {
                    request_id: status.request_id,
                    status: node_status(
                        &self.raft.status(),
                        self.raft.repair_reason(),
                        self.raft.peers_repairing(),
                    ),
                    leader: self.leader_hint(),
                });
                // A client that does not read loses the answer; it retries with its session.
                let _ = conn.try_send(&response);
            }
            ClientRequest::Log(log) => {
                self.serve_log(conn, log.request_id, log.from_id, log.follow)
            }
            ClientRequest::Admin(admin) => self.admin_request(now, admin, AdminSink::Conn(conn)),
        }
    }

    /// A client shard's proposals and reads of one turn.
    fn shard_batch(&mut self, now: crate::core::Now, shard: usize, batch: ShardBatch) {
        self.observer.proposed(batch.proposals.len() as u64);
        for proposal in batch.proposals {
            let request_id = self.request_id();
            self.responders.insert(
                request_id,
                ProposalWaiter {
                    responder: Responder::Shard {
                        shard,
                        tag: proposal.tag,
                        request_id: proposal.client_request_id,
                    },
                    session: (proposal.client_id, proposal.seq),
                },
            );
            let event = Event::Propose(Proposal {
                request_id,
                client_id: proposal.client_id,
                seq: proposal.seq,
                payload: proposal.payload,
                redirect: proposal.redirect,
            });
            self.raft.step(now, event);
        }
        for (tag, client_request_id) in batch.reads {
            let request_id = self.request_id();
            self.read_responders.insert(
                request_id,
                Responder::Shard {
                    shard,
                    tag,
                    request_id: client_request_id,
                },
            );
            self.raft.step(now, Event::Read { request_id });
        }
    }

    pub(super) fn external_request(&mut self, now: crate::core::Now, request: External) {
        match request {
            External::Propose {
                client_id,
                seq,
                payload,
                reply,
            } => {
                if self.shutting_down {
                    // The proposer may have given up; nothing to answer then.
                    let _ = reply.send(Err(ProposeError::Stopped));
                    return;
                }
                let request_id = self.request_id();
                let waiter = ProposalWaiter {
                    responder: Responder::Api(reply),
                    session: (client_id, seq),
                };
                self.responders.insert(request_id, waiter);
                self.raft.step(
                    now,
                    Event::Propose(Proposal {
                        request_id,
                        client_id,
                        seq,
                        payload,
                        redirect: false,
                    }),
                );
            }
            External::Read { reply } => {
                let request_id = self.request_id();
                self.read_responders
                    .insert(request_id, Responder::Api(reply));
                self.raft.step(now, Event::Read { request_id });
            }
            External::Status { reply } => {
                // The asker may have gone away: nothing to answer then.
                let _ = reply.send(self.raft.status());
            }
            External::Subscribe { from_id, sink } => self.subscribe(from_id, sink),
            External::ShardBatch { shard, batch } => self.shard_batch(now, shard, batch),
            External::ClientStatus { reply } => {
                // The asker may have gone away: nothing to answer then.
                let _ = reply.send((
                    node_status(
                        &self.raft.status(),
                        self.raft.repair_reason(),
                        self.raft.peers_repairing(),
                    ),
                    self.leader_hint(),
                ));
            }
            External::ClientLog {
                request_id,
                from_id,
                follow,
                sink,
            } => self.serve_log_into(request_id, from_id, follow, sink),
            External::TransferLeadership { to, reply } => {
                let request_id = self.request_id();
                if let Some(reply) = reply {
                    self.admin_waiters
                        .insert(request_id, AdminWaiter::Transfer(reply));
                }
                self.raft
                    .step(now, Event::TransferLeadership { to, request_id })
            }
            External::ChangeMembership { change, reply } => {
                let request_id = self.request_id();
                self.admin_waiters
                    .insert(request_id, AdminWaiter::Membership(reply));
                self.change_membership(now, request_id, change)
            }
            External::ClientAdmin { request, reply } => {
                self.admin_request(now, request, AdminSink::Shard(reply))
            }
            External::Chain { reply } => {
                // The asker may have gone away: nothing to answer then.
                let _ = reply.send(self.certificates.links_held());
            }
            External::Members { reply } => {
                // The asker may have gone away: nothing to answer then.
                let _ = reply.send(self.members_view());
            }
            External::Shutdown => self.begin_shutdown(now),
        }
    }
}
