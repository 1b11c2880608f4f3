#!/usr/bin/env bash
# README command 2: install what is missing, build, and run the whole test suite.
# The suites start their own private PostgreSQL (scripts/pg.sh); nothing else is needed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

"$root/scripts/install-deps.sh"

build=${BUILD_DIR:-build}
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" --buildtype=debugoptimized
fi
ninja -C "$build"
meson test -C "$build" --print-errorlogs --num-processes "${TEST_JOBS:-1}" "$@"
