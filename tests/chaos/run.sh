#!/usr/bin/env bash
# The long chaos run: the mixed chaos test (tests/integration/test_chaos_mixed.py)
# with many tasks, through the README's test command (so it installs, builds and
# finds the shared media the same way), writing its report to tests/chaos/report.md.
#
# usage: tests/chaos/run.sh [TASKS [SEED]]     (default 10000 tasks, seed 20261204)
#
# 10,000 tasks take about 22 minutes on 2 cores. Environment: PV_CHAOS_PAUSE
# (outage seconds, default 20), PV_CHAOS_REPORT (report file), BUILD_DIR.
# Exit status: that of the test (0 when every invariant held).
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit 0
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
tasks=${1:-10000}
seed=${2:-20261204}
case "$tasks$seed" in
*[!0-9]*)
    echo "run.sh: TASKS and SEED are whole numbers, got '$tasks' '$seed'" >&2
    exit 2
    ;;
esac
export PV_CHAOS_TASKS=$tasks PV_TEST_SEED=$seed
export PV_CHAOS_REPORT=${PV_CHAOS_REPORT:-$root/tests/chaos/report.md}
export PV_VM_TESTS=${PV_VM_TESTS:-false}
echo "run.sh: $tasks tasks, seed $seed, report $PV_CHAOS_REPORT" >&2
exec "$root/scripts/test.sh" integration --verbose --timeout-multiplier 0 \
    --test-args "-s -k test_mixed_chaos"
