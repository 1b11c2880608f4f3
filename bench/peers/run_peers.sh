#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs the peer queues on the same no-op, kill and memory work as
# bench/supervisor.sh: RQ and Celery (prefork pool) on an own redis-server on a
# private loopback port, and graphile-worker (own database in the benchmark's
# PostgreSQL). A peer that fails does not stop the others; the exit status says.
# Needs: DATABASE_URL, RESULTS, STATE, PEERS_NODE_DIR; N_* as supervisor.sh.
# BENCH_PEERS (default "rq celery graphile") picks the peers.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${DATABASE_URL:?}" "${RESULTS:?}" "${STATE:?}" "${PEERS_NODE_DIR:?}"
N_DISPATCH=${N_DISPATCH:-5000}
N_LATENCY=${N_LATENCY:-200}
N_KILL_PEER=${N_KILL_PEER:-20}
PEER_WORKERS=${PEER_WORKERS:-2}
GRAPHILE_WATCH=${GRAPHILE_WATCH:-30}
REDIS_PORT=${REDIS_PORT:-6391}
BENCH_PEERS=${BENCH_PEERS:-rq celery graphile}
export PEERS_NODE_DIR
peer() { [[ " ${BENCH_PEERS//,/ } " == *" $1 "* ]]; }
failed=()

redis_pid=
cleanup() {
    [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
    return 0
}
trap cleanup EXIT

# py_peer NAME MODULE DB: a Python peer against database DB of the private redis.
py_peer() {
    local version
    if ! version=$(/usr/bin/python3 -c "import $2; print($2.__version__)"); then
        failed+=("$1")
        return 0
    fi
    echo "$version" >"$RESULTS/$1-version.txt"
    echo "peers: $2 $version" >&2
    (cd "$here" && PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 "$1_bench.py" \
        "redis://127.0.0.1:$REDIS_PORT/$3" "$RESULTS" "$N_DISPATCH" "$N_LATENCY" \
        "$N_KILL_PEER" "$PEER_WORKERS") || failed+=("$1")
}

# RQ and Celery: a private redis without persistence, so disk writes do not count.
if peer rq || peer celery; then
    mkdir -p "$STATE/redis"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$STATE/redis" --logfile "$STATE/redis/redis.log" &
    redis_pid=$!
    for _ in $(seq 50); do
        redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break
        sleep 0.1
    done
    if peer rq; then py_peer rq rq 0; fi
    if peer celery; then py_peer celery celery 1; fi
fi

# graphile-worker: its own database beside ours.
if peer graphile; then
    gw_url=$(echo "$DATABASE_URL" | sed 's#///protovideo?#///graphile_bench?#')
    psql "$DATABASE_URL" -Atq -c "DROP DATABASE IF EXISTS graphile_bench" \
        -c "CREATE DATABASE graphile_bench"
    gw_pkg=$PEERS_NODE_DIR/node_modules/graphile-worker/package.json
    node -e "console.log(require('$gw_pkg').version)" >"$RESULTS/graphile-version.txt"
    echo "peers: graphile-worker $(cat "$RESULTS/graphile-version.txt")" >&2
    node "$here/graphile_bench.mjs" bench "$gw_url" "$RESULTS" "$N_DISPATCH" "$N_LATENCY" \
        "$PEER_WORKERS" "$GRAPHILE_WATCH" || failed+=(graphile)
fi

if [ ${#failed[@]} -gt 0 ]; then
    echo "peers: failed: ${failed[*]}" >&2
    exit 1
fi
