//! Malformed model specs are refused with the file, the line and the key.

use sacp::spec;
use std::path::Path;

fn error(text: &str) -> String {
    spec::parse(text, Path::new("models/bad.toml")).unwrap_err().to_string()
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let e = error("arch = \"resnet\"\ndepth = 20\nnum_classes = 10\ninput = [3, 32, 32]\nwidth_mult = 2\n");
    assert!(e.starts_with("models/bad.toml:5:"), "{e}");
    assert!(e.contains("width_mult"), "{e}");
}

#[test]
fn wrong_type_names_file_line_and_key() {
    let e = error("arch = \"resnet\"\ndepth = \"twenty\"\nnum_classes = 10\ninput = [3, 32, 32]\n");
    assert!(e.starts_with("models/bad.toml:2:"), "{e}");
    assert!(e.contains("invalid type"), "{e}");
}

#[test]
fn unknown_arch_names_file_line_and_valid_values() {
    let e = error("num_classes = 10\ninput = [3, 32, 32]\narch = \"densenet\"\n");
    assert!(e.starts_with("models/bad.toml:3: `arch`"), "{e}");
    assert!(e.contains("densenet") && e.contains("mobilenet_v2"), "{e}");
}

#[test]
fn bad_depth_and_missing_key() {
    let e = error("arch = \"vgg\"\ndepth = 12\nnum_classes = 10\ninput = [3, 32, 32]\n");
    assert!(e.starts_with("models/bad.toml:2: `depth`"), "{e}");
    let e = error("arch = \"vgg\"\ndepth = 16\ninput = [3, 32, 32]\n");
    assert!(e.contains("num_classes"), "{e}");
    let e = error("arch = \"vgg\"\ndepth = 16\nnum_classes = 10\n");
    assert!(e.contains("input"), "{e}");
}

#[test]
fn input_too_small_for_the_network_is_a_shape_error() {
    let e = error("arch = \"vgg\"\ndepth = 16\nnum_classes = 10\ninput = [3, 8, 8]\n");
    assert!(e.starts_with("models/bad.toml:4: `input`"), "{e}");
    assert!(e.contains("features.pool4"), "{e}");
}

#[test]
fn graph_spec_errors_name_the_layer_line() {
    let text = "arch = \"graph\"\ninput = [1, 8, 8]\n\n[[layers]]\nname = \"c\"\nop = \"conv2d\"\ninputs = [\"input\"]\nkernel = [3, 3]\n";
    let e = error(text);
    assert!(e.starts_with("models/bad.toml:6:") && e.contains("out_channels"), "{e}");
    let text = "arch = \"graph\"\ninput = [1, 8, 8]\n\n[[layers]]\nname = \"f\"\nop = \"linear\"\ninputs = [\"input\"]\nout_features = 3\n";
    let e = error(text);
    assert!(e.starts_with("models/bad.toml:6:") && e.contains("add a flatten layer"), "{e}");
    let text = "arch = \"graph\"\ninput = [1, 8, 8]\n\n[[layers]]\nname = \"o\"\nop = \"output\"\ninputs = [\"nowhere\"]\n";
    let e = error(text);
    assert!(e.contains("`nowhere` is not a layer defined before it"), "{e}");
}

#[test]
fn graph_spec_round_trips_a_zoo_network() {
    for file in ["resnet20_cifar10.toml", "mobilenetv2_imagenet.toml", "vgg8_fashion_mnist.toml"] {
        let original = spec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(file))
            .unwrap()
            .network;
        let text = spec::write_graph_spec(&original, Some("w.safetensors"));
        let back = spec::parse(&text, Path::new("out/pruned.toml")).unwrap();
        assert_eq!(back.weights.as_deref(), Some(Path::new("out/w.safetensors")));
        let net = back.network;
        assert_eq!(net.len(), original.len());
        for (a, b) in original.nodes().zip(net.nodes()) {
            assert_eq!(original.node(a), net.node(b));
            assert_eq!(original.shape(a), net.shape(b));
            assert_eq!(original.inputs(a), net.inputs(b));
        }
    }
}
