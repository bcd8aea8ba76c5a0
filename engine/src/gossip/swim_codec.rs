//! The SWIM identity and its wire encoding for foca. Hand-written rather
//! than serde-derived: it is small, has no dependency, and every read is
//! bounds-checked so a malformed packet is an error, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{Buf, BufMut};
use foca::{Codec, Header, Identity, Member, Message, State};

use super::{PeerAddr, PeerKind};

/// A member of the gossip cluster as SWIM knows it. The address is the
/// member's stable name; `generation` grows at each restart so that a
/// restarted member is told apart from its earlier, possibly declared
/// down, self (foca keeps the newer one of two identities at an address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SwimIdentity {
    /// Where the member's gossip listener is.
    pub addr: PeerAddr,
    /// Voter or gossip node.
    pub kind: PeerKind,
    /// Restart counter, supplied by the runtime at start.
    pub generation: u32,
}

impl Identity for SwimIdentity {
    type Addr = PeerAddr;

    // A member declared down by mistake rejoins at once as a newer self.
    fn renew(&self) -> Option<Self> {
        Some(Self {
            generation: self.generation.wrapping_add(1),
            ..*self
        })
    }

    fn addr(&self) -> PeerAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

/// Why a membership packet could not be encoded or decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("membership codec: {0}")]
pub struct SwimCodecError(pub &'static str);

/// foca's codec for [`SwimIdentity`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SwimCodec;

/// Largest encoded identity: tag, IPv6 address, port, kind, generation.
const IDENTITY_BYTES_MAX: usize = 1 + 16 + 2 + 1 + 4;

fn identity_bytes(identity: &SwimIdentity) -> usize {
    match identity.addr.ip() {
        IpAddr::V4(_) => IDENTITY_BYTES_MAX - 12,
        IpAddr::V6(_) => IDENTITY_BYTES_MAX,
    }
}

fn put_identity(buf: &mut impl BufMut, identity: &SwimIdentity) {
    match identity.addr.ip() {
        IpAddr::V4(ip) => {
            buf.put_u8(4);
            buf.put_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            buf.put_u8(6);
            buf.put_slice(&ip.octets());
        }
    }
    buf.put_u16(identity.addr.port());
    buf.put_u8(match identity.kind {
        PeerKind::Voter => 0,
        PeerKind::Gossip => 1,
    });
    buf.put_u32(identity.generation);
}

fn need(buf: &impl Buf, bytes: usize) -> Result<(), SwimCodecError> {
    if buf.remaining() < bytes {
        return Err(SwimCodecError("truncated packet"));
    }
    Ok(())
}

fn get_u8(buf: &mut impl Buf) -> Result<u8, SwimCodecError> {
    need(buf, 1)?;
    Ok(buf.get_u8())
}

fn get_u16(buf: &mut impl Buf) -> Result<u16, SwimCodecError> {
    need(buf, 2)?;
    Ok(buf.get_u16())
}

fn get_identity(buf: &mut impl Buf) -> Result<SwimIdentity, SwimCodecError> {
    let ip = match get_u8(buf)? {
        4 => {
            let mut octets = [0u8; 4];
            need(buf, 4)?;
            buf.copy_to_slice(&mut octets);
            IpAddr::V4(Ipv4Addr::from(octets))
        }
        6 => {
            let mut octets = [0u8; 16];
            need(buf, 16)?;
            buf.copy_to_slice(&mut octets);
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return Err(SwimCodecError("unknown address family")),
    };
    let port = get_u16(buf)?;
    let kind = match get_u8(buf)? {
        0 => PeerKind::Voter,
        1 => PeerKind::Gossip,
        _ => return Err(SwimCodecError("unknown member kind")),
    };
    need(buf, 4)?;
    let generation = buf.get_u32();
    Ok(SwimIdentity {
        addr: SocketAddr::new(ip, port),
        kind,
        generation,
    })
}

impl Codec<SwimIdentity> for SwimCodec {
    type Error = SwimCodecError;

    fn encode_header(
        &mut self,
        header: &Header<SwimIdentity>,
        mut buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        // Fixed part plus the largest message body (one identity and a
        // probe number).
        let bytes = identity_bytes(&header.src)
            + 2
            + identity_bytes(&header.dst)
            + 1
            + IDENTITY_BYTES_MAX
            + 1;
        if buf.remaining_mut() < bytes {
            return Err(SwimCodecError("no room for the header"));
        }
        put_identity(&mut buf, &header.src);
        buf.put_u16(header.src_incarnation);
        put_identity(&mut buf, &header.dst);
        match &header.message {
            Message::Ping(probe) => {
                buf.put_u8(0);
                buf.put_u8(*probe);
            }
            Message::Ack(probe) => {
                buf.put_u8(1);
                buf.put_u8(*probe);
            }
            Message::PingReq {
                target,
                probe_number,
            } => {
                buf.put_u8(2);
                put_identity(&mut buf, target);
                buf.put_u8(*probe_number);
            }
            Message::IndirectPing {
                origin,
                probe_number,
            } => {
                buf.put_u8(3);
                put_identity(&mut buf, origin);
                buf.put_u8(*probe_number);
            }
            Message::IndirectAck {
                target,
                probe_number,
            } => {
                buf.put_u8(4);
                put_identity(&mut buf, target);
                buf.put_u8(*probe_number);
            }
            Message::ForwardedAck {
                origin,
                probe_number,
            } => {
                buf.put_u8(5);
                put_identity(&mut buf, origin);
                buf.put_u8(*probe_number);
            }
            Message::Announce => buf.put_u8(6),
            Message::Feed => buf.put_u8(7),
            Message::Gossip => buf.put_u8(8),
            Message::Broadcast => buf.put_u8(9),
            Message::TurnUndead => buf.put_u8(10),
        }
        Ok(())
    }

    fn decode_header(&mut self, mut buf: impl Buf) -> Result<Header<SwimIdentity>, Self::Error> {
        let src = get_identity(&mut buf)?;
        let src_incarnation = get_u16(&mut buf)?;
        let dst = get_identity(&mut buf)?;
        let message = match get_u8(&mut buf)? {
            0 => Message::Ping(get_u8(&mut buf)?),
            1 => Message::Ack(get_u8(&mut buf)?),
            2 => Message::PingReq {
                target: get_identity(&mut buf)?,
                probe_number: get_u8(&mut buf)?,
            },
            3 => Message::IndirectPing {
                origin: get_identity(&mut buf)?,
                probe_number: get_u8(&mut buf)?,
            },
            4 => Message::IndirectAck {
                target: get_identity(&mut buf)?,
                probe_number: get_u8(&mut buf)?,
            },
            5 => Message::ForwardedAck {
                origin: get_identity(&mut buf)?,
                probe_number: get_u8(&mut buf)?,
            },
            6 => Message::Announce,
            7 => Message::Feed,
            8 => Message::Gossip,
            9 => Message::Broadcast,
            10 => Message::TurnUndead,
            _ => return Err(SwimCodecError("unknown message type")),
        };
        Ok(Header {
            src,
            src_incarnation,
            dst,
            message,
        })
    }

    fn encode_member(
        &mut self,
        member: &Member<SwimIdentity>,
        mut buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        // foca needs the buffer untouched when the member does not fit.
        if buf.remaining_mut() < identity_bytes(member.id()) + 3 {
            return Err(SwimCodecError("no room for the member"));
        }
        put_identity(&mut buf, member.id());
        buf.put_u16(member.incarnation());
        buf.put_u8(match member.state() {
            State::Alive => 0,
            State::Suspect => 1,
            State::Down => 2,
        });
        Ok(())
    }

    fn decode_member(&mut self, mut buf: impl Buf) -> Result<Member<SwimIdentity>, Self::Error> {
        let id = get_identity(&mut buf)?;
        let incarnation = get_u16(&mut buf)?;
        let state = match get_u8(&mut buf)? {
            0 => State::Alive,
            1 => State::Suspect,
            2 => State::Down,
            _ => return Err(SwimCodecError("unknown member state")),
        };
        Ok(Member::new(id, incarnation, state))
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;

    fn identity(addr: &str, kind: PeerKind, generation: u32) -> SwimIdentity {
        SwimIdentity {
            addr: addr.parse().unwrap(),
            kind,
            generation,
        }
    }

    #[test]
    fn headers_and_members_round_trip() {
        let a = identity("127.0.0.1:7000", PeerKind::Gossip, 3);
        let b = identity("[::1]:7001", PeerKind::Voter, 9);
        let messages = [
            Message::Ping(1),
            Message::Ack(2),
            Message::PingReq {
                target: b,
                probe_number: 3,
            },
            Message::IndirectPing {
                origin: a,
                probe_number: 4,
            },
            Message::IndirectAck {
                target: b,
                probe_number: 5,
            },
            Message::ForwardedAck {
                origin: a,
                probe_number: 6,
            },
            Message::Announce,
            Message::Feed,
            Message::Gossip,
            Message::Broadcast,
            Message::TurnUndead,
        ];
        for message in messages {
            let header = Header {
                src: a,
                src_incarnation: 17,
                dst: b,
                message,
            };
            let mut buf = BytesMut::new();
            SwimCodec.encode_header(&header, &mut buf).unwrap();
            let mut read = &buf[..];
            assert_eq!(SwimCodec.decode_header(&mut read).unwrap(), header);
            assert!(read.is_empty());
        }
        let member = Member::new(b, 5, State::Suspect);
        let mut buf = BytesMut::new();
        SwimCodec.encode_member(&member, &mut buf).unwrap();
        assert_eq!(SwimCodec.decode_member(&buf[..]).unwrap(), member);
    }

    #[test]
    fn every_truncation_and_bad_tag_is_an_error() {
        let a = identity("127.0.0.1:7000", PeerKind::Gossip, 3);
        let header = Header {
            src: a,
            src_incarnation: 1,
            dst: a,
            message: Message::PingReq {
                target: a,
                probe_number: 1,
            },
        };
        let mut buf = BytesMut::new();
        SwimCodec.encode_header(&header, &mut buf).unwrap();
        for len in 0..buf.len() {
            assert!(SwimCodec.decode_header(&buf[..len]).is_err(), "len {len}");
        }
        let mut bad = buf.to_vec();
        bad[0] = 5;
        assert!(SwimCodec.decode_header(&bad[..]).is_err());
    }

    #[test]
    fn newer_generation_wins() {
        let old = identity("127.0.0.1:7000", PeerKind::Gossip, 3);
        let new = old.renew().unwrap();
        assert!(new.win_addr_conflict(&old) && !old.win_addr_conflict(&new));
    }
}
