#!/usr/bin/env bash
# Search benchmarks: candidates evaluated per minute on 1 and 2 threads (VGG-8 28×28 and
# ResNet-56); `benches/search.sh grid`: the feasible grid of ResNet-20's 12-group per-layer
# space walked vs every point costed (examples/search_bench.rs says more). Ranking quality
# is benches/ranking.sh. Built with the test profile (optimised dependencies), so no second
# burn build is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --no-run --locked >/dev/null 2>&1 || cargo build --examples
./target/debug/examples/search_bench "${@:-throughput}"
