#!/usr/bin/env bash
# Make sure Debian's Chromium is at /usr/bin/chromium for the browser test (tests/test_ui_browser.py).
# A test tool's own browser download cannot work on these machines, so Playwright drives the system
# Chromium. Idempotent: returns at once when it is there; otherwise installs it with apt (as root).
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  cat >&2 <<MSG
Chromium is not installed at /usr/bin/chromium and this script is not running as root, so it cannot
install it. The browser test needs Debian's package:
  sudo apt-get install -y chromium
MSG
  exit 1
fi

echo "ensure_chromium: installing Debian's chromium" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
test -x /usr/bin/chromium || { echo "ensure_chromium: apt installed chromium but /usr/bin/chromium is missing" >&2; exit 1; }
