//! Fuzzes safetensors weights against a model: any bytes give weights that fit the seed
//! model (`fuzz/seed_model.toml`) or an error naming the tensor, never a panic; weights
//! that fit are finite and can be cut to half width.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static NETWORK: LazyLock<sacp::ir::Network> = LazyLock::new(|| {
    sacp::spec::parse(include_str!("../seed_model.toml"), std::path::Path::new("seed_model.toml"))
        .expect("the seed model reads")
        .network
});

fuzz_target!(|data: &[u8]| {
    let Ok((weights, _)) = sacp::weights::from_bytes(data, "fuzz.safetensors") else { return };
    let net = &*NETWORK;
    if weights.check(net, "fuzz.safetensors").is_ok() {
        assert!(weights.tensors.values().all(|t| t.data.iter().all(|v| v.is_finite())));
        let deps = sacp::deps::Dependencies::analyse(net);
        let keep: Vec<Vec<usize>> = deps
            .groups
            .iter()
            .map(|g| if g.prunable() { (0..g.size().div_ceil(2)).collect() } else { (0..g.size()).collect() })
            .collect();
        sacp::surgery::prune(net, &weights, &deps, &keep).expect("checked weights can be pruned");
    }
});
