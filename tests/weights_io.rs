//! Weight files: safetensors round trip, atomic writes, clear errors.

mod common;

use sacp::weights;

#[test]
fn save_and_load_round_trip_exactly() {
    let net = common::zoo("resnet20_cifar10.toml", None);
    let w = common::random_weights(&net, 5);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/w.safetensors");
    weights::save(&w, &path).unwrap();
    let back = weights::load(&path).unwrap();
    assert_eq!(back, w);
    back.check(&net, "w").unwrap();
    // Only the final file is left: no temporary files behind.
    let entries: Vec<_> = std::fs::read_dir(dir.path().join("sub")).unwrap().collect();
    assert_eq!(entries.len(), 1);
}

#[test]
fn initialisation_is_seeded_and_kaiming_scaled() {
    let net = common::zoo("vgg8_fashion_mnist.toml", None);
    let a = weights::initialise(&net, 1);
    assert_eq!(a, weights::initialise(&net, 1));
    assert_ne!(a, weights::initialise(&net, 2));
    assert_eq!(a.parameter_count(), net.total_cost().params);
    // conv6: 128 inputs × 3×3, He-normal std √(2/1152) ≈ 0.0417.
    let t = a.get("features.conv6.weight").unwrap();
    let var = t.data.iter().map(|v| v * v).sum::<f32>() / t.data.len() as f32;
    assert!((var.sqrt() - (2.0f32 / 1152.0).sqrt()).abs() < 0.003, "std {}", var.sqrt());
}

#[test]
fn wrong_shapes_missing_tensors_and_garbage_are_named() {
    let net = common::zoo("vgg8_fashion_mnist.toml", None);
    let mut w = weights::initialise(&net, 1);
    w.tensors.get_mut("features.bn2.running_mean").unwrap().shape = vec![31];
    let e = w.check(&net, "x.safetensors").unwrap_err().to_string();
    assert!(
        e.contains("x.safetensors") && e.contains("features.bn2.running_mean") && e.contains("[32]"),
        "{e}"
    );
    w.tensors.remove("features.bn2.running_mean");
    let e = w.check(&net, "x.safetensors").unwrap_err().to_string();
    assert!(e.contains("missing"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    std::fs::write(&path, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json").unwrap();
    let e = weights::load(&path).unwrap_err().to_string();
    assert!(e.contains("bad.safetensors") && e.contains("not a valid weights file"), "{e}");
    let e = weights::load(&dir.path().join("absent.safetensors")).unwrap_err().to_string();
    assert!(e.contains("absent.safetensors"), "{e}");
}
