//! The links Plumtree runs over (Leitão, Pereira, Rodrigues, "Epidemic
//! Broadcast Trees", SRDS 2007): a gossip node's neighbours, each eager
//! (a branch of the broadcast tree: full messages are pushed on it) or lazy
//! (only announcements). Links start eager; a duplicate on a link prunes
//! it to lazy (§3.2: the tree loses a redundant branch); a message that
//! first arrives over a lazy link, or a graft, makes it eager (§3.3: the
//! tree repairs itself). Each link also remembers what the peer announced
//! it delivered, and what was last announced to it.

use std::collections::BTreeMap;

use ordo_storage::MessageId;

use super::PeerAddr;

/// One neighbour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// Full messages are pushed on this link.
    pub eager: bool,
    /// The peer said it holds every message up to this id.
    pub peer_delivered: MessageId,
    /// ... and these of the next 64 (see [`super::Wire::IHave`]).
    pub peer_above: u64,
    /// The watermark and bitmap last announced to the peer.
    pub announced: (MessageId, u64),
    /// When it was announced.
    pub announced_us: u64,
}

impl Link {
    /// Whether the peer said it holds `id`.
    pub fn holds(&self, id: MessageId) -> bool {
        id <= self.peer_delivered
            || (id - self.peer_delivered <= 64
                && self.peer_above & (1 << (id - self.peer_delivered - 1)) != 0)
    }
}

/// A node's neighbours (on a voter: the gossip nodes it feeds).
#[derive(Clone, Debug)]
pub struct Links {
    /// Invariant: at most `max` links, never to the node itself.
    links: BTreeMap<PeerAddr, Link>,
    max: usize,
}

impl Links {
    /// No links yet; at most `max`.
    pub fn new(max: usize) -> Self {
        Self {
            links: BTreeMap::new(),
            max,
        }
    }

    /// Links held.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Whether there is room for one more.
    pub fn has_room(&self) -> bool {
        self.links.len() < self.max
    }

    /// Whether `peer` is a neighbour.
    pub fn contains(&self, peer: PeerAddr) -> bool {
        self.links.contains_key(&peer)
    }

    /// The link to `peer`.
    pub fn get(&self, peer: PeerAddr) -> Option<&Link> {
        self.links.get(&peer)
    }

    /// Adds `peer` as an eager link (Plumtree: a new neighbour starts in
    /// the eager set). `false` if full; a link already there is kept as is.
    pub fn add(&mut self, peer: PeerAddr, now_us: u64) -> bool {
        if self.links.contains_key(&peer) {
            return true;
        }
        if !self.has_room() {
            return false;
        }
        self.links.insert(
            peer,
            Link {
                eager: true,
                peer_delivered: 0,
                peer_above: 0,
                announced: (0, 0),
                announced_us: now_us,
            },
        );
        true
    }

    /// Drops the link to `peer`; whether there was one.
    pub fn remove(&mut self, peer: PeerAddr) -> bool {
        self.links.remove(&peer).is_some()
    }

    /// Makes the link eager or lazy; whether it changed.
    pub fn set_eager(&mut self, peer: PeerAddr, eager: bool) -> bool {
        match self.links.get_mut(&peer) {
            Some(link) if link.eager != eager => {
                link.eager = eager;
                true
            }
            _ => false,
        }
    }

    /// Records the peer's announced watermark and bitmap (an older
    /// watermark than the one known is ignored: it was overtaken).
    pub fn peer_delivered(&mut self, peer: PeerAddr, delivered: MessageId, above: u64) {
        if let Some(link) = self.links.get_mut(&peer)
            && delivered >= link.peer_delivered
        {
            if delivered > link.peer_delivered {
                link.peer_above = 0;
            }
            link.peer_delivered = delivered;
            link.peer_above |= above;
        }
    }

    /// Records an announcement to the peer.
    pub fn announced(&mut self, peer: PeerAddr, announced: (MessageId, u64), now_us: u64) {
        if let Some(link) = self.links.get_mut(&peer) {
            link.announced = announced;
            link.announced_us = now_us;
        }
    }

    /// Eager links other than `except`, in address order.
    pub fn eager_except(&self, except: Option<PeerAddr>) -> Vec<PeerAddr> {
        self.links
            .iter()
            .filter(|&(&peer, link)| link.eager && Some(peer) != except)
            .map(|(&peer, _)| peer)
            .collect()
    }

    /// Every link, in address order.
    pub fn iter(&self) -> impl Iterator<Item = (PeerAddr, &Link)> {
        self.links.iter().map(|(&peer, link)| (peer, link))
    }

    /// Whether `peer` said it holds `id`.
    pub fn holds(&self, peer: PeerAddr, id: MessageId) -> bool {
        self.links.get(&peer).is_some_and(|link| link.holds(id))
    }

    /// Peers that said they hold `id`, in address order.
    pub fn holding(&self, id: MessageId) -> Vec<PeerAddr> {
        self.links
            .iter()
            .filter(|(_, link)| link.holds(id))
            .map(|(&peer, _)| peer)
            .collect()
    }

    /// Checks the invariants written on the fields.
    pub fn check(&self, me: PeerAddr) {
        assert!(self.links.len() <= self.max, "more links than allowed");
        assert!(!self.links.contains_key(&me), "a link to itself");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> PeerAddr {
        PeerAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn new_links_are_eager_and_bounded() {
        let mut links = Links::new(2);
        assert!(links.add(peer(1), 0) && links.add(peer(2), 0));
        assert!(!links.add(peer(3), 0), "full");
        assert!(links.add(peer(1), 0), "already there");
        assert_eq!(links.eager_except(Some(peer(1))), vec![peer(2)]);
        links.check(peer(9));
    }

    #[test]
    fn prune_and_graft_move_links_between_eager_and_lazy() {
        let mut links = Links::new(4);
        links.add(peer(1), 0);
        links.add(peer(2), 0);
        assert!(links.set_eager(peer(1), false), "prune");
        assert!(!links.set_eager(peer(1), false), "already lazy");
        assert_eq!(links.eager_except(None), vec![peer(2)]);
        assert!(links.set_eager(peer(1), true), "graft");
        assert_eq!(links.eager_except(None), vec![peer(1), peer(2)]);
        assert!(!links.set_eager(peer(7), true), "not a link");
    }

    #[test]
    fn watermarks_only_grow() {
        let mut links = Links::new(4);
        links.add(peer(1), 0);
        links.peer_delivered(peer(1), 10, 0);
        links.peer_delivered(peer(1), 4, 0);
        assert_eq!(links.get(peer(1)).unwrap().peer_delivered, 10);
        assert_eq!(links.holding(10), vec![peer(1)]);
        assert!(links.holding(11).is_empty());
        // Held above the watermark: ids 12 and 14.
        links.peer_delivered(peer(1), 10, 0b1010);
        assert_eq!(links.holding(12), vec![peer(1)]);
        assert_eq!(links.holding(14), vec![peer(1)]);
        assert!(links.holding(13).is_empty() && links.holding(75).is_empty());
    }
}
