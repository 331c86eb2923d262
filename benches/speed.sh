#!/usr/bin/env bash
# sacp against PyTorch on this machine, both sides in one run (issue 16): candidate
# evaluation (prune, 10 BatchNorm-recalibration batches, 8 held-out batches of 64; PyTorch
# side pruned by Torch-Pruning) and training (batch 64, SGD), VGG-8 28x28 and ResNet-56
# 32x32, 1 and 2 threads; prints each figure and sacp / PyTorch as a ratio.
# Needs `pip install torch torch-pruning`. Built with the test profile (optimised
# dependencies), so no second burn build is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --no-run --locked >/dev/null 2>&1 || cargo build --examples
results=$(mktemp)
trap 'rm -f "$results"' EXIT
./target/debug/examples/search_bench throughput | tee /dev/stderr | sed -n 's/^RESULT /sacp /p' >>"$results"
./target/debug/examples/train_throughput | sed -n 's/^RESULT /sacp /p' >>"$results"
python3 benches/torch_candidates.py | sed -n 's/^RESULT /pytorch /p' >>"$results"
python3 benches/torch_train_throughput.py | sed -n 's/^RESULT /pytorch /p' >>"$results"
python3 - "$results" <<'PY'
import sys
rows = [line.split() for line in open(sys.argv[1])]
value = {(side, metric, net, threads): float(v) for side, metric, net, threads, v in rows}
units = {"candidates": "candidates/min", "train": "images/s"}
print("| what | network | threads | sacp | PyTorch | sacp / PyTorch |")
print("|---|---|---|---|---|---|")
for (side, metric, net, threads), ours in value.items():
    if side != "sacp":
        continue
    theirs = value.get(("pytorch", metric, net, threads))
    ratio = f"{ours / theirs:.2f}x" if theirs else "-"
    print(f"| {metric} ({units[metric]}) | {net} | {threads} | {ours:.1f} | {theirs or float('nan'):.1f} | {ratio} |")
PY
