#!/usr/bin/env bash
# Seeds every fuzz target's corpus and runs each for SECONDS (default 600), JOBS at a time
# (second argument, default 2).
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and the nightly toolchain; run from anywhere.
# Crashes land in fuzz/artifacts/TARGET/; each run's last status line goes to fuzz/logs/.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-600}
root=..
# The sacp binary that makes the seeds: $SACP if set, else the test profile's build.
if [ -n "${SACP:-}" ]; then sacp=("$SACP"); else sacp=(cargo run --quiet --manifest-path "$root/Cargo.toml" --); fi
mkdir -p corpus/{onnx_import,search_space,model_spec,weights,idx,cifar} logs

# Seeds: real files of each kind, small enough to mutate quickly.
tmp=$(mktemp -d)
"${sacp[@]}" init seed_model.toml --out "$tmp/seed.safetensors"
"${sacp[@]}" export seed_model.toml --weights "$tmp/seed.safetensors" --out corpus/onnx_import/seed.onnx
cp "$tmp/seed.safetensors" corpus/weights/seed.safetensors
cp "$root"/search_spaces/*.toml corpus/search_space/
cp "$root"/models/*.toml seed_model.toml corpus/model_spec/
python3 - <<'PY'
import struct
images = struct.pack(">I3I", 0x0803, 2, 28, 28) + bytes(range(256)) * 6 + bytes(2 * 784 - 1536)
labels = struct.pack(">II", 0x0801, 2) + bytes([3, 7])
open("corpus/idx/seed", "wb").write(struct.pack(">H", len(images)) + images + labels)
open("corpus/cifar/seed10", "wb").write(b"\x00" + bytes([4]) + bytes(3072))
open("corpus/cifar/seed100", "wb").write(b"\x01" + bytes([1, 42]) + bytes(3072))
PY
rm -rf "$tmp"

targets=(onnx_import search_space model_spec weights idx cifar)
# Optimised, with debug assertions and overflow checks (-a): an overflow is a crash here.
# No sanitizer: sacp is safe Rust, the targets hunt panics, overflows and runaway allocations.
flags=(-O -a --sanitizer none)
cargo +nightly fuzz build "${flags[@]}"
run() {
  cargo +nightly fuzz run "${flags[@]}" "$1" -- -max_total_time="$seconds" -rss_limit_mb=4096 -print_final_stats=1 \
    >"logs/$1.log" 2>&1 && echo "$1: done" || echo "$1: FAILED (see fuzz/logs/$1.log)"
}
jobs=${2:-2}
for ((i = 0; i < ${#targets[@]}; i += jobs)); do
  for ((j = i; j < i + jobs && j < ${#targets[@]}; j++)); do run "${targets[j]}" & done
  wait
done
grep -h -E "stat::number_of_executed_units|Done [0-9]+ runs" logs/*.log || true
