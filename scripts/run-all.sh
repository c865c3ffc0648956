#!/usr/bin/env bash
# Start daphne (web + websockets) and a Celery worker with beat together;
# Ctrl-C, a SIGTERM (to this script or its whole process group) or either one dying stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${PORT:-8000}"
HOST="${HOST:-127.0.0.1}"
VENV="${VENV:-.venv}"
STOP_TIMEOUT="${STOP_TIMEOUT:-30}"
mkdir -p var

# Each child in its own process group (job control): a signal to this script's group (Ctrl-C, a
# supervisor or CI stopping `make run`) reaches this script, which stops each child by its main process.
# Sent to the whole group, a SIGTERM would also hit the worker's pool processes, and one killed while it
# holds the pool's queue lock leaves the worker's main process waiting for that lock forever.
set -m

"$VENV/bin/celery" -A config worker --beat --loglevel "${LOG_LEVEL:-INFO}" \
  --concurrency "${CELERY_CONCURRENCY:-2}" --hostname "parley-worker@%h" &
worker=$!
# A socket that stops answering keepalive pings (a client that stopped reading) is cut off.
"$VENV/bin/daphne" -b "$HOST" -p "$PORT" --ping-interval "${WEBSOCKET_PING_INTERVAL:-10}" \
  --ping-timeout "${WEBSOCKET_PING_TIMEOUT:-10}" config.asgi:application &
web=$!

stop() {
  # Further signals are ignored, not reset: a supervisor's SIGTERM often arrives twice (to the group, and
  # again from make passing it on), and the second one must not kill this script before the worker is stopped.
  trap '' INT TERM
  trap - EXIT
  kill -TERM "$web" "$worker" 2>/dev/null || true
  # The worker finishes the tasks it is running first; one that does not end in time is stopped hard.
  for _ in $(seq 1 $((STOP_TIMEOUT * 5))); do
    kill -0 "$web" 2>/dev/null || kill -0 "$worker" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$web" 2>/dev/null || kill -0 "$worker" 2>/dev/null; then
    echo "web or worker still running ${STOP_TIMEOUT} s after SIGTERM: killed" >&2
    kill -KILL -- -"$web" -"$worker" 2>/dev/null || true
  fi
  wait "$web" "$worker" 2>/dev/null || true
}
trap stop INT TERM EXIT

echo "Parley is running on http://$HOST:$PORT/ (Ctrl-C stops web and worker)"
wait -n "$web" "$worker"
