//! Command execution: the runtime runs what the core decided. Each
//! command of a turn goes to its executor: sends to the peers, log writes
//! and reads to `LogIo`, applies to the state machine (and the streams and
//! reads that wait for them), snapshots to `SnapshotIo`, answers to their
//! waiters (answers.rs, admin.rs).

use ordo_net::transport::SendError;
use ordo_net::{ForwardResults, ForwardTokens, Message, PeerMessage};
use ordo_storage::{Index, LogStore, NodeId};

use super::Group;
use crate::core::{ApplyBatch, Command, Event, Role};
use crate::node::timeline;

/// The timeline's name for sending `message`, for the messages of a
/// commit's path.
pub(super) fn send_hop(message: &Message) -> Option<&'static str> {
    match message {
        Message::Append(_) => Some("send.append"),
        Message::AppendResponse(_) => Some("send.append_response"),
        _ => None,
    }
}

/// The highest log index a message of a commit's path carries.
pub(super) fn message_index(message: &Message) -> Index {
    match message {
        Message::Append(append) => append.last_index(),
        Message::AppendResponse(response) => match response.result {
            ordo_net::AppendResult::Success { match_index } => match_index,
            _ => 0,
        },
        _ => 0,
    }
}

impl<S: LogStore + 'static> Group<S> {
    /// Runs one command of the core's turn, in the order the core emitted
    /// them.
    pub(super) fn execute(&mut self, command: Command) {
        match command {
            Command::Send { to, message } => {
                if timeline::enabled()
                    && let Some(hop) = send_hop(&message)
                {
                    timeline::mark(self.config.id, hop, to, message_index(&message));
                }
                self.send(to, message)
            }
            Command::PersistHardState(hard_state) => self.log.persist_hard_state(hard_state),
            Command::Truncate { from } => self.log.truncate(from),
            Command::Append { batches } => {
                self.observer
                    .appended(batches.iter().map(|b| b.entries().len() as u64));
                if let Some(last) = batches.last() {
                    timeline::mark(self.config.id, "append", 0, last.last_index());
                }
                self.log.append(batches)
            }
            Command::Sync => self.log.sync(),
            Command::ReadLog {
                purpose,
                from,
                bytes_max,
            } => self.log.read(purpose, from, bytes_max),
            Command::Apply(apply) => {
                timeline::mark(self.config.id, "apply", 0, apply.last_index);
                self.apply(apply)
            }
            Command::Respond { request_id, result } => {
                let index = result.as_ref().map_or(0, |committed| committed.index);
                timeline::mark(self.config.id, "respond", 0, index);
                self.respond(request_id, result)
            }
            Command::ReadReady { request_id, result } => match result {
                Ok(index) if index > self.feed.applied_index.get() => {
                    self.read_waiters
                        .entry(index)
                        .or_default()
                        .push((request_id, index));
                }
                result => self.answer_read(request_id, result),
            },
            Command::CreateSnapshot(meta) => {
                let data = crate::node::chain_store::wrap_snapshot(
                    &self.certificates.links_held(),
                    &self.state_machine.snapshot(),
                );
                self.snapshots.save(meta, data);
            }
            Command::CompactLog { upto } => {
                let upto = self.compaction_point(upto);
                let first = self.log.store().state().first_index();
                // Statements go once their entries are gone from the log:
                // the store drops whole segments only, and after the
                // compaction asked for here completes (a compaction
                // behind, so tokens are never cut short).
                self.certificates.compact(first.saturating_sub(1));
                if upto >= first {
                    self.log.compact(upto);
                }
            }
            Command::SendSnapshot { to, meta, term } => self.snapshots.send(to, meta, term),
            Command::RestoreSnapshot(meta) => match self
                .snapshots
                .take_received(&meta)
                .map(crate::node::chain_store::unwrap_snapshot)
            {
                Some(Err(error)) => {
                    tracing::error!(%error, "a received snapshot is malformed");
                    self.local.completion(Event::SnapshotNotRestored(meta));
                }
                Some(Ok((links, data))) => match self.state_machine.restore(&data) {
                    Ok(()) => {
                        tracing::info!(
                            id = self.config.id,
                            index = meta.last.index,
                            term = meta.last.term,
                            "recovery: installed a snapshot from the leader"
                        );
                        self.log.reset(meta.last);
                        self.certificates.adopt_links(links);
                        self.certificates
                            .start_schedule(meta.last.index, &snapshot_membership(&meta));
                        self.feed.applied_index.set(meta.last.index);
                        self.feed.applied_id.set(meta.last_id);
                        // Streams waiting for the next apply move on (and
                        // learn what the snapshot compacted): found by the
                        // runtime simulator, a stream on a follower that
                        // installed a snapshot waited for the next commit.
                        self.feed.notify.notify();
                        self.local.completion(Event::SnapshotRestored(meta));
                    }
                    Err(error) => {
                        tracing::error!(%error, "state machine refused the snapshot");
                        self.local.completion(Event::SnapshotNotRestored(meta));
                    }
                },
                None => {
                    // A duplicated `InstallSnapshot` arrived while the
                    // snapshot is still being saved (runtime simulator,
                    // seed 2318: the core waited for this restore forever).
                    tracing::debug!(snapshot = ?meta.last, "the snapshot to restore is not durable yet");
                    self.local.completion(Event::SnapshotNotRestored(meta));
                }
            },
            Command::Repaired => {
                tracing::info!(
                    id = self.config.id,
                    "recovery: repaired by the leader; the node votes again"
                );
                if let Some(hook) = &self.repaired_hook {
                    hook();
                } else if let Err(error) = crate::node::durability::repaired(&self.config.data_dir)
                {
                    // The next start repairs again: safe, only slower.
                    tracing::warn!(%error, "cannot clear the recorded repair");
                }
            }
            Command::MembershipChanged { index, membership } => {
                self.membership_changed(index, &membership)
            }
            Command::MembershipResult { request_id, result } => {
                self.admin_result(request_id, result)
            }
            Command::TransferResult { request_id, result } => self.admin_result(request_id, result),
            Command::RoleChanged { role, term, leader } => {
                tracing::info!(
                    id = self.config.id,
                    role = role.as_str(),
                    term,
                    leader,
                    "role changed"
                );
            }
        }
    }

    fn send(&mut self, to: NodeId, message: Message) {
        if let Message::ForwardResults(results) = &message {
            self.send_forward_tokens(to, results);
        }
        self.send_peer(to, PeerMessage::Raft(message));
    }

    /// The leader's runtime sends the commit tokens of the entries a
    /// `ForwardResults` answers just before it, on the same (priority)
    /// lane, so they arrive first: the follower keeps them until the core
    /// answers its proposers. Tokens are the runtime's data, not the core's.
    fn send_forward_tokens(&mut self, to: NodeId, results: &ForwardResults) {
        let tokens: Vec<(u64, Vec<u8>)> = results
            .results
            .iter()
            .filter_map(|(_, result)| {
                let committed = result.as_ref().ok()?;
                let token = self.certificates.token_for(committed)?;
                Some((committed.index, token))
            })
            .collect();
        if !tokens.is_empty() {
            let term = results.term;
            self.send_peer(
                to,
                PeerMessage::ForwardTokens(ForwardTokens { term, tokens }),
            );
        }
    }

    fn send_peer(&mut self, to: NodeId, message: PeerMessage) {
        match self.peers.try_send(to, message) {
            Ok(()) => self.sent_to_peers = true,
            Err(SendError::Full { .. }) => {
                // Backpressure: Raft tolerates a lost message; the peer is
                // slow, so probe it rather than stream into a full queue.
                let now = self.clock.now();
                self.raft.step(now, Event::Unreachable { to });
            }
            Err(error) => tracing::debug!(to, %error, "peer send failed"),
        }
    }

    fn apply(&mut self, apply: ApplyBatch) {
        let leader = self.raft.role() == Role::Leader;
        if leader {
            self.certificates.sign_commit(&apply, self.raft.term());
        }
        self.certificates.applied(&apply);
        self.state_machine.apply(&apply);
        self.feed.applied_index.set(apply.last_index);
        self.feed.applied_id.set(apply.last_id());
        self.feed.notify.notify();
        if let Some(gossip) = &self.gossip {
            gossip.applied(&apply);
        }
        let applied = apply.last_index;
        let ready: Vec<Index> = self
            .read_waiters
            .range(..=applied)
            .map(|(&i, _)| i)
            .collect();
        for index in ready {
            for (request_id, read_index) in self.read_waiters.remove(&index).unwrap_or_default() {
                self.answer_read(request_id, Ok(read_index));
            }
        }
    }
}

/// The configuration a snapshot holds (its core state's; a snapshot
/// written before configurations were kept there names only its voters).
pub(in crate::node) fn snapshot_membership(
    meta: &ordo_net::SnapshotMeta,
) -> crate::core::Membership {
    match crate::core::decode_core_state(&meta.core_state) {
        Ok((Some(membership), _)) => membership,
        _ => crate::core::Membership::of_voters(&meta.voters),
    }
}
