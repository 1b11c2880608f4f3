#!/usr/bin/env bash
# README command 2: install what is missing, build, and run the whole test suite.
# The suites start their own private PostgreSQL (scripts/pg.sh); nothing else is needed.
# Arguments go to `meson test` (e.g. --suite integration, or a test name).
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    echo "usage: scripts/test.sh [meson test arguments, e.g. --suite integration | TESTNAME]"
    echo "suites: unit process integration render child pvctl fuzz vm (meson test -C build --list)"
    exit 0
fi
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

"$root/scripts/install-deps.sh"

# Tests use real photographs and music from the shared media folder beside the
# checkout (../shared/media); PV_MEDIA_DIR points elsewhere.
if [ -z "${PV_MEDIA_DIR:-}" ]; then
    for d in "$root/../shared/media" /work/shared/media; do
        if [ -d "$d/images" ]; then PV_MEDIA_DIR=$(cd "$d" && pwd); break; fi
    done
fi
if [ -z "${PV_MEDIA_DIR:-}" ] || [ ! -d "$PV_MEDIA_DIR/images" ]; then
    echo "test.sh: the shared media folder (../shared/media) is missing; set PV_MEDIA_DIR" >&2
    exit 1
fi
export PV_MEDIA_DIR

build=${BUILD_DIR:-build}
# The cgroup v2 suite boots a small VM (tests/vm/cgroup_v2.sh, about 30 s);
# PV_VM_TESTS=false leaves it out.
vm_tests=${PV_VM_TESTS:-true}
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" --buildtype=debugoptimized -Dvm_tests="$vm_tests"
else
    meson configure "$build" -Dvm_tests="$vm_tests" >/dev/null
fi
ninja -C "$build"
meson test -C "$build" --print-errorlogs --num-processes "${TEST_JOBS:-1}" "$@"
