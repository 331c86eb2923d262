//! Importance methods, the GCN encoder and one-shot pruning to a MAC target.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use sacp::channels::{Allocation, l1_scores};
use sacp::deps::Dependencies;
use sacp::gcn::{Encoder, GcnConfig, mask_of};
use sacp::gcn_rl::{GcnRlConfig, Setup};
use sacp::importance::ImportanceError;
use sacp::importance::Method;
use sacp::prune::{Request, one_shot};

#[test]
fn contrastive_loss_falls_and_similarity_ranks_l1_variants_above_random_ones() {
    let device = Device::flex();
    let net = common::zoo("resnet56_cifar10.toml", None);
    let weights = common::random_weights(&net, 3);
    let deps = Dependencies::analyse(&net);
    let encoder = Encoder::train(&net, &weights, &deps, &GcnConfig::default(), &device);
    let l = &encoder.losses;
    let (first, last) = (l[..10].iter().sum::<f32>() / 10.0, l[l.len() - 10..].iter().sum::<f32>() / 10.0);
    assert!(last < 0.7 * first, "contrastive loss must fall: {first} → {last}");

    // Held-out variants (another seed than training's): L1-pruned vs random at equal rates.
    let l1 = l1_scores(&net, &weights, &deps);
    let mut rng = StdRng::seed_from_u64(999);
    let (mut positives, mut negatives) = (Vec::new(), Vec::new());
    for _ in 0..40 {
        let (mut by_l1, mut random) = (Vec::new(), Vec::new());
        for (g, s) in deps.groups.iter().zip(&l1) {
            if !g.prunable() {
                by_l1.push((0..g.size()).collect::<Vec<_>>());
                random.push((0..g.size()).collect());
                continue;
            }
            let keep = ((1.0 - rng.random_range(0.1..0.8)) * g.size() as f64).round().max(1.0) as usize;
            let mut order: Vec<usize> = (0..g.size()).collect();
            order.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
            let mut top = order[..keep].to_vec();
            top.sort_unstable();
            order.shuffle(&mut rng);
            let mut any = order[..keep].to_vec();
            any.sort_unstable();
            by_l1.push(top);
            random.push(any);
        }
        positives.push(mask_of(&deps, &by_l1));
        negatives.push(mask_of(&deps, &random));
    }
    let (p, n) = (encoder.similarity(&positives), encoder.similarity(&negatives));
    let wins: f64 = p
        .iter()
        .map(|a| {
            n.iter()
                .map(|b| {
                    if a > b {
                        1.0
                    } else if a == b {
                        0.5
                    } else {
                        0.0
                    }
                })
                .sum::<f64>()
        })
        .sum();
    let auc = wins / (p.len() * n.len()) as f64;
    assert!(auc >= 0.9, "ROC-AUC of L1 vs random variants is {auc}");
}

fn request<'a>(
    net: &'a sacp::ir::Network,
    weights: &'a sacp::weights::Weights,
    device: &'a Device,
    method: Method,
    target: f64,
    allocation: Allocation,
) -> Request<'a> {
    let (x, shape) = common::random_input(net, 32, 1);
    Request {
        net,
        weights,
        method,
        target,
        allocation,
        max_ratio: 0.9,
        round_to: 1,
        seed: 4,
        device,
        probe: Some(Tensor::from_data(TensorData::new(x, shape), device)),
        gcn: GcnConfig {
            steps: 40,
            ..GcnConfig::default()
        },
        gcn_cache: None,
        gcn_rl: None,
    }
}

#[test]
fn every_method_meets_the_target_and_never_prunes_pinned_groups() {
    let device = Device::flex();
    for file in ["vgg8_fashion_mnist.toml", "resnet20_cifar10.toml"] {
        let net = common::zoo(file, None);
        let weights = common::random_weights(&net, 2);
        let deps = Dependencies::analyse(&net);
        // gcn-rl's reward on random weights: a stand-in for accuracy, the share of the L1
        // mass of the prunable channels a keep-set keeps (real rewards: tests/gcn_rl.rs).
        let l1 = l1_scores(&net, &weights, &deps);
        let total: f32 = l1.iter().flatten().sum();
        let kept_l1 = |keep: &[Vec<usize>]| -> Result<f64, String> {
            Ok((keep
                .iter()
                .zip(&l1)
                .map(|(k, s)| k.iter().map(|&c| s.get(c).copied().unwrap_or(0.0)).sum::<f32>())
                .sum::<f32>()
                / total) as f64)
        };
        let rl = GcnRlConfig {
            episodes: 6,
            ..GcnRlConfig::default()
        };
        for method in Method::ALL {
            for (target, allocation) in [(0.3, Allocation::Global), (0.5, Allocation::Uniform), (0.7, Allocation::Global)] {
                let mut request = request(&net, &weights, &device, method, target, allocation);
                request.gcn_rl = Some(Setup {
                    config: &rl,
                    target,
                    accuracy: &kept_l1,
                    progress: None,
                });
                let pruned = one_shot(&request).unwrap();
                assert!(
                    (pruned.macs_reduction - target).abs() <= 0.02,
                    "{file} {method:?} {allocation:?}: {} for target {target}",
                    pruned.macs_reduction
                );
                for (g, keep) in deps.groups.iter().zip(&pruned.keep) {
                    if !g.prunable() {
                        assert_eq!(keep.len(), g.size(), "{file} {method:?}: pinned group {} was pruned", g.name);
                    }
                    assert!(!keep.is_empty());
                }
                pruned.weights.check(&pruned.network, "pruned").unwrap();
            }
        }
    }
}

#[test]
fn importance_is_deterministic_for_a_seed() {
    let device = Device::flex();
    let net = common::zoo("resnet20_cifar10.toml", None);
    let weights = common::random_weights(&net, 2);
    for method in [Method::Gcn, Method::Random, Method::Similarity] {
        let a = one_shot(&request(&net, &weights, &device, method, 0.5, Allocation::Global))
            .unwrap()
            .keep;
        let b = one_shot(&request(&net, &weights, &device, method, 0.5, Allocation::Global))
            .unwrap()
            .keep;
        assert_eq!(a, b, "{method:?} differs between two runs with one seed");
    }
    let mut other = request(&net, &weights, &device, Method::Random, 0.5, Allocation::Global);
    other.seed = 5;
    assert_ne!(
        one_shot(&other).unwrap().keep,
        one_shot(&request(&net, &weights, &device, Method::Random, 0.5, Allocation::Global))
            .unwrap()
            .keep
    );
}

#[test]
fn unreachable_targets_and_missing_data_are_errors() {
    let device = Device::flex();
    let net = common::zoo("vgg8_fashion_mnist.toml", None);
    let weights = common::random_weights(&net, 2);
    let mut r = request(&net, &weights, &device, Method::L1, 0.95, Allocation::Global);
    r.max_ratio = 0.5;
    let e = one_shot(&r).err().unwrap().to_string();
    assert!(e.contains("out of reach") && e.contains("50%"), "{e}");
    let mut r = request(&net, &weights, &device, Method::Similarity, 0.5, Allocation::Global);
    r.probe = None;
    let e = one_shot(&r).err().unwrap().to_string();
    assert!(e.contains("needs data"), "{e}");
}

#[test]
fn prune_command_writes_a_model_that_inspect_and_eval_accept() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_sacp");
    let root = env!("CARGO_MANIFEST_DIR");
    let w = dir.path().join("w.safetensors");
    let run = |args: &[&str]| std::process::Command::new(bin).current_dir(root).args(args).output().unwrap();
    assert!(
        run(&["init", "models/vgg8_fashion_mnist.toml", "--out", w.to_str().unwrap()])
            .status
            .success()
    );
    let out = dir.path().join("p");
    let o = run(&[
        "prune",
        "models/vgg8_fashion_mnist.toml",
        "--weights",
        w.to_str().unwrap(),
        "--macs-reduction",
        "0.5",
        "--gcn-steps",
        "30",
        "--data",
        "synthetic:300",
        "--heldout",
        "50",
        "--recalibrate",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("prune.json")).unwrap()).unwrap();
    let r = report["macs_reduction"].as_f64().unwrap();
    assert!(
        (r - 0.5).abs() <= 0.02 && report["params_reduction"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!((0.0..=1.0).contains(&report["heldout_accuracy"].as_f64().unwrap()));
    // The encoder is cached beside the weights.
    assert!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().contains(".gcn-"))
    );
    let spec = out.join("pruned.toml");
    let o = run(&["inspect", spec.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["totals"]["macs"], report["pruned"]["macs"]);
    let o = run(&["eval", spec.to_str().unwrap(), "--data", "synthetic:300", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn gcn_rl_without_data_or_reward_is_refused_with_the_reason() {
    let device = Device::flex();
    let net = common::zoo("vgg8_fashion_mnist.toml", None);
    let weights = common::random_weights(&net, 2);
    let mut no_reward = request(&net, &weights, &device, Method::GcnRl, 0.5, Allocation::Uniform);
    assert!(matches!(one_shot(&no_reward), Err(ImportanceError::NeedsReward)));
    no_reward.probe = None;
    assert!(matches!(one_shot(&no_reward), Err(ImportanceError::NeedsData("gcn-rl"))));
}

#[test]
fn the_embedding_moves_with_the_rates() {
    let device = Device::flex();
    let net = common::zoo("vgg8_fashion_mnist.toml", None);
    let weights = common::random_weights(&net, 5);
    let deps = Dependencies::analyse(&net);
    let config = GcnConfig {
        steps: 40,
        ..GcnConfig::default()
    };
    let encoder = Encoder::train(&net, &weights, &deps, &config, &device);
    let l1 = l1_scores(&net, &weights, &deps);
    // The same L1 order at uniform rates 0.1 .. 0.8: the more is pruned, the further the
    // embedding must move from the original's.
    let rates = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8];
    let masks: Vec<Vec<f32>> = rates
        .iter()
        .map(|rate| {
            let widths: Vec<usize> = deps
                .groups
                .iter()
                .map(|g| {
                    if g.prunable() {
                        ((1.0 - rate) * g.size() as f64).round().max(1.0) as usize
                    } else {
                        g.size()
                    }
                })
                .collect();
            mask_of(&deps, &sacp::channels::keep_widths(&deps, &l1, &widths))
        })
        .collect();
    let similarity = encoder.similarity(&masks);
    assert!(similarity.iter().all(|s| s.is_finite()), "{similarity:?}");
    assert!(similarity.iter().any(|&s| s < 0.9999), "the embedding did not move: {similarity:?}");
    let spread = similarity.iter().copied().fold(f32::MIN, f32::max) - similarity.iter().copied().fold(f32::MAX, f32::min);
    assert!(spread > 0.01, "similarities within {spread}: {similarity:?}");
    assert!(
        similarity[0] > similarity[rates.len() - 1],
        "pruning 80% must move further than pruning 10%: {similarity:?}"
    );
}

#[test]
fn global_allocation_per_unit_cost_never_empties_a_group_and_meets_the_target() {
    for file in ["vgg16_cifar10.toml", "resnet56_cifar10.toml"] {
        let net = common::zoo(file, None);
        let deps = Dependencies::analyse(&net);
        // Scores on wildly different scales per group: a raw global ranking would empty the
        // groups whose scale is smallest.
        let mut rng = StdRng::seed_from_u64(6);
        let scores: Vec<Vec<f32>> = deps
            .groups
            .iter()
            .enumerate()
            .map(|(g, group)| {
                let scale = 10f32.powi((g % 5) as i32 - 2);
                (0..if group.prunable() { group.size() } else { 0 })
                    .map(|_| scale * rng.random::<f32>())
                    .collect()
            })
            .collect();
        for target in [0.3, 0.5, 0.7] {
            let keep = sacp::channels::select(&net, &deps, &scores, target, Allocation::Global, (1.0, 1)).unwrap();
            let reduction = sacp::channels::macs_reduction(&net, &deps, &keep);
            assert!(
                reduction >= target && reduction <= target + 0.02,
                "{file}: {reduction} for target {target}"
            );
            for (g, kept) in deps.groups.iter().zip(&keep) {
                assert!(!kept.is_empty(), "{file}: group {} emptied at target {target}", g.name);
                if !g.prunable() {
                    assert_eq!(kept.len(), g.size());
                }
            }
        }
    }
}

#[test]
fn rounded_widths_are_multiples_of_round_to_or_full() {
    let device = Device::flex();
    // ResNet-20's groups are 16, 32 and 64 wide: a 50% cut by l1 leaves widths such as 10
    // or 23 unless they are rounded.
    let net = common::zoo("resnet20_cifar10.toml", None);
    let weights = common::random_weights(&net, 2);
    for allocation in [Allocation::Uniform, Allocation::Global] {
        let widths = |round_to: usize| {
            let mut r = request(&net, &weights, &device, Method::L1, 0.5, allocation);
            r.round_to = round_to;
            let pruned = one_shot(&r).unwrap();
            assert!(
                pruned.macs_reduction >= 0.5 - 1e-9,
                "{allocation:?}, round_to {round_to}: {}",
                pruned.macs_reduction
            );
            let kept: Vec<usize> = pruned.keep.iter().map(Vec::len).collect();
            (kept, pruned.macs_reduction)
        };
        let base: Vec<usize> = Dependencies::analyse(&net).groups.iter().map(|g| g.size()).collect();
        let (free, _) = widths(1);
        assert!(
            free.iter().any(|w| w % 8 != 0),
            "{allocation:?}: {free:?} would make the check vacuous"
        );
        let (rounded, reduction) = widths(8);
        assert_eq!(base.len(), rounded.len());
        for (full, w) in base.iter().zip(&rounded) {
            assert!(w % 8 == 0 || w == full, "{allocation:?}: width {w} of a group of {full}");
        }
        println!(
            "{allocation:?}: round_to 8 removes {:.1}% of MACs, widths {rounded:?}",
            100.0 * reduction
        );
    }
}
