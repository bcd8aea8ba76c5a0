//! A voter's gossip side: it publishes the messages it committed into the
//! tree through one entry link, announces its commit watermark to the
//! gossip nodes it feeds, and answers pulls for any committed message from
//! its log: the last resort of anti-entropy.

use ordo_storage::MessageId;

use super::{Command, GossipMessage, GossipNode, PeerAddr, PeerKind, Verify, Wire};

impl<V: Verify> GossipNode<V> {
    /// A message this voter received from a client committed.
    pub(super) fn publish(&mut self, message: GossipMessage) {
        if self.kind != PeerKind::Voter {
            tracing::warn!("publish on a gossip node ignored");
            return;
        }
        self.stats.published += 1;
        self.committed = self.committed.max(message.id);
        self.cache.insert(message.clone());
        if self.entry.is_none() {
            self.maintain_downstream();
        }
        if let Some(entry) = self.entry {
            if self.unconfirmed.len() == self.config.cache_messages_max {
                self.unconfirmed.pop_front();
            }
            self.unconfirmed.push_back((message.id, self.now_us, 1));
            self.send(
                entry,
                Wire::Push {
                    message,
                    hops: 0,
                    repair: false,
                },
            );
        }
    }

    /// The entry of the tree reports what it holds; a publication it does
    /// not hold a graft timeout after its push is pushed again (to another
    /// fed node after the second try): a lost first hop would otherwise
    /// leave every gossip node to find the message missing and pull it
    /// from a voter by itself.
    pub(super) fn confirm_publications(&mut self) {
        let timeout = self.config.graft_timeout_ms * 1_000;
        let now = self.now_us;
        let mut again = Vec::new();
        let mut kept = std::collections::VecDeque::new();
        while let Some((id, pushed_at, pushes)) = self.unconfirmed.pop_front() {
            let held = self.links.iter().any(|(_, link)| link.holds(id));
            if held || pushes > self.config.repair_peer_attempts {
                continue;
            }
            if now >= pushed_at + timeout {
                again.push(id);
                kept.push_back((id, now, pushes + 1));
            } else {
                kept.push_back((id, pushed_at, pushes));
            }
        }
        kept.make_contiguous()
            .sort_unstable_by_key(|&(_, at, _)| at);
        self.unconfirmed = kept;
        for id in again {
            let Some(message) = self.cache.get(id).cloned() else {
                continue;
            };
            let links: Vec<PeerAddr> = self.links.iter().map(|(peer, _)| peer).collect();
            let target = match self.entry {
                Some(entry) if self.rng.chance(1, 2) => Some(entry),
                _ => self.pick(&links),
            };
            if let Some(target) = target {
                self.send(
                    target,
                    Wire::Push {
                        message,
                        hops: 0,
                        repair: false,
                    },
                );
            }
        }
    }

    /// Every id up to `id` is committed.
    pub(super) fn commit_advanced(&mut self, id: MessageId) {
        if self.kind == PeerKind::Voter {
            self.committed = self.committed.max(id);
        }
    }

    /// Keeps `voter_fanout` gossip nodes to feed and one entry among them.
    pub(super) fn maintain_downstream(&mut self) {
        let now = self.now_us;
        if self.links.has_room() && now >= self.next_neighbor_check_us {
            self.next_neighbor_check_us = now + self.config.repair_timeout_ms * 1_000;
            let mut candidates: Vec<PeerAddr> = self
                .membership
                .members_of(PeerKind::Gossip)
                .into_iter()
                .filter(|&peer| !self.links.contains(peer))
                .collect();
            while self.links.has_room() && !candidates.is_empty() {
                let at = self.rng.range(0, candidates.len() as u64) as usize;
                let peer = candidates.swap_remove(at);
                self.links.add(peer, now);
                self.links.announced(peer, (0, 0), 0);
                self.send_chain(peer);
            }
        }
        if self.entry.is_none() {
            let links: Vec<PeerAddr> = self.links.iter().map(|(peer, _)| peer).collect();
            self.entry = self.pick(&links);
        }
    }

    /// Serves `[first, to]` to `peer` from the cache if it holds the start
    /// of the range, else from the log.
    pub(super) fn serve_from_log(&mut self, peer: PeerAddr, first: MessageId, to: MessageId) {
        let to = to.min(self.committed);
        if first > to {
            self.send_pull_reply(peer, Vec::new(), self.committed);
            return;
        }
        let cached = self.cached_for_pull(first, to);
        // A consecutive start from the cache is answer enough: the puller
        // asks for the rest at once.
        let consecutive = cached
            .iter()
            .enumerate()
            .take_while(|&(i, m)| m.id == first + i as u64)
            .count();
        if consecutive > 0 {
            let mut messages = cached;
            messages.truncate(consecutive);
            self.send_pull_reply(peer, messages, self.committed);
            return;
        }
        if self.reads_inflight >= self.config.voter_reads_inflight_max {
            // The puller retries; shedding here bounds the voter's work.
            return;
        }
        self.reads_inflight += 1;
        self.commands.push(Command::ReadCommitted {
            peer,
            from: first,
            to,
            bytes_max: self.config.pull_reply_bytes_max,
        });
    }

    /// A log read for a pull completed.
    pub(super) fn committed_read(&mut self, peer: PeerAddr, mut messages: Vec<GossipMessage>) {
        if self.kind != PeerKind::Voter {
            return;
        }
        self.reads_inflight = self.reads_inflight.saturating_sub(1);
        messages.truncate(self.config.pull_messages_max as usize);
        self.send_pull_reply(peer, messages, self.committed);
    }
}
