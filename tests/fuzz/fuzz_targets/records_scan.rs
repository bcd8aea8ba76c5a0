//! Arbitrary bytes as a record file (commit statements, delivered
//! messages): recovery keeps a prefix of intact records and says where and
//! why it stopped, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut taken = 0u64;
    let recovered = ordo_storage::records::scan(
        &mut &data[..],
        0,
        data.len() as u64,
        1 << 20,
        |_, body| {
            taken += 1;
            std::hint::black_box(body.len());
            Ok(())
        },
    )
    .expect("a slice reads without error");
    assert_eq!(recovered.records, taken);
    assert!(recovered.end <= data.len() as u64);
});
