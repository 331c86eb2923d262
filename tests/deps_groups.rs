//! Dependency groups on the zoo's residual and depthwise networks.

use sacp::deps::{Dependencies, Pin};
use sacp::ir::Op;
use sacp::spec;
use std::path::Path;

fn load(file: &str) -> sacp::ir::Network {
    spec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(file))
        .unwrap()
        .network
}

#[test]
fn resnet56_has_one_group_per_stage_and_one_per_inner_conv() {
    let net = load("resnet56_cifar10.toml");
    let deps = Dependencies::analyse(&net);
    let name = |n| net.node(n).name.clone();
    // Inner convs: conv1 of each of the 27 blocks owns a group of its own.
    let inner: Vec<_> = deps
        .prunable()
        .filter(|g| g.name.ends_with(".conv1") && g.name.starts_with("layer"))
        .collect();
    assert_eq!(inner.len(), 27);
    for g in &inner {
        let members: Vec<String> = g.nodes.iter().map(|&n| name(n)).collect();
        let block = g.name.trim_end_matches(".conv1");
        assert_eq!(
            members,
            [format!("{block}.conv1"), format!("{block}.bn1"), format!("{block}.relu1")]
        );
        let stage: usize = block[5..6].parse().unwrap();
        assert_eq!(g.size(), 16 << (stage - 1));
    }
    // Residual groups: every add of a stage is in the group that stage starts; option-A
    // shortcuts carry a stage's channels into the middle of the next stage's.
    let residual: Vec<_> = deps
        .prunable()
        .filter(|g| g.nodes.iter().any(|&n| matches!(net.node(n).op, Op::Add)))
        .collect();
    assert_eq!(residual.len(), 3);
    let starts: Vec<&str> = residual.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(starts, ["conv1", "layer2.0.conv2", "layer3.0.conv2"]);
    assert_eq!(residual.iter().map(|g| g.size()).collect::<Vec<_>>(), [16, 16, 32]);
    for (stage, g) in residual.iter().enumerate() {
        for later in stage + 1..=3 {
            let adds = g
                .nodes
                .iter()
                .filter(|&&n| matches!(net.node(n).op, Op::Add) && name(n).starts_with(&format!("layer{later}.")))
                .count();
            assert_eq!(adds, 9, "group {} must tie all 9 adds of stage {later}", g.name);
        }
    }
    // Input and classifier output are pinned; nothing else is.
    let pinned: Vec<_> = deps.groups.iter().filter_map(|g| g.pinned).collect();
    assert_eq!(pinned, [Pin::NetworkInput, Pin::NetworkOutput]);
    assert_eq!(deps.groups.len(), 27 + 3 + 2);
}

#[test]
fn mobilenet_v2_depthwise_convs_share_their_expansion_group() {
    let net = load("mobilenetv2_imagenet.toml");
    let deps = Dependencies::analyse(&net);
    let mut depthwise = 0;
    for node in net.nodes() {
        let in_channels = net.input_shapes(node).first().map_or(0, |s| s.channels());
        if !net.node(node).op.is_depthwise(in_channels) {
            continue;
        }
        depthwise += 1;
        let producer = net.inputs(net.inputs(net.inputs(node)[0])[0])[0];
        let group = deps.groups.iter().find(|g| g.nodes.contains(&node)).unwrap();
        assert!(group.prunable(), "depthwise group of {} must be prunable", net.node(node).name);
        assert!(
            group.nodes.contains(&producer),
            "{} must share a group with {}",
            net.node(node).name,
            net.node(producer).name
        );
        assert_eq!(group.size(), in_channels);
    }
    assert_eq!(depthwise, 17);
}

#[test]
fn flatten_to_linear_costs_every_spatial_position() {
    let net = load("vgg8_fashion_mnist.toml");
    let deps = Dependencies::analyse(&net);
    let last = deps.groups.iter().find(|g| g.name == "features.conv6").unwrap();
    // One channel of conv6: its 3×3 kernels over 128 inputs, bias, BN (2), and 3·3 = 9
    // columns of the 256-wide linear layer; MACs: the conv at 7×7 plus those 9·256.
    assert_eq!(last.cost_per_channel.params, (128 * 9 + 1) + 2 + 9 * 256);
    assert_eq!(last.cost_per_channel.macs, 128 * 9 * 49 + 9 * 256);
}

#[test]
fn grouped_convs_lose_as_many_channels_in_every_group_across_a_shuffle() {
    let net = sacp::spec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/shufflenet_unit.toml"))
        .unwrap()
        .network;
    let deps = Dependencies::analyse(&net);
    let node = |name: &str| net.nodes().find(|&n| net.node(n).name == name).unwrap();
    let bottleneck = deps.groups.iter().find(|g| g.name == "gconv1").unwrap();
    // Tying the same position in every group would chain all 16 bottleneck channels into
    // one (positions b of gconv1's groups land in one group of gconv2 after the shuffle):
    // balanced sets of one channel per group of each conv keep 4 prunable channels.
    assert_eq!(bottleneck.size(), 4);
    let residual = deps.groups.iter().find(|g| g.name == "stem").unwrap();
    assert_eq!(residual.size(), 2);
    // Every class holds as many units in each group of each grouped conv's input and output.
    let blocks = |layer: &str, width: usize, class: &[sacp::deps::Unit]| {
        let mut counts = [0usize; 4];
        for unit in class.iter().filter(|u| u.node == node(layer)) {
            counts[unit.channel / width] += 1;
        }
        counts
    };
    for group in [bottleneck, residual] {
        for class in &group.channels {
            for (layer, width) in [("stem", 2), ("gconv1", 4), ("bn2", 4), ("gconv2", 2)] {
                let counts = blocks(layer, width, class);
                assert!(counts.iter().all(|&n| n == counts[0]), "{}: {layer} blocks {counts:?}", group.name);
            }
        }
    }
    for class in &bottleneck.channels {
        assert_eq!(blocks("gconv1", 4, class), [1, 1, 1, 1]);
        assert_eq!(blocks("bn2", 4, class), [1, 1, 1, 1]);
    }
}
