//! Splitting a received byte stream into frames, zero-copy.
//!
//! Bytes are received into a slab (`BytesMut`); each complete frame is split
//! off the slab's front as a frozen `Bytes` that shares the slab's
//! allocation, so the frame's attachments (entry payloads, batch frames)
//! reach the log without a copy. A slab is freed once every frame cut from it
//! is dropped. Only the unfinished tail of a slab is ever copied: when the
//! next frame does not fit the rest of the slab, its received prefix moves to
//! a new slab sized for it.

use bytes::{Bytes, BytesMut};

use crate::wire::codec::Decode;
use crate::wire::{AnyMessage, FRAME_HEADER_BYTES, FrameHeader, ValidFrame, WireError};

/// A fresh slab is taken when fewer bytes than this are free at the end of
/// the current one and no frame is partially received: reading a few bytes
/// at a time costs a syscall each.
const READ_BYTES_MIN: usize = 4096;

/// Receive-side frame assembly for one connection.
///
/// Invariant: `filled <= slab.len()`; `slab[..filled]` are received bytes
/// not yet split off; no complete frame is left in them once
/// [`FrameSplitter::next_frame`] returned `Ok(None)`.
#[derive(Debug)]
pub struct FrameSplitter {
    slab: BytesMut,
    filled: usize,
    slab_bytes: usize,
    frame_bytes_max: usize,
}

impl FrameSplitter {
    /// A splitter that allocates slabs of `slab_bytes` (larger for a frame
    /// that needs it) and refuses frames above `frame_bytes_max`.
    pub fn new(slab_bytes: usize, frame_bytes_max: usize) -> Self {
        Self {
            slab: BytesMut::new(),
            filled: 0,
            slab_bytes: slab_bytes.max(FRAME_HEADER_BYTES),
            frame_bytes_max,
        }
    }

    /// Changes the frame limit: a connection reads its handshake with a
    /// small limit and raises it once it knows who is on the other side.
    pub fn set_frame_bytes_max(&mut self, frame_bytes_max: usize) {
        self.frame_bytes_max = frame_bytes_max;
    }

    /// Received bytes not yet split off as frames.
    pub fn buffered(&self) -> usize {
        self.filled
    }

    /// Bytes this splitter's current slab holds (buffered and free).
    pub fn slab_len(&self) -> usize {
        self.slab.len()
    }

    /// Where to receive the next bytes; then call [`FrameSplitter::advance`].
    /// Fails if the frame being received is announced larger than
    /// `frame_bytes_max`, before any of it is buffered.
    pub fn unfilled(&mut self) -> Result<&mut [u8], WireError> {
        let need = if self.filled >= 4 {
            FrameHeader::peek_len(&self.slab[..self.filled], self.frame_bytes_max)?
        } else {
            FRAME_HEADER_BYTES
        };
        let free = self.slab.len() - self.filled;
        if self.slab.len() < need
            || (self.filled == 0 && free < READ_BYTES_MIN.min(self.slab_bytes))
        {
            let mut slab = BytesMut::zeroed(self.slab_bytes.max(need));
            slab[..self.filled].copy_from_slice(&self.slab[..self.filled]);
            self.slab = slab;
        }
        Ok(&mut self.slab[self.filled..])
    }

    /// Records that `received` bytes were written into [`FrameSplitter::unfilled`].
    pub fn advance(&mut self, received: usize) {
        assert!(
            self.filled + received <= self.slab.len(),
            "advance past the slab"
        );
        self.filled += received;
    }

    /// Copies `bytes` in (for callers that did not receive into
    /// [`FrameSplitter::unfilled`]: tests, the fuzzer).
    pub fn extend_from_slice(&mut self, mut bytes: &[u8]) -> Result<(), WireError> {
        while !bytes.is_empty() {
            let space = self.unfilled()?;
            let n = space.len().min(bytes.len());
            space[..n].copy_from_slice(&bytes[..n]);
            self.advance(n);
            bytes = &bytes[n..];
            // A complete frame must leave the slab before more bytes fit.
            if n == 0 {
                break;
            }
        }
        Ok(())
    }

    /// Splits off the next complete frame and validates it (length, header,
    /// CRC). `Ok(None)`: more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<ValidFrame>, WireError> {
        if self.filled < 4 {
            return Ok(None);
        }
        let frame_len = FrameHeader::peek_len(&self.slab[..self.filled], self.frame_bytes_max)?;
        if self.filled < frame_len {
            return Ok(None);
        }
        let frame: Bytes = self.slab.split_to(frame_len).freeze();
        self.filled -= frame_len;
        ValidFrame::validate(frame, self.frame_bytes_max).map(Some)
    }
}

/// What [`decode_stream`] found.
#[derive(Debug, Default)]
pub struct StreamOutcome {
    /// The frames decoded, in order, before any error.
    pub messages: Vec<AnyMessage>,
    /// The error that stopped decoding, as a connection would close on it.
    pub error: Option<WireError>,
    /// Bytes left over after the last complete frame (a truncated frame).
    pub leftover_bytes: usize,
}

/// Runs untrusted bytes through the receive path exactly as a connection
/// does (split into frames, validate, decode), delivering `data` in pieces of
/// `chunk_bytes` to exercise frames that straddle reads and slabs. Never
/// panics; stops at the first error.
pub fn decode_stream(
    data: &[u8],
    chunk_bytes: usize,
    slab_bytes: usize,
    frame_bytes_max: usize,
) -> StreamOutcome {
    let mut splitter = FrameSplitter::new(slab_bytes, frame_bytes_max);
    let mut outcome = StreamOutcome::default();
    for chunk in data.chunks(chunk_bytes.max(1)) {
        let mut chunk = chunk;
        while !chunk.is_empty() {
            let space = match splitter.unfilled() {
                Ok(space) => space,
                Err(error) => {
                    outcome.error = Some(error);
                    return outcome;
                }
            };
            let n = space.len().min(chunk.len());
            space[..n].copy_from_slice(&chunk[..n]);
            splitter.advance(n);
            chunk = &chunk[n..];
            loop {
                match splitter
                    .next_frame()
                    .and_then(|f| f.map(|f| AnyMessage::decode(&f)).transpose())
                {
                    Ok(Some(message)) => outcome.messages.push(message),
                    Ok(None) => break,
                    Err(error) => {
                        outcome.error = Some(error);
                        return outcome;
                    }
                }
            }
        }
    }
    outcome.leftover_bytes = splitter.buffered();
    outcome
}
