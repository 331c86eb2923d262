#!/usr/bin/env bash
# Importance methods compared on the real Fashion-MNIST network (VGG-8, full data set from
# apt-get install dataset-fashion-mnist): gcn-rl / gcn / l1 / similarity / random at 50% and
# 70% of the MACs removed; held-out accuracy after BatchNorm recalibration and after the
# same short fine-tune (FINE_TUNE_STEPS, default 100 steps of 64 images), and the seconds
# each method spends scoring. Built with the test profile (optimised dependencies), so no
# second burn build is needed. Arguments go to the example: [STEPS] [METHODS] [TARGETS].
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --no-run --locked >/dev/null 2>&1 || cargo build --examples
./target/debug/examples/importance_table "$@"
