//! Round-trip and corruption properties of the frame codec, for every
//! message family.

mod common;

use bytes::Bytes;
use common::*;
use ordo_net::fuzzing::check_frame_decode;
use ordo_net::wire::{
    AnyMessage, Decode, Encode, FrameSink, ValidFrame, WireError, decode_frame, decode_stream,
    encode_to_vec,
};
use ordo_net::*;
use proptest::prelude::*;

const MAX: usize = 1 << 20;

fn round_trip<M: Encode + Decode + PartialEq + std::fmt::Debug>(message: &M) {
    let bytes = encode_to_vec(message, MAX).unwrap();
    let decoded: M = decode_frame(Bytes::from(bytes), MAX).unwrap();
    assert_eq!(&decoded, message);
}

/// Encoding with attachments left in the tail (zero-copy path) must put the
/// very same bytes on the wire as encoding everything inline.
fn tail_bytes_equal_inline(message: &AnyMessage, inline_bytes_max: usize) {
    let inline = encode_to_vec(message, MAX).unwrap();
    let mut head = Vec::new();
    let mut tail = Vec::new();
    let mut sink = FrameSink {
        head: &mut head,
        tail: &mut tail,
        inline_bytes_max,
        frame_bytes_max: MAX,
    };
    let len = message.encode(&mut sink).unwrap();
    let mut joined = head;
    for piece in &tail {
        joined.extend_from_slice(piece);
    }
    assert_eq!(joined.len(), len);
    assert_eq!(joined, inline);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn peer_messages_round_trip(message in arb_peer_message()) {
        round_trip(&message);
    }

    #[test]
    fn client_requests_round_trip(request in arb_client_request()) {
        round_trip(&request);
    }

    #[test]
    fn client_responses_round_trip(response in arb_client_response()) {
        round_trip(&response);
    }

    #[test]
    fn a_log_response_frame_never_exceeds_its_wire_bytes(response in arb_client_response()) {
        if let ClientResponse::Log(log) = &response {
            let bytes = encode_to_vec(&response, MAX).unwrap();
            prop_assert!(bytes.len() <= log.wire_bytes(), "{} > {}", bytes.len(), log.wire_bytes());
        }
    }

    #[test]
    fn handshakes_round_trip(handshake in arb_handshake()) {
        round_trip(&handshake);
    }

    #[test]
    fn gossip_frames_round_trip(frame in arb_gossip_frame()) {
        round_trip(&frame);
    }

    #[test]
    fn zero_copy_tail_writes_the_same_bytes(message in arb_any_message(), inline in 0usize..4096) {
        tail_bytes_equal_inline(&message, inline);
    }

    /// A stream of frames cut into arbitrary reads decodes to the same
    /// messages in order, whatever the slab size.
    #[test]
    fn streams_decode_whatever_the_read_sizes(messages in prop::collection::vec(arb_any_message(), 1..12), chunk in 1usize..5000, slab_shift in 0u32..8) {
        let mut stream = Vec::new();
        for m in &messages {
            stream.extend(encode_to_vec(m, MAX).unwrap());
        }
        let outcome = decode_stream(&stream, chunk, 64 << slab_shift, MAX);
        prop_assert_eq!(outcome.error, None);
        prop_assert_eq!(outcome.leftover_bytes, 0);
        prop_assert_eq!(outcome.messages, messages);
    }

    /// Any single flipped bit of a valid frame is caught: the frame CRC
    /// covers everything but the batch attachments, which carry their own.
    #[test]
    fn every_flipped_bit_is_rejected(message in arb_any_message(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut bytes = encode_to_vec(&message, MAX).unwrap();
        let at = at.index(bytes.len());
        bytes[at] ^= 1 << bit;
        let result: Result<AnyMessage, WireError> = decode_frame(Bytes::from(bytes), MAX);
        prop_assert!(result.is_err(), "flip at {} of {:?} went unnoticed", at, message.frame_kind());
    }

    /// Truncated frames are never accepted.
    #[test]
    fn truncated_frames_are_rejected(message in arb_any_message(), cut in any::<prop::sample::Index>()) {
        let bytes = encode_to_vec(&message, MAX).unwrap();
        let cut = cut.index(bytes.len());
        let result: Result<AnyMessage, WireError> = decode_frame(Bytes::copy_from_slice(&bytes[..cut]), MAX);
        prop_assert!(result.is_err());
        let outcome = decode_stream(&bytes[..cut], 7, 4096, MAX);
        prop_assert!(outcome.messages.is_empty());
    }

    /// The fuzz target's check on random bytes (stable-Rust stand-in for
    /// `cargo fuzz run frame_decode`).
    #[test]
    fn fuzz_check_survives_random_bytes(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        check_frame_decode(&data);
    }

    /// ... and on valid streams with random damage, which reach much deeper
    /// into the decoder than random bytes do.
    #[test]
    fn fuzz_check_survives_damaged_streams(messages in prop::collection::vec(arb_any_message(), 1..4), shape in any::<u8>(), damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4)) {
        let mut data = vec![shape];
        for m in &messages {
            data.extend(encode_to_vec(m, MAX).unwrap());
        }
        for (at, value) in damage {
            let at = 1 + at.index(data.len() - 1);
            data[at] = value;
        }
        check_frame_decode(&data);
    }
}

#[test]
fn oversized_length_prefix_is_refused_after_four_bytes() {
    let huge = (u32::MAX).to_le_bytes();
    let outcome = decode_stream(&huge, 4, 4096, MAX);
    assert!(
        matches!(outcome.error, Some(WireError::TooLarge { .. })),
        "{:?}",
        outcome.error
    );
    let mut splitter = ordo_net::wire::FrameSplitter::new(4096, MAX);
    splitter.extend_from_slice(&huge).unwrap();
    assert!(matches!(
        splitter.next_frame(),
        Err(WireError::TooLarge { .. })
    ));
    // It was refused without allocating room for it.
    assert!(splitter.slab_len() < MAX);
}

#[test]
fn encoding_refuses_frames_above_the_limit() {
    let message = PeerMessage::SnapshotChunk(SnapshotChunk {
        term: 1,
        last: ordo_storage::LogId::new(1, 1),
        offset: 0,
        data: Bytes::from(vec![0; 10_000]),
        done: false,
    });
    assert!(matches!(
        encode_to_vec(&message, 4096),
        Err(wire::EncodeError::TooLarge { .. })
    ));
    let fits = encode_to_vec(&message, 20_000).unwrap();
    // The receiver's limit applies too.
    assert!(matches!(
        ValidFrame::validate(Bytes::from(fits), 4096),
        Err(WireError::TooLarge { .. })
    ));
}

#[test]
fn append_attachments_are_slices_of_the_received_frame() {
    let payloads: Vec<Vec<u8>> = (0..1000).map(|i| vec![i as u8; 64]).collect();
    let message = PeerMessage::Raft(Message::Append(AppendRequest {
        term: 3,
        prev: ordo_storage::LogId::new(2, 9),
        commit: 5,
        batches: vec![batch(3, 10, &payloads)],
    }));
    let frame = Bytes::from(encode_to_vec(&message, MAX).unwrap());
    let range = frame.as_ptr_range();
    let decoded: PeerMessage = decode_frame(frame.clone(), MAX).unwrap();
    let PeerMessage::Raft(Message::Append(append)) = decoded else {
        panic!("not an append")
    };
    let batch = &append.batches[0];
    // No copy: the batch's bytes and every payload point into the frame.
    assert!(range.contains(&batch.bytes().as_ptr()));
    for entry in batch.entries() {
        assert!(range.contains(&entry.payload.as_ptr()));
        assert_eq!(entry.payload.len(), 64);
    }
}

#[test]
fn append_with_gaps_between_batches_is_refused() {
    let a = batch(3, 10, &[vec![1], vec![2]]);
    let b = batch(3, 13, &[vec![3]]); // should start at 12
    let message = PeerMessage::Raft(Message::Append(AppendRequest {
        term: 3,
        prev: ordo_storage::LogId::new(3, 9),
        commit: 0,
        batches: vec![a, b],
    }));
    let bytes = encode_to_vec(&message, MAX).unwrap();
    let result: Result<PeerMessage, _> = decode_frame(Bytes::from(bytes), MAX);
    assert!(
        matches!(result, Err(WireError::Invalid { kind: "append", .. })),
        "{result:?}"
    );
}

#[test]
fn a_family_decoder_refuses_other_families() {
    let request = ClientRequest::Read(ReadRequest { request_id: 1 });
    let bytes = Bytes::from(encode_to_vec(&request, MAX).unwrap());
    let result: Result<PeerMessage, _> = decode_frame(bytes, MAX);
    assert!(matches!(result, Err(WireError::UnexpectedKind { .. })));
}

#[test]
fn gossip_payloads_and_tokens_are_slices_of_the_received_frame() {
    let message = GossipMessage {
        id: 7,
        index: 9,
        term: 2,
        ts: 1_000,
        payload: Bytes::from(vec![5; 4000]),
        token: Bytes::from(vec![6; 300]),
    };
    let frame = GossipFrame::Wire(Wire::PullReply {
        messages: vec![message.clone(), message.clone()],
        delivered: 9,
    });
    let bytes = Bytes::from(encode_to_vec(&frame, MAX).unwrap());
    let range = bytes.as_ptr_range();
    let decoded: GossipFrame = decode_frame(bytes.clone(), MAX).unwrap();
    let GossipFrame::Wire(Wire::PullReply { messages, .. }) = decoded else {
        panic!("not a pull reply")
    };
    for m in &messages {
        assert_eq!(m, &message);
        assert!(range.contains(&m.payload.as_ptr()));
        assert!(range.contains(&m.token.as_ptr()));
    }
}

#[test]
fn a_gossip_intro_with_a_bad_address_is_refused() {
    let frame = GossipFrame::Intro(GossipIntro {
        listen_addr: "127.0.0.1:9".parse().unwrap(),
    });
    let mut bytes = encode_to_vec(&frame, MAX).unwrap();
    // Turn "127.0.0.1:9" into "127.0.0.1:x": still valid rkyv, not an
    // address; fix the CRC so the body is what gets checked.
    let at = bytes.windows(2).position(|w| w == b":9").unwrap() + 1;
    bytes[at] = b'x';
    let crc = {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&bytes[0..4]);
        hasher.update(&bytes[8..]);
        hasher.finalize()
    };
    bytes[4..8].copy_from_slice(&crc.to_le_bytes());
    let result: Result<GossipFrame, _> = decode_frame(Bytes::from(bytes), MAX);
    assert!(
        matches!(
            result,
            Err(WireError::BadBody {
                kind: "gossip_intro",
                ..
            })
        ),
        "{result:?}"
    );
}

#[test]
fn peer_and_client_decoders_refuse_gossip_frames() {
    let frame = GossipFrame::Wire(Wire::Prune);
    let bytes = Bytes::from(encode_to_vec(&frame, MAX).unwrap());
    let result: Result<PeerMessage, _> = decode_frame(bytes.clone(), MAX);
    assert!(matches!(result, Err(WireError::UnexpectedKind { .. })));
    let result: Result<ClientRequest, _> = decode_frame(bytes, MAX);
    assert!(matches!(result, Err(WireError::UnexpectedKind { .. })));
}
