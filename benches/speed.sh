#!/usr/bin/env bash
# sacp against PyTorch on this machine, both sides in one run (issue 16): candidate
# evaluation (prune, 10 BatchNorm-recalibration batches, 8 held-out batches of 64; PyTorch
# side pruned by Torch-Pruning) and training (batch 64, SGD), VGG-8 28x28 and ResNet-56
# 32x32, 1 and 2 threads; prints each figure and sacp / PyTorch as a ratio. The two sides
# run interleaved, network by network (sacp's candidates, PyTorch's, sacp's training,
# PyTorch's), so that a slower spell of a shared machine falls on both; ROUNDS=N (default 1)
# repeats the whole comparison and prints a table per round.
# Needs `pip install torch torch-pruning`. Built with the test profile (optimised
# dependencies), so no second burn build is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --no-run --locked >/dev/null 2>&1 || cargo build --examples
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for round in $(seq "${ROUNDS:-1}"); do
    : >"$results"
    for net in vgg8 resnet56; do
        counts=$([ "$net" = vgg8 ] && echo "8 0" || echo "0 4")
        ./target/debug/examples/search_bench throughput "$net" | tee /dev/stderr | sed -n 's/^RESULT /sacp /p' >>"$results"
        # shellcheck disable=SC2086 # the two counts, split on purpose
        python3 benches/torch_candidates.py $counts | sed -n 's/^RESULT /pytorch /p' >>"$results"
        ./target/debug/examples/train_throughput "$net" | sed -n 's/^RESULT /sacp /p' >>"$results"
        python3 benches/torch_train_throughput.py "$net" | sed -n 's/^RESULT /pytorch /p' >>"$results"
    done
    echo "round $round"
    python3 - "$results" <<'PY'
import sys
rows = [line.split() for line in open(sys.argv[1])]
value = {(side, metric, net, threads): float(v) for side, metric, net, threads, v in rows}
units = {"candidates": "candidates/min", "train": "images/s"}
print("| what | network | threads | sacp | PyTorch | sacp / PyTorch |")
print("|---|---|---|---|---|---|")
for (side, metric, net, threads), ours in sorted(value.items(), key=lambda kv: (kv[0][1], kv[0][2] != "vgg8", kv[0][3])):
    if side != "sacp":
        continue
    theirs = value.get(("pytorch", metric, net, threads))
    ratio = f"{ours / theirs:.2f}x" if theirs else "-"
    print(f"| {metric} ({units[metric]}) | {net} | {threads} | {ours:.1f} | {theirs or float('nan'):.1f} | {ratio} |")
PY
done
