//! The frame: header, checksum and the split between body and attachments.
//!
//! ```text
//! offset size field
//!  0     4    frame_len   u32 LE: total bytes, header included;
//!                         FRAME_HEADER_BYTES <= frame_len <= frame_bytes_max
//!  4     4    crc32       crc32fast over [0, 4) ++ [8, crc_end)
//!  8     1    kind        FrameKind
//!  9     3    reserved    zero
//! 12     4    body_len    u32 LE: bytes of the rkyv body
//! 16     ..   body        rkyv archive of the kind's body type
//! 16+body_len ..frame_len attachments, concatenated in the order the body
//!                         lists their lengths
//! ```
//!
//! `crc_end` is `frame_len`, except for kinds whose attachments carry their
//! own CRC ([`FrameKind::attachments_self_checked`]: AppendEntries, whose
//! attachments are storage batch frames), where it is `16 + body_len`. The
//! length prefix comes first so that a reader knows how much to wait for
//! after four bytes and can refuse a huge frame before buffering any of it.
//!
//! Attachments are raw bytes outside the rkyv archive so that they can be
//! written from the sender's buffers (`sendmsg` iovecs, no copy) and handed
//! to the receiver as `Bytes::slice`s of its receive buffer.

use std::ops::Range;

use bytes::Bytes;
use rkyv::api::high::HighSerializer;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;

use crate::wire::{EncodeError, FrameKind, WireError};

/// Size of the fixed frame header.
pub const FRAME_HEADER_BYTES: usize = 16;
/// Hard ceiling on any frame, whatever the configuration says: the length
/// prefix is a `u32`, and a node never needs more than one 64 MiB storage
/// batch plus headers in one frame. Config load checks
/// `frame_bytes_max <= FRAME_BYTES_CEILING`.
pub const FRAME_BYTES_CEILING: usize = 1 << 30;
/// The default `frame_bytes_max`: a few full-size AppendEntries batches.
pub const FRAME_BYTES_MAX_DEFAULT: usize = 16 << 20;
/// The largest handshake frame a node reads before it knows who is on the
/// other side: a stranger may not make it buffer more than this.
pub const HANDSHAKE_FRAME_BYTES_MAX: usize = 4096;

/// The fixed header of a frame, parsed and checked against the limit.
///
/// Invariant: `FRAME_HEADER_BYTES + body_len <= frame_len <= the limit it
/// was parsed with`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Total bytes, header included.
    pub frame_len: u32,
    /// The stored CRC32.
    pub crc32: u32,
    /// What the frame carries.
    pub kind: FrameKind,
    /// Bytes of the rkyv body.
    pub body_len: u32,
}

impl FrameHeader {
    /// Reads only the length prefix of an untrusted frame: how many bytes the
    /// whole frame has, or why it must be refused. Needs four bytes.
    pub fn peek_len(prefix: &[u8], frame_bytes_max: usize) -> Result<usize, WireError> {
        if prefix.len() < 4 {
            return Err(WireError::Truncated {
                have: prefix.len(),
                need: 4,
            });
        }
        let frame_len = le_u32(prefix, 0) as usize;
        if frame_len > frame_bytes_max {
            return Err(WireError::TooLarge {
                frame_len: frame_len as u64,
                max: frame_bytes_max,
            });
        }
        if frame_len < FRAME_HEADER_BYTES {
            return Err(WireError::TooShort {
                frame_len: frame_len as u64,
                header: FRAME_HEADER_BYTES,
            });
        }
        Ok(frame_len)
    }

    /// Parses and checks the header at the start of `bytes` (which may hold
    /// only the header). Does not check the CRC.
    pub fn parse(bytes: &[u8], frame_bytes_max: usize) -> Result<Self, WireError> {
        let frame_len = Self::peek_len(bytes, frame_bytes_max)?;
        if bytes.len() < FRAME_HEADER_BYTES {
            return Err(WireError::Truncated {
                have: bytes.len(),
                need: FRAME_HEADER_BYTES,
            });
        }
        let kind = FrameKind::from_u8(bytes[8])?;
        if let Some((at, &value)) = bytes
            .iter()
            .enumerate()
            .take(12)
            .skip(9)
            .find(|(_, b)| **b != 0)
        {
            return Err(WireError::Reserved { at, value });
        }
        let body_len = le_u32(bytes, 12);
        if FRAME_HEADER_BYTES as u64 + u64::from(body_len) > frame_len as u64 {
            return Err(WireError::BadBodyLen {
                body_len: u64::from(body_len),
                frame_len: frame_len as u64,
            });
        }
        Ok(Self {
            frame_len: frame_len as u32,
            crc32: le_u32(bytes, 4),
            kind,
            body_len,
        })
    }

    /// Where the body lies within the frame.
    pub fn body_range(&self) -> Range<usize> {
        FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + self.body_len as usize
    }

    /// Where the attachments lie within the frame.
    pub fn attachments_range(&self) -> Range<usize> {
        self.body_range().end..self.frame_len as usize
    }

    /// Where the CRC stops (see the module docs).
    fn crc_end(&self) -> usize {
        if self.kind.attachments_self_checked() {
            self.body_range().end
        } else {
            self.frame_len as usize
        }
    }
}

/// A frame whose length, header and CRC have been checked; its body has not
/// been accessed yet (decoding does that, once).
///
/// Invariant: `bytes.len() == header.frame_len` and the CRC matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidFrame {
    header: FrameHeader,
    bytes: Bytes,
}

impl ValidFrame {
    /// Checks untrusted bytes holding exactly one frame: length bounds,
    /// header fields and CRC.
    pub fn validate(bytes: Bytes, frame_bytes_max: usize) -> Result<Self, WireError> {
        let header = FrameHeader::parse(&bytes, frame_bytes_max)?;
        if bytes.len() != header.frame_len as usize {
            return Err(WireError::Truncated {
                have: bytes.len(),
                need: header.frame_len as usize,
            });
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&bytes[0..4]);
        hasher.update(&bytes[8..header.crc_end()]);
        let computed = hasher.finalize();
        if computed != header.crc32 {
            return Err(WireError::BadCrc {
                stored: header.crc32,
                computed,
            });
        }
        Ok(Self { header, bytes })
    }

    /// The parsed header.
    pub fn header(&self) -> &FrameHeader {
        &self.header
    }

    /// The frame's kind.
    pub fn kind(&self) -> FrameKind {
        self.header.kind
    }

    /// The whole frame.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The rkyv body.
    pub fn body(&self) -> &[u8] {
        &self.bytes[self.header.body_range()]
    }

    /// The attachments, as one slice of the frame (no copy).
    pub fn attachments(&self) -> Bytes {
        self.bytes.slice(self.header.attachments_range())
    }
}

/// Where an encoded frame goes: the frame's header, body and small
/// attachments are appended to `head`; attachments above `inline_bytes_max`
/// are pushed to `tail` as reference-counted `Bytes` (no copy), to be
/// written after `head` with one `sendmsg`. The frame is `head[start..]`
/// followed by every `tail` entry added by the same encode.
pub struct FrameSink<'a> {
    /// Contiguous bytes: the header, body and inlined attachments.
    pub head: &'a mut Vec<u8>,
    /// Attachments written from their own buffers.
    pub tail: &'a mut Vec<Bytes>,
    /// Attachments up to this size are copied into `head`: a memcpy of a
    /// small payload is cheaper than an iovec entry and a reference count.
    pub inline_bytes_max: usize,
    /// The limit the frame must respect.
    pub frame_bytes_max: usize,
}

/// The rkyv serializer bound every body type satisfies.
pub(crate) trait Body:
    for<'a> rkyv::Serialize<HighSerializer<Vec<u8>, ArenaHandle<'a>, rancor::Error>>
{
}
impl<T> Body for T where
    T: for<'a> rkyv::Serialize<HighSerializer<Vec<u8>, ArenaHandle<'a>, rancor::Error>>
{
}

impl FrameSink<'_> {
    /// Appends one frame: header, `body` archived with rkyv, then
    /// `attachments` in order. Returns the frame's length. On error nothing
    /// is appended.
    pub(crate) fn frame<'b, B: Body>(
        &mut self,
        kind: FrameKind,
        body: &B,
        attachments: impl Iterator<Item = &'b Bytes> + Clone,
    ) -> Result<usize, EncodeError> {
        let start = self.head.len();
        let tail_start = self.tail.len();
        self.head.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
        // The writer is moved in and back out: a pointer move, no copy.
        let head = std::mem::take(self.head);
        match rkyv::api::high::to_bytes_in::<_, rancor::Error>(body, head) {
            Ok(head) => *self.head = head,
            Err(error) => {
                // rkyv consumed the buffer; only a Vec writer's allocation
                // can fail it, which aborts first. Report, keep going.
                return Err(EncodeError::Serialize {
                    kind: kind.name(),
                    reason: error.to_string(),
                });
            }
        }
        let body_len = self.head.len() - start - FRAME_HEADER_BYTES;
        let attachments_len: usize = attachments.clone().map(Bytes::len).sum();
        let frame_len = FRAME_HEADER_BYTES + body_len + attachments_len;
        let max = self.frame_bytes_max.min(FRAME_BYTES_CEILING);
        if frame_len > max {
            self.head.truncate(start);
            return Err(EncodeError::TooLarge {
                kind: kind.name(),
                frame_len: frame_len as u64,
                max,
            });
        }
        for attachment in attachments.clone() {
            // Once one attachment goes to the tail, all later ones must too:
            // the frame's byte order is head, then tail.
            if self.tail.len() == tail_start && attachment.len() <= self.inline_bytes_max {
                self.head.extend_from_slice(attachment);
            } else {
                self.tail.push(attachment.clone());
            }
        }
        let header = &mut self.head[start..start + FRAME_HEADER_BYTES];
        header[0..4].copy_from_slice(&(frame_len as u32).to_le_bytes());
        header[8] = kind as u8;
        header[12..16].copy_from_slice(&(body_len as u32).to_le_bytes());
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&self.head[start..start + 4]);
        hasher.update(&self.head[start + 8..start + FRAME_HEADER_BYTES + body_len]);
        if !kind.attachments_self_checked() {
            for attachment in attachments {
                hasher.update(attachment);
            }
        }
        let crc = hasher.finalize();
        self.head[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        Ok(frame_len)
    }
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}
