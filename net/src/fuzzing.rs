//! The frame decoder's fuzz check, shared by the cargo-fuzz target
//! (`tests/fuzz/fuzz_targets/frame_decode.rs`) and a proptest that runs it on
//! stable Rust.

use crate::client::ClientResponse;
use crate::gossip::{GossipFrame, Wire};
use crate::message::Message;
use crate::peer::PeerMessage;
use crate::wire::{
    AnyMessage, FRAME_HEADER_BYTES, FrameKind, decode_frame, decode_stream, encode_to_vec,
};

/// Frame limit the fuzz check decodes with: small, so that the fuzzer also
/// reaches the "too large" paths.
pub const FUZZ_FRAME_BYTES_MAX: usize = 1 << 20;

/// Feeds untrusted bytes through the receive path as a connection does. The
/// first byte picks how the stream is cut into reads (1 to 128 bytes), the
/// slab size, and (high bit) whether to repair each frame's CRC first, so
/// that mutated bodies get past the checksum and into bytecheck and the
/// attachment checks; the rest is the stream. For every frame that decodes, it reads
/// every payload and batch entry in place, re-encodes the message and checks
/// that it decodes to the same value.
///
/// # Panics
/// Only if the decoder is wrong: a valid frame that does not survive
/// re-encoding. Untrusted bytes themselves never make it panic.
pub fn check_frame_decode(data: &[u8]) {
    let Some((&shape, stream)) = data.split_first() else {
        return;
    };
    let chunk_bytes = usize::from(shape & 0x7f) + 1;
    let slab_bytes = 64 << (shape % 8);
    let repaired;
    let stream = if shape & 0x80 != 0 {
        repaired = repair_crcs(stream);
        &repaired[..]
    } else {
        stream
    };
    let outcome = decode_stream(stream, chunk_bytes, slab_bytes, FUZZ_FRAME_BYTES_MAX);
    for message in &outcome.messages {
        touch(message);
        let again = encode_to_vec(message, FUZZ_FRAME_BYTES_MAX)
            .expect("a decoded message re-encodes within the limit it was decoded with");
        let decoded: AnyMessage =
            decode_frame(again.into(), FUZZ_FRAME_BYTES_MAX).expect("a re-encoded message decodes");
        assert_eq!(&decoded, message, "round trip changed a decoded message");
    }
}

/// Rewrites the CRC of every frame the length prefixes delimit, by the
/// frame's own rule (see [`crate::wire::frame`]).
fn repair_crcs(stream: &[u8]) -> Vec<u8> {
    let mut bytes = stream.to_vec();
    let mut at = 0;
    while at + FRAME_HEADER_BYTES <= bytes.len() {
        let frame_len =
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        if frame_len < FRAME_HEADER_BYTES || at + frame_len > bytes.len() {
            break;
        }
        let frame = &mut bytes[at..at + frame_len];
        let body_len = u32::from_le_bytes([frame[12], frame[13], frame[14], frame[15]]) as usize;
        let self_checked =
            FrameKind::from_u8(frame[8]).is_ok_and(FrameKind::attachments_self_checked);
        let crc_end = if self_checked {
            (FRAME_HEADER_BYTES + body_len).min(frame_len)
        } else {
            frame_len
        };
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&frame[0..4]);
        hasher.update(&frame[8..crc_end]);
        frame[4..8].copy_from_slice(&hasher.finalize().to_le_bytes());
        at += frame_len;
    }
    bytes
}

/// Reads every byte a message refers to, as the log and the state machine
/// would.
fn touch(message: &AnyMessage) {
    let mut sum = 0u64;
    match message {
        AnyMessage::Peer(PeerMessage::Raft(Message::Append(append))) => {
            for batch in &append.batches {
                for entry in batch.entries() {
                    sum += entry.payload.iter().map(|b| u64::from(*b)).sum::<u64>() + entry.id;
                }
            }
        }
        AnyMessage::Peer(PeerMessage::Raft(Message::Forward(forward))) => {
            for proposal in &forward.proposals {
                sum += proposal.payload.iter().map(|b| u64::from(*b)).sum::<u64>();
            }
        }
        AnyMessage::ClientResponse(ClientResponse::Log(log)) => {
            for m in &log.messages {
                sum += m.payload.len() as u64 + m.token.len() as u64;
            }
        }
        AnyMessage::Gossip(GossipFrame::Wire(Wire::Push { message, .. })) => {
            sum += message.payload.iter().map(|b| u64::from(*b)).sum::<u64>() + message.id;
            sum += message.token.len() as u64;
        }
        AnyMessage::Gossip(GossipFrame::Wire(Wire::PullReply { messages, .. })) => {
            for m in messages {
                sum += m.payload.iter().map(|b| u64::from(*b)).sum::<u64>() + m.token.len() as u64;
            }
        }
        AnyMessage::Gossip(GossipFrame::Wire(Wire::Membership(packet))) => {
            sum += packet.len() as u64;
        }
        _ => {}
    }
    std::hint::black_box(sum);
}
