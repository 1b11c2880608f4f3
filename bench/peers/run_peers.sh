#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs the peer queues on the same no-op, kill and memory work as
# bench/supervisor.sh: RQ (own redis-server on a private loopback port) and
# graphile-worker (own database in the benchmark's PostgreSQL).
# Needs: DATABASE_URL, RESULTS, STATE, PEERS_NODE_DIR; N_* as supervisor.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${DATABASE_URL:?}" "${RESULTS:?}" "${STATE:?}" "${PEERS_NODE_DIR:?}"
N_DISPATCH=${N_DISPATCH:-5000}
N_LATENCY=${N_LATENCY:-200}
N_KILL_PEER=${N_KILL_PEER:-20}
PEER_WORKERS=${PEER_WORKERS:-2}
GRAPHILE_WATCH=${GRAPHILE_WATCH:-30}
REDIS_PORT=${REDIS_PORT:-6391}
export PEERS_NODE_DIR

redis_pid=
cleanup() {
    [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
    return 0
}
trap cleanup EXIT

# RQ: a private redis without persistence, so disk writes do not count.
mkdir -p "$STATE/redis"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$STATE/redis" --logfile "$STATE/redis/redis.log" &
redis_pid=$!
for _ in $(seq 50); do
    redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
done
echo "peers: RQ $(/usr/bin/python3 -c 'import rq; print(rq.__version__)')" >&2
(cd "$here" && PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 rq_bench.py \
    "redis://127.0.0.1:$REDIS_PORT/0" "$RESULTS" "$N_DISPATCH" "$N_LATENCY" "$N_KILL_PEER" \
    "$PEER_WORKERS")
/usr/bin/python3 -c 'import rq; print(rq.__version__)' >"$RESULTS/rq-version.txt"

# graphile-worker: its own database beside ours.
gw_url=$(echo "$DATABASE_URL" | sed 's#///protovideo?#///graphile_bench?#')
psql "$DATABASE_URL" -Atq -c "DROP DATABASE IF EXISTS graphile_bench" -c "CREATE DATABASE graphile_bench"
node -e "console.log(require('$PEERS_NODE_DIR/node_modules/graphile-worker/package.json').version)" \
    >"$RESULTS/graphile-version.txt"
echo "peers: graphile-worker $(cat "$RESULTS/graphile-version.txt")" >&2
node "$here/graphile_bench.mjs" bench "$gw_url" "$RESULTS" "$N_DISPATCH" "$N_LATENCY" \
    "$PEER_WORKERS" "$GRAPHILE_WATCH"
