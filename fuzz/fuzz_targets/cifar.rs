//! Fuzzes the CIFAR binary reader: the first byte picks CIFAR-10 (even) or CIFAR-100 (odd)
//! records; any bytes give a split or an error naming the file, never a panic; an accepted
//! split's labels are below its class count.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sacp::data::ImageSource;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let [kind, rest @ ..] = data else { return };
    let (label_bytes, classes) = if kind % 2 == 0 { (1, 10) } else { (2, 100) };
    if let Ok(split) = sacp::data::decode_cifar(Path::new("batch.bin"), rest, label_bytes, classes) {
        assert!(!split.is_empty());
        let mut pixels = vec![0u8; 3 * 32 * 32];
        for i in 0..split.len() {
            assert!(split.label(i) < classes);
            split.pixels(i, &mut pixels).expect("in-memory pixels");
        }
    }
});
