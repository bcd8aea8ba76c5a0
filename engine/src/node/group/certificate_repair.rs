//! Certificate repair: every committed entry needs a commit statement for
//! its token. Each turn a leader signs committed ranges no statement
//! covers, and a follower asks the leader and the other voters for the
//! statements it lacks; any voter serves the statements it holds, or signs
//! them from its log (docs/tokens.md).

use ordo_net::PeerMessage;
use ordo_storage::{LogStore, NodeId};

use super::Group;
use crate::core::Role;

impl<S: LogStore + 'static> Group<S> {
    /// Every committed entry needs a statement for its token. A leader
    /// signs committed ranges no statement covers (a leader died between
    /// commit and signing); a follower asks the leader and the other voters
    /// for the statements it missed (it was down or its queue was full when
    /// they were sent) or that do not fit its log (it starts at a snapshot
    /// point).
    pub(super) fn repair_certificates(&mut self, now: crate::core::Now) {
        if !self.certificates.enabled() {
            // Without tokens there is nothing to repair.
            return;
        }
        let applied = self.feed.applied_index.get();
        if self.certificates.links_due(applied, now.mono_us) {
            let certificates = self.certificates.clone();
            let store = self.log.store().clone();
            crate::node::env::spawn(async move { certificates.form_links(&*store, applied).await });
        }
        let floor = self.log.store().state().first_index();
        let Some((from, to)) = self.certificates.first_unservable(floor, applied) else {
            return;
        };
        if !self.certificates.start_repair(now.mono_us) {
            return;
        }
        if self.repair_gap.0 == from {
            self.repair_gap.1 += 1;
        } else {
            self.repair_gap = (from, 1);
        }
        // Every voter was asked twice and none holds a statement that fits
        // this node's log, nor can the leader sign one (it compacted the
        // entries): they are applied here, so committed, and this voter
        // signs them itself. Any voter's key verifies a token; a statement
        // asserts only that its entries are committed (runtime simulator,
        // seed 947: the one statement for 69..=70 was lost with a wiped
        // disk and every other log had moved past them).
        let self_sign = self.repair_gap.1 > 2 * self.raft.voters().len() as u64
            && self.certificates.may_sign(from);
        // A leader that may not sign these entries (it was no voter of the
        // configuration they were committed under: docs/tokens.md) asks
        // the other voters, as a follower does.
        let leading = self.raft.role() == Role::Leader && self.certificates.may_sign(from);
        if leading || self_sign {
            if !leading {
                tracing::warn!(
                    from,
                    to,
                    "no voter holds or can sign a statement for committed entries this node holds: signing them itself"
                );
            }
            let certificates = self.certificates.clone();
            let store = self.log.store().clone();
            let peers = self.peers.clone();
            let voters = self.raft.voters().to_vec();
            let term = self.raft.term();
            crate::node::env::spawn(async move {
                if let Err(error) = certificates
                    .sign_gap(&*store, term, from, to, &peers, &voters)
                    .await
                {
                    tracing::warn!(%error, from, to, "cannot sign uncovered committed entries");
                }
                certificates.repair_done();
            });
        } else {
            // Statements are self-authenticating: any voter that holds
            // one may serve it. Ask the leader (it can also sign what
            // no one holds) and, every other round, another voter (a
            // leader that got a snapshot instead of the entries may
            // lack what a follower kept).
            self.repair_rounds += 1;
            let others: Vec<NodeId> = self
                .raft
                .voters()
                .iter()
                .copied()
                .filter(|&v| v != self.config.id)
                .collect();
            let leader = self.raft.leader();
            let target = if leader != 0 && leader != self.config.id && self.repair_rounds % 2 == 1 {
                leader
            } else if others.is_empty() {
                return self.certificates.repair_done();
            } else {
                others[(self.repair_rounds / 2) as usize % others.len()]
            };
            let request = ordo_net::CertificateRequest {
                term: self.raft.term(),
                from_index: from,
                to_index: to,
                floor_index: floor,
            };
            // A full queue loses this round; the next retries.
            let _ = self
                .peers
                .try_send(target, PeerMessage::CertificateRequest(request));
        }
    }

    /// Sends the statements a voter asked for, those this node holds that
    /// fit the voter's log. A node that holds none signs them from its log
    /// if it has a key verifiers know: the entries are applied here, so
    /// committed, and a statement asserts nothing more. (The leader alone
    /// did once; a leader added later has no such key, and a member whose
    /// log starts at a snapshot then had no one to sign for it: runtime
    /// simulator, seeds 28 and 618.)
    pub(super) fn serve_certificates(&self, from: NodeId, request: ordo_net::CertificateRequest) {
        let may_sign = self.certificates.may_sign(request.from_index);
        let to = request.to_index.min(self.feed.applied_index.get());
        if request.from_index > to {
            return;
        }
        let floor = request.floor_index.min(request.from_index);
        if !self.certificates.covers_from(request.from_index, floor) {
            if !may_sign {
                return;
            }
            // No statement that fits the voter's log covers where it needs
            // one (its log starts at a snapshot point, or every copy of
            // the statement was lost): sign one for it from this leader's
            // log, if it still holds the entries.
            let held = self.log.store().state().first_index();
            if request.from_index < held || !self.certificates.start_signing_for_peer() {
                return;
            }
            let certificates = self.certificates.clone();
            let store = self.log.store().clone();
            let peers = self.peers.clone();
            let term = self.raft.term();
            let first = request.from_index;
            let last = to.min(first + 4 * 4096 - 1);
            crate::node::env::spawn(async move {
                if let Err(error) = certificates
                    .sign_gap(&*store, term, first, last, &peers, &[from])
                    .await
                {
                    tracing::warn!(%error, first, last, voter = from, "cannot sign statements a voter asked for");
                }
                certificates.signing_for_peer_done();
            });
            return;
        }
        for certificate in
            self.certificates
                .certificates_in(self.raft.term(), request.from_index, to, floor, 1024)
        {
            if self
                .peers
                .try_send(from, PeerMessage::Certificate(certificate))
                .is_err()
            {
                break;
            }
        }
    }
}
