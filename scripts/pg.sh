#!/usr/bin/env bash
# Private PostgreSQL for the demo and the tests: a cluster in a state folder,
# listening only on a Unix socket, never touching a system cluster.
#   scripts/pg.sh start STATE_DIR   -> prints DATABASE_URL on stdout
#   scripts/pg.sh stop STATE_DIR
#   scripts/pg.sh restart STATE_DIR | pause STATE_DIR | resume STATE_DIR
# initdb refuses to run as root, so as root the cluster belongs to `postgres`.
set -euo pipefail

usage() {
    echo "usage: scripts/pg.sh start|stop|restart|pause|resume|destroy STATE_DIR" >&2
    exit 2
}
[ $# -eq 2 ] || usage
cmd=$1
state=$2
mkdir -p "$state"
state=$(cd "$state" && pwd)

pgbin=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}
[ -x "$pgbin/initdb" ] || { echo "pg.sh: no PostgreSQL server binaries (apt-get install postgresql)" >&2; exit 1; }

run_as=()
if [ "$(id -u)" = 0 ]; then
    run_as=(runuser -u postgres --)
    # The postgres user must be able to reach the folder; a checkout under a
    # private home is not reachable, so the cluster then lives under /tmp.
    if ! runuser -u postgres -- test -x "$state" 2>/dev/null; then
        state=/tmp/pv-pg-$(echo "$state" | md5sum | cut -c1-12)
    fi
fi
data=$state/data
sock=$state/sock
log=$state/postgres.log

as_owner() { "${run_as[@]}" "$@"; }

url() { echo "postgresql:///protovideo?host=$sock"; }

case $cmd in
start)
    mkdir -p "$state"
    [ "$(id -u)" = 0 ] && chown postgres: "$state"
    if [ ! -f "$data/PG_VERSION" ]; then
        as_owner "$pgbin/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-locale >"$state/initdb.log" 2>&1 \
            || { cat "$state/initdb.log" >&2; exit 1; }
    fi
    as_owner mkdir -p "$sock"
    if ! as_owner "$pgbin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        as_owner "$pgbin/pg_ctl" -D "$data" -l "$log" -w -t 60 start \
            -o "-c listen_addresses='' -c unix_socket_directories='$sock' -c max_connections=200 -c fsync=off -c full_page_writes=off" >/dev/null \
            || { tail -n 20 "$log" >&2; exit 1; }
    fi
    if ! as_owner "$pgbin/psql" -h "$sock" -U postgres -d postgres -Atqc "SELECT 1 FROM pg_database WHERE datname='protovideo'" | grep -q 1; then
        as_owner "$pgbin/createdb" -h "$sock" -U postgres protovideo
    fi
    echo "postgresql:///protovideo?host=$sock&user=postgres"
    ;;
stop)
    if [ -f "$data/PG_VERSION" ]; then
        as_owner "$pgbin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    ;;
restart)
    as_owner "$pgbin/pg_ctl" -D "$data" -m fast -w -l "$log" restart >/dev/null
    ;;
pause)
    as_owner "$pgbin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    ;;
resume)
    as_owner "$pgbin/pg_ctl" -D "$data" -l "$log" -w -t 60 start \
        -o "-c listen_addresses='' -c unix_socket_directories='$sock' -c max_connections=200 -c fsync=off -c full_page_writes=off" >/dev/null
    ;;
destroy)
    "$0" stop "$state" || true
    rm -rf "$data" "$sock"
    ;;
*)
    usage ;;
esac
