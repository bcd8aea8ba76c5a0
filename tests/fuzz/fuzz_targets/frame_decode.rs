//! Arbitrary bytes through ordo-net's receive path: split into frames,
//! validated, decoded. A typed error or messages that survive re-encoding,
//! never a panic. The check itself lives in `ordo_net::fuzzing` so that a
//! proptest runs it on stable Rust too.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ordo_net::fuzzing::check_frame_decode(data);
});
