#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the libFuzzer targets with clang (ASan + UBSan) straight from the
# common/ sources, replays every saved regression input, then fuzzes each target
# for SECONDS seconds from its seed corpus.
#   tests/fuzz/run.sh [SECONDS] [TARGET...]      SECONDS defaults to 10
# Targets: request (pv::parse_request), events (LineSplitter + parse_event_line).
# Exit status: 0 clean, 1 a regression input or the fuzzer found a bug, 77 when
# clang or its fuzzer runtime is missing (meson reports the test as skipped).
# Environment: CXX_FUZZ (default clang++), FUZZ_WORK (keep the build and the
# grown corpus in this folder instead of a temporary one). Bugs listed in
# known-open.txt are reported but do not fail the run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
seconds=${1:-10}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request events)
case $seconds in
    ''|*[!0-9]*) echo "run.sh: SECONDS must be a whole number, got '$seconds'" >&2; exit 2 ;;
esac

cxx=${CXX_FUZZ:-clang++}
if ! command -v "$cxx" >/dev/null; then
    echo "run.sh: $cxx not found (apt-get install clang libclang-rt-14-dev); skipping" >&2
    exit 77
fi

if [ -n "${FUZZ_WORK:-}" ]; then
    work=$FUZZ_WORK
    mkdir -p "$work"
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/pv-fuzz.XXXXXX")
    trap 'rm -rf "$work"' EXIT
fi

flags=(-std=c++20 -O1 -gline-tables-only -D_GNU_SOURCE -fno-omit-frame-pointer
       -fsanitize=address,undefined -fno-sanitize-recover=all -I"$root/common")
read -r -a pkg_cflags <<<"$(pkg-config --cflags spdlog fmt nlohmann_json libavutil)"
read -r -a pkg_libs <<<"$(pkg-config --libs spdlog fmt libavutil)"
flags+=("${pkg_cflags[@]}")

# A missing fuzzer runtime (libclang-rt-14-dev) shows up as a link failure of
# an empty target; that is "cannot run here", not a bug in the code.
probe=$work/probe.cpp
printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' >"$probe"
if ! "$cxx" -fsanitize=fuzzer,address,undefined "$probe" -o "$work/probe" 2>"$work/probe.log"; then
    echo "run.sh: $cxx cannot link libFuzzer programs (apt-get install libclang-rt-14-dev); skipping" >&2
    sed 's/^/  /' "$work/probe.log" >&2
    exit 77
fi

# Compile the shared sources once, two at a time (the machines have 2 cores).
echo "run.sh: compiling with $cxx into $work" >&2
start=$SECONDS
sources=("$root/common/events.cpp" "$root/common/request.cpp" "$root/common/log.cpp")
for t in "${targets[@]}"; do
    [ -f "$here/fuzz_$t.cpp" ] || { echo "run.sh: unknown target '$t'" >&2; exit 2; }
    sources+=("$here/fuzz_$t.cpp")
done
# With FUZZ_WORK kept between runs, an object newer than its source and every
# header it may include is reused.
newest_header=$(ls -t "$root"/common/*.hpp "$here"/*.hpp "$0" | head -n1)
pids=()
for src in "${sources[@]}"; do
    obj=$work/$(basename "$src" .cpp).o
    [ "$obj" -nt "$src" ] && [ "$obj" -nt "$newest_header" ] && continue
    "$cxx" "${flags[@]}" -fsanitize=fuzzer-no-link -c "$src" -o "$obj" &
    pids+=($!)
    if [ ${#pids[@]} -ge 2 ]; then
        wait "${pids[0]}" || { echo "run.sh: compiling failed" >&2; exit 1; }
        pids=("${pids[@]:1}")
    fi
done
for pid in "${pids[@]}"; do
    wait "$pid" || { echo "run.sh: compiling failed" >&2; exit 1; }
done
common_objs=("$work/events.o" "$work/request.o" "$work/log.o")
for t in "${targets[@]}"; do
    "$cxx" "${flags[@]}" -fsanitize=fuzzer "$work/fuzz_$t.o" "${common_objs[@]}" \
        "${pkg_libs[@]}" -o "$work/fuzz_$t"
done
echo "run.sh: built ${targets[*]} in $((SECONDS - start)) s" >&2

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0

# Reported bugs not fixed yet: their checks are off below, and their inputs are
# replayed once with every check on to tell whether they are still there.
mapfile -t known < <(sed -e 's/#.*//' "$here/known-open.txt" 2>/dev/null | awk 'NF {print $1}')
known_list=$(IFS=,; echo "${known[*]}")
for id in "${known[@]}"; do
    for t in "${targets[@]}"; do
        mapfile -t inputs < <(find "$here/regressions/$t" -type f -name "$id--*" 2>/dev/null | sort)
        [ ${#inputs[@]} -gt 0 ] || continue
        if PV_FUZZ_KNOWN_OPEN= "$work/fuzz_$t" -runs=0 "${inputs[@]}" >"$work/$id.log" 2>&1; then
            echo "run.sh: known bug $id is fixed: delete its line from tests/fuzz/known-open.txt" >&2
        else
            echo "run.sh: known bug $id is still open ($(grep -m1 -E '^fuzz_|ERROR' "$work/$id.log" || echo crash))" >&2
        fi
    done
done
export PV_FUZZ_KNOWN_OPEN=$known_list

for t in "${targets[@]}"; do
    bin=$work/fuzz_$t

    # 1. Every input that once broke the target must now pass.
    reg=$here/regressions/$t
    mapfile -t inputs < <(find "$reg" -type f ! -name '.*' ! -name '*.md' 2>/dev/null | sort)
    if [ ${#inputs[@]} -gt 0 ]; then
        if "$bin" -runs=0 "${inputs[@]}" >"$work/$t.regressions.log" 2>&1; then
            echo "run.sh: $t: ${#inputs[@]} regression inputs pass" >&2
        else
            echo "run.sh: $t: a regression input fails again:" >&2
            tail -n 40 "$work/$t.regressions.log" >&2
            status=1
        fi
    fi

    # 2. Fuzz from the seeds; new inputs go to a scratch corpus, never to the
    # checked-in seeds.
    [ "$seconds" -gt 0 ] || continue
    corpus=$work/corpus-$t
    artifacts=$work/artifacts-$t
    mkdir -p "$corpus" "$artifacts"
    dict=()
    [ -f "$here/$t.dict" ] && dict=(-dict="$here/$t.dict")
    echo "run.sh: $t: fuzzing for $seconds s" >&2
    if "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
           -print_final_stats=1 -artifact_prefix="$artifacts/" "${dict[@]}" \
           "$corpus" "$here/corpus/$t" >"$work/$t.fuzz.log" 2>&1; then
        grep -E '^stat::(number_of_executed_units|new_units_added)' "$work/$t.fuzz.log" \
            | sed "s/^/run.sh: $t: /" >&2 || true
    else
        echo "run.sh: $t: the fuzzer found a bug:" >&2
        grep -v '^#[0-9]' "$work/$t.fuzz.log" | tail -n 60 >&2
        # Keep the input outside the temporary folder so it can become a
        # regression input (tests/fuzz/regressions/$t/) once minimised.
        found=$here/findings/$t
        mkdir -p "$found"
        for a in "$artifacts"/*; do
            [ -f "$a" ] || continue
            cp "$a" "$found/"
            echo "run.sh: $t: input saved as $found/$(basename "$a")" >&2
        done
        status=1
    fi
done
exit $status
