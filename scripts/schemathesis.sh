#!/usr/bin/env bash
# The contract as tested data (issue 13 item 8): runs schemathesis (from PyPI, in a venv under
# target/) against the OpenAPI document a real `corral serve` serves, once on SQLite and once on
# PostgreSQL (when CORRAL_TEST_DATABASE_URL names one), with a bounded number of examples per
# operation. Passing means: no 5xx, no status the document does not declare, no body that does
# not match its declared schema.
#
# The server and schemathesis run in a private network namespace that has only a loopback
# interface: whatever a generated request asks for (a host to reach over SSH, a container
# manager's API server), nothing can leave the machine. PostgreSQL is reached there through its
# unix socket. Needs root (or sudo) for `unshare --net`.
#
# Usage: scripts/schemathesis.sh [sqlite|postgres]...   (default: both, postgres if configured)
# Env: CORRAL_BIN (default: cargo build, target/debug/corral), SCHEMATHESIS_EXAMPLES (20).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

examples=${SCHEMATHESIS_EXAMPLES:-20}
corral=${CORRAL_BIN:-}
venv="$PWD/target/schemathesis-venv"
version="4.32.5"

if [ ! -x "$venv/bin/st" ] || ! "$venv/bin/st" --version | grep -q "$version"; then
    log "installing schemathesis $version into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "schemathesis==$version"
fi
if [ -z "$corral" ]; then
    cargo build -q -p corral
    corral=target/debug/corral
fi
corral=$(realpath "$corral")
run_as_root=()
[ "$(id -u)" -eq 0 ] || run_as_root=(sudo)

stores=("$@")
if [ ${#stores[@]} -eq 0 ]; then
    stores=(sqlite)
    [ -n "${CORRAL_TEST_DATABASE_URL:-}" ] && stores+=(postgres)
fi

key="schemathesis-bootstrap-key-0123456789-abcdefgh"
failed=0
for store in "${stores[@]}"; do
    dir=$(mktemp -d /tmp/corral-st.XXXXXX)
    case "$store" in
        sqlite) db_url="sqlite://$dir/data/corral.db?mode=rwc" ;;
        postgres)
            admin=${CORRAL_TEST_DATABASE_URL:?set CORRAL_TEST_DATABASE_URL for the postgres run}
            name="corral_st_$(date +%s)_$$"
            psql -q "$admin" -c "CREATE DATABASE $name"
            socket=$(psql -Atq "$admin" -c "SHOW unix_socket_directories" | cut -d, -f1 | xargs)
            port=$(psql -Atq "$admin" -c "SHOW port")
            user=$(psql -Atq "$admin" -c "SELECT current_user")
            db_url="postgres://$user@localhost:$port/$name?host=$socket"
            ;;
        *) echo "unknown store $store" >&2; exit 2 ;;
    esac
    cat >"$dir/corral.toml" <<EOF
listen = "127.0.0.1:55099"
data_dir = "$dir/data"
database_url = "$db_url"
bootstrap_apikey = "$key"
log = "warn"
host_driver = "simulated"
host_allow = ["127.0.0.0/8"]
service_work_dir = "$dir/services"
mock_delay = 0.05
instance_transition_timeout = 30

[[clouds]]
id = "mock"
type = "mock"
[clouds.options]
images = ["debian"]
availability_zones = ["zone-a"]
[[clouds.options.flavors]]
name = "small"
vcpus = 1
ram = 512
EOF
    log "schemathesis on $store ($examples examples per operation)"
    set +e
    "${run_as_root[@]}" unshare --net bash -c '
        set -u
        ip link set lo up
        "$1" serve --config "$2/corral.toml" >"$2/server.log" 2>&1 &
        server=$!
        for _ in $(seq 1 100); do
            curl -sf http://127.0.0.1:55099/ping >/dev/null && break
            sleep 0.1
        done
        cd "$2"  # schemathesis keeps its cache in the working directory
        "$3/bin/st" run http://127.0.0.1:55099/openapi.json \
            -H "Authorization: Bearer $4" \
            --checks not_a_server_error,status_code_conformance,response_schema_conformance \
            --max-examples "$5" --seed 1 --workers 2 --request-timeout 30 \
            --report junit --report-dir "$2/report" --no-color
        rc=$?
        kill "$server"; wait "$server"
        exit $rc
    ' _ "$corral" "$dir" "$venv" "$key" "$examples"
    rc=$?
    set -e
    if [ $rc -ne 0 ]; then
        failed=1
        echo "schemathesis on $store failed; server log: $dir/server.log" >&2
    else
        # The run left root-owned files (it ran under sudo when not root).
        "${run_as_root[@]}" rm -rf "$dir"
    fi
    if [ "$store" = postgres ]; then
        psql -q "$admin" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" || true
    fi
done
exit $failed
