"""Database work in an ASGI process: the websockets' threads and the requests' connections.

Django's own ASGI handler runs each HTTP request's synchronous code in a thread made for that request
(``asgiref.ThreadSensitiveContext``), which ends with the request. The web process uses
``PooledASGIHandler`` instead: the request's whole synchronous path on a pool of ``HTTP_THREADS``
long-lived threads that keep their connections (``CONN_MAX_AGE``). What Django still runs on a thread
outside the pool (the ``request_started``/``request_finished`` receivers, a streamed response's
iterator) has its connection closed when the request finishes, since nothing would reuse it. Long-lived
threads keep theirs: the HTTP pool, the ones that run the consumers' database work, and Celery's worker
threads.

Channels runs every consumer's database work on one thread per process (its
``database_sync_to_async`` is thread-sensitive), so one socket's slow query holds up every other
socket, and with PostgreSQL the thread spends most of its time waiting for round trips. Consumers use
``database_sync_to_async`` from here instead: the same, on a pool of ``WEBSOCKET_DB_THREADS``
threads, each with its own persistent connection. One consumer still runs its calls one after the
other (it awaits each), so its own order is kept.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from channels.db import DatabaseSyncToAsync
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.db import close_old_connections, connections

# The process's thread pools by name, made on first use.
_executors: dict[str, ThreadPoolExecutor] = {}
_executor_lock = threading.Lock()


def _pool(name: str, threads: int) -> ThreadPoolExecutor:
    with _executor_lock:
        executor = _executors.get(name)
        if executor is None:
            executor = _executors[name] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
    return executor


def websocket_db_executor() -> ThreadPoolExecutor:
    return _pool("websocket-db", settings.WEBSOCKET_DB_THREADS)


# A connection used this recently is not pinged before its next use (CONN_HEALTH_CHECKS): under load every
# call would otherwise cost one more round trip. An error on it closes it (close_old_connections after the
# call), and the next call opens a fresh one.
HEALTH_CHECK_AFTER_IDLE_SECONDS = 5.0


def _skip_recent_health_checks(now: float) -> None:
    for connection in connections.all(initialized_only=True):
        if now - getattr(connection, "db_used_at", float("-inf")) < HEALTH_CHECK_AFTER_IDLE_SECONDS:
            connection.health_check_done = True


def _mark_used(now: float) -> None:
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None:
            connection.db_used_at = now


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
        _skip_recent_health_checks(now)
        try:
            # SyncToAsync's own handler: Channels' would close old connections a second time.
            return super(DatabaseSyncToAsync, self).thread_handler(loop, *args, **kwargs)
        finally:
            close_old_connections()
            now = time.monotonic()
            _mark_used(now)
            _service_time += _SERVICE_WEIGHT * ((now - started) - _service_time)


def close_request_thread_connections(sender, **kwargs) -> None:
    """``request_finished`` receiver: connections an ASGI request opened outside the HTTP pool are closed."""
    if isinstance(sender, type) and issubclass(sender, ASGIHandler):
        for connection in connections.all(initialized_only=True):
            if not connection.in_atomic_block:
                connection.close()


# --- HTTP requests ------------------------------------------------------------------------------------------


def http_executor() -> ThreadPoolExecutor:
    return _pool("http", settings.HTTP_THREADS)


class PooledASGIHandler(ASGIHandler):
    """Django's ASGI handler, with a request's synchronous work in one hop to a pool of long-lived threads.

    Django's own handler builds an asynchronous middleware chain; with synchronous middleware (all of
    Django's) a request crosses between the event loop and a thread made for that request four times
    (middleware, back to the loop for the view resolver, the view, the signals), each crossing waiting for
    the busy loop's next turn, and the thread opens a new database connection for that one request. Here
    the whole synchronous chain (middleware, view, template) runs in one call on a pool of ``HTTP_THREADS``
    threads that keep their connections (``CONN_MAX_AGE``), checked as ``request_started`` and
    ``request_finished`` would check them. The project has no asynchronous views; one would still run
    (Django adapts it), on a loop of its own.
    """

    def __init__(self) -> None:
        # BaseHandler's, not ASGIHandler's: that one would build the asynchronous middleware chain.
        super(ASGIHandler, self).__init__()
        self.load_middleware(is_async=False)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        # No ThreadSensitiveContext: the request's own work runs on the pool, not on a thread of its own.
        await self.handle(scope, receive, send)

    async def get_response_async(self, request):
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        return await loop.run_in_executor(http_executor(), context.run, self._get_response_pooled, request)

    def _get_response_pooled(self, request):
        close_old_connections()
        _skip_recent_health_checks(time.monotonic())
        try:
            return self.get_response(request)
        finally:
            close_old_connections()
            _mark_used(time.monotonic())
