#!/usr/bin/env bash
# Installs the Debian 12 packages ProtoVideo needs to build, test and run the
# demo, but only those that are missing: a re-run with everything present
# asks dpkg once and installs nothing. Uses sudo when not root.
#   scripts/install-deps.sh          install what is missing
#   scripts/install-deps.sh --check  list what is missing; exit 1 if anything is
set -euo pipefail

packages=(
    # build (clang and its runtime only for the libFuzzer targets in tests/fuzz)
    meson ninja-build pkg-config g++ clang libclang-rt-14-dev
    # libraries
    libpqxx-dev libpq-dev libfmt-dev libspdlog-dev nlohmann-json3-dev doctest-dev libcli11-dev
    libavformat-dev libavcodec-dev libavfilter-dev libswscale-dev libswresample-dev
    libavutil-dev libcurl4-openssl-dev libssl-dev libespeak-ng-dev espeak-ng-data
    libfontconfig-dev fonts-dejavu-core fonts-wqy-microhei
    # database, tests, demo
    postgresql python3 python3-pytest python3-psycopg2 ffmpeg procps
)

missing=()
for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$pkg")
done

if [ "${1:-}" = "--check" ]; then
    if [ ${#missing[@]} -gt 0 ]; then
        echo "missing: ${missing[*]}"
        exit 1
    fi
    echo "all ${#packages[@]} packages are installed"
    exit 0
fi

[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
as_root=()
if [ "$(id -u)" != 0 ]; then
    if ! command -v sudo >/dev/null; then
        echo "install-deps: not root and no sudo; as root run: apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    as_root=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -q
"${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
