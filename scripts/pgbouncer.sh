#!/usr/bin/env bash
# Makes sure Debian's pgbouncer is installed for the PgBouncer tests (each test starts its own on
# a free loopback port; the package's service is never used). A no-op when it is there.
set -euo pipefail
if command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "!! pgbouncer is missing: install Debian's pgbouncer (apt-get install pgbouncer) as root;" >&2
  echo "   the PgBouncer tests are skipped until then." >&2
  exit 0
fi
echo "==> installing PgBouncer (Debian package) for the PgBouncer tests"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq pgbouncer >/dev/null
/usr/sbin/pgbouncer --version | head -1
