//! Fuzzes the model-spec reader: any text gives a network or an error naming the file,
//! never a panic; a network it accepts has consistent shapes, costs and dependency groups.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(spec) = sacp::spec::parse(text, Path::new("fuzz/model.toml")) {
        let net = &spec.network;
        let _ = net.total_cost();
        let _ = sacp::deps::Dependencies::analyse(net);
        // The graph spec it writes reads back as the same network.
        let written = sacp::spec::write_graph_spec(net, None);
        let again = sacp::spec::parse(&written, Path::new("fuzz/again.toml")).expect("a written spec reads back");
        assert_eq!(sacp::spec::fingerprint(&again.network), sacp::spec::fingerprint(net));
    }
});
