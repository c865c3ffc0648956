#!/usr/bin/env bash
# Browser tests drive Debian's Chromium (Playwright's own download does not
# work here). Install it when we can; otherwise say so: the browser tests then
# skip locally and fail under CI=true.
set -euo pipefail
CHROMIUM="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the browser tests..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "Chromium not found at $CHROMIUM: browser tests will be skipped (run 'apt-get install -y chromium' as root)." >&2
fi
