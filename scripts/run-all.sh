#!/usr/bin/env bash
# Start daphne (web + websockets) and a Celery worker with beat together;
# Ctrl-C (or either one dying) stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${PORT:-8000}"
HOST="${HOST:-127.0.0.1}"
VENV="${VENV:-.venv}"
mkdir -p var

"$VENV/bin/celery" -A config worker --beat --loglevel "${LOG_LEVEL:-INFO}" \
  --concurrency "${CELERY_CONCURRENCY:-2}" --hostname "parley-worker@%h" &
worker=$!
# A socket that stops answering keepalive pings (a client that stopped reading) is cut off.
"$VENV/bin/daphne" -b "$HOST" -p "$PORT" --ping-interval "${WEBSOCKET_PING_INTERVAL:-10}" \
  --ping-timeout "${WEBSOCKET_PING_TIMEOUT:-10}" config.asgi:application &
web=$!

stop() {
  trap - INT TERM EXIT
  kill -TERM "$web" "$worker" 2>/dev/null || true
  wait "$web" "$worker" 2>/dev/null || true
}
trap stop INT TERM EXIT

echo "Parley is running on http://$HOST:$PORT/ (Ctrl-C stops web and worker)"
wait -n "$web" "$worker"
