//! Messages to frames and back.
//!
//! Decoding reads each body once, in place, after bytecheck validated it;
//! only fixed-size fields are copied out. Attachments become `Bytes::slice`s
//! of the received frame, and batch attachments are validated once by
//! [`Batch::decode`]. Entry payloads are never copied between socket and log.

use bytes::Bytes;
use ordo_storage::LogId;
use rkyv::api::high::{HighDeserializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;

use crate::client::{ClientRequest, ClientResponse};
use crate::gossip::GossipFrame;
use crate::handshake::Handshake;
use crate::peer::PeerMessage;
use crate::wire::frame::Body;
use crate::wire::{EncodeError, FrameKind, FrameSink, KindClass, ValidFrame, WireError};

/// Which outbound queue a frame waits in. Bulk frames keep their order among
/// themselves; priority frames may overtake bulk frames, so only messages
/// whose meaning does not depend on arriving after an earlier bulk frame are
/// priority (votes, heartbeats, responses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Small control traffic, written before any queued bulk frame.
    Priority,
    /// Frames that carry data (entries, payloads, snapshot bytes).
    Bulk,
}

/// A value that can be written as one frame.
pub trait Encode {
    /// The frame kind it is written as.
    fn frame_kind(&self) -> FrameKind;
    /// The outbound queue it waits in.
    fn lane(&self) -> Lane;
    /// Appends the frame to `sink`; returns its length.
    fn encode(&self, sink: &mut FrameSink<'_>) -> Result<usize, EncodeError>;
}

/// A value that can be read from one validated frame.
pub trait Decode: Sized {
    /// What a connection carrying this type expects (for error messages).
    const EXPECTED: &'static str;
    /// Reads the frame's body (bytecheck, once) and slices its attachments.
    fn decode(frame: &ValidFrame) -> Result<Self, WireError>;
}

/// Encodes one value into a contiguous buffer (every attachment copied in).
/// For tests, tools and one-off frames; the transport encodes into its
/// queues instead.
pub fn encode_to_vec<M: Encode>(
    message: &M,
    frame_bytes_max: usize,
) -> Result<Vec<u8>, EncodeError> {
    let mut head = Vec::new();
    let mut tail = Vec::new();
    let mut sink = FrameSink {
        head: &mut head,
        tail: &mut tail,
        inline_bytes_max: usize::MAX,
        frame_bytes_max,
    };
    message.encode(&mut sink)?;
    debug_assert!(tail.is_empty());
    Ok(head)
}

/// Validates one frame and decodes it as `M`.
pub fn decode_frame<M: Decode>(bytes: Bytes, frame_bytes_max: usize) -> Result<M, WireError> {
    M::decode(&ValidFrame::validate(bytes, frame_bytes_max)?)
}

// ---------------------------------------------------------------------------
// Helpers.

type Validator<'a> = HighValidator<'a, rancor::Error>;

pub(crate) fn access<'a, A>(frame: &'a ValidFrame) -> Result<&'a A, WireError>
where
    A: rkyv::Portable + for<'b> CheckBytes<Validator<'b>>,
{
    rkyv::access::<A, rancor::Error>(frame.body()).map_err(|error| WireError::BadBody {
        kind: frame.kind().name(),
        reason: error.to_string(),
    })
}

/// A plain-fields message: bytecheck the body, copy its fields out, and
/// insist there are no attachments.
pub(crate) fn decode_plain<T>(frame: &ValidFrame) -> Result<T, WireError>
where
    T: rkyv::Archive,
    T::Archived: rkyv::Portable
        + for<'b> CheckBytes<Validator<'b>>
        + rkyv::Deserialize<T, HighDeserializer<rancor::Error>>,
{
    let archived = access::<T::Archived>(frame)?;
    Attachments::new(frame, 0)?.finish()?;
    rkyv::deserialize::<T, rancor::Error>(archived).map_err(|error| WireError::BadBody {
        kind: frame.kind().name(),
        reason: error.to_string(),
    })
}

pub(crate) fn encode_plain<B: Body>(
    sink: &mut FrameSink<'_>,
    kind: FrameKind,
    body: &B,
) -> Result<usize, EncodeError> {
    sink.frame(kind, body, std::iter::empty())
}

pub(crate) fn len_u32(bytes: &Bytes) -> u32 {
    // A longer attachment cannot fit a frame anyway: the frame-size check in
    // `FrameSink::frame` rejects it.
    u32::try_from(bytes.len()).unwrap_or(u32::MAX)
}

/// Hands out a frame's attachments in order, as slices of the frame.
pub(crate) struct Attachments {
    kind: &'static str,
    bytes: Bytes,
    at: usize,
}

impl Attachments {
    /// Checks that the lengths the body lists add up to the attachment bytes.
    pub(crate) fn new(frame: &ValidFrame, listed: u64) -> Result<Self, WireError> {
        let bytes = frame.attachments();
        if listed != bytes.len() as u64 {
            return Err(WireError::AttachmentMismatch {
                kind: frame.kind().name(),
                listed,
                carried: bytes.len() as u64,
            });
        }
        Ok(Self {
            kind: frame.kind().name(),
            bytes,
            at: 0,
        })
    }

    pub(crate) fn take(&mut self, len: u32) -> Bytes {
        // `new` checked the lengths add up, so this stays in bounds.
        let end = self.at + len as usize;
        let slice = self.bytes.slice(self.at..end);
        self.at = end;
        slice
    }

    pub(crate) fn finish(self) -> Result<(), WireError> {
        if self.at != self.bytes.len() {
            return Err(WireError::AttachmentMismatch {
                kind: self.kind,
                listed: self.at as u64,
                carried: self.bytes.len() as u64,
            });
        }
        Ok(())
    }
}

pub(crate) fn unexpected(frame: &ValidFrame, expected: &'static str) -> WireError {
    WireError::UnexpectedKind {
        kind: frame.kind().name(),
        expected,
    }
}

pub(crate) fn log_id(archived: &crate::wire::ArchivedLogId) -> LogId {
    LogId::new(archived.term.to_native(), archived.index.to_native())
}

// ---------------------------------------------------------------------------
// Handshake.

impl Encode for Handshake {
    fn frame_kind(&self) -> FrameKind {
        match self {
            Handshake::Hello(_) => FrameKind::Hello,
            Handshake::Ack(_) => FrameKind::HelloAck,
            Handshake::Reject(_) => FrameKind::HelloReject,
            Handshake::Nonce(_) => FrameKind::HelloNonce,
            Handshake::Challenge(_) => FrameKind::HelloChallenge,
            Handshake::Proof(_) => FrameKind::HelloProof,
        }
    }

    fn lane(&self) -> Lane {
        Lane::Priority
    }

    fn encode(&self, sink: &mut FrameSink<'_>) -> Result<usize, EncodeError> {
        let kind = self.frame_kind();
        match self {
            Handshake::Hello(h) => encode_plain(sink, kind, h),
            Handshake::Ack(h) => encode_plain(sink, kind, h),
            Handshake::Reject(h) => encode_plain(sink, kind, h),
            Handshake::Nonce(h) => encode_plain(sink, kind, h),
            Handshake::Challenge(h) => encode_plain(sink, kind, h),
            Handshake::Proof(h) => encode_plain(sink, kind, h),
        }
    }
}

impl Decode for Handshake {
    const EXPECTED: &'static str = "handshake";

    fn decode(frame: &ValidFrame) -> Result<Self, WireError> {
        Ok(match frame.kind() {
            FrameKind::Hello => Handshake::Hello(decode_plain(frame)?),
            FrameKind::HelloAck => Handshake::Ack(decode_plain(frame)?),
            FrameKind::HelloReject => Handshake::Reject(decode_plain(frame)?),
            FrameKind::HelloNonce => Handshake::Nonce(decode_plain(frame)?),
            FrameKind::HelloChallenge => Handshake::Challenge(decode_plain(frame)?),
            FrameKind::HelloProof => Handshake::Proof(decode_plain(frame)?),
            _ => return Err(unexpected(frame, Self::EXPECTED)),
        })
    }
}

// ---------------------------------------------------------------------------
// Any frame.

/// Any frame's content, whatever connection it came from: for tools, the
/// fuzzer and tests. A connection decodes the one family it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnyMessage {
    /// A handshake frame.
    Handshake(Handshake),
    /// A peer frame.
    Peer(PeerMessage),
    /// A client request.
    ClientRequest(ClientRequest),
    /// A client response.
    ClientResponse(ClientResponse),
    /// A gossip frame.
    Gossip(GossipFrame),
}

impl Encode for AnyMessage {
    fn frame_kind(&self) -> FrameKind {
        match self {
            AnyMessage::Handshake(m) => m.frame_kind(),
            AnyMessage::Peer(m) => m.frame_kind(),
            AnyMessage::ClientRequest(m) => m.frame_kind(),
            AnyMessage::ClientResponse(m) => m.frame_kind(),
            AnyMessage::Gossip(m) => m.frame_kind(),
        }
    }

    fn lane(&self) -> Lane {
        match self {
            AnyMessage::Handshake(m) => m.lane(),
            AnyMessage::Peer(m) => m.lane(),
            AnyMessage::ClientRequest(m) => m.lane(),
            AnyMessage::ClientResponse(m) => m.lane(),
            AnyMessage::Gossip(m) => m.lane(),
        }
    }

    fn encode(&self, sink: &mut FrameSink<'_>) -> Result<usize, EncodeError> {
        match self {
            AnyMessage::Handshake(m) => m.encode(sink),
            AnyMessage::Peer(m) => m.encode(sink),
            AnyMessage::ClientRequest(m) => m.encode(sink),
            AnyMessage::ClientResponse(m) => m.encode(sink),
            AnyMessage::Gossip(m) => m.encode(sink),
        }
    }
}

impl Decode for AnyMessage {
    const EXPECTED: &'static str = "any";

    fn decode(frame: &ValidFrame) -> Result<Self, WireError> {
        Ok(match frame.kind().class() {
            KindClass::Handshake => AnyMessage::Handshake(Handshake::decode(frame)?),
            KindClass::Peer => AnyMessage::Peer(PeerMessage::decode(frame)?),
            KindClass::ClientRequest => AnyMessage::ClientRequest(ClientRequest::decode(frame)?),
            KindClass::ClientResponse => AnyMessage::ClientResponse(ClientResponse::decode(frame)?),
            KindClass::Gossip => AnyMessage::Gossip(GossipFrame::decode(frame)?),
        })
    }
}
