#!/usr/bin/env bash
# Empties a SwiftPM scratch path when the sources it was built from have changed (a hash of Sources/ and
# Package.swift, kept in DIR/sources.sha256). After an upgrade, an incremental build can keep a module compiled
# against the old layout of a type from another module that it embeds (a struct that gained a stored
# property), and the binary crashes at start; a build of other sources therefore starts from clean.
#   bash scripts/fresh-scratch.sh DIR
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:?usage: fresh-scratch.sh SCRATCH_PATH}"
sum=$(find Sources Package.swift -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
if [ "$(cat "$dir/sources.sha256" 2>/dev/null)" != "$sum" ]; then
  [ -d "$dir" ] && echo "fresh-scratch: the sources changed since $dir was built; building from clean" >&2
  rm -rf "$dir"
  mkdir -p "$dir"
  echo "$sum" > "$dir/sources.sha256"
fi
