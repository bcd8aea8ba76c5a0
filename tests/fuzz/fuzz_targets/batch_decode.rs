//! Arbitrary bytes as a batch frame: a typed error or a valid batch whose
//! entries can all be read, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes = bytes::Bytes::copy_from_slice(data);
    if let Ok(batch) = ordo_storage::Batch::decode(bytes) {
        for entry in batch.entries() {
            std::hint::black_box(entry.payload.len());
        }
    }
});
