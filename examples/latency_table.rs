//! How well the latency table predicts this machine (run by `benches/latency.sh`): for the
//! zoo's VGG-16 and ResNet-56 (32×32), the table of one rate group per prunable channel
//! group at levels 0–75% is timed on the CPU backend at batch 8, then ten networks pruned at
//! random levels are predicted and measured (the smaller of two medians). Prints each
//! prediction and a line `RESULT latency-table NETWORK MEDIAN_ERROR_PERCENT TABLE_SECONDS`.
//!
//! `cargo run --example latency_table`

use rand::{RngExt, SeedableRng};
use sacp::deps::Dependencies;
use sacp::pipeline::{build_table, latency_ms, network_at};
use sacp::search::candidates::Layout;
use sacp::search::clusters;
use sacp::search::space::Clustering;
use sacp::{spec, weights};
use std::path::Path;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let device = burn::tensor::Device::flex();
    let batch = 8;
    for name in ["vgg16_cifar10", "resnet56_cifar10"] {
        let net = spec::load(&root.join("models").join(format!("{name}.toml")))?.network;
        let deps = Dependencies::analyse(&net);
        let groups = clusters::clustered(&net, &deps.prunable().collect::<Vec<_>>(), Clustering::PerLayer);
        let layout = Layout::new(&net, &deps, groups, vec![0.0, 0.25, 0.5, 0.75]);
        let started = Instant::now();
        let table = build_table(&layout, batch, &device, None, &indicatif::ProgressBar::hidden());
        let seconds = started.elapsed().as_secs_f64();
        println!("{name}: calibration {:.3} × layer sum + {:.2} ms", table.scale, table.offset_ms);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut errors: Vec<f64> = (0..10)
            .map(|_| {
                let rates: Vec<f64> = (0..layout.rate_groups.len())
                    .map(|_| layout.levels[rng.random_range(0..layout.levels.len())])
                    .collect();
                let pruned = network_at(&layout, &rates);
                let predicted = table.predict_ms(&pruned);
                let w = weights::initialise(&pruned, 1);
                let measured = latency_ms(&pruned, &w, batch, &device).min(latency_ms(&pruned, &w, batch, &device));
                let error = (predicted - measured).abs() / measured;
                println!(
                    "  predicted {predicted:8.2} ms, measured {measured:8.2} ms, error {:5.1}%",
                    100.0 * error
                );
                error
            })
            .collect();
        errors.sort_by(f64::total_cmp);
        let median = errors[errors.len() / 2];
        println!("RESULT latency-table {name} {:.1} {seconds:.0}", 100.0 * median);
    }
    Ok(())
}
