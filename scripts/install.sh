#!/usr/bin/env bash
# Builds MeterGate in release mode with the Swift runtime linked statically and installs it:
#   $PREFIX/bin/metergate, $PREFIX/share/metergate/{boards,profiles,examples},
#   /etc/systemd/system/metergate.service, /usr/lib/sysusers.d/metergate.conf,
#   /etc/metergate/metergate.yaml (only if absent: an existing config is never overwritten).
# DESTDIR=/some/root stages everything under that root (for packaging); PREFIX defaults to /usr.
# On the target machine the binary needs only Debian's runtime libraries:
#   libmodbus5 libmosquitto1 libgpiod2 libsqlite3-0 (plus libc6, libstdc++6, libssl3).
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX="${PREFIX:-/usr}"
DESTDIR="${DESTDIR:-}"
if [ "${SKIP_SETUP:-}" != 1 ]; then bash scripts/setup.sh; fi

# Its own scratch path, emptied when the sources changed (scripts/fresh-scratch.sh says why).
scratch=(-c release --static-swift-stdlib --scratch-path .build/install)
bash scripts/fresh-scratch.sh .build/install
swift build "${scratch[@]}" --product metergate
bin="$(swift build "${scratch[@]}" --show-bin-path)/metergate"

install -d "$DESTDIR$PREFIX/bin" "$DESTDIR$PREFIX/share/metergate" "$DESTDIR/etc/systemd/system" \
  "$DESTDIR/usr/lib/sysusers.d" "$DESTDIR/etc/metergate"
install -s -m 0755 "$bin" "$DESTDIR$PREFIX/bin/metergate"   # stripped (BENCHMARKS.md, binary row)
for dir in boards profiles examples; do
  rm -rf "$DESTDIR$PREFIX/share/metergate/$dir"
  cp -r "$dir" "$DESTDIR$PREFIX/share/metergate/$dir"
done
sed "s#/usr/bin/metergate#$PREFIX/bin/metergate#g" systemd/metergate.service > "$DESTDIR/etc/systemd/system/metergate.service"
install -m 0644 systemd/metergate.sysusers "$DESTDIR/usr/lib/sysusers.d/metergate.conf"
if [ ! -e "$DESTDIR/etc/metergate/metergate.yaml" ]; then
  install -m 0640 examples/substation.yaml "$DESTDIR/etc/metergate/metergate.yaml"
  echo "install: wrote an example config to $DESTDIR/etc/metergate/metergate.yaml; edit it, then: metergate check --config /etc/metergate/metergate.yaml"
fi
echo "install: $(ls -l "$DESTDIR$PREFIX/bin/metergate" | awk '{print $5}') bytes at $DESTDIR$PREFIX/bin/metergate"
if [ -z "$DESTDIR" ]; then
  command -v systemd-sysusers >/dev/null && systemd-sysusers /usr/lib/sysusers.d/metergate.conf || true
  command -v systemctl >/dev/null && systemctl daemon-reload 2>/dev/null || true
  echo "install: next: metergate keygen --out /var/lib/metergate/signing.key (as the metergate user), then systemctl enable --now metergate"
fi
