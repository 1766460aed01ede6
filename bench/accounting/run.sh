#!/usr/bin/env bash
# Builds the accounting benchmark with -O from the MeterCore and Accounting sources and runs it.
# Usage: bash bench/accounting/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# One module: drop the cross-module imports.
for f in Sources/MeterCore/*.swift Sources/Accounting/*.swift; do
  sed -e '/^import MeterCore$/d' "$f" > "$work/$(basename "$(dirname "$f")")-$(basename "$f")"
done
cp bench/accounting/main.swift "$work/main.swift"
swiftc -O -swift-version 6 -module-name AccountingBench "$work"/*.swift -o "$work/bench" 2>&1 | grep -v '^$' || true
"$work/bench"
