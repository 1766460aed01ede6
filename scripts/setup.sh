#!/usr/bin/env bash
# Installs what MeterGate needs on a fresh Debian 12 machine: the apt packages in scripts/apt-packages.txt
# and the Python test peers in scripts/requirements-test.txt (into .venv). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=$(grep -v '^\s*#' scripts/apt-packages.txt | grep -v '^\s*$' | tr '\n' ' ')
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing apt packages:$missing"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# The packaged broker must not hold port 1883 or run as a service: tests and the demo start their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
  systemctl stop mosquitto || true
fi

if grep -qv '^\s*\(#\|$\)' scripts/requirements-test.txt; then
  if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
  if ! .venv/bin/python -m pip install -q --disable-pip-version-check -r scripts/requirements-test.txt; then
    echo "setup: pip could not install scripts/requirements-test.txt" >&2
    exit 1
  fi
fi
# The commit `metergate --version` names (Sources/CBuildInfo/commit.h, ignored by git), rewritten only when it changes.
if commit=$(git rev-parse --short=12 HEAD 2>/dev/null); then
  git diff --quiet HEAD -- Sources Package.swift 2>/dev/null || commit="$commit+changes"
  line="#define METERGATE_COMMIT \"$commit\""
  [ "$(cat Sources/CBuildInfo/commit.h 2>/dev/null)" = "$line" ] || echo "$line" > Sources/CBuildInfo/commit.h
fi
echo "setup: ready (swift $(swift --version 2>/dev/null | head -1 | sed 's/.*version \([0-9.]*\).*/\1/'))"
