//! Gossip frames (kinds 96–127) to frames and back (see [`super::codec`]).
//!
//! A message's payload and token travel as attachments, so a push read
//! from a receive buffer is verified, delivered and forwarded as slices of
//! that buffer. Membership (SWIM) packets go on the priority lane: a probe
//! answered late makes a live member look dead. Everything else keeps its
//! order on the bulk lane, so an announcement never overtakes the push it
//! announces.

use std::net::SocketAddr;

use crate::gossip::{GossipFrame, GossipIntro, GossipMessage, Wire};
use crate::wire::body::{
    ArchivedCommittedBody, ArchivedGossipChainBody, ArchivedGossipFlagBody,
    ArchivedGossipIHaveBody, ArchivedGossipIntroBody, ArchivedGossipMembershipBody,
    ArchivedGossipPullReplyBody, ArchivedGossipPushBody, ArchivedGossipRangeBody, CommittedBody,
    GossipChainBody, GossipEmptyBody, GossipFlagBody, GossipIHaveBody, GossipIntroBody,
    GossipMembershipBody, GossipPullReplyBody, GossipPushBody, GossipRangeBody,
};
use crate::wire::codec::{Attachments, Decode, Encode, Lane, access, len_u32, unexpected};
use crate::wire::{EncodeError, FrameKind, FrameSink, ValidFrame, WireError};

/// Longest gossip address text accepted in an intro (an IPv6 address with
/// a scope and a port fits).
const LISTEN_ADDR_TEXT_MAX: usize = 64;

fn committed_body(m: &GossipMessage) -> CommittedBody {
    CommittedBody {
        id: m.id,
        index: m.index,
        term: m.term,
        ts: m.ts,
        payload_len: len_u32(&m.payload),
        token_len: len_u32(&m.token),
    }
}

fn message_from(body: &ArchivedCommittedBody, attachments: &mut Attachments) -> GossipMessage {
    GossipMessage {
        id: body.id.to_native(),
        index: body.index.to_native(),
        term: body.term.to_native(),
        ts: body.ts.to_native(),
        payload: attachments.take(body.payload_len.to_native()),
        token: attachments.take(body.token_len.to_native()),
    }
}

fn message_len(body: &ArchivedCommittedBody) -> u64 {
    u64::from(body.payload_len.to_native()) + u64::from(body.token_len.to_native())
}

impl Encode for GossipFrame {
    fn frame_kind(&self) -> FrameKind {
        match self {
            GossipFrame::Intro(_) => FrameKind::GossipIntro,
            GossipFrame::Wire(wire) => match wire {
                Wire::Membership(_) => FrameKind::GossipMembership,
                Wire::Neighbor { .. } => FrameKind::GossipNeighbor,
                Wire::NeighborReply { .. } => FrameKind::GossipNeighborReply,
                Wire::Disconnect => FrameKind::GossipDisconnect,
                Wire::Push { .. } => FrameKind::GossipPush,
                Wire::IHave { .. } => FrameKind::GossipIHave,
                Wire::Graft { .. } => FrameKind::GossipGraft,
                Wire::Prune => FrameKind::GossipPrune,
                Wire::Pull { .. } => FrameKind::GossipPull,
                Wire::PullReply { .. } => FrameKind::GossipPullReply,
                Wire::Chain { .. } => FrameKind::GossipChain,
            },
        }
    }

    fn lane(&self) -> Lane {
        match self {
            GossipFrame::Intro(_) | GossipFrame::Wire(Wire::Membership(_)) => Lane::Priority,
            GossipFrame::Wire(_) => Lane::Bulk,
        }
    }

    fn encode(&self, sink: &mut FrameSink<'_>) -> Result<usize, EncodeError> {
        let kind = self.frame_kind();
        let none = std::iter::empty();
        match self {
            GossipFrame::Intro(intro) => {
                let body = GossipIntroBody {
                    listen_addr: intro.listen_addr.to_string(),
                };
                sink.frame(kind, &body, none)
            }
            GossipFrame::Wire(wire) => match wire {
                Wire::Membership(packet) => {
                    let body = GossipMembershipBody {
                        packet_len: len_u32(packet),
                    };
                    sink.frame(kind, &body, std::iter::once(packet))
                }
                Wire::Neighbor { urgent } => {
                    sink.frame(kind, &GossipFlagBody { flag: *urgent }, none)
                }
                Wire::NeighborReply { accepted } => {
                    sink.frame(kind, &GossipFlagBody { flag: *accepted }, none)
                }
                Wire::Disconnect | Wire::Prune => sink.frame(kind, &GossipEmptyBody {}, none),
                Wire::Push {
                    message,
                    hops,
                    repair,
                } => {
                    let body = GossipPushBody {
                        message: committed_body(message),
                        hops: *hops,
                        repair: *repair,
                    };
                    sink.frame(kind, &body, [&message.payload, &message.token].into_iter())
                }
                Wire::IHave { delivered, above } => {
                    let body = GossipIHaveBody {
                        delivered: *delivered,
                        above: *above,
                    };
                    sink.frame(kind, &body, none)
                }
                Wire::Graft { from, to } | Wire::Pull { from, to } => {
                    let body = GossipRangeBody {
                        from: *from,
                        to: *to,
                    };
                    sink.frame(kind, &body, none)
                }
                Wire::PullReply {
                    messages,
                    delivered,
                } => {
                    let body = GossipPullReplyBody {
                        delivered: *delivered,
                        messages: messages.iter().map(committed_body).collect(),
                    };
                    let attachments = messages.iter().flat_map(|m| [&m.payload, &m.token]);
                    sink.frame(kind, &body, attachments)
                }
                Wire::Chain { links } => {
                    let body = GossipChainBody {
                        link_lens: links.iter().map(len_u32).collect(),
                    };
                    sink.frame(kind, &body, links.iter())
                }
            },
        }
    }
}

impl Decode for GossipFrame {
    const EXPECTED: &'static str = "gossip";

    fn decode(frame: &ValidFrame) -> Result<Self, WireError> {
        let bad = |reason: String| WireError::BadBody {
            kind: frame.kind().name(),
            reason,
        };
        let no_attachments = || Attachments::new(frame, 0)?.finish();
        let wire = match frame.kind() {
            FrameKind::GossipIntro => {
                let body = access::<ArchivedGossipIntroBody>(frame)?;
                no_attachments()?;
                let text = body.listen_addr.as_str();
                if text.len() > LISTEN_ADDR_TEXT_MAX {
                    return Err(bad(format!("listen address of {} bytes", text.len())));
                }
                let listen_addr: SocketAddr = text
                    .parse()
                    .map_err(|e| bad(format!("listen address {text:?}: {e}")))?;
                return Ok(GossipFrame::Intro(GossipIntro { listen_addr }));
            }
            FrameKind::GossipMembership => {
                let body = access::<ArchivedGossipMembershipBody>(frame)?;
                let len = body.packet_len.to_native();
                let mut attachments = Attachments::new(frame, u64::from(len))?;
                let packet = attachments.take(len);
                attachments.finish()?;
                Wire::Membership(packet)
            }
            FrameKind::GossipNeighbor => {
                let body = access::<ArchivedGossipFlagBody>(frame)?;
                no_attachments()?;
                Wire::Neighbor { urgent: body.flag }
            }
            FrameKind::GossipNeighborReply => {
                let body = access::<ArchivedGossipFlagBody>(frame)?;
                no_attachments()?;
                Wire::NeighborReply {
                    accepted: body.flag,
                }
            }
            FrameKind::GossipDisconnect | FrameKind::GossipPrune => {
                access::<crate::wire::body::ArchivedGossipEmptyBody>(frame)?;
                no_attachments()?;
                if frame.kind() == FrameKind::GossipPrune {
                    Wire::Prune
                } else {
                    Wire::Disconnect
                }
            }
            FrameKind::GossipPush => {
                let body = access::<ArchivedGossipPushBody>(frame)?;
                let mut attachments = Attachments::new(frame, message_len(&body.message))?;
                let message = message_from(&body.message, &mut attachments);
                attachments.finish()?;
                Wire::Push {
                    message,
                    hops: body.hops.to_native(),
                    repair: body.repair,
                }
            }
            FrameKind::GossipIHave => {
                let body = access::<ArchivedGossipIHaveBody>(frame)?;
                no_attachments()?;
                Wire::IHave {
                    delivered: body.delivered.to_native(),
                    above: body.above.to_native(),
                }
            }
            FrameKind::GossipGraft | FrameKind::GossipPull => {
                let body = access::<ArchivedGossipRangeBody>(frame)?;
                no_attachments()?;
                let (from, to) = (body.from.to_native(), body.to.to_native());
                if frame.kind() == FrameKind::GossipGraft {
                    Wire::Graft { from, to }
                } else {
                    Wire::Pull { from, to }
                }
            }
            FrameKind::GossipPullReply => {
                let body = access::<ArchivedGossipPullReplyBody>(frame)?;
                // Sum in u64: a forged body listing many huge lengths must
                // not overflow (it then fails the attachment check).
                let listed = body.messages.iter().map(message_len).sum();
                let mut attachments = Attachments::new(frame, listed)?;
                let messages = body
                    .messages
                    .iter()
                    .map(|m| message_from(m, &mut attachments))
                    .collect();
                attachments.finish()?;
                Wire::PullReply {
                    messages,
                    delivered: body.delivered.to_native(),
                }
            }
            FrameKind::GossipChain => {
                let body = access::<ArchivedGossipChainBody>(frame)?;
                let listed = body
                    .link_lens
                    .iter()
                    .map(|len| u64::from(len.to_native()))
                    .sum();
                let mut attachments = Attachments::new(frame, listed)?;
                let links = body
                    .link_lens
                    .iter()
                    .map(|len| attachments.take(len.to_native()))
                    .collect();
                attachments.finish()?;
                Wire::Chain { links }
            }
            _ => return Err(unexpected(frame, Self::EXPECTED)),
        };
        Ok(GossipFrame::Wire(wire))
    }
}
