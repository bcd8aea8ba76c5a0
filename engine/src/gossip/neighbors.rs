//! The overlay under the tree: each gossip node keeps between
//! `neighbors_min` and `neighbors_max` symmetric links to random gossip
//! members that SWIM reports alive (HyParView's active view, with SWIM as
//! the peer sampling and failure detection). Links are symmetric because
//! Plumtree prunes and grafts both ends of a link.

use super::membership::MemberChange;
use super::{GossipNode, PeerAddr, PeerKind, Verify, Wire};

impl<V: Verify> GossipNode<V> {
    /// Asks random gossip members to become neighbours while below the
    /// minimum.
    pub(super) fn maintain_neighbors(&mut self) {
        let now = self.now_us;
        self.neighbor_requests.retain(|_, &mut until| until > now);
        if now < self.next_neighbor_check_us {
            return;
        }
        self.next_neighbor_check_us = now + self.config.repair_timeout_ms * 1_000;
        let mut wanted = self
            .config
            .neighbors_min
            .saturating_sub(self.links.len() + self.neighbor_requests.len());
        let mut candidates: Vec<PeerAddr> = self
            .membership
            .members_of(PeerKind::Gossip)
            .into_iter()
            .filter(|&peer| {
                !self.links.contains(peer) && !self.neighbor_requests.contains_key(&peer)
            })
            .collect();
        while wanted > 0 && !candidates.is_empty() {
            let at = self.rng.range(0, candidates.len() as u64) as usize;
            let peer = candidates.swap_remove(at);
            let urgent = self.links.is_empty();
            self.neighbor_requests
                .insert(peer, now + self.config.repair_timeout_ms * 1_000);
            self.send(peer, Wire::Neighbor { urgent });
            wanted -= 1;
        }
    }

    /// `from` asks to become a neighbour.
    pub(super) fn on_neighbor(&mut self, from: PeerAddr, urgent: bool) {
        if self.kind == PeerKind::Voter {
            self.send(from, Wire::NeighborReply { accepted: false });
            return;
        }
        let mut accepted = self.links.contains(from) || self.links.add(from, self.now_us);
        // HyParView's high-priority join: a node with no neighbour at all
        // must get one, so a full node makes room.
        if !accepted && urgent {
            let links: Vec<PeerAddr> = self.links.iter().map(|(peer, _)| peer).collect();
            if let Some(evicted) = self.pick(&links) {
                self.drop_link(evicted);
                self.send(evicted, Wire::Disconnect);
                accepted = self.links.add(from, self.now_us);
            }
        }
        if accepted {
            self.neighbor_requests.remove(&from);
            self.new_link(from);
        }
        self.send(from, Wire::NeighborReply { accepted });
    }

    /// `from` answered a neighbour request.
    pub(super) fn on_neighbor_reply(&mut self, from: PeerAddr, accepted: bool) {
        self.neighbor_requests.remove(&from);
        if !accepted || self.kind == PeerKind::Voter || self.links.contains(from) {
            return;
        }
        if self.links.add(from, self.now_us) {
            self.new_link(from);
        } else {
            self.send(from, Wire::Disconnect);
        }
    }

    /// Traffic from a gossip peer that is not a neighbour: the peer thinks
    /// it is (a lost disconnect, or this node restarted), so take it back
    /// if there is room and tell it otherwise.
    pub(super) fn adopt_or_disconnect(&mut self, peer: PeerAddr) {
        if self.kind == PeerKind::Voter || self.links.contains(peer) {
            return;
        }
        if self.links.add(peer, self.now_us) {
            self.neighbor_requests.remove(&peer);
            self.new_link(peer);
        } else {
            self.send(peer, Wire::Disconnect);
        }
    }

    /// A link was just made: the peer hears this node's watermark at the
    /// next tick, so neither pushes what the other already has.
    fn new_link(&mut self, peer: PeerAddr) {
        self.links.announced(peer, (0, 0), 0);
        self.next_lazy_flush_us = self.now_us;
        self.send_chain(peer);
    }

    /// Forgets the link to `peer` (it disconnected, is unreachable or down).
    pub(super) fn drop_link(&mut self, peer: PeerAddr) {
        if self.links.get(peer).is_some_and(|link| link.eager) {
            self.eager_link_lost = true;
        }
        self.links.remove(peer);
        self.neighbor_requests.remove(&peer);
        if self.entry == Some(peer) {
            self.entry = None;
        }
        // Refill soon rather than at the next periodic check.
        self.next_neighbor_check_us = self.now_us;
    }

    /// Reacts to what SWIM reported since the last call.
    pub(super) fn apply_member_changes(&mut self) {
        let changes = std::mem::take(&mut self.changes);
        for change in &changes {
            match *change {
                MemberChange::Up(_, _) => {
                    if self.links.len() < self.config.neighbors_min
                        || (self.kind == PeerKind::Voter && self.links.has_room())
                    {
                        self.next_neighbor_check_us = self.now_us;
                    }
                }
                MemberChange::Down(peer) => self.drop_link(peer),
            }
        }
        self.changes = changes;
        self.changes.clear();
    }
}
