#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Supervisor benchmarks (bench/run.sh runs this; see bench/README.md):
#   kill     SIGKILL of a sleeping child -> committed failed row
#   dispatch no-op children through a queue of N_DISPATCH tasks
#   latency  enqueue -> child started, one task at a time on an idle system
#   idle     RSS and wakeups of an idle supervisor
#   memory   a child allocating past MEMORY_CRITICAL_THRESHOLD=100
# Needs: SUPERVISOR, BENCH_CHILD, PVBENCH, DATABASE_URL, RESULTS, STATE.
set -euo pipefail

: "${SUPERVISOR:?}" "${BENCH_CHILD:?}" "${PVBENCH:?}" "${DATABASE_URL:?}" "${RESULTS:?}" "${STATE:?}"
N_KILL=${N_KILL:-200}
N_DISPATCH=${N_DISPATCH:-5000}
N_DISPATCH_RUNS=${N_DISPATCH_RUNS:-3}
N_LATENCY=${N_LATENCY:-200}
IDLE_SECONDS=${IDLE_SECONDS:-30}
DISPATCH_CHILDREN=${DISPATCH_CHILDREN:-2 4}
# Fast cgroup joins (README, cgroup modes): remounts the host's cgroup2 with
# favordynmods until reboot. BENCH_FAVORDYNMODS=false measures without.
FAVORDYNMODS=${BENCH_FAVORDYNMODS:-true}
export DATABASE_URL

sup_pid=
log() { echo "bench/supervisor: $*" >&2; }

psql_q() { psql "$DATABASE_URL" -Atq -v ON_ERROR_STOP=1 -c "$1"; }

# start_supervisor NAME CHILDREN CHILD_COMMAND [extra flags...]
start_supervisor() {
    local name=$1 children=$2 child=$3
    shift 3
    mkdir -p "$STATE/$name/state" "$STATE/$name/work"
    "$SUPERVISOR" --max-children "$children" --child-command "$child" \
        --cgroup-favordynmods "$FAVORDYNMODS" --log-format json \
        --state-dir "$STATE/$name/state" --work-root "$STATE/$name/work" \
        --instance "bench-$name" "$@" >"$RESULTS/supervisor-$name.log" 2>&1 &
    sup_pid=$!
    # Ready once its workers row is there (it registers before claiming work).
    for _ in $(seq 300); do
        if ! kill -0 "$sup_pid" 2>/dev/null; then
            log "supervisor ($name) exited at start:"; tail -n 20 "$RESULTS/supervisor-$name.log" >&2
            return 1
        fi
        [ "$(psql_q "SELECT count(*) FROM workers WHERE pid = $sup_pid AND stopped_at IS NULL")" -gt 0 ] && return 0
        sleep 0.1
    done
    log "supervisor ($name) did not register within 30 s"
    return 1
}

stop_supervisor() {
    [ -n "$sup_pid" ] || return 0
    kill -TERM "$sup_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$sup_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$sup_pid" 2>/dev/null || true
    wait "$sup_pid" 2>/dev/null || true
    sup_pid=
}
trap stop_supervisor EXIT

proc_field() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# 1. SIGKILL -> committed failed row, one task at a time, 2 child slots.
kill_dir=$(mktemp -d /tmp/pv-bench-kill.XXXXXX)
chmod 1777 "$kill_dir"  # the child may run as nobody
log "kill latency: $N_KILL tasks"
start_supervisor kill 2 "$BENCH_CHILD sleep $kill_dir"
dynmods=$(grep -o '"favordynmods":[a-z]*' "$RESULTS/supervisor-kill.log" | head -n1 | cut -d: -f2)
echo "cgroup2 favordynmods: ${dynmods:-unknown} (asked: $FAVORDYNMODS)" >>"$RESULTS/machine.txt"
"$PVBENCH" kill-latency "$kill_dir" "$N_KILL" >"$RESULTS/ours-kill.csv"
stop_supervisor
rm -rf "$kill_dir"

# 2. Dispatch rate, then (same supervisor, now idle) latency, RSS and wakeups.
for children in $DISPATCH_CHILDREN; do
    log "dispatch: $N_DISPATCH no-op tasks, --max-children $children"
    start_supervisor "dispatch$children" "$children" "$BENCH_CHILD noop"
    # N_DISPATCH_RUNS batches, one after another; the report takes the median.
    for run in $(seq "$N_DISPATCH_RUNS"); do
        if [ "$run" = 1 ]; then
            "$PVBENCH" dispatch "$N_DISPATCH" >"$RESULTS/ours-dispatch-$children.csv"
        else
            "$PVBENCH" dispatch "$N_DISPATCH" | tail -n +2 >>"$RESULTS/ours-dispatch-$children.csv"
        fi
    done
    {
        echo "children,vm_hwm_kb,vm_rss_kb"
        echo "$children,$(proc_field "$sup_pid" VmHWM),$(proc_field "$sup_pid" VmRSS)"
    } >"$RESULTS/ours-rss-dispatch-$children.csv"
    if [ "$children" = "${DISPATCH_CHILDREN%% *}" ]; then
        sleep 2
        log "latency: $N_LATENCY tasks one at a time"
        "$PVBENCH" latency "$N_LATENCY" 20 >"$RESULTS/ours-latency.csv"

        log "idle: ${IDLE_SECONDS} s of context switches, then ${IDLE_SECONDS} s under strace"
        sleep 2
        v0=$(proc_field "$sup_pid" voluntary_ctxt_switches)
        n0=$(proc_field "$sup_pid" nonvoluntary_ctxt_switches)
        sleep "$IDLE_SECONDS"
        v1=$(proc_field "$sup_pid" voluntary_ctxt_switches)
        n1=$(proc_field "$sup_pid" nonvoluntary_ctxt_switches)
        # RSS split: shared library pages (mostly libpq's TLS, Kerberos and LDAP
        # dependencies) versus what is the supervisor's own.
        rollup() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$sup_pid/smaps_rollup"; }
        private_kb=$(($(rollup Private_Clean) + $(rollup Private_Dirty)))
        {
            echo "seconds,voluntary,nonvoluntary,vm_hwm_kb,vm_rss_kb,pss_kb,private_kb,anon_kb"
            echo "$IDLE_SECONDS,$((v1 - v0)),$((n1 - n0)),$(proc_field "$sup_pid" VmHWM)," \
                "$(proc_field "$sup_pid" VmRSS),$(rollup Pss),$private_kb,$(rollup Anonymous)" |
                tr -d ' '
        } >"$RESULTS/ours-idle.csv"
        if command -v strace >/dev/null; then
            timeout -s INT "$IDLE_SECONDS" strace -c -f -p "$sup_pid" -o "$RESULTS/ours-idle-strace.txt" \
                2>/dev/null || true
        fi
    fi
    stop_supervisor
done

# 3. Memory: a child touching 200 MiB under a 100 MB limit.
log "memory: child allocating 200 MiB, limit 100 MB"
MEMORY_CRITICAL_THRESHOLD=100 MEMORY_WARNING_THRESHOLD=50 \
    start_supervisor memory 1 "$BENCH_CHILD alloc 200"
"$PVBENCH" one >"$RESULTS/ours-memory.json"
stop_supervisor
log "done"
