#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs the benchmarks and writes bench/report.md with PNG plots in bench/plots/
# (raw data in bench/results/). Benchmarks, not tests: nothing here asserts a
# time. See bench/README.md.
#   bench/run.sh [--with-peers] [--quick] [--only supervisor,peers,render]
#   --with-peers  install (Debian python3-rq, python3-celery, redis-server; npm
#                 graphile-worker) and measure the peer job queues beside ours
#   --quick       tiny counts, to check that the scripts work
# Counts: N_KILL (200), N_DISPATCH (5000), N_DISPATCH_RUNS (3: ours and RQ, median
# reported), N_LATENCY (200), N_KILL_PEER (20),
# IDLE_SECONDS (30), RENDER_RUNS (3), DISPATCH_CHILDREN ("2 4").
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
with_peers=0
only=supervisor,peers,render
quick=0
while [ $# -gt 0 ]; do
    case $1 in
        --with-peers) with_peers=1 ;;
        --quick) quick=1 ;;
        --only) only=$2; shift ;;
        -h|--help) sed -n '3,13p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
wants() { [[ ",$only," == *",$1,"* ]]; }

if [ "$quick" = 1 ]; then
    export N_KILL=${N_KILL:-10} N_DISPATCH=${N_DISPATCH:-100} N_LATENCY=${N_LATENCY:-10}
    export N_KILL_PEER=${N_KILL_PEER:-3} IDLE_SECONDS=${IDLE_SECONDS:-3} RENDER_RUNS=${RENDER_RUNS:-1}
    export DISPATCH_CHILDREN=${DISPATCH_CHILDREN:-2} GRAPHILE_WATCH=${GRAPHILE_WATCH:-4}
    export N_DISPATCH_RUNS=${N_DISPATCH_RUNS:-1}
fi
export N_KILL=${N_KILL:-200} N_DISPATCH=${N_DISPATCH:-5000} N_LATENCY=${N_LATENCY:-200}
export N_KILL_PEER=${N_KILL_PEER:-20} IDLE_SECONDS=${IDLE_SECONDS:-30} RENDER_RUNS=${RENDER_RUNS:-3}
export DISPATCH_CHILDREN=${DISPATCH_CHILDREN:-2 4} GRAPHILE_WATCH=${GRAPHILE_WATCH:-30}
export N_DISPATCH_RUNS=${N_DISPATCH_RUNS:-3}

build=${BENCH_BUILD:-$root/build-bench}
# A quick run keeps its results (and report) in the build dir, so it never
# replaces the committed ones.
if [ "$quick" = 1 ]; then
    export RESULTS=${BENCH_RESULTS:-$build/bench-quick}
else
    export RESULTS=${BENCH_RESULTS:-$here/results}
fi
export STATE=${BENCH_STATE:-$build/bench-state}
export MEDIA=${MEDIA:-$(cd "$root/.." && pwd)/shared/media}
[ -d "$MEDIA" ] || MEDIA=/work/shared/media
log() { echo "bench: $*" >&2; }

rm -rf "$RESULTS"
mkdir -p "$RESULTS" "$STATE"

# gnuplot draws the plots; the report is still written without it.
if ! command -v gnuplot >/dev/null; then
    log "installing gnuplot-nox for the plots"
    sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        gnuplot-nox >/dev/null 2>&1 || log "gnuplot-nox could not be installed; no plots"
fi

{
    echo "date:     $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "host:     $(hostname)"
    echo "cpu:      $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "nproc:    $(nproc)"
    echo "memory:   $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "kernel:   $(uname -sr)"
    echo "os:       $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "load:     $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min, at start)"
    echo "commit:   $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "postgres: $(psql --version | awk '{print $3}'), private cluster (scripts/pg.sh) with" \
        "fsync=off and full_page_writes=off, for ours and graphile-worker alike"
    echo "ffmpeg:   $(ffmpeg -version | awk 'NR == 1 {print $3}')"
} >"$RESULTS/machine.txt"
echo "N_KILL=$N_KILL N_DISPATCH=$N_DISPATCH N_DISPATCH_RUNS=$N_DISPATCH_RUNS" \
     "N_LATENCY=$N_LATENCY N_KILL_PEER=$N_KILL_PEER" \
     "IDLE_SECONDS=$IDLE_SECONDS RENDER_RUNS=$RENDER_RUNS DISPATCH_CHILDREN=\"$DISPATCH_CHILDREN\"" \
     >"$RESULTS/settings.txt"

# Build: an optimised build dir of its own. A target that does not build (yet)
# skips its section instead of failing the run.
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$root" --buildtype=release >/dev/null
fi
# built TARGET: builds it; when the tree does not build right now (others are
# editing it) an earlier build of the target is used, and the report says so.
built() {
    ninja -C "$build" "$1" >"$STATE/ninja-$(basename "$1").log" 2>&1 && return 0
    [ -x "$build/$1" ] || return 1
    log "$1 does not build now; using the earlier build from $(date -u -r "$build/$1" +%H:%M) UTC"
    echo "$1: built $(date -u -r "$build/$1" '+%H:%M UTC'), the tree did not build at run time" \
        >>"$RESULTS/stale-builds.txt"
}
built bench/bench_child && built bench/pvbench || { log "bench helpers do not build"; exit 1; }
export BENCH_CHILD=$build/bench/bench_child PVBENCH=$build/bench/pvbench
export SUPERVISOR=$build/supervisor/supervisor RENDER=$build/child/protovideo-render

# A fresh private PostgreSQL for every run.
pg_state=$STATE/pg
"$root/scripts/pg.sh" destroy "$pg_state" >/dev/null 2>&1 || true
DATABASE_URL=$("$root/scripts/pg.sh" start "$pg_state")
export DATABASE_URL
cleanup() { "$root/scripts/pg.sh" stop "$pg_state" >/dev/null 2>&1 || true; }
trap cleanup EXIT

if wants supervisor || wants peers; then
    if built supervisor/supervisor && "$SUPERVISOR" --migrate >"$STATE/migrate.log" 2>&1; then
        wants supervisor && "$here/supervisor.sh"
    else
        why="supervisor/supervisor did not build or migrate at $(git -C "$root" rev-parse --short HEAD)"
        log "$why; skipping the supervisor section"
        echo "$why." >"$RESULTS/supervisor-skipped.txt"
    fi
fi

if wants peers && [ "$with_peers" = 1 ]; then
    export PEERS_NODE_DIR=$build/peers
    "$here/peers/install.sh" "$PEERS_NODE_DIR"
    "$here/peers/run_peers.sh" || log "a peer run failed; the report shows what was measured"
fi

if wants render; then
    if built child/protovideo-render; then
        "$here/render.sh" || log "the renderer run failed; see $STATE/render"
    else
        why="child/protovideo-render did not build at $(git -C "$root" rev-parse --short HEAD)"
        log "$why; skipping the renderer section"
        echo "$why." >"$RESULTS/render-skipped.txt"
    fi
fi

echo "load end: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min, at the end, $(date -u +%H:%M:%S) UTC)" \
    >>"$RESULTS/machine.txt"
report_dir=${BENCH_REPORT_DIR:-$here}
[ "$quick" = 1 ] && report_dir=${BENCH_REPORT_DIR:-$RESULTS}
python3 "$here/report.py" "$RESULTS" "$report_dir"
log "report: $report_dir/report.md"
