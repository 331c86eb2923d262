#!/usr/bin/env bash
# Training throughput of sacp (burn-flex) and PyTorch CPU on the same machine, same run.
# Needs `pip install torch`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --example train_throughput
python3 benches/torch_train_throughput.py
