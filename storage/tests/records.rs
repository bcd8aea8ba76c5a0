//! The record files' recovery rule over untrusted bytes (property tests;
//! `tests/fuzz/fuzz_targets/records_scan.rs` runs the same rule under
//! libFuzzer): never a panic, every record taken is intact, and damage to a
//! valid file keeps exactly the records before it.

use ordo_storage::records::{RecordDamage, encode_record, records, scan};
use proptest::prelude::*;

const MAX: usize = 4096;

fn scan_bytes(bytes: &[u8]) -> (Vec<Vec<u8>>, ordo_storage::records::Recovered) {
    let mut taken = Vec::new();
    let recovered = scan(&mut &bytes[..], 0, bytes.len() as u64, MAX, |_, body| {
        taken.push(body.to_vec());
        Ok(())
    })
    .expect("reading a slice cannot fail");
    (taken, recovered)
}

fn encode(bodies: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for body in bodies {
        encode_record(&mut out, &[body]);
    }
    out
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_agree_with_the_slice_parser(
        bytes in prop::collection::vec(any::<u8>(), 0..2048)
    ) {
        let (taken, recovered) = scan_bytes(&bytes);
        prop_assert!(recovered.end <= bytes.len() as u64);
        prop_assert_eq!(recovered.records as usize, taken.len());
        let parsed: Vec<Vec<u8>> = records(&bytes, MAX)
            .take_while(Result::is_ok)
            .map(|body| body.unwrap().to_vec())
            .collect();
        prop_assert_eq!(&parsed, &taken);
        // The kept prefix re-encodes to itself.
        prop_assert_eq!(encode(&taken), bytes[..recovered.end as usize].to_vec());
    }

    #[test]
    fn damage_keeps_exactly_the_records_before_it(
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..12),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let bytes = encode(&bodies);
        let mut damaged = bytes.clone();
        let at = at.index(bytes.len());
        damaged[at] ^= flip;
        let (taken, recovered) = scan_bytes(&damaged);
        // The records wholly before the damaged byte survive; the damaged
        // one does not (a CRC32 catches any change confined to 8 bits).
        let mut end = 0;
        let mut before = 0;
        for body in &bodies {
            let next = end + 8 + body.len();
            if next > at {
                break;
            }
            end = next;
            before += 1;
        }
        prop_assert!(taken.len() >= before);
        prop_assert_eq!(&taken[..before], &bodies[..before]);
        prop_assert_eq!(taken.len(), before, "a damaged record was taken");
        prop_assert!(recovered.truncated.is_some());
        prop_assert_eq!(recovered.end, end as u64);
    }

    #[test]
    fn a_torn_tail_keeps_the_whole_records(
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..12),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = encode(&bodies);
        let cut = cut.index(bytes.len() + 1);
        let (taken, recovered) = scan_bytes(&bytes[..cut]);
        prop_assert_eq!(encode(&taken), bytes[..recovered.end as usize].to_vec());
        prop_assert_eq!(&taken[..], &bodies[..taken.len()]);
        let next = taken.len();
        if next < bodies.len() {
            prop_assert!(recovered.end + 8 + bodies[next].len() as u64 > cut as u64);
        }
        if let Some((_, damage)) = recovered.truncated {
            let torn = matches!(damage, RecordDamage::TornHeader { .. } | RecordDamage::TornBody { .. });
            prop_assert!(torn, "{:?}", damage);
        }
    }
}
