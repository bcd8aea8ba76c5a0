//! Arbitrary bytes as the files of a log directory (a segment, two
//! segments or the hard-state file; see `ordo_storage::disk::fuzz_open`):
//! opening returns a valid log or a typed error, never a panic, and a log
//! that opens reads back, takes an append, syncs and reopens.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ordo_storage::disk::fuzz_open(data);
});
