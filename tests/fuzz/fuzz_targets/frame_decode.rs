//! Fuzz target frame_decode (to be written by its crate's owner).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|_data: &[u8]| {});
