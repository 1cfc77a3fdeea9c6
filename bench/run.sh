#!/usr/bin/env bash
# Builds Corral and the benchmark harness in release mode, then runs one benchmark:
#   bash bench/run.sh [foundation] [ARGS]  authenticated Corral GET vs a bare axum "hello JSON" server
#   bash bench/run.sh proxy [ARGS]         a service instance through Corral's method proxy vs directly
#   bash bench/run.sh feed [ARGS]          1,000 change-feed watchers while 10,000 instance actions run
#   bash bench/run.sh soak [ARGS]          one hour at half the measured capacity, sampled each minute
# Same load generator, same settings, one run each. ARGS go to `corral-bench`, e.g.
#   bash bench/run.sh proxy --duration 10s --connections 64
# Everything stays on 127.0.0.1; every server is a child process that is killed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=foundation
case "${1:-}" in
    foundation | proxy | feed | inventory | soak) cmd="$1"; shift ;;
esac
cargo build --release -p corral -p corral-testsvc -p corral-bench
exec "${CARGO_TARGET_DIR:-target}/release/corral-bench" "$cmd" "$@"
