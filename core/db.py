"""Database work in an ASGI process: the websockets' threads and the requests' connections.

Under ASGI, Django runs each HTTP request's synchronous code in a thread made for that request
(``asgiref.ThreadSensitiveContext``), which ends with the request. A persistent connection
(``CONN_MAX_AGE``) opened there could never be reused and would only be closed by the garbage
collector, so it is closed when the request finishes. Long-lived threads keep theirs: the ones that
run the consumers' database work, and Celery's worker threads.

Channels runs every consumer's database work on one thread per process (its
``database_sync_to_async`` is thread-sensitive), so one socket's slow query holds up every other
socket, and with PostgreSQL the thread spends most of its time waiting for round trips. Consumers use
``database_sync_to_async`` from here instead: the same, on a pool of ``WEBSOCKET_DB_THREADS``
threads, each with its own persistent connection. One consumer still runs its calls one after the
other (it awaits each), so its own order is kept.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from channels.db import DatabaseSyncToAsync
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.db import close_old_connections, connections

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def websocket_db_executor() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=settings.WEBSOCKET_DB_THREADS, thread_name_prefix="websocket-db")
    return _executor


# A connection used this recently is not pinged before its next use (CONN_HEALTH_CHECKS): under load every
# call would otherwise cost one more round trip. An error on it closes it (close_old_connections after the
# call), and the next call opens a fresh one.
HEALTH_CHECK_AFTER_IDLE_SECONDS = 5.0


# Calls handed to the pool and not finished yet, in this process (counted on the event loop's thread), and
# how long one lately took on its thread (moving average, updated by the threads).
_in_flight = 0
_service_time = 0.0
_SERVICE_WEIGHT = 0.1


def websocket_db_overloaded() -> bool:
    """Whether the pool is so far behind that new writes from sockets should be refused for now.

    When the calls waiting for a thread would take longer than ``WEBSOCKET_DB_MAX_WAIT_MS`` to get
    one (waiting calls x recent time per call / threads), or more than ``WEBSOCKET_DB_MAX_PENDING``
    are in hand, messages arrive faster than they are stored: each would wait longer than anyone
    should, and the frames behind them would pile up in memory without bound. The sender is told to
    send again in a moment instead (the chat page keeps the text). Refusing is cheap, so the backlog
    drains and messages are taken again.
    """
    if _in_flight > settings.WEBSOCKET_DB_MAX_PENDING:
        return True
    threads = settings.WEBSOCKET_DB_THREADS
    waiting = _in_flight - threads
    return waiting > 0 and waiting * _service_time / threads > settings.WEBSOCKET_DB_MAX_WAIT_MS / 1000


class database_sync_to_async(DatabaseSyncToAsync):
    """Channels' ``database_sync_to_async`` (old connections closed before and after) on the websockets' pool."""

    def __init__(self, func, **kwargs) -> None:
        super().__init__(func, thread_sensitive=False, executor=websocket_db_executor())

    async def __call__(self, *args, **kwargs):
        global _in_flight
        _in_flight += 1
        try:
            return await super().__call__(*args, **kwargs)
        finally:
            _in_flight -= 1

    def thread_handler(self, loop, *args, **kwargs):
        global _service_time
        started = now = time.monotonic()
        close_old_connections()
        for connection in connections.all(initialized_only=True):
            if now - getattr(connection, "websocket_used_at", float("-inf")) < HEALTH_CHECK_AFTER_IDLE_SECONDS:
                connection.health_check_done = True
        try:
            # SyncToAsync's own handler: Channels' would close old connections a second time.
            return super(DatabaseSyncToAsync, self).thread_handler(loop, *args, **kwargs)
        finally:
            close_old_connections()
            now = time.monotonic()
            for connection in connections.all(initialized_only=True):
                if connection.connection is not None:
                    connection.websocket_used_at = now
            _service_time += _SERVICE_WEIGHT * ((now - started) - _service_time)


def close_request_thread_connections(sender, **kwargs) -> None:
    """``request_finished`` receiver: an ASGI request's thread is about to end, so are its connections."""
    if isinstance(sender, type) and issubclass(sender, ASGIHandler):
        for connection in connections.all(initialized_only=True):
            if not connection.in_atomic_block:
                connection.close()
