#!/usr/bin/env bash
# Installs the Debian 12 packages the build, the demo and the tests need,
# only when something is missing, so re-runs are fast.
set -euo pipefail
pkgs=(meson ninja-build pkg-config g++ clang libclang-rt-14-dev
      libpqxx-dev libpq-dev libfmt-dev libspdlog-dev nlohmann-json3-dev doctest-dev libcli11-dev
      libavformat-dev libavcodec-dev libavfilter-dev libswscale-dev libswresample-dev libavutil-dev
      libcurl4-openssl-dev libespeak-ng-dev espeak-ng-data fonts-dejavu-core
      postgresql python3 python3-pytest python3-psycopg2 ffmpeg procps)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
