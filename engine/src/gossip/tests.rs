//! Scenario tests of one gossip core, driven by hand: each feeds events
//! and checks the commands, like a trace.

use bytes::Bytes;
use ordo_storage::MessageId;

use super::*;

const KEY: u64 = 0x5EC2E7;

fn addr(port: u16) -> PeerAddr {
    PeerAddr::from(([127, 0, 0, 1], port))
}

fn signed(id: MessageId) -> GossipMessage {
    ChecksumSigner::new(1, KEY).sign(GossipMessage {
        id,
        index: id + 3,
        term: 1,
        ts: 1_000 + id,
        payload: Bytes::from(format!("message {id}")),
        token: Bytes::new(),
    })
}

fn config() -> GossipConfig {
    GossipConfig::default()
}

struct Harness {
    node: GossipNode<ChecksumVerifier>,
    now_us: u64,
}

impl Harness {
    fn gossip(delivered: MessageId) -> Self {
        Self::new(PeerKind::Gossip, delivered)
    }

    fn new(kind: PeerKind, delivered: MessageId) -> Self {
        let start = GossipStart {
            addr: addr(1),
            kind,
            generation: 1,
            delivered,
            seeds: Vec::new(),
            rng_seed: 7,
        };
        let node = GossipNode::new(start, config(), ChecksumVerifier::new([(1, KEY)])).unwrap();
        Self { node, now_us: 0 }
    }

    /// Steps `event` at the current time and ends the turn.
    fn step(&mut self, event: Event) -> Vec<Command> {
        self.node.step(self.now_us, event);
        let mut out = Vec::new();
        self.node.end_turn(self.now_us, &mut out);
        out
    }

    fn from(&mut self, port: u16, message: Wire) -> Vec<Command> {
        self.step(Event::Message {
            from: addr(port),
            message,
        })
    }

    fn advance_ms(&mut self, ms: u64) -> Vec<Command> {
        self.now_us += ms * 1_000;
        self.step(Event::Tick)
    }

    /// Makes `ports` neighbours (they ask; this node has room).
    fn link(&mut self, ports: &[u16]) {
        for &port in ports {
            let out = self.from(port, Wire::Neighbor { urgent: false });
            assert!(sent(&out, port).contains(&Wire::NeighborReply { accepted: true }));
        }
    }
}

fn sent(commands: &[Command], port: u16) -> Vec<Wire> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Send { to, message } if *to == addr(port) => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn delivered_ids(commands: &[Command]) -> Vec<MessageId> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Deliver(messages) => Some(messages.iter().map(|m| m.id)),
            _ => None,
        })
        .flatten()
        .collect()
}

fn push(id: MessageId) -> Wire {
    Wire::Push {
        message: signed(id),
        hops: 1,
        repair: false,
    }
}

fn pushes(wires: &[Wire]) -> Vec<MessageId> {
    wires
        .iter()
        .filter_map(|w| match w {
            Wire::Push { message, .. } => Some(message.id),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_message_is_forwarded_to_eager_links_and_delivered_with_its_watermark() {
    let mut h = Harness::gossip(0);
    h.link(&[2, 3, 4]);
    let out = h.from(2, push(1));
    assert!(pushes(&sent(&out, 2)).is_empty(), "not back to the sender");
    assert_eq!(pushes(&sent(&out, 3)), vec![1]);
    assert_eq!(pushes(&sent(&out, 4)), vec![1]);
    assert_eq!(delivered_ids(&out), vec![1]);
    assert!(out.contains(&Command::PersistWatermark { delivered: 1 }));
}

#[test]
fn plumtree_prune_a_duplicate_makes_the_link_lazy_and_it_then_gets_announcements() {
    let mut h = Harness::gossip(0);
    h.link(&[2, 3]);
    h.from(2, push(1));
    // §3.2: the same message over another link prunes that link.
    let out = h.from(3, push(1));
    assert_eq!(sent(&out, 3), vec![Wire::Prune]);
    assert!(delivered_ids(&out).is_empty(), "delivered once");
    assert_eq!(h.node.links(), vec![(addr(2), true), (addr(3), false)]);
    // The next message is not pushed to 3, only announced to it.
    let out = h.from(2, push(2));
    assert!(pushes(&sent(&out, 3)).is_empty());
    let out = h.advance_ms(25);
    assert!(sent(&out, 3).contains(&Wire::IHave {
        delivered: 2,
        above: 0
    }));
}

#[test]
fn plumtree_prune_received_stops_pushes_on_that_link() {
    let mut h = Harness::gossip(0);
    h.link(&[2, 3]);
    h.from(3, Wire::Prune);
    let out = h.from(2, push(1));
    assert!(pushes(&sent(&out, 3)).is_empty());
}

#[test]
fn plumtree_graft_an_announced_message_that_does_not_arrive_is_grafted() {
    let mut h = Harness::gossip(0);
    h.link(&[2, 3]);
    h.from(3, Wire::Prune);
    h.from(2, Wire::Prune);
    // Link 3 announces ids up to 2; nothing arrives by the tree.
    h.from(
        3,
        Wire::IHave {
            delivered: 2,
            above: 0,
        },
    );
    let out = h.advance_ms(config().graft_timeout_ms - 1);
    assert!(
        !sent(&out, 3)
            .iter()
            .any(|w| matches!(w, Wire::Graft { .. }))
    );
    let out = h.advance_ms(1);
    assert!(sent(&out, 3).contains(&Wire::Graft { from: 1, to: 2 }));
    // §3.3: the graft made the link eager again.
    assert!(h.node.links().contains(&(addr(3), true)));
    // The answer is a push, delivered and forwarded like any other.
    let out = h.from(3, push(1));
    assert_eq!(delivered_ids(&out), vec![1]);
}

#[test]
fn plumtree_graft_received_makes_the_link_eager_and_sends_the_messages() {
    let mut h = Harness::gossip(0);
    h.link(&[2, 3]);
    h.from(2, push(1));
    h.from(2, push(2));
    h.from(3, Wire::Prune);
    let out = h.from(3, Wire::Graft { from: 1, to: 2 });
    assert_eq!(pushes(&sent(&out, 3)), vec![1, 2]);
    assert!(h.node.links().contains(&(addr(3), true)));
}

#[test]
fn gap_detection_out_of_order_ids_wait_and_a_gap_is_pulled_from_a_neighbour_that_announced_it() {
    let mut h = Harness::gossip(0);
    h.link(&[2, 3]);
    let out = h.from(2, push(3));
    assert!(delivered_ids(&out).is_empty(), "3 waits for 1 and 2");
    let out = h.from(2, push(1));
    assert_eq!(delivered_ids(&out), vec![1]);
    // Neighbour 3 announces it holds 2 (and 3, buffered above its
    // watermark 2 would be bit 0). The tree is intact (both links eager),
    // so the repair is a pull, not a graft.
    h.from(
        3,
        Wire::IHave {
            delivered: 2,
            above: 0,
        },
    );
    let out = h.advance_ms(config().graft_timeout_ms - 1);
    assert!(
        sent(&out, 3)
            .iter()
            .all(|w| !matches!(w, Wire::Pull { .. }))
    );
    // (plus a little per hop of depth: pushes came one hop from a voter)
    let out = h.advance_ms(2);
    assert!(sent(&out, 3).contains(&Wire::Pull { from: 2, to: 2 }));
    assert_eq!(h.node.links(), vec![(addr(2), true), (addr(3), true)]);
    // Unanswered: it is asked again (the only holder).
    let out = h.advance_ms(config().repair_timeout_ms);
    assert!(sent(&out, 3).contains(&Wire::Pull { from: 2, to: 2 }));
    let out = h.from(
        3,
        Wire::PullReply {
            messages: vec![signed(2)],
            delivered: 3,
        },
    );
    assert_eq!(delivered_ids(&out), vec![2, 3]);
    assert_eq!(h.node.delivered(), 3);
    // The pulled message goes on to the neighbour that has not announced
    // it, flagged as a repair (a duplicate of it prunes nothing).
    assert!(sent(&out, 2).contains(&Wire::Push {
        message: signed(2),
        hops: 1,
        repair: true
    }));
    assert!(pushes(&sent(&out, 3)).is_empty(), "3 announced it");
}

#[test]
fn ihave_bitmap_names_messages_held_above_a_gap() {
    let mut h = Harness::gossip(0);
    h.link(&[2, 3]);
    h.from(2, Wire::Prune);
    h.from(3, Wire::Prune);
    h.from(2, push(3));
    // 1 and 2 missing, 3 buffered: the announcement (to the lazy link;
    // the push made link 2 eager again) says so.
    let out = h.advance_ms(1);
    assert!(sent(&out, 3).contains(&Wire::IHave {
        delivered: 0,
        above: 0b100
    }));
    // A neighbour holding 2 above its own gap at 1 is a holder of 2.
    h.from(
        3,
        Wire::IHave {
            delivered: 1,
            above: 0b1,
        },
    );
    h.from(
        2,
        Wire::IHave {
            delivered: 1,
            above: 0,
        },
    );
    let out = h.advance_ms(config().repair_timeout_ms + config().graft_timeout_ms);
    let asked: Vec<Wire> = sent(&out, 2).into_iter().chain(sent(&out, 3)).collect();
    assert!(
        asked
            .iter()
            .any(|w| matches!(w, Wire::Graft { from: 1, .. } | Wire::Pull { from: 1, .. })),
        "{asked:?}"
    );
}

#[test]
fn a_duplicate_repair_push_prunes_nothing() {
    let mut h = Harness::gossip(0);
    h.link(&[2, 3]);
    h.from(2, push(1));
    let out = h.from(
        3,
        Wire::Push {
            message: signed(1),
            hops: 0,
            repair: true,
        },
    );
    assert!(sent(&out, 3).is_empty());
    assert!(h.node.links().contains(&(addr(3), true)));
}

#[test]
fn a_voter_pushes_again_what_its_entry_does_not_confirm() {
    let mut h = Harness::new(PeerKind::Voter, 0);
    // SWIM does not run in this harness, so gossip node 5 is made the
    // voter's fed link and entry by hand.
    h.node.links.add(addr(5), 0);
    h.node.entry = Some(addr(5));
    let out = h.step(Event::Publish(signed(1)));
    assert_eq!(pushes(&sent(&out, 5)), vec![1]);
    // No confirmation within the graft timeout: pushed again.
    let out = h.advance_ms(config().graft_timeout_ms);
    assert_eq!(pushes(&sent(&out, 5)), vec![1]);
    // Confirmed: never again.
    h.from(
        5,
        Wire::IHave {
            delivered: 1,
            above: 0,
        },
    );
    let out = h.advance_ms(config().graft_timeout_ms * 3);
    assert!(pushes(&sent(&out, 5)).is_empty());
}

#[test]
fn forged_messages_are_rejected_never_delivered_nor_forwarded() {
    let mut h = Harness::gossip(0);
    h.link(&[2, 3]);
    let mut altered_payload = signed(1);
    altered_payload.payload = Bytes::from_static(b"evil");
    let mut altered_id = signed(1);
    altered_id.id = 2;
    let mut altered_ts = signed(1);
    altered_ts.ts += 1;
    let unknown_key = ChecksumSigner::new(66, 0xBAD).sign(signed(1));
    for forged in [altered_payload, altered_id, altered_ts, unknown_key] {
        let out = h.from(
            2,
            Wire::Push {
                message: forged,
                hops: 1,
                repair: false,
            },
        );
        assert!(pushes(&sent(&out, 3)).is_empty(), "forwarded a forgery");
        assert!(delivered_ids(&out).is_empty(), "delivered a forgery");
    }
    assert_eq!(h.node.stats().rejected, 4);
    // The real message still gets through afterwards.
    let out = h.from(2, push(1));
    assert_eq!(delivered_ids(&out), vec![1]);
    assert_eq!(pushes(&sent(&out, 3)), vec![1]);
}

#[test]
fn a_restarted_node_resumes_after_its_persisted_watermark() {
    let mut h = Harness::gossip(5);
    h.link(&[2]);
    let out = h.from(2, push(5));
    assert!(
        delivered_ids(&out).is_empty(),
        "5 was delivered before the restart"
    );
    let out = h.from(2, push(6));
    assert_eq!(delivered_ids(&out), vec![6]);
    assert!(out.contains(&Command::PersistWatermark { delivered: 6 }));
}

#[test]
fn untrusted_ranges_and_oversized_messages_never_panic() {
    let mut h = Harness::gossip(0);
    h.link(&[2]);
    h.from(2, push(1));
    for (from, to) in [(0, 0), (u64::MAX, 0), (0, u64::MAX), (u64::MAX, u64::MAX)] {
        h.from(2, Wire::Pull { from, to });
        h.from(2, Wire::Graft { from, to });
    }
    h.from(
        2,
        Wire::IHave {
            delivered: u64::MAX,
            above: u64::MAX,
        },
    );
    h.from(2, Wire::Membership(Bytes::from_static(b"\x07garbage")));
    let mut huge = signed(2);
    huge.payload = Bytes::from(vec![0u8; config().message_bytes_max + 1]);
    let out = h.from(
        2,
        Wire::Push {
            message: huge,
            hops: 0,
            repair: false,
        },
    );
    assert!(delivered_ids(&out).is_empty());
    h.advance_ms(10_000);
}

#[test]
fn a_voter_pushes_at_one_entry_announces_to_all_and_serves_pulls_from_its_log() {
    let mut h = Harness::new(PeerKind::Voter, 0);
    // The voter learns gossip members from SWIM; here, from announcements
    // it receives: simplest is to let gossip nodes pull from it.
    let out = h.from(5, Wire::Pull { from: 1, to: 3 });
    assert_eq!(
        sent(&out, 5),
        vec![Wire::PullReply {
            messages: vec![],
            delivered: 0
        }]
    );
    h.step(Event::CommitAdvanced { id: 3 });
    let out = h.from(5, Wire::Pull { from: 1, to: 3 });
    assert_eq!(
        out,
        vec![Command::ReadCommitted {
            peer: addr(5),
            from: 1,
            to: 3,
            bytes_max: config().pull_reply_bytes_max
        }]
    );
    let messages = vec![signed(1), signed(2), signed(3)];
    let out = h.step(Event::CommittedRead {
        peer: addr(5),
        messages: messages.clone(),
    });
    assert_eq!(
        sent(&out, 5),
        vec![Wire::PullReply {
            messages,
            delivered: 3
        }]
    );
}
