//! Fuzzes the IDX reader (MNIST, Fashion-MNIST): the input's first two bytes say where the
//! images file ends and the labels file begins; any bytes give a split or an error naming
//! the file, never a panic; an accepted split has as many labels as images, each below 10.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sacp::data::ImageSource;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let [a, b, rest @ ..] = data else { return };
    let cut = (usize::from(*a) << 8 | usize::from(*b)).min(rest.len());
    let (images, labels) = rest.split_at(cut);
    if let Ok(split) = sacp::data::decode_idx(Path::new("images"), images, Path::new("labels"), labels) {
        assert!(!split.is_empty());
        let mut pixels = vec![0u8; split.shape().iter().product()];
        for i in 0..split.len() {
            assert!(split.label(i) < 10);
            split.pixels(i, &mut pixels).expect("in-memory pixels");
        }
    }
});
