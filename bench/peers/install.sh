#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the peer job queues for bench/run.sh --with-peers: Debian's
# python3-rq, python3-celery and redis-server (RQ's store, Celery's broker and
# result backend), and graphile-worker from the npm registry into NODE_DIR
# (default build-bench/peers). Runs only when asked; BENCH_PEERS as in
# run_peers.sh (npm is not asked when graphile is not among them).
set -euo pipefail
node_dir=${1:?usage: install.sh NODE_DIR}
BENCH_PEERS=${BENCH_PEERS:-rq celery graphile}
peer() { [[ " ${BENCH_PEERS//,/ } " == *" $1 "* ]]; }

wanted=()
peer rq && wanted+=(python3-rq)
peer celery && wanted+=(python3-celery)
{ peer rq || peer celery; } && wanted+=(redis-server)
missing=()
for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
        missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "peers: installing ${missing[*]}" >&2
    sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The package starts a system redis; the benchmark runs its own on a
    # private port, so the system one is stopped to keep the machine quiet.
    if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
        "${sudo[@]}" systemctl stop redis-server || true
    fi
fi

if peer graphile && [ ! -d "$node_dir/node_modules/graphile-worker" ]; then
    echo "peers: npm install graphile-worker into $node_dir" >&2
    mkdir -p "$node_dir"
    [ -f "$node_dir/package.json" ] ||
        echo '{"private":true,"type":"module"}' >"$node_dir/package.json"
    npm install --prefix "$node_dir" --no-audit --no-fund --silent graphile-worker >&2
fi
