#!/usr/bin/env bash
# Makes sure `promtool` (Debian's prometheus package) is on the PATH for the tests that check
# /metrics with `promtool check metrics`. Only the binary is taken from the package: installing
# the package itself would also start a Prometheus server on this machine. A no-op when it is there.
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "!! promtool is missing: as root, run scripts/promtool.sh (it takes promtool out of Debian's" >&2
  echo "   prometheus package); the /metrics tests then check with the Prometheus client's parser only." >&2
  exit 0
fi
echo "==> installing promtool (from Debian's prometheus package) for the /metrics tests"
export DEBIAN_FRONTEND=noninteractive
work="$(mktemp -d)"
chmod 0755 "$work"  # apt downloads as its own user
trap 'rm -rf "$work"' EXIT
apt-get update -qq
(cd "$work" && apt-get download -qq prometheus >/dev/null)
dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
install -m 0755 "$work/root/usr/bin/promtool" /usr/local/bin/promtool
promtool --version 2>&1 | head -1
