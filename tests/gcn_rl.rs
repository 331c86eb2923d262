//! `gcn-rl` (Jiang et al., IJCAI 2022) on real images: a small CNN trained briefly on the
//! shipped Fashion-MNIST subset, per-layer channel graphs, agents trained by REINFORCE with
//! held-out accuracy after BatchNorm recalibration as the reward.

use burn::tensor::{Device, Tensor};
use common::root;
use sacp::channels::{Allocation, l1_scores};
use sacp::data::{self, DataSet, Split};
use sacp::deps::Dependencies;
use sacp::gcn_rl::{self, GcnRlConfig, Setup};
use sacp::importance::Method;
use sacp::ir::Network;
use sacp::pipeline::Workbench;
use sacp::prune::{Request, one_shot};
use sacp::train::{self, TrainConfig};
use sacp::weights::{self, Weights};
use std::ops::ControlFlow;

mod common;

/// Two conv stages of 16 and 32 channels and a classifier: small enough to evaluate a
/// pruning decision in a fraction of a second.
const SMALL_CNN: &str = r#"
arch = "graph"
input = [1, 28, 28]
layers = [
  { name = "conv1", op = "conv2d", inputs = ["input"], out_channels = 16, kernel = [3, 3], padding = [1, 1] },
  { name = "bn1", op = "batchnorm", inputs = ["conv1"] },
  { name = "relu1", op = "relu", inputs = ["bn1"] },
  { name = "pool1", op = "maxpool2d", inputs = ["relu1"], kernel = [2, 2] },
  { name = "conv2", op = "conv2d", inputs = ["pool1"], out_channels = 32, kernel = [3, 3], padding = [1, 1] },
  { name = "bn2", op = "batchnorm", inputs = ["conv2"] },
  { name = "relu2", op = "relu", inputs = ["bn2"] },
  { name = "pool2", op = "maxpool2d", inputs = ["relu2"], kernel = [2, 2] },
  { name = "conv3", op = "conv2d", inputs = ["pool2"], out_channels = 32, kernel = [3, 3], padding = [1, 1] },
  { name = "bn3", op = "batchnorm", inputs = ["conv3"] },
  { name = "relu3", op = "relu", inputs = ["bn3"] },
  { name = "gap", op = "global_avgpool", inputs = ["relu3"] },
  { name = "flatten", op = "flatten", inputs = ["gap"] },
  { name = "fc", op = "linear", inputs = ["flatten"], out_features = 10 },
  { name = "output", op = "output", inputs = ["fc"] },
]
"#;

struct Fixture {
    net: Network,
    weights: Weights,
    set: DataSet,
    train_split: Split,
    heldout: Split,
}

fn fixture() -> Fixture {
    let device = Device::flex();
    let net = sacp::spec::parse(SMALL_CNN, &root().join("small_cnn.toml")).unwrap().network;
    let set = data::open(
        &format!("fashion-mnist:{}", root().join("data/fashion-mnist-subset").display()),
        [1, 28, 28],
    )
    .unwrap();
    let config = TrainConfig {
        epochs: 1,
        lr: 0.05,
        heldout: 1000,
        ..TrainConfig::default()
    };
    let trained = train::train(&net, &weights::initialise(&net, 0), &set, &config, None, &device, None, &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let (train_split, mut heldout) = set.split(1000, 0);
    heldout.indices.truncate(256);
    Fixture {
        net,
        weights: trained.weights,
        set,
        train_split,
        heldout,
    }
}

/// The workbench the reward is measured on: the fixture's split (1000 held out, seed 0),
/// batches of 64.
fn workbench<'a>(f: &'a Fixture, deps: &'a Dependencies, device: &'a Device) -> Workbench<'a> {
    Workbench::new(&f.net, &f.weights, deps, &f.set, 1000, 64, 0, device)
}

fn probe(f: &Fixture, device: &Device) -> Tensor<4> {
    let positions: Vec<usize> = (0..64).collect();
    f.set.batcher().batch(&f.train_split, &positions, None, device).unwrap().images
}

#[test]
fn agents_learn_meet_the_target_and_repeat_for_a_seed() {
    let device = Device::flex();
    let f = fixture();
    let deps = Dependencies::analyse(&f.net);

    // Learning, on a reward the agents can learn: the share of the prunable channels' L1
    // mass a decision keeps. Without the magnitude prior the agents start indifferent
    // (every decision a uniform draw of the target's widths) and must find the filter norm
    // among their node features. (The real reward on this small network varies between
    // decisions of equal size by less than its noise on 256 images.)
    let l1 = l1_scores(&f.net, &f.weights, &deps);
    let total: f32 = l1.iter().flatten().sum();
    let kept_l1 = |keep: &[Vec<usize>]| -> Result<f64, String> {
        let kept: f32 = keep
            .iter()
            .zip(&l1)
            .map(|(k, s)| k.iter().filter_map(|&c| s.get(c)).sum::<f32>())
            .sum();
        Ok((kept / total) as f64)
    };
    let learn = GcnRlConfig {
        episodes: 32,
        actions: 8,
        magnitude_prior: 0.0,
        ..GcnRlConfig::default()
    };
    let setup = Setup {
        config: &learn,
        target: 0.5,
        accuracy: &kept_l1,
        progress: None,
    };
    let trained = gcn_rl::train(&f.net, &f.weights, &deps, probe(&f, &device), &setup, 0, &device).unwrap();
    let r = &trained.mean_rewards;
    assert_eq!(r.len(), learn.episodes);
    let quarter = r.len() / 4;
    let mean = |rewards: &[f64]| rewards.iter().sum::<f64>() / rewards.len() as f64;
    let (first, last) = (mean(&r[..quarter]), mean(&r[r.len() - quarter..]));
    eprintln!("mean reward per episode: {r:.4?}");
    assert!(
        last > first + 0.02,
        "mean reward must rise: first quarter of the episodes {first:.4}, last quarter {last:.4}"
    );
    // Every decision keeps the target's widths: the MAC reduction is the same every episode.
    let reductions = &trained.mean_reductions;
    assert!(
        reductions
            .iter()
            .all(|m| (m - reductions[0]).abs() < 1e-9 && (0.5..0.56).contains(m)),
        "{reductions:?}"
    );
    // The scores are keep probabilities: in [0, 1], summing over a group to the channels
    // uniform allocation keeps there.
    let uniform = sacp::channels::select(&f.net, &deps, &l1, 0.5, Allocation::Uniform, (0.9, 1)).unwrap();
    for ((g, s), keep) in deps.groups.iter().zip(&trained.scores).zip(&uniform) {
        if g.prunable() {
            let sum: f32 = s.iter().sum();
            assert!(s.iter().all(|p| (0.0..=1.0).contains(p)), "{}: {s:?}", g.name);
            assert!((sum - keep.len() as f32).abs() < 1e-3, "{}: {sum} for {} kept", g.name, keep.len());
        }
    }

    let bench = workbench(&f, &deps, &device);
    let eval = bench.keep_evaluator(&f.heldout, 3).unwrap();
    let accuracy = |keep: &[Vec<usize>]| Ok(sacp::pipeline::reward_accuracy(eval.accuracy(keep)));
    let config = GcnRlConfig {
        episodes: 8,
        actions: 4,
        ..GcnRlConfig::default()
    };
    let setup = Setup {
        config: &config,
        target: 0.5,
        accuracy: &accuracy,
        progress: None,
    };

    // One-shot pruning with the trained agents' scores meets the MAC target within 2%, and
    // the same seed gives the same channels.
    let request = || Request {
        net: &f.net,
        weights: &f.weights,
        method: Method::GcnRl,
        target: 0.5,
        allocation: Allocation::Global,
        max_ratio: 0.9,
        round_to: 1,
        seed: 0,
        device: &device,
        probe: Some(probe(&f, &device)),
        gcn: Default::default(),
        gcn_cache: None,
        gcn_rl: Some(setup),
    };
    let a = one_shot(&request()).unwrap();
    assert!(
        (0.5..=0.52).contains(&a.macs_reduction),
        "MAC reduction {} for a 0.5 target",
        a.macs_reduction
    );
    a.weights.check(&a.network, "pruned").unwrap();
    let b = one_shot(&request()).unwrap();
    assert_eq!(a.keep, b.keep, "two runs with one seed chose different channels");
    let mut other = request();
    other.seed = 1;
    assert_ne!(one_shot(&other).unwrap().keep, a.keep, "another seed should train other agents");
}

#[test]
fn sacp_prune_takes_gcn_rl_with_its_settings_file() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("small_cnn.toml");
    std::fs::write(&model, SMALL_CNN).unwrap();
    let weights_file = dir.path().join("small_cnn.safetensors");
    weights::save(&f.weights, &weights_file).unwrap();
    let data = format!("fashion-mnist:{}", root().join("data/fashion-mnist-subset").display());
    let settings = dir.path().join("rl.toml");
    let prune = |settings_text: &str| {
        std::fs::write(&settings, settings_text).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_sacp"))
            .args(["prune", model.to_str().unwrap(), "--weights", weights_file.to_str().unwrap()])
            .args([
                "--importance",
                "gcn-rl",
                "--macs-reduction",
                "0.4",
                "--data",
                &data,
                "--heldout",
                "1000",
            ])
            .args([
                "--allocation",
                "global",
                "--recalibrate",
                "5",
                "--gcn-rl-settings",
                settings.to_str().unwrap(),
            ])
            .args(["--out", dir.path().join("out").to_str().unwrap()])
            .output()
            .unwrap()
    };
    let bad = prune("[importance.gcn_rl]\nepisodes = 2\nactions = 1\n");
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("rl.toml:3") && stderr.contains("importance.gcn_rl.actions"),
        "{stderr}"
    );

    let run = prune("[importance.gcn_rl]\nepisodes = 3\nactions = 2\nheldout_batches = 2\n");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("out/prune.json")).unwrap()).unwrap();
    assert_eq!(report["importance"], "gcn-rl");
    let reduction = report["macs_reduction"].as_f64().unwrap();
    assert!((0.4..=0.42).contains(&reduction), "MAC reduction {reduction} for a 0.4 target");
    assert!(report["heldout_accuracy"].as_f64().unwrap() > 0.1);
}
