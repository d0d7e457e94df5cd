#!/usr/bin/env bash
# Makes sure Debian's Chromium is at /usr/bin/chromium for the browser tests (Playwright
# drives it through executable_path; no browser is downloaded). A no-op when it is there.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "!! /usr/bin/chromium is missing: install Debian's chromium (apt-get install chromium) as root;" >&2
  echo "   the browser tests are skipped until then." >&2
  exit 0
fi
echo "==> installing Chromium (Debian package) for the browser tests"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
/usr/bin/chromium --version
