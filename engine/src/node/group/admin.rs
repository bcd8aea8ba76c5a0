//! Administration: `ordo member` and `ordo transfer` from clients, and
//! membership changes and leadership transfers from the embedding API,
//! handed to the core and answered with its outcome; the configuration in
//! force, as members are added and removed.

use bytes::Bytes;
use ordo_net::transport::ClientConn;
use ordo_net::{
    AdminAnswer, AdminCommand, AdminFailure, AdminRequest, AdminResponse, ClientResponse,
    MemberEntry,
};
use ordo_storage::{Index, LogStore, NodeId};

use super::Group;
use crate::core::{
    ChangeError, Event, MemberRole, Membership, MembershipChange, Role, TransferError,
};
use crate::node::input::Reply;
use crate::node::members::{Directory, MemberView, MembersView};
use crate::node::peers::Peers;
use crate::token::ConfigLink;

/// Bytes of configuration links one `Chain` answer carries at most (the
/// client asks again for the rest).
const CHAIN_ANSWER_BYTES: usize = 1 << 20;

/// Who waits for the outcome of an administrative request.
pub(super) enum AdminWaiter {
    Membership(Reply<Result<Index, ChangeError>>),
    Transfer(Reply<Result<NodeId, TransferError>>),
    Client { sink: AdminSink, request_id: u64 },
}

/// An administrative outcome from the core (a membership change's, a
/// leadership transfer's): which waiter of the embedding API takes it,
/// and what a client is told.
pub(super) trait AdminOutcome: Sized {
    /// `waiter`'s reply, if it waits for this kind of outcome.
    fn reply(waiter: AdminWaiter) -> Option<Reply<Self>>;
    /// A client's answer: the success, or the failure's message and
    /// whether the client should retry it.
    fn for_client(self) -> Result<AdminAnswer, (bool, String)>;
}

impl AdminOutcome for Result<Index, ChangeError> {
    fn reply(waiter: AdminWaiter) -> Option<Reply<Self>> {
        match waiter {
            AdminWaiter::Membership(reply) => Some(reply),
            _ => None,
        }
    }

    fn for_client(self) -> Result<AdminAnswer, (bool, String)> {
        // Retried: at the leader, or once the new leader committed its
        // first entry.
        self.map(|index| AdminAnswer::Changed { index })
            .map_err(|e| {
                let retry = matches!(
                    e,
                    ChangeError::NotLeader { .. } | ChangeError::LeaderNotReady { .. }
                );
                (retry, e.to_string())
            })
    }
}

impl AdminOutcome for Result<NodeId, TransferError> {
    fn reply(waiter: AdminWaiter) -> Option<Reply<Self>> {
        match waiter {
            AdminWaiter::Transfer(reply) => Some(reply),
            _ => None,
        }
    }

    fn for_client(self) -> Result<AdminAnswer, (bool, String)> {
        self.map(|leader| AdminAnswer::Transferred { leader })
            .map_err(|e| (matches!(e, TransferError::NotLeader { .. }), e.to_string()))
    }
}

/// Where the answer to a client's administrative request goes: its
/// connection (shard 0), or the client shard that relayed it.
pub(super) enum AdminSink {
    Conn(ClientConn),
    Shard(Reply<AdminResponse>),
}

impl AdminSink {
    fn send(self, response: AdminResponse) {
        // The client may have gone away: nothing to answer then.
        match self {
            AdminSink::Conn(conn) => {
                // A client that does not read loses the answer; it asks again.
                let _ = conn.try_send(&ClientResponse::Admin(response));
            }
            AdminSink::Shard(reply) => {
                // The shard is gone (shutting down): its client with it.
                let _ = reply.send(response);
            }
        }
    }
}

impl<S: LogStore + 'static> Group<S> {
    /// A client's `ordo member` or `ordo transfer`.
    pub(super) fn admin_request(
        &mut self,
        now: crate::core::Now,
        request: AdminRequest,
        sink: AdminSink,
    ) {
        let AdminRequest {
            request_id: client_request_id,
            command,
        } = request;
        let change = match command {
            AdminCommand::ListMembers
                if self.raft.role() != Role::Leader && self.raft.leader() != 0 =>
            {
                // Only the leader knows how far each member is.
                self.answer_admin(
                    sink,
                    client_request_id,
                    Err((true, "the leader lists the members".into())),
                );
                return;
            }
            AdminCommand::ListMembers => {
                let view = self.members_view();
                let response = AdminResponse {
                    request_id: client_request_id,
                    result: Ok(AdminAnswer::Members {
                        index: view.index,
                        committed: view.committed,
                        members: view
                            .members
                            .iter()
                            .map(|m| MemberEntry {
                                id: m.id,
                                voter: m.role == MemberRole::Voter,
                                peer_addr: m.peer_addr.map(|a| a.to_string()).unwrap_or_default(),
                                client_addr: m
                                    .client_addr
                                    .map(|a| a.to_string())
                                    .unwrap_or_default(),
                                match_index: m.match_index,
                            })
                            .collect(),
                    }),
                    leader: self.leader_hint(),
                };
                sink.send(response);
                return;
            }
            AdminCommand::TransferLeadership { to } => {
                let request_id = self.admin_waiter(sink, client_request_id);
                self.raft
                    .step(now, Event::TransferLeadership { to, request_id });
                return;
            }
            AdminCommand::AddMember { id, learner, info } => MembershipChange::Add {
                id,
                role: if learner {
                    MemberRole::Learner
                } else {
                    MemberRole::Voter
                },
                info: Bytes::from(info),
            },
            AdminCommand::PromoteMember { id } => MembershipChange::Promote { id },
            AdminCommand::RemoveMember { id } => MembershipChange::Remove { id },
            AdminCommand::Chain { after } => {
                // Links are self-authenticating: any node answers with
                // what it holds.
                let (links, more) = self.certificates.chain_after(after, CHAIN_ANSWER_BYTES);
                let response = AdminResponse {
                    request_id: client_request_id,
                    result: Ok(AdminAnswer::Chain {
                        links: links.iter().map(ConfigLink::to_bytes).collect(),
                        more,
                    }),
                    leader: self.leader_hint(),
                };
                sink.send(response);
                return;
            }
        };
        let request_id = self.admin_waiter(sink, client_request_id);
        self.change_membership(now, request_id, change);
    }

    /// Hands the core a membership change, with what this node knows of
    /// members whose configuration carries no information.
    pub(super) fn change_membership(
        &mut self,
        now: crate::core::Now,
        request_id: u64,
        change: MembershipChange,
    ) {
        let known_info = self.known_info();
        let event = Event::ChangeMembership {
            request_id,
            change,
            known_info,
        };
        self.raft.step(now, event);
    }

    /// Registers a client's administrative request; returns the request id
    /// to hand the core.
    fn admin_waiter(&mut self, sink: AdminSink, client_request_id: u64) -> u64 {
        let request_id = self.request_id();
        let waiter = AdminWaiter::Client {
            sink,
            request_id: client_request_id,
        };
        self.admin_waiters.insert(request_id, waiter);
        request_id
    }

    /// What this node knows of the members whose configuration carries no
    /// information (the bootstrap voters): their addresses from
    /// `ordo.toml`, their keys from `cluster.keys` (as the key schedule
    /// holds them).
    fn known_info(&self) -> Vec<(NodeId, Bytes)> {
        self.directory
            .members
            .iter()
            .filter(|(_, (_, info))| info.is_none())
            .filter_map(|(&id, _)| {
                let info = crate::node::members::MemberInfo {
                    peer_addr: self.config.peer_addr_of(id)?,
                    client_addr: self.config.client_addr_of(id)?,
                    gossip_addr: (id == self.config.id)
                        .then_some(self.config.gossip_addr)
                        .flatten(),
                    public_key: self.certificates.voter_key(id).unwrap_or([0; 32]),
                };
                Some((id, info.encode()))
            })
            .collect()
    }

    /// Answers a client's administrative request.
    fn answer_admin(
        &self,
        sink: AdminSink,
        request_id: u64,
        result: Result<AdminAnswer, (bool, String)>,
    ) {
        let response = AdminResponse {
            request_id,
            result: result.map_err(|(not_leader, message)| AdminFailure {
                not_leader,
                message,
            }),
            leader: self.leader_hint(),
        };
        sink.send(response);
    }

    /// Answers whoever waits for administrative request `request_id`
    /// with the core's outcome: the embedding API's caller, or a client.
    pub(super) fn admin_result<R: AdminOutcome>(&mut self, request_id: u64, result: R) {
        match self.admin_waiters.remove(&request_id) {
            Some(AdminWaiter::Client { sink, request_id }) => {
                self.answer_admin(sink, request_id, result.for_client());
            }
            // The asker may have gone away.
            Some(waiter) => {
                if let Some(reply) = R::reply(waiter) {
                    drop(reply.send(result));
                }
            }
            None => {}
        }
    }

    /// The configuration in force, for `ordo member list`.
    pub(super) fn members_view(&self) -> MembersView {
        let (index, _) = self.raft.membership();
        let leading = self.raft.role() == Role::Leader;
        let members = self
            .directory
            .members
            .iter()
            .map(|(&id, &(role, _))| MemberView {
                id,
                role,
                peer_addr: self.directory.peer_addr(&self.config, id),
                client_addr: self.directory.client_addr(&self.config, id),
                match_index: if !leading {
                    None
                } else if id == self.config.id {
                    Some(self.raft.log().last_index())
                } else {
                    self.raft.progress(id).map(|p| p.match_index)
                },
            })
            .collect();
        MembersView {
            index,
            committed: index <= self.raft.log().commit(),
            leader: self.raft.leader(),
            members,
        }
    }

    /// The configuration in force changed: connect to new members, forget
    /// removed ones.
    pub(super) fn membership_changed(&mut self, index: Index, membership: &Membership) {
        let directory = Directory::new(index, membership);
        if let Peers::Tcp {
            transport, keys, ..
        } = &*self.peers
        {
            // Keys first: a member added now is dialed (or dials) next,
            // and its handshake must find its key.
            if let Some(keys) = keys {
                keys.set_members(directory.members.iter().filter_map(|(&id, (_, info))| {
                    info.as_ref().map(|info| (id, info.public_key))
                }));
            }
            for &id in self.directory.members.keys() {
                if id != self.config.id && !directory.members.contains_key(&id) {
                    transport.remove_peer(id);
                }
            }
            for &id in directory.members.keys() {
                if id == self.config.id {
                    continue;
                }
                let addr = directory.peer_addr(&self.config, id);
                if addr == self.directory.peer_addr(&self.config, id)
                    && self.directory.members.contains_key(&id)
                {
                    continue;
                }
                match addr {
                    Some(addr) => {
                        if let Err(error) = transport.add_peer(id, addr) {
                            tracing::error!(member = id, %error, "cannot add member as a peer");
                        }
                    }
                    None => tracing::error!(member = id, "no address known for member"),
                }
            }
        }
        tracing::info!(
            id = self.config.id,
            index,
            voters = ?membership.voters(),
            learners = ?membership.learners(),
            "membership changed"
        );
        self.leader_hint.borrow_mut().id = u64::MAX;
        self.directory = directory;
    }
}
