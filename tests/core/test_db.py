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
