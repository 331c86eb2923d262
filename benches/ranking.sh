#!/usr/bin/env bash
# How well does a ranking predict a candidate's held-out accuracy after BatchNorm
# recalibration? VGG-8 and ResNet-20 (input 1x28x28) trained one epoch on the full
# Fashion-MNIST (apt-get install dataset-fashion-mnist), per-stage and per-layer spaces at
# 50% and 75% of the MACs, every candidate evaluated once and cached in
# target/ranking_bench/ (about 15 minutes on 2 cores the first time, seconds after). Prints
# Spearman of the SACP similarity, the GCN predictor (prior and trained) and two proxies,
# and the regret at 4/8/16 evaluations. Built with the test profile (optimised
# dependencies), so no second burn build is needed. `--cached` analyses what is cached.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --no-run --locked >/dev/null 2>&1 || cargo build --examples
./target/debug/examples/ranking_bench "$@"
