//! The `log_open` fuzz target's logic on stable Rust: random and mutated
//! log files open to a valid log or a typed error, never a panic.

use ordo_storage::conformance::batches;
use ordo_storage::disk::fuzz_open;
use proptest::prelude::*;

/// A valid run of frames (the body of segment 1) to mutate.
fn valid_frames() -> Vec<u8> {
    let mut out = Vec::new();
    for batch in batches(1, 1, &[3, 1, 4, 1, 5]) {
        out.extend_from_slice(batch.bytes());
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..6000)) {
        let _ = fuzz_open(&data);
    }

    #[test]
    fn mutated_logs_open_or_fail_typed(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        split in any::<bool>(),
    ) {
        let mut body = valid_frames();
        for (at, xor) in flips {
            let at = at.index(body.len());
            body[at] ^= xor;
        }
        body.truncate(cut.index(body.len() + 1));
        let mut data = vec![if split { 3 } else { 1 }];
        data.extend_from_slice(&body);
        let _ = fuzz_open(&data);
    }
}

#[test]
fn an_intact_log_opens_whole() {
    let mut data = vec![1u8];
    data.extend_from_slice(&valid_frames());
    let outcome = fuzz_open(&data).expect("a valid log opens");
    assert_eq!(outcome.last.index, 14);
    assert_eq!(outcome.batches_read, 5);
}

#[test]
fn a_torn_last_frame_is_cut() {
    let mut data = vec![1u8];
    let frames = valid_frames();
    data.extend_from_slice(&frames[..frames.len() - 5]);
    let outcome = fuzz_open(&data).expect("a torn tail opens");
    assert_eq!(outcome.last.index, 9);
}

#[test]
fn garbage_hard_state_is_reported_lost() {
    let mut data = vec![4u8];
    data.extend_from_slice(&[0xAB; 8192]);
    let outcome = fuzz_open(&data).expect("a lost hard state opens");
    assert_eq!(outcome.hard_state, ordo_storage::HardState::default());
    let lost = outcome.recovery.hard_state_lost.expect("reported");
    assert!(lost.contains("no valid hard-state slot"), "{lost}");
}
