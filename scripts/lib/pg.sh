# Sourced by scripts/test.sh and bench/run.sh: a throwaway PostgreSQL on a free loopback port,
# owned by an unprivileged user (it refuses to run as root).
#   pg_start     sets pg_url (postgres://postgres@127.0.0.1:PORT/postgres); needs pg_bin set
#   pg_stop      stops it and removes its directory (safe to call twice)

pg_find_bin() {
    for v in 17 16 15; do
        if [ -x "/usr/lib/postgresql/$v/bin/initdb" ]; then pg_bin="/usr/lib/postgresql/$v/bin"; return 0; fi
    done
    return 1
}

pg_start() {
    pg_dir=$(mktemp -d /tmp/corral-pg.XXXXXX)
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_pg=()
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        chown postgres "$pg_dir"
        as_pg=(runuser -u postgres --)
    fi
    # An ICU en-US default collation, as many production databases have: it ignores case and
    # punctuation when sorting, so any query that relies on the database's order for the
    # contract's byte order fails here rather than in production.
    "${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U postgres -A trust -E UTF8 --no-sync \
        --locale=C.UTF-8 --locale-provider=icu --icu-locale=en-US >/dev/null
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w \
        -o "-p $port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null
    pg_url="postgres://postgres@127.0.0.1:$port/postgres"
}

pg_stop() {
    [ -n "${pg_dir:-}" ] || return 0
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
    pg_dir=""
}
