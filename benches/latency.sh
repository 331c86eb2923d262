#!/usr/bin/env bash
# Latency targets (issue 17's figures). First how well the lookup table predicts this
# machine (examples/latency_table.rs: VGG-16 and ResNet-56 pruned at random levels, batch 8,
# median error of ten), then `sacp search` on the zoo's VGG-16 and ResNet-56
# (32×32, seeded random weights, synthetic images: latency does not depend on either) with
# `latency_reduction = 0.5` (a 2× speed-up) at batch 32 on the CPU backend, once with
# `round_to = 1` and once with `round_to = 8`. Prints, per run, the MACs removed, the
# predicted and measured speed-up of the winner, the lookup table's median error and the
# wall time. Built with the test profile (optimised dependencies), like the other benches.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --no-run --locked >/dev/null 2>&1
./target/debug/examples/latency_table
sacp=target/debug/sacp
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for model in vgg16_cifar10 resnet56_cifar10; do
  "$sacp" init "models/$model.toml" --out "$work/$model.safetensors"
  for round_to in 1 8; do
    space="$work/$model-r$round_to.toml"
    cat >"$space" <<EOF
[model]
spec = "$PWD/models/$model.toml"
weights = "$work/$model.safetensors"

[data]
dataset = "synthetic:2000"
heldout = 256

[space]
clustering = "per_stage"
rates = [0.0, 0.2, 0.35, 0.5, 0.65]
max_combinations = 20000
round_to = $round_to

[constraints]
latency_reduction = 0.5
latency_batch = 32
tolerance = 0.05

[search]
strategy = "evolution"
budget = 16
gcn_top_m = 8
ranking = "none"
importance = "l1"

[evaluate]
backend = "cpu"
recalibration_batches = 2
heldout_batches = 2

[finetune]
epochs = 0

[output]
folder = "$work/out-$model-r$round_to"
EOF
    start=$(date +%s)
    "$sacp" search "$space" --quiet --json >"$work/report.json"
    seconds=$(( $(date +%s) - start ))
    python3 - "$work/report.json" "$model" "$round_to" "$seconds" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
l = r["latency"]
errors = sorted(abs(c["predicted_ms"] - c["measured_ms"]) / c["measured_ms"] for c in l["candidates"])
print(f"RESULT {sys.argv[2]} round_to={sys.argv[3]}: MACs removed {100 * r['macs_reduction']:.1f}%, "
      f"predicted speed-up {l['base_predicted_ms'] / l['winner_predicted_ms']:.2f}x, "
      f"measured {l['base_measured_ms'] / l['winner_measured_ms']:.2f}x "
      f"({l['base_measured_ms']:.1f} -> {l['winner_measured_ms']:.1f} ms per batch of {l['batch']}), "
      f"{l['measured_feasible']}/{len(l['candidates'])} candidates meet the target measured, "
      f"median prediction error {100 * errors[len(errors) // 2]:.1f}%, {sys.argv[4]} s")
PY
  done
done
