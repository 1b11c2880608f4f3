#!/usr/bin/env bash
# README command 1: the main job, end to end. Installs what is missing, builds,
# starts a private PostgreSQL (unless DATABASE_URL is set), enqueues the sample
# requests in examples/, runs the supervisor until the queue is empty and prints
# a table of what happened. Two samples fail on purpose: one names a missing
# photo, one renders 4K under a 60 MB memory limit. Safe to run again and
# again: every run enqueues fresh tasks; outputs (named by task id) are kept.
#
# Environment: DATABASE_URL (use this database instead of a private one),
# BUILD_DIR (default build), DEMO_TIMEOUT (seconds per supervisor pass, 900).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
say() { printf '==> %s\n' "$*"; }

# --- 1. packages and build -----------------------------------------------------
"$root/scripts/install-deps.sh"
build=${BUILD_DIR:-build}
if [ ! -f "$build/build.ninja" ]; then
    say "configuring $build"
    meson setup "$build" --buildtype=debugoptimized >/dev/null
fi
say "building ($build)"
# Only what the demo runs; scripts/test.sh builds everything.
targets=(supervisor/supervisor supervisor/pvctl/pvctl child/protovideo-render)
mkdir -p "$root/.state"
ninja -C "$build" "${targets[@]}" >"$root/.state/demo-build.log" 2>&1 || {
    tail -n 40 "$root/.state/demo-build.log" >&2
    echo "demo: the build failed (full log: .state/demo-build.log)" >&2
    exit 1
}

pvctl=$root/$build/supervisor/pvctl/pvctl
supervisor=$root/$build/supervisor/supervisor
renderer=$root/$build/child/protovideo-render
for program in "$pvctl" "$supervisor" "$renderer"; do
    [ -x "$program" ] || { echo "demo: $program was not built" >&2; exit 1; }
done

# --- 2. where things live ----------------------------------------------------------
state=$root/.state
mkdir -p "$state"

# One demo at a time per checkout: two would share the supervisor's journal.
exec 9>"$state/demo.lock"
if ! flock -n 9; then
    echo "demo: another scripts/demo.sh is running in this checkout; wait for it to finish" >&2
    exit 1
fi
log=$state/demo-supervisor.log
media=$root/examples/media
base=$state
child_program=$renderer

# As root the renderer runs as `nobody`, which must read the media and the
# renderer and write the outputs. A checkout under a private home is out of its
# reach, so everything the child touches is then staged under /tmp.
if [ "$(id -u)" = 0 ]; then
    child_user=${CHILD_USER:-nobody}
    if ! runuser -u "$child_user" -- test -r "$media/Aqua.jpg" ||
       ! runuser -u "$child_user" -- test -x "$renderer" ||
       ! runuser -u "$child_user" -- test -x "$state"; then
        base=/tmp/protovideo-demo-$(printf '%s' "$root" | md5sum | cut -c1-12)
        say "$child_user cannot reach $root; staging media, renderer and output in $base"
        mkdir -p "$base/media" "$base/bin"
        chmod 755 "$base" "$base/media" "$base/bin"
        cp "$media"/*.jpg "$media"/*.ogg "$base/media/"
        chmod 644 "$base"/media/*
        cp "$renderer" "$base/bin/protovideo-render"
        chmod 755 "$base/bin/protovideo-render"
        media=$base/media
        child_program=$base/bin/protovideo-render
    fi
fi
output=$base/output
work=$base/work
mkdir -p "$output" "$work"
# Sticky and world-writable like /tmp: the child's user creates files here,
# and can replace only its own.
chmod 1777 "$output" "$work"

# --- 3. database -------------------------------------------------------------------
started_pg=0
if [ -z "${DATABASE_URL:-}" ]; then
    started_pg=1
    say "starting a private PostgreSQL in .state/pg"
    # 9>&-: the server outlives this run and must not hold the demo's lock.
    DATABASE_URL=$("$root/scripts/pg.sh" start "$state/pg" 9>&-)
else
    say "using the database in DATABASE_URL"
fi
export DATABASE_URL
"$pvctl" migrate >/dev/null

# --- 4. the supervisor ---------------------------------------------------------------
sup_pid=
stop_supervisor() {
    if [ -n "$sup_pid" ] && kill -0 "$sup_pid" 2>/dev/null; then
        kill -TERM "$sup_pid" 2>/dev/null || true
        wait "$sup_pid" 2>/dev/null || true
    fi
}
interrupted=
trap 'interrupted=1; stop_supervisor' INT TERM

# Stops the demo when Ctrl-C reached it or only the supervisor (which then
# shuts down gracefully and exits 0 with tasks left pending).
check_interrupted() {  # check_interrupted FIRST_ID_INDEX
    local left
    left=$("$pvctl" list --json --limit 200 2>/dev/null | python3 -c "$count_py" "${ids[@]:$1}" \
           | grep -E 'pending|running' || true)
    if [ -n "$interrupted" ] || [ -n "$left" ]; then
        echo "demo: interrupted before the queue was drained (${left:-stopped}); run it again to go on" >&2
        exit 130
    fi
}

declare -a ids=() names=()

enqueue() {  # enqueue SAMPLE [pvctl options...]
    local sample=$1
    shift
    local id
    id=$(sed "s#@MEDIA@#$media#g" "$root/examples/$sample.json" | "$pvctl" enqueue - "$@")
    ids+=("$id")
    names+=("$sample")
    printf '    %-24s %s\n' "$sample" "$id"
}

# Counts our tasks by state from `pvctl list --json` (ids as arguments).
count_py=$(cat <<'EOF'
import json, sys
ids = set(sys.argv[1:])
counts = {}
for t in json.load(sys.stdin):
    if t["id"] not in ids:
        continue
    label = t["status"]
    if label == "inprogress":
        label = "running"
    counts[label] = counts.get(label, 0) + 1
print(", ".join("%d %s" % (n, s) for s, n in sorted(counts.items())))
EOF
)

# Prints a status line for the tasks of this pass (ids from index $1 on)
# whenever it changes, until the supervisor exits.
follow() {
    local first=$1
    local deadline=$((SECONDS + ${DEMO_TIMEOUT:-900})) last= now
    while kill -0 "$sup_pid" 2>/dev/null; do
        if [ $SECONDS -ge $deadline ]; then
            echo "demo: the supervisor is still busy after ${DEMO_TIMEOUT:-900} s; stopping it" >&2
            stop_supervisor
            break
        fi
        now=$("$pvctl" list --json --limit 200 2>/dev/null | python3 -c "$count_py" "${ids[@]:$first}" \
              || true)
        if [ -n "$now" ] && [ "$now" != "$last" ]; then
            printf '    %s\n' "$now"
            last=$now
        fi
        sleep 2
    done
    local rc=0
    wait "$sup_pid" 2>/dev/null || rc=$?
    sup_pid=
    if [ $rc -ne 0 ]; then
        echo "demo: the supervisor exited with status $rc; the end of its log:" >&2
        tail -n 15 "$log" >&2
    fi
}

run_supervisor() {  # run_supervisor FIRST_ID_INDEX [extra supervisor flags...]
    local first=$1
    shift
    {
        echo "---- $(date -Is) demo pass: $*"
    } >>"$log"
    OUTPUT_DIR=$output WORK_ROOT=$work ASSET_ROOTS=$media STATE_DIR=$state/supervisor \
        LOG_FORMAT=json \
        "$supervisor" --max-children 2 --exit-when-idle --poll-interval 2 \
        --task-timeout 600 --child-command "$child_program" "$@" >>"$log" 2>&1 9>&- &
    sup_pid=$!
    follow "$first"
}

say "enqueueing samples"
for sample in photos-zoom-text narrated-subtitles music-crossfade; do
    enqueue "$sample"
done
enqueue broken-missing-photo --max-attempts 1

say "rendering with build/supervisor/supervisor --max-children 2 (log: .state/demo-supervisor.log)"
run_supervisor 0
check_interrupted 0

# The second pass runs under a limit this sample cannot meet (and so would any
# other pending task of a shared DATABASE_URL: the demo drains the whole queue).
say "rendering memory-hungry-4k under a 60 MB memory limit (MEMORY_CRITICAL_THRESHOLD=60)"
second=${#ids[@]}
enqueue memory-hungry-4k --max-attempts 1
run_supervisor "$second" --memory-limit 60 --memory-warning 40
check_interrupted "$second"
trap - INT TERM

# Formats the final table from lines "SAMPLE<TAB>pvctl show --json".
table_py=$(cat <<'EOF'
import json, sys
rows = []
for line in sys.stdin:
    name, doc = line.rstrip("\n").split("\t", 1)
    t = json.loads(doc)
    last = t["attempts"][-1] if t["attempts"] else {}
    wall = last.get("wall_seconds")
    peak = last.get("peak_memory_mb")
    if t["status"] == "completed":
        detail = t.get("output") or "-"
    else:
        detail = ": ".join(x for x in (t.get("error_type"), t.get("error")) if x) or "-"
    if len(detail) > 100:
        detail = detail[:97] + "..."
    rows.append((t["id"][:8], name, t["status"],
                 "-" if wall is None else "%.1f s" % wall,
                 "-" if peak is None else "%.1f MB" % peak, detail))
head = ("TASK", "SAMPLE", "STATUS", "WALL", "PEAK MEM", "OUTPUT / ERROR")
widths = [max(len(r[i]) for r in rows + [head]) for i in range(5)]
for r in [head] + rows:
    print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[5])
EOF
)

# --- 5. the report -------------------------------------------------------------------
say "results (outputs in $output)"
for i in "${!ids[@]}"; do
    printf '%s\t' "${names[$i]}"
    "$pvctl" show "${ids[$i]}" --json | tr -d '\n'
    printf '\n'
done | python3 -c "$table_py"
cat <<EOF

Two samples fail on purpose: broken-missing-photo (asset) and memory-hungry-4k
(memory_limit). Every attempt, with its exit status, OOM kills, peak memory and
CPU time:
    export DATABASE_URL='$DATABASE_URL'
    $build/supervisor/pvctl/pvctl show TASK        (TASK: an id or its first 8 characters)
Supervisor log (JSON lines): .state/demo-supervisor.log
EOF
if [ "$started_pg" = 1 ]; then
    echo "The private PostgreSQL keeps running for that; stop it with: scripts/pg.sh stop .state/pg"
fi
