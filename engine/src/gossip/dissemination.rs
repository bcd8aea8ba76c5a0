//! Plumtree on a gossip node (eager push, lazy announcements, graft and
//! prune) and the anti-entropy that makes delivery complete: a gap in the
//! dense ids is pulled from neighbours that announced it (or grafted, when
//! the tree looks broken), then from a voter.

use ordo_storage::MessageId;

use super::order::Admission;
use super::{GossipMessage, GossipNode, PeerAddr, PeerKind, Verify, Wire};

impl<V: Verify> GossipNode<V> {
    /// Plumtree GOSSIP: a full message pushed by `from` (or passed on by
    /// a neighbour that repaired it).
    pub(super) fn on_push(
        &mut self,
        from: PeerAddr,
        message: GossipMessage,
        hops: u16,
        repair: bool,
    ) {
        if self.kind == PeerKind::Voter {
            return;
        }
        self.stats.payload_received += 1;
        let tree = self.is_gossip_peer(from) && !repair;
        match self.admit(from, &message) {
            Admission::Seen => {
                // §3.2: a duplicate means this link is not needed in the
                // tree. Said again on every duplicate, in case a prune was
                // lost. Voters are never pruned: each message enters the
                // tree at one voter link only.
                if tree {
                    self.adopt_or_disconnect(from);
                    if self.links.contains(from) {
                        self.links.set_eager(from, false);
                        self.stats.prunes_sent += 1;
                        self.send(from, Wire::Prune);
                    }
                }
                return;
            }
            Admission::OutOfWindow => return,
            Admission::New => {}
        }
        if !self.is_gossip_peer(from) {
            self.feeding_voter(from);
        }
        if tree {
            // §3.3: the link that brought a new message is a tree branch.
            self.repairs_in_a_row = 0;
            self.adopt_or_disconnect(from);
            self.links.set_eager(from, true);
            self.depth_x16 = (self.depth_x16 * 7 + u32::from(hops) * 16) / 8;
        }
        // A later id proves the earlier ones exist, but they may still be
        // on a longer branch of the tree: Plumtree starts repair timers on
        // announcements, so this only bounds how long a gap can go
        // unnoticed when every announcement was lost too.
        self.repair.learn(
            message.id,
            self.now_us + self.config.repair_timeout_ms * 1_000,
        );
        self.stats.hops_max = self.stats.hops_max.max(hops);
        self.forward(from, &message, hops, repair);
        self.accept(message);
    }

    /// Passes a new message on to the eager links other than `from`,
    /// except those that announced they hold it. Done on receipt, before
    /// in-order delivery: a gap here must not hold up the subtree.
    fn forward(&mut self, from: PeerAddr, message: &GossipMessage, hops: u16, repair: bool) {
        let id = message.id;
        let targets: Vec<PeerAddr> = self
            .links
            .eager_except(Some(from))
            .into_iter()
            .filter(|&peer| !self.links.holds(peer, id))
            .collect();
        for peer in targets {
            self.send(
                peer,
                Wire::Push {
                    message: message.clone(),
                    hops: hops.saturating_add(1),
                    repair,
                },
            );
        }
    }

    /// Plumtree IHAVE, compressed: `from` holds every id up to `delivered`.
    pub(super) fn on_ihave(&mut self, from: PeerAddr, delivered: MessageId, above: u64) {
        if self.kind == PeerKind::Voter {
            // A gossip node it feeds confirms what it holds.
            self.links.peer_delivered(from, delivered, above);
            return;
        }
        if self.is_gossip_peer(from) {
            self.adopt_or_disconnect(from);
            self.links.peer_delivered(from, delivered, above);
            let highest = match above {
                0 => delivered,
                bits => delivered.saturating_add(64 - u64::from(bits.leading_zeros())),
            };
            self.repair.learn(highest, self.now_us);
        } else {
            // A voter (or a member not known yet) announces at the root of
            // the tree: give the tree time to bring the messages first.
            let grace = self.config.voter_announce_grace_ms * 1_000;
            self.repair.learn(delivered, self.now_us + grace);
        }
    }

    /// Plumtree GRAFT: `from` misses `[first, to]` and wants this link
    /// eager again.
    pub(super) fn on_graft(&mut self, from: PeerAddr, first: MessageId, to: MessageId) {
        if self.kind == PeerKind::Voter {
            // Voters are not in the tree; answer as a pull.
            self.on_pull(from, first, to);
            return;
        }
        self.adopt_or_disconnect(from);
        self.links.set_eager(from, true);
        let Some((first, to)) = self.bound_range(first, to) else {
            return;
        };
        let messages = self.cached_for_pull(first, to);
        // The answer travels on as a push of the tree from here.
        let hops = (self.depth_x16 / 16 + 1).min(u32::from(u16::MAX)) as u16;
        for message in messages {
            self.send(
                from,
                Wire::Push {
                    message,
                    hops,
                    repair: false,
                },
            );
        }
    }

    /// Anti-entropy: `from` asks for `[first, to]`.
    pub(super) fn on_pull(&mut self, from: PeerAddr, first: MessageId, to: MessageId) {
        let Some((first, to)) = self.bound_range(first, to) else {
            return;
        };
        if self.kind == PeerKind::Voter {
            self.serve_from_log(from, first, to);
            return;
        }
        let messages = self.cached_for_pull(first, to);
        self.send_pull_reply(from, messages, self.order.delivered());
    }

    /// Messages `from` sent because this node asked.
    pub(super) fn on_pull_reply(
        &mut self,
        from: PeerAddr,
        messages: Vec<GossipMessage>,
        delivered: MessageId,
    ) {
        if self.kind == PeerKind::Voter {
            return;
        }
        self.links.peer_delivered(from, delivered, 0);
        let gossip = self.is_gossip_peer(from);
        if gossip {
            self.repair.learn(delivered, self.now_us);
        } else if self.kind_of(from) == Some(PeerKind::Voter) {
            // A voter knows what is committed: nothing above exists, and a
            // higher id learned from someone else was a lie.
            self.repair.clamp(delivered);
        }
        let wanted = self.order.delivered() + 1;
        if gossip && !messages.iter().any(|m| m.id == wanted) {
            // The peer no longer holds what it announced (its cache moved
            // on): ask a voter now rather than other peers in turn.
            self.repair
                .escalate(wanted, self.config.repair_peer_attempts, self.now_us);
        }
        let count_max = self.config.pull_messages_max as usize;
        for message in messages.into_iter().take(count_max) {
            self.stats.payload_received += 1;
            if self.admit(from, &message) == Admission::New {
                // Passed on to the neighbours that have not announced it:
                // below a lost branch they miss it too, and would otherwise
                // each wait for their own repair, one hop of timers at a
                // time.
                self.repair.learn(message.id, self.now_us);
                let hops = (self.depth_x16 / 16).min(u32::from(u16::MAX)) as u16;
                self.forward(from, &message, hops, true);
                self.accept(message);
            }
        }
    }

    /// A neighbour, or a member SWIM knows as a gossip node.
    fn is_gossip_peer(&self, peer: PeerAddr) -> bool {
        self.links.contains(peer) || self.kind_of(peer) == Some(PeerKind::Gossip)
    }

    /// Dedup, bounds, then verification of a message from `from`.
    fn admit(&mut self, from: PeerAddr, message: &GossipMessage) -> Admission {
        if message.payload.len() + message.token.len() > self.config.message_bytes_max {
            self.stats.rejected += 1;
            tracing::warn!(peer = %from, id = message.id, "gossip message too large; dropped");
            return Admission::OutOfWindow;
        }
        match self.order.admission(message.id, message.size_bytes()) {
            Admission::Seen => {
                self.stats.duplicates += 1;
                Admission::Seen
            }
            Admission::OutOfWindow => {
                self.stats.out_of_window += 1;
                Admission::OutOfWindow
            }
            Admission::New => match self.verifier.verify(message) {
                Ok(()) => Admission::New,
                Err(reason) => {
                    self.stats.rejected += 1;
                    tracing::warn!(peer = %from, id = message.id, %reason,
                        "gossip message failed verification; dropped, not forwarded");
                    Admission::OutOfWindow
                }
            },
        }
    }

    /// Takes a verified new message: cached, buffered, and whatever is now
    /// in order delivered.
    fn accept(&mut self, message: GossipMessage) {
        self.cache.insert(message.clone());
        for ready in self.order.insert(message) {
            self.stats.delivered += 1;
            self.delivering.push(ready);
        }
        self.repair.delivered(self.order.delivered());
    }

    /// Clamps a requested range to what one answer may hold; `None` if it
    /// is empty.
    pub(super) fn bound_range(
        &self,
        first: MessageId,
        to: MessageId,
    ) -> Option<(MessageId, MessageId)> {
        let first = first.max(1);
        let to = to.min(first.saturating_add(self.config.pull_messages_max - 1));
        (first <= to).then_some((first, to))
    }

    /// Repairs the first gap once its timer expired, from a neighbour that
    /// announced the ids, then from other such neighbours, then from a
    /// voter, which has every committed message.
    ///
    /// A repair is a pull (the tree stays as it is) unless the tree looks
    /// broken here; then it is a graft (Plumtree §3.3: the link becomes a
    /// tree branch). Plumtree grafts on every miss, which assumes a miss
    /// means a broken branch; with lossy links most misses are single lost
    /// messages, and a graft per miss costs about two duplicates (the new
    /// branch makes a cycle until a duplicate prunes it) and, since the
    /// nodes below a lost branch all miss and graft at once, reshapes the
    /// tree all the time. Measured in `docs/gossip.md`.
    pub(super) fn maybe_repair(&mut self) {
        let Some((first, end)) = self.order.first_gap(self.repair.known_max()) else {
            return;
        };
        let Some(due) = self.repair.due_at_us(first, self.graft_timeout_us()) else {
            return;
        };
        if self.now_us < due {
            return;
        }
        let to = end.min(first.saturating_add(self.config.pull_messages_max - 1));
        let attempt = self.repair.attempts(first);
        let holders: Vec<PeerAddr> = self
            .links
            .holding(first)
            .into_iter()
            .filter(|&peer| self.kind_of(peer) != Some(PeerKind::Voter))
            .collect();
        let retry_at = self.now_us + self.config.repair_timeout_ms * 1_000;
        self.repair.sent(first, retry_at);
        if attempt == 0 {
            self.repairs_in_a_row = self.repairs_in_a_row.saturating_add(1);
        }
        if attempt < self.config.repair_peer_attempts
            && let Some(peer) = self.pick(&holders)
        {
            if attempt == 0 && self.tree_looks_broken() {
                self.eager_link_lost = false;
                self.repairs_in_a_row = 0;
                self.links.set_eager(peer, true);
                self.stats.grafts_sent += 1;
                self.send(peer, Wire::Graft { from: first, to });
            } else {
                self.stats.pulls_sent += 1;
                self.send(peer, Wire::Pull { from: first, to });
            }
            return;
        }
        let voters = self.membership.members_of(PeerKind::Voter);
        if let Some(voter) = self.pick(&voters) {
            self.stats.voter_pulls_sent += 1;
            self.send(voter, Wire::Pull { from: first, to });
        } else if let Some(peer) = self.pick(&holders) {
            self.stats.pulls_sent += 1;
            self.send(peer, Wire::Pull { from: first, to });
        }
    }

    /// A branch of the tree that fed this node failed (an eager link was
    /// lost), the node has no eager link at all, or it has repaired
    /// `graft_after_repairs` messages in a row without a single push (its
    /// part of the tree was cut off, e.g. by two prunes at once).
    fn tree_looks_broken(&self) -> bool {
        self.eager_link_lost
            || self.links.eager_except(None).is_empty()
            || self.repairs_in_a_row >= self.config.graft_after_repairs
    }
}
