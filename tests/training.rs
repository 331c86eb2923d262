//! Training: a resumed run ends exactly where an uninterrupted one does; the CLI writes
//! weights, metrics and a checkpoint; evaluation reports top-1/top-5/per class.

mod common;

use burn::tensor::Device;
use sacp::data;
use sacp::train::{self, Checkpointing, TrainConfig, TrainError};
use sacp::weights;
use std::ops::ControlFlow;
use std::process::Command;

fn config() -> TrainConfig {
    TrainConfig {
        epochs: 2,
        batch_size: 32,
        lr: 0.05,
        heldout: 64,
        seed: 5,
        ..TrainConfig::default()
    }
}

#[test]
fn stopped_after_epoch_one_and_resumed_equals_uninterrupted() {
    let device = Device::flex();
    let net = common::zoo("vgg8_fashion_mnist.toml", None);
    let initial = weights::initialise(&net, 1);
    let set = data::open("synthetic:320", [1, 28, 28]).unwrap();
    let dir = tempfile::tempdir().unwrap();

    let straight = Checkpointing {
        path: dir.path().join("straight.safetensors"),
        resume: false,
    };
    let uninterrupted = train::train(&net, &initial, &set, &config(), None, &device, Some(&straight), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();

    let killed = Checkpointing {
        path: dir.path().join("killed.safetensors"),
        resume: false,
    };
    let stop = train::train(&net, &initial, &set, &config(), None, &device, Some(&killed), &mut |r| {
        if r.epoch == 2 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    assert!(matches!(stop, Err(TrainError::Interrupted { epoch: 2 })));
    let (_, metadata) = weights::load_with_metadata(&killed.path).unwrap();
    assert_eq!(metadata["epoch"], "1");
    let resumed_ck = Checkpointing {
        path: killed.path.clone(),
        resume: true,
    };
    let mut steps = 0;
    let resumed = train::train(&net, &initial, &set, &config(), None, &device, Some(&resumed_ck), &mut |r| {
        assert_eq!(r.epoch, 2, "a resumed run starts at the epoch after its checkpoint");
        steps += 1;
        ControlFlow::Continue(())
    })
    .unwrap();
    assert!(steps > 0);
    assert_ne!(uninterrupted.weights, initial);
    for (name, t) in &uninterrupted.weights.tensors {
        let diff = common::max_abs_diff(&t.data, &resumed.weights.tensors[name].data);
        assert!(diff <= 1e-6, "{name} differs by {diff} after resuming");
    }
    // The synthetic classes are learnable: two epochs do better than chance by far.
    assert!(
        uninterrupted.heldout_accuracy > 0.5,
        "held-out accuracy {}",
        uninterrupted.heldout_accuracy
    );

    // A checkpoint of other settings is refused with the file named.
    let other = TrainConfig { lr: 0.1, ..config() };
    let e = train::train(&net, &initial, &set, &other, None, &device, Some(&resumed_ck), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("killed.safetensors") && e.contains("other training settings"), "{e}");
}

#[test]
fn train_and_eval_commands_write_weights_metrics_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let root = env!("CARGO_MANIFEST_DIR");
    let bin = env!("CARGO_BIN_EXE_sacp");
    let status = Command::new(bin)
        .current_dir(root)
        .args([
            "train",
            "models/vgg8_fashion_mnist.toml",
            "--data",
            "synthetic:256",
            "--epochs",
            "1",
            "--heldout",
            "32",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    for file in ["weights.safetensors", "metrics.json", "checkpoint.safetensors"] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let metrics: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["epochs"], 1);
    let acc = metrics["test_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));

    let eval = Command::new(bin)
        .current_dir(root)
        .args([
            "eval",
            "models/vgg8_fashion_mnist.toml",
            "--data",
            "synthetic:256",
            "--json",
            "--recalibrate",
            "2",
            "--weights",
        ])
        .arg(out.join("weights.safetensors"))
        .output()
        .unwrap();
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    let v: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    let (top1, top5) = (v["top1"].as_f64().unwrap(), v["top5"].as_f64().unwrap());
    assert!(top1 <= top5 && top5 <= 1.0, "{v}");
    assert_eq!(v["per_class"].as_array().unwrap().len(), 10);

    let bad = Command::new(bin)
        .current_dir(root)
        .args([
            "eval",
            "models/vgg8_fashion_mnist.toml",
            "--data",
            "cifar10:/nonexistent",
            "--weights",
        ])
        .arg(out.join("weights.safetensors"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("/nonexistent") && err.contains("data_batch_1.bin"),
        "{err}"
    );
}
