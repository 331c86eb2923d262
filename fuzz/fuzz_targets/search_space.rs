//! Fuzzes the search-space check: any text gives a checked space or an error (with a file
//! and, where known, a line), never a panic or an allocation the check did not bound. The
//! whole check runs, against ResNet-20: keys and ranges, the other stages' settings, rate
//! groups, the space's size and the feasible grid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sacp::search::candidates::{Layout, Target, check_space};
use sacp::search::clusters;
use sacp::search::space::SearchSpace;
use std::path::Path;
use std::sync::LazyLock;

static NETWORK: LazyLock<sacp::ir::Network> = LazyLock::new(|| {
    sacp::models::build(&sacp::models::ZooConfig {
        arch: "resnet".into(),
        depth: Some(20),
        num_classes: 10,
        input: [3, 32, 32],
    })
    .expect("ResNet-20 builds")
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(space) = SearchSpace::parse(text, Path::new("fuzz.toml")) else { return };
    if sacp::pipeline::interpret(&space).is_err() {
        return;
    }
    let net = &*NETWORK;
    let deps = sacp::deps::Dependencies::analyse(net);
    let Ok(groups) = clusters::rate_groups(&space, net, &deps) else { return };
    let target = Target {
        macs: space.constraints.macs_reduction,
        params: space.constraints.params_reduction,
        tolerance: space.constraints.tolerance,
    };
    let layout = Layout::new(net, &deps, groups, space.levels());
    let _ = check_space(&space, &layout, &target);
});
