#!/usr/bin/env bash
# Builds Corral and the benchmark harness in release mode, then runs one benchmark:
#   bash bench/run.sh [foundation] [ARGS]  authenticated Corral GET vs a bare axum "hello JSON" server
#   bash bench/run.sh proxy [ARGS]         a service instance through Corral's method proxy vs directly
#   bash bench/run.sh inventory [ARGS]     100,000 mock instances and 10,000 hosts (one store)
#   bash bench/run.sh feed [ARGS]          1,000 change-feed watchers while 10,000 instance actions run
#   bash bench/run.sh soak [ARGS]          one hour at half the measured capacity, sampled each minute
#   bash bench/run.sh scale [ARGS]         every figure of issue 14, on SQLite and PostgreSQL, one table
# Same load generator, same settings, one run each. ARGS go to `corral-bench`, e.g.
#   bash bench/run.sh proxy --duration 10s --connections 64
# `scale` runs PostgreSQL on CORRAL_BENCH_DATABASE_URL when set, else on a throwaway server it
# starts here (as scripts/test.sh does); it needs `sqlite3` and `psql` to stage hosts.
# Everything stays on 127.0.0.1; every server is a child process that is killed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=foundation
case "${1:-}" in
    foundation | proxy | feed | inventory | soak | scale) cmd="$1"; shift ;;
esac
cargo build --release -p corral -p corral-testsvc -p corral-bench
if [ "$cmd" = scale ]; then
    for tool in sqlite3 psql ssh-keygen; do
        command -v "$tool" >/dev/null || { echo "bench scale needs $tool (apt install sqlite3 postgresql openssh-client)" >&2; exit 1; }
    done
    if [ -z "${CORRAL_BENCH_DATABASE_URL:-}" ]; then
        source scripts/lib/pg.sh
        if pg_find_bin; then
            trap pg_stop EXIT
            pg_start
            export CORRAL_BENCH_DATABASE_URL="$pg_url"
        else
            echo "no PostgreSQL server binaries: the scale table has SQLite only" >&2
        fi
    fi
    # Not exec: the trap stops the throwaway PostgreSQL afterwards.
    "${CARGO_TARGET_DIR:-target}/release/corral-bench" scale "$@"
    exit
fi
exec "${CARGO_TARGET_DIR:-target}/release/corral-bench" "$cmd" "$@"
