//! The `sacp` binary: `inspect` (table and JSON), `init`, and errors without panics.

use std::process::Command;

fn sacp(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sacp"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

#[test]
fn inspect_json_has_layers_groups_and_totals() {
    let out = sacp(&["inspect", "models/resnet56_cifar10.toml", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers[0]["op"], "input");
    let conv = layers.iter().find(|l| l["name"] == "layer2.0.conv1").unwrap();
    assert_eq!((conv["in_channels"].as_u64(), conv["out_channels"].as_u64()), (Some(16), Some(32)));
    assert_eq!(conv["output_shape"], serde_json::json!([32, 16, 16]));
    assert_eq!(conv["params"], 16 * 32 * 9);
    let params: u64 = layers.iter().map(|l| l["params"].as_u64().unwrap()).sum();
    assert_eq!(v["totals"]["params"].as_u64(), Some(params));
    assert!((850_000..870_000).contains(&params), "{params}");
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 32);
    assert_eq!(groups.iter().filter(|g| g["prunable"] == false).count(), 2);
}

#[test]
fn inspect_table_and_init_weights_check() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.safetensors");
    let out = sacp(&[
        "init",
        "models/vgg8_fashion_mnist.toml",
        "--seed",
        "3",
        "--out",
        w.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = sacp(&["inspect", "models/vgg8_fashion_mnist.toml", "--weights", w.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("features.conv6") && text.contains("dependency groups") && text.contains("all shapes match"),
        "{text}"
    );
    // Weights of another network are refused with the tensor and shapes named.
    let out = sacp(&["inspect", "models/resnet20_cifar10.toml", "--weights", w.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("w.safetensors") && err.contains("conv1.weight"),
        "{err}"
    );
}

#[test]
fn bad_spec_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("m.toml");
    std::fs::write(&spec, "arch = \"resnet\"\ndepth = 21\nnum_classes = 10\ninput = [3, 32, 32]\n").unwrap();
    let out = sacp(&["inspect", spec.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("m.toml:2: `depth`") && !err.contains("panicked"), "{err}");
}
