#!/usr/bin/env bash
# System programs the suite drives for real: Debian's Chromium for the browser tests (Playwright's own
# download does not work here), nginx as the reverse proxy of the scale-out test, dovecot as the IMAP
# server of the email tests. Installed when we can (root with apt-get); otherwise say so: those tests then
# skip locally and fail under CI=true.
set -euo pipefail
CHROMIUM="${CHROMIUM_PATH:-/usr/bin/chromium}"
need=()
[ -x "$CHROMIUM" ] || need+=(chromium)
[ -x /usr/sbin/nginx ] || need+=(nginx-light)
[ -x /usr/sbin/dovecot ] || need+=(dovecot-imapd)
if [ "${#need[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing ${need[*]} for the tests..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "Missing ${need[*]}: the tests that need them will be skipped (run 'apt-get install -y ${need[*]}' as root)." >&2
fi
