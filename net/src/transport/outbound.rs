//! One connection's outbound queue: a priority lane and a bulk lane, both
//! bounded, drained by the connection's writer in coalesced writes.
//!
//! Priority frames are encoded straight into one contiguous buffer, so a
//! burst of heartbeats and responses leaves in one `sendmsg` with no
//! per-frame allocation. Bulk frames keep their order and their large
//! attachments by reference (the leader's batch bytes go from its log cache
//! to the socket without a copy). The writer always takes the whole
//! priority buffer first, then bulk frames up to `write_coalesce_bytes_max`
//! (or one larger frame), so a priority frame never waits behind more than
//! one write's worth of bulk data.

use std::cell::RefCell;
use std::collections::VecDeque;

use bytes::Bytes;
use ordo_storage::NodeId;

use crate::transport::config::ConnectionLimits;
use crate::transport::notify::Notify;
use crate::wire::{Encode, EncodeError, FrameSink, Lane};

/// Why a frame was not queued. Nothing was queued in every case: the caller
/// may drop the message (Raft retransmits) or retry later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No peer with this id is registered.
    #[error("unknown peer {0}")]
    UnknownPeer(NodeId),
    /// The lane's queue is at its bound: the peer (or the network) is slower
    /// than the sender. Backpressure, not failure.
    #[error("outbound {lane:?} queue full")]
    Full {
        /// Which lane.
        lane: Lane,
    },
    /// The transport or the connection is shut down.
    #[error("connection closed")]
    Closed,
    /// The message does not fit in a frame.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// A run of bulk frames: `head` then `tail`, as [`FrameSink`] produced
/// them. Consecutive frames without zero-copy attachments share one `head`
/// (no allocation per small frame); a frame with a `tail` seals its
/// segment, since its attachments must follow its head on the wire.
///
/// Invariant: `len == head.len() + sum of tail lengths`; `frames >= 1` once
/// queued.
#[derive(Debug, Default)]
pub(crate) struct Segment {
    head: Vec<u8>,
    tail: Vec<Bytes>,
    frames: usize,
    len: usize,
}

/// What the writer takes in one go.
#[derive(Debug, Default)]
pub(crate) struct WriteBatch {
    /// Priority frames, contiguous.
    pub(crate) priority: Vec<u8>,
    /// Priority frames in `priority`.
    pub(crate) priority_frames: usize,
    /// Bulk segments, in order.
    pub(crate) bulk: Vec<Segment>,
}

impl WriteBatch {
    /// The byte slices to write, in order.
    pub(crate) fn slices(&self) -> Vec<&[u8]> {
        let mut slices = Vec::with_capacity(1 + self.bulk.len() * 2);
        if !self.priority.is_empty() {
            slices.push(&self.priority[..]);
        }
        for segment in &self.bulk {
            slices.push(&segment.head[..]);
            slices.extend(segment.tail.iter().map(|b| &b[..]));
        }
        slices
    }

    /// Frames in the batch.
    pub(crate) fn frames(&self) -> usize {
        self.priority_frames + self.bulk.iter().map(|s| s.frames).sum::<usize>()
    }

    /// Bytes in the batch.
    pub(crate) fn bytes(&self) -> usize {
        self.priority.len() + self.bulk.iter().map(|f| f.len).sum::<usize>()
    }
}

/// Counters of one outbound queue, for tests, metrics and `ordo status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Priority bytes waiting.
    pub priority_bytes: usize,
    /// Bulk frames waiting.
    pub bulk_frames: usize,
    /// Bulk bytes waiting.
    pub bulk_bytes: usize,
    /// Bytes taken by the writer and not yet written.
    pub in_flight_bytes: usize,
    /// Largest `priority_bytes + bulk_bytes + in_flight_bytes` seen.
    pub held_bytes_peak: usize,
    /// Frames written to the socket.
    pub frames_sent: u64,
    /// Bytes written to the socket.
    pub bytes_sent: u64,
    /// Frames refused because a lane was full.
    pub frames_refused: u64,
    /// Frames dropped unsent because the connection was lost.
    pub frames_dropped: u64,
    /// Writes (`sendmsg` batches) issued.
    pub writes: u64,
}

#[derive(Debug, Default)]
struct State {
    priority: Vec<u8>,
    priority_frames: usize,
    bulk: VecDeque<Segment>,
    bulk_frames: usize,
    bulk_bytes: usize,
    closed: bool,
    stats: QueueStats,
}

impl State {
    fn held(&self) -> usize {
        self.priority.len() + self.bulk_bytes + self.stats.in_flight_bytes
    }

    fn note_peak(&mut self) {
        let held = self.held();
        if held > self.stats.held_bytes_peak {
            self.stats.held_bytes_peak = held;
        }
    }
}

/// The outbound queue of one connection (or one peer, across reconnects).
///
/// Invariants: `bulk_bytes` and `bulk_frames` are the sums of `bulk[i].len`
/// and `bulk[i].frames`; apart from the one frame an empty lane may always
/// take, `priority.len() <= priority_queue_bytes_max`, `bulk_frames <=
/// bulk_queue_frames_max` and `bulk_bytes <= bulk_queue_bytes_max`.
#[derive(Debug)]
pub(crate) struct OutQueue {
    limits: ConnectionLimits,
    state: RefCell<State>,
    /// Wakes the writer: frames were queued or the queue closed.
    pub(crate) writer_wake: Notify,
    /// Wakes senders waiting for room.
    pub(crate) space: Notify,
    /// The writer's spare priority buffer, swapped in when it takes one.
    spare: RefCell<Vec<u8>>,
}

impl OutQueue {
    pub(crate) fn new(limits: ConnectionLimits) -> Self {
        Self {
            limits,
            state: RefCell::new(State::default()),
            writer_wake: Notify::default(),
            space: Notify::default(),
            spare: RefCell::new(Vec::new()),
        }
    }

    /// Encodes `message` into its lane, or says why not.
    pub(crate) fn try_push<M: Encode>(&self, message: &M) -> Result<(), SendError> {
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        if state.closed {
            return Err(SendError::Closed);
        }
        let lane = message.lane();
        match lane {
            Lane::Priority => {
                let before = state.priority.len();
                let mut tail = Vec::new();
                let mut sink = FrameSink {
                    head: &mut state.priority,
                    tail: &mut tail,
                    inline_bytes_max: usize::MAX,
                    frame_bytes_max: self.limits.frame_bytes_max,
                };
                message.encode(&mut sink)?;
                if before > 0 && state.priority.len() > self.limits.priority_queue_bytes_max {
                    state.priority.truncate(before);
                    state.stats.frames_refused += 1;
                    return Err(SendError::Full { lane });
                }
                state.priority_frames += 1;
            }
            Lane::Bulk => {
                let State {
                    bulk,
                    bulk_frames,
                    bulk_bytes,
                    stats,
                    ..
                } = state;
                if *bulk_frames >= self.limits.bulk_queue_frames_max {
                    stats.frames_refused += 1;
                    return Err(SendError::Full { lane });
                }
                let appendable = bulk.back().is_some_and(|segment| {
                    segment.tail.is_empty()
                        && segment.head.len() < self.limits.write_coalesce_bytes_max
                });
                if !appendable {
                    bulk.push_back(Segment::default());
                }
                let segment = bulk.back_mut().expect("a segment was just ensured");
                let before = segment.head.len();
                let mut sink = FrameSink {
                    head: &mut segment.head,
                    tail: &mut segment.tail,
                    inline_bytes_max: self.limits.inline_attachment_bytes_max,
                    frame_bytes_max: self.limits.frame_bytes_max,
                };
                let encoded = message.encode(&mut sink);
                let refused = match encoded {
                    Ok(len)
                        if *bulk_frames == 0
                            || *bulk_bytes + len <= self.limits.bulk_queue_bytes_max =>
                    {
                        segment.frames += 1;
                        segment.len += len;
                        *bulk_frames += 1;
                        *bulk_bytes += len;
                        None
                    }
                    Ok(_) => {
                        stats.frames_refused += 1;
                        Some(SendError::Full { lane })
                    }
                    Err(error) => Some(error.into()),
                };
                if let Some(error) = refused {
                    // Undo: only this frame's bytes (a tail means the segment
                    // held no tail before, as it was appendable or new).
                    segment.head.truncate(before);
                    segment.tail.clear();
                    if segment.frames == 0 {
                        bulk.pop_back();
                    }
                    return Err(error);
                }
            }
        }
        state.note_peak();
        drop(guard);
        self.writer_wake.notify_all();
        Ok(())
    }

    /// Takes the next write: all priority frames, then bulk frames up to
    /// `write_coalesce_bytes_max` (at least one). `None` if nothing waits.
    pub(crate) fn take(&self) -> Option<WriteBatch> {
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        if state.priority.is_empty() && state.bulk.is_empty() {
            return None;
        }
        let spare = std::mem::take(&mut *self.spare.borrow_mut());
        let mut batch = WriteBatch {
            priority: std::mem::replace(&mut state.priority, spare),
            priority_frames: std::mem::take(&mut state.priority_frames),
            bulk: Vec::new(),
        };
        let mut bytes = batch.priority.len();
        while let Some(front) = state.bulk.front() {
            if !batch.bulk.is_empty() && bytes + front.len > self.limits.write_coalesce_bytes_max {
                break;
            }
            bytes += front.len;
            state.bulk_bytes -= front.len;
            state.bulk_frames -= front.frames;
            batch.bulk.extend(state.bulk.pop_front());
            if bytes >= self.limits.write_coalesce_bytes_max {
                break;
            }
        }
        state.stats.in_flight_bytes = batch.bytes();
        drop(guard);
        self.space.notify_all();
        Some(batch)
    }

    /// The writer wrote `batch`; its priority buffer is kept for reuse.
    pub(crate) fn complete(&self, mut batch: WriteBatch) {
        let mut state = self.state.borrow_mut();
        state.stats.in_flight_bytes = 0;
        state.stats.frames_sent += batch.frames() as u64;
        state.stats.bytes_sent += batch.bytes() as u64;
        state.stats.writes += 1;
        batch.priority.clear();
        // Keep a spare of reasonable size only: a burst must not pin a huge
        // buffer for the connection's lifetime.
        if batch.priority.capacity() <= self.limits.priority_queue_bytes_max.max(64 << 10) {
            *self.spare.borrow_mut() = batch.priority;
        }
    }

    /// Drops every queued frame (the connection was lost: they would be
    /// stale by the time a new one is up). Returns how many.
    pub(crate) fn clear(&self) -> usize {
        let mut state = self.state.borrow_mut();
        let dropped = state.priority_frames + state.bulk_frames;
        state.priority.clear();
        state.priority_frames = 0;
        state.bulk.clear();
        state.bulk_frames = 0;
        state.bulk_bytes = 0;
        state.stats.in_flight_bytes = 0;
        state.stats.frames_dropped += dropped as u64;
        drop(state);
        self.space.notify_all();
        dropped
    }

    /// Refuses new frames; the writer drains what is queued, then stops.
    pub(crate) fn close(&self) {
        self.state.borrow_mut().closed = true;
        self.writer_wake.notify_all();
        self.space.notify_all();
    }

    /// Whether [`OutQueue::close`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.state.borrow().closed
    }

    /// Current counters.
    pub(crate) fn stats(&self) -> QueueStats {
        let state = self.state.borrow();
        QueueStats {
            priority_bytes: state.priority.len(),
            bulk_frames: state.bulk_frames,
            bulk_bytes: state.bulk_bytes,
            ..state.stats
        }
    }
}
