#!/usr/bin/env bash
# End to end, sacp's side of issue 14's comparison (Torch-Pruning's side:
# benches/torch_pruning_e2e.py, same network, weights, data and fine-tuning budget).
#
# On VGG-8 or ResNet-20 (--net; models/NET_fashion_mnist.toml) trained one epoch on the full
# Fashion-MNIST by benches/ranking.sh (target/ranking_bench/NET.safetensors), for every seed
# and MACs target:
#   search: `sacp search` with the defaults (GCN predictor, evolution, budget 32, top-m 8) on a
#           per-layer space, tolerance 0.01, fine-tuned by the search; rates 0/0.25/0.5/0.75
#           on VGG-8 (4^7 combinations), 0/0.5/0.75 on ResNet-20 (3^12; its seed-0 figures
#           were measured with these rates, when the whole grid was costed point by point);
#   l1:     `sacp prune --importance l1 --allocation uniform --recalibrate 10` then
#           `sacp train` with the same budget, then `sacp eval` on the test split.
# Fine-tuning everywhere: 1 epoch, lr 0.01 cosine, distillation from the unpruned network
# (T = 4, alpha = 0.5). One JSON line per run is appended to OUT/results.jsonl as soon as it
# ends; runs already there are skipped, so a killed invocation loses only the run in progress.
#
#   benches/e2e.sh [--net vgg8|resnet20] [--seeds 0,1,2] [--targets 0.5,0.75]
#                  [--methods search,l1] [--out DIR] [--stop-at HH:MM]  # UTC; no run starts after it
#   benches/e2e.sh --table [--net NET] [--out DIR]        # the table of what is there
# DIR defaults to target/e2e for VGG-8 and target/e2e-resnet20 for ResNet-20.
#
# The sacp binary is the test profile's (optimised dependencies); it is copied into OUT
# first so that a rebuild while this runs changes nothing. About 12 minutes per run on 2 cores
# (VGG-8).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seeds=0,1,2
targets=0.5,0.75
methods=search,l1
net=vgg8
out=""
stop_at=""
table_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --net) net=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --targets) targets=$2; shift 2 ;;
    --methods) methods=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --stop-at) stop_at=$2; shift 2 ;;
    --table) table_only=1; shift ;;
    *) echo "e2e.sh: unknown argument '$1' (see the comment at the top of $0)" >&2; exit 2 ;;
  esac
done
case "$net" in
  vgg8) out=${out:-target/e2e}; rates="0.0, 0.25, 0.5, 0.75" ;;
  resnet20) out=${out:-target/e2e-$net}; rates="0.0, 0.5, 0.75" ;;
  *) echo "e2e.sh: unknown --net '$net' (vgg8, resnet20)" >&2; exit 2 ;;
esac
mkdir -p "$out"
out=$(cd "$out" && pwd)
results=$out/results.jsonl
touch "$results"

print_table() {
  python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
groups = {}
for r in rows:
    groups.setdefault((r.get("net", "vgg8"), r["target"], r["method"]), []).append(r)
print("| network | MACs target | method | seeds | MACs removed (mean) | test top-1 per seed | mean | spread (max-min) |")
print("|---|---|---|---|---|---|---|---|")
for (net, target, method), rs in sorted(groups.items()):
    rs.sort(key=lambda r: r["seed"])
    accs = [100 * r["test_accuracy"] for r in rs]
    macs = statistics.mean(100 * r["macs_reduction"] for r in rs)
    per_seed = " / ".join(f"{a:.2f}" for a in accs)
    print(f"| {net} | {target} | {method} | {','.join(str(r['seed']) for r in rs)} | {macs:.1f}% "
          f"| {per_seed} | {statistics.mean(accs):.2f} | {max(accs) - min(accs):.2f} |")
PY
}
if [ "$table_only" = 1 ]; then print_table; exit 0; fi

weights=$root/target/ranking_bench/$net.safetensors
model=$root/models/${net}_fashion_mnist.toml
data=fashion-mnist:/usr/share/datasets/fashion-mnist
[ -f "$weights" ] || { echo "e2e.sh: $weights is missing: run benches/ranking.sh first (it trains and caches it)" >&2; exit 1; }
[ -d /usr/share/datasets/fashion-mnist ] || { echo "e2e.sh: /usr/share/datasets/fashion-mnist is missing (apt-get install dataset-fashion-mnist)" >&2; exit 1; }
cargo test --no-run --locked >/dev/null 2>&1
cp target/debug/sacp "$out/sacp"
sacp=$out/sacp
export RUST_BACKTRACE=0

already_done() { grep -q "\"target\": $1, \"method\": \"$2\", \"seed\": $3," "$results"; }
past_stop() {
  [ -n "$stop_at" ] && [ "$(date -u +%H:%M)" \> "$stop_at" ]
}
record() { # target method seed dir eval-json-or-report
  python3 - "$net" "$@" >> "$results" <<'PY'
import json, sys
net, target, method, seed, folder, source = sys.argv[1:7]
if method == "search":
    rep = json.load(open(source))
    acc, macs = rep["pruned"]["test_accuracy"], rep["macs_reduction"]
else:
    acc = json.load(open(source))["top1"]
    macs = json.load(open(folder + "/prune/prune.json"))["macs_reduction"]
print(json.dumps({"target": float(target), "method": method, "seed": int(seed),
                  "test_accuracy": acc, "macs_reduction": macs, "folder": folder, "net": net}))
PY
}

for seed in ${seeds//,/ }; do
  for target in ${targets//,/ }; do
    for method in ${methods//,/ }; do
      already_done "$target" "$method" "$seed" && continue
      if past_stop; then echo "e2e.sh: past $stop_at UTC, stopping"; print_table; exit 0; fi
      dir=$out/$method-$target-seed$seed
      rm -rf "$dir"
      mkdir -p "$dir"
      echo "$(date -u +%T) $method at $target, seed $seed -> $dir"
      case "$method" in
        search)
          cat > "$dir/space.toml" <<EOF
[model]
spec = "$model"
weights = "$weights"

[data]
dataset = "$data"
heldout = 5000
batch_size = 64

[space]
clustering = "per_layer"
rates = [$rates]
max_combinations = 1000000

[constraints]
macs_reduction = $target
tolerance = 0.01

[search]
strategy = "evolution"
budget = 32
gcn_top_m = 8
pool = 256
seed = $seed

[evaluate]
backend = "cpu"
recalibration_batches = 10
heldout_batches = 20

[finetune]
epochs = 1
lr = 0.01
distillation = true

[output]
folder = "$dir/run"
EOF
          "$sacp" search "$dir/space.toml" > "$dir/log.txt" 2>&1
          record "$target" search "$seed" "$dir" "$dir/run/report.json"
          ;;
        l1)
          "$sacp" prune "$model" --weights "$weights" --importance l1 --allocation uniform \
            --macs-reduction "$target" --recalibrate 10 --data "$data" --heldout 5000 \
            --seed "$seed" --out "$dir/prune" > "$dir/log.txt" 2>&1
          "$sacp" train "$dir/prune/pruned.toml" --weights "$dir/prune/pruned.safetensors" \
            --data "$data" --epochs 1 --lr 0.01 --teacher "$model" --teacher-weights "$weights" \
            --temperature 4 --alpha 0.5 --heldout 5000 --seed "$seed" --out "$dir/train" >> "$dir/log.txt" 2>&1
          "$sacp" eval "$dir/prune/pruned.toml" --weights "$dir/train/weights.safetensors" \
            --data "$data" --json > "$dir/eval.json"
          record "$target" l1 "$seed" "$dir" "$dir/eval.json"
          ;;
        *) echo "e2e.sh: unknown method '$method' (search, l1)" >&2; exit 2 ;;
      esac
    done
  done
done
print_table
