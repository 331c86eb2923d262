//! Candidate evaluation with its images uploaded once, BatchNorm folded and accuracy
//! counted on the device gives what the plain path gives: a fresh network recalibrated on
//! freshly decoded batches, its weights read back, evaluated unfolded with the host's argmax.

mod common;

use burn::tensor::Device;
use common::{max_abs_diff, random_keep, random_weights, root, zoo};
use rand::SeedableRng;
use rand::rngs::StdRng;
use sacp::deps::Dependencies;
use sacp::exec::Executable;
use sacp::search::Score;
use sacp::{data, surgery, train};

#[test]
fn resident_folded_evaluation_equals_the_plain_one() {
    let device = Device::flex();
    let net = zoo("vgg8_fashion_mnist.toml", None);
    let weights = random_weights(&net, 5);
    let deps = Dependencies::analyse(&net);
    let set = data::open(
        &format!("fashion-mnist:{}/data/fashion-mnist-subset", root().display()),
        [1, 28, 28],
    )
    .unwrap();
    let bench = sacp::pipeline::Workbench::new(&net, &weights, &deps, &set, 500, 64, 3, &device);
    let heldout = bench.heldout_batches(4);
    let evaluator = bench.keep_evaluator(&heldout, 5).unwrap();
    let mut rng = StdRng::seed_from_u64(8);
    let mut accuracies = Vec::new();
    for _ in 0..6 {
        let keep = random_keep(&deps, &mut rng);
        let Score::Accuracy(resident) = evaluator.accuracy(&keep) else {
            panic!("finite weights give finite logits")
        };
        // The plain path, step by step.
        let (pruned, pruned_weights) = surgery::prune(&net, &weights, &deps, &keep).unwrap();
        let exec = Executable::new(&pruned, &pruned_weights, &device);
        train::recalibrate(
            &exec,
            &train::recalibration_batches(&bench.train, &bench.batcher, 5, 64, 3, &device).unwrap(),
        );
        let recalibrated = exec.weights();
        let plain = train::evaluate(&exec, &heldout, &bench.batcher, 64, 10, &device).unwrap();
        assert_eq!(plain.non_finite, 0);
        assert!(
            (resident - plain.top1).abs() <= 1e-6,
            "resident, folded, on-device {resident} vs plain {}",
            plain.top1
        );
        // The recalibrated statistics are the same too.
        let (_, resident_weights) = evaluator.pruned(&keep);
        for (name, tensor) in &recalibrated.tensors {
            let diff = max_abs_diff(&tensor.data, &resident_weights.tensors[name].data);
            assert!(diff <= 1e-6, "{name}: {diff}");
        }
        accuracies.push(resident);
    }
    // The keep-sets differ, and so do their accuracies: the comparison is not vacuous.
    assert!(accuracies.iter().any(|&a| (a - accuracies[0]).abs() > 1e-3), "{accuracies:?}");
}
