#!/usr/bin/env bash
# Candidates per minute and bytes on the wire when a search evaluates on `sacp serve`
# processes (issue 18), per-stage space, 10 recalibration + 8 held-out batches of 64 per
# candidate, l1 channel order, no ranking, no fine-tuning, seeded random weights:
#   benches/remote.sh            VGG-8 28x28 on the embedded Fashion-MNIST subset
#   benches/remote.sh resnet56   ResNet-56 32x32 on synthetic images (cost does not depend on them)
# Three set-ups in one run:
#   local:  no `[evaluate] devices` (the CPU, one candidate per thread, 2 threads)
#   1 cpu:  `devices = ["cpu"]` (one local worker)
#   2 ws:   two `sacp serve --devices cpu` on loopback (WebSocket), one worker each
# Each set-up runs budgets of 8 and 24 candidates; per-candidate cost = the difference / 16,
# which cancels the fixed costs (start-up, data upload). Bytes = loopback traffic
# (/proc/net/dev `lo`, both directions, TCP/IP headers included) over the search. Client CPU =
# user + system seconds of the searching process alone (with servers: what one client spends
# per candidate however many hosts evaluate).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-vgg8}" in
  vgg8) model=vgg8_fashion_mnist; dataset="fashion-mnist:$(pwd)/data/fashion-mnist-subset"; label=VGG-8 ;;
  resnet56) model=resnet56_cifar10; dataset="synthetic:2000"; label=ResNet-56 ;;
  *) echo "remote.sh: the network is vgg8 or resnet56, not '$1'" >&2; exit 2 ;;
esac
cargo test --no-run --locked >/dev/null 2>&1
sacp=$(pwd)/target/debug/sacp
work=$(mktemp -d)
stop_servers() { for f in "$work"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; rm -f "$f"; done; sleep 0.5; }
trap 'stop_servers; rm -rf "$work"' EXIT
export RUST_BACKTRACE=0 RUST_LOG=warn
"$sacp" init "models/$model.toml" --seed 0 --out "$work/w.safetensors" 2>/dev/null
echo "bench-token-$RANDOM$RANDOM" > "$work/token"

lo_bytes() { awk '/^ *lo:/ { print $2 + $10 }' /proc/net/dev; }

space() { # file budget devices-line
  cat > "$1" <<EOF
[model]
spec = "$(pwd)/models/$model.toml"
weights = "$work/w.safetensors"
[data]
dataset = "$dataset"
heldout = 1000
batch_size = 64
[space]
clustering = "per_stage"
rates = [0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75]
[constraints]
macs_reduction = 0.5
tolerance = 0.1
[search]
strategy = "random"
ranking = "none"
importance = "l1"
budget = $2
gcn_top_m = 8
threads = 2
[evaluate]
backend = "cpu"
recalibration_batches = 10
heldout_batches = 8
$3
token_file = "$work/token"
[finetune]
epochs = 0
[output]
folder = "$work/out"
EOF
}

start_server() { # log file -> prints the device
  "$sacp" serve --devices cpu --listen 127.0.0.1:0 --token-file "$work/token" > "$1" 2>/dev/null &
  echo $! > "$1.pid"
  for _ in $(seq 100); do
    grep -q 'ws://' "$1" 2>/dev/null && break
    sleep 0.1
  done
  echo "$(grep -o 'ws://[0-9.:]*' "$1" | head -1)#0"
}

run() { # label budget devices-line -> "seconds bytes client-cpu-seconds"
  space "$work/space.toml" "$2" "$3"
  rm -rf "$work/out"
  local b0 t0 t1 b1
  b0=$(lo_bytes); t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$work/cpu" "$sacp" search "$work/space.toml" --quiet > /dev/null
  t1=$(date +%s.%N); b1=$(lo_bytes)
  echo "$(echo "$t1 - $t0" | bc -l) $((b1 - b0)) $(awk '{ print $1 + $2 }' "$work/cpu")"
}

declare -A seconds bytes cpu
for setup in local "1 cpu" "2 ws"; do
  for budget in 8 24; do
    case "$setup" in
      local) devices="" ;;
      "1 cpu") devices='devices = ["cpu"]' ;;
      "2 ws")
        a=$(start_server "$work/a.log"); b=$(start_server "$work/b.log")
        devices="devices = [\"$a\", \"$b\"]" ;;
    esac
    read -r s by c < <(run "$setup" "$budget" "$devices")
    seconds["$setup,$budget"]=$s; bytes["$setup,$budget"]=$by; cpu["$setup,$budget"]=$c
    stop_servers
  done
done

weights_bytes=$(stat -c %s "$work/w.safetensors")
echo "$label weights: $weights_bytes bytes (unpruned); a candidate at 50% MACs carries about half"
printf '| set-up | seconds for 8 / 24 candidates | seconds per candidate | candidates/min | vs local | loopback bytes per candidate | bytes once per search | client CPU s per candidate |\n|---|---|---|---|---|---|---|---|\n'
base=""
for setup in local "1 cpu" "2 ws"; do
  s8=${seconds["$setup,8"]}; s24=${seconds["$setup,24"]}
  per=$(echo "($s24 - $s8) / 16" | bc -l)
  cpm=$(echo "60 / $per" | bc -l)
  [ -z "$base" ] && base=$cpm
  b8=${bytes["$setup,8"]}; b24=${bytes["$setup,24"]}
  bper=$(( (b24 - b8) / 16 )); bonce=$(( b8 - 8 * bper ))
  cper=$(echo "(${cpu["$setup,24"]} - ${cpu["$setup,8"]}) / 16" | bc -l)
  printf '| %s | %.1f / %.1f | %.2f | %.1f | %.2fx | %d | %d | %.2f |\n' "$setup" "$s8" "$s24" "$per" "$cpm" "$(echo "$cpm / $base" | bc -l)" "$bper" "$bonce" "$cper"
done
