"""Database connections in an ASGI process: request threads, the HTTP pool, the websockets' pool."""

from __future__ import annotations

import pytest
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection

from core.db import close_request_thread_connections

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_asgi_request_closes_its_threads_connection_when_it_finishes():
    connection.ensure_connection()
    close_request_thread_connections(sender=ASGIHandler)
    assert connection.connection is None


@pytest.mark.parametrize("sender", [WSGIHandler, object])
def test_other_senders_leave_the_connection_to_conn_max_age(sender):
    connection.ensure_connection()
    close_request_thread_connections(sender=sender)
    assert connection.connection is not None


def test_a_connection_inside_a_transaction_is_never_closed_under_it():
    from django.db import transaction

    with transaction.atomic():
        close_request_thread_connections(sender=ASGIHandler)
        assert connection.connection is not None


async def test_the_pool_counts_as_overloaded_while_calls_would_wait_too_long_for_a_thread(settings, monkeypatch):
    import asyncio
    import threading

    from core import db

    settings.WEBSOCKET_DB_THREADS = 1
    settings.WEBSOCKET_DB_MAX_PENDING = 100
    settings.WEBSOCKET_DB_MAX_WAIT_MS = 50
    monkeypatch.setattr(db, "_executors", {})
    monkeypatch.setattr(db, "_service_time", 0.02)
    release = threading.Event()

    @db.database_sync_to_async
    def held() -> None:
        release.wait(5)

    assert not db.websocket_db_overloaded()
    running = [asyncio.ensure_future(held()) for _ in range(3)]
    await asyncio.sleep(0.05)
    # One on the thread, two waiting at about 20 ms each: 40 ms, within the 50 allowed.
    assert db._in_flight == 3
    assert not db.websocket_db_overloaded()
    running.append(asyncio.ensure_future(held()))
    await asyncio.sleep(0.05)
    assert db.websocket_db_overloaded()

    settings.WEBSOCKET_DB_MAX_WAIT_MS = 10_000
    settings.WEBSOCKET_DB_MAX_PENDING = 3
    assert db.websocket_db_overloaded(), "too many in hand, however quick they are"
    release.set()
    await asyncio.gather(*running)
    assert db._in_flight == 0
    assert not db.websocket_db_overloaded()
    db.websocket_db_executor().shutdown(wait=True)


def _get(app, path: str, *, headers: list[tuple[bytes, bytes]] = ()) -> tuple[int, bytes]:
    from asgiref.sync import async_to_sync
    from asgiref.testing import ApplicationCommunicator

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def run() -> tuple[int, bytes]:
        communicator = ApplicationCommunicator(app, scope)
        await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
        start = await communicator.receive_output(10)
        body = b""
        while True:
            message = await communicator.receive_output(10)
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await communicator.wait(10)
        return start["status"], body

    return async_to_sync(run)()


@pytest.fixture
def pooled_handler(settings, monkeypatch):
    """The web process's HTTP handler with a pool of one thread whose connection persists."""
    from django.db import connections

    from core import db

    settings.HTTP_THREADS = 1
    monkeypatch.setattr(db, "_executors", {})
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 600)
    yield db.PooledASGIHandler()
    pool = db.http_executor()
    # The pool thread's connection goes with it.
    pool.submit(connections.close_all).result()
    pool.shutdown(wait=True)


def test_http_requests_run_on_the_pool_and_keep_its_threads_connection(pooled_handler):
    import threading

    from django.db.backends.signals import connection_created

    opened: list[str] = []

    def created(sender, connection, **kwargs) -> None:
        opened.append(threading.current_thread().name)

    connection_created.connect(created)
    try:
        for _ in range(3):
            status, body = _get(pooled_handler, "/healthz")
            assert (status, body) == (200, b'{"status": "ok"}')
    finally:
        connection_created.disconnect(created)
    assert len(opened) == 1, f"one connection for three requests, opened on {opened}"
    assert opened[0].startswith("http"), opened


def test_a_pooled_thread_carries_no_language_from_one_request_to_the_next(pooled_handler):
    status, german = _get(pooled_handler, "/login/", headers=[(b"accept-language", b"de")])
    assert status == 200 and "Anmelden" in german.decode()
    status, english = _get(pooled_handler, "/login/")
    assert status == 200 and "Sign in" in english.decode() and "Anmelden" not in english.decode()
