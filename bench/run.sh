#!/usr/bin/env bash
# Builds Corral and the benchmark harness in release mode, then runs the foundation benchmark:
# authenticated Corral GET vs a bare axum "hello JSON" server, same load generator, same settings, one run.
# Extra arguments go to `corral-bench foundation`, e.g.:  bash bench/run.sh --duration 10s --connections 64
# Everything stays on 127.0.0.1; both servers are child processes that are killed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p corral -p corral-bench
exec "${CARGO_TARGET_DIR:-target}/release/corral-bench" foundation "$@"
