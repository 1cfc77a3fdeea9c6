#!/usr/bin/env bash
# Runs Corral's whole test suite on a fresh Debian machine: installs what the tests need,
# starts a throwaway PostgreSQL on a free loopback port, builds the QEMU test guest, then runs
# the format check, clippy with -D warnings, every test on both stores (SQLite and that
# PostgreSQL), and schemathesis against the served OpenAPI document on both stores.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

source scripts/lib/pg.sh
need_pkgs=()
pg_bin=""
pg_find_bin || need_pkgs+=(postgresql)
command -v curl >/dev/null || need_pkgs+=(curl)
# schemathesis runs from a venv, in a network namespace brought up with `ip`.
python3 -c 'import ensurepip, venv' 2>/dev/null || need_pkgs+=(python3-venv)
command -v ip >/dev/null || need_pkgs+=(iproute2)
# Real OpenSSH servers for the host tests (design §6); brings ssh-keygen along.
[ -x /usr/sbin/sshd ] || need_pkgs+=(openssh-server)
# What scripts/guest-image.sh needs to build the QEMU test guest (cpio, mke2fs, qemu-img; the
# kernel and busybox it downloads itself). QEMU itself comes from scripts/install-qemu.sh.
command -v qemu-img >/dev/null || need_pkgs+=(qemu-utils)
command -v cpio >/dev/null || need_pkgs+=(cpio)
command -v mke2fs >/dev/null || [ -x /sbin/mke2fs ] || need_pkgs+=(e2fsprogs)
# The web console's end-to-end tests: Debian's Chromium, driven by playwright-core from npm
# (never a browser download).
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
command -v npm >/dev/null || need_pkgs+=(nodejs npm)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "installing ${need_pkgs[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need_pkgs[@]}"
    pg_find_bin || true
fi
[ -n "$pg_bin" ] || { echo "PostgreSQL binaries not found after install" >&2; exit 1; }
# Real QEMU for the qemu driver's tests (design §6).
if ! command -v qemu-system-x86_64 >/dev/null; then
    log "installing QEMU"
    [ ${#need_pkgs[@]} -gt 0 ] || { SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"; $SUDO apt-get update -q; }
    bash scripts/install-qemu.sh
fi

trap pg_stop EXIT
pg_start
log "started PostgreSQL ($pg_bin) at $pg_url"
export CORRAL_TEST_DATABASE_URL="$pg_url"

log "building the QEMU test guest"
bash scripts/guest-image.sh target/guest
export CORRAL_TEST_GUEST_DIR="$PWD/target/guest"

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

log "building the test service"
cargo build -p corral-testsvc

log "installing the console tests' driver (npm ci: playwright-core)"
(cd crates/corral/tests/console && npm ci --no-audit --no-fund)

log "cargo test (SQLite and PostgreSQL)"
# CI keeps the tail of the output: a failing test's message and location must be in it, not
# pushed out by a backtrace.
RUST_BACKTRACE=0 cargo test --workspace --all-targets -- --test-threads 4

# The served OpenAPI document fuzzed by schemathesis (PyPI) on both stores: no 5xx, no
# undeclared status, no response off its schema.
log "schemathesis (SQLite and PostgreSQL)"
bash scripts/schemathesis.sh sqlite postgres
