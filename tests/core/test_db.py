"""Connections of ASGI request threads are closed with the request; long-lived threads keep theirs."""

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
    monkeypatch.setattr(db, "_executor", None)
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
    db._executor.shutdown(wait=True)
