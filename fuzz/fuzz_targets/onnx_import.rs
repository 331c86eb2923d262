//! Fuzzes the ONNX importer: any bytes give a network or an error, never a panic, and an
//! imported network is consistent (its weights fit it, its dependency groups exist).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((network, weights)) = sacp::onnx::from_bytes(data) {
        weights.check(&network, "fuzz input").expect("imported weights fit the imported network");
        let deps = sacp::deps::Dependencies::analyse(&network);
        assert!(!deps.groups.is_empty());
    }
});
